//! Stage: take the host's deploy lock and learn where the host stands (its
//! generations, boot default, running system, whether systemd runs it), in
//! one round trip, before anything is copied: a host that already runs the
//! built system needs nothing else.

use super::{Ctx, Goal, StageError};
use crate::host::protocol::{exits, section};
use crate::host::scripts;

/// Where the target keeps pantheros' state: the lock (`lock/`) and one
/// directory per run (`runs/<run>/`: status, log, the generation to return
/// to). Not `/run`: a reboot
/// during a deploy must not lose the lock or the rollback target.
pub const STATE_DIR: &str = "/var/lib/pantheros";

/// The host before this run changes anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    /// The profile's current generation.
    pub generation: Option<u64>,
    /// What the profile points at: the boot default.
    pub system: Option<String>,
    /// `/run/current-system`: what runs now.
    pub running: Option<String>,
    /// systemd is PID 1 (activation under systemd-run, systemd health checks).
    pub systemd: bool,
    /// Units that had failed before this run (the health checks' baseline).
    pub failed_units: Vec<String>,
    /// With a binary cache: whether the host's Nix trusts its key.
    pub cache_trusted: Option<bool>,
}

impl Current {
    /// Nothing to do: the host runs `top` and boots it by default (for
    /// `--goal boot`, it boots it by default). `--goal test` always activates.
    pub fn already_has(&self, top: &str, goal: Goal) -> bool {
        let boots = self.system.as_deref() == Some(top);
        let runs = self.running.as_deref() == Some(top);
        match goal {
            Goal::Switch => boots && runs,
            Goal::Boot => boots,
            Goal::Test => false,
        }
    }
}

/// Proof that this run holds the host's lock; give it back to [`unlock`].
#[derive(Debug)]
#[must_use = "a taken lock must be released with preflight::unlock"]
pub struct Lock(());

fn owner() -> String {
    format!(
        "pantheros by {}@{} (pid {})",
        std::env::var("USER").unwrap_or_else(|_| "root".into()),
        crate::host::hostname(),
        std::process::id()
    )
}

/// Take the lock and read the host. With `noop_if` (a switch deploy of that
/// toplevel), a host that already runs and boots it gives the lock back in
/// the same round trip: then no [`Lock`] is returned.
pub async fn preflight(
    ctx: &Ctx,
    noop_if: Option<&str>,
) -> Result<(Current, Option<Lock>), StageError> {
    let cmd = ctx
        .session
        .target
        .root_script(
            &scripts::PREFLIGHT,
            &scripts::preflight_args(
                STATE_DIR,
                &ctx.host.deployment.profile,
                &ctx.opts.run_id,
                &owner(),
                noop_if,
                ctx.host
                    .deployment
                    .cache
                    .as_ref()
                    .map(|c| c.public_key.as_str()),
            ),
        )
        .timeout(std::time::Duration::from_secs(60));
    let out = ctx
        .session
        .run(&cmd)
        .await
        .map_err(|f| StageError::cmd("could not run the preflight checks on the target", f))?;
    match out.code {
        Some(0) => {}
        Some(exits::LOCKED) => {
            let holder = out.stdout.trim().trim_start_matches("LOCKED ").to_string();
            return Err(StageError::new(format!(
                "another deployment holds the lock on this host: {holder}"
            ))
            .hint("wait for it to finish; if it died, pass --break-lock (refused while its activation runs)"));
        }
        _ => {
            let f = crate::runner::failure_of(&cmd, &out);
            let mut e = StageError::cmd("the preflight checks failed on the target", f);
            if crate::host::needs_password(&out.stderr) {
                e = e.hint(format!(
                    "{} needs a password on {}: allow it without one (e.g. `security.sudo.wheelNeedsPassword = false` \
                     or a NOPASSWD rule for {}), or deploy as root",
                    ctx.host.deployment.privilege_escalation_command.join(" "),
                    ctx.host.name,
                    ctx.host.deployment.target_user
                ));
            } else if out.code == Some(255) {
                e = e.hint(super::connect::unreachable_hint(ctx));
            }
            return Err(e);
        }
    }
    let store_path = |name: &str| {
        section(&out.stdout, name)
            .first()
            .map(|s| s.trim().to_string())
            .filter(|s| crate::nix::store_path::StorePath::parse(s).is_some())
    };
    let current = Current {
        generation: section(&out.stdout, "generation")
            .first()
            .and_then(|s| s.trim().parse().ok()),
        system: store_path("system"),
        running: store_path("running"),
        systemd: section(&out.stdout, "systemd").first().map(|s| s.trim()) == Some("yes"),
        failed_units: section(&out.stdout, "failed")
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        cache_trusted: section(&out.stdout, "cache-trusted")
            .first()
            .map(|s| s.trim() == "yes"),
    };
    let released = out.stdout.lines().any(|l| l.trim() == "== noop");
    Ok((current, (!released).then_some(Lock(()))))
}

/// `--break-lock`: remove the lock a dead deployment left. A holder whose
/// activation is still in progress on the host is refused unless `force`.
pub async fn break_lock(ctx: &Ctx, force: bool) -> Result<(), StageError> {
    let cmd = ctx
        .session
        .target
        .root_script(
            &scripts::BREAK_LOCK,
            &scripts::break_lock_args(STATE_DIR, force),
        )
        .timeout(std::time::Duration::from_secs(60));
    let out = ctx
        .session
        .run(&cmd)
        .await
        .map_err(|f| StageError::cmd("could not break the lock on the target", f))?;
    match out.code {
        Some(0) => {
            if let Some(owner) = out.stdout.trim().strip_prefix("BROKEN ") {
                ctx.say(&format!("broke the lock of {owner}"));
            }
            Ok(())
        }
        Some(exits::LOCK_LIVE) => Err(StageError::new(format!(
            "refusing to break the lock: {}",
            out.stdout.trim().trim_start_matches("LIVE ")
        ))
        .hint("that deployment is still activating on the host; wait for it to finish, or pass --force as well to break it anyway")),
        _ => Err(StageError::cmd(
            "breaking the lock failed on the target",
            crate::runner::failure_of(&cmd, &out),
        )),
    }
}

/// The run stops waiting for an activation that is still going: hand the
/// lock to the host's watchdog, which releases it when it ends. Returns the
/// lock back when the watchdog had already ended (then release it here).
pub async fn hand_over(ctx: &Ctx, lock: Lock) -> Option<Lock> {
    let cmd = ctx
        .session
        .target
        .root_script(&scripts::HANDOVER, &scripts::dir_args(&ctx.state_dir()))
        .timeout(std::time::Duration::from_secs(20));
    match ctx.session.run_ok(&cmd).await {
        Ok(out) if !crate::host::protocol::Status::parse(&out.stdout).is_final() => {
            ctx.session
                .log
                .note("the deploy lock is handed over to the host's watchdog");
            let Lock(()) = lock;
            None
        }
        _ => Some(lock),
    }
}

/// Release the lock this run took (only this run's: another run's lock,
/// e.g. after --break-lock, is left alone and named in the log).
pub async fn unlock(
    ctx: &Ctx,
    lock: Lock,
    record: Option<&super::record::Record>,
) -> Result<(), String> {
    let Lock(()) = lock;
    release(ctx, record).await
}

/// Release whatever lock this run holds on a host whose pipeline could not
/// give its [`Lock`] back itself (its task crashed). unlock.sh checks the
/// owner, so a lock this run never took is left alone.
pub async fn unlock_after_crash(ctx: &Ctx) {
    if let Err(why) = release(ctx, None).await {
        ctx.say(&lock_left_message(ctx, &why));
    }
}

/// How long a lock that could not be released over the run's connection is
/// tried again over new ones (sshd may be restarting, the master may have
/// died with the copy).
const UNLOCK_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// Give the host's deploy lock back: over the run's connection, then, when
/// that fails, over fresh connections until [`UNLOCK_RETRY`] has passed.
/// Err says why the host is still locked.
async fn release(ctx: &Ctx, record: Option<&super::record::Record>) -> Result<(), String> {
    // With a record, unlock.sh writes it first, in the same round trip.
    let record = record.and_then(|r| serde_json::to_vec_pretty(r).ok());
    let (args, input) = match &record {
        Some(json) => (
            scripts::unlock_with_record_args(STATE_DIR, &ctx.opts.run_id),
            Some(json.as_slice()),
        ),
        None => (scripts::unlock_args(STATE_DIR, &ctx.opts.run_id), None),
    };
    let unlock = |fresh: bool| match (input, fresh) {
        (Some(i), false) => ctx
            .session
            .target
            .root_script_with_input(&scripts::UNLOCK, &args, i),
        (Some(i), true) => {
            ctx.session
                .target
                .fresh_root_script_with_input(&scripts::UNLOCK, &args, i)
        }
        (None, false) => ctx.session.target.root_script(&scripts::UNLOCK, &args),
        (None, true) => ctx
            .session
            .target
            .fresh_root_script(&scripts::UNLOCK, &args),
    };
    let cmd = unlock(false).timeout(std::time::Duration::from_secs(30));
    let first = match ctx.session.run_ok(&cmd).await {
        Ok(out) => return released(ctx, &out.stdout),
        Err(f) => f.how.clone(),
    };
    ctx.say(&format!(
        "could not release the deploy lock over this run's connection ({first}); trying new connections for {}s",
        UNLOCK_RETRY.as_secs()
    ));
    let deadline = std::time::Instant::now() + UNLOCK_RETRY;
    let mut last = first;
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let cmd = unlock(true);
        match ctx.session.run_ok(&cmd).await {
            Ok(out) => {
                ctx.say("released the deploy lock over a new connection");
                return released(ctx, &out.stdout);
            }
            Err(f) => last = f.how.clone(),
        }
    }
    Err(last)
}

fn released(ctx: &Ctx, stdout: &str) -> Result<(), String> {
    if stdout.starts_with("NOT-OURS") {
        ctx.session
            .log
            .note(&format!("the lock is not ours any more: {}", stdout.trim()));
    }
    if stdout.lines().any(|l| l == "RECORD-FAILED") {
        ctx.say(
            "note: the deploy record could not be written on the host (status will call it drift)",
        );
    }
    Ok(())
}

/// What to tell the user when the lock stays on the host.
pub fn lock_left_message(ctx: &Ctx, why: &str) -> String {
    format!(
        "the host is still locked: its deploy lock could not be released ({why}); once no deployment runs on it, \
         free it with `pantheros deploy {} --break-lock` (or remove {STATE_DIR}/lock on the host)",
        ctx.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noop_means_running_and_booting_the_built_system() {
        let c = |system: Option<&str>, running: Option<&str>| Current {
            system: system.map(String::from),
            running: running.map(String::from),
            ..Default::default()
        };
        let t = "/nix/store/t";
        assert!(c(Some(t), Some(t)).already_has(t, Goal::Switch));
        // After --goal boot: the boot default is new, the running system is not.
        assert!(!c(Some(t), Some("/nix/store/old")).already_has(t, Goal::Switch));
        assert!(c(Some(t), Some("/nix/store/old")).already_has(t, Goal::Boot));
        assert!(!c(Some(t), None).already_has(t, Goal::Switch));
        assert!(!c(Some(t), Some(t)).already_has(t, Goal::Test));
        assert!(!c(None, None).already_has(t, Goal::Boot));
    }
}
