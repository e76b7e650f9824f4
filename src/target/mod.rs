//! The target: where commands run (the local machine, or a host over
//! SSH), the scripts that run there ([`scripts`]) and the protocol they
//! speak with the deployer ([`protocol`]).
//!
//! SSH is the system `ssh` (it honours ~/.ssh/config, the agent and
//! ProxyJump). All commands of one run share one ControlMaster connection
//! per host, and `NIX_SSHOPTS` carries the same options so that `nix copy`
//! rides that connection too. A *fresh* command opens a new connection on
//! purpose: it proves that the host still accepts logins.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::inventory::Host;
use crate::runner::{self, Cmd};

pub mod protocol;
pub mod scripts;

pub use scripts::Script;

#[derive(Debug, Clone)]
pub enum Kind {
    Local,
    Ssh,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub kind: Kind,
    pub name: String,
    pub host: String,
    pub user: String,
    pub port: u16,
    pub ssh_options: Vec<String>,
    /// Prefix for commands that need root (empty when we are root).
    pub escalate: Vec<String>,
    control_path: PathBuf,
}

/// A directory for the ControlMaster sockets of this run (short, so the
/// socket path stays under the 108-byte limit).
pub fn control_dir() -> std::io::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("pantheros-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
    Ok(d)
}

fn am_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl Target {
    pub fn for_host(h: &Host, control_dir: &Path, force_local: bool) -> Target {
        let d = &h.deployment;
        let local = force_local || h.is_local();
        let escalate = if local {
            if am_root() {
                vec![]
            } else {
                d.privilege_escalation_command.clone()
            }
        } else if d.target_user == "root" {
            vec![]
        } else {
            d.privilege_escalation_command.clone()
        };
        Target {
            kind: if local { Kind::Local } else { Kind::Ssh },
            name: h.name.clone(),
            host: h.target_host().to_string(),
            user: d.target_user.clone(),
            port: d.target_port,
            ssh_options: d.ssh_options.clone(),
            escalate,
            control_path: control_dir.join(format!("{}.sock", sanitize(&h.name))),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self.kind, Kind::Local)
    }

    /// `user@host`, or the host alone when the user is the default root
    /// and ssh_config may name another user.
    pub fn destination(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }

    /// ssh options shared by every connection to this host.
    fn common_options(&self) -> Vec<String> {
        let mut o = self.ssh_options.clone();
        if self.port != 22 {
            o.extend(["-p".into(), self.port.to_string()]);
        }
        // Never wait for a password or a host-key question: fail instead.
        o.extend(["-o".into(), "BatchMode=yes".into()]);
        o
    }

    fn multiplex_options(&self) -> Vec<String> {
        vec![
            "-o".into(),
            "ControlMaster=auto".into(),
            "-o".into(),
            format!("ControlPath={}", self.control_path.display()),
            "-o".into(),
            "ControlPersist=120".into(),
        ]
    }

    /// NIX_SSHOPTS for `nix copy` over the same master connection.
    pub fn nix_sshopts(&self) -> String {
        let mut o = self.common_options();
        o.extend(self.multiplex_options());
        o.join(" ")
    }

    /// The store URI for `nix copy --to`.
    pub fn store_uri(&self) -> String {
        format!("ssh://{}", self.destination())
    }

    fn wrap(&self, argv: &[String], privileged: bool, fresh: bool) -> Cmd {
        let mut inner: Vec<String> = Vec::new();
        if privileged {
            inner.extend(self.escalate.iter().cloned());
        }
        inner.extend(argv.iter().cloned());
        match self.kind {
            Kind::Local => Cmd::new(inner),
            Kind::Ssh => {
                let mut v = vec!["ssh".to_string()];
                v.extend(self.common_options());
                if fresh {
                    v.extend([
                        "-o".into(),
                        "ControlMaster=no".into(),
                        "-o".into(),
                        "ControlPath=none".into(),
                        "-o".into(),
                        "ConnectTimeout=5".into(),
                    ]);
                } else {
                    v.extend(self.multiplex_options());
                }
                v.push(self.destination());
                v.push("--".into());
                v.push(shell_words::join(&inner));
                Cmd::new(v)
            }
        }
    }

    /// A command on the target, as the login user.
    pub fn cmd(&self, argv: &[String]) -> Cmd {
        self.wrap(argv, false, false)
    }

    /// A command on the target that needs root.
    pub fn root_cmd(&self, argv: &[String]) -> Cmd {
        self.wrap(argv, true, false)
    }

    /// One of pantheros' target scripts, as root, with its arguments (built
    /// by the script's argv builder in [`scripts`]). The script's text goes
    /// on stdin (`sh -s NAME ARGS…`), so the command line, the log and
    /// errors show which script ran with which arguments, and no script
    /// text sits in either machine's process table.
    pub fn root_script(&self, script: &Script, args: &[String]) -> Cmd {
        let mut c = self.wrap(&script_argv(script, args), true, false);
        c.stdin = Some(script.text().into_bytes());
        c
    }

    /// Like [`Target::root_script`], with the text the script's own builder
    /// made (launch.sh carries activate.sh inside it).
    pub fn root_script_text(&self, script: &Script, text: String, args: &[String]) -> Cmd {
        let mut c = self.wrap(&script_argv(script, args), true, false);
        c.stdin = Some(text.into_bytes());
        c
    }

    /// Like [`Target::root_script`], over a new connection (no master).
    pub fn fresh_root_script(&self, script: &Script, args: &[String]) -> Cmd {
        let mut c = self
            .wrap(&script_argv(script, args), true, true)
            .timeout(Duration::from_secs(15));
        c.stdin = Some(script.text().into_bytes());
        c
    }

    /// Close the master connection (best effort).
    pub async fn close(&self) {
        if let Kind::Ssh = self.kind {
            if !self.control_path.exists() {
                return;
            }
            let mut v = vec!["ssh".to_string()];
            v.extend(self.common_options());
            v.extend(self.multiplex_options());
            v.extend(["-O".into(), "exit".into(), self.destination()]);
            let _ = runner::run(&Cmd::new(v).timeout(Duration::from_secs(5))).await;
        }
    }
}

/// `sh -s NAME ARGS…`: the script comes on stdin; its first line drops NAME
/// (which is there for the reader of the command line).
fn script_argv(script: &Script, args: &[String]) -> Vec<String> {
    let mut argv = vec!["sh".to_string(), "-s".into(), script.name.into()];
    argv.extend(args.iter().cloned());
    argv
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Does this stderr say that sudo wanted a password?
pub fn needs_password(stderr: &str) -> bool {
    stderr.contains("a password is required") || stderr.contains("a terminal is required")
}
