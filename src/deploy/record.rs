//! The deploy record: what each run that reached a host's activation
//! leaves on the host (`/var/lib/pantheros/records/<run id>.json` and
//! `last.json`, each replaced whole): where the system came from (flake,
//! git revision, dirty tree), who deployed it from where, when, what it
//! activated and how it ended. `status` compares it with what the host runs
//! (a system pantheros did not deploy is drift). unlock.sh writes it while
//! the host's lock is still held, in the round trip that releases the lock.

use serde::{Deserialize, Serialize};

use super::HostResult;

/// Where this run's systems come from: once per run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Origin {
    pub flake: String,
    /// The flake's git commit, when it is a local git checkout.
    pub revision: Option<String>,
    /// Whether that checkout had uncommitted changes.
    pub dirty: Option<bool>,
    /// `user@machine` of the deployer.
    pub deployer: String,
}

impl Origin {
    /// The flake's origin: its git commit and whether the tree is dirty
    /// (when it is a local checkout), and who deploys it from where.
    pub fn of(flake: &crate::inventory::FlakeRef) -> Origin {
        let git = |args: &[&str]| -> Option<String> {
            let root = flake.root.as_ref()?;
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(root)
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let revision = git(&["rev-parse", "HEAD"]).filter(|r| !r.is_empty());
        let dirty = revision
            .as_ref()
            .and_then(|_| git(&["status", "--porcelain", "--untracked-files=no"]))
            .map(|s| !s.is_empty());
        Origin {
            flake: flake.arg.clone(),
            revision,
            dirty,
            ..Origin::here()
        }
    }

    /// No flake (a rollback outside one): only who deploys from where.
    pub fn here() -> Origin {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        Origin {
            deployer: format!("{user}@{}", crate::host::hostname()),
            ..Default::default()
        }
    }
}

/// One run's record on one host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub version: u32,
    pub run_id: String,
    pub mode: super::Mode,
    pub goal: super::Goal,
    #[serde(flatten)]
    pub origin: Origin,
    pub started: String,
    pub finished: String,
    /// The system this run activated (or left as the boot default).
    pub toplevel: Option<String>,
    pub generation: Option<u64>,
    pub result: HostResult,
    pub system_before: Option<String>,
    pub generation_before: Option<u64>,
}

/// Which runs leave a record: those that changed the host and know how
/// it ended. A run that changed nothing (failed before, was interrupted,
/// or found the system already running: the no-op redeploy stays one
/// round trip), or lost track of the host, leaves none.
pub fn worth_recording(result: HostResult) -> bool {
    matches!(
        result,
        HostResult::Success
            | HostResult::RebootRequired
            | HostResult::RolledBack
            | HostResult::RollbackFailed
            | HostResult::Unhealthy
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_with_kebab_results() {
        let r = Record {
            version: 1,
            run_id: "20261207-101500-42".into(),
            mode: super::super::Mode::Deploy,
            goal: super::super::Goal::Switch,
            origin: Origin {
                flake: "/home/u/fleet".into(),
                revision: Some("abc123".into()),
                dirty: Some(true),
                deployer: "u@yoga".into(),
            },
            started: "2026-12-07T10:15:00+00:00".into(),
            finished: "2026-12-07T10:15:09+00:00".into(),
            toplevel: Some("/nix/store/x-nixos-system".into()),
            generation: Some(7),
            result: HostResult::RebootRequired,
            system_before: None,
            generation_before: Some(6),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["result"], "reboot-required");
        assert_eq!(v["flake"], "/home/u/fleet");
        assert_eq!(v["dirty"], true);
        let back: Record = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        assert!(!worth_recording(HostResult::Unchanged));
        assert!(!worth_recording(HostResult::Failed));
        assert!(!worth_recording(HostResult::Unknown));
    }
}
