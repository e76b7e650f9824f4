//! Deploys judged as a real NixOS 26.05 host behaves (the stand-in
//! activation program of tests/fixtures/fleet reproduces the real one's
//! observable behaviour): switch inhibitors seen in the plan and refused
//! before the host changes, "reboot required" for an incompatible init
//! (exit 100) instead of a failure, dry-activate's lines in the order the
//! host printed them, a switch waiting on another activation's lock. The
//! systemd-host half (exit 4 against units broken before the deploy) is in
//! deploy_systemd.rs.

use testworld::{World, assert_exit, assert_stderr_has, json, stderr, write_fleet};

const DEFAULT_SYSTEMD: &str = "systemd-258.1";

fn inhibitors(systemd: &str) -> Option<Vec<(String, String)>> {
    Some(vec![("systemd".into(), systemd.into())])
}

#[test]
fn a_changed_switch_inhibitor_is_planned_refused_booted_or_forced() {
    let Some((w, flake)) = testworld::world_with_deployed_host("inh") else {
        return;
    };
    let gen1 = w.profile_target("inh");

    // Generation 2 moves systemd: the plan names it, a dry run shows it.
    let mut next = w.fixture_host("inh", 2, "");
    next.inhibitors = inhibitors("systemd-259");
    write_fleet(&flake, &[next]);
    let out = w.pantheros(&flake, &["deploy", "inh", "--dry-run", "--json"]);
    assert_exit(&out, 0);
    assert_stderr_has(
        &out,
        &["Live switch: refused by switch inhibitors (systemd: systemd 258.1 -> 259)"],
    );
    let live = &json(&out)["hosts"][0]["live"];
    assert_eq!(live["inhibitors"][0]["key"], "systemd");
    assert_eq!(live["inhibitors"][0]["before"], DEFAULT_SYSTEMD);

    // --goal switch: refused before the host changes, lock released.
    let out = w.pantheros(&flake, &["deploy", "inh", "--yes", "--json"]);
    assert_exit(&out, 9);
    let v = json(&out);
    assert_eq!(v["hosts"][0]["result"], "reboot-required");
    let why = v["hosts"][0]["rebootRequired"].as_str().unwrap();
    assert!(
        why.contains("live switch refused by switch inhibitors"),
        "{why}"
    );
    assert!(why.contains("systemd 258.1 -> 259"), "{why}");
    assert_stderr_has(&out, &["--goal boot", "--force-switch"]);
    assert_eq!(w.profile_target("inh"), gen1);
    assert_eq!(w.generation_marker("inh"), "1");
    assert!(!w.host("inh").locked(), "the deploy lock was left behind");
    assert!(
        !stderr(&out).contains("activating"),
        "the host was touched: {}",
        stderr(&out)
    );

    // --goal boot: the new system is the boot default, the old one runs.
    let out = w.pantheros(&flake, &["deploy", "inh", "--yes", "--goal", "boot"]);
    assert_exit(&out, 0);
    let gen2 = w.profile_target("inh");
    assert_ne!(gen2, gen1);
    assert_eq!(
        w.host("inh")
            .exec_ok(&["cat", "/nix/var/pantheros-fixture/boot/default"])
            .trim(),
        gen2
    );
    assert_eq!(w.generation_marker("inh"), "1");

    // --force-switch: NIXOS_NO_CHECK=1, and the switch goes through.
    let out = w.pantheros(&flake, &["deploy", "inh", "--yes", "--force-switch"]);
    assert_exit(&out, 0);
    assert_eq!(w.generation_marker("inh"), "2");
}

#[test]
fn an_incompatible_init_is_reboot_required_with_the_boot_default_set() {
    let Some((w, flake)) = testworld::world_with_deployed_host("init") else {
        return;
    };
    let gen1 = w.profile_target("init");

    let mut next = w.fixture_host("init", 2, "");
    next.init_interface = Some("systemd 3".into());
    write_fleet(&flake, &[next]);
    let out = w.pantheros(&flake, &["deploy", "init", "--yes", "--json"]);
    assert_exit(&out, 9);
    let v = json(&out);
    let host = &v["hosts"][0];
    assert_eq!(host["result"], "reboot-required");
    assert_eq!(host["live"]["initChanged"], true);
    assert!(host["rollbackReason"].is_null(), "{host}");
    let why = host["rebootRequired"].as_str().unwrap();
    assert!(why.contains("boot default"), "{why}");
    assert_stderr_has(&out, &["Live switch: not possible", "REBOOT REQUIRED"]);
    // The new system is the profile and the boot default; the old one runs.
    let gen2 = w.profile_target("init");
    assert_ne!(gen2, gen1);
    assert_eq!(
        w.host("init")
            .exec_ok(&["cat", "/nix/var/pantheros-fixture/boot/default"])
            .trim(),
        gen2
    );
    assert_eq!(w.generation_marker("init"), "1");
    assert!(!w.host("init").locked());
}

#[test]
fn dry_activate_lines_are_shown_in_the_order_the_host_printed_them() {
    let Some(mut w) = World::new() else { return };
    w.add_host("order");
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[w.fixture_host("order", 1, "")]);
    let out = w.pantheros(&flake, &["deploy", "order", "--dry-run"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    // stderr first, then the system's dry-activate script on stdout.
    let first = err.find("would activate the configuration...");
    let second = err.find("would activate order generation 1");
    assert!(
        matches!((first, second), (Some(a), Some(b)) if a < b),
        "not in the host's order:\n{err}"
    );
}

#[test]
fn a_switch_waiting_on_another_activation_names_the_lock() {
    let Some((w, flake)) = testworld::world_with_deployed_host("busy") else {
        return;
    };

    // Another activation (as a nixos-rebuild would) holds NixOS's lock.
    let mut holder = w
        .host("busy")
        .command(&[
            "sh",
            "-c",
            "mkdir -p /run/nixos; exec 8>>/run/nixos/switch-to-configuration.lock; flock 8; exec sleep 120",
        ])
        .spawn()
        .expect("hold the activation lock");
    std::thread::sleep(std::time::Duration::from_millis(300));
    write_fleet(
        &flake,
        &[w.fixture_host("busy", 2, "activationTimeout = 3;")],
    );
    let out = w.pantheros(&flake, &["deploy", "busy", "--yes"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_exit(&out, 1);
    assert_stderr_has(
        &out,
        &[
            "another activation holds NixOS's activation lock /run/nixos/switch-to-configuration.lock",
            "sleep 120",
            "nothing was changed",
        ],
    );
    assert!(
        !stderr(&out).contains("ROLLBACK FAILED"),
        "{}",
        stderr(&out)
    );
    assert_eq!(w.generation_marker("busy"), "1");
    assert!(!w.host("busy").locked());
    // Once the other activation is done, the deploy goes through.
    assert_exit(&w.pantheros(&flake, &["deploy", "busy", "--yes"]), 0);
    assert_eq!(w.generation_marker("busy"), "2");
}

/// A new kernel switches fine and runs after a reboot: the plan says so in
/// its one line and `--json` lists it; nothing is refused.
#[test]
fn a_new_kernel_is_a_note_in_the_plan_not_a_refusal() {
    let Some((mut w, flake)) = testworld::world_with_deployed_host("kern") else {
        return;
    };
    // The host boots generation 1: /run/booted-system has its kernel.
    w.reboot_host("kern");
    let mut next = w.fixture_host("kern", 2, "");
    next.kernel = Some("6.12.3".into());
    write_fleet(&flake, &[next]);
    let out = w.pantheros(&flake, &["deploy", "kern", "--yes", "--json"]);
    assert_exit(&out, 0);
    assert_stderr_has(&out, &["Live switch: yes; reboot to run the kernel 6.12.3"]);
    let live = &json(&out)["hosts"][0]["live"];
    assert_eq!(live["bootChanges"][0], "new kernel 6.12.3");
    assert_eq!(live["inhibitors"].as_array().map(Vec::len), Some(0));
    assert_eq!(w.generation_marker("kern"), "2");
}

/// The real program's fatal paths exit with errno-style codes (here: its
/// activation script failed, exit 2, after the switch went on): the deploy
/// rolls back and the reason carries what the program said, not only the
/// number.
#[test]
fn an_errno_style_exit_is_rolled_back_with_what_the_switch_said() {
    let Some((w, flake)) = testworld::world_with_deployed_host("errno") else {
        return;
    };
    let gen1 = w.profile_target("errno");
    let mut bad = w.fixture_host("errno", 2, "");
    bad.fail_activate_script = true;
    write_fleet(&flake, &[bad]);
    let reason =
        testworld::rollback_reason(&w.pantheros(&flake, &["deploy", "errno", "--yes", "--json"]));
    assert!(
        reason.contains("switch-to-configuration exited 2 (Failed to run activate script)"),
        "{reason}"
    );
    assert_eq!(w.profile_target("errno"), gen1);
    assert_eq!(w.generation_marker("errno"), "1");
}
