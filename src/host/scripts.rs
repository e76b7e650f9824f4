//! The scripts pantheros runs on targets (`scripts/*.sh`, shellchecked by
//! `scripts/test` and by the test below), and one argv builder per script:
//! the only place that knows each script's positional arguments.

use super::protocol;

/// A script that runs on a target.
#[derive(Debug, Clone, Copy)]
pub struct Script {
    pub name: &'static str,
    pub body: &'static str,
}

const COMMON: &str = include_str!("scripts/common.sh");

pub const PREFLIGHT: Script = Script {
    name: "preflight.sh",
    body: include_str!("scripts/preflight.sh"),
};
pub const GENERATIONS: Script = Script {
    name: "generations.sh",
    body: include_str!("scripts/generations.sh"),
};
pub const LAUNCH: Script = Script {
    name: "launch.sh",
    body: include_str!("scripts/launch.sh"),
};
pub const ACTIVATE: Script = Script {
    name: "activate.sh",
    body: include_str!("scripts/activate.sh"),
};
pub const STATUS: Script = Script {
    name: "status.sh",
    body: include_str!("scripts/status.sh"),
};
pub const CONFIRM: Script = Script {
    name: "confirm.sh",
    body: include_str!("scripts/confirm.sh"),
};
pub const HEALTH: Script = Script {
    name: "health.sh",
    body: include_str!("scripts/health.sh"),
};

pub const UNLOCK: Script = Script {
    name: "unlock.sh",
    body: include_str!("scripts/unlock.sh"),
};
pub const READ_FACTS: Script = Script {
    name: "read-facts.sh",
    body: include_str!("scripts/read-facts.sh"),
};
pub const DRY_ACTIVATE: Script = Script {
    name: "dry-activate.sh",
    body: include_str!("scripts/dry-activate.sh"),
};

pub const BREAK_LOCK: Script = Script {
    name: "break-lock.sh",
    body: include_str!("scripts/break-lock.sh"),
};

pub const HANDOVER: Script = Script {
    name: "handover.sh",
    body: include_str!("scripts/handover.sh"),
};

pub const KEYS_CHECK: Script = Script {
    name: "keys-check.sh",
    body: include_str!("scripts/keys-check.sh"),
};

pub const HOST_STATE: Script = Script {
    name: "host-state.sh",
    body: include_str!("scripts/host-state.sh"),
};

pub const KEY_WRITE: Script = Script {
    name: "key-write.sh",
    body: include_str!("scripts/key-write.sh"),
};

pub const COPY_CLEANUP: Script = Script {
    name: "copy-cleanup.sh",
    body: include_str!("scripts/copy-cleanup.sh"),
};

pub const VALIDATE: Script = Script {
    name: "validate.sh",
    body: include_str!("scripts/validate.sh"),
};

pub const REBOOT: Script = Script {
    name: "reboot.sh",
    body: include_str!("scripts/reboot.sh"),
};

pub const CACHE: Script = Script {
    name: "cache.sh",
    body: include_str!("scripts/cache.sh"),
};

pub const ALL: [Script; 19] = [
    CACHE,
    REBOOT,
    COPY_CLEANUP,
    KEYS_CHECK,
    KEY_WRITE,
    HANDOVER,
    BREAK_LOCK,
    PREFLIGHT,
    UNLOCK,
    DRY_ACTIVATE,
    READ_FACTS,
    GENERATIONS,
    LAUNCH,
    ACTIVATE,
    STATUS,
    CONFIRM,
    HEALTH,
    VALIDATE,
    HOST_STATE,
];

impl Script {
    /// What the target's shell reads on stdin (`sh -s NAME ARGS…`): drop
    /// NAME, then the protocol constants, the shared functions, the script.
    pub fn text(&self) -> String {
        format!("{}shift\n{COMMON}\n{}", protocol::prelude(), self.body)
    }

    /// The script for a shell that gets its arguments directly (`sh FILE ARGS…`).
    pub fn standalone(&self) -> String {
        format!("{}{COMMON}\n{}", protocol::prelude(), self.body)
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}

/// preflight.sh STATE_DIR PROFILE RUN_ID OWNER [NOOP_IF|- [CACHE_KEY]]
pub fn preflight_args(
    state_dir: &str,
    profile: &str,
    run_id: &str,
    owner: &str,
    noop_if: Option<&str>,
    cache_key: Option<&str>,
) -> Vec<String> {
    let mut v = vec![
        state_dir.into(),
        profile.into(),
        run_id.into(),
        owner.into(),
    ];
    match (noop_if, cache_key) {
        (n, Some(k)) => v.extend([n.unwrap_or("-").to_string(), k.to_string()]),
        (n, None) => v.extend(n.map(String::from)),
    }
    v
}

/// keys-check.sh USER GROUP [USER GROUP ...]
pub fn keys_check_args<'a>(owners: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    owners
        .into_iter()
        .flat_map(|(u, g)| [u.to_string(), g.to_string()])
        .collect()
}

/// key-write.sh DIR FILE USER GROUP MODE
pub fn key_write_args(dir: &str, file: &str, user: &str, group: &str, mode: &str) -> Vec<String> {
    vec![
        dir.into(),
        file.into(),
        user.into(),
        group.into(),
        mode.into(),
    ]
}

/// copy-cleanup.sh PATH...
pub fn copy_cleanup_args(paths: &[String]) -> Vec<String> {
    paths.to_vec()
}

/// break-lock.sh STATE_DIR FORCE
pub fn break_lock_args(state_dir: &str, force: bool) -> Vec<String> {
    vec![state_dir.into(), yes_no(force)]
}

/// unlock.sh STATE_DIR RUN_ID
pub fn unlock_args(state_dir: &str, run_id: &str) -> Vec<String> {
    vec![state_dir.into(), run_id.into()]
}

/// unlock.sh writing this run's deploy record (on stdin) before the lock goes.
pub fn unlock_with_record_args(state_dir: &str, run_id: &str) -> Vec<String> {
    vec![state_dir.into(), run_id.into(), "record".into()]
}

/// dry-activate.sh TOPLEVEL WAIT (seconds for NixOS's activation lock)
pub fn dry_activate_args(toplevel: &str, wait: u64, old: Option<&str>) -> Vec<String> {
    vec![
        toplevel.into(),
        wait.to_string(),
        old.unwrap_or_default().into(),
    ]
}

/// read-facts.sh NAME COMMAND …
/// host-state.sh's arguments: pantheros' state directory and the profile.
pub fn host_state_args(dir: &str, profile: &str) -> Vec<String> {
    vec![dir.into(), profile.into()]
}

pub fn read_facts_args(commands: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    commands
        .iter()
        .flat_map(|(n, c)| [n.clone(), c.clone()])
        .collect()
}

/// generations.sh PROFILE SIZES
pub fn generations_args(profile: &str, sizes: bool) -> Vec<String> {
    vec![profile.into(), yes_no(sizes)]
}

/// generations.sh with the deploy records kept in `records_dir`.
pub fn generations_with_records_args(profile: &str, sizes: bool, records_dir: &str) -> Vec<String> {
    vec![profile.into(), yes_no(sizes), records_dir.into()]
}

/// status.sh DIR, confirm.sh DIR
/// `validate.sh`'s checks, one builder each (see the script's header).
pub mod validate {
    fn args(check: &str, rest: &[&str]) -> Vec<String> {
        std::iter::once(check)
            .chain(rest.iter().copied())
            .map(String::from)
            .collect()
    }

    pub fn handshakes(interface: &str) -> Vec<String> {
        args("handshakes", &[interface])
    }

    pub fn listen(port: u16) -> Vec<String> {
        args("listen", &[&port.to_string()])
    }

    pub fn rsyncd() -> Vec<String> {
        args("rsyncd", &[])
    }

    /// One container labelled `label` (`KEY=VALUE`) tries each
    /// (name, address, port).
    pub fn container(
        socket: &str,
        image: &str,
        label: &str,
        timeout: u64,
        probes: &[(&str, &str, u16)],
    ) -> Vec<String> {
        let mut v = args("container", &[socket, image, label, &timeout.to_string()]);
        for (name, address, port) in probes {
            v.extend([name.to_string(), address.to_string(), port.to_string()]);
        }
        v
    }

    /// The host's Tailscale status.
    pub fn tailscale() -> Vec<String> {
        args("tailscale", &[])
    }

    /// One container labelled `label`: its id, pid and cgroup lines.
    pub fn cgroup(socket: &str, image: &str, label: &str) -> Vec<String> {
        args("cgroup", &[socket, image, label])
    }

    pub fn spire(bin: &str, server_socket: &str, agent_socket: &str) -> Vec<String> {
        args("spire", &[bin, server_socket, agent_socket])
    }

    /// One container labelled `label` fetches its X.509 SVID and, with a
    /// token service (`token`: its socket and audience), a JWT-SVID that
    /// the host presents to it.
    pub fn job(
        socket: &str,
        image: &str,
        label: &str,
        bin: &str,
        agent_socket: &str,
        token: Option<(&str, &str)>,
    ) -> Vec<String> {
        let mut v = args("job", &[socket, image, label, bin, agent_socket]);
        if let Some((token_socket, audience)) = token {
            v.extend([token_socket.to_string(), audience.to_string()]);
        }
        v
    }
}

/// The argv of the scripts that take only the host's state directory
/// (`activate.sh`'s status reads, the hand-over, the confirmation).
pub fn dir_args(dir: &str) -> Vec<String> {
    vec![dir.into()]
}

/// status.sh waiting on the host, up to `seconds`, until the status starts
/// with `until` (a [`protocol::words`] word) or is final.
pub fn await_args(dir: &str, until: &str, seconds: u64) -> Vec<String> {
    vec![dir.into(), until.into(), seconds.max(1).to_string()]
}

/// confirm.sh, then, in the same command, waiting on the host up to
/// `seconds` for the watchdog to take the confirmation, reading `profile`'s
/// generation, and (with `health`) the first round of health checks.
pub fn confirm_args(
    dir: &str,
    seconds: u64,
    profile: &str,
    health: Option<&HealthArgs>,
) -> Vec<String> {
    let mut v = vec![dir.into(), seconds.max(1).to_string(), profile.into()];
    if let Some(h) = health {
        v.extend(health_args(h));
    }
    v
}

/// cache.sh URL TOPLEVEL: substitute `toplevel` from the cache at `url`.
pub fn cache_fetch_args(url: &str, toplevel: &str) -> Vec<String> {
    vec![url.into(), toplevel.into()]
}

/// One step of `deploy --reboot` (reboot.sh), as its argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebootStep<'a> {
    /// Which boot loader can boot a generation once, and whether
    /// `toplevel` has the boot watchdog.
    Loader { toplevel: &'a str },
    /// Put the system in the profile as a one-shot boot entry, write the
    /// watchdog's trial marker, reboot.
    Arm {
        profile: &'a str,
        toplevel: &'a str,
        confirm_timeout: u64,
        run_id: &'a str,
        generation: Option<u64>,
    },
    /// The boot id, the booted system, the watchdog's lines.
    Check,
    /// The trial proved itself: make it the default.
    Keep { profile: &'a str, toplevel: &'a str },
    /// The trial failed: the profile and the default back on `generation`
    /// (`system`), and, with `reboot`, a reboot into it.
    Back {
        profile: &'a str,
        generation: u64,
        system: &'a str,
        reboot: bool,
    },
}

/// reboot.sh's argv for one step, under the state directory `state`.
pub fn reboot_args(state: &str, step: &RebootStep<'_>) -> Vec<String> {
    let mut v: Vec<String> = vec![];
    match step {
        RebootStep::Loader { toplevel } => {
            v.extend(["loader".into(), state.into(), toplevel.to_string()])
        }
        RebootStep::Arm {
            profile,
            toplevel,
            confirm_timeout,
            run_id,
            generation,
        } => {
            v.extend(["arm".into(), state.into(), profile.to_string()]);
            v.extend([
                toplevel.to_string(),
                confirm_timeout.max(&1).to_string(),
                run_id.to_string(),
            ]);
            if let Some(g) = generation {
                v.push(g.to_string());
            }
        }
        RebootStep::Check => v.extend(["check".into(), state.into()]),
        RebootStep::Keep { profile, toplevel } => v.extend([
            "keep".into(),
            state.into(),
            profile.to_string(),
            toplevel.to_string(),
        ]),
        RebootStep::Back {
            profile,
            generation,
            system,
            reboot,
        } => {
            v.extend(["back".into(), state.into(), profile.to_string()]);
            v.extend([generation.to_string(), system.to_string()]);
            if *reboot {
                v.push("reboot".into());
            }
        }
    }
    v
}

/// What activate.sh is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activation {
    /// Set the profile to `toplevel` (or switch it to the existing
    /// `generation`), switch, and (with magic) wait for the confirmation.
    Activate {
        profile: String,
        toplevel: String,
        goal: String,
        magic: bool,
        confirm_timeout: u64,
        activation_timeout: u64,
        fail_on_units: bool,
        /// Units failed before this run (exit 4 is judged against them).
        baseline: Vec<String>,
        /// Skip the pre-switch checks (`NIXOS_NO_CHECK=1`).
        force_switch: bool,
        generation: Option<u64>,
    },
    /// Go back to the generation recorded before the activation.
    Rollback {
        profile: String,
        goal: String,
        reason: String,
    },
}

/// launch.sh's text: activate.sh travels inside it (written to the run's
/// directory on the target), so neither script is ever an argument.
pub fn launch_text() -> String {
    let marker = "PANTHEROS_ACTIVATE_SH";
    format!(
        "{}shift\n{COMMON}\nactivate_text() {{\n  cat <<'{marker}'\n{}\n{marker}\n}}\n\n{}",
        protocol::prelude(),
        ACTIVATE.standalone(),
        LAUNCH.body
    )
}

/// launch.sh DIR UNIT UNTIL SECONDS ARGS…: run activate.sh ARGS…
/// detached, then (with `wait`: a status word and seconds; "-" and 0
/// without) wait on the host until the status starts with that word or is
/// final, in the same command.
pub fn launch_args(
    dir: &str,
    unit: &str,
    wait: Option<(&str, u64)>,
    what: &Activation,
) -> Vec<String> {
    let (until, seconds) = wait.unwrap_or(("-", 0));
    let mut v = vec![
        dir.to_string(),
        unit.to_string(),
        until.to_string(),
        seconds.to_string(),
    ];
    match what {
        Activation::Activate {
            profile,
            toplevel,
            goal,
            magic,
            confirm_timeout,
            activation_timeout,
            fail_on_units,
            baseline,
            force_switch,
            generation,
        } => v.extend([
            "activate".to_string(),
            dir.to_string(),
            profile.clone(),
            toplevel.clone(),
            goal.clone(),
            if *magic { "1".into() } else { "0".into() },
            confirm_timeout.to_string(),
            activation_timeout.to_string(),
            if *fail_on_units {
                "1".into()
            } else {
                "0".into()
            },
            if baseline.is_empty() {
                "-".into()
            } else {
                baseline.join(",")
            },
            if *force_switch {
                "1".into()
            } else {
                "0".into()
            },
            generation.map(|g| g.to_string()).unwrap_or_default(),
        ]),
        Activation::Rollback {
            profile,
            goal,
            reason,
        } => v.extend([
            "rollback".to_string(),
            dir.to_string(),
            profile.clone(),
            goal.clone(),
            reason.clone(),
        ]),
    }
    v
}

/// The health checks of one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthArgs {
    pub systemd: bool,
    /// Seconds each check may take (`healthChecks.timeout`).
    pub timeout: u64,
    /// Units that had failed before the deploy (reported, not blamed).
    pub baseline: Vec<String>,
    pub services: Vec<String>,
    pub http: Vec<String>,
    pub commands: Vec<String>,
}

impl HealthArgs {
    /// Is there anything to check?
    pub fn is_empty(&self) -> bool {
        !self.systemd
            && self.services.is_empty()
            && self.http.is_empty()
            && self.commands.is_empty()
    }
}

/// health.sh SYSTEMD TIMEOUT [--services …] [--http …] [--commands …]
pub fn health_args(h: &HealthArgs) -> Vec<String> {
    let mut v = vec![yes_no(h.systemd), h.timeout.to_string()];
    for (flag, items) in [
        ("--baseline", &h.baseline),
        ("--services", &h.services),
        ("--http", &h.http),
        ("--commands", &h.commands),
    ] {
        if !items.is_empty() {
            v.push(flag.into());
            v.extend(items.iter().cloned());
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_argv_matches_the_scripts_positions() {
        assert_eq!(
            cache_fetch_args("http://c:8080", "/nix/store/x-system"),
            ["http://c:8080", "/nix/store/x-system"]
        );
        assert!(CACHE.text().contains("url=$1 top=$2"));
    }

    #[test]
    fn reboot_argv_matches_the_scripts_positions() {
        let s = "/var/lib/pantheros";
        assert_eq!(
            reboot_args(
                s,
                &RebootStep::Loader {
                    toplevel: "/nix/store/t"
                }
            ),
            ["loader", s, "/nix/store/t"]
        );
        assert_eq!(reboot_args(s, &RebootStep::Check), ["check", s]);
        let arm = RebootStep::Arm {
            profile: "/nix/var/nix/profiles/system",
            toplevel: "/nix/store/abc-system",
            confirm_timeout: 0,
            run_id: "r1",
            generation: None,
        };
        assert_eq!(
            reboot_args(s, &arm),
            [
                "arm",
                s,
                "/nix/var/nix/profiles/system",
                "/nix/store/abc-system",
                "1",
                "r1"
            ]
        );
        let arm = RebootStep::Arm {
            profile: "p",
            toplevel: "t",
            confirm_timeout: 90,
            run_id: "r1",
            generation: Some(7),
        };
        assert_eq!(reboot_args(s, &arm)[4..], ["90", "r1", "7"]);
        assert_eq!(
            reboot_args(
                s,
                &RebootStep::Keep {
                    profile: "p",
                    toplevel: "t"
                }
            ),
            ["keep", s, "p", "t"]
        );
        let back = RebootStep::Back {
            profile: "p",
            generation: 3,
            system: "/nix/store/old",
            reboot: true,
        };
        assert_eq!(
            reboot_args(s, &back),
            ["back", s, "p", "3", "/nix/store/old", "reboot"]
        );
        let text = REBOOT.text();
        for mode in ["loader)", "arm)", "check)", "keep)", "back)"] {
            assert!(text.contains(mode), "reboot.sh has no mode {mode}");
        }
    }

    #[test]
    fn activate_argv_matches_the_scripts_positions() {
        let a = launch_args(
            "/var/lib/pantheros/r1",
            "pantheros-r1-web",
            Some(("awaiting-confirm", 60)),
            &Activation::Activate {
                profile: "/nix/var/nix/profiles/system".into(),
                toplevel: "/nix/store/abc-system".into(),
                goal: "switch".into(),
                magic: true,
                confirm_timeout: 30,
                activation_timeout: 600,
                fail_on_units: true,
                baseline: vec!["old.service".into(), "older.service".into()],
                force_switch: false,
                generation: None,
            },
        );
        assert_eq!(a[0], "/var/lib/pantheros/r1");
        assert_eq!(a[1], "pantheros-r1-web");
        assert_eq!(a[2..4], ["awaiting-confirm", "60"]);
        let text = launch_text();
        assert!(text.contains("roll_back_to()") && text.contains("ST_CONFIRMED="));
        assert_eq!(
            a[4..],
            [
                "activate",
                "/var/lib/pantheros/r1",
                "/nix/var/nix/profiles/system",
                "/nix/store/abc-system",
                "switch",
                "1",
                "30",
                "600",
                "1",
                "old.service,older.service",
                "0",
                ""
            ]
        );
        let r = launch_args(
            "d",
            "u",
            None,
            &Activation::Rollback {
                profile: "p".into(),
                goal: "boot".into(),
                reason: "health checks failed: x".into(),
            },
        );
        assert_eq!(
            r[2..],
            [
                "-",
                "0",
                "rollback",
                "d",
                "p",
                "boot",
                "health checks failed: x"
            ]
        );
    }

    #[test]
    fn health_argv_has_a_section_per_kind_of_check() {
        let h = HealthArgs {
            systemd: true,
            timeout: 10,
            baseline: vec![],
            services: vec!["sshd.service".into()],
            http: vec![],
            commands: vec!["true".into(), "test -e /x".into()],
        };
        assert_eq!(
            health_args(&h),
            [
                "yes",
                "10",
                "--services",
                "sshd.service",
                "--commands",
                "true",
                "test -e /x"
            ]
        );
        assert!(HealthArgs::default().is_empty());
        assert_eq!(health_args(&HealthArgs::default()), ["no", "0"]);
    }

    #[test]
    fn validate_builders_follow_the_scripts_positions() {
        assert_eq!(validate::handshakes("wg0"), ["handshakes", "wg0"]);
        assert_eq!(validate::listen(8080), ["listen", "8080"]);
        assert_eq!(validate::rsyncd(), ["rsyncd"]);
        assert_eq!(
            validate::container(
                "/run/flashpods/podman.sock",
                "alpine",
                "flashpods-job-type=worker",
                3,
                &[("api", "10.0.0.1", 8080), ("internet", "example.org", 443)]
            ),
            [
                "container",
                "/run/flashpods/podman.sock",
                "alpine",
                "flashpods-job-type=worker",
                "3",
                "api",
                "10.0.0.1",
                "8080",
                "internet",
                "example.org",
                "443"
            ]
        );
        assert_eq!(
            validate::cgroup("/p.sock", "alpine", "k=worker"),
            ["cgroup", "/p.sock", "alpine", "k=worker"]
        );
        assert_eq!(
            validate::spire("/nix/store/x-spire/bin", "/s.sock", "/a.sock"),
            ["spire", "/nix/store/x-spire/bin", "/s.sock", "/a.sock"]
        );
        assert_eq!(
            validate::job("/p.sock", "alpine", "k=agent", "/b", "/a.sock", None),
            ["job", "/p.sock", "alpine", "k=agent", "/b", "/a.sock"]
        );
        assert_eq!(
            validate::job(
                "/p.sock",
                "alpine",
                "k=agent",
                "/b",
                "/a.sock",
                Some(("/t.sock", "aud"))
            ),
            [
                "job", "/p.sock", "alpine", "k=agent", "/b", "/a.sock", "/t.sock", "aud"
            ]
        );
    }

    #[test]
    fn the_other_builders() {
        assert_eq!(
            preflight_args(
                "/var/lib/pantheros",
                "/p",
                "r1",
                "me",
                Some("/nix/store/t"),
                None
            ),
            ["/var/lib/pantheros", "/p", "r1", "me", "/nix/store/t"]
        );
        assert_eq!(
            preflight_args("/s", "/p", "r1", "me", None, Some("c-1:AAA="))[4..],
            ["-", "c-1:AAA="]
        );
        assert!(PREFLIGHT.text().contains("cache_trusts_key \"$cache_key\""));
        assert_eq!(
            unlock_args("/var/lib/pantheros", "r1"),
            ["/var/lib/pantheros", "r1"]
        );
        assert_eq!(
            dry_activate_args("/nix/store/t", 60, None),
            ["/nix/store/t", "60", ""]
        );
        assert_eq!(
            dry_activate_args("/nix/store/t", 60, Some("/nix/store/o")),
            ["/nix/store/t", "60", "/nix/store/o"]
        );
        assert_eq!(
            break_lock_args("/var/lib/pantheros", false),
            ["/var/lib/pantheros", "no"]
        );
        assert_eq!(generations_args("/p", true), ["/p", "yes"]);
        assert_eq!(dir_args("/d"), ["/d"]);
        assert_eq!(await_args("/d", "confirmed", 0), ["/d", "confirmed", "1"]);
        assert_eq!(confirm_args("/d", 25, "/p", None), ["/d", "25", "/p"]);
        let h = HealthArgs {
            systemd: true,
            timeout: 5,
            baseline: vec![],
            services: vec!["a.service".into()],
            http: vec![],
            commands: vec![],
        };
        assert_eq!(
            confirm_args("/d", 25, "/p", Some(&h)),
            ["/d", "25", "/p", "yes", "5", "--services", "a.service"]
        );
    }

    /// Every script, as the target receives it, passes shellcheck.
    #[test]
    fn every_script_as_sent_passes_shellcheck() {
        if testworld::which("shellcheck").is_none() {
            testworld::cannot_run("shellcheck is not installed (bash scripts/setup)");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let mut paths = vec![];
        for s in ALL {
            let p = d.path().join(s.name);
            let text = if s.name == LAUNCH.name {
                launch_text()
            } else {
                s.text()
            };
            std::fs::write(&p, text).unwrap();
            paths.push(p.to_string_lossy().into_owned());
        }
        let out = std::process::Command::new("shellcheck")
            .args(["-s", "sh"])
            .args(&paths)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
