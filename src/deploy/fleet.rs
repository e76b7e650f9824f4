//! Running the pipeline for many hosts: every host's [`pipeline::run_host`]
//! in its own task (at most `--jobs` working at once), one confirmation for
//! the whole set ([`Gate`]), interrupts, and the end of the run: every
//! selected host has an outcome (a crashed task's host too), a summary, the
//! `--json` document and one exit code.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Semaphore, mpsc, watch};

use super::{Ctx, HostResult, Mode, Options, Outcome, interrupt, keys, pipeline, preflight, say};
use crate::inventory::Host;
use crate::nix::Nix;
use crate::report::progress;
use crate::target;
use tracing::Instrument;

pub struct FleetArgs {
    pub yes: bool,
    pub json: bool,
    pub jobs: usize,
    /// Activate this many hosts (the first selected) first, and the others
    /// only when all of them succeeded.
    pub canary: usize,
    /// When any host did not succeed, roll back the hosts this run switched.
    pub rollback_succeeded: bool,
    /// Go on activating the other hosts after one failed (without it, a
    /// failure stops every host that has not started its activation).
    pub keep_going: bool,
    /// Also keep the run's own log, `<logs>/<kind>/<kind>-all-<timestamp>.log`
    /// (a host log named "all": 0600, written as the run goes): this
    /// header, each host's result as it finished, the summary (`build-all`,
    /// as the original tool's master log).
    pub master_log: Option<String>,
}

/// One line of the run's own log for a host that finished.
fn finished_line(o: &Outcome) -> String {
    let detail = match (&o.toplevel, &o.error) {
        (_, Some(e)) => e.lines().next().unwrap_or_default().to_string(),
        (Some(t), None) => t.clone(),
        (None, None) => String::new(),
    };
    format!(
        "{}: {} {detail} (log: {})",
        o.host,
        o.result.word(),
        o.log.display()
    )
}

/// Write a file so that no reader ever sees half of it; mode 0600 from its
/// first byte.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    std::fs::rename(&tmp, path)
}

/// At most `--jobs` hosts work at once; a host waiting for the confirmation
/// holds no permit.
#[derive(Clone)]
pub struct Permits(Arc<Semaphore>);

impl Permits {
    pub fn new(n: usize) -> Permits {
        Permits(Arc::new(Semaphore::new(n.max(1))))
    }
    pub async fn acquire(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.0.clone().acquire_owned().await.ok()
    }
}

pub enum GateMsg {
    /// This host is ready to activate; here is what changes.
    Ready { host: String, text: String },
    /// This host needs no confirmation (it finished, failed or crashed).
    Left,
}

/// The confirmation every host passes before it changes: open (`--yes`, so
/// a host goes on without waiting for the others), or one question for
/// all, asked when every host is ready or gone.
pub enum Confirm {
    Open,
    Ask {
        tx: mpsc::UnboundedSender<GateMsg>,
        decision: watch::Receiver<Option<bool>>,
        /// Set once this host sent `Ready` (shared with its [`Leave`]).
        sent: Arc<AtomicBool>,
    },
}

/// Held by a host's task: when the task ends (or panics) before its host
/// reached the gate, the question stops waiting for it. The task drops it
/// only after it has reported a failure to the halt signal, so the question
/// is never asked for a run that a failed host has already stopped.
pub struct Leave {
    tx: mpsc::UnboundedSender<GateMsg>,
    sent: Arc<AtomicBool>,
}

impl Drop for Leave {
    fn drop(&mut self) {
        if !self.sent.load(Ordering::SeqCst) {
            let _ = self.tx.send(GateMsg::Left);
        }
    }
}

/// Which host's failure stopped the run (without `--keep-going`): hosts
/// that have not started their activation stop at their gate.
pub type Halt = watch::Receiver<Option<String>>;

/// How the canaries of a rollout ended: `Err` names the ones that did not
/// succeed.
pub type CanaryResult = Option<Result<(), String>>;

/// What a host passes between its plan and its activation: the
/// confirmation, then, for a host after the canaries (`--canary N`), their
/// success.
pub struct Gate {
    pub confirm: Confirm,
    pub after_canaries: Option<watch::Receiver<CanaryResult>>,
    pub halt: Option<Halt>,
}

/// May the host be activated?
#[derive(Debug, PartialEq, Eq)]
pub enum Approval {
    Go,
    NotConfirmed,
    /// The canaries named did not succeed: the rollout stops here.
    CanariesFailed(String),
    /// Another host failed (named), and the run does not keep going.
    Halted(String),
}

impl Gate {
    /// No question, no canaries (`--yes`).
    pub fn open() -> Gate {
        Gate {
            confirm: Confirm::Open,
            after_canaries: None,
            halt: None,
        }
    }

    /// The failed host that stopped the run, if one did.
    pub fn halted(&self) -> Option<String> {
        self.halt.as_ref().and_then(|h| h.borrow().clone())
    }

    pub async fn approve(&mut self, ctx: &Ctx, text: String) -> Approval {
        let confirmed = self.confirm.approve(ctx, text).await;
        if let Some(failed) = self.halted() {
            return Approval::Halted(failed);
        }
        if !confirmed {
            return Approval::NotConfirmed;
        }
        let Some(mut rx) = self.after_canaries.take() else {
            return Approval::Go;
        };
        ctx.say("waiting for the canaries");
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return match r {
                    Ok(()) => Approval::Go,
                    Err(names) => Approval::CanariesFailed(names),
                };
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() {
                    return Approval::CanariesFailed("(the rollout ended)".into());
                },
                _ = ctx.interrupt.wait() => return Approval::NotConfirmed,
            }
        }
    }
}

impl Confirm {
    async fn approve(&mut self, ctx: &Ctx, text: String) -> bool {
        match self {
            Confirm::Open => {
                crate::report::progress::block(&text);
                true
            }
            Confirm::Ask { tx, decision, sent } => {
                sent.store(true, Ordering::SeqCst);
                let _ = tx.send(GateMsg::Ready {
                    host: ctx.host.name.clone(),
                    text,
                });
                let mut rx = decision.clone();
                loop {
                    if let Some(d) = *rx.borrow_and_update() {
                        return d;
                    }
                    tokio::select! {
                        changed = rx.changed() => if changed.is_err() { return false },
                        _ = ctx.interrupt.wait() => return false,
                    }
                }
            }
        }
    }
}

/// Ask once, when all `expected` hosts are ready or gone.
async fn gatekeeper(
    mut rx: mpsc::UnboundedReceiver<GateMsg>,
    decide: watch::Sender<Option<bool>>,
    expected: usize,
    mode: Mode,
    intr: interrupt::Interrupt,
    halt: Halt,
) {
    let mut ready: BTreeMap<String, String> = BTreeMap::new();
    let mut answered = 0;
    while answered < expected {
        match rx.recv().await {
            Some(GateMsg::Ready { host, text }) => {
                ready.insert(host, text);
                answered += 1;
            }
            Some(GateMsg::Left) => answered += 1,
            None => break,
        }
    }
    if ready.is_empty() {
        return;
    }
    if let Some(failed) = halt.borrow().clone() {
        progress::block(&format!(
            "not asking for confirmation: {failed} failed, so nothing is activated \
             (--keep-going deploys the other hosts regardless)\n"
        ));
        let _ = decide.send(Some(false));
        return;
    }
    for text in ready.values() {
        progress::block(text);
    }
    if !std::io::stdin().is_terminal() {
        progress::block(
            "error: refusing to deploy without confirmation: stdin is not a terminal\n\
             hint: pass --yes to deploy non-interactively, or --dry-run to only see the changes\n",
        );
        let _ = decide.send(Some(false));
        return;
    }
    let names: Vec<String> = ready.keys().cloned().collect();
    let verb = if mode == Mode::Rollback {
        "Roll back"
    } else {
        "Deploy to"
    };
    // The live lines stay off the screen while the question is on it.
    let hidden = progress::hidden();
    eprintln!("{verb} {}?", names.join(", "));
    let ask = tokio::task::spawn_blocking(|| {
        dialoguer::Input::<String>::new()
            .with_prompt("Continue with deployment? (yes/no)")
            .interact_text()
            .map(|a| matches!(a.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
            .unwrap_or(false)
    });
    let answer = tokio::select! {
        a = ask => a.unwrap_or(false),
        _ = intr.wait() => false,
    };
    drop(hidden);
    let _ = decide.send(Some(answer));
}

/// Deploy `hosts` (already evaluated with their drvPaths); with `--json`,
/// print the run's document. The run's exit code.
pub async fn deploy(nix: &Nix, hosts: Vec<Host>, opts: Options, args: FleetArgs) -> i32 {
    let json = args.json;
    let (code, outcomes) = run(nix, hosts, opts, args).await;
    if json {
        print_document(code, &outcomes);
    }
    code
}

/// The run's `--json` document.
pub fn print_document(code: i32, outcomes: &[Outcome]) {
    let doc = serde_json::json!({ "version": crate::report::JSON_VERSION, "exitCode": code, "hosts": outcomes });
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
}

/// Deploy `hosts`: the exit code and every host's outcome (in name order).
pub async fn run(
    nix: &Nix,
    hosts: Vec<Host>,
    opts: Options,
    args: FleetArgs,
) -> (i32, Vec<Outcome>) {
    let opts = Arc::new(opts);
    let control = match target::control_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: could not create a directory for SSH control sockets: {e}");
            return (crate::error::exit::FAILED_NOTHING_CHANGED, vec![]);
        }
    };
    let ts = crate::report::log::timestamp();
    let kind = match opts.mode {
        Mode::BuildOnly => "build",
        Mode::Rollback => "rollback",
        Mode::Deploy | Mode::DryRun => "deploy",
    };
    let log_dir = opts.log_dir.join(kind);
    let intr = interrupt::install();
    let mut ctxs = Vec::new();
    let places = super::RunPlaces {
        log_dir: &log_dir,
        kind,
        ts: &ts,
        control: control.path(),
    };
    for h in hosts {
        // Keys are read here, one host and key at a time, before any
        // pipeline (and its progress output) starts: a key command may ask
        // for a passphrase on the terminal.
        let keys = if opts.mode == Mode::Deploy {
            keys::read(&h).await
        } else {
            Ok(vec![])
        };
        let ctx = match Ctx::open(h, &places, opts.clone(), nix.clone(), intr.clone(), keys) {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "error: could not create the log file in {}: {e}",
                    log_dir.display()
                );
                return (crate::error::exit::FAILED_NOTHING_CHANGED, vec![]);
            }
        };
        ctx.log.note(&format!(
            "pantheros {} {} goal={} target={}",
            env!("CARGO_PKG_VERSION"),
            match opts.mode {
                Mode::Deploy => "deploy",
                Mode::BuildOnly => "build-only",
                Mode::DryRun => "dry-run",
                Mode::Rollback => "rollback",
            },
            opts.goal.as_str(),
            ctx.target_label()
        ));
        ctxs.push(Arc::new(ctx));
    }
    progress::hosts(ctxs.iter().map(|c| c.host.name.as_str()));
    let master = match &args.master_log {
        Some(header) => match crate::report::log::HostLog::create(&log_dir, kind, "all", &ts) {
            Ok(m) => {
                m.text(header);
                Some(m)
            }
            Err(e) => {
                eprintln!(
                    "warning: could not create the run's log in {}: {e}",
                    log_dir.display()
                );
                None
            }
        },
        None => None,
    };

    // Without --keep-going, the first failed host stops the hosts that have
    // not started their activation.
    let (halt_tx, halt_rx) = watch::channel::<Option<String>>(None);
    let halt_tx = Arc::new(halt_tx);
    // The confirmation: asked once, unless --yes or nothing activates.
    let asks = matches!(opts.mode, Mode::Deploy | Mode::Rollback) && !args.yes;
    let (gate_tx, gate_rx) = mpsc::unbounded_channel();
    let (decide_tx, decide_rx) = watch::channel(None);
    let keeper = asks.then(|| {
        tokio::spawn(gatekeeper(
            gate_rx,
            decide_tx,
            ctxs.len(),
            opts.mode,
            intr.clone(),
            halt_rx.clone(),
        ))
    });

    // Every host's pipeline in its own task.
    let permits = Permits::new(args.jobs);
    let mut set = tokio::task::JoinSet::new();
    let mut by_task = BTreeMap::new();
    // `--canary N`: the first N hosts activate first; the others wait at
    // their gate until all of those succeeded.
    let canaries: Vec<String> = ctxs
        .iter()
        .take(args.canary)
        .map(|c| c.host.name.clone())
        .collect();
    let (canary_tx, canary_rx) = watch::channel::<CanaryResult>(None);
    let mut canary_results: BTreeMap<String, HostResult> = BTreeMap::new();
    for c in &ctxs {
        let sent = Arc::new(AtomicBool::new(false));
        let leave = Leave {
            tx: gate_tx.clone(),
            sent: sent.clone(),
        };
        let confirm = if asks {
            Confirm::Ask {
                tx: gate_tx.clone(),
                decision: decide_rx.clone(),
                sent,
            }
        } else {
            Confirm::Open
        };
        let gate = Gate {
            confirm,
            after_canaries: (!canaries.is_empty() && !canaries.contains(&c.host.name))
                .then(|| canary_rx.clone()),
            halt: (!args.keep_going).then(|| halt_rx.clone()),
        };
        let (c2, p, halt, keep_going) =
            (c.clone(), permits.clone(), halt_tx.clone(), args.keep_going);
        let span = tracing::info_span!("host", name = %c.host.name);
        let handle = set.spawn(async move {
            progress::state(&c2.host.name, progress::State::Running, "");
            let outcome = pipeline::run_host(&c2, gate, &p).instrument(span).await;
            let state = if outcome.result.succeeded() {
                progress::State::Done
            } else {
                progress::State::Failed
            };
            progress::state(&c2.host.name, state, outcome.result.word());
            if !keep_going && !outcome.result.succeeded() {
                stop_the_run(&halt, &outcome);
            }
            drop(leave);
            outcome
        });
        by_task.insert(handle.id(), c.clone());
    }
    drop(gate_tx);

    let mut outcomes = Vec::new();
    while let Some(joined) = set.join_next_with_id().await {
        let (ctx, outcome) = match joined {
            Ok((id, o)) => (by_task.get(&id).cloned(), o),
            Err(e) => {
                let Some(ctx) = by_task.get(&e.id()).cloned() else {
                    continue;
                };
                let o = crashed(&ctx, &e).await;
                (Some(ctx), o)
            }
        };
        if let Some(ctx) = ctx {
            ctx.target.close().await;
        }
        if !args.keep_going && !outcome.result.succeeded() {
            stop_the_run(&halt_tx, &outcome);
        }
        if let Some(m) = &master {
            m.note(&finished_line(&outcome));
        }
        if canaries.contains(&outcome.host) {
            canary_results.insert(outcome.host.clone(), outcome.result);
            if canary_results.len() == canaries.len() {
                let failed: Vec<String> = canary_results
                    .iter()
                    .filter(|(_, r)| !matches!(r, HostResult::Success | HostResult::Unchanged))
                    .map(|(h, r)| format!("{h} ({})", r.word()))
                    .collect();
                let verdict = if failed.is_empty() {
                    Ok(())
                } else {
                    Err(failed.join(", "))
                };
                let _ = canary_tx.send(Some(verdict));
            }
        }
        outcomes.push(outcome);
    }
    if let Some(k) = keeper {
        k.abort();
    }
    if args.rollback_succeeded && opts.mode == Mode::Deploy {
        outcomes = roll_back_succeeded(&ctxs, outcomes, control.path(), &log_dir, &ts).await;
    }
    outcomes.sort_by(|a, b| a.host.cmp(&b.host));
    let code = super::run_exit_code(outcomes.iter().map(|o| o.result));
    summary(&outcomes, opts.mode);
    if let Some(m) = &master {
        m.text(&render_summary(&outcomes, opts.mode, |_, text| {
            text.to_string()
        }));
    }
    if let Some(sig) = intr.fired() {
        eprintln!("(interrupted by {sig})");
    }
    (code, outcomes)
}

/// The first failed host stops the run (a later failure keeps that name).
fn stop_the_run(halt: &watch::Sender<Option<String>>, failed: &Outcome) {
    halt.send_if_modified(|h| {
        if h.is_some() {
            return false;
        }
        *h = Some(format!("{} ({})", failed.host, failed.result.word()));
        true
    });
}

/// `--rollback-succeeded`: when any host did not succeed, the hosts this run
/// switched go back to the generation they ran before, through the same
/// rollback pipeline as `pantheros rollback` (no second question). Their
/// outcomes say so: rolled back, or the rollback's own failure.
async fn roll_back_succeeded(
    ctxs: &[Arc<Ctx>],
    outcomes: Vec<Outcome>,
    control: &Path,
    log_dir: &Path,
    ts: &str,
) -> Vec<Outcome> {
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !matches!(o.result, HostResult::Success | HostResult::Unchanged))
        .map(|o| format!("{} ({})", o.host, o.result.word()))
        .collect();
    if failed.is_empty() {
        return outcomes;
    }
    let why = format!(
        "{} did not succeed (--rollback-succeeded)",
        failed.join(", ")
    );
    let mut out = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        let ctx = ctxs.iter().find(|c| c.host.name == o.host);
        let (Some(ctx), HostResult::Success, Some(before)) = (ctx, o.result, o.generation_before)
        else {
            out.push(o);
            continue;
        };
        say(
            &o.host,
            &format!("rolling back to generation {before}: {why}"),
        );
        let mut opts = (*ctx.opts).clone();
        opts.mode = Mode::Rollback;
        opts.rollback_to = Some(before);
        let rollback_logs = log_dir.with_file_name("rollback");
        let places = super::RunPlaces {
            log_dir: &rollback_logs,
            kind: "rollback",
            ts,
            control,
        };
        let back = match Ctx::open(
            ctx.host.clone(),
            &places,
            Arc::new(opts),
            ctx.nix.clone(),
            ctx.interrupt.clone(),
            Ok(vec![]),
        ) {
            Ok(c) => c,
            Err(e) => {
                out.push(Outcome {
                    result: HostResult::RollbackFailed,
                    error: Some(format!(
                        "{why}, but its rollback log could not be created: {e}"
                    )),
                    ..o
                });
                continue;
            }
        };
        let r = pipeline::run_host(&back, Gate::open(), &Permits::new(1)).await;
        back.target.close().await;
        out.push(match r.result {
            HostResult::Success => Outcome {
                result: HostResult::RolledBack,
                rollback_reason: Some(why.clone()),
                generation_after: r.generation_after,
                system_after: r.system_after,
                ..o
            },
            _ => Outcome {
                result: HostResult::RollbackFailed,
                error: Some(format!(
                    "{why}, but rolling this host back failed: {}",
                    r.error.unwrap_or_else(|| r.result.word().into())
                )),
                generation_after: r.generation_after,
                system_after: r.system_after,
                ..o
            },
        });
    }
    out
}

/// A host whose task panicked or was cancelled: its state is unknown. Its
/// lock is released if this run holds it; the outcome says to check by hand.
async fn crashed(ctx: &Ctx, e: &tokio::task::JoinError) -> Outcome {
    let why = if e.is_panic() {
        "the deployment task for this host crashed"
    } else {
        "the deployment task for this host was cancelled"
    };
    let msg = format!("{why}; the host's state is unknown: check it by hand");
    say(&ctx.host.name, &msg);
    ctx.log.note(&format!("{msg} ({e})"));
    if ctx.opts.mode != Mode::BuildOnly {
        preflight::unlock_after_crash(ctx).await;
    }
    let o = Outcome {
        host: ctx.host.name.clone(),
        target: ctx.target_label(),
        mode: ctx.opts.mode,
        goal: ctx.opts.goal,
        result: HostResult::Unknown,
        generation_before: None,
        generation_after: None,
        system_before: None,
        system_after: None,
        toplevel: None,
        rollback_reason: None,
        reboot_required: None,
        live: None,
        warnings: ctx.host.warnings.clone(),
        facts_read: BTreeMap::new(),
        error: Some(format!(
            "{msg}\n  hint: {}",
            super::activate::console_hint(&ctx.host.name)
        )),
        diff: None,
        durations_ms: BTreeMap::new(),
        keys: vec![],
        stage: None,
        log: ctx.log.path.clone(),
        started: chrono::Local::now().to_rfc3339(),
    };
    pipeline::write_info(ctx, &o);
    o
}

/// The end of a run: each host's result and, for several hosts, what
/// went wrong where. `paint` styles the result words (or not, for a file).
fn render_summary(outcomes: &[Outcome], mode: Mode, paint: fn(&str, &str) -> String) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "\n=== Summary ===");
    if mode == Mode::BuildOnly {
        let passed = outcomes
            .iter()
            .filter(|o| o.result == HostResult::Success)
            .count();
        let _ = writeln!(out, "  Passed: {passed}");
        let _ = writeln!(out, "  Failed: {}", outcomes.len() - passed);
        let _ = writeln!(out, "  Total:  {}", outcomes.len());
    }
    for o in outcomes {
        let (style, text) = match o.result {
            HostResult::Success => ("32", "ok"),
            HostResult::Unchanged => ("32", "unchanged"),
            HostResult::RebootRequired => ("1;33", "REBOOT REQUIRED (not switched live)"),
            HostResult::Failed => ("31", "FAILED (nothing changed)"),
            HostResult::Interrupted => ("33", "INTERRUPTED (nothing changed)"),
            HostResult::Unhealthy => ("1;33", "UNHEALTHY (deployed; health checks failed)"),
            HostResult::RolledBack => ("33", "ROLLED BACK"),
            HostResult::RollbackFailed => ("1;31", "ROLLBACK FAILED (manual action needed)"),
            HostResult::Unknown => ("1;31", "STATE UNKNOWN (check the host by hand)"),
        };
        let mark = paint(style, text);
        let _ = writeln!(out, "  {:<20} {mark}  (log: {})", o.host, o.log.display());
    }
    // Several hosts: what went wrong, all in one place at the end.
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !matches!(o.result, HostResult::Success | HostResult::Unchanged))
        .collect();
    if outcomes.len() > 1 && !failed.is_empty() {
        let _ = writeln!(out, "\n=== What went wrong ===");
        for o in failed {
            let at = o
                .stage
                .as_deref()
                .map(|s| format!(" at {s}"))
                .unwrap_or_default();
            let _ = writeln!(out, "{} ({}{at}):", o.host, o.result.word());
            let text = o
                .error
                .clone()
                .or_else(|| o.rollback_reason.clone())
                .or_else(|| o.reboot_required.clone())
                .unwrap_or_else(|| "no error was recorded".into());
            for l in text.lines() {
                let _ = writeln!(out, "  {l}");
            }
            let _ = writeln!(out, "  log: {}", o.log.display());
        }
    }
    out
}

fn summary(outcomes: &[Outcome], mode: Mode) {
    progress::clear();
    eprint!("{}", render_summary(outcomes, mode, crate::report::paint));
}
