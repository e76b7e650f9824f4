//! The Flashpods firewall with a real Podman container (podman 4.3 + runc +
//! netavark from Debian) on the server: the container cannot reach the API
//! or rsync on the host, still reaches the internet through netavark's NAT,
//! and reloading our rules leaves netavark's own tables alone.

use std::process::Output;

use testworld::{World, render, stderr, stdout};

#[test]
fn a_real_podman_container_is_kept_away_from_the_api_and_rsync() {
    if !testworld::have_tools(&["podman", "runc", "nft", "busybox", "python3"]) {
        return;
    }
    let Some(mut w) = World::new() else { return };
    w.add_host("server");
    w.add_host("internet");
    let internet_ip = w.host("internet").ip.clone();
    let server = w.host("server");
    server.mount_cgroups();
    server.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    // The WireGuard address the API and rsync live on (a stand-in wg0 link is enough
    // here: the laptop's side is covered by the WireGuard traffic test).
    server.exec_ok(&["ip", "link", "add", "wg0", "type", "bridge"]);
    server.exec_ok(&["ip", "addr", "add", "10.0.0.1/24", "dev", "wg0"]);
    server.exec_ok(&["ip", "link", "set", "wg0", "up"]);

    // Services: API and "rsync" ports answering on every address.
    let mut children = vec![];
    for (h, port) in [("server", "8080"), ("server", "873"), ("internet", "80")] {
        children.push(w.host(h).serve_http(port));
    }

    // A busybox image, imported offline, and one long-running job container.
    let pod = w.path().join("podman");
    let rootfs = pod.join("rootfs");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for a in ["sh", "nc", "sleep", "printf"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    let tar = pod.join("busybox.tar");
    testworld::sh(&[
        "tar",
        "-C",
        rootfs.to_str().unwrap(),
        "-cf",
        tar.to_str().unwrap(),
        ".",
    ]);
    // This machine cannot raise hard rlimits (no CAP_SYS_RESOURCE), and crun
    // refuses its hybrid cgroups: low ulimits and runc, as measured in
    // reference/test-world.md.
    let conf = pod.join("containers.conf");
    std::fs::write(&conf, "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n[engine]\nruntime = \"runc\"\n").unwrap();
    let root = pod.join("storage");
    let podman = |args: &[&str]| -> Output {
        let conf_env = format!("CONTAINERS_CONF={}", conf.display());
        let mut argv = vec![
            "env",
            conf_env.as_str(),
            "podman",
            "--root",
            root.to_str().unwrap(),
            "--runroot",
            "/run/containers/storage",
            "--tmpdir",
            "/run/libpod",
        ];
        argv.extend_from_slice(args);
        w.host("server").exec(&argv)
    };
    let out = podman(&[
        "import",
        "--change",
        "CMD [\"/bin/sh\"]",
        tar.to_str().unwrap(),
        "localhost/busybox:test",
    ]);
    assert!(out.status.success(), "podman import: {}", stderr(&out));
    let out = podman(&[
        "run",
        "-d",
        "--name",
        "job",
        "--pull=never",
        "--label",
        "flashpods-job-type=worker",
        "localhost/busybox:test",
        "sleep",
        "120",
    ]);
    assert!(out.status.success(), "podman run: {}", stderr(&out));
    // The container lives in its own namespaces: remove it even if an assertion fails.
    struct Remove<'a>(&'a dyn Fn(&[&str]) -> Output);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["rm", "-f", "-t", "0", "job"]);
        }
    }
    let _remove = Remove(&podman);
    let in_container = |argv: &[&str]| -> Output {
        let mut a = vec!["exec", "job"];
        a.extend_from_slice(argv);
        podman(&a)
    };
    // busybox's static wget crashes without NSS files; plain HTTP over nc is enough.
    let get = |ip: &str, port: &str| -> Output {
        in_container(&[
            "sh",
            "-c",
            &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port}"),
        ])
    };
    let ok = |o: &Output| stdout(o).starts_with("HTTP/1.0 200");

    // Before our rules: the container reaches everything (so what follows
    // is the firewall's doing), the internet through netavark's NAT.
    let base = get("10.0.0.1", "8080");
    assert!(
        ok(&base),
        "baseline: container -> API: {}{}",
        stdout(&base),
        stderr(&base)
    );
    assert!(
        ok(&get("10.0.0.1", "873")),
        "baseline: container -> rsync port"
    );
    let egress = get(&internet_ip, "80");
    assert!(
        ok(&egress),
        "container -> internet via netavark: {}",
        stderr(&egress)
    );
    let netavark_tables = w.host("server").exec_ok(&["nft", "list", "tables"]);
    assert!(
        netavark_tables.contains("table ip nat"),
        "netavark made no NAT table: {netavark_tables}"
    );

    // Our rules, rendered from the example fleet's data.
    let fw = render(
        "(lib.nftables { laptopAddresses = [ net.peers.${net.laptop}.address ]; inherit (net) containerNetworks; wireguardPort = net.listenPort; }).ruleset",
    );
    let fw_file = w.path().join("flashpods.nft");
    std::fs::write(&fw_file, fw).unwrap();
    for round in ["load", "reload"] {
        w.host("server")
            .exec_ok(&["nft", "-f", fw_file.to_str().unwrap()]);
        let api = get("10.0.0.1", "8080");
        assert!(!ok(&api), "{round}: container -> API must be blocked");
        assert!(
            stderr(&api).contains("refused"),
            "{round}: expected a refused connection: {}",
            stderr(&api)
        );
        let rsync = get("10.0.0.1", "873");
        assert!(
            !ok(&rsync) && stderr(&rsync).contains("refused"),
            "{round}: container -> rsync must be blocked"
        );
        let egress = get(&internet_ip, "80");
        assert!(
            ok(&egress),
            "{round}: container egress: {}",
            stderr(&egress)
        );
        let tables = w.host("server").exec_ok(&["nft", "list", "tables"]);
        assert!(
            tables.contains("table ip nat") && tables.contains("table ip filter"),
            "{round}: netavark's tables: {tables}"
        );
        assert_eq!(
            tables.matches("table inet flashpods").count(),
            1,
            "{tables}"
        );
    }
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}
