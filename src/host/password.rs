//! A password for the hosts' privilege escalation, for the sudo that asks
//! for one.
//!
//! It is read once per run (from `--sudo-password-command`, or asked on the
//! terminal with `--ask-sudo-password`) and handed to each privileged
//! command on its standard input, in front of whatever that command reads
//! (a script's text, a key's value): `sudo -S -k -p ''` takes the first line
//! as the password (`-k`: always, so the line is never left for the
//! command) and passes the rest on. It never appears in an argument, the
//! environment, a log or `--json`, and its Debug form is redacted.
//!
//! Whether a host needs it is found out at connection time: when `sudo -n
//! true` works there, the password is not used on that host at all (a
//! password line sent to a sudo that does not read it would reach the
//! command instead). Only sudo can read a password from standard input:
//! doas and run0 ask a terminal or polkit, and are refused with the reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The password itself.
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// The first line `command` prints (run with `sh -c`); an empty one,
    /// or a failing command, is an error that says which.
    pub fn from_command(command: &str) -> Result<Password, String> {
        let out = std::process::Command::new("sh")
            .args(["-c", command])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .map_err(|e| format!("could not run the sudo password command: {e}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "the sudo password command `{command}` failed ({}): {}",
                out.status,
                err.lines().last().unwrap_or("no output")
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().next().unwrap_or("").to_string();
        if line.is_empty() {
            return Err(format!(
                "the sudo password command `{command}` printed no password"
            ));
        }
        Ok(Password(line))
    }

    /// Ask on the terminal, once.
    pub fn ask() -> Result<Password, String> {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            return Err(
                "--ask-sudo-password needs a terminal; use --sudo-password-command without one"
                    .into(),
            );
        }
        dialoguer::Password::new()
            .with_prompt("sudo password for the hosts")
            .interact()
            .map(Password)
            .map_err(|e| format!("reading the sudo password: {e}"))
    }

    #[cfg(test)]
    pub fn for_test(s: &str) -> Password {
        Password(s.into())
    }

    /// The line a `sudo -S` reads.
    fn line(&self) -> Vec<u8> {
        let mut v = self.0.clone().into_bytes();
        v.push(b'\n');
        v
    }
}

/// The escalation prefix that reads a password on standard input, made
/// from the host's `privilegeEscalationCommand`: sudo only.
pub fn stdin_escalation(escalate: &[String]) -> Result<Vec<String>, String> {
    let program = escalate.first().map(String::as_str).unwrap_or("");
    let name = program.rsplit('/').next().unwrap_or(program);
    match name {
        "sudo" => Ok(vec![
            program.to_string(),
            "-S".into(),
            "-k".into(),
            "-p".into(),
            String::new(),
        ]),
        "doas" => Err(
            "doas reads a password only from a terminal, never from pantheros: give the user a `nopass` rule \
             (permit nopass USER as root) or deploy as root"
                .into(),
        ),
        "run0" => Err(
            "run0 asks polkit, not pantheros, for a password: allow the user without one (a polkit rule) or \
             use sudo"
                .into(),
        ),
        other => Err(format!(
            "{other} is not sudo: pantheros can hand a password to sudo only"
        )),
    }
}

/// Why the run's password could not be settled on a host.
#[derive(Debug)]
pub struct Unsettled {
    pub message: String,
    /// The probe that could not run at all.
    pub failure: Option<crate::error::CommandFailure>,
    /// sudo refused the password (the hint: check it).
    pub wrong_password: bool,
}

impl Unsettled {
    pub fn said(message: String) -> Unsettled {
        Unsettled {
            message,
            failure: None,
            wrong_password: false,
        }
    }
}

/// What the probe (`ESCALATION true`, without the password) said about a
/// host's escalation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// It worked: the password is not used on this host.
    No,
    /// It asked for a password.
    Yes,
    /// It failed otherwise (reported where it is used).
    Unknown,
}

pub fn need(probe: &crate::runner::Output) -> Need {
    if probe.success() {
        Need::No
    } else if super::needs_password(&probe.stderr) {
        Need::Yes
    } else {
        Need::Unknown
    }
}

/// The check with the password (`sudo -S -k true`): Err with what sudo
/// said when it refused it.
pub fn accepted(check: &crate::runner::Output) -> Result<(), String> {
    if check.success() {
        return Ok(());
    }
    let said = crate::runner::tail(&check.stderr, 1).join(" ");
    Err(if said.is_empty() {
        format!("exit {:?}", check.code)
    } else {
        said
    })
}

/// A host's use of the run's password: decided once it is connected.
#[derive(Debug)]
pub struct Slot {
    password: Arc<Password>,
    /// The prefix that reads it, or why this host's escalation cannot.
    prefix: Result<Vec<String>, String>,
    active: AtomicBool,
}

impl Slot {
    pub fn new(password: Arc<Password>, escalate: &[String]) -> Slot {
        Slot {
            password,
            prefix: stdin_escalation(escalate),
            active: AtomicBool::new(false),
        }
    }

    /// Use the password on this host from now on; Err when its escalation
    /// cannot take one (why).
    pub fn activate(&self) -> Result<(), String> {
        match &self.prefix {
            Ok(_) => {
                self.active.store(true, Ordering::SeqCst);
                Ok(())
            }
            Err(why) => Err(why.clone()),
        }
    }

    /// Why this host's escalation cannot take a password (doas, run0), if
    /// it cannot.
    pub fn cannot(&self) -> Option<&str> {
        self.prefix.as_ref().err().map(String::as_str)
    }

    /// The prefix and the password line, when the password is in use.
    pub fn current(&self) -> Option<(&[String], Vec<u8>)> {
        if !self.active.load(Ordering::SeqCst) {
            return None;
        }
        self.prefix
            .as_ref()
            .ok()
            .map(|p| (p.as_slice(), self.password.line()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn only_sudo_takes_a_password_on_stdin() {
        assert_eq!(
            stdin_escalation(&v(&["sudo", "-n"])).unwrap(),
            ["sudo", "-S", "-k", "-p", ""]
        );
        assert_eq!(
            stdin_escalation(&v(&["/run/wrappers/bin/sudo"])).unwrap()[0],
            "/run/wrappers/bin/sudo"
        );
        assert!(
            stdin_escalation(&v(&["doas", "-n"]))
                .unwrap_err()
                .contains("nopass")
        );
        assert!(
            stdin_escalation(&v(&["run0"]))
                .unwrap_err()
                .contains("polkit")
        );
    }

    #[test]
    fn the_password_is_used_only_once_activated_and_never_shown() {
        let p = Arc::new(Password::for_test("hunter2"));
        assert_eq!(format!("{p:?}"), "Password(<redacted>)");
        let slot = Slot::new(p.clone(), &v(&["sudo", "-n"]));
        assert!(slot.current().is_none());
        slot.activate().unwrap();
        let (prefix, line) = slot.current().unwrap();
        assert_eq!(prefix[1], "-S");
        assert_eq!(line, b"hunter2\n");
        assert!(!format!("{slot:?}").contains("hunter2"));
        let doas = Slot::new(p, &v(&["doas"]));
        assert!(doas.activate().is_err());
        assert!(doas.current().is_none());
    }

    #[test]
    fn a_command_gives_its_first_line_and_failures_say_which() {
        assert_eq!(
            Password::from_command("printf 'pw\\nrest'").unwrap().0,
            "pw"
        );
        assert!(
            Password::from_command("true")
                .unwrap_err()
                .contains("printed no password")
        );
        assert!(
            Password::from_command("exit 3")
                .unwrap_err()
                .contains("failed")
        );
    }
}
