//! The target-side stages: preflight (lock, sanity, current generation),
//! dry-activate, diff, detached activation with a watchdog, the
//! reachability proof, health checks and rollback.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{HostResult, HostRun, Mode, StageError, diff, say};

const ACTIVATE_SH: &str = include_str!("../activate/activate.sh");
pub const STATE_DIR: &str = "/run/pantheros";
pub const LOCK_EXIT: i32 = 75;

/// One line of `nix-env --list-generations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Generation {
    pub number: u64,
    pub date: String,
    pub current: bool,
}

/// Parse `nix-env --list-generations`, from the right: the number is the
/// first field, `(current)` the optional last, the date what is between.
pub fn parse_generations(out: &str) -> Vec<Generation> {
    out.lines()
        .filter_map(|line| {
            let mut words: Vec<&str> = line.split_whitespace().collect();
            if words.is_empty() {
                return None;
            }
            let current = words.last() == Some(&"(current)");
            if current {
                words.pop();
            }
            let number = words.first()?.parse().ok()?;
            Some(Generation {
                number,
                date: words[1..].join(" "),
                current,
            })
        })
        .collect()
}

const PREFLIGHT_SH: &str = r#"
set -u
state=$1 profile=$2 top=$3 who=$4
mkdir -p "$state"
if ! mkdir "$state/lock" 2>/dev/null; then
  echo "LOCKED $(cat "$state/lock/owner" 2>/dev/null || echo 'unknown holder')"
  exit 75
fi
echo "$who since $(date -Is)" > "$state/lock/owner"
if [ -n "$top" ]; then
  if [ ! -e "$top/nixos-version" ] || [ ! -x "$top/bin/switch-to-configuration" ]; then
    rm -rf "$state/lock"
    echo "NOT-A-SYSTEM $top"
    exit 76
  fi
fi
echo "== generations"
nix-env -p "$profile" --list-generations 2>/dev/null
echo "== system"
readlink -f "$profile" 2>/dev/null || true
echo "== systemd"
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then echo yes; else echo no; fi
"#;

const CLOSURES_SH: &str = r#"
for spec in "old=$1" "new=$2"; do
  name=${spec%%=*} p=${spec#*=}
  echo "== $name"
  [ -n "$p" ] && [ -e "$p" ] || continue
  paths=$(nix-store -qR "$p") || exit 1
  sizes=$(nix-store -q --size $paths) || exit 1
  printf '%s\n' "$paths" > /tmp/.pantheros-paths.$$
  printf '%s\n' "$sizes" | paste /tmp/.pantheros-paths.$$ -
  rm -f /tmp/.pantheros-paths.$$
done
"#;

const LAUNCH_SH: &str = r#"
set -u
dir=$1; shift
unit=$1; shift
mkdir -p "$dir"
rm -f "$dir/status" "$dir/confirm"
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then
  systemd-run --unit="$unit" --description="pantheros activation" --collect --quiet \
    --property=KillMode=process -- /bin/sh -c "$@" || exit $?
else
  setsid -f /bin/sh -c "$@" </dev/null >/dev/null 2>&1 || exit $?
fi
echo launched
"#;

const HEALTH_SH: &str = r#"
systemd=$1; shift
section=
fail=0
if [ "$systemd" = yes ]; then
  state=$(timeout 30 systemctl is-system-running --wait 2>/dev/null)
  [ -n "$state" ] || state=unknown
  if [ "$state" != running ]; then
    echo "system is $state"
    systemctl --failed --no-legend --plain 2>/dev/null | awk '{ print "  failed unit: " $1 }'
    fail=1
  fi
fi
for a in "$@"; do
  case "$a" in
  --services|--http|--commands) section=$a; continue ;;
  esac
  case "$section" in
  --services)
    if ! systemctl is-active --quiet "$a"; then echo "service $a is $(systemctl is-active "$a" 2>/dev/null)"; fail=1; fi ;;
  --http)
    if ! command -v curl >/dev/null 2>&1; then echo "http check $a: curl is not installed on the host"; fail=1; continue; fi
    if ! code=$(curl -sS -o /dev/null -m 5 -w '%{http_code}' "$a" 2>&1) || [ "${code#2}" = "$code" ]; then
      echo "http $a answered $code"; fail=1
    fi ;;
  --commands)
    if ! out=$(sh -c "$a" 2>&1); then echo "command failed: $a: $(printf '%s' "$out" | tail -n 3)"; fail=1; fi ;;
  esac
done
exit $fail
"#;

fn section<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let mut lines = vec![];
    let mut inside = false;
    for l in out.lines() {
        if let Some(n) = l.strip_prefix("== ") {
            inside = n.trim() == name;
        } else if inside {
            lines.push(l);
        }
    }
    lines
}

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
            PREFLIGHT_SH,
            &[
                STATE_DIR.into(),
                self.host.deployment.profile.clone(),
                self.outcome.toplevel.clone().unwrap_or_default(),
                who,
            ],
        );
        let out =
            self.log.run(&cmd).await.map_err(|f| {
                StageError::cmd("could not run the preflight checks on the target", f)
            })?;
        match out.code {
            Some(0) => {}
            Some(LOCK_EXIT) => {
                let holder = out.stdout.trim().trim_start_matches("LOCKED ").to_string();
                return Err(StageError::new(format!("another deployment holds the lock on this host: {holder}"))
                    .hint(format!(
                        "wait for it to finish; if it died, remove {STATE_DIR}/lock on the host (or pass --break-lock)"
                    )));
            }
            Some(76) => {
                return Err(StageError::new(format!(
                    "{} is not a NixOS system (no nixos-version or bin/switch-to-configuration)",
                    self.outcome.toplevel.as_deref().unwrap_or("?")
                ))
                .hint("deploy a nixosConfigurations.<host>.config.system.build.toplevel"));
            }
            _ => {
                let f = crate::runner::failure_of(&cmd, &out);
                let mut e = StageError::cmd("the preflight checks failed on the target", f);
                if crate::transport::needs_password(&out.stderr) {
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
        let gens = parse_generations(&section(&out.stdout, "generations").join("\n"));
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
            CLOSURES_SH,
            &[
                self.outcome.system_before.clone().unwrap_or_default(),
                self.outcome.toplevel.clone().unwrap_or_default(),
            ],
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

    async fn read_status(&self, fresh: bool) -> Option<String> {
        let script = "cat \"$1/status\" 2>/dev/null || true";
        let cmd = if fresh {
            self.target.fresh_root_script(script, &[self.state_dir()])
        } else {
            self.target
                .root_script(script, &[self.state_dir()])
                .timeout(Duration::from_secs(20))
        };
        match self.log.run(&cmd).await {
            Ok(o) if o.success() => Some(o.stdout.trim().to_string()),
            _ => None,
        }
    }

    async fn launch(&mut self, argv: Vec<String>) -> Result<(), StageError> {
        let unit = format!("pantheros-{}-{}", self.opts.run_id, self.host.name);
        let mut args = vec![
            self.state_dir(),
            unit,
            ACTIVATE_SH.to_string(),
            "activate.sh".into(),
        ];
        args.extend(argv);
        let cmd = self.target.root_script(LAUNCH_SH, &args);
        self.log
            .run_ok(&cmd)
            .await
            .map_err(|f| StageError::cmd("starting the activation on the target failed", f))?;
        Ok(())
    }

    /// Wait for the watchdog's status to reach one of `until` (or a final
    /// state). `fresh` polls over new connections (the master may be gone).
    async fn wait_status(&self, until: &[&str], deadline: Duration, fresh: bool) -> Option<String> {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < deadline {
            if let Some(s) = self.read_status(fresh).await {
                if until.iter().any(|u| s.starts_with(u))
                    || s.starts_with("rolled-back")
                    || s.starts_with("rollback-failed")
                    || s.starts_with("failed")
                {
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
        self.launch(vec![
            "activate".into(),
            self.state_dir(),
            d.profile.clone(),
            self.outcome.toplevel.clone().unwrap_or_default(),
            goal.as_str().into(),
            if magic { "1".into() } else { "0".into() },
            d.confirm_timeout.to_string(),
            d.activation_timeout.to_string(),
            if d.rollback_on_failed_units {
                "1".into()
            } else {
                "0".into()
            },
            self.switch_generation
                .map(|g| g.to_string())
                .unwrap_or_default(),
        ])
        .await?;
        let budget = Duration::from_secs(d.activation_timeout + d.confirm_timeout + 30);
        let status = self
            .wait_status(&["awaiting-confirm", "confirmed", "done"], budget, false)
            .await;
        let status = match status {
            Some(s) => s,
            None => {
                // Lost contact with the master connection during activation.
                return self.recover_unreachable(t).await;
            }
        };
        if let Some(reason) = status.strip_prefix("failed ") {
            self.outcome.result = HostResult::Failed;
            return Err(StageError::new(format!(
                "activation did not start: {reason}"
            )));
        }
        if status.starts_with("rolled-back") || status.starts_with("rollback-failed") {
            return self.finish_rollback(status, t).await;
        }
        if status.starts_with("awaiting-confirm") {
            // The reachability proof: a NEW connection must get in.
            let confirm = self
                .target
                .fresh_root_script("touch \"$1/confirm\"", &[self.state_dir()]);
            let mut ok = false;
            let until =
                Instant::now() + Duration::from_secs(d.confirm_timeout.saturating_sub(2).max(1));
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
                    &["confirmed"],
                    Duration::from_secs(d.confirm_timeout + 10),
                    false,
                )
                .await
                .unwrap_or_default();
            if !s.starts_with("confirmed") {
                return self.finish_rollback(s, t).await;
            }
            say(
                &self.host.name,
                "reachable over a fresh SSH connection: confirmed",
            );
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
                &["rolled-back"],
                Duration::from_secs(d.confirm_timeout + 30),
                true,
            )
            .await
            .unwrap_or_default();
        self.finish_rollback(s, t).await
    }

    async fn finish_rollback(&mut self, status: String, t: Instant) -> Result<(), StageError> {
        self.timed("activate", t);
        if let Some(reason) = status.strip_prefix("rolled-back ") {
            self.outcome.rollback_reason = Some(reason.to_string());
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
        let reason = status
            .strip_prefix("rollback-failed ")
            .map(str::to_string)
            .unwrap_or_else(|| format!("lost contact with the host (last status: {status:?})"));
        self.outcome.rollback_reason = Some(reason.clone());
        self.outcome.result = HostResult::RollbackFailed;
        Err(StageError::new(format!("rollback failed: {reason}"))
            .hint(console_hint(&self.host.name)))
    }

    /// Roll back to the generation recorded before activation (detached).
    pub async fn rollback(&mut self, reason: String) -> Result<(), StageError> {
        let t = Instant::now();
        let unit = format!("pantheros-{}-{}-rollback", self.opts.run_id, self.host.name);
        let args = vec![
            self.state_dir(),
            unit,
            ACTIVATE_SH.to_string(),
            "activate.sh".into(),
            "rollback".into(),
            self.state_dir(),
            self.host.deployment.profile.clone(),
            self.opts.goal.as_str().into(),
            reason,
        ];
        let cmd = self.target.root_script(LAUNCH_SH, &args);
        if let Err(f) = self.log.run_ok(&cmd).await {
            self.outcome.result = HostResult::RollbackFailed;
            return Err(
                StageError::cmd("could not start the rollback on the target", f)
                    .hint(console_hint(&self.host.name)),
            );
        }
        let s = self
            .wait_status(
                &["rolled-back"],
                Duration::from_secs(self.host.deployment.activation_timeout + 30),
                false,
            )
            .await
            .unwrap_or_default();
        self.finish_rollback(s, t).await
    }

    /// Run the health checks until they pass or the host's timeout ends.
    async fn health(&mut self) -> Result<(), String> {
        let hc = self.host.deployment.health_checks.clone();
        let mut args = vec![if self.systemd {
            "yes".into()
        } else {
            "no".into()
        }];
        if !hc.services.is_empty() {
            args.push("--services".into());
            args.extend(hc.services.iter().cloned());
        }
        if !hc.http.is_empty() {
            args.push("--http".into());
            args.extend(hc.http.iter().cloned());
        }
        if !hc.commands.is_empty() {
            args.push("--commands".into());
            args.extend(hc.commands.iter().cloned());
        }
        if !self.systemd && args.len() == 1 {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(hc.timeout);
        loop {
            let cmd = self
                .target
                .root_script(HEALTH_SH, &args)
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
        let cmd = self.target.root_cmd(&[
            "nix-env".into(),
            "-p".into(),
            self.host.deployment.profile.clone(),
            "--list-generations".into(),
        ]);
        let out = self.log.run(&cmd).await.ok()?;
        parse_generations(&out.stdout)
            .into_iter()
            .find(|g| g.current)
            .map(|g| g.number)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_parse_from_the_right() {
        let out = "   1   2026-11-22 01:46:06   \n   2   2026-11-22 01:46:06   \n  13   2026-11-22 01:46:07   (current)\n";
        let g = parse_generations(out);
        assert_eq!(g.len(), 3);
        assert_eq!(
            g[2],
            Generation {
                number: 13,
                date: "2026-11-22 01:46:07".into(),
                current: true
            }
        );
        assert!(!g[0].current);
        assert!(parse_generations("").is_empty());
    }

    #[test]
    fn sections_split() {
        let out = "== generations\n 1 x (current)\n== system\n/nix/store/abc\n== systemd\nno\n";
        assert_eq!(section(out, "system"), vec!["/nix/store/abc"]);
        assert_eq!(section(out, "systemd"), vec!["no"]);
    }
}
