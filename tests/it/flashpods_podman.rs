//! The Flashpods firewall with a real Podman container (podman 4.3 + runc +
//! netavark from Debian) on the server: the container cannot reach the API
//! or rsync on the host, still reaches the internet through netavark's NAT,
//! and reloading our rules leaves netavark's own tables alone.

use std::process::{Child, Output};

use testworld::{World, render, stderr, stdout};

/// A busybox rootfs as a tarball `podman import` takes (sh, nc, sleep, printf).
fn busybox_tar(w: &World) -> std::path::PathBuf {
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
    tar
}

/// busybox's static wget crashes without NSS files; plain HTTP over nc.
const GET: &str = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 \"$0\" \"$1\"";

fn answered(o: &Output) -> bool {
    stdout(o).starts_with("HTTP/1.0 200")
}

/// The server (its WireGuard address on a stand-in wg0 link: the laptop's
/// side is covered by the WireGuard traffic test; the API's and rsync's
/// ports answering on every address) and "the internet" with a web server.
/// The services stop when it is dropped.
struct PodLab {
    w: World,
    internet_ip: String,
    children: Vec<Child>,
}

impl Drop for PodLab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn pod_lab() -> Option<PodLab> {
    let mut w = World::new()?;
    w.add_host("server");
    w.add_host("internet");
    let internet_ip = w.host("internet").ip.clone();
    let server = w.host("server");
    server.mount_cgroups();
    server.exec_ok(&["ip", "link", "add", "wg0", "type", "bridge"]);
    server.exec_ok(&["ip", "addr", "add", "10.0.0.1/24", "dev", "wg0"]);
    server.exec_ok(&["ip", "link", "set", "wg0", "up"]);
    let mut children = vec![];
    for (h, port) in [("server", "8080"), ("server", "873"), ("internet", "80")] {
        children.push(w.host(h).serve_http(port));
    }
    Some(PodLab {
        w,
        internet_ip,
        children,
    })
}

/// Load the Flashpods table rendered from `expr` on the server.
fn load_table(w: &World, expr: &str) {
    let f = w.path().join("flashpods.nft");
    std::fs::write(&f, render(expr)).unwrap();
    w.host("server")
        .exec_ok(&["nft", "-f", f.to_str().unwrap()]);
}

/// An HTTP GET from inside the job container, as (address, port).
type Get<'a> = &'a dyn Fn(&str, &str) -> Output;

#[test]
fn a_real_podman_container_is_kept_away_from_the_api_and_rsync() {
    if !testworld::have_tools(&["podman", "runc", "nft", "busybox", "python3"]) {
        return;
    }
    let Some(lab) = pod_lab() else { return };
    let w = &lab.w;
    w.host("server")
        .exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);

    // A busybox image, imported offline, and one long-running job container.
    let pod = w.path().join("podman");
    let tar = busybox_tar(w);
    // This machine cannot raise hard rlimits (no CAP_SYS_RESOURCE), and crun
    // refuses its hybrid cgroups (reference/test-world.md).
    let conf = pod.join("containers.conf");
    std::fs::write(&conf, testworld::PODMAN_CONF).unwrap();
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
    let get = |ip: &str, port: &str| podman(&["exec", "job", "sh", "-c", GET, ip, port]);
    rootful_reaches_everything_before_the_rules(&lab, &get);
    our_rules_refuse_the_rootful_container_api_and_rsync(&lab, &get);
}

/// Before our rules: the container reaches everything (so what follows is
/// the firewall's doing), the internet through netavark's NAT.
fn rootful_reaches_everything_before_the_rules(lab: &PodLab, get: Get) {
    let base = get("10.0.0.1", "8080");
    assert!(
        answered(&base),
        "baseline: container -> API: {}{}",
        stdout(&base),
        stderr(&base)
    );
    assert!(
        answered(&get("10.0.0.1", "873")),
        "baseline: container -> rsync port"
    );
    let egress = get(&lab.internet_ip, "80");
    assert!(
        answered(&egress),
        "container -> internet via netavark: {}",
        stderr(&egress)
    );
    let netavark_tables = lab.w.host("server").exec_ok(&["nft", "list", "tables"]);
    assert!(
        netavark_tables.contains("table ip nat"),
        "netavark made no NAT table: {netavark_tables}"
    );
}

/// Our rules, rendered from the example fleet's data, loaded and reloaded:
/// API and rsync refused, egress kept, netavark's tables left alone.
fn our_rules_refuse_the_rootful_container_api_and_rsync(lab: &PodLab, get: Get) {
    for round in ["load", "reload"] {
        load_table(
            &lab.w,
            "(lib.nftables { laptopAddresses = [ net.peers.${net.laptop}.address ]; inherit (net) containerNetworks; wireguardPort = net.listenPort; }).ruleset",
        );
        let api = get("10.0.0.1", "8080");
        assert!(!answered(&api), "{round}: container -> API must be blocked");
        assert!(
            stderr(&api).contains("refused"),
            "{round}: expected a refused connection: {}",
            stderr(&api)
        );
        let rsync = get("10.0.0.1", "873");
        assert!(
            !answered(&rsync) && stderr(&rsync).contains("refused"),
            "{round}: container -> rsync must be blocked"
        );
        let egress = get(&lab.internet_ip, "80");
        assert!(
            answered(&egress),
            "{round}: container egress: {}",
            stderr(&egress)
        );
        let tables = lab.w.host("server").exec_ok(&["nft", "list", "tables"]);
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
}

/// The module's Podman is rootless: the flashpods user's containers reach
/// the network through slirp4netns, a process of that user on the host, so
/// their connections to the host's API and rsync come from the host itself
/// (over lo), never from 10.88.0.0/16. The rule for the container networks
/// does not see them; the output rule keyed on the user's uid refuses them.
#[test]
fn a_rootless_podman_container_is_refused_the_api_and_rsync_and_reaches_the_internet() {
    if !testworld::have_tools(&[
        "podman",
        "runc",
        "slirp4netns",
        "newuidmap",
        "nft",
        "busybox",
        "python3",
    ]) {
        return;
    }
    let Some(lab) = pod_lab() else { return };
    let server = lab.w.host("server");

    // The module's user and runtime directory (modules/flashpods).
    server.exec_ok(&["install", "-d", "-m", "0750", "/run/flashpods"]);
    let podman = server.rootless_podman("flashpods", 870, "/run/flashpods/podman-runtime");
    server.exec_ok(&["chown", "870:870", "/run/flashpods"]);
    let out = podman.import(&busybox_tar(&lab.w), "localhost/busybox:test");
    assert!(
        out.status.success(),
        "podman import (rootless): {}",
        stderr(&out)
    );
    let out = podman.podman(&[
        "run",
        "-d",
        "--name",
        "job",
        "--pull=never",
        "--label",
        "flashpods-job-type=worker",
        "localhost/busybox:test",
        "sleep",
        "300",
    ]);
    assert!(
        out.status.success(),
        "podman run (rootless): {}",
        stderr(&out)
    );
    let net = podman.podman(&["inspect", "job", "--format", "{{.HostConfig.NetworkMode}}"]);
    assert_eq!(
        stdout(&net).trim(),
        "slirp4netns",
        "the rootless default network"
    );
    let get = |ip: &str, port: &str| podman.podman(&["exec", "job", "sh", "-c", GET, ip, port]);

    // Before any rule: the container reaches the API, rsync and the internet.
    for (ip, port) in [
        ("10.0.0.1", "8080"),
        ("10.0.0.1", "873"),
        (lab.internet_ip.as_str(), "80"),
    ] {
        let o = get(ip, port);
        assert!(
            answered(&o),
            "baseline {ip}:{port}: {}{}",
            stdout(&o),
            stderr(&o)
        );
    }
    the_rootful_only_table_drops_the_rootless_helper(&lab, &get);
    the_module_table_refuses_the_helper_uid(&lab, &get);
    drop(podman);
}

/// The table as it was for rootful Podman only: the container-network rule
/// never matches; only the catch-all drop stops the helper, so the
/// container waits out its timeout instead of being refused.
fn the_rootful_only_table_drops_the_rootless_helper(lab: &PodLab, get: Get) {
    load_table(
        &lab.w,
        "(lib.nftables { laptopAddresses = [ net.peers.${net.laptop}.address ]; inherit (net) containerNetworks; }).ruleset",
    );
    let o = get("10.0.0.1", "8080");
    assert!(
        !answered(&o),
        "the catch-all drop must still stop the helper"
    );
    assert!(
        !stderr(&o).contains("refused"),
        "not refused without the uid rule: {}",
        stderr(&o)
    );
    let rule =
        lab.w
            .host("server")
            .exec_ok(&["nft", "list", "chain", "inet", "flashpods", "input"]);
    let line = |needle: &str| {
        rule.lines()
            .find(|l| l.contains(needle))
            .unwrap_or("")
            .to_string()
    };
    assert!(
        line("10.88.0.0/16").contains("counter packets 0 bytes 0 reject"),
        "the container-network rule must not have matched:\n{rule}"
    );
    assert!(
        !line("nobody else").contains("counter packets 0 "),
        "the catch-all drop stopped it:\n{rule}"
    );
}

/// The module's table: the helper's uid is refused on the way out, for the
/// host's own addresses only; the internet stays reachable.
fn the_module_table_refuses_the_helper_uid(lab: &PodLab, get: Get) {
    let internet_ip = &lab.internet_ip;
    for round in ["load", "reload"] {
        load_table(
            &lab.w,
            "(lib.nftables { laptopAddresses = [ net.peers.${net.laptop}.address ]; inherit (net) containerNetworks; containerUsers = [ 870 ]; }).ruleset",
        );
        for port in ["8080", "873"] {
            let o = get("10.0.0.1", port);
            assert!(
                !answered(&o),
                "{round}: container -> 10.0.0.1:{port} must be blocked"
            );
            assert!(
                stderr(&o).contains("refused"),
                "{round}: refused expected: {}",
                stderr(&o)
            );
        }
        let o = get(internet_ip, "80");
        assert!(
            answered(&o),
            "{round}: container -> internet: {}",
            stderr(&o)
        );
        // The server's own root processes are untouched by the uid rule.
        let root = lab
            .w
            .host("server")
            .exec(&["sh", "-c", GET, internet_ip, "80"]);
        assert!(answered(&root), "{round}: root on the server -> internet");
    }
    let out =
        lab.w
            .host("server")
            .exec_ok(&["nft", "list", "chain", "inet", "flashpods", "output"]);
    assert!(
        out.contains("meta skuid 870") && !out.contains("counter packets 0 "),
        "the uid rule did the refusing:\n{out}"
    );
}
