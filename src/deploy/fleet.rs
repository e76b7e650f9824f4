//! Running the pipeline for many hosts: every host's [`pipeline::run_host`]
//! in its own task (at most `--jobs` working at once), one confirmation for
//! the whole set (the [`super::gate`]), interrupts, and the end of the run: every
//! selected host has an outcome (a crashed task's host too), a summary, the
//! `--json` document and one exit code.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::gate::{Gate, GateRules, Gates, Permits};
use super::{Ctx, HostResult, Mode, Options, Outcome, interrupt, keys, pipeline, summary};
use crate::host;
use crate::inventory::Host;
use crate::nix::Nix;
use crate::report::log::HostLog;
use crate::report::progress;
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
    /// Selected hosts that failed to evaluate, (host, Nix's message): with
    /// `--keep-going` the others run, and these are failed outcomes.
    pub unevaluated: Vec<(String, String)>,
}

/// Deploy `hosts` (already evaluated with their drvPaths); with `--json`,
/// print the run's document. The run's exit code.
pub async fn deploy(nix: &Nix, hosts: Vec<Host>, opts: Options, args: FleetArgs) -> i32 {
    let json = args.json;
    let (code, outcomes) = run(nix, hosts, opts, args).await;
    if json {
        summary::print_document(code, &outcomes);
    }
    code
}

/// Deploy `hosts`: the exit code and every host's outcome (in name order).
pub async fn run(
    nix: &Nix,
    hosts: Vec<Host>,
    opts: Options,
    args: FleetArgs,
) -> (i32, Vec<Outcome>) {
    let opts = Arc::new(opts);
    let control = match host::control_dir() {
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
    let display = opts.display.clone();
    let intr = interrupt::install(&display);
    let places = super::RunPlaces {
        log_dir: &log_dir,
        kind,
        ts: &ts,
        control: control.path(),
    };
    let Some(ctxs) = open_hosts(nix, hosts, &opts, &places, &intr).await else {
        return (crate::error::exit::FAILED_NOTHING_CHANGED, vec![]);
    };
    display.hosts(ctxs.iter().map(|c| c.host.name.as_str()));
    let master = args
        .master_log
        .as_deref()
        .and_then(|header| master_log(header, &places));

    let rules = GateRules {
        ask: matches!(opts.mode, Mode::Deploy | Mode::Rollback) && !args.yes,
        mode: opts.mode,
        canaries: ctxs
            .iter()
            .take(args.canary)
            .map(|c| c.host.name.clone())
            .collect(),
        keep_going: args.keep_going,
        display: display.clone(),
    };
    let mut gates = Gates::new(ctxs.len(), rules, intr.clone());
    let permits = Permits::new(args.jobs);
    let mut set = tokio::task::JoinSet::new();
    let mut by_task = BTreeMap::new();
    for c in &ctxs {
        let handle = set.spawn(host_task(c.clone(), &gates, permits.clone()));
        by_task.insert(handle.id(), c.clone());
    }

    let mut outcomes = Vec::new();
    while let Some(joined) = set.join_next_with_id().await {
        let (ctx, outcome) = match joined {
            Ok((id, o)) => (by_task.get(&id).cloned(), o),
            Err(e) => {
                let Some(ctx) = by_task.get(&e.id()).cloned() else {
                    continue;
                };
                let o = summary::crashed(&ctx, &e).await;
                (Some(ctx), o)
            }
        };
        if let Some(ctx) = ctx {
            ctx.session.target.close().await;
        }
        gates.finished(&outcome);
        if let Some(m) = &master {
            m.note(&summary::finished_line(&outcome));
        }
        outcomes.push(outcome);
    }
    drop(gates);
    for (name, message) in &args.unevaluated {
        let o = summary::unevaluated(name, message, &opts, &places);
        if let Some(m) = &master {
            m.note(&summary::finished_line(&o));
        }
        outcomes.push(o);
    }
    if args.rollback_succeeded && opts.mode == Mode::Deploy {
        outcomes = roll_back_succeeded(&ctxs, outcomes, control.path(), &log_dir, &ts).await;
    }
    outcomes.sort_by(|a, b| a.host.cmp(&b.host));
    let code = super::run_exit_code(outcomes.iter().map(|o| o.result));
    summary::summary(&outcomes, opts.mode, &display);
    if let Some(m) = &master {
        m.text(&summary::render_summary(
            &outcomes,
            opts.mode,
            &|_, text| text.to_string(),
        ));
    }
    if let Some(sig) = intr.fired() {
        eprintln!("(interrupted by {sig})");
    }
    (code, outcomes)
}

/// Each host's context: its log opened, its keys read. Keys are read here,
/// one host and key at a time, before any pipeline (and its progress
/// output) starts: a key command may ask for a passphrase on the terminal.
/// None (said on stderr) when a log cannot be created.
async fn open_hosts(
    nix: &Nix,
    hosts: Vec<Host>,
    opts: &Arc<Options>,
    places: &super::RunPlaces<'_>,
    intr: &interrupt::Interrupt,
) -> Option<Vec<Arc<Ctx>>> {
    let mut ctxs = Vec::new();
    for h in hosts {
        let keys = if opts.mode == Mode::Deploy {
            keys::read(&h).await
        } else {
            Ok(vec![])
        };
        let ctx = match Ctx::open(h, places, opts.clone(), nix.clone(), intr.clone(), keys) {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "error: could not create the log file in {}: {e}",
                    places.log_dir.display()
                );
                return None;
            }
        };
        ctx.session.log.note(&format!(
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
    Some(ctxs)
}

/// The run's own log (`--master-log`), started with `header`.
fn master_log(header: &str, places: &super::RunPlaces<'_>) -> Option<HostLog> {
    match HostLog::create(places.log_dir, places.kind, "all", places.ts) {
        Ok(m) => {
            m.text(header);
            Some(m)
        }
        Err(e) => {
            eprintln!(
                "warning: could not create the run's log in {}: {e}",
                places.log_dir.display()
            );
            None
        }
    }
}

/// One host's task: its pipeline, its line on the display, and (before its
/// [`Leave`] goes) its failure reported to the run.
fn host_task(
    ctx: Arc<Ctx>,
    gates: &Gates,
    permits: Permits,
) -> impl std::future::Future<Output = Outcome> + Send + 'static {
    let (gate, leave) = gates.for_host(&ctx.host.name);
    let halter = gates.halter();
    let span = tracing::info_span!("host", name = %ctx.host.name);
    async move {
        let display = &ctx.opts.display;
        display.state(&ctx.host.name, progress::State::Running, "");
        let outcome = pipeline::run_host(&ctx, gate, &permits)
            .instrument(span)
            .await;
        let state = if outcome.result.succeeded() {
            progress::State::Done
        } else {
            progress::State::Failed
        };
        display.state(&ctx.host.name, state, outcome.result.word());
        halter.finished(&outcome);
        drop(leave);
        outcome
    }
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
        ctx.say(&format!("rolling back to generation {before}: {why}"));
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
        back.session.target.close().await;
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
