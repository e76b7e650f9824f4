//! The target-side stages: preflight (lock, sanity, current generation),
//! dry-activate, diff, detached activation with a watchdog, the
//! reachability proof, health checks and rollback.

use std::time::{Duration, Instant};

use super::{HostResult, HostRun, Mode, StageError, diff, say};
use crate::generations::{self, Generation};
use crate::target::protocol::{Status, exits, section};
use crate::target::scripts::{self, Activation, HealthArgs};

/// Where the target keeps pantheros' state: the lock and one directory per run.
pub const STATE_DIR: &str = "/run/pantheros";

impl HostRun {
    fn state_dir(&self) -> String {
        format!("{STATE_DIR}/{}", self.opts.run_id)
    }

    /// Stage: take the host's deploy lock, check the toplevel is a NixOS
    /// system, and record the current generation.
    pub async fn preflight(&mut self) -> Result<(), StageError> {
        let t = Instant::now();
        let who = format!(
            "pantheros {} by {}@{} (pid {})",
            self.opts.run_id,
            std::env::var("USER").unwrap_or_else(|_| "root".into()),
            hostname(),
            std::process::id()
        );
        let cmd = self.target.root_script(
            &scripts::PREFLIGHT,
            &scripts::preflight_args(
                STATE_DIR,
                &self.host.deployment.profile,
                self.outcome.toplevel.as_deref().unwrap_or_default(),
                &who,
            ),
        );
        let out =
            self.log.run(&cmd).await.map_err(|f| {
                StageError::cmd("could not run the preflight checks on the target", f)
            })?;
        match out.code {
            Some(0) => {}
            Some(exits::LOCKED) => {
                let holder = out.stdout.trim().trim_start_matches("LOCKED ").to_string();
                return Err(StageError::new(format!("another deployment holds the lock on this host: {holder}"))
                    .hint(format!(
                        "wait for it to finish; if it died, remove {STATE_DIR}/lock on the host (or pass --break-lock)"
                    )));
            }
            Some(exits::NOT_A_SYSTEM) => {
                return Err(StageError::new(format!(
                    "{} is not a NixOS system (no nixos-version or bin/switch-to-configuration)",
                    self.outcome.toplevel.as_deref().unwrap_or("?")
                ))
                .hint("deploy a nixosConfigurations.<host>.config.system.build.toplevel"));
            }
            _ => {
                let f = crate::runner::failure_of(&cmd, &out);
                let mut e = StageError::cmd("the preflight checks failed on the target", f);
                if crate::target::needs_password(&out.stderr) {
                    e = e.hint(format!(
                        "{} needs a password on {}: allow it without one (e.g. `security.sudo.wheelNeedsPassword = false` \
                         or a NOPASSWD rule for {}), or deploy as root",
                        self.host.deployment.privilege_escalation_command.join(" "),
                        self.host.name,
                        self.host.deployment.target_user
                    ));
                } else if out.code == Some(255) {
                    e = e.hint(format!(
                        "ssh to {} failed: check `ssh {}` works (host key, user, key); nothing was changed",
                        self.host.name,
                        self.target.destination()
                    ));
                }
                return Err(e);
            }
        }
        self.locked = true;
        let gens = generations::parse(&section(&out.stdout, "generations").join("\n"));
        self.outcome.generation_before = gens.iter().find(|g| g.current).map(|g| g.number);
        self.outcome.system_before = section(&out.stdout, "system")
            .first()
            .map(|s| s.trim().to_string())
            .filter(|s| crate::nix::store_path::StorePath::parse(s).is_some());
        self.systemd = section(&out.stdout, "systemd").first().map(|s| s.trim()) == Some("yes");
        self.timed("preflight", t);
        Ok(())
    }

    /// Release the deploy lock (best effort; logged).
    pub async fn unlock(&mut self) {
        if !self.locked {
            return;
        }
        let cmd = self
            .target
            .root_cmd(&["rm".into(), "-rf".into(), format!("{STATE_DIR}/lock")]);
        if self.log.run_ok(&cmd).await.is_ok() {
            self.locked = false;
        }
    }

    /// Stage: `switch-to-configuration dry-activate` on the target.
    pub async fn dry_activate(&mut self) -> Result<(), StageError> {
        let t = Instant::now();
        let top = self.outcome.toplevel.clone().unwrap_or_default();
        let cmd = self.target.root_cmd(&[
            format!("{top}/bin/switch-to-configuration"),
            "dry-activate".into(),
        ]);
        let out = self.log.run_ok(&cmd).await.map_err(|f| {
            StageError::cmd("dry-activate failed", f)
                .hint("fix the activation error above; nothing was changed")
        })?;
        for l in out.stdout.lines().chain(out.stderr.lines()).take(40) {
            say(&self.host.name, &format!("dry-activate: {l}"));
        }
        self.timed("dry-activate", t);
        Ok(())
    }

    /// Stage: compare the running system's closure with the new one.
    pub async fn diff(&mut self) -> Result<(), StageError> {
        let t = Instant::now();
        let cmd = self.target.root_script(
            &scripts::CLOSURES,
            &scripts::closures_args(
                self.outcome.system_before.as_deref(),
                self.outcome.toplevel.as_deref().unwrap_or_default(),
            ),
        );
        let out = self
            .log
            .run_ok(&cmd)
            .await
            .map_err(|f| StageError::cmd("listing the closures on the target failed", f))?;
        let sections = diff::parse_sections(&out.stdout);
        let old = sections.get("old").cloned().unwrap_or_default();
        let new = sections.get("new").cloned().unwrap_or_default();
        self.outcome.diff = Some(diff::diff(&old, &new));
        self.timed("diff", t);
        Ok(())
    }

    /// Is the new system the one already running?
    pub fn is_noop(&self) -> bool {
        self.opts.goal != super::Goal::Test
            && self.outcome.system_before.is_some()
            && self.outcome.system_before == self.outcome.toplevel
    }

    /// The activation's status; `None` when the host could not be asked.
    async fn read_status(&self, fresh: bool) -> Option<Status> {
        let args = scripts::dir_args(&self.state_dir());
        let cmd = if fresh {
            self.target.fresh_root_script(&scripts::STATUS, &args)
        } else {
            self.target
                .root_script(&scripts::STATUS, &args)
                .timeout(Duration::from_secs(20))
        };
        match self.log.run(&cmd).await {
            Ok(o) if o.success() => Some(Status::parse(&o.stdout)),
            _ => None,
        }
    }

    async fn launch(&mut self, what: &Activation) -> Result<(), StageError> {
        let unit = format!("pantheros-{}-{}", self.opts.run_id, self.host.name);
        let args = scripts::launch_args(&self.state_dir(), &unit, what);
        let cmd = self.target.root_script(&scripts::LAUNCH, &args);
        self.log
            .run_ok(&cmd)
            .await
            .map_err(|f| StageError::cmd("starting the activation on the target failed", f))?;
        Ok(())
    }

    /// Wait until the watchdog's status satisfies `until` or is final.
    /// `fresh` polls over new connections (the master may be gone). `None`:
    /// the host could not be asked at all within `deadline`.
    async fn wait_status(
        &self,
        until: impl Fn(&Status) -> bool,
        deadline: Duration,
        fresh: bool,
    ) -> Option<Status> {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < deadline {
            if let Some(s) = self.read_status(fresh).await {
                if until(&s) || s.is_final() {
                    return Some(s);
                }
                last = Some(s);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        last
    }

    /// Stage: activate (detached, under a watchdog), prove reachability,
    /// check health; roll back on any failure.
    pub async fn activate(&mut self) -> Result<(), StageError> {
        let t = Instant::now();
        let d = self.host.deployment.clone();
        let magic = self.magic();
        let goal = self.opts.goal;
        say(&self.host.name, &format!("activating ({})", goal.as_str()));
        self.launch(&Activation::Activate {
            profile: d.profile.clone(),
            toplevel: self.outcome.toplevel.clone().unwrap_or_default(),
            goal: goal.as_str().into(),
            magic,
            confirm_timeout: d.confirm_timeout,
            activation_timeout: d.activation_timeout,
            fail_on_units: d.rollback_on_failed_units,
            generation: self.switch_generation,
        })
        .await?;
        let budget = Duration::from_secs(d.activation_timeout + d.confirm_timeout + 30);
        let status = self
            .wait_status(|s| matches!(s, Status::AwaitingConfirm), budget, false)
            .await;
        let status = match status {
            Some(s) => s,
            None => {
                // Lost contact with the master connection during activation.
                return self.recover_unreachable(t).await;
            }
        };
        match status {
            Status::Failed(reason) => {
                self.outcome.result = HostResult::Failed;
                return Err(StageError::new(format!(
                    "activation did not start: {reason}"
                )));
            }
            Status::RolledBack(_) | Status::RollbackFailed(_) => {
                return self.finish_rollback(status, t).await;
            }
            Status::AwaitingConfirm => {
                // The reachability proof: a NEW connection must get in.
                let confirm = self
                    .target
                    .fresh_root_script(&scripts::CONFIRM, &scripts::dir_args(&self.state_dir()));
                let mut ok = false;
                let until = Instant::now()
                    + Duration::from_secs(d.confirm_timeout.saturating_sub(2).max(1));
                while Instant::now() < until {
                    if matches!(self.log.run(&confirm).await, Ok(o) if o.success()) {
                        ok = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                if !ok {
                    return self.recover_unreachable(t).await;
                }
                let s = self
                    .wait_status(
                        |s| matches!(s, Status::Confirmed),
                        Duration::from_secs(d.confirm_timeout + 10),
                        false,
                    )
                    .await
                    .unwrap_or(Status::None);
                if s != Status::Confirmed {
                    return self.finish_rollback(s, t).await;
                }
                say(
                    &self.host.name,
                    "reachable over a fresh SSH connection: confirmed",
                );
            }
            Status::Confirmed | Status::Done => {}
            // Not final, and the wait is over: the host is mid-change.
            other => return self.finish_rollback(other, t).await,
        }
        self.timed("activate", t);
        // Health.
        if goal != super::Goal::Boot {
            let h = Instant::now();
            if let Err(problems) = self.health().await {
                self.timed("health", h);
                let roll = self
                    .opts
                    .rollback_on_health
                    .unwrap_or(d.rollback_on_health_failure);
                if roll {
                    say(&self.host.name, "health checks failed; rolling back");
                    return self
                        .rollback(format!("health checks failed: {problems}"))
                        .await;
                }
                self.outcome.result = HostResult::Failed;
                self.outcome.generation_after = self.current_generation().await;
                return Err(StageError::new(format!(
                    "health checks failed (rollback disabled, the new generation stays active): {problems}"
                )));
            }
            self.timed("health", h);
        }
        self.outcome.generation_after = self.current_generation().await;
        self.outcome.system_after = self.outcome.toplevel.clone();
        self.outcome.result = HostResult::Success;
        Ok(())
    }

    /// The target did not take a fresh connection after activation: its
    /// watchdog rolls it back; wait for that and verify.
    async fn recover_unreachable(&mut self, t: Instant) -> Result<(), StageError> {
        let d = &self.host.deployment;
        say(
            &self.host.name,
            &format!(
                "the host does not accept new SSH connections after activation; it rolls itself back within {}s",
                d.confirm_timeout
            ),
        );
        let s = self
            .wait_status(
                |s| matches!(s, Status::RolledBack(_)),
                Duration::from_secs(d.confirm_timeout + 30),
                true,
            )
            .await
            .unwrap_or(Status::None);
        self.finish_rollback(s, t).await
    }

    async fn finish_rollback(&mut self, status: Status, t: Instant) -> Result<(), StageError> {
        self.timed("activate", t);
        if let Status::RolledBack(reason) = &status {
            let reason = reason.clone();
            self.outcome.rollback_reason = Some(reason.clone());
            let now = self.current_system().await;
            self.outcome.generation_after = self.current_generation().await;
            self.outcome.system_after = now.clone();
            if self.outcome.system_before.is_some() && now != self.outcome.system_before {
                self.outcome.result = HostResult::RollbackFailed;
                return Err(StageError::new(format!(
                    "the target reports a rollback ({reason}) but its profile points at {}",
                    now.unwrap_or_default()
                )));
            }
            self.outcome.result = HostResult::RolledBack;
            return Err(StageError::new(format!("rolled back: {reason}")));
        }
        let reason = match status {
            Status::RollbackFailed(r) => r,
            other => format!(
                "lost contact with the host (last status: {})",
                other.describe()
            ),
        };
        self.outcome.rollback_reason = Some(reason.clone());
        self.outcome.result = HostResult::RollbackFailed;
        Err(StageError::new(format!("rollback failed: {reason}"))
            .hint(console_hint(&self.host.name)))
    }

    /// Roll back to the generation recorded before activation (detached).
    pub async fn rollback(&mut self, reason: String) -> Result<(), StageError> {
        let t = Instant::now();
        let unit = format!("pantheros-{}-{}-rollback", self.opts.run_id, self.host.name);
        let args = scripts::launch_args(
            &self.state_dir(),
            &unit,
            &Activation::Rollback {
                profile: self.host.deployment.profile.clone(),
                goal: self.opts.goal.as_str().into(),
                reason,
            },
        );
        let cmd = self.target.root_script(&scripts::LAUNCH, &args);
        if let Err(f) = self.log.run_ok(&cmd).await {
            self.outcome.result = HostResult::RollbackFailed;
            return Err(
                StageError::cmd("could not start the rollback on the target", f)
                    .hint(console_hint(&self.host.name)),
            );
        }
        let s = self
            .wait_status(
                |s| matches!(s, Status::RolledBack(_)),
                Duration::from_secs(self.host.deployment.activation_timeout + 30),
                false,
            )
            .await
            .unwrap_or(Status::None);
        self.finish_rollback(s, t).await
    }

    /// Run the health checks until they pass or the host's timeout ends.
    async fn health(&mut self) -> Result<(), String> {
        let hc = self.host.deployment.health_checks.clone();
        let checks = HealthArgs {
            systemd: self.systemd,
            services: hc.services.clone(),
            http: hc.http.clone(),
            commands: hc.commands.clone(),
        };
        if checks.is_empty() {
            return Ok(());
        }
        let args = scripts::health_args(&checks);
        let deadline = Instant::now() + Duration::from_secs(hc.timeout);
        loop {
            let cmd = self
                .target
                .root_script(&scripts::HEALTH, &args)
                .timeout(Duration::from_secs(60));
            let last = match self.log.run(&cmd).await {
                Ok(o) if o.success() => {
                    say(&self.host.name, "health checks passed");
                    return Ok(());
                }
                Ok(o) => o.stdout.trim().replace('\n', "; "),
                Err(f) => f.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    pub async fn current_generation(&self) -> Option<u64> {
        let cmd = self.target.root_script(
            &scripts::GENERATIONS,
            &scripts::generations_args(&self.host.deployment.profile, false),
        );
        let out = self.log.run(&cmd).await.ok()?;
        generations::parse(&out.stdout)
            .into_iter()
            .find(|g| g.current)
            .map(|g| g.number)
    }

    /// Rollback: find the generation to return to and make it the toplevel.
    pub async fn choose_generation(&mut self) -> Result<(), StageError> {
        let gens: Vec<Generation> = generations::list(
            &self.target,
            &self.log,
            &self.host.deployment.profile,
            false,
        )
        .await?;
        let g = generations::choose(&gens, self.opts.rollback_to)?.clone();
        generations::say_choice(&self.host.name, &gens, &g);
        self.outcome.toplevel = Some(g.system);
        self.switch_generation = Some(g.number);
        Ok(())
    }

    pub async fn current_system(&self) -> Option<String> {
        let cmd = self.target.root_cmd(&[
            "readlink".into(),
            "-f".into(),
            self.host.deployment.profile.clone(),
        ]);
        let out = self.log.run(&cmd).await.ok()?;
        out.success().then(|| out.stdout.trim().to_string())
    }

    /// Everything up to the confirmation prompt.
    pub async fn prepare(&mut self) -> Result<(), StageError> {
        if self.opts.mode == Mode::Rollback {
            self.choose_generation().await?;
            self.preflight().await?;
            if self.is_noop() && self.opts.goal != super::Goal::Boot {
                self.outcome.result = HostResult::Unchanged;
                self.outcome.generation_after = self.outcome.generation_before;
                self.outcome.system_after = self.outcome.system_before.clone();
                return Ok(());
            }
            self.dry_activate().await?;
            return self.diff().await;
        }
        self.build().await?;
        if self.opts.mode == Mode::BuildOnly {
            self.outcome.result = HostResult::Success;
            return Ok(());
        }
        self.ship().await?;
        self.preflight().await?;
        if self.is_noop() && self.opts.mode == Mode::Deploy {
            self.outcome.result = HostResult::Unchanged;
            self.outcome.generation_after = self.outcome.generation_before;
            self.outcome.system_after = self.outcome.system_before.clone();
            return Ok(());
        }
        self.dry_activate().await?;
        self.diff().await?;
        if self.opts.mode == Mode::DryRun {
            self.outcome.result = HostResult::Success;
        }
        Ok(())
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// What to do when a host is left in an unknown state (from the original
/// workflow's recovery procedure).
pub fn console_hint(host: &str) -> String {
    format!(
        "manual action needed on {host}: open the provider's console (Hetzner: Cloud Console → server → Console), \
         log in, run `nix-env -p /nix/var/nix/profiles/system --list-generations`, then \
         `nix-env -p /nix/var/nix/profiles/system --rollback && /nix/var/nix/profiles/system/bin/switch-to-configuration switch`; \
         if it does not boot, pick an older generation in the boot menu"
    )
}
