//! The protocol between the deployer and the scripts it runs on a target:
//! exit numbers and status words, defined once here and sent to the target
//! as shell constants in front of every script ([`prelude`]), and the one
//! parser of what the scripts print ([`Status`], [`section`]).

/// Exit numbers the target scripts use for outcomes the deployer handles.
pub mod exits {
    /// preflight.sh: another deployment holds the host's lock.
    pub const LOCKED: i32 = 75;
    /// preflight.sh: the toplevel is not a NixOS system.
    pub const NOT_A_SYSTEM: i32 = 76;
    /// generations.sh: the profile does not exist.
    pub const NO_PROFILE: i32 = 3;
    /// `switch-to-configuration`: the switch worked but some units failed.
    pub const UNITS_FAILED: i32 = 4;
    /// break-lock.sh: the lock's holder is still activating on the host.
    pub const LOCK_LIVE: i32 = 77;
    /// keys-check.sh: a key's owner or group does not exist on the host.
    pub const KEY_OWNER: i32 = 78;
    /// dry-activate.sh: another activation holds NixOS's activation lock.
    pub const ACTIVATION_LOCKED: i32 = 79;
    /// dry-activate.sh: the host's systemd never settled (still starting).
    pub const SYSTEM_STARTING: i32 = 80;
}

/// The words of activate.sh's status line, in the order they can appear.
pub mod words {
    pub const ACTIVATING: &str = "activating";
    pub const AWAITING_CONFIRM: &str = "awaiting-confirm";
    pub const CONFIRMED: &str = "confirmed";
    pub const DONE: &str = "done";
    pub const FAILED: &str = "failed";
    pub const ROLLING_BACK: &str = "rolling-back";
    pub const ROLLED_BACK: &str = "rolled-back";
    pub const ROLLBACK_FAILED: &str = "rollback-failed";
    pub const REBOOT_REQUIRED: &str = "reboot-required";
}

/// Shell assignments of the constants above, sent before every script.
pub fn prelude() -> String {
    let consts: [(&str, String); 17] = [
        (
            "EXIT_ACTIVATION_LOCKED",
            exits::ACTIVATION_LOCKED.to_string(),
        ),
        ("EXIT_KEY_OWNER", exits::KEY_OWNER.to_string()),
        ("EXIT_LOCK_LIVE", exits::LOCK_LIVE.to_string()),
        ("EXIT_LOCKED", exits::LOCKED.to_string()),
        ("EXIT_NOT_A_SYSTEM", exits::NOT_A_SYSTEM.to_string()),
        ("EXIT_NO_PROFILE", exits::NO_PROFILE.to_string()),
        ("EXIT_UNITS_FAILED", exits::UNITS_FAILED.to_string()),
        ("EXIT_SYSTEM_STARTING", exits::SYSTEM_STARTING.to_string()),
        ("ST_ACTIVATING", words::ACTIVATING.into()),
        ("ST_AWAITING_CONFIRM", words::AWAITING_CONFIRM.into()),
        ("ST_CONFIRMED", words::CONFIRMED.into()),
        ("ST_DONE", words::DONE.into()),
        ("ST_FAILED", words::FAILED.into()),
        ("ST_ROLLING_BACK", words::ROLLING_BACK.into()),
        ("ST_ROLLED_BACK", words::ROLLED_BACK.into()),
        ("ST_ROLLBACK_FAILED", words::ROLLBACK_FAILED.into()),
        ("ST_REBOOT_REQUIRED", words::REBOOT_REQUIRED.into()),
    ];
    let mut s = String::from(
        "# shellcheck disable=SC2034 # pantheros protocol constants (src/host/protocol.rs); not every script uses each\n",
    );
    for (k, v) in consts {
        s.push_str(&format!("{k}='{v}'\n"));
    }
    s
}

/// Where an activation stands, from its status line on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// No status line yet (or it could not be read).
    None,
    Activating,
    AwaitingConfirm,
    Confirmed,
    /// Switched without magic rollback (or `--goal boot`).
    Done,
    /// Nothing changed on the host.
    Failed(String),
    RollingBack(String),
    RolledBack(String),
    RollbackFailed(String),
    /// NixOS would not activate the new system live (why): it is the boot
    /// default, or the pre-switch checks refused and nothing changed.
    RebootRequired(String),
    /// A line that is none of the above.
    Unknown(String),
    /// The watchdog no longer runs but left `last`, a status that is not
    /// final: a reboot (`rebooted`) or a kill ended it. `running` is the
    /// system the host runs now. Nothing will change this status any more.
    Ended {
        rebooted: bool,
        running: String,
        last: Box<Status>,
    },
}

impl Status {
    pub fn parse(line: &str) -> Status {
        let line = line.trim();
        if line.is_empty() {
            return Status::None;
        }
        let (word, rest) = match line.split_once(' ') {
            Some((w, r)) => (w, r.to_string()),
            None => (line, String::new()),
        };
        match word {
            words::ACTIVATING => Status::Activating,
            words::AWAITING_CONFIRM => Status::AwaitingConfirm,
            words::CONFIRMED => Status::Confirmed,
            words::DONE => Status::Done,
            words::FAILED => Status::Failed(rest),
            words::ROLLING_BACK => Status::RollingBack(rest),
            words::ROLLED_BACK => Status::RolledBack(rest),
            words::ROLLBACK_FAILED => Status::RollbackFailed(rest),
            words::REBOOT_REQUIRED => Status::RebootRequired(rest),
            _ => Status::Unknown(line.to_string()),
        }
    }

    /// What status.sh prints: the status line, then, when the watchdog
    /// ended without a final status, `ended rebooted|stopped RUNNING`.
    pub fn read(out: &str) -> Status {
        let mut lines = out.lines();
        let status = Status::parse(lines.next().unwrap_or(""));
        let Some(ended) = lines.find_map(|l| l.trim().strip_prefix("ended ")) else {
            return status;
        };
        let (how, running) = ended.split_once(' ').unwrap_or((ended, ""));
        Status::Ended {
            rebooted: how == "rebooted",
            running: running.trim().to_string(),
            last: Box::new(status),
        }
    }

    /// The watchdog has finished: nothing will change this status any more
    /// (`Confirmed` and `Done` keep the new system; the others say why not).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Status::Confirmed
                | Status::Done
                | Status::Failed(_)
                | Status::RolledBack(_)
                | Status::RollbackFailed(_)
                | Status::RebootRequired(_)
                | Status::Ended { .. }
        )
    }

    /// The note a status line carries after `awaiting-confirm` or `done`
    /// (units already failing before the run), if any.
    pub fn note(out: &str) -> Option<String> {
        let line = out.lines().next()?.trim();
        let (word, rest) = line.split_once(' ')?;
        (word == words::AWAITING_CONFIRM || word == words::DONE).then(|| rest.trim().to_string())
    }

    /// The status as the target wrote it (for messages).
    /// The status's word in the protocol ([`words`]); "" for none, an
    /// unknown line or an ended watchdog.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Activating => words::ACTIVATING,
            Status::AwaitingConfirm => words::AWAITING_CONFIRM,
            Status::Confirmed => words::CONFIRMED,
            Status::Done => words::DONE,
            Status::Failed(_) => words::FAILED,
            Status::RollingBack(_) => words::ROLLING_BACK,
            Status::RolledBack(_) => words::ROLLED_BACK,
            Status::RollbackFailed(_) => words::ROLLBACK_FAILED,
            Status::RebootRequired(_) => words::REBOOT_REQUIRED,
            Status::None | Status::Unknown(_) | Status::Ended { .. } => "",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Status::None => "no status".into(),
            Status::Activating | Status::AwaitingConfirm | Status::Confirmed | Status::Done => {
                self.word().into()
            }
            Status::Failed(r)
            | Status::RollingBack(r)
            | Status::RolledBack(r)
            | Status::RollbackFailed(r)
            | Status::RebootRequired(r) => format!("{} {r}", self.word()),
            Status::Unknown(l) => l.clone(),
            Status::Ended {
                rebooted,
                running,
                last,
            } => {
                let how = if *rebooted {
                    "the host rebooted during the activation"
                } else {
                    "the watchdog on the host stopped before finishing"
                };
                format!(
                    "{how} (its last status: {}); the host now runs {}",
                    last.describe(),
                    if running.is_empty() {
                        "an unknown system"
                    } else {
                        running
                    }
                )
            }
        }
    }
}

/// The lines after `== name` up to the next `== ` line.
pub fn section<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_word_parses_and_describes_back() {
        for line in [
            "activating",
            "awaiting-confirm",
            "confirmed",
            "done",
            "failed nix-env --set did not set the profile",
            "rolling-back health checks failed",
            "rolled-back switch-to-configuration exited 1",
            "rollback-failed no previous generation",
            "reboot-required the new system is the boot default",
        ] {
            let s = Status::parse(line);
            assert!(!matches!(s, Status::Unknown(_) | Status::None), "{line}");
            assert_eq!(s.describe(), line);
        }
        assert_eq!(Status::parse(""), Status::None);
        assert_eq!(
            Status::parse("rebooting"),
            Status::Unknown("rebooting".into())
        );
    }

    /// A note after awaiting-confirm or done (units already failing before
    /// the run) is read, and does not change the status.
    #[test]
    fn a_note_rides_on_awaiting_confirm_and_done() {
        let line = "done already failing before this deploy: old.service";
        assert_eq!(Status::read(line), Status::Done);
        assert_eq!(
            Status::note(line).as_deref(),
            Some("already failing before this deploy: old.service")
        );
        assert_eq!(
            Status::read("awaiting-confirm already failing before this deploy: x.service"),
            Status::AwaitingConfirm
        );
        assert_eq!(Status::note("done"), None);
        assert_eq!(Status::note("rolled-back why"), None);
        assert!(Status::RebootRequired("x".into()).is_final());
    }

    #[test]
    fn a_watchdog_that_ended_early_is_read_as_ended() {
        assert_eq!(Status::read("activating\n"), Status::Activating);
        assert_eq!(Status::read("confirmed"), Status::Confirmed);
        let s = Status::read("activating\nended rebooted /nix/store/abc-system\n");
        assert_eq!(
            s,
            Status::Ended {
                rebooted: true,
                running: "/nix/store/abc-system".into(),
                last: Box::new(Status::Activating),
            }
        );
        assert!(s.is_final());
        assert!(s.describe().contains("rebooted"), "{}", s.describe());
        let s = Status::read("\nended stopped \n");
        assert!(
            matches!(&s, Status::Ended { rebooted: false, last, .. } if **last == Status::None),
            "{s:?}"
        );
    }

    #[test]
    fn only_a_finished_watchdog_is_final() {
        assert!(Status::Confirmed.is_final());
        assert!(Status::RolledBack("x".into()).is_final());
        assert!(!Status::Activating.is_final());
        assert!(!Status::AwaitingConfirm.is_final());
        assert!(!Status::RollingBack("x".into()).is_final());
        assert!(!Status::None.is_final());
        assert!(!Status::Unknown("?".into()).is_final());
    }

    #[test]
    fn the_prelude_defines_every_constant_the_scripts_use() {
        let p = prelude();
        for script in super::super::scripts::ALL {
            for word in script
                .body
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            {
                if (word.starts_with("EXIT_") || word.starts_with("ST_")) && word.len() > 4 {
                    assert!(
                        p.contains(&format!("\n{word}='")),
                        "{} uses {word}, which the prelude does not define",
                        script.name
                    );
                }
            }
        }
    }

    #[test]
    fn sections_split() {
        let out = "== generations\n 1 x (current)\n== system\n/nix/store/abc\n== systemd\nno\n";
        assert_eq!(section(out, "system"), vec!["/nix/store/abc"]);
        assert_eq!(section(out, "systemd"), vec!["no"]);
    }
}
