//! The deployment pipeline, one stage per function, in the order they run:
//! build → ship → preflight → dry-activate → diff → (confirm) → activate →
//! confirm reachability → health → record.

pub mod diff;
pub mod fleet;
pub mod target;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::error::exit;
use crate::inventory::Host;
use crate::nix::Nix;
use crate::report::log::HostLog;
use crate::runner::Cmd;
use crate::target::Target;
pub use fleet::write_atomic;

/// How far the pipeline goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// build → … → switch → verify.
    Deploy,
    /// Build only.
    BuildOnly,
    /// Build, ship, dry-activate and diff; change nothing.
    DryRun,
    /// Switch to an existing generation (no build, no copy).
    Rollback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Goal {
    Switch,
    Boot,
    Test,
}

impl Goal {
    pub fn as_str(&self) -> &'static str {
        match self {
            Goal::Switch => "switch",
            Goal::Boot => "boot",
            Goal::Test => "test",
        }
    }
}

/// Settings of one run that are not per host.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    pub goal: Goal,
    pub log_dir: PathBuf,
    pub gcroot_dir: PathBuf,
    pub magic_rollback: Option<bool>,
    pub rollback_on_health: Option<bool>,
    pub force_local: bool,
    pub run_id: String,
    /// For [`Mode::Rollback`]: the generation to return to (None: the previous one).
    pub rollback_to: Option<u64>,
}

impl Options {
    /// Options for one run: logs and GC roots under `log_dir`, a run id
    /// unique on this machine, every override unset.
    pub fn new(mode: Mode, goal: Goal, log_dir: PathBuf) -> Options {
        Options {
            mode,
            goal,
            gcroot_dir: log_dir.join("gcroots"),
            log_dir,
            magic_rollback: None,
            rollback_on_health: None,
            force_local: false,
            run_id: format!("{}-{}", crate::report::log::timestamp(), std::process::id()),
            rollback_to: None,
        }
    }
}

/// How one host's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostResult {
    /// Done; or nothing to do (already deployed).
    Success,
    Unchanged,
    /// Failed before anything changed on the host.
    Failed,
    /// Failed after a change; the previous generation is active again.
    RolledBack,
    /// Failed, and the rollback failed too.
    RollbackFailed,
}

impl HostResult {
    pub fn exit_code(self) -> i32 {
        match self {
            HostResult::Success | HostResult::Unchanged => exit::OK,
            HostResult::Failed => exit::FAILED_NOTHING_CHANGED,
            HostResult::RolledBack => exit::ROLLED_BACK,
            HostResult::RollbackFailed => exit::ROLLBACK_FAILED,
        }
    }
}

/// What happened to one host: the `.info` file and the `--json` entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub host: String,
    pub target: String,
    pub mode: Mode,
    pub goal: Goal,
    pub result: HostResult,
    pub generation_before: Option<u64>,
    pub generation_after: Option<u64>,
    pub system_before: Option<String>,
    pub system_after: Option<String>,
    pub toplevel: Option<String>,
    pub rollback_reason: Option<String>,
    pub error: Option<String>,
    pub diff: Option<diff::Diff>,
    pub durations_ms: BTreeMap<String, u64>,
    pub log: PathBuf,
    pub started: String,
}

pub use crate::error::StageError;
pub use crate::report::say;

/// One host going through the pipeline.
pub struct HostRun {
    pub host: Host,
    pub target: Target,
    pub log: HostLog,
    pub opts: Arc<Options>,
    pub nix: Nix,
    pub outcome: Outcome,
    pub systemd: bool,
    pub locked: bool,
    /// Rollback: the existing generation to switch to.
    pub switch_generation: Option<u64>,
    pub(crate) started: Instant,
}

impl HostRun {
    pub fn new(host: Host, target: Target, log: HostLog, opts: Arc<Options>, nix: Nix) -> HostRun {
        let outcome = Outcome {
            host: host.name.clone(),
            target: if target.is_local() {
                "local".into()
            } else {
                target.destination()
            },
            mode: opts.mode,
            goal: opts.goal,
            result: HostResult::Failed,
            generation_before: None,
            generation_after: None,
            system_before: None,
            system_after: None,
            toplevel: None,
            rollback_reason: None,
            error: None,
            diff: None,
            durations_ms: BTreeMap::new(),
            log: log.path.clone(),
            started: chrono::Local::now().to_rfc3339(),
        };
        HostRun {
            host,
            target,
            log,
            opts,
            nix,
            outcome,
            systemd: false,
            locked: false,
            switch_generation: None,
            started: Instant::now(),
        }
    }

    fn name(&self) -> String {
        self.host.name.clone()
    }

    fn timed(&mut self, stage: &str, since: Instant) {
        self.outcome
            .durations_ms
            .insert(stage.to_string(), since.elapsed().as_millis() as u64);
    }

    pub fn magic(&self) -> bool {
        self.opts
            .magic_rollback
            .unwrap_or(self.host.deployment.magic_rollback)
    }

    /// Stage: build the toplevel from its derivation (no re-evaluation),
    /// with a GC root so the result survives a garbage collection.
    pub async fn build(&mut self) -> Result<(), StageError> {
        let t = Instant::now();
        let drv = self.host.drv_path.clone().ok_or_else(|| {
            StageError::new("the evaluation returned no derivation for this host")
        })?;
        say(&self.name(), &format!("building {drv}"));
        self.log.note(&format!("build {drv}"));
        if self.host.deployment.build_on_target
            && !self.target.is_local()
            && self.opts.mode != Mode::BuildOnly
        {
            let copy = self
                .nix
                .cmd([
                    "copy".to_string(),
                    "--derivation".into(),
                    "--to".into(),
                    self.target.store_uri(),
                    drv.clone(),
                ])
                .env("NIX_SSHOPTS", self.target.nix_sshopts());
            self.log
                .run_ok(&copy)
                .await
                .map_err(|f| StageError::cmd("copying the derivation to the target failed", f))?;
            let out = self
                .log
                .run_ok(&self.target.root_cmd(&[
                    "nix-store".into(),
                    "--realise".into(),
                    drv.clone(),
                ]))
                .await
                .map_err(|f| StageError::cmd("building on the target failed", f))?;
            self.outcome.toplevel = out.stdout.lines().last().map(|s| s.trim().to_string());
        } else {
            std::fs::create_dir_all(&self.opts.gcroot_dir).map_err(|e| {
                StageError::new(format!("creating {}: {e}", self.opts.gcroot_dir.display()))
            })?;
            let root = self.opts.gcroot_dir.join(&self.host.name);
            let cmd = Cmd::new([
                "nix-store".to_string(),
                "--realise".into(),
                drv.clone(),
                "--add-root".into(),
                root.to_string_lossy().into_owned(),
                "--indirect".into(),
            ]);
            self.log.run_ok(&cmd).await.map_err(|f| {
                StageError::cmd("the build failed", f)
                    .hint("fix the build error above; nothing was changed on the host")
            })?;
            let top = std::fs::read_link(&root).map_err(|e| {
                StageError::new(format!("reading the GC root {}: {e}", root.display()))
            })?;
            self.outcome.toplevel = Some(top.to_string_lossy().into_owned());
        }
        self.timed("build", t);
        say(
            &self.name(),
            &format!("built {}", self.outcome.toplevel.as_deref().unwrap_or("?")),
        );
        Ok(())
    }

    /// Stage: copy the closure to the target over the master connection.
    pub async fn ship(&mut self) -> Result<(), StageError> {
        if self.target.is_local() || self.host.deployment.build_on_target {
            return Ok(());
        }
        let t = Instant::now();
        let top = self.outcome.toplevel.clone().unwrap_or_default();
        let mut args = vec!["copy".to_string()];
        if self.host.deployment.substitute_on_destination {
            args.push("--substitute-on-destination".into());
        }
        args.extend(["--to".into(), self.target.store_uri(), top]);
        let cmd = self
            .nix
            .cmd(args)
            .env("NIX_SSHOPTS", self.target.nix_sshopts());
        say(
            &self.name(),
            &format!("copying the closure to {}", self.target.destination()),
        );
        self.log.run_ok(&cmd).await.map_err(|f| {
            StageError::cmd("copying the closure to the target failed", f).hint(
                "check that you can `ssh` to the host and that it has nix; nothing was changed",
            )
        })?;
        self.timed("copy", t);
        Ok(())
    }
}
