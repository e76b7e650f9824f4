//! The Flashpods host's isolation, proven with packets: the rendered
//! firewall, rsyncd.conf and WireGuard configs loaded on light hosts
//! (server, laptop, internet) and a container namespace on the server's
//! container bridge, with Podman's own NAT table beside ours.
//!
//! Each "blocked" check is preceded by the same request succeeding before
//! the firewall is loaded, so a wrong rule makes the test fail.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use testworld::{World, render, stderr, stdout};

fn in_ns(ns: &str, argv: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn wait_port(w: &World, host: &str, addr: &str, port: &str) {
    let start = Instant::now();
    while !w
        .host(host)
        .exec(&["nc", "-z", addr, port])
        .status
        .success()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{addr}:{port} never opened on {host}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http_ok(out: &Output) -> bool {
    out.status.success() && stdout(out).trim() == "200"
}

const CURL: [&str; 7] = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m2"];

fn curl(url: &str) -> Vec<&str> {
    let mut v = CURL.to_vec();
    v.push(url);
    v
}

#[test]
fn wireguard_firewall_and_rsync_isolate_the_flashpods_host() {
    if !testworld::have_tools(&[
        "wireguard-go",
        "wg",
        "nft",
        "rsync",
        "curl",
        "busybox",
        "python3",
    ]) {
        return;
    }
    let Some(mut w) = World::new() else { return };
    w.add_host("server");
    w.add_host("laptop");
    w.add_host("internet");
    let mut t = Traffic {
        server_ip: w.host("server").ip.clone(),
        internet_ip: w.host("internet").ip.clone(),
        w,
        children: vec![],
        ctr: String::new(),
    };
    start_wireguard(&mut t);
    t.ctr = container_on_the_podman_bridge(&mut t.w);
    let uploads = start_services(&mut t);
    everything_reaches_the_api_before_the_firewall(&t);
    let fw_file = the_firewall_lets_only_the_laptop_in(&t, &uploads);
    a_reload_replaces_only_its_own_table(&t, &fw_file);
    a_wrong_laptop_address_locks_the_laptop_out(&t, &fw_file);
}

/// The test's world: the server, the laptop, "the internet", the
/// container's namespace, and the processes started (stopped on drop).
struct Traffic {
    w: World,
    server_ip: String,
    internet_ip: String,
    ctr: String,
    children: Vec<Child>,
}

impl Drop for Traffic {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const API_WG: &str = "http://10.0.0.1:8080/";

impl Traffic {
    fn api_public(&self) -> String {
        format!("http://{}:8080/", self.server_ip)
    }
}

/// WireGuard (wireguard-go, userspace) with rendered configs: the laptop
/// reaches the server through it.
fn start_wireguard(t: &mut Traffic) {
    let (w, server_ip) = (&t.w, &t.server_ip);
    let mut children: Vec<Child> = vec![];
    // --- WireGuard (wireguard-go, userspace) with rendered configs.
    let mut keys = std::collections::HashMap::new();
    for h in ["server", "laptop"] {
        keys.insert(h, testworld::wg_keypair());
    }
    let server_conf = render(&format!(
        "lib.wireguard {{ privateKey = \"{}\"; listenPort = net.listenPort; peers = [ {{ publicKey = \"{}\"; allowedIPs = [ \"${{net.peers.${{net.laptop}}.address}}/32\" ]; }} ]; }}",
        keys["server"].0, keys["laptop"].1
    ));
    let laptop_conf = render(&format!(
        "lib.wireguard {{ privateKey = \"{}\"; peers = [ {{ publicKey = \"{}\"; allowedIPs = [ \"10.0.0.0/24\" ]; endpoint = \"{server_ip}:${{toString net.listenPort}}\"; persistentKeepalive = 25; }} ]; }}",
        keys["laptop"].0, keys["server"].1
    ));
    for (h, conf, addr) in [
        ("server", &server_conf, "10.0.0.1/24"),
        ("laptop", &laptop_conf, "10.0.0.2/24"),
    ] {
        let log = std::fs::File::create(w.path().join(format!("wg-{h}.log"))).unwrap();
        children.push(
            w.host(h)
                .command(&["wireguard-go", "-f", "wg0"])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let start = Instant::now();
        while !w
            .host(h)
            .exec(&["test", "-S", "/run/wireguard/wg0.sock"])
            .status
            .success()
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "wireguard-go did not start on {h}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let f = w.path().join(format!("{h}.wg.conf"));
        std::fs::write(&f, conf).unwrap();
        w.host(h)
            .exec_ok(&["wg", "setconf", "wg0", f.to_str().unwrap()]);
        w.host(h)
            .exec_ok(&["ip", "addr", "add", addr, "dev", "wg0"]);
        w.host(h).exec_ok(&["ip", "link", "set", "wg0", "up"]);
    }
    let ping = w
        .host("laptop")
        .exec(&["busybox", "ping", "-c", "2", "-W", "2", "10.0.0.1"]);
    assert!(
        ping.status.success(),
        "laptop cannot ping the server over WireGuard: {}",
        stdout(&ping)
    );
    let shown = w.host("server").exec_ok(&["wg", "showconf", "wg0"]);
    assert!(
        shown.contains(&keys["laptop"].1) && shown.contains("ListenPort = 51820"),
        "{shown}"
    );
    t.children.extend(children);
}

/// The container: a namespace on the server's bridge podman0, and
/// Podman's own NAT table (what netavark creates) for its egress.
fn container_on_the_podman_bridge(w: &mut World) -> String {
    // --- The container: a namespace on the server's bridge podman0, and
    // Podman's own NAT table (what netavark creates) for its egress.
    let ctr = w.add_netns("ctr");
    let server_ns = w.host("server").netns.clone();
    testworld::sh(&[
        "ip", "-n", &server_ns, "link", "add", "podman0", "type", "bridge",
    ]);
    testworld::sh(&[
        "ip",
        "-n",
        &server_ns,
        "addr",
        "add",
        "10.88.0.1/16",
        "dev",
        "podman0",
    ]);
    testworld::sh(&["ip", "-n", &server_ns, "link", "set", "podman0", "up"]);
    testworld::sh(&[
        "ip", "-n", &server_ns, "link", "add", "veth-ctr", "type", "veth", "peer", "name", "eth0",
        "netns", &ctr,
    ]);
    testworld::sh(&[
        "ip", "-n", &server_ns, "link", "set", "veth-ctr", "master", "podman0",
    ]);
    testworld::sh(&["ip", "-n", &server_ns, "link", "set", "veth-ctr", "up"]);
    testworld::sh(&[
        "ip",
        "-n",
        &ctr,
        "addr",
        "add",
        "10.88.0.2/16",
        "dev",
        "eth0",
    ]);
    testworld::sh(&["ip", "-n", &ctr, "link", "set", "eth0", "up"]);
    testworld::sh(&[
        "ip",
        "-n",
        &ctr,
        "route",
        "add",
        "default",
        "via",
        "10.88.0.1",
    ]);
    w.host("server")
        .exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let netavark = w.path().join("netavark.nft");
    std::fs::write(
        &netavark,
        "table inet netavark {\n  chain nat-postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n    \
         ip saddr 10.88.0.0/16 oifname \"eth0\" masquerade\n  }\n}\n",
    )
    .unwrap();
    w.host("server")
        .exec_ok(&["nft", "-f", netavark.to_str().unwrap()]);

    ctr
}

/// The API (any address; only the firewall may stop it), the rsync
/// daemon from the rendered config, a web server "on the internet". The
/// upload directory.
fn start_services(t: &mut Traffic) -> std::path::PathBuf {
    let w = &t.w;
    let mut children: Vec<Child> = vec![];
    // --- Services: the API (any address; only the firewall may stop it),
    // the rsync daemon from the rendered config, a web server "on the internet".
    for (h, port) in [("server", "8080"), ("internet", "80")] {
        children.push(w.host(h).serve_http(port));
    }
    let uploads = w.path().join("uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    testworld::sh(&["chmod", "0777", uploads.to_str().unwrap()]);
    let rsyncd = render(&format!(
        "(lib.rsyncd {{ address = net.server.address; allow = [ net.peers.${{net.laptop}}.address ]; path = \"{}\"; \
         user = \"nobody\"; group = \"nogroup\"; pidFile = \"/run/rsyncd.pid\"; logFile = \"{}\"; }}).text",
        uploads.display(),
        w.path().join("rsyncd.log").display()
    ));
    let rsyncd_conf = w.path().join("rsyncd.conf");
    std::fs::write(&rsyncd_conf, rsyncd).unwrap();
    children.push(
        w.host("server")
            .command(&[
                "rsync",
                "--daemon",
                "--no-detach",
                &format!("--config={}", rsyncd_conf.display()),
            ])
            .spawn()
            .unwrap(),
    );
    wait_port(w, "server", "0.0.0.0", "8080");
    wait_port(w, "server", "10.0.0.1", "873");
    wait_port(w, "internet", "0.0.0.0", "80");

    t.children.extend(children);
    uploads
}

/// Before the firewall everything reaches the API (so the blocks after
/// it are the firewall's doing).
fn everything_reaches_the_api_before_the_firewall(t: &Traffic) {
    let (w, ctr) = (&t.w, &t.ctr);
    let (api_wg, api_public) = (API_WG, t.api_public());
    // --- Before the firewall: everything reaches the API (so the blocks
    // below are the firewall's doing).
    assert!(http_ok(&w.host("laptop").exec(&curl(api_wg))));
    assert!(
        http_ok(&w.host("laptop").exec(&curl(&api_public))),
        "laptop -> public API before the firewall"
    );
    assert!(
        http_ok(&in_ns(ctr, &curl(api_wg))),
        "container -> API before the firewall"
    );
    assert!(http_ok(&w.host("internet").exec(&curl(&api_public))));
}

/// The firewall, rendered from the example fleet's data: the laptop over
/// WireGuard gets in, nothing else; the container keeps its egress. The
/// ruleset's file.
fn the_firewall_lets_only_the_laptop_in(t: &Traffic, uploads: &Path) -> std::path::PathBuf {
    let (w, ctr, server_ip, internet_ip) = (&t.w, &t.ctr, &t.server_ip, &t.internet_ip);
    let (api_wg, api_public) = (API_WG, t.api_public());
    let payload = w.path().join("job.tar");
    std::fs::write(&payload, "job input").unwrap();
    // --- The firewall, rendered from the example fleet's data.
    let fw = render(
        "(lib.nftables { laptopAddresses = [ net.peers.${net.laptop}.address ]; inherit (net) containerNetworks; wireguardPort = net.listenPort; }).ruleset",
    );
    let fw_file = w.path().join("flashpods.nft");
    std::fs::write(&fw_file, fw).unwrap();
    w.host("server")
        .exec_ok(&["nft", "-f", fw_file.to_str().unwrap()]);

    // The laptop over WireGuard: API and rsync work.
    assert!(
        http_ok(&w.host("laptop").exec(&curl(api_wg))),
        "laptop -> API over WireGuard"
    );
    let out = w.host("laptop").exec(&[
        "rsync",
        payload.to_str().unwrap(),
        "rsync://10.0.0.1/uploads/",
    ]);
    assert!(
        out.status.success(),
        "laptop rsync upload: {}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(uploads.join("job.tar")).unwrap(),
        "job input"
    );
    // Not from the laptop's public address, not from the internet.
    assert!(
        !http_ok(&w.host("laptop").exec(&curl(&api_public))),
        "laptop -> public API must be blocked"
    );
    assert!(
        !http_ok(&w.host("internet").exec(&curl(&api_public))),
        "internet -> API must be blocked"
    );
    // The container: API and rsync refused by the firewall (a TCP reset,
    // not rsync's own `hosts allow`).
    let out = in_ns(ctr, &curl(api_wg));
    assert!(!http_ok(&out), "container -> API must be blocked");
    assert_eq!(
        out.status.code(),
        Some(7),
        "container -> API: expected a refused connection, got {:?}",
        out.status
    );
    let out = in_ns(
        ctr,
        &["rsync", "--contimeout=3", "rsync://10.0.0.1/uploads/"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Connection refused"),
        "container -> rsync: {}",
        stderr(&out)
    );
    let out = w.host("internet").exec(&[
        "rsync",
        "--contimeout=2",
        &format!("rsync://{server_ip}/uploads/"),
    ]);
    assert!(!out.status.success(), "internet -> rsync must fail");
    // The container still reaches the internet.
    assert!(
        http_ok(&in_ns(ctr, &curl(&format!("http://{internet_ip}/")))),
        "container egress to the internet"
    );
    // WireGuard itself is still open from anywhere.
    let ping = w
        .host("laptop")
        .exec(&["busybox", "ping", "-c", "1", "-W", "2", "10.0.0.1"]);
    assert!(ping.status.success());

    fw_file
}

/// A reload replaces our table only: Podman's NAT table stays.
fn a_reload_replaces_only_its_own_table(t: &Traffic, fw_file: &Path) {
    let (w, ctr, internet_ip, api_wg) = (&t.w, &t.ctr, &t.internet_ip, API_WG);
    // --- A reload replaces our table only: Podman's NAT table stays.
    w.host("server")
        .exec_ok(&["nft", "-f", fw_file.to_str().unwrap()]);
    let tables = w.host("server").exec_ok(&["nft", "list", "tables"]);
    assert!(tables.contains("table inet netavark"), "{tables}");
    assert_eq!(
        tables.matches("table inet flashpods").count(),
        1,
        "{tables}"
    );
    assert!(
        http_ok(&in_ns(ctr, &curl(&format!("http://{internet_ip}/")))),
        "egress after reload"
    );
    assert_eq!(
        in_ns(ctr, &curl(api_wg)).status.code(),
        Some(7),
        "API still blocked after reload"
    );
    assert!(
        http_ok(&w.host("laptop").exec(&curl(api_wg))),
        "laptop still allowed after reload"
    );
}

/// A rule for the wrong laptop address locks the laptop out: the checks
/// above depend on the accept rule.
fn a_wrong_laptop_address_locks_the_laptop_out(t: &Traffic, fw_file: &Path) {
    let (w, api_wg) = (&t.w, API_WG);
    // --- A rule for the wrong laptop address locks the laptop out: the
    // checks above depend on the accept rule.
    let wrong = render("(lib.nftables { laptopAddresses = [ \"10.0.0.3\" ]; }).ruleset");
    std::fs::write(fw_file, wrong).unwrap();
    w.host("server")
        .exec_ok(&["nft", "-f", fw_file.to_str().unwrap()]);
    assert!(
        !http_ok(&w.host("laptop").exec(&curl(api_wg))),
        "the laptop must be blocked when it is not listed"
    );
}
