//! `pantheros deploy` to light hosts over real SSH, with real nix: the
//! host's state is checked after each run, not just the exit code.

use testworld::{FixtureHost, World, json, stderr, stdout, write_fleet};
use testworld::{assert_exit, assert_stderr_has};

/// The status of the newest activation on the host.
fn latest_status(w: &World, host: &str) -> String {
    let script = "d=$(ls -td /var/lib/pantheros/runs/*/ 2>/dev/null | head -n 1); cat \"${d}status\" 2>/dev/null";
    stdout(&w.host(host).exec(&["sh", "-c", script]))
}

/// Deploy generation `g` of alpha (no extra settings) and require success.
#[track_caller]
fn deploy_generation(w: &World, flake: &std::path::Path, g: u32) {
    write_fleet(flake, &[host(w, "alpha", g, "")]);
    let out = w.pantheros(flake, &["deploy", "alpha", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "deploying generation {g}: {}",
        stderr(&out)
    );
}

fn host(w: &World, name: &str, generation: u32, extra: &str) -> FixtureHost {
    w.fixture_host(name, generation, extra)
}

#[test]
fn deploy_switches_then_redeploy_is_a_noop_then_failure_rolls_back() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let flake = w.path().join("fleet");

    // 1. First deploy: generation 1 becomes active.
    write_fleet(&flake, &[host(&w, "alpha", 1, "")]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes", "--json"]);
    assert_exit(&out, 0);
    let v = json(&out);
    testworld::assert_schema(&v, "deploy");
    assert_eq!(v["hosts"][0]["result"], "success");
    assert_eq!(v["hosts"][0]["generationAfter"], 1);
    assert_eq!(w.generation_marker("alpha"), "1");
    let gen1 = w.profile_target("alpha");
    assert_eq!(v["hosts"][0]["toplevel"], gen1.as_str());

    // 2. The same closure again: a no-op that changes nothing.
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["hosts"][0]["result"], "unchanged");
    let gens = w.host("alpha").exec_ok(&[
        "nix-env",
        "-p",
        "/nix/var/nix/profiles/system",
        "--list-generations",
    ]);
    assert_eq!(gens.lines().count(), 1, "{gens}");

    // 3. Generation 2 with a package update: the diff shows it.
    let mut h2 = host(&w, "alpha", 2, "");
    h2.packages = vec![
        ("hello".into(), "2.13".into()),
        ("curl".into(), "8.5.0".into()),
    ];
    write_fleet(&flake, &[h2]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes", "--json"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    let line = |prefix: &str| {
        err.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("[U] hello").ends_with("2.12 -> 2.13"), "{err}");
    assert!(line("[A] curl").ends_with("8.5.0"), "{err}");
    assert!(err.contains("closure: "), "{err}");
    let v = json(&out);
    assert_eq!(v["hosts"][0]["generationBefore"], 1);
    assert_eq!(v["hosts"][0]["generationAfter"], 2);
    assert_eq!(w.generation_marker("alpha"), "2");
    let gen2 = w.profile_target("alpha");

    // 4. Generation 3 whose activation fails: rolled back to 2, exit 3.
    let mut h3 = host(&w, "alpha", 3, "");
    h3.fail_switch = true;
    write_fleet(&flake, &[h3]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes", "--json"]);
    assert_exit(&out, 3);
    let v = json(&out);
    assert_eq!(v["hosts"][0]["result"], "rolled-back");
    assert!(
        v["hosts"][0]["rollbackReason"]
            .as_str()
            .unwrap()
            .contains("switch-to-configuration exited 1")
    );
    assert_eq!(w.profile_target("alpha"), gen2);
    assert_eq!(w.generation_marker("alpha"), "2");
    assert_eq!(v["hosts"][0]["generationAfter"], 2);
    // The log and .info exist and tell the story.
    let log = std::path::PathBuf::from(v["hosts"][0]["log"].as_str().unwrap());
    let text = std::fs::read_to_string(&log).unwrap();
    // Every step, with its command and what the target answered.
    for expected in [
        "copy --substitute-on-destination --to ssh://root@alpha",
        "sh -s dry-activate.sh /nix/store/",
        "| would activate alpha generation 3",
        "| rolled-back switch-to-configuration exited 1",
    ] {
        assert!(
            text.contains(expected),
            "the log lacks {expected:?}:\n{text}"
        );
    }
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(log.with_extension("info")).unwrap()).unwrap();
    assert_eq!(info["result"], "rolled-back");
    assert_eq!(info["host"], "alpha");
    // The lock was released: a new deploy goes through.
    write_fleet(&flake, &[host(&w, "alpha", 4, "")]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes"]);
    assert_exit(&out, 0);
    assert_eq!(w.generation_marker("alpha"), "4");
}

#[test]
fn dry_run_and_build_only_change_nothing() {
    let Some((w, flake)) = testworld::world_with_deployed_host("alpha") else {
        return;
    };
    let before = w.profile_target("alpha");

    write_fleet(&flake, &[host(&w, "alpha", 2, "")]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--dry-run", "--json"]);
    assert_exit(&out, 0);
    assert_stderr_has(&out, &["dry-activate: would activate alpha generation 2"]);
    assert_eq!(w.profile_target("alpha"), before);
    assert_eq!(w.generation_marker("alpha"), "1");

    write_fleet(&flake, &[host(&w, "alpha", 3, "")]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--build-only", "--json"]);
    assert_exit(&out, 0);
    let top = json(&out)["hosts"][0]["toplevel"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(std::path::Path::new(&top).exists());
    // Not copied to the host: its private store does not have it.
    assert!(
        !w.host("alpha")
            .exec(&["nix-store", "--check-validity", &top])
            .status
            .success()
    );
    assert_eq!(w.profile_target("alpha"), before);
}

#[test]
fn no_tty_without_yes_is_refused_and_changes_nothing() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[host(&w, "alpha", 1, "")]);
    let out = w.pantheros(&flake, &["deploy", "alpha"]);
    assert_exit(&out, 1);
    assert_stderr_has(&out, &["pass --yes"]);
    assert!(
        !w.host("alpha")
            .exec(&["test", "-e", "/nix/var/nix/profiles/system"])
            .status
            .success()
    );
    // And the lock is not left behind.
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes"]);
    assert_exit(&out, 0);
}

/// A host whose configuration still carries example values is refused by
/// every command that would touch it, before any connection: the host keeps
/// no profile, no lock and no run directory; the values and files are named.
#[test]
fn a_host_with_an_unfilled_placeholder_is_refused_and_left_untouched() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let flake = w.path().join("fleet");
    let placeholder = r#"placeholders = {
        ipv6 = { filled = false; file = "hosts/alpha/default.nix"; description = "the server's IPv6 address"; };
        adminKey = { filled = true; file = "hosts/common/default.nix"; description = "your SSH key"; };
      };"#;
    write_fleet(&flake, &[host(&w, "alpha", 1, placeholder)]);
    for args in [
        &["deploy", "alpha", "--yes"][..],
        &["deploy", "alpha", "--dry-run"],
        &["provision", "create", "alpha"],
    ] {
        let out = w.pantheros(&flake, args);
        assert_exit(&out, 17);
        assert_stderr_has(
            &out,
            &[
                "alpha still carries example values; nothing was done",
                "alpha: ipv6 in hosts/alpha/default.nix: the server's IPv6 address",
            ],
        );
        testworld::assert_output_lacks(&out, &["adminKey"]);
    }
    let on_host = w.host("alpha").exec(&[
        "sh",
        "-c",
        "ls -d /nix/var/nix/profiles/system /var/lib/pantheros/lock /var/lib/pantheros/runs 2>/dev/null || true",
    ]);
    assert_eq!(stdout(&on_host).trim(), "", "the host was touched");
    // `hosts` says what the host needs; a build needs no real values.
    let out = w.pantheros(&flake, &["hosts"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("alpha needs setup: ipv6 (hosts/alpha/default.nix)"),
        "{}",
        stdout(&out)
    );
    let out = w.pantheros(&flake, &["deploy", "alpha", "--build-only"]);
    assert_exit(&out, 0);
    // Filled in, the same host deploys.
    write_fleet(
        &flake,
        &[host(
            &w,
            "alpha",
            1,
            &placeholder.replace("filled = false", "filled = true"),
        )],
    );
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes"]);
    assert_exit(&out, 0);
    assert_eq!(w.generation_marker("alpha"), "1");
}

#[test]
fn a_system_that_cuts_ssh_is_rolled_back_by_the_target_itself() {
    let Some((w, flake)) = testworld::world_with_deployed_host("alpha") else {
        return;
    };
    let gen1 = w.profile_target("alpha");

    let mut bad = host(&w, "alpha", 2, "");
    bad.block_ssh = true;
    write_fleet(&flake, &[bad]);
    let started = std::time::Instant::now();
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes", "--json"]);
    let took = started.elapsed();
    assert_exit(&out, 3);
    let v = json(&out);
    assert_eq!(v["hosts"][0]["result"], "rolled-back");
    assert!(
        v["hosts"][0]["rollbackReason"]
            .as_str()
            .unwrap()
            .contains("no confirmation"),
        "{v}"
    );
    assert_stderr_has(&out, &["rolls itself back"]);
    // Back on generation 1, and SSH works again (the rule is gone).
    assert_eq!(w.profile_target("alpha"), gen1);
    assert_eq!(w.generation_marker("alpha"), "1");
    assert!(w.ssh("alpha", &["true"]).status.success());
    assert!(took.as_secs() < 6 + 10 + 20, "took {took:?}");
}

#[test]
fn a_second_concurrent_deploy_is_refused() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let flake = w.path().join("fleet");
    let mut slow = host(&w, "alpha", 1, "");
    slow.switch_seconds = 3;
    write_fleet(&flake, &[slow]);
    let mut first = w.spawn_pantheros(&flake, &["deploy", "alpha", "--yes"]);
    // Wait until the first holds the lock.
    let start = std::time::Instant::now();
    while !w.host("alpha").locked() {
        assert!(
            start.elapsed().as_secs() < 20,
            "the first deploy never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes"]);
    assert_exit(&out, 1);
    assert_stderr_has(&out, &["another deployment holds the lock"]);
    assert_stderr_has(&out, &["pantheros", "since"]);
    assert!(first.wait().unwrap().success());
    assert_eq!(w.generation_marker("alpha"), "1");
}

#[test]
fn the_deployer_killed_during_activation_leaves_no_half_switched_host() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let flake = w.path().join("fleet");
    deploy_generation(&w, &flake, 1);
    let gen1 = w.profile_target("alpha");
    let mut slow = host(&w, "alpha", 2, "");
    slow.switch_seconds = 2;
    write_fleet(&flake, &[slow]);
    let mut child = w.spawn_pantheros(&flake, &["deploy", "alpha", "--yes"]);
    // Kill it as soon as activation has started on the target.
    let start = std::time::Instant::now();
    loop {
        if latest_status(&w, "alpha").contains("activating") {
            break;
        }
        assert!(start.elapsed().as_secs() < 30, "activation never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    let _ = child.wait();
    // Without the deployer's confirmation the target rolls itself back.
    let start = std::time::Instant::now();
    loop {
        let s = latest_status(&w, "alpha");
        if s.starts_with("rolled-back") || s.starts_with("rollback-failed") {
            assert!(s.starts_with("rolled-back"), "{s}");
            break;
        }
        assert!(
            start.elapsed().as_secs() < 6 + 2 + 15,
            "no rollback, status {s:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(w.profile_target("alpha"), gen1);
    assert_eq!(w.generation_marker("alpha"), "1");
}

#[test]
fn goal_boot_sets_the_profile_without_activating() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let flake = w.path().join("fleet");
    deploy_generation(&w, &flake, 1);
    write_fleet(&flake, &[host(&w, "alpha", 2, "")]);
    let out = w.pantheros(
        &flake,
        &["deploy", "alpha", "--yes", "--goal", "boot", "--json"],
    );
    assert_exit(&out, 0);
    let v = json(&out);
    assert_eq!(v["hosts"][0]["generationAfter"], 2);
    assert_eq!(
        w.profile_target("alpha"),
        v["hosts"][0]["toplevel"].as_str().unwrap()
    );
    // Not activated: the running state is still generation 1.
    assert_eq!(w.generation_marker("alpha"), "1");
}

#[test]
fn nix_copy_failure_and_host_key_mismatch_change_nothing() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[host(&w, "alpha", 1, "")]);
    // Make the target's store unwritable: nix copy fails.
    w.host("alpha").exec_ok(&[
        "sh",
        "-c",
        "mkdir -p /nix/store /nix/var && mount -t tmpfs -o ro tmpfs /nix/store",
    ]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes", "--json"]);
    assert_exit(&out, 1);
    let v = json(&out);
    assert_eq!(v["hosts"][0]["result"], "failed");
    assert!(
        v["hosts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("copying the closure"),
        "{v}"
    );
    assert!(
        v["hosts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("command: "),
        "{v}"
    );
    w.host("alpha").exec_ok(&["umount", "/nix/store"]);
    // The failed run closed its SSH master: no connection to alpha is left open.
    let ss = w.client_exec(&[
        "ss",
        "-Htn",
        "state",
        "established",
        "dst",
        &w.host("alpha").ip,
    ]);
    assert!(
        stdout(&ss).trim().is_empty(),
        "connections left open: {}",
        stdout(&ss)
    );
    assert!(
        !w.host("alpha")
            .exec(&["test", "-e", "/nix/var/nix/profiles/system"])
            .status
            .success()
    );

    // A different host key pinned for alpha: refused before anything runs.
    let kh = w.pin_wrong_host_key("alpha");
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes"]);
    assert_exit(&out, 1);
    assert_stderr_has(
        &out,
        &["Host key verification failed", "HOST IDENTIFICATION"],
    );
    std::fs::write(&w.known_hosts, kh).unwrap();
    assert!(
        !w.host("alpha")
            .exec(&["test", "-e", "/nix/var/nix/profiles/system"])
            .status
            .success()
    );
}

#[test]
fn local_deploy_runs_the_same_pipeline_without_ssh() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let flake = w.path().join("fleet");
    // Inside alpha, alpha is "this machine": its own nix evaluates, builds
    // into its private store, and activates without any SSH.
    let mut h = FixtureHost::new("alpha", 1);
    h.deployment = r#"targetHost = "localhost"; confirmTimeout = 5;"#.into();
    write_fleet(&flake, &[h]);
    let bin = testworld::pantheros_bin();
    let logs = w.path().join("local-logs");
    let run = |args: &[&str]| {
        let mut argv = vec![bin.to_str().unwrap(), "--flake", flake.to_str().unwrap()];
        argv.extend_from_slice(args);
        w.host("alpha")
            .command(&argv)
            .current_dir(&flake)
            .env("PANTHEROS_LOG_DIR", &logs)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .output()
            .unwrap()
    };
    let out = run(&["deploy", "alpha", "--yes", "--json"]);
    assert_exit(&out, 0);
    let v = json(&out);
    assert_eq!(v["hosts"][0]["target"], "local");
    assert_eq!(w.generation_marker("alpha"), "1");
    assert!(
        !stderr(&out).contains("copying the closure"),
        "{}",
        stderr(&out)
    );
    // The sshd log shows no login at all during the local deploy.
    let sshd_log = std::fs::read_to_string(w.host("alpha").dir.join("sshd.log")).unwrap();
    assert!(!sshd_log.contains("Accepted publickey"), "{sshd_log}");

    let mut h = FixtureHost::new("alpha", 2);
    h.deployment = r#"targetHost = "localhost"; confirmTimeout = 5;"#.into();
    write_fleet(&flake, &[h]);
    assert_eq!(run(&["deploy", "alpha", "--yes"]).status.code(), Some(0));
    assert_eq!(w.generation_marker("alpha"), "2");
    // And the local rollback: no HOST means this machine.
    let out = run(&["rollback", "--yes", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["hosts"][0]["generationAfter"], 1);
    assert_eq!(w.generation_marker("alpha"), "1");
    let out = run(&["rollback", "--list"]);
    assert!(stdout(&out).lines().count() == 3, "{}", stdout(&out));
}

#[test]
fn http_and_command_health_checks_gate_the_deploy() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let mut server = w.host("alpha").serve_http("8080");
    let flake = w.path().join("fleet");
    let ok = r#"healthChecks = { http = [ "http://127.0.0.1:8080/" ]; commands = [ "test -d /run" ]; timeout = 3; };"#;
    write_fleet(&flake, &[host(&w, "alpha", 1, ok)]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes"]);
    assert_exit(&out, 0);
    assert_stderr_has(&out, &["health checks passed"]);

    let bad = r#"healthChecks = { http = [ "http://127.0.0.1:8081/" ]; commands = [ "test -e /nonexistent" ]; timeout = 2; };"#;
    write_fleet(&flake, &[host(&w, "alpha", 2, bad)]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes", "--json"]);
    assert_exit(&out, 3);
    let reason = json(&out)["hosts"][0]["rollbackReason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("http http://127.0.0.1:8081/ answered"),
        "{reason}"
    );
    assert!(
        reason.contains("command failed: test -e /nonexistent"),
        "{reason}"
    );
    assert_eq!(w.generation_marker("alpha"), "1");
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_failed_rollback_exits_4_with_the_console_procedure() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let flake = w.path().join("fleet");
    deploy_generation(&w, &flake, 1);
    // From now on the host refuses every activation, the old one included.
    w.host("alpha")
        .exec_ok(&["touch", "/run/pantheros-fixture/refuse-all-activations"]);
    write_fleet(&flake, &[host(&w, "alpha", 2, "")]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes", "--json"]);
    assert_exit(&out, 4);
    let v = json(&out);
    assert_eq!(v["hosts"][0]["result"], "rollback-failed");
    let err = v["hosts"][0]["error"].as_str().unwrap();
    assert!(err.contains("rollback failed"), "{err}");
    assert!(
        err.contains("Console") && err.contains("--list-generations"),
        "{err}"
    );
    assert_stderr_has(&out, &["ROLLBACK FAILED (manual action needed)"]);
}

#[test]
fn several_hosts_deploy_in_parallel_from_one_evaluation() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    w.add_host("beta");
    let flake = w.path().join("fleet");
    let mut a = host(&w, "alpha", 1, r#"tags = [ "web" ];"#);
    a.switch_seconds = 2;
    let mut b = host(&w, "beta", 1, r#"tags = [ "web" ];"#);
    b.switch_seconds = 2;
    write_fleet(&flake, &[a, b]);
    let out = w.pantheros(&flake, &["deploy", "@web", "--yes", "--json"]);
    assert_exit(&out, 0);
    let v = json(&out);
    assert_eq!(v["hosts"].as_array().unwrap().len(), 2);
    assert_eq!(w.generation_marker("alpha"), "1");
    assert_eq!(w.generation_marker("beta"), "1");
    // The two 2-second activations overlapped in time (one machine, one clock).
    let t = |h: &str, f: &str| -> u128 {
        w.host(h)
            .exec_ok(&["cat", &format!("/run/pantheros-fixture/{f}")])
            .trim()
            .parse()
            .unwrap()
    };
    let (a0, a1) = (
        t("alpha", "activation-started"),
        t("alpha", "activation-finished"),
    );
    let (b0, b1) = (
        t("beta", "activation-started"),
        t("beta", "activation-finished"),
    );
    assert!(
        a0 < b1 && b0 < a1,
        "activations did not overlap: alpha {a0}..{a1}, beta {b0}..{b1}"
    );
}

#[test]
fn build_on_target_copies_the_derivation_and_builds_there() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let flake = w.path().join("fleet");
    // A generation no other test builds, so the local store cannot have it.
    let mut h = host(&w, "alpha", 7001, "buildOnTarget = true;");
    h.packages = vec![(
        "only-built-remotely".into(),
        format!("1.{}", std::process::id()),
    )];
    write_fleet(&flake, &[h]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes", "--json"]);
    assert_exit(&out, 0);
    let v = json(&out);
    let top = v["hosts"][0]["toplevel"].as_str().unwrap().to_string();
    assert_eq!(w.generation_marker("alpha"), "7001");
    assert_eq!(w.profile_target("alpha"), top);
    // Built there, not here: the local store does not have the output.
    let local = testworld::try_sh(&["nix-store", "--check-validity", &top]);
    assert!(!local.status.success(), "{top} was built locally");
    let log = std::fs::read_to_string(v["hosts"][0]["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("copy --derivation"), "{log}");
}

/// `--canary 1` on real hosts: the canary fails its health check and is
/// rolled back; the other host is planned but never activated, and holds
/// no lock. Then, with a healthy canary, both are deployed.
#[test]
fn a_failing_canary_leaves_the_rest_of_the_rollout_untouched() {
    let Some(mut w) = World::new() else { return };
    w.add_host("canary");
    w.add_host("rest");
    let flake = w.path().join("fleet");
    write_fleet(
        &flake,
        &[host(&w, "canary", 1, ""), host(&w, "rest", 1, "")],
    );
    assert_exit(
        &w.pantheros(&flake, &["deploy", "canary", "rest", "--yes"]),
        0,
    );

    let sick = r#"healthChecks.commands = [ "false" ]; healthChecks.timeout = 2;"#;
    write_fleet(
        &flake,
        &[host(&w, "canary", 2, sick), host(&w, "rest", 2, "")],
    );
    let out = w.pantheros(
        &flake,
        &[
            "deploy", "canary", "rest", "--yes", "--canary", "1", "--json",
        ],
    );
    assert_exit(&out, 3);
    let v = json(&out);
    let result = |h: &str| {
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["host"] == h)
            .map(|o| (o["result"].clone(), o["error"].clone()))
            .unwrap()
    };
    assert_eq!(result("canary").0, "rolled-back");
    let (r, e) = result("rest");
    assert_eq!(r, "failed");
    assert!(
        e.as_str()
            .unwrap()
            .contains("the canary canary (rolled-back) did not succeed"),
        "{e}"
    );
    assert_eq!(w.generation_marker("canary"), "1");
    assert_eq!(w.generation_marker("rest"), "1");
    assert!(!w.host("rest").locked(), "rest kept its lock");

    write_fleet(
        &flake,
        &[host(&w, "canary", 2, ""), host(&w, "rest", 2, "")],
    );
    let out = w.pantheros(
        &flake,
        &["deploy", "canary", "rest", "--yes", "--canary", "1"],
    );
    assert_exit(&out, 0);
    assert_eq!(w.generation_marker("canary"), "2");
    assert_eq!(w.generation_marker("rest"), "2");
}

/// A multi-host run ends with what went wrong, per failed host: the stage,
/// the exact command, how it ended, its last lines and the log; `--json`
/// names the stage too.
#[test]
fn a_fleet_run_ends_with_what_went_wrong_on_each_failed_host() {
    let Some(mut w) = World::new() else { return };
    w.add_host("good");
    w.add_host("badkey");
    let flake = w.path().join("fleet");
    write_fleet(
        &flake,
        &[host(&w, "good", 1, ""), host(&w, "badkey", 1, "")],
    );
    w.pin_wrong_host_key("badkey");
    // Without --keep-going, the failed host stops the other before it changes.
    let out = w.pantheros(&flake, &["deploy", "good", "badkey", "--yes", "--json"]);
    assert_exit(&out, 1);
    let v = json(&out);
    let good = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "good")
        .unwrap()
        .clone();
    assert_eq!(good["result"], "failed", "{v}");
    assert!(
        good["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not activated: badkey (failed) failed"),
        "{v}"
    );
    assert_eq!(w.generation_marker("good"), "");
    assert!(!w.host("good").locked());

    let out = w.pantheros(
        &flake,
        &[
            "deploy",
            "good",
            "badkey",
            "--yes",
            "--json",
            "--keep-going",
        ],
    );
    assert_exit(&out, 1);
    let err = stderr(&out);
    let report = err
        .split("=== What went wrong ===")
        .nth(1)
        .unwrap_or_else(|| panic!("no failure summary:\n{err}"));
    assert!(report.contains("badkey (failed at connect):"), "{report}");
    assert!(report.contains("command: ssh "), "{report}");
    assert!(report.contains("exit status 255"), "{report}");
    assert!(report.contains("log: "), "{report}");
    assert!(
        !report.contains("good ("),
        "a host that succeeded is not listed: {report}"
    );
    let v = json(&out);
    testworld::assert_schema(&v, "deploy");
    let bad = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "badkey")
        .unwrap();
    assert_eq!(bad["stage"], "connect");
    let good = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "good")
        .unwrap();
    assert_eq!(good["stage"], serde_json::Value::Null);
    assert_eq!(w.generation_marker("good"), "1");
}

/// `--rollback-succeeded` on real hosts: one host's switch fails, so the
/// host this run switched goes back to the generation it ran before.
#[test]
fn rollback_succeeded_returns_the_switched_hosts_when_one_fails() {
    let Some(mut w) = World::new() else { return };
    w.add_host("fine");
    w.add_host("broken");
    let flake = w.path().join("fleet");
    write_fleet(
        &flake,
        &[host(&w, "fine", 1, ""), host(&w, "broken", 1, "")],
    );
    assert_exit(
        &w.pantheros(&flake, &["deploy", "fine", "broken", "--yes"]),
        0,
    );
    let gen1 = w.profile_target("fine");

    let mut bad = host(&w, "broken", 2, "");
    bad.fail_switch = true;
    write_fleet(&flake, &[host(&w, "fine", 2, ""), bad]);
    let out = w.pantheros(
        &flake,
        &[
            "deploy",
            "fine",
            "broken",
            "--yes",
            "--rollback-succeeded",
            "--keep-going",
            "--json",
        ],
    );
    assert_exit(&out, 3);
    let v = json(&out);
    testworld::assert_schema(&v, "deploy");
    let fine = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "fine")
        .unwrap();
    assert_eq!(fine["result"], "rolled-back");
    assert!(
        fine["rollbackReason"]
            .as_str()
            .unwrap()
            .contains("broken (rolled-back) did not succeed"),
        "{fine}"
    );
    assert_eq!(w.generation_marker("fine"), "1");
    assert_eq!(w.profile_target("fine"), gen1);
    assert_eq!(w.generation_marker("broken"), "1");
    assert!(!w.host("fine").locked(), "fine kept a lock");
}

/// One-off overrides: the flake's address is wrong, `--target-host` names
/// the right one for this run (deploy and rollback); for two hosts it is
/// refused as a usage error.
#[test]
fn target_host_overrides_the_flake_for_one_run() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let flake = w.path().join("fleet");
    let mut h = testworld::FixtureHost::new("web", 1);
    h.deployment = w.deployment_for("nowhere.invalid", "confirmTimeout = 30;");
    let mut other = testworld::FixtureHost::new("web2", 1);
    other.deployment = w.deployment_for("nowhere.invalid", "");
    write_fleet(&flake, &[h, other]);

    let out = w.pantheros(&flake, &["deploy", "web", "--yes"]);
    assert_exit(&out, 1);
    let out = w.pantheros(
        &flake,
        &[
            "deploy",
            "web",
            "--yes",
            "--target-host",
            "alpha",
            "--confirm-timeout",
            "5",
            "--json",
        ],
    );
    assert_exit(&out, 0);
    assert_eq!(json(&out)["hosts"][0]["target"], "root@alpha");
    assert_eq!(w.generation_marker("alpha"), "1");
    let out = w.pantheros(
        &flake,
        &[
            "rollback",
            "web",
            "--list",
            "--target-host",
            "alpha",
            "--json",
        ],
    );
    assert_exit(&out, 0);
    assert_eq!(json(&out)["generations"].as_array().unwrap().len(), 1);

    let out = w.pantheros(
        &flake,
        &["deploy", "web", "web2", "--yes", "--target-host", "alpha"],
    );
    assert_exit(&out, 2);
    assert_stderr_has(
        &out,
        &["--target-host and --target-user override one host, but 2 are selected"],
    );
}

/// Runs a command on a pseudo-terminal, answers "yes" to the deploy
/// question, and prints everything the terminal showed, then `EXIT n`.
const PTY_DRIVER: &str = r#"
import fcntl, os, pty, struct, sys, termios
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = "xterm"
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    os.execv(sys.argv[1], sys.argv[1:])
seen, answered = b"", False
while True:
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
    if not answered and b"Continue with deployment? (yes/no)" in seen:
        os.write(fd, b"yes\r")
        answered = True
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
print("\nEXIT", os.waitstatus_to_exitcode(status))
"#;

/// On a terminal, a 4-host deploy shows a live line per host and a stats
/// line under the `[host] …` history; each host's stages appear in order;
/// the question and the summary are printed on their own, with no live
/// line drawn over them. Without a terminal the same run is plain lines.
#[test]
fn a_terminal_shows_live_lines_and_a_plain_run_shows_lines() {
    let Some(mut w) = World::new() else { return };
    let names = ["h1", "h2", "h3", "h4"];
    for h in names {
        w.add_host(h);
    }
    let flake = w.path().join("fleet");
    let fleet: Vec<_> = names.iter().map(|h| host(&w, h, 1, "")).collect();
    write_fleet(&flake, &fleet);
    let bin = testworld::pantheros_bin();
    let mut argv = vec!["python3", "-c", PTY_DRIVER, bin.to_str().unwrap(), "deploy"];
    argv.extend(names);
    let out = w
        .client(&argv)
        .current_dir(&flake)
        .env("PANTHEROS_LOG_DIR", w.path().join("logs"))
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    let screen = stdout(&out);
    assert!(screen.contains("\nEXIT 0"), "{screen}");
    for h in names {
        assert_eq!(w.generation_marker(h), "1", "{h}");
    }
    // Live lines were drawn: indicatif moves the cursor up and clears lines.
    assert!(
        screen.contains("\x1b[1A") || screen.contains("\x1b[2K"),
        "{screen}"
    );
    let plain = strip_ansi(&screen);
    assert!(plain.contains("done, 0 failed"), "no stats line:\n{plain}");
    for h in names {
        let at = |needle: &str| {
            plain
                .find(&format!("[{h}] {needle}"))
                .unwrap_or_else(|| panic!("[{h}] {needle} is missing:\n{plain}"))
        };
        assert!(at("building") < at("copying"), "{h}");
        assert!(at("copying") < at("activating (switch)"), "{h}");
        assert!(
            at("activating (switch)") < at("reachable over a fresh SSH connection"),
            "{h}"
        );
    }
    // The question is alone on its line, and nothing is drawn after the
    // summary began.
    let question = plain
        .lines()
        .find(|l| l.contains("Continue with deployment? (yes/no)"))
        .unwrap_or_else(|| panic!("no question:\n{plain}"));
    assert!(
        question
            .trim_start()
            .starts_with("Continue with deployment?"),
        "{question:?}"
    );
    let summary = screen.rfind("=== Summary ===").expect("a summary");
    let after = &screen[summary..];
    assert!(
        !after.contains("\x1b[1A") && !after.contains("\x1b[2K"),
        "a live line was drawn over the summary: {after:?}"
    );
    for h in names {
        assert!(
            strip_ansi(after).contains(h),
            "{h} missing from the summary: {after}"
        );
    }

    // No terminal: plain lines only, every stage of every host, no escapes.
    let fleet: Vec<_> = names.iter().map(|h| host(&w, h, 2, "")).collect();
    write_fleet(&flake, &fleet);
    let mut args = vec!["deploy"];
    args.extend(names);
    args.push("--yes");
    let out = w.pantheros(&flake, &args);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(!err.contains('\x1b'), "{err}");
    for h in names {
        for stage in ["building", "copying", "activating (switch)"] {
            assert!(
                err.lines()
                    .any(|l| l.starts_with(&format!("[{h}] {stage}"))),
                "[{h}] {stage} missing:\n{err}"
            );
        }
    }
}

/// The text a terminal would show, without its escape sequences and
/// carriage returns.
fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                while let Some(&n) = chars.peek() {
                    chars.next();
                    if n.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// `--builders` hands the fleet's builds to Nix's distributed builds: with
/// no local build slots (`--option max-jobs 0`), the host's closure is built
/// on a builder host with its own store, the deployer's store receives the
/// result, and the deploy completes.
#[test]
fn a_remote_builder_builds_the_closure_and_the_deploy_completes() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    w.add_host("builder");
    let flake = w.path().join("fleet");
    // A package no store has yet (world ids repeat across runs; the time
    // does not), so something really has to be built.
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut h = host(&w, "alpha", 1, "");
    h.packages = vec![("remote-built".into(), format!("1.{unique}"))];
    write_fleet(&flake, &[h]);
    let bin = testworld::pantheros_bin();
    let out = w
        .client(&[
            bin.to_str().unwrap(),
            "deploy",
            "alpha",
            "--yes",
            "--json",
            "--builders",
            "ssh://builder x86_64-linux - 1",
            "--option",
            "max-jobs",
            "0",
        ])
        .current_dir(&flake)
        .env("PANTHEROS_LOG_DIR", w.path().join("logs"))
        .env("NIX_SSHOPTS", w.nix_sshopts())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let v = json(&out);
    let toplevel = v["hosts"][0]["toplevel"].as_str().unwrap().to_string();
    assert_eq!(w.generation_marker("alpha"), "1");
    // Built on the builder: the closure is in its own store...
    for store in ["builder", "alpha"] {
        assert!(
            w.host(store)
                .exec(&["test", "-e", &toplevel])
                .status
                .success(),
            "{toplevel} is not in {store}'s store"
        );
    }
    // ...and Nix says where it built it (the host's log keeps Nix's lines).
    let log = std::fs::read_to_string(v["hosts"][0]["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("on 'ssh://builder'"), "{log}");
    assert!(
        std::path::Path::new(&toplevel).exists(),
        "the deployer has the result"
    );
}
