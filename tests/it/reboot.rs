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
    let boot = w.ssh_ok("rb6", "cat /proc/sys/kernel/random/boot_id");
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[host(&w, "rb6", 2, "")]);
    let out = w.pantheros(
        &flake,
        &["deploy", "rb6", "--reboot=if-needed", "--yes", "--json"],
    );
    assert_exit(&out, 0);
    let v = testworld::json(&out);
    assert_eq!(v["hosts"][0]["rebooted"], false, "{v}");
    // Switched live: the new system runs, in the same boot.
    let gen2 = w.ssh_ok("rb6", "readlink -f /nix/var/nix/profiles/system");
    assert_ne!(gen2, gen1);
    assert_eq!(w.ssh_ok("rb6", "readlink -f /run/current-system"), gen2);
    assert_eq!(w.ssh_ok("rb6", "cat /proc/sys/kernel/random/boot_id"), boot);
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

/// A new system that never answers and whose boot watchdog is broken too:
/// past rebootTimeout, a Hetzner server pantheros knows is reset through
/// the API (the fake's reset power-cycles the test world's machine), the
/// old default boots, and the deploy reports the rollback and how.
#[test]
fn a_hetzner_host_that_never_answers_is_reset_through_the_api() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    let gen1 = host_on_generation_1(&mut w, "rb7");
    let client_ns = w.client_ns.clone();
    let Some(fake) = testworld::hetzner::FakeHetzner::start_in(Some(&client_ns)) else {
        return;
    };
    let token = "valid-reboot-token";
    let created = fake.create_server(token, "rb7");
    assert!(created["server"]["id"].is_i64(), "{created}");
    fake.on_reset("rb7", &w.systemd_host("rb7").power_cycle_argv());

    let mut dead = host(
        &w,
        "rb7",
        2,
        r#"provider = "hetzner"; rebootTimeout = 10; rebootConfirmTimeout = 300;"#,
    );
    dead.ssh_dead_at_boot = true;
    dead.watchdog_broken = true;
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[dead]);
    let bin = testworld::pantheros_bin();
    let out = w
        .client(&[
            bin.to_str().unwrap(),
            "deploy",
            "rb7",
            "--reboot",
            "--yes",
            "--json",
        ])
        .current_dir(&flake)
        .env("PANTHEROS_LOG_DIR", w.path().join("logs"))
        .env("HCLOUD_TOKEN", token)
        .env("HCLOUD_ENDPOINT", fake.endpoint())
        .env("PANTHEROS_HCLOUD_POLL_MS", "20")
        .env_remove("PANTHEROS_FLAKE")
        .output()
        .unwrap();
    let reason = testworld::rollback_reason(&out);
    assert!(
        reason.contains("was reset through the Hetzner API and the old system came back"),
        "{reason}"
    );
    assert_eq!(
        fake.count(
            "POST",
            &format!("/v1/servers/{}/actions/reset", created["server"]["id"])
        ),
        1
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    assert!(!String::from_utf8_lossy(&out.stderr).contains(token));
    assert_eq!(w.ssh_ok("rb7", "readlink -f /run/booted-system"), gen1);
    assert_eq!(
        w.ssh_ok("rb7", "readlink -f /nix/var/nix/profiles/system"),
        gen1
    );
}

/// A fleet with `--reboot=if-needed --canary 1 -j 1`: only the host whose
/// plan needs a reboot (a new kernel) is rebooted, the canary first; every
/// host's outcome and summary line say whether it rebooted and into what.
#[test]
fn a_fleet_reboots_only_the_hosts_that_need_it_canary_first() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    w.add_rebootable_host("rb8a");
    w.add_rebootable_host("rb8b");
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[host(&w, "rb8a", 1, ""), host(&w, "rb8b", 1, "")]);
    assert_exit(
        &w.pantheros(&flake, &["deploy", "rb8a", "rb8b", "--yes"]),
        0,
    );
    // Booted into generation 1, whose kernel the plan compares with.
    for name in ["rb8a", "rb8b"] {
        let before = w.ssh_ok(name, "cat /proc/sys/kernel/random/boot_id");
        let _ = w.ssh(name, &["systemctl reboot"]);
        wait_new_boot(&w, name, before.trim(), Duration::from_secs(60));
    }
    let mut kernel = host(&w, "rb8a", 2, "");
    kernel.kernel = Some("6.12.9".into());
    write_fleet(&flake, &[kernel, host(&w, "rb8b", 2, "")]);
    let out = w.pantheros(
        &flake,
        &[
            "deploy",
            "rb8a",
            "rb8b",
            "--reboot=if-needed",
            "--canary",
            "1",
            "-j",
            "1",
            "--yes",
            "--json",
        ],
    );
    assert_exit(&out, 0);
    let v = testworld::json(&out);
    let by = |name: &str| {
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(by("rb8a")["rebooted"], true, "{v}");
    assert_eq!(by("rb8b")["rebooted"], false, "{v}");
    assert_eq!(by("rb8b")["reboot"], serde_json::Value::Null, "{v}");
    let stderr = testworld::stderr(&out);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("rb8a")
                && l.contains("ok (rebooted; booted nixos-system-rb8a-26.05.2)")),
        "{stderr}"
    );
    assert!(
        stderr.contains("will reboot into the new system (new kernel 6.12.9; "),
        "{stderr}"
    );
    // The canary's reboot was over before the other host was activated.
    let proven: u128 = w
        .ssh_ok("rb8a", "date +%s%N -r /var/lib/pantheros/trial-boots")
        .trim()
        .parse()
        .unwrap();
    let activated: u128 = w
        .ssh_ok("rb8b", "cat /run/pantheros-fixture/activation-started")
        .trim()
        .parse()
        .unwrap();
    assert!(
        proven < activated,
        "rb8b activated before the canary's reboot was proven"
    );
}

/// A changed switch inhibitor (NixOS 26.05: systemd) cannot be switched to
/// live; `--reboot=if-needed` boots it instead of refusing, and the
/// refusal without it names `--reboot` first.
#[test]
fn a_changed_switch_inhibitor_is_deployed_by_rebooting() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    host_on_generation_1(&mut w, "rb9");
    let mut inhibited = host(&w, "rb9", 2, "");
    inhibited.inhibitors = Some(vec![("systemd".into(), "systemd-259".into())]);
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[inhibited.clone()]);
    let out = w.pantheros(&flake, &["deploy", "rb9", "--yes", "--json"]);
    assert_exit(&out, 9);
    let err = testworld::json(&out)["hosts"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("pantheros deploy rb9 --reboot"), "{err}");
    let out = w.pantheros(
        &flake,
        &["deploy", "rb9", "--reboot=if-needed", "--yes", "--json"],
    );
    assert_exit(&out, 0);
    let v = testworld::json(&out);
    assert_eq!(v["hosts"][0]["rebooted"], true, "{v}");
    let gen2 = w.ssh_ok("rb9", "readlink -f /nix/var/nix/profiles/system");
    assert_eq!(w.ssh_ok("rb9", "readlink -f /run/booted-system"), gen2);
    assert_eq!(w.ssh_ok("rb9", "readlink -f /run/current-system"), gen2);
}

/// A host whose systemd never finishes starting (a unit that hangs at
/// boot): NixOS's activation program would wait for it before doing
/// anything, so the plan waits a bounded time, then stops with the cause
/// and the queued jobs, having changed nothing. Stopping that unit lets
/// the next deploy through.
#[test]
fn a_host_stuck_starting_is_named_as_the_cause_and_nothing_changes() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    host_on_generation_1(&mut w, "rb10");
    let flake = w.path().join("fleet");
    let mut hang = host(&w, "rb10", 2, "");
    hang.hang_boot = true;
    write_fleet(&flake, &[hang]);
    assert_exit(
        &w.pantheros(&flake, &["deploy", "rb10", "--yes", "--goal", "boot"]),
        0,
    );
    let before = w.ssh_ok("rb10", "cat /proc/sys/kernel/random/boot_id");
    let _ = w.ssh("rb10", &["systemctl reboot"]);
    wait_new_boot(&w, "rb10", before.trim(), Duration::from_secs(60));
    let gen2 = w.ssh_ok("rb10", "readlink -f /nix/var/nix/profiles/system");
    assert_eq!(
        w.ssh_ok("rb10", "systemctl is-system-running || true")
            .trim(),
        "starting"
    );

    write_fleet(&flake, &[host(&w, "rb10", 3, "activationTimeout = 3;")]);
    let out = w.pantheros(&flake, &["deploy", "rb10", "--yes", "--json"]);
    assert_exit(&out, 1);
    let err = testworld::json(&out)["hosts"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("the host's systemd is still starting after 3s")
            && err.contains("fixture-hang.service (start)")
            && err.contains("nothing was changed")
            && err.contains("systemctl list-jobs"),
        "{err}"
    );
    assert_eq!(
        w.ssh_ok("rb10", "readlink -f /nix/var/nix/profiles/system"),
        gen2
    );
    assert!(
        !w.ssh("rb10", &["test -d /var/lib/pantheros/lock"])
            .status
            .success(),
        "the deploy lock was left behind"
    );
    // With the hanging unit stopped, the host settles and the deploy goes on.
    w.ssh_ok("rb10", "systemctl stop fixture-hang.service");
    assert_exit(&w.pantheros(&flake, &["deploy", "rb10", "--yes"]), 0);
}

/// A new system without the boot watchdog (it does not import the
/// deployment module): the reboot goes on, with a warning that only a reset
/// would bring the old system back.
#[test]
fn a_system_without_the_boot_watchdog_is_rebooted_with_a_warning() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    host_on_generation_1(&mut w, "rb11");
    let mut bare = host(&w, "rb11", 2, "");
    bare.no_watchdog = true;
    let out = deploy_rebooting(&w, bare, &[]);
    assert_exit(&out, 0);
    let stderr = testworld::stderr(&out);
    assert!(
        stderr.contains("warning: the new system has no pantheros boot watchdog"),
        "{stderr}"
    );
    let gen2 = w.ssh_ok("rb11", "readlink -f /nix/var/nix/profiles/system");
    assert_eq!(w.ssh_ok("rb11", "readlink -f /run/booted-system"), gen2);
}
