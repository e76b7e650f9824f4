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
