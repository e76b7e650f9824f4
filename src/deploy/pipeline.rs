//! One host through the pipeline, in phase order:
//!
//! 1. [`prepare`]: build (or choose the generation), connect, lock, where
//!    the host stands, copy, plan (dry-activate, diff, live switch);
//! 2. the [`Gate`]: the one confirmation, canaries, halts, a job slot;
//! 3. [`change`]: keys, activation (with its proof), health, rollback;
//! 4. the record and the lock's release, then the [`Outcome`].
//!
//! Every stage is a function in its own file; the phases only decide which
//! runs next. Each phase returns what it learnt as a value, and
//! [`run_host`] builds the host's outcome once, from those values.

use std::collections::BTreeMap;
use std::time::Instant;

use super::activate::{self, Activated, Request};
use super::build::{self, Built};
use super::diff::{self, Plan};
use super::gate::{Gate, Permits, Refused};
use super::live::Live;
use super::preflight::{self, Current, Lock};
use super::{
    Ctx, Goal, HostResult, Mode, Outcome, StageError, connect, health, keys, rollback, ship,
};
use crate::host::protocol::Status;
use crate::host::scripts;
use crate::inventory::UploadAt;

/// The stages of a host's run, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// `rollback`: the generation to go back to.
    Choose,
    Build,
    Connect,
    BreakLock,
    Preflight,
    /// Keys written again on a host already running the system.
    Keys,
    Copy,
    Diff,
    Confirm,
    /// Keys due before the activation.
    KeysPre,
    Activate,
    Health,
    Rollback,
    /// `--reboot`: boot the new system once, prove it, keep it.
    Reboot,
    KeysPost,
}

impl Stage {
    /// The stage's name in logs, `--json` (`durationsMs`, `stage`) and
    /// messages.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Choose => "choose",
            Stage::Build => "build",
            Stage::Connect => "connect",
            Stage::BreakLock => "break-lock",
            Stage::Preflight => "preflight",
            Stage::Keys | Stage::KeysPre => "keys",
            Stage::Copy => "copy",
            Stage::Diff => "diff",
            Stage::Confirm => "the confirmation",
            Stage::Activate => "activate",
            Stage::Health => "health",
            Stage::Rollback => "rollback",
            Stage::Reboot => "reboot",
            Stage::KeysPost => "keys-post",
        }
    }

    /// Its name for `PANTHEROS_TEST_FAULT`.
    #[cfg(feature = "test-fault")]
    fn fault_name(self) -> &'static str {
        match self {
            Stage::Confirm => "confirm",
            s => s.name(),
        }
    }
}

/// Why a host's run stopped before its end.
enum Stop {
    Failed(StageError),
    Interrupted {
        signal: &'static str,
        stage: &'static str,
    },
}

impl From<StageError> for Stop {
    fn from(e: StageError) -> Stop {
        Stop::Failed(e)
    }
}

/// How the run ended.
struct End {
    result: HostResult,
    error: Option<StageError>,
    /// The activation still runs: its watchdog releases the lock.
    hand_over: bool,
}

impl End {
    fn ok(result: HostResult) -> End {
        End {
            result,
            error: None,
            hand_over: false,
        }
    }
    fn err(result: HostResult, e: StageError) -> End {
        End {
            result,
            error: Some(e),
            hand_over: false,
        }
    }
    fn stopped(stop: Stop) -> End {
        match stop {
            Stop::Failed(e) => End::err(HostResult::Failed, e),
            Stop::Interrupted { signal, stage } => End::err(
                HostResult::Interrupted,
                StageError::new(format!(
                    "interrupted by {signal} during {stage}; nothing was changed"
                )),
            ),
        }
    }
    /// The host's deploy lock could not be given back: the error says so
    /// and how to free it (a run that succeeded says it too).
    fn lock_left(mut self, ctx: &Ctx, why: &str) -> End {
        let msg = preflight::lock_left_message(ctx, why);
        match &mut self.error {
            Some(e) => e.message = format!("{}\n  {msg}", e.message),
            None => {
                ctx.say(&format!("warning: {msg}"));
                self.error = Some(StageError::new(msg));
            }
        }
        self
    }
}

/// Where the run is and how long each stage took: the one thing every
/// stage writes, through [`Trail::step`] or [`Trail::change`].
#[derive(Default)]
struct Trail {
    /// The stage the run was in last (for a failure: where it failed).
    stage: Option<&'static str>,
    timings: BTreeMap<String, u64>,
}

impl Trail {
    /// Run one stage that changes nothing on the host: timed, and abandoned
    /// (its commands killed) when the run is interrupted.
    async fn step<T>(
        &mut self,
        ctx: &Ctx,
        stage: Stage,
        fut: impl std::future::Future<Output = Result<T, StageError>>,
    ) -> Result<T, Stop> {
        let name = self.enter(ctx, stage);
        if let Some(signal) = ctx.interrupt.fired() {
            return Err(Stop::Interrupted {
                signal,
                stage: name,
            });
        }
        let t = Instant::now();
        let r = tokio::select! {
            r = fut => r.map_err(|e| {
                self.stage = Some(e.stage.unwrap_or(name));
                Stop::Failed(e)
            }),
            signal = ctx.interrupt.wait() => Err(Stop::Interrupted { signal, stage: name }),
        };
        self.time(ctx, stage, t);
        r
    }

    /// Run one stage that changes the host: timed, never abandoned.
    async fn change<T>(
        &mut self,
        ctx: &Ctx,
        stage: Stage,
        fut: impl std::future::Future<Output = T>,
    ) -> T {
        self.enter(ctx, stage);
        let t = Instant::now();
        let v = fut.await;
        self.time(ctx, stage, t);
        v
    }

    fn enter(&mut self, ctx: &Ctx, stage: Stage) -> &'static str {
        fault(ctx, stage);
        self.stage = Some(stage.name());
        stage.name()
    }

    fn time(&mut self, ctx: &Ctx, stage: Stage, since: Instant) {
        self.record(ctx, stage.name(), since.elapsed().as_millis() as u64);
    }

    fn record(&mut self, ctx: &Ctx, name: &str, ms: u64) {
        ctx.session.log.note(&format!("stage {name}: {ms} ms"));
        self.timings.insert(name.to_string(), ms);
    }
}

/// A test-only fault: `PANTHEROS_TEST_FAULT=HOST:STAGE` makes that host's
/// task panic when it reaches STAGE. Only in builds with the `test-fault`
/// feature, which only the tests enable.
fn fault(ctx: &Ctx, stage: Stage) {
    #[cfg(feature = "test-fault")]
    if let Ok(spec) = std::env::var("PANTHEROS_TEST_FAULT") {
        if spec == format!("{}:{}", ctx.host.name, stage.fault_name()) {
            panic!("PANTHEROS_TEST_FAULT: {spec}");
        }
    }
    #[cfg(not(feature = "test-fault"))]
    let _ = (ctx, stage);
}

/// What the run learnt about the host before it changed anything.
#[derive(Default)]
struct Seen {
    built: Option<Built>,
    current: Option<Current>,
    plan: Option<Plan>,
    lock: Option<Lock>,
    reboot_required: Option<String>,
}

/// A host ready for the question: what it runs, what it would run, and
/// the lock it holds.
struct Prepared {
    built: Built,
    /// `rollback`: the generation chosen.
    generation: Option<u64>,
    current: Current,
    plan: Plan,
    lock: Option<Lock>,
    /// The job slot it was prepared in (see [`Gate::pass`]).
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// `--reboot` applies to this host: boot the new system once.
    reboot: bool,
}

/// How [`prepare`] ended: ready for the gate, or done (a no-op, a dry run,
/// a build, a refusal, a failure) with what it saw and what it changed (a
/// no-op's keys).
enum Prepare {
    Ready(Prepared),
    Done(End, Seen, Changed),
}

/// What [`change`] did.
#[derive(Default)]
struct Changed {
    generation_after: Option<u64>,
    system_after: Option<String>,
    rollback_reason: Option<String>,
    reboot_required: Option<String>,
    keys: Vec<keys::Uploaded>,
    /// What `--reboot` saw.
    reboot: Option<Box<super::reboot::RebootReport>>,
}

/// Everything the outcome and the record are made of.
struct Learnt {
    seen: Seen,
    changed: Changed,
    facts_read: BTreeMap<String, String>,
}

pub async fn run_host(ctx: &Ctx, gate: Gate, permits: &Permits) -> Outcome {
    for w in &ctx.host.warnings {
        ctx.session.log.note(&format!("evaluation warning: {w}"));
    }
    let started = Instant::now();
    let started_at = chrono::Local::now().to_rfc3339();
    let mut trail = Trail::default();

    let (end, mut seen, changed) = match prepare(ctx, &mut trail, permits).await {
        Prepare::Done(end, seen, changed) => (end, seen, changed),
        Prepare::Ready(prepared) => {
            approve_and_change(ctx, &mut trail, gate, permits, prepared).await
        }
    };

    // The record, written on the host by the lock's release.
    let mut end = end;
    let record = (!end.hand_over && super::record::worth_recording(end.result))
        .then(|| record(ctx, &seen, &changed, end.result, &started_at));
    if let Some(l) = seen.lock.take() {
        let l = if end.hand_over {
            preflight::hand_over(ctx, l).await
        } else {
            Some(l)
        };
        if let Some(l) = l
            && let Err(why) = preflight::unlock(ctx, l, record.as_ref()).await
        {
            end = end.lock_left(ctx, &why);
        }
    }
    let facts_read = if ctx.opts.mode == Mode::Deploy && end.result.succeeded() && !end.hand_over {
        read_facts(ctx).await
    } else {
        BTreeMap::new()
    };
    trail.record(ctx, "total", started.elapsed().as_millis() as u64);
    let learnt = Learnt {
        seen,
        changed,
        facts_read,
    };
    outcome(ctx, learnt, trail, end, started_at)
}

/// Phase 1: everything before the question. Nothing on the host changes
/// here except the deploy lock (and the store paths copied).
async fn prepare(ctx: &Ctx, trail: &mut Trail, permits: &Permits) -> Prepare {
    let mode = ctx.opts.mode;
    let goal = ctx.opts.goal;
    let mut seen = Seen::default();
    macro_rules! or_done {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(stop) => return Prepare::Done(End::stopped(stop), seen, Changed::default()),
            }
        };
    }
    // A key that could not be read on the deployer fails its host first.
    let keys = or_done!(ctx.keys.as_ref().map_err(|e| Stop::Failed(e.clone())));
    if mode == Mode::Rollback && !ctx.host.deployment.keys.is_empty() {
        ctx.say(
            "note: keys are not versioned with generations: the rolled-back system finds the keys as they are now \
             (upload older values with `pantheros keys upload` if it needs them)",
        );
    }
    let permit = permits.acquire().await;

    let (built, generation) = or_done!(build_or_choose(ctx, trail).await);
    seen.built = Some(built.clone());
    if mode == Mode::BuildOnly {
        ctx.say("built");
        return Prepare::Done(End::ok(HostResult::Success), seen, Changed::default());
    }

    // A dead deployment's lock, removed on request (never a live one's).
    if ctx.opts.break_lock {
        or_done!(
            trail
                .step(
                    ctx,
                    Stage::BreakLock,
                    preflight::break_lock(ctx, ctx.opts.force)
                )
                .await
        );
    }

    // Preflight: the lock, and where the host stands, before any copy.
    let noop_if = (mode == Mode::Deploy && goal == Goal::Switch).then_some(built.toplevel.as_str());
    let (current, lock) = or_done!(
        trail
            .step(ctx, Stage::Preflight, preflight::preflight(ctx, noop_if))
            .await
    );
    seen.lock = lock;
    seen.current = Some(current.clone());
    if current.already_has(&built.toplevel, goal) && mode != Mode::DryRun {
        let (end, keys) = keep(ctx, trail, keys).await;
        let changed = Changed {
            generation_after: current.generation,
            system_after: current.system.clone(),
            keys,
            ..Changed::default()
        };
        return Prepare::Done(end, seen, changed);
    }

    or_done!(
        trail
            .step(ctx, Stage::Copy, ship::ship(ctx, &built, &current))
            .await
    );
    let plan = or_done!(
        trail
            .step(ctx, Stage::Diff, diff::plan(ctx, &current, &built))
            .await
    );
    seen.plan = Some(plan.clone());
    ctx.session.log.note(&plan.live.line());
    if mode == Mode::DryRun {
        ctx.opts.display.block(&format!(
            "Changes for {}:\n{}  {}\n",
            ctx.name(),
            plan.diff.render(&ctx.opts.display),
            plan.live.line()
        ));
        return Prepare::Done(End::ok(HostResult::Success), seen, Changed::default());
    }
    // `--reboot` for this host: its boot loader must boot a generation once.
    let reboot = wants_reboot(ctx, &plan.live);
    if reboot {
        ctx.say(&format!(
            "will reboot into the new system ({})",
            match plan.live.reasons().as_slice() {
                [] => "--reboot".to_string(),
                r => r.join("; "),
            }
        ));
        or_done!(
            trail
                .step(
                    ctx,
                    Stage::Reboot,
                    super::reboot::loader(ctx, &built.toplevel),
                )
                .await
        );
    }
    // NixOS would refuse to switch live: stop before the host changes.
    if let Some((why, end)) = (!reboot).then(|| refuse_live(ctx, &plan.live)).flatten() {
        seen.reboot_required = Some(why);
        return Prepare::Done(end, seen, Changed::default());
    }
    Prepare::Ready(Prepared {
        built,
        generation,
        current,
        plan,
        lock: seen.lock.take(),
        permit,
        reboot,
    })
}

/// The system to deploy: built (with the SSH handshake beside the build),
/// or, for `rollback`, the existing generation chosen.
async fn build_or_choose(ctx: &Ctx, trail: &mut Trail) -> Result<(Built, Option<u64>), Stop> {
    let mode = ctx.opts.mode;
    if mode == Mode::Rollback {
        let chosen = trail
            .step(ctx, Stage::Choose, rollback::choose(ctx))
            .await?;
        return Ok((chosen.built, Some(chosen.generation)));
    }
    // The SSH handshake runs while the toplevel builds (not when the
    // build itself runs over SSH: two masters would race).
    let local_build = !ctx.host.deployment.build_on_target || ctx.session.target.is_local();
    if mode == Mode::BuildOnly || !local_build {
        return Ok((
            trail.step(ctx, Stage::Build, build::build(ctx)).await?,
            None,
        ));
    }
    let connect = async {
        timed(connect::connect(ctx))
            .await
            .map_err(|e| e.at(Stage::Connect.name()))
    };
    let both = async { tokio::try_join!(timed(build::build(ctx)), connect) };
    let ((built, build_ms), ((), connect_ms)) = trail.step(ctx, Stage::Build, both).await?;
    ctx.session.log.note(&format!(
        "build: {build_ms} ms, connect: {connect_ms} ms (side by side)"
    ));
    trail.record(ctx, Stage::Build.name(), build_ms);
    trail.record(ctx, Stage::Connect.name(), connect_ms);
    Ok((built, None))
}

/// A stage's result with its wall time in ms.
async fn timed<T>(
    fut: impl std::future::Future<Output = Result<T, StageError>>,
) -> Result<(T, u64), StageError> {
    let t = Instant::now();
    let v = fut.await?;
    Ok((v, t.elapsed().as_millis() as u64))
}

/// The host already runs this system: nothing to activate, but its keys
/// are written again (a reboot may have emptied /run/keys, a secret may
/// have changed).
async fn keep(ctx: &Ctx, trail: &mut Trail, keys: &[keys::Key]) -> (End, Vec<keys::Uploaded>) {
    if keys.is_empty() {
        ctx.say("already running this system: nothing to do");
        return (End::ok(HostResult::Unchanged), vec![]);
    }
    ctx.say("already running this system; writing its keys");
    match trail
        .change(ctx, Stage::Keys, keys::upload(&ctx.session, keys, None))
        .await
    {
        Ok(uploaded) => (End::ok(HostResult::Unchanged), uploaded),
        Err(e) => (
            End::err(
                HostResult::Failed,
                StageError {
                    message: format!("the system is unchanged, but {}", e.message),
                    ..e
                },
            ),
            vec![],
        ),
    }
}

/// Phase 2 and 3: the question, then the change. What the outcome needs
/// comes back as values: the end, what was seen, what changed.
async fn approve_and_change(
    ctx: &Ctx,
    trail: &mut Trail,
    mut gate: Gate,
    permits: &Permits,
    p: Prepared,
) -> (End, Seen, Changed) {
    let Prepared {
        built,
        generation,
        current,
        plan,
        lock,
        permit,
        reboot,
    } = p;
    let from = match current.generation {
        Some(g) => format!("generation {g}"),
        None => "no previous generation".into(),
    };
    let to = match generation {
        Some(g) => format!("generation {g}"),
        None => "new".into(),
    };
    let text = format!(
        "Changes for {} ({from} -> {to}):\n{}  {}\n",
        ctx.name(),
        plan.diff.render(&ctx.opts.display),
        plan.live.line()
    );
    fault(ctx, Stage::Confirm);
    let passed = gate.pass(ctx, permits, permit, text).await;
    let (end, changed) = match passed {
        Err(Refused::Stopped(result, e)) => (End::err(result, e), Changed::default()),
        Err(Refused::Interrupted(signal)) => {
            let stage = Stage::Confirm.name();
            (
                End::stopped(Stop::Interrupted { signal, stage }),
                Changed::default(),
            )
        }
        Ok(_permit) => change(ctx, trail, &built, generation, &current, reboot).await,
    };
    let seen = Seen {
        built: Some(built),
        current: Some(current),
        plan: Some(plan),
        lock,
        reboot_required: None,
    };
    (end, seen, changed)
}

/// Phase 3: keys, activation, health (and the rollback they may call for),
/// then the keys due after it. From here on the host changes: nothing is
/// abandoned half-way.
async fn change(
    ctx: &Ctx,
    trail: &mut Trail,
    built: &Built,
    generation: Option<u64>,
    current: &Current,
    reboot: bool,
) -> (End, Changed) {
    let mut changed = Changed::default();
    let keys = match ctx.keys.as_ref() {
        Ok(k) => k.as_slice(),
        Err(e) => return (End::err(HostResult::Failed, e.clone()), changed),
    };
    // Keys due before the activation (each written atomically).
    match upload_keys(ctx, trail, keys, UploadAt::PreActivation).await {
        Ok(u) => changed.keys = u,
        Err(e) => {
            let hint = e.hint.clone().or(Some(
                "the system was not activated; fix the key and deploy again".into(),
            ));
            return (
                End::err(HostResult::Failed, StageError { hint, ..e }),
                changed,
            );
        }
    }

    if reboot {
        let r = trail
            .change(
                ctx,
                Stage::Reboot,
                super::reboot::reboot(ctx, &built.toplevel, generation, current),
            )
            .await;
        changed.reboot = Some(Box::new(r.report));
        let end = finish(ctx, &mut changed, built, current, r.activated, r.observed).await;
        let end = match r.unhealthy {
            Some(p) if end.result == HostResult::Success => unhealthy_kept(ctx, &p),
            _ => end,
        };
        return post_keys(ctx, trail, keys, end, changed).await;
    }

    let request = Request {
        toplevel: built.toplevel.clone(),
        generation,
        baseline: current.failed_units.clone(),
        systemd: current.systemd,
    };
    let (activated, proof) = match trail
        .change(ctx, Stage::Activate, activate::activate(ctx, &request))
        .await
    {
        Ok(a) => a,
        Err(e) => return (End::err(HostResult::Failed, e), changed),
    };
    // What the proof read stays true only while nothing else changed.
    let mut observed = proof.observed;
    let activated = match activated {
        Activated::Kept if ctx.opts.goal != Goal::Boot => {
            match judge_health(ctx, trail, current, proof.health).await {
                Ok(Activated::Kept) => Activated::Kept,
                Ok(back) => {
                    observed = None;
                    back
                }
                Err(end) => {
                    (changed.generation_after, changed.system_after) = match observed {
                        Some(o) => o,
                        None => activate::observe(ctx).await,
                    };
                    return (end, changed);
                }
            }
        }
        other => other,
    };
    let end = finish(ctx, &mut changed, built, current, activated, observed).await;
    post_keys(ctx, trail, keys, end, changed).await
}

/// Keys due after a confirmed, healthy switch (never after a rollback).
async fn post_keys(
    ctx: &Ctx,
    trail: &mut Trail,
    keys: &[keys::Key],
    end: End,
    mut changed: Changed,
) -> (End, Changed) {
    if end.result != HostResult::Success || ctx.opts.mode != Mode::Deploy {
        return (end, changed);
    }
    match upload_keys(ctx, trail, keys, UploadAt::PostActivation).await {
        Ok(u) => {
            changed.keys.extend(u);
            (end, changed)
        }
        Err(e) => (
            End::err(
                HostResult::Unhealthy,
                StageError {
                    message: format!(
                        "the new generation is active and healthy, but its post-activation keys were not all written: {}",
                        e.message
                    ),
                    hint: Some(format!(
                        "fix the cause, then `pantheros keys upload {}`",
                        ctx.name()
                    )),
                    ..e
                },
            ),
            changed,
        ),
    }
}

/// The keys due `at`, as their own stage when any is due.
async fn upload_keys(
    ctx: &Ctx,
    trail: &mut Trail,
    keys: &[keys::Key],
    at: UploadAt,
) -> Result<Vec<keys::Uploaded>, StageError> {
    let stage = match at {
        UploadAt::PreActivation => Stage::KeysPre,
        UploadAt::PostActivation => Stage::KeysPost,
    };
    if keys.iter().any(|k| k.at == at) {
        trail
            .change(ctx, stage, keys::upload(&ctx.session, keys, Some(at)))
            .await
    } else {
        Ok(vec![])
    }
}

/// The health checks after a kept activation: kept, rolled back (the
/// rollback's own result), or the end when the new generation stays
/// although it is unhealthy (rollback disabled, or interrupted).
async fn judge_health(
    ctx: &Ctx,
    trail: &mut Trail,
    current: &Current,
    first: Option<health::Round>,
) -> Result<Activated, End> {
    let checked = trail
        .change(
            ctx,
            Stage::Health,
            health::health(ctx, current.systemd, &current.failed_units, first),
        )
        .await;
    let Err(problems) = checked else {
        return Ok(Activated::Kept);
    };
    if ctx.interrupt.fired().is_some() {
        return Err(interrupted_while_active(
            ctx,
            Status::Confirmed,
            Some(problems),
        ));
    }
    let roll = ctx
        .opts
        .rollback_on_health
        .unwrap_or(ctx.host.deployment.rollback_on_health_failure);
    if !roll {
        return Err(unhealthy_kept(ctx, &problems));
    }
    ctx.say("health checks failed; rolling back");
    // The reason is written on the target: no secrets in it.
    let reason = ctx
        .session
        .log
        .redact(&format!("health checks failed: {problems}"));
    Ok(trail
        .change(ctx, Stage::Rollback, rollback::roll_back(ctx, reason))
        .await)
}

/// The new generation stays although its health checks failed (rollback
/// is disabled for the host or the run).
fn unhealthy_kept(ctx: &Ctx, problems: &str) -> End {
    End::err(
        HostResult::Unhealthy,
        StageError::new(format!(
            "health checks failed; rollback is disabled, so the new generation stays active: {problems}"
        ))
        .hint(format!(
            "fix the host, or roll it back with `pantheros rollback {}`",
            ctx.name()
        )),
    )
}

/// `--reboot` applies to this host (any goal but test; `if-needed` only
/// when the plan has a reason).
fn wants_reboot(ctx: &Ctx, live: &Live) -> bool {
    use super::Reboot;
    match ctx.opts.reboot {
        Reboot::Never => false,
        Reboot::Always => true,
        Reboot::IfNeeded => !live.reasons().is_empty(),
    }
}

/// The host's `recordFacts`, read back in one remote run: name → value
/// (empty values left out). A host that cannot be asked gives none, and
/// says so: the deploy itself stands.
async fn read_facts(ctx: &Ctx) -> BTreeMap<String, String> {
    let commands = &ctx.host.deployment.record_facts;
    if commands.is_empty() {
        return BTreeMap::new();
    }
    let cmd = ctx
        .session
        .target
        .root_script(&scripts::READ_FACTS, &scripts::read_facts_args(commands))
        .timeout(std::time::Duration::from_secs(30));
    match ctx.session.run_ok(&cmd).await {
        Ok(out) => commands
            .keys()
            .filter_map(|name| {
                let value = crate::host::protocol::section(&out.stdout, name)
                    .join("\n")
                    .trim()
                    .to_string();
                (!value.is_empty()).then(|| (name.clone(), value))
            })
            .collect(),
        Err(f) => {
            ctx.say(&format!(
                "note: the facts to read back could not be read ({}); they are recorded at the next deploy",
                f.how
            ));
            BTreeMap::new()
        }
    }
}

/// This run's deploy record, which the lock's release writes on the host.
fn record(
    ctx: &Ctx,
    seen: &Seen,
    changed: &Changed,
    result: HostResult,
    started_at: &str,
) -> super::record::Record {
    let current = seen.current.as_ref();
    super::record::Record {
        version: 1,
        run_id: ctx.opts.run_id.clone(),
        mode: ctx.opts.mode,
        goal: ctx.opts.goal,
        origin: ctx.opts.origin.clone(),
        started: started_at.to_string(),
        finished: chrono::Local::now().to_rfc3339(),
        toplevel: changed
            .system_after
            .clone()
            .or_else(|| seen.built.as_ref().map(|b| b.toplevel.clone())),
        generation: changed.generation_after,
        result,
        system_before: current.and_then(|c| c.running.clone().or_else(|| c.system.clone())),
        generation_before: current.and_then(|c| c.generation),
    }
}

/// A goal NixOS would not carry out live (switch or test past a changed
/// switch inhibitor, test of an incompatible init), refused before the host
/// changes, with the ways on. None: go ahead.
fn refuse_live(ctx: &Ctx, live: &Live) -> Option<(String, End)> {
    let goal = ctx.opts.goal;
    let why = if live.inhibited() && goal != Goal::Boot && !ctx.opts.force_switch {
        let which: Vec<String> = live.inhibitors.iter().map(|i| i.describe()).collect();
        format!(
            "live switch refused by switch inhibitors ({}); nothing was changed",
            which.join(", ")
        )
    } else if live.init_changed && goal == Goal::Test {
        "the new system cannot be activated live (its init is incompatible with the running one); nothing was changed".into()
    } else {
        return None;
    };
    ctx.say(&format!("REBOOT REQUIRED: {why}"));
    let command = if ctx.opts.mode == Mode::Rollback {
        "rollback"
    } else {
        "deploy"
    };
    Some((
        why.clone(),
        End::err(
            HostResult::RebootRequired,
            StageError::new(why).hint(format!(
            "reboot into it safely with `pantheros {command} {name} --reboot` (booted once, kept only once it \
             proves itself), or run it with `--goal boot` and reboot the host yourself, or, to switch live \
             anyway (NIXOS_NO_CHECK=1; it may leave the running system unstable), with `--force-switch`: \
             pantheros {command} {name} --goal boot",
            name = ctx.name()
        )),
        ),
    ))
}

/// The end of an activation, from the target's final state.
async fn finish(
    ctx: &Ctx,
    changed: &mut Changed,
    built: &Built,
    current: &Current,
    activated: Activated,
    observed: Option<(Option<u64>, Option<String>)>,
) -> End {
    // The generation as the proof read it, or read again now.
    (changed.generation_after, changed.system_after) = match observed {
        Some(o) => o,
        None => activate::observe(ctx).await,
    };
    match activate::verify(current, activated, changed.system_after.as_deref()) {
        Activated::Kept => {
            changed.system_after = Some(built.toplevel.clone());
            ctx.say(&format!(
                "{}: generation {} is active",
                if ctx.opts.mode == Mode::Rollback {
                    "rolled back"
                } else {
                    "deployed"
                },
                changed
                    .generation_after
                    .map(|g| g.to_string())
                    .unwrap_or("?".into())
            ));
            End::ok(HostResult::Success)
        }
        Activated::NotStarted { reason } => End::err(
            HostResult::Failed,
            StageError::new(format!("activation did not start: {reason}")),
        ),
        Activated::RebootRequired { reason } => {
            ctx.say(&format!("REBOOT REQUIRED: {reason}"));
            changed.reboot_required = Some(reason);
            End::ok(HostResult::RebootRequired)
        }
        Activated::RolledBack { reason } => {
            changed.rollback_reason = Some(reason.clone());
            ctx.say(&format!("rolled back: {reason}"));
            End::err(
                HostResult::RolledBack,
                StageError::new(format!("rolled back: {reason}")),
            )
        }
        Activated::RollbackFailed { reason } => {
            changed.rollback_reason = Some(reason.clone());
            End::err(
                HostResult::RollbackFailed,
                StageError::new(format!("rollback failed: {reason}")).hint(activate::console_hint(
                    ctx.name(),
                    &ctx.host.deployment.profile,
                )),
            )
        }
        Activated::Unknown { last } => {
            changed.rollback_reason = Some(format!("state unknown: {last}"));
            End::err(
                HostResult::Unknown,
                StageError::new(format!(
                    "the host's state is unknown: the activation did not reach a final state (last status: {last})"
                ))
                .hint(activate::console_hint(ctx.name(), &ctx.host.deployment.profile)),
            )
        }
        Activated::Interrupted { status } => interrupted_while_active(ctx, status, None),
    }
}

/// Interrupted after the activation started: the watchdog goes on by
/// itself; say where it stands (the caller observes the host).
fn interrupted_while_active(ctx: &Ctx, status: Status, health: Option<String>) -> End {
    let timeout = ctx.host.deployment.confirm_timeout;
    let msg = match &status {
        Status::Confirmed | Status::Done => format!(
            "interrupted after the activation was confirmed: the new generation stays active{}",
            match health {
                Some(p) => format!("; health checks did not pass yet ({p})"),
                None => "; health checks did not run".into(),
            }
        ),
        Status::RolledBack(r) => format!("interrupted; the host had already rolled back ({r})"),
        s if ctx.magic() => format!(
            "interrupted during activation (status: {}); the host's watchdog rolls it back within {timeout}s \
             unless it was confirmed",
            s.describe()
        ),
        s => format!(
            "interrupted during activation (status: {}); without magic rollback the host keeps what it activates",
            s.describe()
        ),
    };
    ctx.say(&msg);
    ctx.session.log.note(&msg);
    let mut end = End::err(
        HostResult::Unknown,
        StageError::new(msg).hint(format!(
            "check the host with `pantheros rollback {} --list` once the watchdog has finished; \
             it keeps the deploy lock until then, and the next deploy needs no --break-lock",
            ctx.name()
        )),
    );
    end.hand_over = !status.is_final();
    end
}

/// Assemble the host's outcome, once, and write it next to the log.
fn outcome(ctx: &Ctx, learnt: Learnt, trail: Trail, end: End, started_at: String) -> Outcome {
    let Learnt {
        seen,
        changed,
        facts_read,
    } = learnt;
    let current = seen.current.unwrap_or_default();
    let (diff, live) = match seen.plan {
        Some(p) => (Some(p.diff), Some(p.live)),
        None => (None, None),
    };
    let error = end
        .error
        .as_ref()
        .map(|e| ctx.session.log.redact(&e.render()));
    if let Some(e) = &error {
        ctx.session.log.note(&format!("error: {e}"));
        if !matches!(end.result, HostResult::RolledBack | HostResult::Success) {
            let label = match end.result {
                HostResult::Failed => "FAILED (nothing changed)".to_string(),
                HostResult::Interrupted => "INTERRUPTED (nothing changed)".to_string(),
                HostResult::Unhealthy => "UNHEALTHY (the new generation stays active)".to_string(),
                HostResult::RebootRequired => "REBOOT REQUIRED".to_string(),
                other => format!("{other:?}"),
            };
            ctx.say(&format!("{label}: {e}"));
        }
    }
    let o = Outcome {
        host: ctx.host.name.clone(),
        target: ctx.target_label(),
        mode: ctx.opts.mode,
        goal: ctx.opts.goal,
        result: end.result,
        generation_before: current.generation,
        generation_after: changed.generation_after,
        system_before: current.system,
        system_after: changed.system_after,
        toplevel: seen.built.map(|b| b.toplevel),
        rollback_reason: changed.rollback_reason.map(|r| ctx.session.log.redact(&r)),
        reboot_required: changed
            .reboot_required
            .or(seen.reboot_required)
            .map(|r| ctx.session.log.redact(&r)),
        rebooted: changed.reboot.as_ref().is_some_and(|r| r.rebooted),
        reboot: changed.reboot.map(|r| *r),
        live,
        warnings: ctx.host.warnings.clone(),
        facts_read,
        error,
        diff,
        durations_ms: trail.timings,
        keys: changed.keys,
        stage: (!matches!(end.result, HostResult::Success | HostResult::Unchanged))
            .then_some(trail.stage)
            .flatten()
            .map(String::from),
        log: ctx.session.log.path.clone(),
        started: started_at,
    };
    super::summary::write_info(ctx, &o);
    o
}
