//! Reaching a host ([`Target`]): where commands run (the local machine, or a host over
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

pub mod exec;
#[cfg(test)]
pub mod fake;
pub mod password;
pub mod protocol;
pub mod scripts;
pub mod session;

pub use scripts::Script;
pub use session::{Reach, RunPlaces, Session};

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
    /// An `ssh` wrapper carrying this host's exact options, for `nix copy`
    /// (put first on its PATH; NIX_SSHOPTS would split options on spaces).
    ssh_wrapper_dir: PathBuf,
    /// The run's escalation password, when one was given and this host's
    /// escalation needs it (decided at connection time).
    pub password: Option<std::sync::Arc<password::Slot>>,
    /// The host's own `sshOptions` (without the pinned host key's), for
    /// another machine reached in the same run (a build host).
    user_ssh_options: Vec<String>,
}

/// A new private directory (0700, created with mkdtemp semantics, so it is
/// never one that someone else made first) for this run's SSH control
/// sockets and ssh wrappers; short, so socket paths stay under the 108-byte
/// limit. It is removed when the returned guard is dropped, however the run
/// ends.
pub fn control_dir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    // tempfile leaves a directory's mode to the umask: ask for 0700.
    tempfile::Builder::new()
        .prefix("pantheros-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(std::env::temp_dir())
}

/// A short, collision-free file name for a host (`web.1` and `web_1` differ).
fn host_key(name: &str) -> String {
    use md5::{Digest, Md5};
    let digest = Md5::digest(name.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The ssh options that verify a host against the host key recorded in
/// its facts (`hostKey`), whatever address it is reached at: a known_hosts
/// file of the run holding that key alone under a fixed alias. They come
/// first (ssh takes an option's first value), so no other known_hosts
/// decides. None for a host without that fact; when the file cannot be
/// written, ssh still checks strictly against the user's own files.
pub fn pinned_key_options(h: &Host, control_dir: &Path) -> Vec<String> {
    let Some(key) = h
        .deployment
        .facts
        .get(crate::inventory::facts::names::HOST_KEY)
        .and_then(|v| v.as_str())
    else {
        return vec![];
    };
    let alias = format!("pantheros-{}", h.name);
    let file = control_dir.join(format!("{}.known_hosts", host_key(&h.name)));
    let written = std::fs::create_dir_all(control_dir)
        .and_then(|()| std::fs::write(&file, format!("{alias} {key}\n")));
    let mut o = vec!["-o".to_string(), "StrictHostKeyChecking=yes".into()];
    if written.is_ok() {
        o.extend([
            "-o".into(),
            format!("UserKnownHostsFile={}", file.display()),
            "-o".into(),
            format!("HostKeyAlias={alias}"),
        ]);
    }
    o
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
        // A host pantheros installed is checked against the host key it
        // pinned (its `hostKey` fact), on every connection of the run.
        let mut ssh_options = pinned_key_options(h, control_dir);
        ssh_options.extend(d.ssh_options.iter().cloned());
        Target {
            kind: if local { Kind::Local } else { Kind::Ssh },
            name: h.name.clone(),
            host: h.target_host().to_string(),
            user: d.target_user.clone(),
            port: d.target_port,
            ssh_options,
            escalate,
            control_path: control_dir.join(format!("{}.sock", host_key(&h.name))),
            ssh_wrapper_dir: control_dir.join(format!("{}.ssh", host_key(&h.name))),
            password: None,
            user_ssh_options: d.ssh_options.clone(),
        }
    }

    /// Carry the run's escalation password (used once [`password::Slot::activate`]
    /// says this host needs it); nothing when commands need no escalation.
    pub fn with_password(mut self, p: Option<std::sync::Arc<password::Password>>) -> Target {
        self.password = match p {
            Some(p) if !self.escalate.is_empty() => {
                Some(std::sync::Arc::new(password::Slot::new(p, &self.escalate)))
            }
            _ => None,
        };
        self
    }

    /// Find out whether this host's escalation needs the run's password
    /// and, when it does, check it once (see [`password`]); `run` runs each
    /// probe (the deploy runs them through the host's log). Ok(true) when
    /// the password is in use here.
    pub async fn settle_password_with<F, Fut>(&self, run: F) -> Result<bool, password::Unsettled>
    where
        F: Fn(Cmd) -> Fut,
        Fut: std::future::Future<Output = Result<runner::Output, crate::error::CommandFailure>>,
    {
        use password::{Need, Unsettled, accepted, need};
        let Some(slot) = &self.password else {
            return Ok(false);
        };
        let probe = || {
            self.root_cmd(&["true".to_string()])
                .timeout(Duration::from_secs(30))
        };
        let escalation = self.escalate.join(" ");
        let out = run(probe()).await.map_err(|f| Unsettled {
            message: "could not run the escalation on the host".into(),
            failure: Some(f),
            wrong_password: false,
        })?;
        match (need(&out), slot.cannot()) {
            (Need::No, _) => return Ok(false),
            // It failed, a password was given, and this escalation cannot
            // take one (run0 says "Access denied" when polkit would ask).
            (Need::Unknown, Some(why)) => {
                let said = runner::tail(&out.stderr, 1).join(" ");
                return Err(Unsettled::said(format!(
                    "{escalation} failed on {} ({said}), and {why}; nothing was changed",
                    self.name
                )));
            }
            // Another failure: what runs next reports it as it would
            // without a password.
            (Need::Unknown, None) => return Ok(false),
            (Need::Yes, _) => {}
        }
        slot.activate().map_err(|why| {
            Unsettled::said(format!(
                "{escalation} wants a password on {}, and {why}",
                self.name
            ))
        })?;
        let out = run(probe()).await.map_err(|f| Unsettled {
            message: "could not run sudo with the password on the host".into(),
            failure: Some(f),
            wrong_password: false,
        })?;
        accepted(&out).map_err(|said| Unsettled {
            message: format!(
                "sudo on {} refused the password ({said}); nothing was changed",
                self.name
            ),
            failure: None,
            wrong_password: true,
        })?;
        Ok(true)
    }

    /// [`Target::settle_password_with`] outside a deploy (`rollback
    /// --list`, `exec --sudo`, `status`, `keys upload`): Err says why.
    pub async fn settle_password(&self) -> Result<(), String> {
        self.settle_password_with(|c| async move { runner::run(&c).await })
            .await
            .map(|_| ())
            .map_err(|u| u.message)
    }

    /// A privileged command as the password needs it: the escalation that
    /// reads it, and the password line before whatever it reads itself.
    fn feed(&self, mut c: Cmd) -> Cmd {
        if let Some((_, line)) = self.password.as_ref().and_then(|s| s.current()) {
            let mut stdin = line;
            stdin.extend(c.stdin.take().unwrap_or_default());
            c.stdin = Some(stdin);
        }
        c
    }

    pub fn is_local(&self) -> bool {
        matches!(self.kind, Kind::Local)
    }

    /// `user@host`, always with the user (the host's `targetUser`, root by
    /// default), so ssh_config's `User` never picks another one.
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
        // A host that accepts TCP but never answers, or goes silent, is
        // given up on instead of hanging the run.
        o.extend([
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ConnectTimeout=15".into(),
            "-o".into(),
            "ServerAliveInterval=5".into(),
            "-o".into(),
            "ServerAliveCountMax=6".into(),
        ]);
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

    /// NIX_SSHOPTS for `nix copy` over the same master connection. Nix
    /// splits it on whitespace, so an option with a space in it cannot go
    /// this way: see [`Target::ssh_wrapper`].
    pub fn nix_sshopts(&self) -> String {
        let mut o = self.common_options();
        o.extend(self.multiplex_options());
        o.join(" ")
    }

    /// A directory holding an `ssh` that runs the real ssh with this host's
    /// options, exactly (quoted), over the master connection: put it first
    /// on `nix copy`'s PATH. Written once per run, 0700.
    pub fn ssh_wrapper(&self) -> std::io::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let dir = &self.ssh_wrapper_dir;
        let script = dir.join("ssh");
        if !script.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            let real = which::which("ssh").unwrap_or_else(|_| PathBuf::from("/usr/bin/ssh"));
            let real = real.to_string_lossy().into_owned();
            let mut argv = vec![real.clone()];
            argv.extend(self.common_options());
            argv.extend(self.multiplex_options());
            let mut other = vec![real];
            other.extend(self.user_ssh_options.iter().cloned());
            other.extend(["-o".into(), "BatchMode=yes".into()]);
            // This host over its master with all its options; any other
            // (a build host `nix copy --from` reads) with the host's own
            // sshOptions only, never through this host's master.
            let text = format!(
                "#!/bin/sh\n# pantheros: ssh to {name} with its options, for nix copy\n\
                 for a in \"$@\"; do\n  if [ \"$a\" = {dest} ]; then\n    exec {this} \"$@\"\n  fi\ndone\n\
                 exec {other} \"$@\"\n",
                name = self.name,
                dest = shell_words::quote(&self.destination()),
                this = shell_words::join(&argv),
                other = shell_words::join(&other),
            );
            crate::report::file::write_atomic(&script, text.as_bytes(), 0o700)?;
        }
        Ok(dir.clone())
    }

    /// Environment for a `nix copy` to this host: the wrapper first on PATH,
    /// and no NIX_SSHOPTS (the wrapper has them, quoted).
    pub fn nix_copy_env(&self) -> Vec<(String, String)> {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        match self.ssh_wrapper() {
            Ok(dir) => vec![
                ("PATH".into(), format!("{}:{path}", dir.display())),
                ("NIX_SSHOPTS".into(), String::new()),
            ],
            Err(_) => vec![("NIX_SSHOPTS".into(), self.nix_sshopts())],
        }
    }

    /// The store URI for `nix copy --to`.
    pub fn store_uri(&self) -> String {
        format!("ssh://{}", self.destination())
    }

    fn wrap(&self, argv: &[String], privileged: bool, fresh: bool) -> Cmd {
        let mut inner: Vec<String> = Vec::new();
        if privileged {
            match self.password.as_ref().and_then(|s| s.current()) {
                Some((prefix, _)) => inner.extend(prefix.iter().cloned()),
                None => inner.extend(self.escalate.iter().cloned()),
            }
        }
        inner.extend(argv.iter().cloned());
        match self.kind {
            Kind::Local => Cmd::new(inner),
            Kind::Ssh => {
                // ssh takes the first value given for an option: a fresh
                // connection's own settings go before the common ones.
                let mut v = vec!["ssh".to_string()];
                if fresh {
                    v.extend([
                        "-o".into(),
                        "ControlMaster=no".into(),
                        "-o".into(),
                        "ControlPath=none".into(),
                        "-o".into(),
                        "ConnectTimeout=5".into(),
                    ]);
                    v.extend(self.common_options());
                } else {
                    v.extend(self.common_options());
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
        self.feed(self.wrap(argv, true, false))
    }

    /// One of pantheros' target scripts, as root, with its arguments (built
    /// by the script's argv builder in [`scripts`]). The script's text goes
    /// on stdin (`sh -s NAME ARGS…`), so the command line, the log and
    /// errors show which script ran with which arguments, and no script
    /// text sits in either machine's process table.
    pub fn root_script(&self, script: &Script, args: &[String]) -> Cmd {
        let mut c = self.wrap(&script_argv(script, args), true, false);
        c.stdin = Some(script.text().into_bytes());
        self.feed(c)
    }

    /// Like [`Target::root_script`], with the text the script's own builder
    /// made (launch.sh carries activate.sh inside it).
    pub fn root_script_text(&self, script: &Script, text: String, args: &[String]) -> Cmd {
        let mut c = self.wrap(&script_argv(script, args), true, false);
        c.stdin = Some(text.into_bytes());
        self.feed(c)
    }

    /// Like [`Target::root_script`], with `input` for the script to read
    /// on stdin after its own text (a key's value: never in an argument or
    /// the environment). The shell gets the script by reading exactly its
    /// length (`dd bs=1`), since a shell reading a script from a pipe may
    /// read ahead into whatever follows it.
    pub fn root_script_with_input(&self, script: &Script, args: &[String], input: &[u8]) -> Cmd {
        self.script_with_input(script, args, input, false)
    }

    /// [`Target::root_script_with_input`] over a new connection (no master).
    pub fn fresh_root_script_with_input(
        &self,
        script: &Script,
        args: &[String],
        input: &[u8],
    ) -> Cmd {
        self.script_with_input(script, args, input, true)
            .timeout(Duration::from_secs(15))
    }

    fn script_with_input(
        &self,
        script: &Script,
        args: &[String],
        input: &[u8],
        fresh: bool,
    ) -> Cmd {
        let text = script.standalone();
        let mut argv = vec![
            "sh".to_string(),
            "-c".into(),
            format!("eval \"$(dd bs=1 count={} 2>/dev/null)\"", text.len()),
            script.name.into(),
        ];
        argv.extend(args.iter().cloned());
        let mut c = self.wrap(&argv, true, fresh);
        let mut stdin = text.into_bytes();
        stdin.extend_from_slice(input);
        c.stdin = Some(stdin);
        self.feed(c)
    }

    /// Like [`Target::root_script`], over a new connection (no master).
    pub fn fresh_root_script(&self, script: &Script, args: &[String]) -> Cmd {
        let mut c = self
            .wrap(&script_argv(script, args), true, true)
            .timeout(Duration::from_secs(15));
        c.stdin = Some(script.text().into_bytes());
        self.feed(c)
    }

    /// Open the master connection and return once it is up (`-f -N`: the
    /// master goes to the background after authentication, its output to
    /// /dev/null), for the commands that follow. None for a local target.
    pub fn connect_cmd(&self) -> Option<Cmd> {
        match self.kind {
            Kind::Local => None,
            Kind::Ssh => {
                let mut v = vec!["ssh".to_string()];
                v.extend(self.common_options());
                v.extend(self.multiplex_options());
                v.extend(["-f".into(), "-N".into(), self.destination()]);
                Some(Cmd::new(v).timeout(Duration::from_secs(60)))
            }
        }
    }

    /// `ssh -G`: the settings ssh would use for this host, its real
    /// address (`hostname`) among them. None for a local target.
    pub fn resolve_cmd(&self) -> Option<Cmd> {
        match self.kind {
            Kind::Local => None,
            Kind::Ssh => {
                let mut v = vec!["ssh".to_string(), "-G".into()];
                v.extend(self.common_options());
                v.push(self.destination());
                Some(Cmd::new(v).timeout(Duration::from_secs(10)))
            }
        }
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

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Does this stderr say that the escalation wanted a password (sudo and
/// doas: "a password is required"; sudo: "a terminal is required"; run0,
/// through polkit: "Interactive authentication required")?
pub fn needs_password(stderr: &str) -> bool {
    stderr.contains("a password is required")
        || stderr.contains("a terminal is required")
        || stderr.contains("Interactive authentication required")
}

#[cfg(test)]
mod control_dir_tests {
    /// The control directory is private and goes with its guard, whatever
    /// was left in it (sockets, wrappers): no run leaves one behind.
    #[test]
    fn the_control_directory_is_private_and_removed_with_its_guard() {
        use std::os::unix::fs::PermissionsExt;
        let control = super::control_dir().unwrap();
        let path = control.path().to_path_buf();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::create_dir(path.join("host.ssh")).unwrap();
        std::fs::write(path.join("host.ssh/ssh"), "#!/bin/sh\n").unwrap();
        drop(control);
        assert!(!path.exists(), "{} was left behind", path.display());
    }
}
