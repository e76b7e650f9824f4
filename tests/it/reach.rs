//! Hosts users reach in other ways: a target behind a bastion (a jump
//! host that is its only route for SSH).

use testworld::{World, assert_exit, json, stdout, write_fleet};

#[test]
fn a_host_behind_a_bastion_is_deployed_and_rolled_back_through_it() {
    let Some(mut w) = World::new() else { return };
    w.add_host("bastion");
    w.add_host("inner");
    let bastion_ip = w.host("bastion").ip.clone();
    // The target lets SSH in from the bastion only.
    let fence = w.path().join("fence.nft");
    std::fs::write(
        &fence,
        format!(
            "table inet fence {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n  \
             tcp dport 22 ip saddr != {bastion_ip} drop\n }}\n}}\n"
        ),
    )
    .unwrap();
    w.host("inner")
        .exec_ok(&["nft", "-f", fence.to_str().unwrap()]);
    let direct = w.client_exec(&["ssh", "-F", w.ssh_config.to_str().unwrap(), "inner", "true"]);
    assert!(
        !direct.status.success(),
        "the fence must stop a direct connection"
    );

    let flake = w.path().join("fleet");
    let through = |g: u32, block: bool| {
        let mut h = w.fixture_host("inner", g, "");
        h.deployment = format!(
            "targetHost = \"inner\"; sshOptions = [ \"-F\" \"{}\" \"-o\" \"ProxyJump=bastion\" ]; confirmTimeout = 6;",
            w.ssh_config.display()
        );
        h.block_ssh = block;
        h
    };
    write_fleet(&flake, &[through(1, false)]);
    let out = w.pantheros(&flake, &["deploy", "inner", "--yes"]);
    assert_exit(&out, 0);
    assert_eq!(w.generation_marker("inner"), "1");

    // A generation that refuses new SSH connections: the proof over a fresh
    // connection (through the bastion too) fails, and the host goes back.
    write_fleet(&flake, &[through(2, true)]);
    let out = w.pantheros(&flake, &["deploy", "inner", "--yes", "--json"]);
    let reason = testworld::rollback_reason(&out);
    assert!(reason.contains("no confirmation"), "{reason}");
    assert_eq!(w.generation_marker("inner"), "1");

    // Every connection the target accepted came from the bastion: nothing
    // (not nix copy, not the fresh-connection proof) went around it.
    let log = std::fs::read_to_string(w.host("inner").dir.join("sshd.log")).unwrap_or_default();
    let accepted: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Accepted publickey"))
        .collect();
    assert!(!accepted.is_empty(), "{log}");
    for l in &accepted {
        assert!(
            l.contains(&format!("from {bastion_ip} ")),
            "a connection around the bastion: {l}"
        );
    }
}

/// Make every host's system throw when evaluated (its deployment metadata
/// still evaluates).
fn break_system_evaluation(flake_nix: &std::path::Path) {
    let text = std::fs::read_to_string(flake_nix).unwrap().replace(
        "system.build.toplevel = ",
        "system.build.toplevel = throw \"the system was evaluated\"; unused = ",
    );
    std::fs::write(flake_nix, text).unwrap();
}

/// `deploy --store-path`: a system CI built is deployed as it is; the
/// host's own system is never evaluated (here it would throw).
#[test]
fn a_system_built_elsewhere_is_deployed_without_evaluating_it() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    w.add_host("beta");
    let flake = w.path().join("fleet");
    let fleet = |g: u32| {
        write_fleet(
            &flake,
            &[
                w.fixture_host("alpha", g, ""),
                w.fixture_host("beta", 1, ""),
            ],
        )
    };
    fleet(1);
    assert_exit(&w.pantheros(&flake, &["deploy", "alpha", "--yes"]), 0);
    // "CI" builds generation 2; then the configuration stops evaluating.
    fleet(2);
    let built = testworld::build_toplevel(&flake, "alpha");
    let nix = flake.join("flake.nix");
    break_system_evaluation(&nix);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes"]);
    assert_exit(&out, 14);
    testworld::assert_stderr_has(&out, &["the system was evaluated"]);

    let out = w.pantheros(
        &flake,
        &["deploy", "alpha", "--yes", "--json", "--store-path", &built],
    );
    assert_exit(&out, 0);
    let v = json(&out);
    assert_eq!(v["hosts"][0]["systemAfter"], built.as_str(), "{v:#}");
    assert_eq!(w.generation_marker("alpha"), "2");

    // Not a NixOS system: refused before anything changes.
    let kernel = std::fs::read_link(std::path::Path::new(&built).join("kernel")).unwrap();
    let not_a_system = kernel.parent().unwrap().to_str().unwrap().to_string();
    let out = w.pantheros(
        &flake,
        &["deploy", "alpha", "--yes", "--store-path", &not_a_system],
    );
    assert_exit(&out, 1);
    testworld::assert_stderr_has(&out, &["is not a NixOS system"]);
    assert_eq!(w.generation_marker("alpha"), "2");

    // A system for another platform than the host's nixpkgs.hostPlatform
    // (read in the one evaluation, without the system): refused.
    let text = std::fs::read_to_string(&nix).unwrap().replacen(
        "pantheros.deployment = {",
        "nixpkgs.hostPlatform.system = \"aarch64-linux\"; pantheros.deployment = {",
        1,
    );
    std::fs::write(&nix, text).unwrap();
    let out = w.pantheros(
        &flake,
        &["deploy", "alpha", "--yes", "--store-path", &built],
    );
    assert_exit(&out, 1);
    testworld::assert_stderr_has(
        &out,
        &["is a system for x86_64-linux, but the host is aarch64-linux"],
    );
    assert_eq!(w.generation_marker("alpha"), "2");

    // One path is one host's system.
    let out = w.pantheros(
        &flake,
        &["deploy", "alpha", "beta", "--yes", "--store-path", &built],
    );
    assert_exit(&out, 2);

    // --from-json: what `build-all --json` built, each host its own system.
    write_fleet(
        &flake,
        &[
            w.fixture_host("alpha", 3, ""),
            w.fixture_host("beta", 3, ""),
        ],
    );
    let out = w.pantheros(&flake, &["build-all", "alpha", "beta", "--json"]);
    assert_exit(&out, 0);
    let doc = w.path().join("built.json");
    std::fs::write(&doc, &out.stdout).unwrap();
    let from_doc = || {
        w.pantheros(
            &flake,
            &[
                "deploy",
                "alpha",
                "beta",
                "--yes",
                "--from-json",
                doc.to_str().unwrap(),
            ],
        )
    };
    break_system_evaluation(&nix);
    let out = from_doc();
    assert_exit(&out, 0);
    assert_eq!(w.generation_marker("alpha"), "3");
    assert_eq!(w.generation_marker("beta"), "3");
    // A host the document has no system for is named.
    std::fs::write(
        &doc,
        r#"{"hosts":[{"host":"alpha","toplevel":"/nix/store/x"}]}"#,
    )
    .unwrap();
    let out = from_doc();
    assert_exit(&out, 2);
    testworld::assert_stderr_has(&out, &["no system for beta"]);
}

/// A sudo that asks for a password: given by a command, handed to sudo on
/// stdin for every privileged step, never in the process table, a log or
/// the host's journal; a wrong one stops the run before anything changes.
#[test]
fn a_sudo_that_asks_for_a_password_gets_it_on_stdin_and_nowhere_else() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    w.add_systemd_host("pw1");
    let flake = w.path().join("fleet");
    let fixture = |g: u32, block: bool| {
        let mut h = w.fixture_host("pw1", g, "targetUser = \"nopw\"; confirmTimeout = 8;");
        h.block_ssh = block;
        h
    };
    let secret = testworld::NOPW_PASSWORD;
    let pw_file = w.path().join("sudo-password");
    std::fs::write(&pw_file, format!("{secret}\n")).unwrap();
    let pw_cmd = format!("cat {}", pw_file.display());
    let with_pw = |args: &[&str]| {
        let mut argv = args.to_vec();
        argv.extend(["--sudo-password-command", pw_cmd.as_str()]);
        w.pantheros(&flake, &argv)
    };

    // Without a password: refused as before, naming the options.
    write_fleet(&flake, &[fixture(1, false)]);
    let out = w.pantheros(&flake, &["deploy", "pw1", "--yes"]);
    assert_exit(&out, 1);
    testworld::assert_stderr_has(&out, &["needs a password"]);

    // With it: deployed, while the process table is sampled for it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = vec![];
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let ps = stdout(&testworld::try_sh(&["ps", "-eo", "args"]));
                seen.extend(ps.lines().filter(|l| l.contains(secret)).map(String::from));
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            seen
        })
    };
    let out = with_pw(&["deploy", "pw1", "--yes", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(
        w.ssh_ok("pw1", "cat /run/pantheros-fixture/generation")
            .trim(),
        "1"
    );
    // A magic rollback through the same sudo (watchdog and all).
    write_fleet(&flake, &[fixture(2, true)]);
    let rb = with_pw(&["deploy", "pw1", "--yes", "--json"]);
    assert_exit(&rb, 3);
    assert_eq!(
        w.ssh_ok("pw1", "cat /run/pantheros-fixture/generation")
            .trim(),
        "1"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = seen.join().unwrap();
    assert!(
        seen.is_empty(),
        "the password was in the process table: {seen:?}"
    );
    for o in [&out, &rb] {
        assert!(!stdout(o).contains(secret) && !testworld::stderr(o).contains(secret));
    }
    the_password_is_in_no_log_or_journal(&w, &flake, secret);
    list_exec_and_status_use_it_too(&w, &flake, &pw_cmd);

    // A wrong password: one clear error before anything changes.
    std::fs::write(&pw_file, "not-the-password\n").unwrap();
    write_fleet(&flake, &[fixture(3, false)]);
    let out = with_pw(&["deploy", "pw1", "--yes"]);
    assert_exit(&out, 1);
    testworld::assert_stderr_has(&out, &["refused the password", "nothing was changed"]);
    assert!(!testworld::stderr(&out).contains("not-the-password"));
    assert_eq!(
        w.ssh_ok("pw1", "cat /run/pantheros-fixture/generation")
            .trim(),
        "1"
    );
}

/// Nothing pantheros wrote, here or on the host, holds the password: the
/// flake, the run's logs, the host's journal (which must hold sudo's own
/// records of the run, so it was really read) and its state directory.
fn the_password_is_in_no_log_or_journal(w: &World, flake: &std::path::Path, secret: &str) {
    let logs = stdout(&testworld::try_sh(&[
        "grep",
        "-rl",
        secret,
        flake.to_str().unwrap(),
        w.path().join("logs").to_str().unwrap(),
    ]));
    assert!(logs.trim().is_empty(), "the password is in {logs}");
    // The search must have had logs to read (the run's host logs).
    let searched = stdout(&testworld::try_sh(&[
        "find",
        flake.to_str().unwrap(),
        w.path().join("logs").to_str().unwrap(),
        "-name",
        "*pw1*.log",
    ]));
    assert!(
        !searched.trim().is_empty(),
        "no host log was written where it was searched"
    );
    // The host's journal: it holds sudo's own records of this run (so it
    // was really read), and never the password.
    let journal = w.ssh_ok("pw1", "journalctl --no-pager -o cat 2>/dev/null");
    assert!(
        journal.contains("nopw : "),
        "sudo's records are not in the journal read:\n{journal}"
    );
    assert!(
        !journal.contains(secret),
        "the password reached the host's journal"
    );
    let runs = w.ssh_ok(
        "pw1",
        "grep -rl nopw-sudo-secret /var/lib/pantheros 2>/dev/null || true",
    );
    assert!(
        runs.trim().is_empty(),
        "the password is on the host in {runs}"
    );
}

/// rollback --list, exec --sudo and status reach the host through the same
/// sudo and the same password.
fn list_exec_and_status_use_it_too(w: &World, flake: &std::path::Path, pw_cmd: &str) {
    let with_pw = |args: &[&str]| {
        let mut argv = args.to_vec();
        argv.extend(["--sudo-password-command", pw_cmd]);
        w.pantheros(flake, &argv)
    };
    // rollback --list reads the generations through the same sudo.
    let out = with_pw(&["rollback", "pw1", "--list", "--json"]);
    assert_exit(&out, 0);
    assert!(!json(&out)["generations"].as_array().unwrap().is_empty());

    // exec --sudo runs as root through the same sudo.
    let out = w.pantheros(
        flake,
        &[
            "exec",
            "pw1",
            "--sudo",
            "--json",
            "--sudo-password-command",
            pw_cmd,
            "--",
            "id",
            "-u",
        ],
    );
    assert_exit(&out, 0);
    assert_eq!(json(&out)["hosts"][0]["stdout"], "0\n");

    // status asks the host through the same sudo.
    let out = with_pw(&["status", "pw1", "--json"]);
    assert_exit(&out, 0);
    assert_ne!(
        json(&out)["hosts"][0]["state"],
        "unreachable",
        "{}",
        stdout(&out)
    );
}

/// An IPv6-only target (no IPv4 address at all), named by its literal:
/// the master connection, `nix copy`, the switch, the proof over a fresh
/// connection and its magic rollback, `rollback`, and `status`.
#[test]
fn an_ipv6_only_host_is_deployed_and_rolled_back_by_its_literal() {
    let Some(mut w) = World::new() else { return };
    w.add_host("six");
    let v6 = w.make_ipv6_only("six");
    let v4 = w
        .host("six")
        .exec_ok(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(v4.trim().is_empty(), "the host still has IPv4: {v4}");
    let flake = w.path().join("fleet");
    let fixture = |g: u32, block: bool| {
        let mut h = w.fixture_host("six", g, "");
        h.deployment = format!(
            "targetHost = \"{v6}\"; sshOptions = [ \"-F\" \"{}\" ]; confirmTimeout = 6;",
            w.ssh_config.display()
        );
        h.block_ssh = block;
        h
    };
    write_fleet(&flake, &[fixture(1, false)]);
    let out = w.pantheros(&flake, &["deploy", "six", "--yes", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(
        json(&out)["hosts"][0]["target"],
        format!("root@{v6}").as_str()
    );
    assert_eq!(w.generation_marker("six"), "1");

    write_fleet(&flake, &[fixture(2, true)]);
    let out = w.pantheros(&flake, &["deploy", "six", "--yes", "--json"]);
    let reason = testworld::rollback_reason(&out);
    assert!(reason.contains("no confirmation"), "{reason}");
    assert_eq!(w.generation_marker("six"), "1");

    write_fleet(&flake, &[fixture(3, false)]);
    assert_exit(&w.pantheros(&flake, &["deploy", "six", "--yes"]), 0);
    assert_eq!(w.generation_marker("six"), "3");
    // (The previous generation is the SSH-cutting one: go to the first.)
    assert_exit(
        &w.pantheros(&flake, &["rollback", "six", "--to", "1", "--yes"]),
        0,
    );
    assert_eq!(w.generation_marker("six"), "1");
    let out = w.pantheros(&flake, &["status", "six", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(
        json(&out)["hosts"][0]["state"],
        "flake-ahead",
        "{}",
        stdout(&out)
    );
}

/// `--build-host`: the system is built on another machine (its own store)
/// and copied from there to the target; this machine's store never holds it.
#[test]
fn a_build_host_builds_and_the_closure_goes_from_it_to_the_target() {
    let Some(mut w) = World::new() else { return };
    w.add_host("builder");
    w.add_host("alpha");
    let flake = w.path().join("fleet");
    // A generation only this test builds (its marker text is unique).
    let mut h = w.fixture_host("alpha", 7, "");
    h.motd = Some(format!(
        "\"built on the build host {}\"",
        std::process::id()
    ));
    write_fleet(&flake, &[h]);
    let out = w.pantheros(
        &flake,
        &[
            "deploy",
            "alpha",
            "--yes",
            "--json",
            "--build-host",
            "builder",
        ],
    );
    assert_exit(&out, 0);
    let top = json(&out)["hosts"][0]["systemAfter"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(w.generation_marker("alpha"), "7");
    // On the builder and the target; not here.
    for host in ["builder", "alpha"] {
        let ok = w.host(host).exec(&["nix-store", "--check-validity", &top]);
        assert!(ok.status.success(), "{host} lacks {top}");
    }
    let here = testworld::try_sh(&["nix-store", "--check-validity", &top]);
    assert!(!here.status.success(), "this machine's store holds {top}");

    // The same from the host's own `buildHost`, without the flag.
    let mut h = w.fixture_host("alpha", 8, "buildHost = \"builder\";");
    h.motd = Some(format!("\"built by buildHost {}\"", std::process::id()));
    write_fleet(&flake, &[h]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes", "--json"]);
    assert_exit(&out, 0);
    let top = json(&out)["hosts"][0]["systemAfter"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(w.generation_marker("alpha"), "8");
    assert!(
        w.host("builder")
            .exec(&["nix-store", "--check-validity", &top])
            .status
            .success()
    );
    assert!(
        !testworld::try_sh(&["nix-store", "--check-validity", &top])
            .status
            .success()
    );
}

/// run0 (systemd 256 and newer: Debian 13) asks polkit, not its caller, for
/// a password: with one given, pantheros refuses clearly, naming why,
/// before anything changes.
#[test]
fn run0_that_asks_for_a_password_is_refused_with_the_reason() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    if !w.prepare_systemd_release("trixie") {
        return;
    }
    w.add_systemd_host_on("r0", "trixie");
    let probe = w.ssh_ok("r0", "command -v run0 || echo none");
    assert!(probe.contains("run0"), "Debian 13 has run0: {probe}");
    let flake = w.path().join("fleet");
    write_fleet(
        &flake,
        &[w.fixture_host(
            "r0",
            1,
            "targetUser = \"nopw\"; privilegeEscalationCommand = [ \"run0\" ];",
        )],
    );
    let pw_file = w.path().join("pw");
    std::fs::write(&pw_file, format!("{}\n", testworld::NOPW_PASSWORD)).unwrap();
    let out = w.pantheros(
        &flake,
        &[
            "deploy",
            "r0",
            "--yes",
            "--sudo-password-command",
            &format!("cat {}", pw_file.display()),
        ],
    );
    assert_exit(&out, 1);
    // Real run0 (systemd 257) says "Access denied" when polkit would ask.
    testworld::assert_stderr_has(
        &out,
        &[
            "run0 failed on r0",
            "Access denied",
            "polkit",
            "nothing was changed",
        ],
    );
}
