//! One host's session for a run: where it is reached ([`Target`]), the log
//! its commands go to (secrets redacted, run by the run's executor), and its
//! name for progress lines. A deploy's stages run their commands through
//! it, and so does `keys upload`, which deploys nothing.

use std::path::Path;
use std::sync::Arc;

use super::Target;
use crate::inventory::Host;
use crate::report::log::HostLog;

/// Where a run keeps its per-host files and connections.
pub struct RunPlaces<'a> {
    /// The run's log directory (e.g. logs/deploy), and the logs' prefix.
    pub log_dir: &'a Path,
    pub kind: &'a str,
    /// The run's timestamp in log names.
    pub ts: &'a str,
    /// The run's SSH control-socket directory.
    pub control: &'a Path,
}

/// How a run reaches its hosts.
#[derive(Clone)]
pub struct Reach {
    /// Run every host's commands on this machine (`--local`).
    pub force_local: bool,
    /// The privilege escalation's password, when one was given.
    pub password: Option<Arc<super::password::Password>>,
    /// What runs the commands (processes; a fake in unit tests).
    pub executor: Arc<dyn super::exec::Executor>,
}

pub struct Session {
    pub name: String,
    pub target: Target,
    pub log: HostLog,
}

impl Session {
    /// `host`'s session: its target and its private log, created under
    /// `at` (0600, the host's secrets redacted).
    pub fn open(host: &Host, at: &RunPlaces<'_>, reach: &Reach) -> std::io::Result<Session> {
        let log = HostLog::create(at.log_dir, at.kind, &host.name, at.ts)?
            .with_redactor(crate::report::redact::Redactor::for_deployment(
                &host.deployment,
            ))
            .with_executor(reach.executor.clone());
        Ok(Session {
            name: host.name.clone(),
            target: Target::for_host(host, at.control, reach.force_local)
                .with_password(reach.password.clone()),
            log,
        })
    }

    /// A progress line for this host (its secrets redacted).
    pub fn say(&self, msg: &str) {
        crate::report::say(&self.name, &self.log.redact(msg));
    }

    /// Where the host is reached, for results ("local" or user@host).
    pub fn target_label(&self) -> String {
        if self.target.is_local() {
            "local".into()
        } else {
            self.target.destination()
        }
    }
}
