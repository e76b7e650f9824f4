//! `pantheros deploy --reboot` on rebootable systemd hosts: a persistent
//! disk, systemd-boot (the stand-in bootctl and firmware of
//! crates/testworld/systemd/machine.sh) and the deployment module's boot
//! watchdog in every fixture system.

use std::time::{Duration, Instant};

use testworld::{FixtureHost, World, assert_exit, write_fleet};

fn host(w: &World, name: &str, generation: u32, extra: &str) -> FixtureHost {
    w.fixture_host(name, generation, &format!("confirmTimeout = 8; {extra}"))
}

/// Wait until `name` answers SSH with a boot id other than `before`.
fn wait_new_boot(w: &World, name: &str, before: &str, within: Duration) -> String {
    let start = Instant::now();
    loop {
        let out = w.ssh(name, &["cat /proc/sys/kernel/random/boot_id"]);
        let id = testworld::stdout(&out).trim().to_string();
        if out.status.success() && !id.is_empty() && id != before {
            return id;
        }
        assert!(
            start.elapsed() < within,
            "{name} did not come back with a new boot id within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The test world's machine: a reboot boots the loader's default, a
/// one-shot entry boots once and is spent, a power cycle boots again.
#[test]
fn a_rebootable_host_boots_what_its_loader_says() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    w.add_rebootable_host("rb1");
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[host(&w, "rb1", 1, "")]);
    assert_exit(&w.pantheros(&flake, &["deploy", "rb1", "--yes"]), 0);
    let gen1 = w.ssh_ok("rb1", "readlink -f /nix/var/nix/profiles/system");
    assert_eq!(
        w.ssh_ok("rb1", "cat /boot/loader/loader.conf"),
        "timeout 5\ndefault nixos-generation-1.conf\n"
    );
    write_fleet(&flake, &[host(&w, "rb1", 2, "")]);
    assert_exit(
        &w.pantheros(&flake, &["deploy", "rb1", "--yes", "--goal", "boot"]),
        0,
    );
    let gen2 = w.ssh_ok("rb1", "readlink -f /nix/var/nix/profiles/system");

    // The default (generation 2) boots after a reboot from inside.
    let b0 = w.ssh_ok("rb1", "cat /proc/sys/kernel/random/boot_id");
    let _ = w.ssh("rb1", &["systemctl reboot"]);
    let b1 = wait_new_boot(&w, "rb1", b0.trim(), Duration::from_secs(60));
    assert_eq!(w.ssh_ok("rb1", "readlink -f /run/booted-system"), gen2);
    assert_eq!(w.ssh_ok("rb1", "readlink -f /run/current-system"), gen2);
    // The system's units are the host's units.
    assert_eq!(
        w.ssh_ok("rb1", "systemctl is-active fixture-app.service")
            .trim(),
        "active"
    );

    // A one-shot entry (generation 1) boots once; the next power cycle
    // boots the default again.
    w.ssh_ok("rb1", "bootctl set-oneshot nixos-generation-1.conf");
    let _ = w.ssh("rb1", &["systemctl reboot"]);
    let b2 = wait_new_boot(&w, "rb1", &b1, Duration::from_secs(60));
    assert_eq!(w.ssh_ok("rb1", "readlink -f /run/booted-system"), gen1);
    w.systemd_host("rb1").power_cycle();
    wait_new_boot(&w, "rb1", &b2, Duration::from_secs(60));
    assert_eq!(w.ssh_ok("rb1", "readlink -f /run/booted-system"), gen2);
    let how: Vec<String> = w
        .systemd_host("rb1")
        .boots()
        .iter()
        .filter(|l| l.starts_with("boot "))
        .map(|l| l.split_whitespace().nth(2).unwrap_or("").to_string())
        .collect();
    assert_eq!(
        how,
        ["none", "default", "oneshot", "default"],
        "{:?}",
        w.systemd_host("rb1").boots()
    );
    // An unknown entry is refused, as bootctl does.
    let out = w.ssh("rb1", &["bootctl set-oneshot nixos-generation-9.conf"]);
    assert!(!out.status.success());
}

/// A rebootable host running generation 1 (deployed live), whose profile
/// and loader default are generation 1; returns that system.
fn host_on_generation_1(w: &mut World, name: &str) -> String {
    w.add_rebootable_host(name);
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[host(w, name, 1, "")]);
    assert_exit(&w.pantheros(&flake, &["deploy", name, "--yes"]), 0);
    w.ssh_ok(name, "readlink -f /nix/var/nix/profiles/system")
}

fn deploy_rebooting(w: &World, fixture: FixtureHost, extra: &[&str]) -> std::process::Output {
    let flake = w.path().join("fleet");
    let name = fixture.name.clone();
    write_fleet(&flake, &[fixture]);
    let mut args = vec!["deploy", name.as_str(), "--reboot", "--yes", "--json"];
    args.extend_from_slice(extra);
    w.pantheros(&flake, &args)
}

fn loader_default(w: &World, name: &str) -> String {
    w.ssh_ok(
        name,
        "awk '$1 == \"default\" { print $2 }' /boot/loader/loader.conf",
    )
    .trim()
    .to_string()
}

/// A good new system: booted once as the one-shot entry, proven over a
/// fresh connection with its health checks, then made the default; the
/// watchdog saw it confirmed. `rollback --reboot` goes back the same way.
#[test]
fn a_good_new_system_becomes_the_default_after_its_reboot() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    let gen1 = host_on_generation_1(&mut w, "rb2");
    let checks = r#"healthChecks = { services = [ "fixture-app.service" ]; timeout = 10; };"#;
    let out = deploy_rebooting(&w, host(&w, "rb2", 2, checks), &[]);
    assert_exit(&out, 0);
    let v = testworld::json(&out);
    let h = &v["hosts"][0];
    assert_eq!(h["result"], "success", "{v}");
    assert_eq!(h["rebooted"], true, "{v}");
    let gen2 = w.ssh_ok("rb2", "readlink -f /nix/var/nix/profiles/system");
    assert_ne!(gen1, gen2);
    assert_eq!(h["reboot"]["bootedSystem"], gen2.trim(), "{v}");
    assert_ne!(
        h["reboot"]["bootIdBefore"], h["reboot"]["bootIdAfter"],
        "{v}"
    );
    assert_eq!(h["reboot"]["entry"], "nixos-generation-2.conf", "{v}");
    assert_eq!(h["generationAfter"], 2, "{v}");
    assert_eq!(w.ssh_ok("rb2", "readlink -f /run/booted-system"), gen2);
    assert_eq!(loader_default(&w, "rb2"), "nixos-generation-2.conf");
    let watchdog = w.ssh_ok("rb2", "cut -d' ' -f2 /var/lib/pantheros/trial-boots");
    assert_eq!(watchdog, "trial\nconfirmed\n");
    assert!(
        !w.ssh("rb2", &["test -e /var/lib/pantheros/trial"])
            .status
            .success(),
        "the trial marker is left behind"
    );
    let rb = w.systemd_host("rb2");
    assert_eq!(
        rb.boots()
            .iter()
            .rfind(|l| l.starts_with("boot "))
            .map(|l| l.split_whitespace().nth(2).unwrap_or("").to_string()),
        Some("oneshot".to_string()),
        "{:?}",
        rb.boots()
    );
    // The one-shot is spent and the default is the new system: a power
    // cycle boots generation 2 again.
    let before = w.ssh_ok("rb2", "cat /proc/sys/kernel/random/boot_id");
    rb.power_cycle();
    wait_new_boot(&w, "rb2", before.trim(), Duration::from_secs(60));
    assert_eq!(w.ssh_ok("rb2", "readlink -f /run/booted-system"), gen2);

    // rollback --reboot: generation 1 booted once, proven, kept.
    let flake = w.path().join("fleet");
    let out = w.pantheros(&flake, &["rollback", "rb2", "--reboot", "--yes", "--json"]);
    assert_exit(&out, 0);
    let v = testworld::json(&out);
    assert_eq!(v["hosts"][0]["rebooted"], true, "{v}");
    assert_eq!(w.ssh_ok("rb2", "readlink -f /run/booted-system"), gen1);
    assert_eq!(
        w.ssh_ok("rb2", "readlink -f /nix/var/nix/profiles/system"),
        gen1
    );
    assert_eq!(loader_default(&w, "rb2"), "nixos-generation-1.conf");
}

/// A new system whose sshd never answers: nobody proves it, so its boot
/// watchdog reboots, and the old system (still the default) comes back by
/// itself. The deploy says why and leaves the old system as the profile.
#[test]
fn an_unreachable_new_system_comes_back_on_the_old_one_by_its_watchdog() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    let gen1 = host_on_generation_1(&mut w, "rb3");
    let mut dead = host(
        &w,
        "rb3",
        2,
        "rebootConfirmTimeout = 10; rebootTimeout = 120;",
    );
    dead.ssh_dead_at_boot = true;
    let out = deploy_rebooting(&w, dead, &[]);
    let reason = testworld::rollback_reason(&out);
    assert!(
        reason.contains("did not prove itself after the reboot")
            && reason.contains("not proven within 10s")
            && reason.contains("boot watchdog"),
        "{reason}"
    );
    assert_eq!(w.ssh_ok("rb3", "readlink -f /run/booted-system"), gen1);
    assert_eq!(
        w.ssh_ok("rb3", "readlink -f /nix/var/nix/profiles/system"),
        gen1
    );
    assert_eq!(loader_default(&w, "rb3"), "nixos-generation-1.conf");
    let watchdog = w.ssh_ok("rb3", "cut -d' ' -f2 /var/lib/pantheros/trial-boots");
    assert!(watchdog.starts_with("trial\nexpired\n"), "{watchdog}");
    let tops = w.systemd_host("rb3").booted_toplevels();
    // The base system, the trial, the old system again.
    assert_eq!(tops.len(), 3, "{tops:?}");
    assert_ne!(
        tops[1],
        gen1.trim(),
        "the trial boot ran the old system: {tops:?}"
    );
    assert_eq!(tops[2], gen1.trim(), "{tops:?}");
    // The lock was given back: the next deploy needs no --break-lock.
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[host(&w, "rb3", 1, "")]);
    assert_exit(&w.pantheros(&flake, &["deploy", "rb3", "--yes"]), 0);
}

/// A new system that boots and answers but fails its health checks is
/// rebooted back into the old one.
#[test]
fn a_new_system_failing_its_health_checks_is_rebooted_back() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    let gen1 = host_on_generation_1(&mut w, "rb4");
    let mut bad = host(&w, "rb4", 2, "healthChecks = { timeout = 3; };");
    bad.fail_unit = true;
    let out = deploy_rebooting(&w, bad, &[]);
    let reason = testworld::rollback_reason(&out);
    assert!(
        reason.contains("health checks failed")
            && reason.contains("fixture-broken.service")
            && reason.contains("rebooted back into generation 1"),
        "{reason}"
    );
    assert_eq!(w.ssh_ok("rb4", "readlink -f /run/booted-system"), gen1);
    assert_eq!(
        w.ssh_ok("rb4", "readlink -f /nix/var/nix/profiles/system"),
        gen1
    );
    assert_eq!(loader_default(&w, "rb4"), "nixos-generation-1.conf");
}

/// A host silent past rebootTimeout is reported (state unknown, exit 6),
/// never waited on for good; its watchdog still brings the old system back.
#[test]
fn a_host_that_does_not_come_back_in_time_is_reported() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    let gen1 = host_on_generation_1(&mut w, "rb5");
    let mut dead = host(
        &w,
        "rb5",
        2,
        "rebootConfirmTimeout = 20; rebootTimeout = 5;",
    );
    dead.ssh_dead_at_boot = true;
    let start = Instant::now();
    let out = deploy_rebooting(&w, dead, &[]);
    assert_exit(&out, 6);
    // Bounded: rebootTimeout, then the lock's release tried for 30 s.
    assert!(
        start.elapsed() < Duration::from_secs(90),
        "{:?}",
        start.elapsed()
    );
    let v = testworld::json(&out);
    let err = v["hosts"][0]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("did not answer within 5s after the reboot"),
        "{err}"
    );
    assert!(err.contains("console"), "{err}");
    // The watchdog's reboot brings the old system back by itself.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = w.ssh("rb5", &["readlink -f /run/booted-system"]);
        if out.status.success() && testworld::stdout(&out) == gen1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old system did not come back"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Where a generation cannot be booted once (no systemd-boot), --reboot
/// is refused before anything changes; --reboot=if-needed on a plan that
/// needs none switches live without a reboot.
#[test]
fn reboot_is_refused_without_systemd_boot_and_skipped_when_not_needed() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    w.add_systemd_host("rb6");
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[host(&w, "rb6", 1, "")]);
    assert_exit(&w.pantheros(&flake, &["deploy", "rb6", "--yes"]), 0);
    let gen1 = w.ssh_ok("rb6", "readlink -f /nix/var/nix/profiles/system");
    let out = deploy_rebooting(&w, host(&w, "rb6", 2, ""), &[]);
    assert_exit(&out, 1);
    let v = testworld::json(&out);
    let err = v["hosts"][0]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("--reboot cannot boot the new system once on rb6")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(
        w.ssh_ok("rb6", "readlink -f /nix/var/nix/profiles/system"),
        gen1
    );
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[host(&w, "rb6", 2, "")]);
    let out = w.pantheros(
        &flake,
        &["deploy", "rb6", "--reboot=if-needed", "--yes", "--json"],
    );
    assert_exit(&out, 0);
    let v = testworld::json(&out);
    assert_eq!(v["hosts"][0]["rebooted"], false, "{v}");
    // --goal test cannot go with --reboot.
    let out = w.pantheros(
        &flake,
        &["deploy", "rb6", "--reboot", "--goal", "test", "--yes"],
    );
    assert_exit(&out, 2);
}

/// GRUB as NixOS installs it: the new generation is `next_entry` in the
/// environment block, booted once by NixOS's grub.cfg and cleared; proven,
/// it becomes "NixOS - Default". pantheros writes the block itself when
/// the host has no grub-editenv (NixOS with `devices = [ "nodev" ]`), and
/// uses grub-editenv when it is there; the firmware reads it with this
/// machine's real grub-editenv either way.
#[test]
fn grub_boots_the_new_generation_once_then_keeps_it() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    if w.add_rebootable_grub_host("rg1").is_none() {
        return;
    }
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[host(&w, "rg1", 1, "")]);
    assert_exit(&w.pantheros(&flake, &["deploy", "rg1", "--yes"]), 0);
    let gen1 = w.ssh_ok("rg1", "readlink -f /nix/var/nix/profiles/system");
    assert!(
        !w.ssh("rg1", &["command -v grub-editenv"]).status.success(),
        "the host should have no grub-editenv"
    );

    // Without grub-editenv on the host: pantheros writes the block.
    let out = deploy_rebooting(&w, host(&w, "rg1", 2, ""), &[]);
    assert_exit(&out, 0);
    let v = testworld::json(&out);
    let gen2 = w.ssh_ok("rg1", "readlink -f /nix/var/nix/profiles/system");
    let entry = v["hosts"][0]["reboot"]["entry"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        entry.starts_with("NixOS - All configurations>NixOS - Configuration 2 ("),
        "{v}"
    );
    assert_eq!(w.ssh_ok("rg1", "readlink -f /run/booted-system"), gen2);
    let rg = w.systemd_host("rg1");
    let last = rg
        .boots()
        .iter()
        .rfind(|l| l.starts_with("boot "))
        .cloned()
        .unwrap_or_default();
    assert!(last.contains(" next_entry "), "{:?}", rg.boots());
    // The block is GRUB's format (1024 bytes, as grub-editenv reads it),
    // and next_entry was spent.
    let env = rg.disk.as_ref().unwrap().join("boot/grub/grubenv");
    assert_eq!(std::fs::metadata(&env).unwrap().len(), 1024);
    let listed = testworld::stdout(&testworld::sh(&[
        "grub-editenv",
        env.to_str().unwrap(),
        "list",
    ]));
    assert!(listed.lines().any(|l| l == "next_entry="), "{listed}");
    // Kept: "NixOS - Default" is generation 2 now; a power cycle boots it.
    let cfg = w.ssh_ok("rg1", "cat /boot/grub/grub.cfg");
    assert!(
        cfg.contains(&format!("systemConfig={}", gen2.trim())),
        "{cfg}"
    );
    let before = w.ssh_ok("rg1", "cat /proc/sys/kernel/random/boot_id");
    rg.power_cycle();
    wait_new_boot(&w, "rg1", before.trim(), Duration::from_secs(60));
    assert_eq!(w.ssh_ok("rg1", "readlink -f /run/booted-system"), gen2);

    // With grub-editenv on the host (NixOS puts it there for a GRUB with
    // devices): the same, through it; an unreachable system comes back.
    let bin = rg.root_dir().join("usr/local/sbin/grub-editenv");
    std::fs::copy("/usr/bin/grub-editenv", &bin).unwrap();
    let mut dead = host(&w, "rg1", 3, "rebootConfirmTimeout = 8;");
    dead.ssh_dead_at_boot = true;
    let reason = testworld::rollback_reason(&deploy_rebooting(&w, dead, &[]));
    assert!(reason.contains("not proven within 8s"), "{reason}");
    assert_eq!(w.ssh_ok("rg1", "readlink -f /run/booted-system"), gen2);
    assert_eq!(
        w.ssh_ok("rg1", "readlink -f /nix/var/nix/profiles/system"),
        gen2
    );
    assert_ne!(gen1, gen2);
}
