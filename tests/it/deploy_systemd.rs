//! `pantheros deploy` to systemd hosts (systemd-nspawn, real systemd as
//! PID 1): activation under systemd-run, health checks against systemd's
//! own view, failed units, privilege escalation.

use testworld::{FixtureHost, World, json, stderr, write_fleet};
use testworld::{assert_exit, assert_stderr_has};

use testworld::rollback_reason as rolled_back;

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

    // Generation 2 brings a unit that fails: switch-to-configuration exits 4
    // naming it, a unit this deploy broke → rolled back at activation.
    let mut bad = host(&w, "sys1", 2, checks);
    bad.fail_unit = true;
    write_fleet(&flake, &[bad]);
    let reason = rolled_back(&w.pantheros(&flake, &["deploy", "sys1", "--yes", "--json"]));
    assert!(
        reason.contains("units failed because of this deploy: fixture-broken.service"),
        "{reason}"
    );
    assert!(!reason.contains("already failing"), "{reason}");
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

    // With exit 4 accepted for the host (rollbackOnFailedUnits = false), the
    // health checks see the degraded system; with --no-rollback-on-health
    // generation 2 stays and says so: exit 7, "unhealthy", never "nothing
    // changed".
    let mut bad = host(
        &w,
        "sys1",
        2,
        &format!("{checks} rollbackOnFailedUnits = false;"),
    );
    bad.fail_unit = true;
    write_fleet(&flake, &[bad]);
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

/// A unit that had failed before the deploy and that nothing restarts (a
/// transient one) is cleared by the switch's reset of every failed unit, as
/// NixOS's activation does: the deploy succeeds and the unit is no longer
/// failed. A unit that fails because of the deploy is still blamed.
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
    assert_eq!(
        w.ssh_ok("sys3", "systemctl is-failed old-broken.service || true")
            .trim(),
        "inactive",
        "the switch's reset-failed should have cleared it"
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
    assert_stderr_has(
        &out,
        &["units failed because of this deploy: fixture-broken.service"],
    );
}

/// switch-to-configuration's exit 4 is about the whole host: a unit that
/// was already failing before the deploy, and that a target wants, fails
/// again on every switch. Only units this deploy broke roll it back; a
/// rollback whose own switch exits 4 for the old unit is a rollback that
/// worked, and says so.
#[test]
fn a_unit_broken_before_the_deploy_is_not_blamed_on_it() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    w.add_systemd_host("sys4");
    let flake = w.path().join("fleet");
    let flaky = |generation: u32, pkg: &str, broken: bool| {
        let mut h = host(&w, "sys4", generation, "");
        h.flaky_unit = true;
        h.fail_unit = broken;
        h.packages = vec![("hello".into(), pkg.into())];
        h
    };
    write_fleet(&flake, &[flaky(1, "2.12", false)]);
    assert_exit(&w.pantheros(&flake, &["deploy", "sys4", "--yes"]), 0);
    let gen1 = w.ssh_ok("sys4", "readlink -f /nix/var/nix/profiles/system");

    // Something outside this deploy breaks a unit on the host.
    w.ssh_ok(
        "sys4",
        "mkdir -p /var/lib/pantheros-fixture && touch /var/lib/pantheros-fixture/break-flaky && \
         (systemctl restart fixture-flaky.service || true)",
    );
    assert_eq!(
        w.ssh_ok("sys4", "systemctl is-failed fixture-flaky.service || true")
            .trim(),
        "failed"
    );

    // An unrelated change: the switch exits 4 for the old unit only → kept.
    write_fleet(&flake, &[flaky(2, "2.13", false)]);
    let out = w.pantheros(&flake, &["deploy", "sys4", "--yes", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["hosts"][0]["result"], "success");
    assert_stderr_has(
        &out,
        &["already failing before this deploy: fixture-flaky.service"],
    );
    let log = w.ssh_ok(
        "sys4",
        "cat /var/lib/pantheros/runs/*/log 2>/dev/null || true",
    );
    assert!(
        log.contains("switch-to-configuration switch exited 4"),
        "the stand-in did not exit 4 for the old unit:\n{log}"
    );
    let gen2 = w.ssh_ok("sys4", "readlink -f /nix/var/nix/profiles/system");
    assert_ne!(gen2, gen1);

    // A change that breaks another unit: rolled back, naming only that unit;
    // the rollback's own switch exits 4 for the old unit and still counts.
    write_fleet(&flake, &[flaky(3, "2.14", true)]);
    let reason = rolled_back(&w.pantheros(&flake, &["deploy", "sys4", "--yes", "--json"]));
    assert!(
        reason.contains("units failed because of this deploy: fixture-broken.service"),
        "{reason}"
    );
    assert!(
        !reason.contains("because of this deploy: fixture-broken.service, fixture-flaky"),
        "{reason}"
    );
    assert!(
        reason.contains(
            "exited 4 only for units already failing before this deploy: fixture-flaky.service"
        ),
        "{reason}"
    );
    assert_eq!(
        w.ssh_ok("sys4", "readlink -f /nix/var/nix/profiles/system"),
        gen2
    );

    // `pantheros rollback` while the old unit still fails: it works and says so.
    let out = w.pantheros(&flake, &["rollback", "sys4", "--yes", "--json"]);
    assert_exit(&out, 0);
    assert_stderr_has(
        &out,
        &["already failing before this deploy: fixture-flaky.service"],
    );
    assert_eq!(
        w.ssh_ok("sys4", "readlink -f /nix/var/nix/profiles/system"),
        gen1
    );

    // `status`: the failing unit makes the host degraded (the flake being
    // ahead of it is said too), and its record is the rollback's.
    let out = w.pantheros(&flake, &["status", "sys4", "--json"]);
    assert_exit(&out, 0);
    let doc = json(&out);
    testworld::assert_schema(&doc, "status");
    let h = &doc["hosts"][0];
    assert_eq!(h["state"], "degraded", "{h:#}");
    assert!(
        h["details"][0]
            .as_str()
            .unwrap()
            .contains("fixture-flaky.service"),
        "{h:#}"
    );
    assert!(
        h["details"].to_string().contains("the flake's system is"),
        "{h:#}"
    );
    assert_eq!(h["probe"]["record"]["mode"], "rollback", "{h:#}");
    assert_eq!(h["probe"]["systemd"], true);
}
