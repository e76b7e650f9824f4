//! The text our NixOS modules generate comes from pure functions in
//! modules/lib. Render each with plain `nix eval` for the example fleet's
//! data (hosts/flashpods-network.nix) and hand it to the real program.

use testworld::assert_stderr_has;
use testworld::{World, render, stderr, stdout};

fn have(tool: &str) -> bool {
    if testworld::which(tool).is_some() {
        return true;
    }
    testworld::cannot_run(&format!("{tool} is not installed (bash scripts/setup)"));
    false
}

const FIREWALL: &str = "(lib.nftables { laptopAddresses = [ net.peers.${net.laptop}.address ]; inherit (net) containerNetworks; wireguardPort = net.listenPort; }).ruleset";

#[test]
fn the_firewall_passes_nft_check() {
    if !have("nft") || !have("nix") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    for (name, expr) in [
        ("example", FIREWALL.to_string()),
        ("two-laptops", "(lib.nftables { laptopAddresses = [ \"10.0.0.2\" \"10.0.0.3\" ]; }).ruleset".to_string()),
        ("no-containers", "(lib.nftables { laptopAddresses = [ \"10.0.0.2\" ]; containerNetworks = [ ]; }).ruleset".to_string()),
    ] {
        let text = render(&expr);
        assert!(text.contains("table inet flashpods {"), "{text}");
        assert!(!text.contains("flush ruleset"), "the ruleset must not flush other tables:\n{text}");
        let f = d.path().join(format!("{name}.nft"));
        std::fs::write(&f, &text).unwrap();
        // -c in a throw-away network namespace: nothing is committed anywhere.
        let out = testworld::try_sh(&["unshare", "-n", "nft", "-c", "-f", f.to_str().unwrap()]);
        assert!(out.status.success(), "{name}: nft -c failed: {}\n{text}", stderr(&out));
    }
    // And a broken rendering is caught by the same check (the check can fail).
    let f = d.path().join("broken.nft");
    std::fs::write(&f, render(FIREWALL).replace("tcp dport", "tcp dprt")).unwrap();
    assert!(
        !testworld::try_sh(&["unshare", "-n", "nft", "-c", "-f", f.to_str().unwrap()])
            .status
            .success()
    );
}

#[test]
fn rsyncd_conf_loads_in_the_real_daemon_and_serves_the_uploads_module() {
    if !have("rsync") || !have("nix") {
        return;
    }
    let Some(mut w) = World::new() else { return };
    w.add_host("server");
    let dir = w.path().join("rsync");
    std::fs::create_dir_all(dir.join("uploads")).unwrap();
    let conf = render(&format!(
        "(lib.rsyncd {{ address = net.server.address; allow = [ net.peers.${{net.laptop}}.address ]; path = \"{}\"; \
         user = \"root\"; group = \"root\"; pidFile = \"/run/rsyncd.pid\"; logFile = \"{}\"; }}).text",
        dir.join("uploads").display(),
        dir.join("rsyncd.log").display()
    ));
    assert!(
        conf.contains("[uploads]")
            && conf.contains("hosts allow = 10.0.0.2")
            && conf.contains("address = 10.0.0.1"),
        "{conf}"
    );
    let cf = dir.join("rsyncd.conf");
    std::fs::write(&cf, &conf).unwrap();
    let server = w.host("server");
    // The WireGuard address, on lo here, so the daemon can bind it.
    server.exec_ok(&["ip", "addr", "add", "10.0.0.1/32", "dev", "lo"]);
    server.exec_ok(&["ip", "addr", "add", "10.0.0.2/32", "dev", "lo"]);
    let mut daemon = server
        .command(&[
            "rsync",
            "--daemon",
            "--no-detach",
            &format!("--config={}", cf.display()),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !server
        .exec(&["nc", "-z", "10.0.0.1", "873"])
        .status
        .success()
    {
        if let Ok(Some(st)) = daemon.try_wait() {
            panic!("rsync --daemon rejected the config ({st}):\n{conf}");
        }
        assert!(
            start.elapsed().as_secs() < 10,
            "rsync daemon did not listen on 10.0.0.1:873"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // From the allowed address the module is listed and writable.
    std::fs::write(w.path().join("job.txt"), "payload").unwrap();
    let src = w.path().join("job.txt");
    let out = server.exec(&[
        "rsync",
        "--address=10.0.0.2",
        src.to_str().unwrap(),
        "rsync://10.0.0.1/uploads/",
    ]);
    assert!(
        out.status.success(),
        "upload from the laptop address: {}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("uploads/job.txt")).unwrap(),
        "payload"
    );
    // From any other address it is refused by `hosts allow`.
    let out = server.exec(&["rsync", "--address=10.0.0.1", "rsync://10.0.0.1/uploads/"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_stderr_has(&out, &["access denied"]);
    let _ = daemon.kill();
    let _ = daemon.wait();
}

#[test]
fn sshd_accepts_the_hardening_settings() {
    if !have("nix") {
        return;
    }
    let Some(mut w) = World::new() else { return };
    w.add_host("server");
    let text = render("lib.sshd.text");
    assert!(
        text.contains("PasswordAuthentication no")
            && text.contains("PermitRootLogin prohibit-password"),
        "{text}"
    );
    let key = w.path().join("hostkey");
    testworld::keygen(&key, "test");
    let cfg = w.path().join("sshd_config");
    std::fs::write(&cfg, format!("{text}HostKey {}\n", key.display())).unwrap();
    let out = w
        .host("server")
        .exec(&["/usr/sbin/sshd", "-t", "-f", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "sshd -t: {}", stderr(&out));
    std::fs::write(
        &cfg,
        format!("{text}HostKey {}\nPermitRootLogin maybe\n", key.display()),
    )
    .unwrap();
    assert!(
        !w.host("server")
            .exec(&["/usr/sbin/sshd", "-t", "-f", cfg.to_str().unwrap()])
            .status
            .success()
    );
}

#[test]
fn spire_configs_parse_as_hcl_with_the_right_keys() {
    if !have("nix") {
        return;
    }
    let server: hcl::Body =
        hcl::from_str(&render("(lib.spire { }).serverHCL")).expect("server.conf parses");
    let v: serde_json::Value = hcl::from_body(server).unwrap();
    assert_eq!(v["server"]["trust_domain"], "flashpods.local");
    assert_eq!(v["server"]["bind_port"], 8081);
    assert_eq!(
        v["server"]["socket_path"],
        "/run/spire/server/private/api.sock"
    );
    assert_eq!(
        v["plugins"]["DataStore"]["sql"]["plugin_data"]["database_type"],
        "sqlite3"
    );
    assert!(
        v["plugins"]["NodeAttestor"]["join_token"].is_object(),
        "{v}"
    );
    assert_eq!(
        v["plugins"]["KeyManager"]["disk"]["plugin_data"]["keys_path"],
        "$STATE_DIRECTORY/keys.json"
    );

    let agent: hcl::Body =
        hcl::from_str(&render("(lib.spire { }).agentHCL")).expect("agent.conf parses");
    let v: serde_json::Value = hcl::from_body(agent).unwrap();
    assert_eq!(v["agent"]["trust_domain"], "flashpods.local");
    assert_eq!(v["agent"]["server_port"], 8081);
    assert_eq!(
        v["agent"]["join_token_file"],
        "$CREDENTIALS_DIRECTORY/join_token"
    );
    assert_eq!(
        v["plugins"]["WorkloadAttestor"]["docker"]["plugin_data"]["docker_socket_path"],
        "unix:///run/flashpods/podman.sock"
    );
    assert!(v["plugins"]["WorkloadAttestor"]["unix"].is_object());

    let entries = render("(lib.spire { }).entriesText");
    assert_eq!(
        entries,
        "spiffe://flashpods.local/worker spiffe://flashpods.local/host docker:label:flashpods-job-type:worker\n\
         spiffe://flashpods.local/agent spiffe://flashpods.local/host docker:label:flashpods-job-type:agent\n"
    );
}

/// The example WireGuard keys of the shipped network are recognisable as
/// examples (what the hosts' placeholders test), and a real key is not.
#[test]
fn example_keys_are_marked_as_examples() {
    if !have("nix") {
        return;
    }
    let out = render(
        "builtins.toJSON { examples = map net.isExample ([ net.server.publicKey ] ++ map (p: p.publicKey) (builtins.attrValues net.peers)); real = net.isExample \"xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\"; }",
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["examples"], serde_json::json!([true, true, true]), "{v}");
    assert_eq!(v["real"], false);
}
