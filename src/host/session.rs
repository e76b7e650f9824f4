//! One host's session for a run: where it is reached ([`Target`]), the log
//! its commands go to (secrets redacted, run by the run's executor), and its
//! name for progress lines. A deploy's stages run their commands through
//! it, and so does `keys upload`, which deploys nothing.

use std::path::Path;
use std::sync::Arc;

use super::Target;
use crate::error::CommandFailure;
use crate::inventory::Host;
use crate::report::log::HostLog;
use crate::runner::{Cmd, Lines, Output};

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
    /// Where progress lines go.
    pub display: crate::report::Display,
}

pub struct Session {
    pub name: String,
    pub target: Target,
    /// Where every command and its output is recorded.
    pub log: HostLog,
    /// What runs the commands (processes; a fake in unit tests).
    exec: Arc<dyn super::exec::Executor>,
    display: crate::report::Display,
}

impl Session {
    /// `host`'s session: its target and its private log, created under
    /// `at` (0600, the host's secrets redacted).
    pub fn open(host: &Host, at: &RunPlaces<'_>, reach: &Reach) -> std::io::Result<Session> {
        let log = HostLog::create(at.log_dir, at.kind, &host.name, at.ts)?
            .with_redactor(crate::report::redact::Redactor::for_deployment(
                &host.deployment,
            ))
            .with_display(reach.display.clone());
        Ok(Session::new(
            host,
            Target::for_host(host, at.control, reach.force_local)
                .with_password(reach.password.clone()),
            log,
            reach,
        ))
    }

    /// A session of `host` over `target`, recording into `log`, its
    /// commands run and its progress shown as `reach` says.
    pub fn new(host: &Host, target: Target, log: HostLog, reach: &Reach) -> Session {
        Session {
            name: host.name.clone(),
            target,
            log,
            exec: reach.executor.clone(),
            display: reach.display.clone(),
        }
    }

    /// Run `cmd` on the host's behalf, recorded in its log (the command
    /// before it starts, its lines as they arrive, how it ended); a
    /// non-zero exit is returned, not an error.
    pub async fn run(&self, cmd: &Cmd) -> Result<Output, CommandFailure> {
        self.run_into(cmd, &self.log).await
    }

    /// [`Session::run`], also handing each stdout line, as it arrives, to
    /// `watch` (to act on a line before the command has ended).
    pub async fn run_watching(
        &self,
        cmd: &Cmd,
        watch: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Output, CommandFailure> {
        self.run_into(cmd, &self.log.watching(watch)).await
    }

    /// [`Session::run`]; a non-zero exit is an error.
    pub async fn run_ok(&self, cmd: &Cmd) -> Result<Output, CommandFailure> {
        let out = self.run(cmd).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(crate::runner::failure_of(cmd, &out))
        }
    }

    async fn run_into(&self, cmd: &Cmd, lines: &dyn Lines) -> Result<Output, CommandFailure> {
        let shown = self.log.started(cmd);
        let out = self.exec.run(shown.as_ref().unwrap_or(cmd), lines).await;
        self.log.ended(&out);
        out
    }

    /// A progress line for this host (its secrets redacted).
    pub fn say(&self, msg: &str) {
        self.display.say(&self.name, &self.log.redact(msg));
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
