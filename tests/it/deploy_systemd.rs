//! `pantheros deploy` to systemd hosts (systemd-nspawn, real systemd as
//! PID 1): activation under systemd-run, health checks against systemd's
//! own view, failed units, privilege escalation.

use testworld::{FixtureHost, World, json, stderr, write_fleet};
use testworld::{assert_exit, assert_stderr_has};

fn host(w: &World, name: &str, generation: u32, extra: &str) -> FixtureHost {
    w.fixture_host(name, generation, &format!("confirmTimeout = 8; {extra}"))
}

#[test]
fn systemd_host_deploy_health_and_failed_unit_rollback() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    w.add_systemd_host("sys1");
    let flake = w.path().join("fleet");
    let checks = r#"healthChecks = { services = [ "ssh.service" ]; commands = [ "test -e /run/pantheros-fixture/generation" ]; timeout = 5; };"#;

    // Generation 1: activated under systemd-run, healthy.
    write_fleet(&flake, &[host(&w, "sys1", 1, checks)]);
    let out = w.pantheros(&flake, &["deploy", "sys1", "--yes", "--json"]);
    assert_exit(&out, 0);
    assert_stderr_has(&out, &["health checks passed"]);
    assert_eq!(
        w.ssh_ok("sys1", "cat /run/pantheros-fixture/generation")
            .trim(),
        "1"
    );
    let cgroup = w.ssh_ok("sys1", "cat /run/pantheros-fixture/cgroup");
    assert!(
        cgroup.contains("pantheros-"),
        "activation did not run in a transient unit: {cgroup}"
    );
    let gen1 = w.ssh_ok("sys1", "readlink -f /nix/var/nix/profiles/system");

    // Generation 2 starts a unit that fails: degraded → health fails → rolled back.
    let mut bad = host(&w, "sys1", 2, checks);
    bad.fail_unit = true;
    write_fleet(&flake, &[bad]);
    let out = w.pantheros(&flake, &["deploy", "sys1", "--yes", "--json"]);
    assert_exit(&out, 3);
    let v = json(&out);
    assert_eq!(v["hosts"][0]["result"], "rolled-back");
    let reason = v["hosts"][0]["rollbackReason"].as_str().unwrap();
    assert!(reason.contains("system is degraded"), "{reason}");
    assert!(
        reason.contains("failed unit: fixture-broken.service"),
        "{reason}"
    );
    assert_eq!(
        w.ssh_ok("sys1", "readlink -f /nix/var/nix/profiles/system"),
        gen1
    );
    assert_eq!(
        w.ssh_ok("sys1", "cat /run/pantheros-fixture/generation")
            .trim(),
        "1"
    );
    assert_eq!(
        w.ssh_ok("sys1", "systemctl is-system-running || true")
            .trim(),
        "running"
    );

    // The same failure with --no-rollback-on-health keeps generation 2 and
    // says so: exit 7, "unhealthy", never "nothing changed".
    let out = w.pantheros(
        &flake,
        &[
            "deploy",
            "sys1",
            "--yes",
            "--no-rollback-on-health",
            "--json",
        ],
    );
    assert_exit(&out, 7);
    assert_eq!(json(&out)["hosts"][0]["result"], "unhealthy");
    assert_stderr_has(&out, &["the new generation stays active"]);
    assert!(
        !stderr(&out).contains("nothing changed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        w.ssh_ok("sys1", "cat /run/pantheros-fixture/generation")
            .trim(),
        "2"
    );
}

#[test]
fn a_non_root_user_deploys_through_sudo_and_a_password_prompt_is_explained() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    w.add_systemd_host("sys2");
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[host(&w, "sys2", 1, r#"targetUser = "deploy";"#)]);
    let out = w.pantheros(&flake, &["deploy", "sys2", "--yes", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["hosts"][0]["target"], "deploy@sys2");
    assert_eq!(
        w.ssh_ok("sys2", "cat /run/pantheros-fixture/generation")
            .trim(),
        "1"
    );

    write_fleet(&flake, &[host(&w, "sys2", 2, r#"targetUser = "nopw";"#)]);
    let out = w.pantheros(&flake, &["deploy", "sys2", "--yes"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("needs a password"), "{err}");
    assert!(err.contains("NOPASSWD"), "{err}");
    assert_eq!(
        w.ssh_ok("sys2", "cat /run/pantheros-fixture/generation")
            .trim(),
        "1"
    );
}

#[test]
fn a_system_that_cuts_ssh_is_rolled_back_under_systemd_too() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    w.add_systemd_host("sys3");
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[host(&w, "sys3", 1, "")]);
    let out = w.pantheros(&flake, &["deploy", "sys3", "--yes"]);
    assert_exit(&out, 0);
    let gen1 = w.ssh_ok("sys3", "readlink -f /nix/var/nix/profiles/system");
    let mut bad = host(&w, "sys3", 2, "");
    bad.block_ssh = true;
    write_fleet(&flake, &[bad]);
    let out = w.pantheros(&flake, &["deploy", "sys3", "--yes", "--json"]);
    assert_exit(&out, 3);
    let v = json(&out);
    assert!(
        v["hosts"][0]["rollbackReason"]
            .as_str()
            .unwrap()
            .contains("no confirmation"),
        "{v}"
    );
    // New connections work again, and the host is back on generation 1.
    assert_eq!(
        w.ssh_ok("sys3", "readlink -f /nix/var/nix/profiles/system"),
        gen1
    );
    assert_eq!(
        w.ssh_ok("sys3", "cat /run/pantheros-fixture/generation")
            .trim(),
        "1"
    );
    assert!(
        w.ssh_ok("sys3", "nft list tables")
            .lines()
            .all(|l| !l.contains("fixture-cut"))
    );
}

/// A unit that had failed before the deploy is reported, not blamed: the
/// deploy succeeds instead of rolling back until someone resets it.
#[test]
fn units_that_failed_before_the_deploy_are_not_blamed_on_it() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    w.add_systemd_host("sys3");
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[host(&w, "sys3", 1, "")]);
    assert_exit(&w.pantheros(&flake, &["deploy", "sys3", "--yes"]), 0);
    // Something unrelated fails on the host.
    w.ssh_ok(
        "sys3",
        "systemd-run --unit=old-broken --service-type=oneshot /bin/sh -c 'exit 3' || true",
    );
    w.ssh_ok("sys3", "systemctl is-failed old-broken.service");
    write_fleet(&flake, &[host(&w, "sys3", 2, "")]);
    let out = w.pantheros(&flake, &["deploy", "sys3", "--yes", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["hosts"][0]["result"], "success");
    assert_stderr_has(
        &out,
        &["units that had failed before this deploy are still failed: old-broken.service"],
    );
    assert_eq!(
        w.ssh_ok("sys3", "cat /run/pantheros-fixture/generation")
            .trim(),
        "2"
    );
    // A unit that fails because of the deploy is still blamed.
    let mut bad = host(&w, "sys3", 3, "");
    bad.fail_unit = true;
    write_fleet(&flake, &[bad]);
    let out = w.pantheros(&flake, &["deploy", "sys3", "--yes"]);
    assert_exit(&out, 3);
    assert_stderr_has(&out, &["failed unit: fixture-broken.service"]);
}
