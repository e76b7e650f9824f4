//! Deploy under faults and misuse: per-host resources that must not
//! collide, ssh options Nix would split, secrets that must not leak, logs
//! that are private, and `--json` on every exit. Each test checks the
//! host's real state and the exact result.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use std::time::Duration;
use testworld::{World, assert_exit, json, stderr, stdout, write_fleet};

/// Hosts named `web.1` and `web_1` once shared one SSH control socket, so
/// one host's commands ran on the other. Each must get its own generation.
#[test]
fn hosts_whose_names_differ_only_in_punctuation_stay_apart() {
    let Some(mut w) = World::new() else { return };
    // The flake's host names are web.1 and web_1; the machines behind them
    // are the light hosts weba and webb.
    w.add_host("weba");
    w.add_host("webb");
    let flake = w.path().join("fleet");
    let mut a = testworld::FixtureHost::new("web.1", 1);
    a.deployment = w.deployment_for("weba", "confirmTimeout = 6;");
    let mut b = testworld::FixtureHost::new("web_1", 2);
    b.deployment = w.deployment_for("webb", "confirmTimeout = 6;");
    // Attribute names with a dot must be quoted in Nix.
    write_fleet(&flake, &[a, b]);
    let f = flake.join("flake.nix");
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, text.replacen("    web.1 = {", "    \"web.1\" = {", 1)).unwrap();
    let out = w.pantheros(&flake, &["deploy", "web.1", "web_1", "--yes", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(w.generation_marker("weba"), "1");
    assert_eq!(w.generation_marker("webb"), "2");
}

/// An ssh option with a space works for ssh; `NIX_SSHOPTS` would split it
/// and break `nix copy`. The copy goes through a wrapper that keeps it whole.
#[test]
fn an_ssh_option_with_a_space_reaches_nix_copy_intact() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let flake = w.path().join("fleet");
    let mut h = w.fixture_host("alpha", 1, "");
    h.deployment = h.deployment.replacen(
        "sshOptions = [ ",
        "sshOptions = [ \"-o\" \"ConnectionAttempts 2\" ",
        1,
    );
    assert!(
        h.deployment.contains("ConnectionAttempts 2"),
        "{}",
        h.deployment
    );
    write_fleet(&flake, &[h]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes"]);
    assert_exit(&out, 0);
    assert_eq!(w.generation_marker("alpha"), "1");
}

/// Credentials in a health check's URL and command appear nowhere: not on
/// stderr, in `--json`, the log, the `.info`, or the status the target
/// keeps of the rollback. Logs are 0600 in a 0700 directory.
#[test]
fn health_check_secrets_never_reach_output_logs_or_the_target() {
    let Some((w, flake)) = testworld::world_with_deployed_host("alpha") else {
        return;
    };
    let secrets = ["hunter2pass", "tok3nV4lue", "B34rerS3cret"];
    let checks = r#"healthChecks = {
        http = [ "http://admin:hunter2pass@127.0.0.1:9/health?token=tok3nV4lue" ];
        commands = [ "curl -sf -H 'Authorization: Bearer B34rerS3cret' http://127.0.0.1:9/" ];
        timeout = 2;
      };"#;
    write_fleet(&flake, &[w.fixture_host("alpha", 2, checks)]);
    let out = w.pantheros(&flake, &["-v", "deploy", "alpha", "--yes", "--json"]);
    assert_exit(&out, 3);
    assert_eq!(w.generation_marker("alpha"), "1");
    let doc = json(&out);
    let log = PathBuf::from(doc["hosts"][0]["log"].as_str().unwrap());
    let info = log.with_extension("info");
    let on_target = stdout(&w.host("alpha").exec(&[
        "sh",
        "-c",
        "cat /var/lib/pantheros/runs/*/status /var/lib/pantheros/runs/*/log",
    ]));
    let places = [
        ("stderr", stderr(&out)),
        ("stdout", stdout(&out)),
        ("log", std::fs::read_to_string(&log).unwrap()),
        ("info", std::fs::read_to_string(&info).unwrap()),
        ("target status", on_target.clone()),
    ];
    for (place, text) in &places {
        for s in secrets {
            assert!(!text.contains(s), "{s} leaked into the {place}:\n{text}");
        }
    }
    // The failure itself is still explained (with the values masked).
    assert!(
        stderr(&out).contains("http http://***@127.0.0.1:9/health?token=***"),
        "{}",
        stderr(&out)
    );
    assert!(
        on_target.contains("rolled-back health checks failed"),
        "{on_target}"
    );
    for (path, mode) in [
        (&log, 0o600),
        (&info, 0o600),
        (&log.parent().unwrap().to_path_buf(), 0o700),
    ] {
        let m = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, mode, "{} is {m:o}", path.display());
    }
}

/// `--json` prints one document on every exit, also when the run stops
/// before any host (here: an unknown host, exit 15).
#[test]
fn json_is_printed_for_early_errors_too() {
    if testworld::which("nix").is_none() {
        testworld::cannot_run("nix is not installed (bash scripts/setup)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let flake = testworld::fixture_flake(d.path());
    let out = std::process::Command::new(testworld::pantheros_bin())
        .args(["deploy", "nosuchhost", "--yes", "--json"])
        .current_dir(&flake)
        .output()
        .unwrap();
    assert_exit(&out, 15);
    let doc = json(&out);
    testworld::assert_schema(&doc, "error");
    assert_eq!(doc["exitCode"], 15);
    assert_eq!(doc["hosts"], serde_json::json!([]));
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown host `nosuchhost`"),
        "{doc}"
    );
}

/// `--break-lock` removes a dead deployment's lock, but refuses one whose
/// activation still runs on the host (that would make two activations
/// overlap); `--build-only` never touches the hosts, and `rollback` takes
/// the flag too.
#[test]
fn break_lock_refuses_a_live_holder_and_breaks_a_dead_one() {
    let Some((w, flake)) = testworld::world_with_deployed_host("alpha") else {
        return;
    };

    // A dead deployment's lock (no activation of it runs): broken.
    w.host("alpha").exec_ok(&[
        "sh",
        "-c",
        "mkdir -p /var/lib/pantheros/lock && echo 'deadrun pantheros by someone@elsewhere (pid 1)' > /var/lib/pantheros/lock/owner",
    ]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--build-only", "--break-lock"]);
    assert_exit(&out, 0);
    w.host("alpha")
        .exec_ok(&["test", "-d", testworld::TARGET_LOCK]);
    write_fleet(&flake, &[w.fixture_host("alpha", 2, "")]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes", "--break-lock"]);
    assert_exit(&out, 0);
    testworld::assert_stderr_has(&out, &["broke the lock of deadrun"]);
    assert_eq!(w.generation_marker("alpha"), "2");

    // A live one: a slow activation holds the lock; --break-lock is refused.
    let mut slow = w.fixture_host("alpha", 3, "");
    slow.switch_seconds = 4;
    write_fleet(&flake, &[slow]);
    let first = w.spawn_pantheros(&flake, &["deploy", "alpha", "--yes"]);
    let start = std::time::Instant::now();
    let status = "cat /var/lib/pantheros/runs/*/status 2>/dev/null | grep -q activating";
    while !w.host("alpha").exec(&["sh", "-c", status]).status.success() {
        assert!(
            start.elapsed().as_secs() < 30,
            "the first deploy never activated"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes", "--break-lock"]);
    assert_exit(&out, 1);
    testworld::assert_stderr_has(&out, &["refusing to break the lock", "pass --force"]);
    let mut first = first;
    assert!(
        first.wait().unwrap().success(),
        "the first deploy was disturbed"
    );
    assert_eq!(w.generation_marker("alpha"), "3");
    w.host("alpha")
        .exec_ok(&["sh", "-c", &format!("test ! -e {}", testworld::TARGET_LOCK)]);
    // rollback knows the flag (no usage error).
    let out = w.pantheros(&flake, &["rollback", "alpha", "--yes", "--break-lock"]);
    assert_exit(&out, 0);
    assert_eq!(w.generation_marker("alpha"), "2");
}

/// A flake that is a plain directory (not a git checkout) is copied whole
/// into the world-readable store on every evaluation: its logs and GC roots
/// go to the user's state directory instead of into it.
#[test]
fn logs_of_a_plain_directory_flake_stay_out_of_it() {
    if testworld::which("nix").is_none() {
        testworld::cannot_run("nix is not installed (bash scripts/setup)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let flake = testworld::fixture_flake(d.path());
    let state = d.path().join("state");
    let out = std::process::Command::new(testworld::pantheros_bin())
        .args(["deploy", "ovh-vps", "--build-only", "--json"])
        .current_dir(&flake)
        .env("XDG_STATE_HOME", &state)
        .env_remove("PANTHEROS_LOG_DIR")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(
        !flake.join("logs").exists(),
        "logs were written into the flake"
    );
    let log = PathBuf::from(json(&out)["hosts"][0]["log"].as_str().unwrap());
    assert!(
        log.starts_with(state.join("pantheros/logs")),
        "{}",
        log.display()
    );
    assert!(log.exists());
}

/// A copy that fails because the host's disk is full says so (not "check
/// ssh"), leaves nothing half-copied in the host's store, changes nothing
/// and releases the lock; with space again, the same deploy works.
#[test]
fn a_copy_onto_a_full_disk_says_so_and_leaves_nothing_behind() {
    let Some((w, flake)) = testworld::world_with_deployed_host("alpha") else {
        return;
    };
    let gen1 = w.profile_target("alpha");
    // The host's store gets a small disk of its own (a 4 MiB tmpfs over a
    // copy of what it holds); generation 2 carries 8 MiB.
    w.host("alpha").exec_ok(&[
        "sh",
        "-c",
        "cp -a /nix/store /run/store-copy && mount -t tmpfs -o size=4m tmpfs /nix/store \
         && cp -a /run/store-copy/. /nix/store/ && rm -rf /run/store-copy",
    ]);
    let mut h = w.fixture_host("alpha", 2, "");
    h.blob_kib = 8192;
    write_fleet(&flake, &[h]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes"]);
    assert_exit(&out, 1);
    testworld::assert_stderr_has(&out, &["No space left on device", "disk is full"]);
    let err = stderr(&out);
    assert!(!err.contains("check that you can `ssh`"), "{err}");
    assert_eq!(w.profile_target("alpha"), gen1);
    assert_eq!(w.generation_marker("alpha"), "1");
    assert!(!w.host("alpha").locked(), "the lock was left behind");
    // Nothing of the failed copy stays in the store: its space is back.
    let used =
        stdout(
            &w.host("alpha")
                .exec(&["sh", "-c", "df -k --output=used /nix/store | tail -n 1"]),
        );
    let used: u64 = used.trim().parse().unwrap();
    assert!(used < 2 * 1024, "{used} KiB still used in the host's store");

    // With space again, the same deploy goes through.
    w.host("alpha")
        .exec_ok(&["mount", "-o", "remount,size=64m", "/nix/store"]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes"]);
    assert_exit(&out, 0);
    assert_eq!(w.generation_marker("alpha"), "2");
}

/// An activation that prints far more than the file system of the
/// watchdog's state holds (8 MiB into 3 MiB) once filled it, so the
/// watchdog's status could not be written and the deployer waited on a
/// stale line. Its output is now kept up to 1 MiB: the deploy completes
/// and the log says what was dropped.
#[test]
fn a_chatty_activation_cannot_fill_the_hosts_state_disk() {
    let Some((w, flake)) = testworld::world_with_deployed_host("alpha") else {
        return;
    };
    w.host("alpha").exec_ok(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=3m",
        "tmpfs",
        "/var/lib/pantheros",
    ]);
    let mut h = w.fixture_host("alpha", 2, "");
    h.output_kib = 8192;
    write_fleet(&flake, &[h]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes"]);
    assert_exit(&out, 0);
    assert_eq!(w.generation_marker("alpha"), "2");
    let logs = stdout(&w.host("alpha").exec(&[
        "sh",
        "-c",
        "for d in /var/lib/pantheros/runs/*/; do [ -f \"$d/log\" ] && printf '%s %s\\n' \"$(wc -c < \"$d/log\")\" \"$d\"; done",
    ]));
    let newest = logs
        .lines()
        .filter_map(|l| l.split_once(' '))
        .max_by_key(|(_, d)| d.to_string())
        .unwrap_or_else(|| panic!("no activation log: {logs}"));
    let size: u64 = newest.0.parse().unwrap();
    assert!(size < 1100 * 1024, "the activation log is {size} bytes");
    let log = stdout(&w.host("alpha").exec(&["cat", &format!("{}log", newest.1)]));
    assert!(
        log.contains("[output beyond 1048576 bytes dropped]"),
        "{}",
        &log[log.len().saturating_sub(500)..]
    );
    assert!(
        log.contains("status: confirmed"),
        "{}",
        &log[log.len().saturating_sub(500)..]
    );
}

/// A switch that reboots the host ended its watchdog mid-activation, and
/// the rollback target lived in /run, which a reboot empties: the deployer
/// waited out its timeouts, then reported success (or, after a failed
/// health check, "no previous generation", exit 4). Now the watchdog's
/// state lives on disk with the boot it ran in, so the deployer sees the
/// reboot at once and judges the host by what it came back running: the
/// new system, healthy, is kept (`steady`); the new system, unhealthy, is
/// rolled back to the generation before (`sick`).
#[test]
fn a_switch_that_reboots_the_host_is_judged_by_what_came_back() {
    let Some(mut w) = World::new() else { return };
    w.add_host("steady");
    w.add_host("sick");
    let flake = w.path().join("fleet");
    write_fleet(
        &flake,
        &[
            w.fixture_host("steady", 1, ""),
            w.fixture_host("sick", 1, ""),
        ],
    );
    assert_exit(
        &w.pantheros(&flake, &["deploy", "steady", "sick", "--yes"]),
        0,
    );
    let gen1 = w.profile_target("sick");
    // Generation 2 reboots the host during its switch (the switch never
    // returns: the reboot kills it); only `sick`'s fails its health check.
    let mut steady = w.fixture_host("steady", 2, "");
    steady.switch_seconds = 600;
    let mut sick = w.fixture_host(
        "sick",
        2,
        r#"healthChecks = { commands = [ "false" ]; timeout = 2; };"#,
    );
    sick.switch_seconds = 600;
    write_fleet(&flake, &[steady, sick]);
    let steady2 = testworld::build_toplevel(&flake, "steady");
    for h in ["steady", "sick"] {
        w.host(h)
            .exec_ok(&["rm", "-f", "/run/pantheros-fixture/activation-started"]);
    }
    let child =
        w.spawn_pantheros_captured(&flake, &["deploy", "steady", "sick", "--yes", "--json"]);
    let start = std::time::Instant::now();
    let mut pending = vec!["steady", "sick"];
    while !pending.is_empty() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "the activations never started on {pending:?}"
        );
        let started: Vec<&str> = pending
            .iter()
            .copied()
            .filter(|h| {
                w.host(h)
                    .exec(&["test", "-e", "/run/pantheros-fixture/activation-started"])
                    .status
                    .success()
            })
            .collect();
        for h in &started {
            w.reboot_host(h);
        }
        pending.retain(|h| !started.contains(h));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < std::time::Duration::from_secs(90),
        "the deploy took {:?}: it waited out a timeout",
        start.elapsed()
    );
    assert_exit(&out, 3);
    assert!(
        stderr(&out).contains("rebooted during the activation"),
        "{}",
        stderr(&out)
    );
    let v = json(&out);
    let host = |name: &str| {
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {v}"))
            .clone()
    };
    assert_eq!(host("steady")["result"], "success", "{v}");
    assert_eq!(host("steady")["generationAfter"], 2, "{v}");
    assert_eq!(host("sick")["result"], "rolled-back", "{v}");
    assert_eq!(host("sick")["generationAfter"], 1, "{v}");
    // The hosts' real state: boot default and running system.
    let running = |h: &str| {
        w.host(h)
            .exec_ok(&["readlink", "-f", "/run/current-system"])
            .trim()
            .to_string()
    };
    assert_eq!(w.profile_target("steady"), steady2);
    assert_eq!(running("steady"), steady2);
    assert_eq!(w.profile_target("sick"), gen1);
    assert_eq!(running("sick"), gen1);
    assert_eq!(w.generation_marker("sick"), "1");
    for h in ["steady", "sick"] {
        assert!(!w.host(h).locked(), "{h} is still locked");
    }
}

/// The file system of the watchdog's state filled up by something else
/// (not by the activation's output) while a switch ran: the watchdog's next
/// status line could not be written. It gives up its own log and writes the
/// status again, so the deploy completes; the other file is left alone.
#[test]
fn a_status_line_is_written_when_something_else_filled_the_disk() {
    let Some((w, flake)) = testworld::world_with_deployed_host("alpha") else {
        return;
    };
    w.host("alpha").exec_ok(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=1m",
        "tmpfs",
        "/var/lib/pantheros",
    ]);
    let mut h = w.fixture_host("alpha", 2, "");
    h.output_kib = 64;
    h.switch_seconds = 3;
    write_fleet(&flake, &[h]);
    w.host("alpha")
        .exec_ok(&["rm", "-f", "/run/pantheros-fixture/activation-started"]);
    let child = w.spawn_pantheros(&flake, &["deploy", "alpha", "--yes"]);
    let start = std::time::Instant::now();
    while !w
        .host("alpha")
        .exec(&["test", "-e", "/run/pantheros-fixture/activation-started"])
        .status
        .success()
    {
        assert!(start.elapsed() < std::time::Duration::from_secs(60));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Something else takes every byte that is left.
    let fill = w.host("alpha").exec(&[
        "sh",
        "-c",
        "dd if=/dev/zero of=/var/lib/pantheros/filler bs=4k 2>&1; df -k --output=avail /var/lib/pantheros | tail -n 1",
    ]);
    assert!(
        stdout(&fill).contains("No space left on device"),
        "{}",
        stdout(&fill)
    );
    let mut child = child;
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the deploy did not complete");
    assert!(start.elapsed() < std::time::Duration::from_secs(60));
    assert_eq!(w.generation_marker("alpha"), "2");
    let log = w.host("alpha").exec_ok(&[
        "sh",
        "-c",
        "cat /var/lib/pantheros/runs/*/status; cat /var/lib/pantheros/runs/*/log | wc -c; ls /var/lib/pantheros",
    ]);
    let mut lines = log.lines();
    assert_eq!(lines.next(), Some("confirmed"), "{log}");
    let size: u64 = lines
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {log}"));
    assert!(size < 64 * 1024, "the log was not given up: {size} bytes");
    assert!(log.contains("filler"), "{log}");
}

/// The host's side of its link shaped to 4 Mbit/s (tbf: this machine's
/// kernel has no netem), so a copy of a few MiB takes seconds.
fn slow_link(w: &World, host: &str) {
    w.host(host).exec_ok(&[
        "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "4mbit", "burst", "32kbit",
        "latency", "400ms",
    ]);
}

/// Deploy generation `generation` of alpha (4 MiB over a 4 Mbit/s link)
/// and kill alpha's sshd once the copy runs (the lock is taken by then).
fn deploy_and_kill_sshd_mid_copy(
    w: &mut World,
    flake: &std::path::Path,
    generation: u32,
) -> std::process::Child {
    slow_link(w, "alpha");
    let mut h = w.fixture_host("alpha", generation, "");
    h.blob_kib = 4096;
    write_fleet(flake, &[h]);
    let run = w.spawn_pantheros_captured(flake, &["deploy", "alpha", "--yes"]);
    testworld::wait_until("the copy to start", Duration::from_secs(60), || {
        w.host("alpha").locked()
            && w.host("alpha")
                .exec(&["pgrep", "-f", "nix-store --serve"])
                .status
                .success()
    });
    w.kill_sshd("alpha");
    run
}

/// sshd dies during the copy (the deploy lock is already taken): the run
/// fails with nothing changed, and gives the lock back over a new
/// connection once sshd is back, so the next deploy is not refused. When
/// sshd stays away, the result says the host is still locked and how to
/// free it.
#[test]
fn a_lock_taken_before_sshd_died_is_released_over_a_new_connection() {
    let Some((mut w, flake)) = testworld::world_with_deployed_host("alpha") else {
        return;
    };
    // A copy slow enough to kill sshd in the middle of it.
    let run = deploy_and_kill_sshd_mid_copy(&mut w, &flake, 2);
    std::thread::sleep(Duration::from_secs(3));
    w.start_sshd("alpha");
    let out = run.wait_with_output().unwrap();
    assert_exit(&out, 1);
    testworld::assert_stderr_has(&out, &["released the deploy lock over a new connection"]);
    assert!(!w.host("alpha").locked(), "the lock was left behind");
    assert_eq!(w.generation_marker("alpha"), "1");
    w.host("alpha")
        .exec_ok(&["tc", "qdisc", "del", "dev", "eth0", "root"]);
    assert_exit(&w.pantheros(&flake, &["deploy", "alpha", "--yes"]), 0);
    assert_eq!(w.generation_marker("alpha"), "2");

    // sshd dies and stays away: the lock cannot be given back, and the
    // result says so with the way to free it.
    let run = deploy_and_kill_sshd_mid_copy(&mut w, &flake, 3);
    let out = run.wait_with_output().unwrap();
    assert_exit(&out, 1);
    testworld::assert_stderr_has(
        &out,
        &[
            "the host is still locked",
            "pantheros deploy alpha --break-lock",
        ],
    );
    assert!(w.host("alpha").locked());
    w.start_sshd("alpha");
}

/// A host pantheros installed is verified against the host key in its
/// facts on every connection, whatever the user's known_hosts says: the
/// right key deploys; another key is refused with the recovery steps and
/// nothing changes.
#[test]
fn the_host_key_in_the_facts_is_verified_and_another_is_refused() {
    let Some(mut w) = World::new() else { return };
    w.add_host("pinned");
    let flake = w.path().join("fleet");
    let real =
        std::fs::read_to_string(w.host("pinned").dir.join("ssh/ssh_host_ed25519_key.pub")).unwrap();
    let real: Vec<&str> = real.split_whitespace().take(2).collect();
    let facts = |key: &str| format!("facts = {{ hostKey = \"{key}\"; }};");
    write_fleet(
        &flake,
        &[w.fixture_host("pinned", 1, &facts(&real.join(" ")))],
    );
    assert_exit(&w.pantheros(&flake, &["deploy", "pinned", "--yes"]), 0);
    assert_eq!(w.generation_marker("pinned"), "1");

    // The facts pin another key (the server was replaced, or someone is in
    // the middle): refused before anything is done.
    let rogue = w.path().join("rogue-host-key");
    testworld::keygen(&rogue, "rogue");
    let other = std::fs::read_to_string(rogue.with_extension("pub")).unwrap();
    let other: Vec<&str> = other.split_whitespace().take(2).collect();
    let other = other.join(" ");
    write_fleet(&flake, &[w.fixture_host("pinned", 2, &facts(&other))]);
    let out = w.pantheros(&flake, &["deploy", "pinned", "--yes"]);
    assert_exit(&out, 1);
    testworld::assert_stderr_has(
        &out,
        &[
            "presents another SSH host key than the one pantheros pinned",
            "pantheros facts pinned --refresh",
            "nothing was changed",
        ],
    );
    assert_eq!(w.generation_marker("pinned"), "1");
    assert!(!w.host("pinned").locked());
}
