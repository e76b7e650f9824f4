//! A run that is interrupted (SIGINT, as Ctrl-C sends it) or whose host
//! task crashes: every host ends on a consistent generation, holds no lock,
//! appears in the result with the right code, and the next deploy works
//! without --break-lock.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use testworld::{World, assert_exit, json, stdout, write_fleet};

const NO_LOCK: &str = "test ! -e /var/lib/pantheros/lock";

fn host(w: &World, name: &str, generation: u32) -> testworld::FixtureHost {
    w.fixture_host(name, generation, "")
}

/// `pantheros ARGS` from the client namespace with its output in files.
fn spawn(w: &World, flake: &Path, args: &[&str]) -> (Child, PathBuf, PathBuf) {
    let bin = testworld::pantheros_bin();
    let mut argv = vec![bin.to_str().unwrap()];
    argv.extend_from_slice(args);
    let out = w.path().join(format!("out-{}", fastrand_id()));
    let err = out.with_extension("err");
    let child = w
        .client(&argv)
        .current_dir(flake)
        .env("PANTHEROS_LOG_DIR", w.path().join("logs"))
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    (child, out, err)
}

fn fastrand_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigint(child: &Child) {
    testworld::sh(&["kill", "-INT", &child.id().to_string()]);
}

fn finish(mut child: Child, out: &Path, err: &Path) -> (i32, serde_json::Value, String) {
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "pantheros did not exit after the interrupt"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(err).unwrap();
    let out = std::fs::read_to_string(out).unwrap();
    let doc = serde_json::from_str(&out).unwrap_or_else(|e| panic!("no JSON ({e}):\n{out}\n{err}"));
    (status.code().unwrap_or(-1), doc, err)
}

/// After the interrupt: no lock, the profile and the running fixture agree,
/// and the next deploy goes through without --break-lock.
fn assert_consistent_and_deployable(w: &World, flake: &Path, name: &str, next: u32) {
    // A watchdog the lock was handed to releases it as it exits, just
    // after writing its final status: give it that moment, not more.
    wait_for("the deploy lock's release", 10, || {
        w.host(name).exec(&["sh", "-c", NO_LOCK]).status.success()
    });
    let marker = w.generation_marker(name);
    let profile = w.profile_target(name);
    assert!(
        profile.ends_with(&format!("-26.05.{marker}")),
        "{name}: the profile ({profile}) and the running generation ({marker}) disagree"
    );
    write_fleet(flake, &[host(w, name, next)]);
    let out = w.pantheros(flake, &["deploy", name, "--yes"]);
    assert_exit(&out, 0);
    assert_eq!(w.generation_marker(name), next.to_string());
}

/// `deploy alpha --yes --json` in the background, SIGINT once its stderr
/// shows `marker` (and `settle` more), then its exit code, JSON, stderr and
/// the time from the signal to its exit.
fn deploy_interrupted_at(
    w: &World,
    flake: &Path,
    marker: &str,
    settle: Duration,
) -> (i32, serde_json::Value, String, Duration) {
    let (child, out, err) = spawn(w, flake, &["deploy", "alpha", "--yes", "--json"]);
    wait_for(marker, 60, || {
        std::fs::read_to_string(&err)
            .unwrap_or_default()
            .contains(marker)
    });
    std::thread::sleep(settle);
    let started = Instant::now();
    sigint(&child);
    let (code, doc, err) = finish(child, &out, &err);
    (code, doc, err, started.elapsed())
}

#[test]
fn an_interrupt_during_the_build_changes_nothing_and_exits_5() {
    let Some((w, flake)) = testworld::world_with_deployed_host("alpha") else {
        return;
    };
    let mut slow = host(&w, "alpha", 2);
    slow.build_seconds = 30;
    write_fleet(&flake, &[slow]);
    let (code, doc, err, took) = deploy_interrupted_at(
        &w,
        &flake,
        "building /nix/store/",
        Duration::from_millis(300),
    );
    assert!(took < Duration::from_secs(10), "the build was not stopped");
    assert_eq!(code, 5, "{err}");
    assert_eq!(doc["hosts"][0]["result"], "interrupted", "{doc}");
    assert!(
        err.contains("interrupted by SIGINT during build; nothing was changed"),
        "{err}"
    );
    assert_eq!(w.generation_marker("alpha"), "1");
    assert_consistent_and_deployable(&w, &flake, "alpha", 3);
}

#[test]
fn an_interrupt_at_the_confirmation_prompt_releases_every_lock() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    w.add_host("beta");
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[host(&w, "alpha", 1), host(&w, "beta", 1)]);
    assert_exit(
        &w.pantheros(&flake, &["deploy", "alpha", "beta", "--yes"]),
        0,
    );
    write_fleet(&flake, &[host(&w, "alpha", 2), host(&w, "beta", 2)]);
    // A real terminal: the prompt only appears on one. The driver waits for
    // it, sends SIGINT to pantheros, and prints pantheros' exit code last.
    let bin = testworld::pantheros_bin();
    let driver = r#"
import os, pty, signal, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
seen, sent = b"", False
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
    if not sent and b"Continue with deployment?" in seen:
        time.sleep(0.3)
        os.kill(pid, signal.SIGINT)
        sent = True
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
print("\nEXIT", os.waitstatus_to_exitcode(status), "PROMPTED", sent)
"#;
    let out = w
        .client(&[
            "python3",
            "-c",
            driver,
            bin.to_str().unwrap(),
            "deploy",
            "alpha",
            "beta",
        ])
        .current_dir(&flake)
        .env("PANTHEROS_LOG_DIR", w.path().join("logs"))
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.contains("PROMPTED True"), "{text}");
    assert!(text.contains("EXIT 5 "), "{text}");
    assert!(
        text.contains("interrupted by SIGINT during the confirmation"),
        "{text}"
    );
    for h in ["alpha", "beta"] {
        assert_eq!(w.generation_marker(h), "1", "{h} changed");
    }
    assert_consistent_and_deployable(&w, &flake, "alpha", 3);
    assert_consistent_and_deployable(&w, &flake, "beta", 3);
}

#[test]
fn an_interrupt_during_activation_leaves_it_to_the_watchdog_and_says_so() {
    let Some((w, flake)) = testworld::world_with_deployed_host("alpha") else {
        return;
    };
    let mut slow = host(&w, "alpha", 2);
    slow.switch_seconds = 2;
    write_fleet(&flake, &[slow]);
    let (code, doc, err, _) =
        deploy_interrupted_at(&w, &flake, "activating (switch)", Duration::from_millis(0));
    assert_eq!(code, 6, "{err}");
    assert_eq!(doc["hosts"][0]["result"], "unknown", "{doc}");
    assert!(
        err.contains("rolls it back within 6s unless it was confirmed"),
        "{err}"
    );
    // Until the watchdog ends, it holds the lock: another deploy is refused
    // (it must not overlap that activation).
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes"]);
    assert_exit(&out, 1);
    testworld::assert_stderr_has(&out, &["another deployment holds the lock"]);
    // The watchdog, unconfirmed, goes back to generation 1 by itself.
    let status = "d=$(ls -td /var/lib/pantheros/runs/*/ | head -n 1); cat \"${d}status\"";
    wait_for("the watchdog's rollback", 30, || {
        stdout(&w.host("alpha").exec(&["sh", "-c", status])).starts_with("rolled-back")
    });
    assert_eq!(w.generation_marker("alpha"), "1");
    assert_consistent_and_deployable(&w, &flake, "alpha", 3);
}

#[test]
fn an_interrupt_during_health_checks_keeps_the_confirmed_generation() {
    let Some((w, flake)) = testworld::world_with_deployed_host("alpha") else {
        return;
    };
    let slow = w.fixture_host(
        "alpha",
        2,
        r#"healthChecks = { commands = [ "sleep 20" ]; timeout = 60; };"#,
    );
    write_fleet(&flake, &[slow]);
    let (code, doc, err, took) =
        deploy_interrupted_at(&w, &flake, "confirmed", Duration::from_millis(500));
    assert!(
        took < Duration::from_secs(15),
        "the health checks were not stopped"
    );
    assert_eq!(code, 6, "{err}");
    assert_eq!(doc["hosts"][0]["result"], "unknown", "{doc}");
    assert!(err.contains("the new generation stays active"), "{err}");
    assert_eq!(w.generation_marker("alpha"), "2");
    assert_consistent_and_deployable(&w, &flake, "alpha", 3);
}

/// A host whose task panics (a test-only fault) still ends with an outcome:
/// the other host deploys, the crashed one is "unknown" (exit 6), its lock
/// is released and its SSH master closed; the run's JSON lists both.
#[test]
fn a_crashed_host_task_is_reported_unknown_and_releases_its_lock() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    w.add_host("beta");
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[host(&w, "alpha", 1), host(&w, "beta", 1)]);
    let bin = testworld::pantheros_bin();
    let out = w
        .client(&[
            bin.to_str().unwrap(),
            "deploy",
            "alpha",
            "beta",
            "--yes",
            "--json",
            "--keep-going",
        ])
        .current_dir(&flake)
        .env("PANTHEROS_LOG_DIR", w.path().join("logs"))
        .env("PANTHEROS_TEST_FAULT", "beta:copy")
        .output()
        .unwrap();
    assert_exit(&out, 6);
    let doc = json(&out);
    let results: Vec<(&str, &str)> = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["host"].as_str().unwrap(), h["result"].as_str().unwrap()))
        .collect();
    assert_eq!(results, [("alpha", "success"), ("beta", "unknown")]);
    assert!(
        doc["hosts"][1]["error"]
            .as_str()
            .unwrap()
            .contains("crashed"),
        "{doc}"
    );
    assert_eq!(w.generation_marker("alpha"), "1");
    // beta's preflight took the lock before the crash; it was given back.
    w.host("beta").exec_ok(&["sh", "-c", NO_LOCK]);
    assert_eq!(w.generation_marker("beta"), "");
    let ip = w.host("beta").ip.clone();
    let ss = w.client_exec(&["ss", "-Htn", "state", "established", "dst", &ip]);
    assert!(
        stdout(&ss).trim().is_empty(),
        "SSH connections left open:\n{}",
        stdout(&ss)
    );
    // And beta deploys next time, without --break-lock.
    write_fleet(&flake, &[host(&w, "beta", 1)]);
    assert_exit(&w.pantheros(&flake, &["deploy", "beta", "--yes"]), 0);
    assert_eq!(w.generation_marker("beta"), "1");
}

/// Interrupted while the closure is being copied (the link throttled so the
/// copy takes a while): the copy stops, the lock is released, nothing changed.
#[test]
fn an_interrupt_during_the_copy_changes_nothing_and_exits_5() {
    let Some((w, flake)) = testworld::world_with_deployed_host("alpha") else {
        return;
    };
    let mut next = host(&w, "alpha", 2);
    next.blob_kib = 8192;
    write_fleet(&flake, &[next]);
    let ns = w.client_ns.clone();
    let throttle = |on: bool| {
        let verb = if on { "add" } else { "del" };
        let mut argv = vec![
            "ip", "netns", "exec", &ns, "tc", "qdisc", verb, "dev", "eth0", "root",
        ];
        if on {
            argv.extend(["tbf", "rate", "2mbit", "burst", "32kbit", "latency", "10s"]);
        }
        testworld::sh(&argv);
    };
    throttle(true);
    let (code, doc, err, took) = deploy_interrupted_at(
        &w,
        &flake,
        "copying the closure",
        Duration::from_millis(500),
    );
    throttle(false);
    // The 8 MiB copy at 2 Mbit/s takes half a minute: it was stopped.
    assert!(took < Duration::from_secs(15), "the copy was not stopped");
    assert_eq!(code, 5, "{err}");
    assert_eq!(doc["hosts"][0]["result"], "interrupted", "{doc}");
    assert!(
        err.contains("interrupted by SIGINT during copy; nothing was changed"),
        "{err}"
    );
    assert_eq!(w.generation_marker("alpha"), "1");
    assert_consistent_and_deployable(&w, &flake, "alpha", 3);
}

/// The log once got a command's output only when the command ended, so the
/// log of a run that was killed during a long build had nothing of it.
/// Lines now reach the log as they are printed: the build's first line is
/// there while the build still runs, and stays after a SIGKILL.
#[test]
fn a_killed_runs_log_keeps_what_its_commands_printed() {
    let Some((w, flake)) = testworld::world_with_deployed_host("alpha") else {
        return;
    };
    let mut slow = host(&w, "alpha", 2);
    slow.build_seconds = 120;
    write_fleet(&flake, &[slow]);
    let (mut child, _, _) = spawn(&w, &flake, &["deploy", "alpha", "--yes"]);
    let line = "building the fixture system of alpha, generation 2";
    let logs = w.path().join("logs");
    let log_with_line = || {
        testworld::stdout(&testworld::try_sh(&[
            "grep",
            "-rl",
            line,
            logs.to_str().unwrap(),
        ]))
        .lines()
        .next()
        .map(PathBuf::from)
    };
    wait_for("the build's first line in the host's log", 60, || {
        log_with_line().is_some()
    });
    testworld::sh(&["kill", "-KILL", &child.id().to_string()]);
    let _ = child.wait();
    // The build the killed deployer left behind is stopped too: only this
    // world's (its client namespace's), never another test run's.
    let ours = testworld::stdout(&testworld::try_sh(&["ip", "netns", "pids", &w.client_ns]));
    let building = testworld::stdout(&testworld::try_sh(&[
        "pgrep",
        "-f",
        "nixos-system-alpha-26.05.2.drv",
    ]));
    for pid in building
        .split_whitespace()
        .filter(|p| ours.split_whitespace().any(|o| o == *p))
    {
        let _ = testworld::try_sh(&["kill", "-KILL", pid]);
    }
    let log = log_with_line().expect("the line is still in the log");
    assert!(
        log.to_string_lossy().contains("deploy-alpha-"),
        "{}",
        log.display()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("$ nix-store --realise"), "{text}");
    assert_eq!(w.generation_marker("alpha"), "1");
}
