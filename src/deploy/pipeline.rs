//! One host through the pipeline, in stage order. Every stage is a function
//! in its own file; this function only decides which runs next, and builds
//! the host's [`Outcome`] once, from what the stages returned.

use std::collections::BTreeMap;
use std::time::Instant;

use super::activate::{self, Activated, Request};
use super::build::{self, Built};
use super::diff::{self, Diff};
use super::fleet::{Approval, Gate, Permits};
use super::live::Live;
use super::preflight::{self, Current, Lock};
use super::{
    Ctx, Goal, HostResult, Mode, Outcome, StageError, connect, health, keys, rollback, ship,
};
use crate::inventory::UploadAt;
use crate::target::protocol::Status;
use crate::target::scripts;

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

/// What the run learnt, for the outcome.
#[derive(Default)]
struct Facts {
    built: Option<Built>,
    current: Option<Current>,
    diff: Option<Diff>,
    generation_after: Option<u64>,
    system_after: Option<String>,
    rollback_reason: Option<String>,
    reboot_required: Option<String>,
    live: Option<Live>,
    /// Facts read back from the host (`recordFacts`), for the command to
    /// record in the host's facts file.
    read: BTreeMap<String, String>,
    timings: BTreeMap<String, u64>,
    keys: Vec<keys::Uploaded>,
    /// The stage the run was in last (for a failure: where it failed).
    stage: Option<&'static str>,
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
    fn err(result: HostResult, e: StageError) -> End {
        End {
            result,
            error: Some(e),
            hand_over: false,
        }
    }
}

/// A test-only fault: `PANTHEROS_TEST_FAULT=HOST:STAGE` makes that host's
/// task panic when it reaches STAGE. Compiled out of release builds.
fn fault(ctx: &Ctx, stage: &str) {
    #[cfg(debug_assertions)]
    if let Ok(spec) = std::env::var("PANTHEROS_TEST_FAULT") {
        if spec == format!("{}:{stage}", ctx.host.name) {
            panic!("PANTHEROS_TEST_FAULT: {spec}");
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = (ctx, stage);
}

/// Run one stage that changes nothing on the host: timed, and abandoned
/// (its commands killed) when the run is interrupted.
async fn step<T>(
    ctx: &Ctx,
    facts: &mut Facts,
    stage: &'static str,
    fut: impl std::future::Future<Output = Result<T, StageError>>,
) -> Result<T, Stop> {
    fault(ctx, stage);
    if let Some(signal) = ctx.interrupt.fired() {
        return Err(Stop::Interrupted { signal, stage });
    }
    facts.stage = Some(stage);
    let t = Instant::now();
    let r = tokio::select! {
        r = fut => r.map_err(|e| {
            facts.stage = Some(e.stage.unwrap_or(stage));
            Stop::Failed(e)
        }),
        signal = ctx.interrupt.wait() => Err(Stop::Interrupted { signal, stage }),
    };
    let ms = t.elapsed().as_millis() as u64;
    ctx.log.note(&format!("stage {stage}: {ms} ms"));
    facts.timings.insert(stage.to_string(), ms);
    r
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
        .target
        .root_script(&scripts::READ_FACTS, &scripts::read_facts_args(commands))
        .timeout(std::time::Duration::from_secs(30));
    match ctx.log.run_ok(&cmd).await {
        Ok(out) => commands
            .keys()
            .filter_map(|name| {
                let value = crate::target::protocol::section(&out.stdout, name)
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

/// Write the keys due `at` (all of them with None) as stage `stage`,
/// timed when any key was due. Not abandoned on an interrupt: each key is
/// written whole, and the host may already be changing.
async fn write_keys(
    ctx: &Ctx,
    facts: &mut Facts,
    keys: &[keys::Key],
    at: Option<UploadAt>,
    stage: &'static str,
) -> Result<Vec<keys::Uploaded>, StageError> {
    facts.stage = Some(stage);
    let t = Instant::now();
    let uploaded = keys::upload(ctx, keys, at).await;
    if keys.iter().any(|k| at.is_none_or(|a| k.at == a)) {
        facts
            .timings
            .insert(stage.into(), t.elapsed().as_millis() as u64);
    }
    uploaded
}

/// A stage's result with its wall time in ms.
async fn timed<T>(
    fut: impl std::future::Future<Output = Result<T, StageError>>,
) -> Result<(T, u64), StageError> {
    let t = Instant::now();
    let v = fut.await?;
    Ok((v, t.elapsed().as_millis() as u64))
}

pub async fn run_host(ctx: &Ctx, gate: Gate, permits: &Permits) -> Outcome {
    for w in &ctx.host.warnings {
        ctx.log.note(&format!("evaluation warning: {w}"));
    }
    let started = Instant::now();
    let started_at = chrono::Local::now().to_rfc3339();
    let mut facts = Facts::default();
    let mut lock: Option<Lock> = None;
    let end = match stages(ctx, gate, permits, &mut facts, &mut lock).await {
        Ok(end) => end,
        Err(Stop::Failed(e)) => End::err(HostResult::Failed, e),
        Err(Stop::Interrupted { signal, stage }) => End::err(
            HostResult::Interrupted,
            StageError::new(format!(
                "interrupted by {signal} during {stage}; nothing was changed"
            )),
        ),
    };
    let mut end = end;
    let record = (!end.hand_over && super::record::worth_recording(end.result))
        .then(|| record(ctx, &facts, end.result, &started_at));
    if let Some(mut l) = lock.take() {
        if end.hand_over {
            match preflight::hand_over(ctx, l).await {
                Some(back) => l = back,
                None => return finish_outcome(ctx, facts, end, started, started_at),
            }
        }
        if let Err(why) = preflight::unlock(ctx, l, record.as_ref()).await {
            end = end.lock_left(ctx, &why);
        }
    }
    if ctx.opts.mode == Mode::Deploy && end.result.succeeded() {
        facts.read = read_facts(ctx).await;
    }
    finish_outcome(ctx, facts, end, started, started_at)
}

/// This run's deploy record, which the lock's release writes on the host.
fn record(ctx: &Ctx, facts: &Facts, result: HostResult, started_at: &str) -> super::record::Record {
    super::record::Record {
        version: 1,
        run_id: ctx.opts.run_id.clone(),
        mode: ctx.opts.mode,
        goal: ctx.opts.goal,
        origin: ctx.opts.origin.clone(),
        started: started_at.to_string(),
        finished: chrono::Local::now().to_rfc3339(),
        toplevel: facts
            .system_after
            .clone()
            .or_else(|| facts.built.as_ref().map(|b| b.toplevel.clone())),
        generation: facts.generation_after,
        result,
        system_before: facts
            .current
            .as_ref()
            .and_then(|c| c.running.clone().or_else(|| c.system.clone())),
        generation_before: facts.current.as_ref().and_then(|c| c.generation),
    }
}

fn finish_outcome(
    ctx: &Ctx,
    mut facts: Facts,
    end: End,
    started: Instant,
    started_at: String,
) -> Outcome {
    facts
        .timings
        .insert("total".into(), started.elapsed().as_millis() as u64);
    outcome(ctx, facts, end, started_at)
}

async fn stages(
    ctx: &Ctx,
    mut gate: Gate,
    permits: &Permits,
    facts: &mut Facts,
    lock: &mut Option<Lock>,
) -> Result<End, Stop> {
    let mode = ctx.opts.mode;
    let goal = ctx.opts.goal;
    // A key that could not be read on the deployer fails its host first.
    let keys = ctx.keys.as_ref().map_err(|e| Stop::Failed(e.clone()))?;
    if mode == Mode::Rollback && !ctx.host.deployment.keys.is_empty() {
        ctx.say(
            "note: keys are not versioned with generations: the rolled-back system finds the keys as they are now \
             (upload older values with `pantheros keys upload` if it needs them)",
        );
    }
    let permit = permits.acquire().await;

    // Build (or, for `rollback`, choose the existing generation).
    let (built, generation) = if mode == Mode::Rollback {
        let chosen = step(ctx, facts, "choose", rollback::choose(ctx)).await?;
        (chosen.built, Some(chosen.generation))
    } else {
        // The SSH handshake runs while the toplevel builds (not when the
        // build itself runs over SSH: two masters would race).
        let local_build = !ctx.host.deployment.build_on_target || ctx.target.is_local();
        if mode != Mode::BuildOnly && local_build {
            let connect = async {
                timed(connect::connect(ctx))
                    .await
                    .map_err(|e| e.at("connect"))
            };
            let both = async { tokio::try_join!(timed(build::build(ctx)), connect) };
            let ((built, build_ms), ((), connect_ms)) = step(ctx, facts, "build", both).await?;
            ctx.log.note(&format!(
                "build: {build_ms} ms, connect: {connect_ms} ms (side by side)"
            ));
            facts.timings.insert("build".into(), build_ms);
            facts.timings.insert("connect".into(), connect_ms);
            (built, None)
        } else {
            (step(ctx, facts, "build", build::build(ctx)).await?, None)
        }
    };
    facts.built = Some(built.clone());
    if mode == Mode::BuildOnly {
        ctx.say("built");
        return Ok(End::ok(HostResult::Success));
    }

    // A dead deployment's lock, removed on request (never a live one's).
    if ctx.opts.break_lock {
        step(
            ctx,
            facts,
            "break-lock",
            preflight::break_lock(ctx, ctx.opts.force),
        )
        .await?;
    }

    // Preflight: the lock, and where the host stands, before any copy.
    let noop_if = (mode == Mode::Deploy && goal == Goal::Switch).then_some(built.toplevel.as_str());
    let (current, l) = step(ctx, facts, "preflight", preflight::preflight(ctx, noop_if)).await?;
    *lock = l;
    facts.current = Some(current.clone());
    if current.already_has(&built.toplevel, goal) && mode != Mode::DryRun {
        facts.generation_after = current.generation;
        facts.system_after = current.system.clone();
        if keys.is_empty() {
            ctx.say("already running this system: nothing to do");
            return Ok(End::ok(HostResult::Unchanged));
        }
        // The system is current; its keys are written again (a reboot may
        // have emptied /run/keys, a secret may have changed).
        ctx.say("already running this system; writing its keys");
        return match write_keys(ctx, facts, keys, None, "keys").await {
            Ok(u) => {
                facts.keys = u;
                Ok(End::ok(HostResult::Unchanged))
            }
            Err(e) => Err(Stop::Failed(StageError {
                message: format!("the system is unchanged, but {}", e.message),
                ..e
            })),
        };
    }

    step(ctx, facts, "copy", ship::ship(ctx, &built)).await?;
    let plan = step(ctx, facts, "diff", diff::plan(ctx, &current, &built)).await?;
    facts.diff = Some(plan.diff.clone());
    facts.live = Some(plan.live.clone());
    ctx.log.note(&plan.live.line());
    if mode == Mode::DryRun {
        crate::report::progress::block(&format!(
            "Changes for {}:\n{}  {}\n",
            ctx.name(),
            plan.diff.render(),
            plan.live.line()
        ));
        return Ok(End::ok(HostResult::Success));
    }
    // NixOS would refuse to switch live: stop before the host changes.
    if let Some(end) = refuse_live(ctx, facts, &plan.live) {
        return Ok(end);
    }

    // One confirmation for the whole run.
    drop(permit);
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
        plan.diff.render(),
        plan.live.line()
    );
    fault(ctx, "confirm");
    match gate.approve(ctx, text).await {
        Approval::Go => {}
        Approval::NotConfirmed => {
            if let Some(signal) = ctx.interrupt.fired() {
                return Err(Stop::Interrupted {
                    signal,
                    stage: "the confirmation",
                });
            }
            return Ok(End::err(
                HostResult::Failed,
                StageError::new("not confirmed; nothing was changed"),
            ));
        }
        Approval::Halted(failed) => return Ok(halted(&failed)),
        Approval::CanariesFailed(names) => {
            return Ok(End::err(
                HostResult::Failed,
                StageError::new(format!(
                    "not activated: the canary {names} did not succeed, so the rollout stopped; nothing was changed on this host"
                ))
                .hint("fix the canary, then deploy again"),
            ));
        }
    }
    let _permit = permits.acquire().await;
    if let Some(signal) = ctx.interrupt.fired() {
        return Err(Stop::Interrupted {
            signal,
            stage: "the confirmation",
        });
    }
    // A host may have failed while this one waited for a job slot.
    if let Some(failed) = gate.halted() {
        return Ok(halted(&failed));
    }

    // Keys due before the activation. From here on the host changes: the
    // uploads are not abandoned half-way (each key is written atomically).
    let uploaded = write_keys(ctx, facts, keys, Some(UploadAt::PreActivation), "keys").await;
    facts.keys = uploaded.map_err(|e| {
        Stop::Failed(StageError {
            hint: e.hint.clone().or(Some(
                "the system was not activated; fix the key and deploy again".into(),
            )),
            ..e
        })
    })?;

    // Activate: from here on the system changes, and is never abandoned.
    fault(ctx, "activate");
    facts.stage = Some("activate");
    let t = Instant::now();
    let request = Request {
        toplevel: built.toplevel.clone(),
        generation,
        baseline: current.failed_units.clone(),
    };
    let activated = activate::activate(ctx, &request).await?;
    facts
        .timings
        .insert("activate".into(), t.elapsed().as_millis() as u64);
    let activated = match activated {
        Activated::Kept if goal != Goal::Boot => {
            fault(ctx, "health");
            facts.stage = Some("health");
            let t = Instant::now();
            let checked = health::health(ctx, current.systemd, &current.failed_units).await;
            facts
                .timings
                .insert("health".into(), t.elapsed().as_millis() as u64);
            match checked {
                Ok(()) => Activated::Kept,
                Err(problems) if ctx.interrupt.fired().is_some() => {
                    return Ok(interrupted_while_active(
                        ctx,
                        facts,
                        Status::Confirmed,
                        Some(problems),
                    )
                    .await);
                }
                Err(problems) => {
                    let roll = ctx
                        .opts
                        .rollback_on_health
                        .unwrap_or(ctx.host.deployment.rollback_on_health_failure);
                    if !roll {
                        (facts.generation_after, facts.system_after) = activate::observe(ctx).await;
                        return Ok(End::err(
                            HostResult::Unhealthy,
                            StageError::new(format!(
                                "health checks failed; rollback is disabled, so the new generation stays active: {problems}"
                            ))
                            .hint(format!(
                                "fix the host, or roll it back with `pantheros rollback {}`",
                                ctx.name()
                            )),
                        ));
                    }
                    ctx.say("health checks failed; rolling back");
                    let t = Instant::now();
                    // The reason is written on the target: no secrets in it.
                    let reason = ctx.log.redact(&format!("health checks failed: {problems}"));
                    let r = rollback::roll_back(ctx, reason).await;
                    facts
                        .timings
                        .insert("rollback".into(), t.elapsed().as_millis() as u64);
                    r
                }
            }
        }
        other => other,
    };
    let end = finish(ctx, facts, &current, activated).await;
    if end.result != HostResult::Success || mode != Mode::Deploy {
        return Ok(end);
    }

    // Keys due after a confirmed, healthy switch (never after a rollback).
    match write_keys(
        ctx,
        facts,
        keys,
        Some(UploadAt::PostActivation),
        "keys-post",
    )
    .await
    {
        Ok(u) => {
            facts.keys.extend(u);
            Ok(end)
        }
        Err(e) => Ok(End::err(
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
        )),
    }
}

/// A goal NixOS would not carry out live (switch or test past a changed
/// switch inhibitor, test of an incompatible init), refused before the host
/// changes, with the ways on. None: go ahead.
fn refuse_live(ctx: &Ctx, facts: &mut Facts, live: &Live) -> Option<End> {
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
    facts.reboot_required = Some(why.clone());
    let command = if ctx.opts.mode == Mode::Rollback {
        "rollback"
    } else {
        "deploy"
    };
    Some(End::err(
        HostResult::RebootRequired,
        StageError::new(why).hint(format!(
            "run it with `--goal boot` and reboot the host to run the new system, or, to switch live \
             anyway (NIXOS_NO_CHECK=1; it may leave the running system unstable), with `--force-switch`: \
             pantheros {command} {} --goal boot",
            ctx.name()
        )),
    ))
}

/// The end of an activation, from the target's final state.
/// Not activated: another host failed and the run does not keep going.
fn halted(failed: &str) -> End {
    End::err(
        HostResult::Failed,
        StageError::new(format!(
            "not activated: {failed} failed, so the run stopped before this host changed; nothing was changed on this host"
        ))
        .hint("fix that host and deploy again, or pass --keep-going to deploy the others regardless"),
    )
}

async fn finish(ctx: &Ctx, facts: &mut Facts, current: &Current, activated: Activated) -> End {
    (facts.generation_after, facts.system_after) = activate::observe(ctx).await;
    match activate::verify(current, activated, facts.system_after.as_deref()) {
        Activated::Kept => {
            facts.system_after = facts.built.as_ref().map(|b| b.toplevel.clone());
            ctx.say(&format!(
                "{}: generation {} is active",
                if ctx.opts.mode == Mode::Rollback {
                    "rolled back"
                } else {
                    "deployed"
                },
                facts
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
            facts.reboot_required = Some(reason);
            End::ok(HostResult::RebootRequired)
        }
        Activated::RolledBack { reason } => {
            facts.rollback_reason = Some(reason.clone());
            ctx.say(&format!("rolled back: {reason}"));
            End::err(
                HostResult::RolledBack,
                StageError::new(format!("rolled back: {reason}")),
            )
        }
        Activated::RollbackFailed { reason } => {
            facts.rollback_reason = Some(reason.clone());
            End::err(
                HostResult::RollbackFailed,
                StageError::new(format!("rollback failed: {reason}"))
                    .hint(activate::console_hint(ctx.name())),
            )
        }
        Activated::Unknown { last } => {
            facts.rollback_reason = Some(format!("state unknown: {last}"));
            End::err(
                HostResult::Unknown,
                StageError::new(format!(
                    "the host's state is unknown: the activation did not reach a final state (last status: {last})"
                ))
                .hint(activate::console_hint(ctx.name())),
            )
        }
        Activated::Interrupted { status } => {
            interrupted_while_active(ctx, facts, status, None).await
        }
    }
}

/// Interrupted after the activation started: the watchdog goes on by
/// itself; say where it stands.
async fn interrupted_while_active(
    ctx: &Ctx,
    facts: &mut Facts,
    status: Status,
    health: Option<String>,
) -> End {
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
    ctx.log.note(&msg);
    (facts.generation_after, facts.system_after) = activate::observe(ctx).await;
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
fn outcome(ctx: &Ctx, facts: Facts, end: End, started_at: String) -> Outcome {
    let current = facts.current.unwrap_or_default();
    let error = end.error.as_ref().map(|e| ctx.log.redact(&e.render()));
    if let Some(e) = &error {
        ctx.log.note(&format!("error: {e}"));
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
        generation_after: facts.generation_after,
        system_before: current.system,
        system_after: facts.system_after,
        toplevel: facts.built.map(|b| b.toplevel),
        rollback_reason: facts.rollback_reason.map(|r| ctx.log.redact(&r)),
        reboot_required: facts.reboot_required.map(|r| ctx.log.redact(&r)),
        live: facts.live,
        warnings: ctx.host.warnings.clone(),
        facts_read: facts.read,
        error,
        diff: facts.diff,
        durations_ms: facts.timings,
        keys: facts.keys,
        stage: (!matches!(end.result, HostResult::Success | HostResult::Unchanged))
            .then_some(facts.stage)
            .flatten()
            .map(String::from),
        log: ctx.log.path.clone(),
        started: started_at,
    };
    write_info(ctx, &o);
    o
}

/// The `.info` file: the outcome as JSON, beside the log.
pub fn write_info(ctx: &Ctx, o: &Outcome) {
    let info = ctx.log.path.with_extension("info");
    match serde_json::to_vec_pretty(o) {
        Ok(bytes) => {
            if let Err(e) = super::fleet::write_atomic(&info, &bytes) {
                eprintln!("warning: could not write {}: {e}", info.display());
            }
        }
        Err(e) => eprintln!("warning: could not encode {}: {e}", info.display()),
    }
}
