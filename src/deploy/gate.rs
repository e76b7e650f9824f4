//! The gate every host passes between its plan and its activation: the one
//! confirmation for the whole run, the canaries (`--canary N`), the halt
//! when another host failed (without `--keep-going`) and the `--jobs`
//! permits. [`Gates`] wires them for a run; each host's task holds its
//! [`Gate`] and passes it with [`Gate::pass`].

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::{Ctx, HostResult, Mode, Outcome, StageError, interrupt};

/// At most `--jobs` hosts work at once; a host waiting for the confirmation
/// holds no permit.
#[derive(Clone)]
pub struct Permits(Arc<Semaphore>);

impl Permits {
    pub fn new(n: usize) -> Permits {
        Permits(Arc::new(Semaphore::new(n.max(1))))
    }
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().acquire_owned().await.ok()
    }
}

enum GateMsg {
    /// This host is ready to activate; here is what changes.
    Ready { host: String, text: String },
    /// This host needs no confirmation (it finished, failed or crashed).
    Left,
}

/// The confirmation every host passes before it changes: open (`--yes`, so
/// a host goes on without waiting for the others), or one question for
/// all, asked when every host is ready or gone.
enum Confirm {
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
    tx: Option<mpsc::UnboundedSender<GateMsg>>,
    sent: Arc<AtomicBool>,
}

impl Drop for Leave {
    fn drop(&mut self) {
        if let Some(tx) = &self.tx
            && !self.sent.load(Ordering::SeqCst)
        {
            let _ = tx.send(GateMsg::Left);
        }
    }
}

/// Which host's failure stopped the run (without `--keep-going`): hosts
/// that have not started their activation stop at their gate.
type Halt = watch::Receiver<Option<String>>;

/// How the canaries of a rollout ended: `Err` names the ones that did not
/// succeed.
type CanaryResult = Option<Result<(), String>>;

/// What a host passes between its plan and its activation: the
/// confirmation, then, for a host after the canaries, their success.
pub struct Gate {
    confirm: Confirm,
    after_canaries: Option<watch::Receiver<CanaryResult>>,
    halt: Option<Halt>,
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

/// Why a host did not pass its gate.
pub enum Refused {
    /// Interrupted while it waited: nothing was changed.
    Interrupted(&'static str),
    /// Stopped with this result and error: nothing was changed.
    Stopped(HostResult, StageError),
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

    /// Does this gate wait for anything (a question, canaries)?
    fn waits(&self) -> bool {
        !matches!(self.confirm, Confirm::Open) || self.after_canaries.is_some()
    }

    /// Show `text` (what changes), wait for the confirmation and the
    /// canaries, then for a job slot: the permit the activation holds, or
    /// why the host stops here. `held` is the slot the host planned in: a
    /// gate that waits for nothing (`--yes`, no canaries) keeps it, so the
    /// host goes on at once instead of queueing behind hosts still
    /// planning; a gate that waits gives it up while it waits.
    pub async fn pass(
        &mut self,
        ctx: &Ctx,
        permits: &Permits,
        held: Option<OwnedSemaphorePermit>,
        text: String,
    ) -> Result<Option<OwnedSemaphorePermit>, Refused> {
        let interrupted = |ctx: &Ctx| ctx.interrupt.fired().map(Refused::Interrupted);
        let held = if self.waits() {
            drop(held);
            None
        } else {
            held
        };
        match self.approve(ctx, text).await {
            Approval::Go => {}
            Approval::NotConfirmed => {
                return Err(interrupted(ctx).unwrap_or(Refused::Stopped(
                    HostResult::Failed,
                    StageError::new("not confirmed; nothing was changed"),
                )));
            }
            Approval::Halted(failed) => return Err(halted(&failed)),
            Approval::CanariesFailed(names) => {
                return Err(Refused::Stopped(
                    HostResult::Failed,
                    StageError::new(format!(
                        "not activated: the canary {names} did not succeed, so the rollout stopped; nothing was changed on this host"
                    ))
                    .hint("fix the canary, then deploy again"),
                ));
            }
        }
        let permit = match held {
            Some(p) => Some(p),
            None => permits.acquire().await,
        };
        if let Some(stop) = interrupted(ctx) {
            return Err(stop);
        }
        // A host may have failed while this one waited for a job slot.
        if let Some(failed) = self.halted() {
            return Err(halted(&failed));
        }
        Ok(permit)
    }

    async fn approve(&mut self, ctx: &Ctx, text: String) -> Approval {
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

/// Not activated: another host failed and the run does not keep going.
fn halted(failed: &str) -> Refused {
    Refused::Stopped(
        HostResult::Failed,
        StageError::new(format!(
            "not activated: {failed} failed, so the run stopped before this host changed; nothing was changed on this host"
        ))
        .hint("fix that host and deploy again, or pass --keep-going to deploy the others regardless"),
    )
}

impl Confirm {
    async fn approve(&mut self, ctx: &Ctx, text: String) -> bool {
        match self {
            Confirm::Open => {
                ctx.opts.display.block(&text);
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

/// Tells the run that a host failed (without `--keep-going`, the first one
/// stops every host that has not started its activation).
#[derive(Clone)]
pub struct Halter(Option<Arc<watch::Sender<Option<String>>>>);

impl Halter {
    /// The first failed host stops the run (a later failure keeps that name).
    pub fn finished(&self, o: &Outcome) {
        let Some(halt) = &self.0 else { return };
        if o.result.succeeded() {
            return;
        }
        halt.send_if_modified(|h| {
            if h.is_some() {
                return false;
            }
            *h = Some(format!("{} ({})", o.host, o.result.word()));
            true
        });
    }
}

/// One run's gates: the question (asked once, by its own task), the halt
/// and the canaries' verdict.
pub struct Gates {
    ask: Option<(
        mpsc::UnboundedSender<GateMsg>,
        watch::Receiver<Option<bool>>,
    )>,
    keeper: Option<tokio::task::JoinHandle<()>>,
    halter: Halter,
    halt_rx: Option<Halt>,
    canaries: Vec<String>,
    canary_tx: watch::Sender<CanaryResult>,
    canary_rx: watch::Receiver<CanaryResult>,
    canary_results: BTreeMap<String, HostResult>,
}

/// How a run's gates behave.
pub struct GateRules {
    /// Ask once before any host changes (not with `--yes`, not when nothing
    /// activates).
    pub ask: bool,
    pub mode: Mode,
    /// The first hosts, activated before the others (`--canary N`).
    pub canaries: Vec<String>,
    pub keep_going: bool,
    /// Where the question and the plans are shown.
    pub display: crate::report::Display,
}

impl Gates {
    /// Gates for `hosts` hosts; the question's task starts now.
    pub fn new(hosts: usize, rules: GateRules, intr: interrupt::Interrupt) -> Gates {
        let (halt_tx, halt_rx) = watch::channel::<Option<String>>(None);
        let (canary_tx, canary_rx) = watch::channel::<CanaryResult>(None);
        let (ask, keeper) = if rules.ask {
            let (gate_tx, gate_rx) = mpsc::unbounded_channel();
            let (decide_tx, decide_rx) = watch::channel(None);
            let keeper = tokio::spawn(gatekeeper(
                gate_rx,
                decide_tx,
                hosts,
                rules.mode,
                intr,
                halt_rx.clone(),
                rules.display.clone(),
            ));
            (Some((gate_tx, decide_rx)), Some(keeper))
        } else {
            (None, None)
        };
        let keep_going = rules.keep_going;
        Gates {
            ask,
            keeper,
            halter: Halter((!keep_going).then(|| Arc::new(halt_tx))),
            halt_rx: (!keep_going).then_some(halt_rx),
            canaries: rules.canaries,
            canary_tx,
            canary_rx,
            canary_results: BTreeMap::new(),
        }
    }

    /// The gate of one host, and the [`Leave`] its task holds.
    pub fn for_host(&self, name: &str) -> (Gate, Leave) {
        let sent = Arc::new(AtomicBool::new(false));
        let (confirm, tx) = match &self.ask {
            Some((tx, decision)) => (
                Confirm::Ask {
                    tx: tx.clone(),
                    decision: decision.clone(),
                    sent: sent.clone(),
                },
                Some(tx.clone()),
            ),
            None => (Confirm::Open, None),
        };
        let after_canaries = (!self.canaries.is_empty()
            && !self.canaries.iter().any(|c| c == name))
        .then(|| self.canary_rx.clone());
        let gate = Gate {
            confirm,
            after_canaries,
            halt: self.halt_rx.clone(),
        };
        (gate, Leave { tx, sent })
    }

    pub fn halter(&self) -> Halter {
        self.halter.clone()
    }

    /// A host finished: it may stop the run, and the last canary's outcome
    /// lets the others through (or not).
    pub fn finished(&mut self, o: &Outcome) {
        self.halter.finished(o);
        if !self.canaries.contains(&o.host) {
            return;
        }
        self.canary_results.insert(o.host.clone(), o.result);
        if self.canary_results.len() == self.canaries.len() {
            let failed: Vec<String> = self
                .canary_results
                .iter()
                .filter(|(_, r)| !matches!(r, HostResult::Success | HostResult::Unchanged))
                .map(|(h, r)| format!("{h} ({})", r.word()))
                .collect();
            let verdict = if failed.is_empty() {
                Ok(())
            } else {
                Err(failed.join(", "))
            };
            let _ = self.canary_tx.send(Some(verdict));
        }
    }
}

impl Drop for Gates {
    fn drop(&mut self) {
        if let Some(k) = &self.keeper {
            k.abort();
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
    display: crate::report::Display,
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
        display.block(&format!(
            "not asking for confirmation: {failed} failed, so nothing is activated \
             (--keep-going deploys the other hosts regardless)\n"
        ));
        let _ = decide.send(Some(false));
        return;
    }
    for text in ready.values() {
        display.block(text);
    }
    if !std::io::stdin().is_terminal() {
        display.block(
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
    let hidden = display.hidden();
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
