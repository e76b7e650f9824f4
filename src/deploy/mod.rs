//! The deployment pipeline. One host goes through [`pipeline::run_host`],
//! which reads in stage order, one file per stage:
//!
//! [`build`] → [`preflight`] → [`ship`] → [`diff`] (dry-activate + closure
//! diff) → confirmation ([`gate`]) → [`activate`] (detached, with a
//! watchdog and the reachability proof) → [`health`] → [`rollback`] when a
//! check fails.
//!
//! Each stage takes the values it needs and returns its own typed result;
//! the host's [`Outcome`] is assembled once, at the end. [`fleet`] runs the
//! hosts: in parallel, one confirmation for all, interrupts, a summary.

pub mod activate;
pub mod build;
pub mod cache;
pub mod connect;
pub mod diff;
#[cfg(test)]
mod fake_runs;
pub mod fleet;
pub mod gate;
pub mod health;
pub mod interrupt;
pub mod keys;
pub mod live;
pub mod pipeline;
pub mod preflight;
pub mod reboot;
pub mod record;
pub mod rollback;
pub mod ship;
pub mod summary;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

pub use crate::error::StageError;
use crate::error::exit;
pub use crate::host::RunPlaces;
use crate::host::Session;
use crate::inventory::Host;
use crate::nix::Nix;
use crate::report::Display;

/// How far the pipeline goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
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

/// `--reboot`: when a deploy reboots its hosts into the new system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Reboot {
    /// Never (the default): switch live, or set the boot default.
    #[default]
    #[value(skip)]
    Never,
    /// Every host that changes.
    Always,
    /// Only hosts whose plan says a reboot is required or recommended
    /// (switch inhibitors, an incompatible init, a new kernel).
    IfNeeded,
}

/// Settings of one run that are not per host.
#[derive(Clone)]
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
    /// `--break-lock` (and `--force`: also a holder that is still activating).
    pub break_lock: bool,
    pub force: bool,
    /// `--force-switch`: activate with `NIXOS_NO_CHECK=1`.
    pub force_switch: bool,
    /// `--reboot`: boot the new system once, prove it, keep it.
    pub reboot: Reboot,
    /// The run's uploads to binary caches: one at a time, in batches of
    /// the hosts waiting, and each cache's first failure (see [`cache`]).
    pub caches: cache::Uploads,
    /// What runs the hosts' commands (processes; a fake in unit tests).
    pub executor: std::sync::Arc<dyn crate::host::exec::Executor>,
    /// Where the systems come from, for each host's deploy record.
    pub origin: record::Origin,
    /// `deploy --store-path` / `--from-json`: systems built elsewhere, by
    /// host name; a host here is not built.
    pub prebuilt: std::collections::BTreeMap<String, String>,
    /// The hosts' escalation password, when the run was given one.
    pub sudo_password: Option<Arc<crate::host::password::Password>>,
    /// `--build-host`: where the systems are built (an ssh destination).
    pub build_host: Option<String>,
    /// How the run's progress is shown.
    pub display: Display,
}

impl Options {
    /// How this run reaches its hosts.
    pub fn reach(&self) -> crate::host::Reach {
        crate::host::Reach {
            display: self.display.clone(),
            force_local: self.force_local,
            password: self.sudo_password.clone(),
            executor: self.executor.clone(),
        }
    }

    /// Where a run logging under `log_dir` keeps its systems' GC roots.
    pub fn gcroot_dir(log_dir: &std::path::Path) -> PathBuf {
        log_dir.join("gcroots")
    }

    /// Options for one run: logs and GC roots under `log_dir`, a run id
    /// unique on this machine, every override unset.
    pub fn new(mode: Mode, goal: Goal, log_dir: PathBuf, display: Display) -> Options {
        Options {
            display,
            mode,
            goal,
            gcroot_dir: Options::gcroot_dir(&log_dir),
            log_dir,
            magic_rollback: None,
            rollback_on_health: None,
            force_local: false,
            run_id: format!("{}-{}", crate::report::log::timestamp(), std::process::id()),
            rollback_to: None,
            break_lock: false,
            force: false,
            force_switch: false,
            reboot: Reboot::Never,
            caches: cache::Uploads::default(),
            executor: crate::host::exec::processes(),
            origin: record::Origin::default(),
            prebuilt: Default::default(),
            sudo_password: None,
            build_host: None,
        }
    }
}

/// How one host's run ended, from best to worst: a run's exit code is the
/// code of its worst host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostResult {
    /// Done.
    Success,
    /// Nothing to do (already deployed).
    Unchanged,
    /// NixOS would not activate the new system live: it is the boot default
    /// and takes effect at the next boot (or, refused by the pre-switch
    /// checks, nothing changed). Not a failure, and never rolled back.
    RebootRequired,
    /// Failed before anything changed on the host.
    Failed,
    /// Interrupted (Ctrl-C, SIGTERM) before anything changed on the host.
    Interrupted,
    /// Failed after a change; the previous generation is active again.
    RolledBack,
    /// Activated, but the health checks failed and rollback was disabled:
    /// the new generation stays active.
    Unhealthy,
    /// Failed, and the rollback failed too.
    RollbackFailed,
    /// pantheros does not know the host's state (its task crashed, or it
    /// was interrupted or lost contact mid-change): check it by hand.
    Unknown,
}

/// The exit code of a run: that of its worst host (0 for no host).
pub fn run_exit_code(results: impl IntoIterator<Item = HostResult>) -> i32 {
    results
        .into_iter()
        .max()
        .map(HostResult::exit_code)
        .unwrap_or(exit::OK)
}

impl HostResult {
    /// The host ended where the run wanted it (deployed, or nothing to do).
    pub fn succeeded(self) -> bool {
        matches!(self, HostResult::Success | HostResult::Unchanged)
    }

    /// The result as `--json` spells it.
    pub fn word(self) -> &'static str {
        match self {
            HostResult::Success => "success",
            HostResult::Unchanged => "unchanged",
            HostResult::RebootRequired => "reboot-required",
            HostResult::Failed => "failed",
            HostResult::Interrupted => "interrupted",
            HostResult::RolledBack => "rolled-back",
            HostResult::Unhealthy => "unhealthy",
            HostResult::RollbackFailed => "rollback-failed",
            HostResult::Unknown => "unknown",
        }
    }

    pub fn exit_code(self) -> i32 {
        match self {
            HostResult::Success | HostResult::Unchanged => exit::OK,
            HostResult::RebootRequired => exit::REBOOT_REQUIRED,
            HostResult::Failed => exit::FAILED_NOTHING_CHANGED,
            HostResult::Interrupted => exit::INTERRUPTED,
            HostResult::Unhealthy => exit::UNHEALTHY,
            HostResult::RolledBack => exit::ROLLED_BACK,
            HostResult::RollbackFailed => exit::ROLLBACK_FAILED,
            HostResult::Unknown => exit::STATE_UNKNOWN,
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
    /// Why NixOS would not switch live (result `reboot-required`).
    pub reboot_required: Option<String>,
    /// The host was rebooted into the new system (`--reboot`).
    pub rebooted: bool,
    /// What the reboot saw: boot ids, the booted system, the watchdog.
    pub reboot: Option<reboot::RebootReport>,
    /// What planning found about switching live (inhibitors, init, kernel).
    pub live: Option<live::Live>,
    /// The host's evaluation warnings (shown before the plan).
    pub warnings: Vec<String>,
    /// Facts read back from the host after the deploy (`recordFacts`).
    pub facts_read: BTreeMap<String, String>,
    pub error: Option<String>,
    pub diff: Option<diff::Diff>,
    /// Wall time of each stage that ran, and `total`.
    pub durations_ms: BTreeMap<String, u64>,
    /// The keys written to the host (names, paths, owners, modes, sizes).
    pub keys: Vec<keys::Uploaded>,
    /// Where a run that did not succeed ended: the stage (e.g. "copy").
    pub stage: Option<String>,
    pub log: PathBuf,
    pub started: String,
}

/// Everything one host's run works with, read-only for every stage.
pub struct Ctx {
    pub host: Host,
    /// Where the host is reached and where its commands are logged.
    pub session: Session,
    pub opts: Arc<Options>,
    pub nix: Nix,
    pub interrupt: interrupt::Interrupt,
    /// The host's keys, read on the deployer before the run (empty when the
    /// run activates nothing), or why they could not be read.
    pub keys: Result<Vec<keys::Key>, StageError>,
}

impl Ctx {
    /// A host's context for one run: its session (target and private log)
    /// and the run's options.
    pub fn open(
        host: Host,
        at: &RunPlaces<'_>,
        opts: Arc<Options>,
        nix: Nix,
        interrupt: interrupt::Interrupt,
        keys: Result<Vec<keys::Key>, StageError>,
    ) -> std::io::Result<Ctx> {
        let session = Session::open(&host, at, &opts.reach())?;
        Ok(Ctx {
            host,
            session,
            opts,
            nix,
            interrupt,
            keys,
        })
    }

    pub fn name(&self) -> &str {
        &self.host.name
    }

    /// A progress line for this host (its secrets redacted).
    pub fn say(&self, msg: &str) {
        self.session.say(msg);
    }

    /// This run's directory on the target (status, confirmation, watchdog log).
    pub fn state_dir(&self) -> String {
        format!("{}/runs/{}", preflight::STATE_DIR, self.opts.run_id)
    }

    pub fn magic(&self) -> bool {
        self.opts
            .magic_rollback
            .unwrap_or(self.host.deployment.magic_rollback)
    }

    /// Where the target is reached, for the outcome ("local" or user@host).
    pub fn target_label(&self) -> String {
        self.session.target_label()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_exits_with_its_worst_host() {
        use HostResult::*;
        assert_eq!(run_exit_code([]), 0);
        assert_eq!(run_exit_code([Success, Unchanged]), 0);
        assert_eq!(run_exit_code([Success, Failed]), 1);
        assert_eq!(run_exit_code([Failed, Interrupted]), 5);
        assert_eq!(run_exit_code([RolledBack, Failed]), 3);
        assert_eq!(run_exit_code([RolledBack, Unhealthy]), 7);
        // Manual action wins over everything, an unknown state over all.
        assert_eq!(run_exit_code([Unhealthy, RollbackFailed]), 4);
        assert_eq!(run_exit_code([RollbackFailed, Unknown, Success]), 6);
    }
}
