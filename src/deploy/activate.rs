//! Stage: activate the new system on the target, detached from the SSH
//! session under a watchdog (activate.sh), then prove that the host still
//! accepts a *fresh* SSH connection; without that proof the watchdog rolls
//! the host back by itself. The result is the target's final state, read
//! from its status line: anything that is not final is `Unknown`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::preflight::Current;
use super::{Ctx, StageError};
use crate::generations;
use crate::host::protocol::{Status, section, words};
use crate::host::scripts::{self, Activation};

/// What to activate.
#[derive(Debug, Clone)]
pub struct Request {
    pub toplevel: String,
    /// Switch the profile to this existing generation (rollback) instead of
    /// adding a new one.
    pub generation: Option<u64>,
    /// Units failed before this run: the baseline exit 4 is judged against.
    pub baseline: Vec<String>,
    /// The host runs systemd (its health checks ask systemd too).
    pub systemd: bool,
}

/// What the proof's command also read on the host, once the watchdog took
/// the confirmation: the profile's generation and system (what
/// [`observe`] would read again), and the first round of health checks.
#[derive(Debug, Clone, Default)]
pub struct Proof {
    pub observed: Option<(Option<u64>, Option<String>)>,
    pub health: Option<super::health::Round>,
}

/// How an activation ended, as the target reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activated {
    /// The new system is active (confirmed, or done without magic rollback).
    Kept,
    /// Nothing changed: the activation did not start.
    NotStarted { reason: String },
    /// The target went back to the previous generation by itself.
    RolledBack { reason: String },
    /// Going back failed too: manual action is needed.
    RollbackFailed { reason: String },
    /// NixOS would not activate the new system live: it is the boot
    /// default (or, refused by the pre-switch checks, nothing changed).
    RebootRequired { reason: String },
    /// The wait ended while the host was mid-change (or unreachable).
    Unknown { last: String },
    /// Interrupted while activating; the watchdog goes on by itself.
    Interrupted { status: Status },
}

/// How waiting for the watchdog ended.
pub(super) enum Wait {
    Reached(Status),
    TimedOut(Option<Status>),
    Interrupted(Option<Status>),
}

/// The activation's status, or `None` when the host could not be asked.
pub(super) async fn read_status(ctx: &Ctx, fresh: bool) -> Option<Status> {
    let args = scripts::dir_args(&ctx.state_dir());
    let cmd = if fresh {
        ctx.session
            .target
            .fresh_root_script(&scripts::STATUS, &args)
    } else {
        ctx.session
            .target
            .root_script(&scripts::STATUS, &args)
            .timeout(Duration::from_secs(20))
    };
    status_of(ctx, ctx.session.run(&cmd).await)
}

/// How a launch ended.
enum Launched {
    /// Started, and the status its wait reached (not yet `until` when the
    /// wait ran out).
    Reached(Status),
    /// Started, but its wait gave no answer (the connection dropped): ask
    /// again with [`wait_status`].
    Started,
    /// Interrupted once it had started; the status then.
    Interrupted(Status),
}

/// Start activate.sh detached on the target and wait, up to `deadline`,
/// until its status starts with `until` (a [`words`] word) or is final:
/// the first wait rides the launch's own command; only when that gives no
/// answer in time does [`wait_status`] ask again.
pub(super) async fn launch_and_wait(
    ctx: &Ctx,
    unit: &str,
    what: &Activation,
    until: &str,
    deadline: Duration,
) -> Result<Wait, StageError> {
    Ok(
        match launch(ctx, unit, what, until, deadline.as_secs()).await? {
            Launched::Reached(s) if s.is_final() || s.word() == until => Wait::Reached(s),
            Launched::Interrupted(s) => Wait::Interrupted(Some(s)),
            Launched::Reached(_) | Launched::Started => {
                wait_status(ctx, until, deadline, false).await
            }
        },
    )
}

/// Start activate.sh detached on the target, and in the same command wait
/// on the host (up to `seconds`, at most 60) until its status starts with
/// `until` or is final. The launch itself is never abandoned: an interrupt
/// stops the command only once the host said "launched".
async fn launch(
    ctx: &Ctx,
    unit: &str,
    what: &Activation,
    until: &str,
    seconds: u64,
) -> Result<Launched, StageError> {
    let wait = seconds.clamp(1, 60);
    let args = scripts::launch_args(&ctx.state_dir(), unit, Some((until, wait)), what);
    let cmd = ctx
        .session
        .target
        .root_script_text(&scripts::LAUNCH, scripts::launch_text(), &args)
        .timeout(Duration::from_secs(60 + wait));
    let started = std::sync::atomic::AtomicBool::new(false);
    let news = tokio::sync::Notify::new();
    let watch = |line: &str| {
        if line.trim() == "launched" {
            started.store(true, Ordering::SeqCst);
            news.notify_one();
        }
    };
    let run = ctx.session.run_watching(&cmd, &watch);
    tokio::pin!(run);
    let ran = loop {
        let launched = started.load(Ordering::SeqCst);
        tokio::select! {
            r = &mut run => break r,
            _ = news.notified(), if !launched => {}
            _ = ctx.interrupt.wait(), if launched => {
                let status = read_status(ctx, false).await.unwrap_or(Status::None);
                return Ok(Launched::Interrupted(status));
            }
        }
    };
    let out = match ran {
        Ok(o) => o,
        Err(f) if !started.load(Ordering::SeqCst) => {
            return Err(StageError::cmd(
                "starting the activation on the target failed",
                f,
            ));
        }
        Err(_) => return Ok(Launched::Started),
    };
    if !started.load(Ordering::SeqCst) {
        return Err(StageError::cmd(
            "starting the activation on the target failed",
            crate::runner::failure_of(&cmd, &out),
        ));
    }
    if !out.success() {
        return Ok(Launched::Started);
    }
    Ok(match out.stdout.split_once("\n== status\n") {
        Some((_, status)) => Launched::Reached(reported(ctx, status)),
        None => Launched::Started,
    })
}

/// The status, after waiting on the host (status.sh, up to `seconds`)
/// until it starts with `until` or is final; `None` when the host could
/// not be asked.
async fn await_status(ctx: &Ctx, until: &str, seconds: u64, fresh: bool) -> Option<Status> {
    let args = scripts::await_args(&ctx.state_dir(), until, seconds);
    let cmd = if fresh {
        ctx.session
            .target
            .fresh_root_script(&scripts::STATUS, &args)
    } else {
        ctx.session.target.root_script(&scripts::STATUS, &args)
    }
    .timeout(Duration::from_secs(seconds + 20));
    status_of(ctx, ctx.session.run(&cmd).await)
}

/// The status a status read printed (its note said once: awaiting-confirm
/// and done end their waits).
fn status_of(
    ctx: &Ctx,
    ran: Result<crate::runner::Output, crate::error::CommandFailure>,
) -> Option<Status> {
    match ran {
        Ok(o) if o.success() => Some(reported(ctx, &o.stdout)),
        _ => None,
    }
}

/// A status report (report_status's lines), its note said.
fn reported(ctx: &Ctx, text: &str) -> Status {
    if let Some(note) = Status::note(text) {
        ctx.say(&format!("note: {note}"));
    }
    Status::read(text)
}

/// Wait until the watchdog's status starts with `until` (a
/// [`crate::host::protocol::words`] word) or is final. Each wait is one
/// command that waits on the host and returns within 50 ms of the change
/// (no polling from here); a command that fails (the connection dropped)
/// is tried again after a second. `fresh` asks over new connections (the
/// master may be gone).
pub(super) async fn wait_status(ctx: &Ctx, until: &str, deadline: Duration, fresh: bool) -> Wait {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < deadline {
        if ctx.interrupt.fired().is_some() {
            return Wait::Interrupted(read_status(ctx, fresh).await.or(last));
        }
        // Bounded per command, so a lost connection is noticed.
        let left = deadline
            .saturating_sub(start.elapsed())
            .as_secs()
            .clamp(1, 60);
        let got = tokio::select! {
            s = await_status(ctx, until, left, fresh) => s,
            _ = ctx.interrupt.wait() => continue,
        };
        match got {
            Some(s) if s.is_final() || s.word() == until => return Wait::Reached(s),
            Some(s) => last = Some(s),
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = ctx.interrupt.wait() => {}
                }
            }
        }
    }
    Wait::TimedOut(last)
}

/// The host's current generation and boot default, read again.
pub async fn observe(ctx: &Ctx) -> (Option<u64>, Option<String>) {
    let cmd = ctx
        .session
        .target
        .root_script(
            &scripts::GENERATIONS,
            &scripts::generations_args(&ctx.host.deployment.profile, false),
        )
        .timeout(Duration::from_secs(60));
    match ctx.session.run(&cmd).await {
        Ok(out) if out.success() => {
            let gens = generations::parse(&out.stdout);
            let cur = gens.iter().find(|g| g.current);
            (cur.map(|g| g.number), cur.map(|g| g.system.clone()))
        }
        _ => (None, None),
    }
}

/// A final (or last seen) status as an [`Activated`].
pub(super) fn ended(status: Option<Status>) -> Activated {
    match status {
        Some(Status::Confirmed | Status::Done) => Activated::Kept,
        Some(Status::Failed(reason)) => Activated::NotStarted { reason },
        Some(Status::RolledBack(reason)) => Activated::RolledBack { reason },
        Some(Status::RollbackFailed(reason)) => Activated::RollbackFailed { reason },
        Some(Status::RebootRequired(reason)) => Activated::RebootRequired { reason },
        Some(other) => Activated::Unknown {
            last: other.describe(),
        },
        None => Activated::Unknown {
            last: "no status could be read".into(),
        },
    }
}

pub async fn activate(ctx: &Ctx, req: &Request) -> Result<(Activated, Proof), StageError> {
    let d = &ctx.host.deployment;
    let goal = ctx.opts.goal;
    ctx.say(&format!("activating ({})", goal.as_str()));
    let unit = format!("pantheros-{}-{}", ctx.opts.run_id, ctx.host.name);
    let budget = Duration::from_secs(d.activation_timeout + d.confirm_timeout + 30);
    let status = launch_and_wait(
        ctx,
        &unit,
        &Activation::Activate {
            profile: d.profile.clone(),
            toplevel: req.toplevel.clone(),
            goal: goal.as_str().into(),
            magic: ctx.magic(),
            confirm_timeout: d.confirm_timeout,
            activation_timeout: d.activation_timeout,
            fail_on_units: d.rollback_on_failed_units,
            baseline: req.baseline.clone(),
            force_switch: ctx.opts.force_switch,
            generation: req.generation,
        },
        words::AWAITING_CONFIRM,
        budget,
    )
    .await?;
    let status = match status {
        Wait::Reached(s) => s,
        Wait::Interrupted(s) => {
            let status = s.unwrap_or(Status::None);
            return Ok((Activated::Interrupted { status }, Proof::default()));
        }
        // Lost the master connection, or the activation never ended.
        Wait::TimedOut(_) => return Ok((recover_unreachable(ctx).await, Proof::default())),
    };
    Ok(match status {
        Status::AwaitingConfirm => confirm(ctx, req).await,
        other => (ended_for(req, other, ctx), Proof::default()),
    })
}

/// A final status of this activation. A reboot that ended the watchdog is
/// judged by what the host came back running: the new system, reached over
/// a connection made after the reboot, is kept (the health checks still
/// decide); anything else is unknown.
fn ended_for(req: &Request, status: Status, ctx: &Ctx) -> Activated {
    match &status {
        Status::Ended {
            rebooted: true,
            running,
            ..
        } if *running == req.toplevel => {
            ctx.say(
                "the host rebooted during the activation and came back running the new system; \
                 it accepts new SSH connections",
            );
            Activated::Kept
        }
        _ => ended(Some(status)),
    }
}

/// The reachability proof: a NEW connection must get in and confirm. The
/// same command then waits on the host for the watchdog to take the
/// confirmation, and reads what the next stages would ask in round trips
/// of their own: the profile's generation and the first round of health
/// checks (on the same host, after the same confirmation: their meaning is
/// unchanged).
async fn confirm(ctx: &Ctx, req: &Request) -> (Activated, Proof) {
    let d = &ctx.host.deployment;
    let wait = d.confirm_timeout + 10;
    let checks = super::health::checks(ctx, req.systemd, &req.baseline);
    let health_timeout = checks.as_ref().map_or(0, |c| c.timeout * 2 + 30);
    let cmd = ctx
        .session
        .target
        .fresh_root_script(
            &scripts::CONFIRM,
            &scripts::confirm_args(&ctx.state_dir(), wait, &d.profile, checks.as_ref()),
        )
        .timeout(Duration::from_secs(wait + health_timeout + 20));
    let until = Instant::now() + Duration::from_secs(d.confirm_timeout.saturating_sub(2).max(1));
    // Said as soon as the status line arrives, before the health round the
    // same command runs next.
    let said = std::sync::atomic::AtomicBool::new(false);
    let watch = |line: &str| {
        if line.starts_with(words::CONFIRMED) && !said.swap(true, Ordering::SeqCst) {
            ctx.say("reachable over a fresh SSH connection: confirmed");
        }
    };
    let mut taken = None;
    while Instant::now() < until {
        let ran = tokio::select! {
            r = ctx.session.run_watching(&cmd, &watch) => r,
            // The proof may have been taken: the status says where it stands.
            _ = ctx.interrupt.wait() => {
                let status = read_status(ctx, false).await.unwrap_or(Status::None);
                return (Activated::Interrupted { status }, Proof::default());
            }
        };
        if let Ok(o) = ran
            && o.success()
        {
            taken = Some(o.stdout);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let Some(out) = taken else {
        return (recover_unreachable(ctx).await, Proof::default());
    };
    let (status, proof) = read_proof(ctx, &out, checks.is_some());
    let status = match status {
        s if s.is_final() => s,
        // The watchdog had not taken it yet when the wait ended: go on
        // waiting over the master.
        _ => match wait_status(ctx, words::CONFIRMED, Duration::from_secs(wait), false).await {
            Wait::Reached(s) => s,
            Wait::Interrupted(s) => {
                let status = s.unwrap_or(Status::None);
                return (Activated::Interrupted { status }, Proof::default());
            }
            Wait::TimedOut(s) => return (ended(s.or(Some(Status::None))), Proof::default()),
        },
    };
    match status {
        Status::Confirmed => {
            if !said.swap(true, Ordering::SeqCst) {
                ctx.say("reachable over a fresh SSH connection: confirmed");
            }
            (Activated::Kept, proof)
        }
        s => (ended_for(req, s, ctx), Proof::default()),
    }
}

/// The proof command's output: the status (before any section), and what
/// it read after a confirmation.
fn read_proof(ctx: &Ctx, out: &str, health: bool) -> (Status, Proof) {
    let head = out.split("\n== ").next().unwrap_or_default();
    let status = reported(ctx, head);
    let observed = section(out, "generation").first().map(|l| {
        let (generation, system) = l.split_once(' ').unwrap_or((l, ""));
        let system = system.trim();
        (
            generation.trim().parse().ok(),
            (!system.is_empty()).then(|| system.to_string()),
        )
    });
    let rc = section(out, "health-rc")
        .first()
        .map(|l| l.trim().to_string());
    let printed = section(out, "health").join("\n");
    let health = match rc.as_deref() {
        _ if !health => None,
        Some("0") => Some(super::health::Round::Passed(printed)),
        Some(_) => Some(super::health::Round::Failed(
            printed.trim().replace('\n', "; "),
        )),
        None => None,
    };
    (status, Proof { observed, health })
}

/// The host took no fresh connection after activation: its watchdog rolls
/// it back; wait for that over fresh connections.
async fn recover_unreachable(ctx: &Ctx) -> Activated {
    let timeout = ctx.host.deployment.confirm_timeout;
    ctx.say(&format!(
        "the host does not accept new SSH connections after activation; it rolls itself back within {timeout}s"
    ));
    match wait_status(
        ctx,
        words::ROLLED_BACK,
        Duration::from_secs(timeout + 30),
        true,
    )
    .await
    {
        Wait::Reached(s) => ended(Some(s)),
        Wait::Interrupted(s) => Activated::Interrupted {
            status: s.unwrap_or(Status::None),
        },
        Wait::TimedOut(s) => match s {
            Some(s) => Activated::Unknown { last: s.describe() },
            None => Activated::Unknown {
                last: "the host could not be reached".into(),
            },
        },
    }
}

/// A rollback the target reports is only believed when its profile (`now`,
/// read once after the activation ended) is back where it was.
pub fn verify(current: &Current, a: Activated, now: Option<&str>) -> Activated {
    if let Activated::RolledBack { reason } = &a {
        if current.system.is_some() && now != current.system.as_deref() {
            return Activated::RollbackFailed {
                reason: format!(
                    "the target reports a rollback ({reason}) but its profile points at {}",
                    now.unwrap_or_default()
                ),
            };
        }
    }
    a
}

/// What to do when a host is left in an unknown state (from the original
/// workflow's recovery procedure).
pub fn console_hint(host: &str, profile: &str) -> String {
    let p = shell_words::quote(profile);
    format!(
        "manual action needed on {host}: open the provider's console (Hetzner: Cloud Console → server → Console), \
         log in, run `nix-env -p {p} --list-generations`, then \
         `nix-env -p {p} --rollback && {p}/bin/switch-to-configuration switch`; \
         if it does not boot, pick an older generation in the boot menu"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_procedure_names_the_hosts_profile() {
        let h = console_hint("web", "/nix/var/nix/profiles/system-profiles/web");
        assert!(h.contains("nix-env -p /nix/var/nix/profiles/system-profiles/web --rollback"));
        assert!(h.contains(
            "/nix/var/nix/profiles/system-profiles/web/bin/switch-to-configuration switch"
        ));
        assert!(!h.contains("profiles/system "));
    }

    /// The deployer's result is the target's final state; anything else
    /// is unknown, never success.
    #[test]
    fn only_final_statuses_end_an_activation() {
        assert_eq!(ended(Some(Status::Confirmed)), Activated::Kept);
        assert_eq!(ended(Some(Status::Done)), Activated::Kept);
        assert_eq!(
            ended(Some(Status::RolledBack("x".into()))),
            Activated::RolledBack { reason: "x".into() }
        );
        assert_eq!(
            ended(Some(Status::RollbackFailed("y".into()))),
            Activated::RollbackFailed { reason: "y".into() }
        );
        assert_eq!(
            ended(Some(Status::Failed("z".into()))),
            Activated::NotStarted { reason: "z".into() }
        );
        for mid in [
            Status::Activating,
            Status::AwaitingConfirm,
            Status::RollingBack("r".into()),
            Status::Unknown("rebooting".into()),
        ] {
            assert!(
                matches!(ended(Some(mid.clone())), Activated::Unknown { .. }),
                "{mid:?}"
            );
        }
        assert!(matches!(ended(None), Activated::Unknown { .. }));
    }
}
