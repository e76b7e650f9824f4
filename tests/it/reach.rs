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
    assert_exit(&out, 3);
    let v = json(&out);
    assert!(
        v["hosts"][0]["rollbackReason"]
            .as_str()
            .unwrap_or("")
            .contains("no confirmation"),
        "{}",
        stdout(&out)
    );
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
    let text = std::fs::read_to_string(&nix).unwrap().replace(
        "system.build.toplevel = ",
        "system.build.toplevel = throw \"the system was evaluated\"; unused = ",
    );
    std::fs::write(&nix, text).unwrap();
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
    let text = std::fs::read_to_string(&nix).unwrap().replace(
        "system.build.toplevel = ",
        "system.build.toplevel = throw \"the system was evaluated\"; unused = ",
    );
    std::fs::write(&nix, text).unwrap();
    let out = w.pantheros(
        &flake,
        &[
            "deploy",
            "alpha",
            "beta",
            "--yes",
            "--from-json",
            doc.to_str().unwrap(),
        ],
    );
    assert_exit(&out, 0);
    assert_eq!(w.generation_marker("alpha"), "3");
    assert_eq!(w.generation_marker("beta"), "3");
    // A host the document has no system for is named.
    std::fs::write(
        &doc,
        r#"{"hosts":[{"host":"alpha","toplevel":"/nix/store/x"}]}"#,
    )
    .unwrap();
    let out = w.pantheros(
        &flake,
        &[
            "deploy",
            "alpha",
            "beta",
            "--yes",
            "--from-json",
            doc.to_str().unwrap(),
        ],
    );
    assert_exit(&out, 2);
    testworld::assert_stderr_has(&out, &["no system for beta"]);
}
