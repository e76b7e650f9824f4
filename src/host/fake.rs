//! An in-memory fleet for unit tests: each host answers the target protocol
//! (the scripts in `scripts/`, by name and arguments, as `protocol.rs`
//! defines their output) from its state: generations, the running system,
//! the lock, the activation's status, the keys written. Local steps of a
//! run (`nix-store --realise`, `nix copy`) succeed; the realise makes the GC
//! root a real symlink, as the build stage reads it.
//!
//! Behaviours make a host fail the way real hosts do: the switch fails, the
//! host takes no new connection after activation, health checks fail, the
//! rollback fails, another run holds the lock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::exec::{Executor, Running};
use super::protocol::{exits, words};
use crate::runner::{Cmd, Lines, Output, Stream};

/// How a fake host misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    pub switch_fails: bool,
    /// After an activation, fresh connections fail (the reachability proof).
    pub unreachable_after_switch: bool,
    pub health_fails: bool,
    pub rollback_fails: bool,
    /// Another run holds the host's lock.
    pub locked_by: Option<String>,
}

/// One fake host's state.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// System of generation N at index N-1.
    pub generations: Vec<String>,
    /// The profile's current generation (0: none).
    pub current: usize,
    pub running: Option<String>,
    /// The run id holding the lock.
    pub lock: Option<String>,
    pub status: String,
    /// (file path, value) of each key write, in order.
    pub keys: Vec<(String, Vec<u8>)>,
    /// The deploy records written, in order.
    pub records: Vec<serde_json::Value>,
    /// Every step the host was asked to do, in order: a script's name, or
    /// "connect", "copy", "close".
    pub steps: Vec<String>,
    pub behaviour: Behaviour,
    /// Fresh connections fail from now on (until the watchdog rolls back).
    pub cut_off: bool,
    /// Where the host was before the activation in progress.
    pub before: Option<(usize, Option<String>)>,
}

impl State {
    fn system(&self) -> Option<String> {
        self.current
            .checked_sub(1)
            .and_then(|i| self.generations.get(i))
            .cloned()
    }
}

/// Fake hosts by name; an [`Executor`] for a whole run.
#[derive(Clone, Default)]
pub struct FakeFleet {
    hosts: Arc<Mutex<BTreeMap<String, State>>>,
    /// Every host's steps in the order they happened, as "host step".
    events: Arc<Mutex<Vec<String>>>,
}

fn ok(stdout: impl Into<String>) -> Output {
    out(0, stdout)
}

fn out(code: i32, stdout: impl Into<String>) -> Output {
    Output {
        stdout: stdout.into(),
        stderr: String::new(),
        code: Some(code),
        duration: std::time::Duration::ZERO,
    }
}

impl FakeFleet {
    pub fn add(&self, name: &str, state: State) {
        self.hosts.lock().unwrap().insert(name.into(), state);
    }

    pub fn state(&self, name: &str) -> State {
        self.hosts.lock().unwrap()[name].clone()
    }

    pub fn executor(&self) -> Arc<dyn Executor> {
        Arc::new(self.clone())
    }

    fn answer(&self, cmd: &Cmd) -> Output {
        let argv = &cmd.argv;
        match argv[0].as_str() {
            "nix-store" => {
                // --realise DRV --add-root ROOT --indirect
                let drv = &argv[2];
                if let Some(root) = argv.iter().position(|a| a == "--add-root") {
                    let top = drv.trim_end_matches(".drv");
                    let _ = std::fs::remove_file(&argv[root + 1]);
                    std::os::unix::fs::symlink(top, &argv[root + 1]).unwrap();
                }
                ok("")
            }
            "ssh" => self.over_ssh(cmd),
            _ if argv.iter().any(|a| a == "copy") => {
                let host = argv
                    .iter()
                    .find_map(|a| a.strip_prefix("ssh://"))
                    .and_then(|d| d.split('@').next_back())
                    .unwrap_or_default()
                    .to_string();
                self.with(&host, |s| {
                    s.steps.push("copy".into());
                    ok("")
                })
            }
            other => panic!("the fake does not know {other}: {argv:?}"),
        }
    }

    fn with(&self, host: &str, f: impl FnOnce(&mut State) -> Output) -> Output {
        let mut hosts = self.hosts.lock().unwrap();
        let s = hosts
            .get_mut(host)
            .unwrap_or_else(|| panic!("no fake host {host}"));
        let before = s.steps.len();
        let o = f(s);
        let mut events = self.events.lock().unwrap();
        events.extend(
            s.steps[before..]
                .iter()
                .map(|step| format!("{host} {step}")),
        );
        o
    }

    /// Every host's steps, in the order they happened ("host step").
    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    fn over_ssh(&self, cmd: &Cmd) -> Output {
        let argv = &cmd.argv;
        let fresh = argv.iter().any(|a| a == "ControlPath=none");
        if let Some(i) = argv.iter().position(|a| a == "-O") {
            let host = argv[i + 2].split('@').next_back().unwrap().to_string();
            return self.with(&host, |s| {
                s.steps.push("close".into());
                ok("")
            });
        }
        if argv.iter().any(|a| a == "-N") {
            let host = argv
                .last()
                .unwrap()
                .split('@')
                .next_back()
                .unwrap()
                .to_string();
            return self.with(&host, |s| {
                s.steps.push("connect".into());
                ok("")
            });
        }
        let dash = argv
            .iter()
            .position(|a| a == "--")
            .expect("ssh ... DEST -- CMD");
        let host = argv[dash - 1].split('@').next_back().unwrap().to_string();
        let inner = shell_words::split(&argv[dash + 1]).unwrap();
        // `sh -s NAME ARGS` or `sh -c BOOTSTRAP NAME ARGS` (a script with input).
        let (name, args, input) = match inner[1].as_str() {
            "-s" => (inner[2].clone(), inner[3..].to_vec(), vec![]),
            "-c" => {
                // The bootstrap reads exactly the script's length (count=N).
                let text_len: usize = inner[2]
                    .split("count=")
                    .nth(1)
                    .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|n| n.parse().ok())
                    .expect("the bootstrap names the script's length");
                let stdin = cmd.stdin.clone().unwrap_or_default();
                (
                    inner[3].clone(),
                    inner[4..].to_vec(),
                    stdin[text_len..].to_vec(),
                )
            }
            _ => panic!("not a pantheros script: {inner:?}"),
        };
        self.with(&host, |s| {
            if fresh && s.cut_off && name == "status.sh" {
                // By the time the run asks over a new connection again, the
                // watchdog has given up waiting for the proof and gone back.
                if let Some((current, running)) = s.before.take() {
                    (s.current, s.running) = (current, running);
                }
                s.cut_off = false;
                s.status = format!("{} no confirmation within the timeout", words::ROLLED_BACK);
            }
            if fresh && s.cut_off {
                return Output {
                    stdout: String::new(),
                    stderr: "ssh: connect to host: Connection timed out".into(),
                    code: Some(255),
                    duration: std::time::Duration::ZERO,
                };
            }
            s.steps.push(name.clone());
            script(s, &name, &args, &input)
        })
    }
}

/// preflight.sh: the lock, and where the host stands.
fn preflight(s: &mut State, args: &[String]) -> Output {
    let (run, noop_if) = (&args[2], args.get(4));
    if let Some(holder) = &s.behaviour.locked_by {
        return out(exits::LOCKED, format!("LOCKED {holder}"));
    }
    if let Some(holder) = &s.lock {
        return out(exits::LOCKED, format!("LOCKED {holder}"));
    }
    s.lock = Some(run.clone());
    let system = s.system().unwrap_or_default();
    let running = s.running.clone().unwrap_or_default();
    let mut o = format!(
        "== generation\n{}\n== system\n{system}\n== running\n{running}\n",
        if s.current > 0 {
            s.current.to_string()
        } else {
            String::new()
        }
    );
    if noop_if.is_some_and(|t| *t == system && *t == running) {
        s.lock = None;
        o.push_str("== noop\n");
    } else {
        o.push_str("== systemd\nno\n");
    }
    ok(o)
}

/// launch.sh: an activation or a rollback, carried out at once.
fn launch(s: &mut State, args: &[String]) -> Output {
    // DIR UNIT UNTIL SECONDS activate DIR PROFILE TOPLEVEL GOAL MAGIC CT AT FOU BASELINE FORCE GEN
    //                        rollback DIR PROFILE GOAL REASON
    let waits = args[2] != "-";
    let args = &args[2..];
    match args[2].as_str() {
        "activate" => {
            let (top, magic, generation) = (&args[5], args[7] == "1", &args[13]);
            let before = (s.current, s.running.clone());
            s.before = Some(before.clone());
            match generation.parse::<usize>() {
                Ok(g) => s.current = g,
                Err(_) => {
                    s.generations.push(top.clone());
                    s.current = s.generations.len();
                }
            }
            s.running = Some(top.clone());
            s.status = if s.behaviour.switch_fails {
                (s.current, s.running) = before;
                format!(
                    "{} switch-to-configuration failed (exit 1)",
                    words::ROLLED_BACK
                )
            } else if magic {
                s.cut_off = s.behaviour.unreachable_after_switch;
                words::AWAITING_CONFIRM.into()
            } else {
                words::DONE.into()
            };
        }
        "rollback" => {
            let reason = &args[6];
            s.status = if s.behaviour.rollback_fails {
                format!(
                    "{} the previous generation failed to switch",
                    words::ROLLBACK_FAILED
                )
            } else {
                s.current = s.current.saturating_sub(1);
                s.running = s.system();
                format!("{} {reason}", words::ROLLED_BACK)
            };
        }
        other => panic!("launch.sh {other}"),
    }
    // With a wait, the status the activation reached, as the real one reports it.
    if waits {
        ok(format!("launched\n== status\n{}\n", s.status))
    } else {
        ok("launched\n")
    }
}

fn script(s: &mut State, name: &str, args: &[String], input: &[u8]) -> Output {
    match name {
        "preflight.sh" => preflight(s, args),
        "unlock.sh" => {
            if s.lock.as_deref() == Some(args[1].as_str()) {
                if args.get(2).map(String::as_str) == Some("record") {
                    match serde_json::from_slice(input) {
                        Ok(v) => s.records.push(v),
                        Err(e) => panic!("unlock.sh record got no JSON record: {e}"),
                    }
                }
                s.lock = None;
                ok("")
            } else {
                ok(format!("NOT-OURS {}", s.lock.clone().unwrap_or_default()))
            }
        }
        "handover.sh" | "status.sh" => ok(format!("{}\n", s.status)),
        "dry-activate.sh" => {
            // TOPLEVEL WAIT OLD: the plan, then both closures.
            let (new, old) = (args[0].clone(), args.get(2).cloned().unwrap_or_default());
            let mut o = String::from(
                "== dry-activate\nwould restart the following units: app.service\n== dry-activate-rc\n0\n\
                 == inhibitors-running\n{}\n== inhibitors-new\n{}\n== boot\n== old\n",
            );
            if !old.is_empty() {
                o.push_str("/nix/store/00000000000000000000000000000000-hello-2.12\t100\n");
            }
            o.push_str(&format!(
                "== new\n/nix/store/00000000000000000000000000000000-hello-2.13\t120\n{new}\t1\n"
            ));
            ok(o)
        }
        "launch.sh" => launch(s, args),
        "confirm.sh" => {
            s.status = words::CONFIRMED.into();
            // With a wait: the status the watchdog ends in, the generation,
            // and with health arguments the first round of checks.
            if args.len() < 3 {
                return ok("");
            }
            let mut o = format!(
                "{}\n== generation\n{} {}\n",
                s.status,
                s.current,
                s.system().unwrap_or_default()
            );
            if args.len() > 3 {
                // The first round of health checks ran in this command.
                s.steps.push("health.sh".into());
                if s.behaviour.health_fails {
                    o.push_str("== health\nfailed: app.service is not active\n== health-rc\n1\n");
                } else {
                    o.push_str("== health\n== health-rc\n0\n");
                }
            }
            ok(o)
        }
        "health.sh" => {
            if s.behaviour.health_fails {
                out(1, "failed: app.service is not active")
            } else {
                ok("")
            }
        }
        "generations.sh" => {
            let mut o = String::new();
            for (i, sys) in s.generations.iter().enumerate() {
                let n = i + 1;
                let cur = if n == s.current { "(current)" } else { "-" };
                o.push_str(&format!(
                    "GEN\t{n}\t2026-12-01 10:00:00\t{cur}\t{sys}\tyes\t26.05\t-\n"
                ));
            }
            ok(o)
        }
        "keys-check.sh" => ok(""),
        "key-write.sh" => {
            let path = format!("{}/{}", args[0], args[1]);
            s.keys.push((path, input.to_vec()));
            ok(format!("KEY {} {}\n", args[1], input.len()))
        }
        "break-lock.sh" => {
            s.lock = None;
            ok("")
        }
        other => panic!("the fake host does not know {other}"),
    }
}

impl Executor for FakeFleet {
    fn run<'a>(&'a self, cmd: &'a Cmd, lines: &'a dyn Lines) -> Running<'a> {
        let o = self.answer(cmd);
        Box::pin(async move {
            // A real command is an await point: other hosts' tasks run
            // while it does.
            tokio::task::yield_now().await;
            for l in o.stdout.lines() {
                lines.line(Stream::Stdout, l);
            }
            for l in o.stderr.lines() {
                lines.line(Stream::Stderr, l);
            }
            Ok(o)
        })
    }
}
