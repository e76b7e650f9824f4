//! A fleet whose hosts run another Nix than the laptop: this machine's Nix
//! (Debian 12's 2.8) deploys to a systemd host on Debian 13's rootfs (Nix
//! 2.26): the copy between the two stores, the switch, a magic rollback,
//! `rollback --list` and `--to`, and `status`; and the other way round,
//! pantheros on a Debian 13 host deploying to a Debian 12 one.

use testworld::{World, assert_exit, json, stdout, write_fleet};

#[test]
fn a_nix_2_8_deployer_deploys_and_rolls_back_a_nix_2_26_host() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    if !w.prepare_systemd_release("trixie") {
        return;
    }
    w.add_systemd_host_on("t26", "trixie");
    let host_nix = w.ssh_ok("t26", "nix --version");
    assert!(host_nix.contains("2.26"), "the trixie host runs {host_nix}");
    let here = stdout(&testworld::sh(&["nix", "--version"]));
    assert!(
        !here.contains("2.26"),
        "this machine's Nix should differ: {here}"
    );

    let flake = w.path().join("fleet");
    let fixture = |g: u32| w.fixture_host("t26", g, "confirmTimeout = 8;");
    write_fleet(&flake, &[fixture(1)]);
    assert_exit(&w.pantheros(&flake, &["deploy", "t26", "--yes"]), 0);
    write_fleet(&flake, &[fixture(2)]);
    assert_exit(&w.pantheros(&flake, &["deploy", "t26", "--yes"]), 0);
    assert_eq!(
        w.ssh_ok("t26", "cat /run/pantheros-fixture/generation")
            .trim(),
        "2"
    );
    // The closure reached the 2.26 store whole.
    let toplevel = w.ssh_ok("t26", "readlink -f /nix/var/nix/profiles/system");
    let verify = w.ssh_ok(
        "t26",
        &format!("nix-store --verify-path {} && echo ok", toplevel.trim()),
    );
    assert_eq!(verify.trim(), "ok");

    // A generation that cuts SSH: the 2.26 host goes back by itself.
    let mut bad = fixture(3);
    bad.block_ssh = true;
    write_fleet(&flake, &[bad]);
    let out = w.pantheros(&flake, &["deploy", "t26", "--yes", "--json"]);
    let reason = testworld::rollback_reason(&out);
    assert!(reason.contains("no confirmation"), "{reason}");
    assert_eq!(
        w.ssh_ok("t26", "cat /run/pantheros-fixture/generation")
            .trim(),
        "2"
    );

    // The generations as 2.26's nix-env lists them, and back to the first.
    let out = w.pantheros(&flake, &["rollback", "t26", "--list", "--json"]);
    assert_exit(&out, 0);
    let gens = json(&out)["generations"].as_array().unwrap().len();
    assert!(gens >= 2, "{}", stdout(&out));
    assert_exit(
        &w.pantheros(&flake, &["rollback", "t26", "--to", "1", "--yes"]),
        0,
    );
    assert_eq!(
        w.ssh_ok("t26", "cat /run/pantheros-fixture/generation")
            .trim(),
        "1"
    );

    // status reads it like any other host: the flake is ahead of it.
    write_fleet(&flake, &[fixture(2)]);
    let out = w.pantheros(&flake, &["status", "t26", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(
        json(&out)["hosts"][0]["state"],
        "flake-ahead",
        "{}",
        stdout(&out)
    );
}

/// The other direction: the deployer runs Debian 13's Nix 2.26 (pantheros
/// on a trixie systemd host) and the target Debian 12's 2.8.
#[test]
fn a_nix_2_26_deployer_deploys_and_rolls_back_a_nix_2_8_host() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    if !w.prepare_systemd_release("trixie") {
        return;
    }
    w.add_systemd_host_on("d26", "trixie");
    w.add_systemd_host("b28");
    assert!(w.ssh_ok("d26", "nix --version").contains("2.26"));
    assert!(w.ssh_ok("b28", "nix --version").contains("2.8"));
    let flake = w.path().join("fleet");
    let fixture = |g: u32| w.fixture_host("b28", g, "confirmTimeout = 8;");
    write_fleet(&flake, &[fixture(1)]);
    w.seat_deployer_on("d26", &[&flake]);
    let deploy = |args: &str| {
        w.ssh(
            "d26",
            &[&format!("cd {} && pantheros {args}", flake.display())],
        )
    };
    let out = deploy("deploy b28 --yes");
    assert_exit(&out, 0);
    assert_eq!(
        w.ssh_ok("b28", "cat /run/pantheros-fixture/generation")
            .trim(),
        "1"
    );

    // A generation that cuts SSH, built by 2.26 and copied into 2.8's store:
    // rolled back by the host itself.
    let mut bad = fixture(2);
    bad.block_ssh = true;
    write_fleet(&flake, &[bad]);
    w.seat_deployer_on("d26", &[&flake]);
    let out = deploy("deploy b28 --yes --json");
    let reason = testworld::rollback_reason(&out);
    assert!(reason.contains("no confirmation"), "{reason}");
    assert_eq!(
        w.ssh_ok("b28", "cat /run/pantheros-fixture/generation")
            .trim(),
        "1"
    );
    let out = deploy("rollback b28 --list --json");
    assert_exit(&out, 0);
    assert!(!json(&out)["generations"].as_array().unwrap().is_empty());
}
