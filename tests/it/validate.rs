//! `pantheros validate` against a Flashpods host made of real parts: a
//! light host "server" with userspace WireGuard (wireguard-go), the
//! rendered nftables table and rsyncd.conf, a stand-in API on the WireGuard
//! address, rootful Podman behind the flashpods socket path with netavark's
//! NAT, and an "internet" host. The laptop is the client namespace, where
//! pantheros runs, with its own WireGuard interface.
//!
//! The host's configuration is a flake evaluating the real
//! `modules/flashpods` (and the deployment module) through the stand-in
//! nixpkgs of the evaluation tiers. SPIRE itself cannot be built or
//! installed here: the SPIRE rows run against stand-in `spire-server` and
//! `spire-agent` CLIs (tests/fixtures/spire); the stand-in agent attests
//! the calling container the way the docker attestor does (its pid's
//! cgroup, the container's labels from Podman's socket), and its client
//! runs inside the labelled container. The token exchange runs against a
//! stand-in token service that reads the stand-in JWT-SVIDs.
//!
//! First every row passes; then each property is broken on purpose and
//! exactly its row fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;
use testworld::{LightHost, World, render, stderr, stdout};

const IMAGE: &str = "localhost/flashpods-validate:test";
const PODMAN_SOCKET: &str = "/run/flashpods/podman.sock";
const AGENT_SOCKET: &str = "/run/spire/agent/public/api.sock";

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The test flake: the real modules, evaluated through the stand-in nixpkgs.
fn write_flake(dir: &Path, stub: &Path, w: &World, laptop_key: &str, spire: &Path) {
    testworld::copy_dir(
        &testworld::project_root().join("modules"),
        &dir.join("modules"),
    );
    fs::write(
        dir.join("flake.nix"),
        format!(
            r#"{{
  inputs.nixpkgs.url = "path:{stub}";
  outputs = {{ self, nixpkgs }}: {{
    nixosConfigurations.server = nixpkgs.lib.nixosSystem {{
      modules = [
        ./modules/deployment.nix
        ./modules/flashpods
        {{
          nixpkgs.hostPlatform = "x86_64-linux";
          pantheros.deployment = {{ {deployment} }};
          services.flashpods = {{
            enable = true;
            wireguard.laptops.laptop = {{ address = "10.0.0.2"; publicKey = "{laptop_key}"; }};
            # The stand-in SPIRE CLIs, as a package whose output is their directory.
            spire.package = {{ type = "derivation"; name = "spire-standin"; outPath = "{spire}"; }};
            # Set, so the token exchange runs (the test starts the stand-in service).
            tokenService.package = {{ type = "derivation"; name = "token-standin"; outPath = "{spire}"; }};
            # Set, so the API rows run (the test starts the stand-in API).
            api.package = {{ type = "derivation"; name = "api-standin"; outPath = "{spire}"; }};
          }};
        }}
      ];
    }};
  }};
}}
"#,
            stub = stub.display(),
            deployment = w.deployment_for("server", ""),
            spire = spire.display(),
        ),
    )
    .unwrap();
}

/// A container image: busybox (sh, nc) and just enough of this machine's
/// python3 for the stand-in spire-agent client, which sits at the same path
/// as on the host.
fn image_tar(w: &World, spire: &Path) -> std::path::PathBuf {
    let rootfs = w.path().join("image");
    for d in ["bin", "usr/bin", "etc", "tmp", "proc", "sys", "dev"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let copy = |from: &Path| {
        let to = rootfs.join(from.strip_prefix("/").unwrap());
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    };
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for a in ["sh", "nc", "sleep", "cat", "env"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    std::os::unix::fs::symlink("/bin/busybox", rootfs.join("usr/bin/env")).unwrap();
    // python3, its libraries and the modules the client imports.
    let Ok(python) = fs::canonicalize("/usr/bin/python3") else {
        panic!("the image needs /usr/bin/python3 (Debian's python3)");
    };
    fs::copy(&python, rootfs.join("usr/bin/python3")).unwrap();
    let ldd = stdout(&testworld::sh(&["ldd", python.to_str().unwrap()]));
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        copy(Path::new(lib));
    }
    // The same interpreter lists them (not another python3 on PATH).
    let modules = stdout(&testworld::sh(&[
        python.to_str().unwrap(),
        "-c",
        "import base64, json, os, re, socket, struct, subprocess, sys\n\
         print('\\n'.join(sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None)})))",
    ]));
    for m in modules.lines() {
        copy(Path::new(m));
    }
    copy(&spire.join("bin/spire-agent"));
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    let tar = w.path().join("image.tar");
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

struct Lab {
    w: World,
    flake: PathBuf,
    internet_ip: String,
    server_ip: String,
    server_keys: (String, String),
    laptop_keys: (String, String),
    spire: PathBuf,
    stub: PathBuf,
    /// Long-running parts by name, so a break can restart one.
    parts: Vec<(String, Child)>,
}

impl Lab {
    fn server(&self) -> &LightHost {
        self.w.host("server")
    }

    fn start(&mut self, name: &str, cmd: Command) {
        let mut cmd = cmd;
        let log = fs::File::create(self.w.path().join(format!("{name}.log"))).unwrap();
        let child = cmd
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.parts.push((name.to_string(), child));
    }

    fn stop(&mut self, name: &str) {
        if let Some(i) = self.parts.iter().position(|(n, _)| n == name) {
            let (_, mut c) = self.parts.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn api(&mut self, address: &str) {
        self.stop("api");
        let bin = testworld::project_root().join("tests/fixtures/flashpods-api");
        let cmd = self
            .server()
            .command(&[bin.to_str().unwrap(), address, "8080"]);
        self.start("api", cmd);
        let start = Instant::now();
        while !self.listening("8080") {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the API never listened: {}",
                fs::read_to_string(self.w.path().join("api.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether something listens on TCP `port` on the server.
    fn listening(&self, port: &str) -> bool {
        !self
            .server()
            .exec_ok(&["ss", "-Hltn", &format!("sport = :{port}")])
            .trim()
            .is_empty()
    }

    fn rsyncd(&mut self, allow: &str) {
        self.stop("rsyncd");
        let uploads = self.w.path().join("uploads");
        fs::create_dir_all(&uploads).unwrap();
        testworld::sh(&["chmod", "0777", uploads.to_str().unwrap()]);
        let text = render(&format!(
            "(lib.rsyncd {{ address = \"10.0.0.1\"; allow = [ {allow} ]; path = \"{}\"; user = \"nobody\"; \
             group = \"nogroup\"; pidFile = \"/run/rsyncd.pid\"; logFile = \"{}\"; }}).text",
            uploads.display(),
            self.w.path().join("rsyncd-daemon.log").display()
        ));
        let conf = self.w.path().join("rsyncd.conf");
        fs::write(&conf, text).unwrap();
        // A killed daemon leaves its pid file, which stops the next one.
        let _ = self.server().exec(&["rm", "-f", "/run/rsyncd.pid"]);
        let cmd = self.server().command(&[
            "rsync",
            "--daemon",
            "--no-detach",
            &format!("--config={}", conf.display()),
        ]);
        self.start("rsyncd", cmd);
        let start = Instant::now();
        // Listening (the firewall keeps even the host itself from connecting).
        while !self.listening("873") {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "rsyncd never listened: {}{}",
                fs::read_to_string(self.w.path().join("rsyncd.log")).unwrap_or_default(),
                fs::read_to_string(self.w.path().join("rsyncd-daemon.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn firewall(&self, container_networks: &str) {
        self.firewall_for(container_networks, "")
    }

    /// The table with the rootful networks and the rootless uids given.
    fn firewall_for(&self, container_networks: &str, container_users: &str) {
        let fw = render(&format!(
            "(lib.nftables {{ laptopAddresses = [ \"10.0.0.2\" ]; containerNetworks = [ {container_networks} ]; \
             containerUsers = [ {container_users} ]; wireguardPort = 51820; }}).ruleset"
        ));
        let f = self.w.path().join("flashpods.nft");
        fs::write(&f, fw).unwrap();
        self.server().exec_ok(&["nft", "-f", f.to_str().unwrap()]);
    }

    /// The server's WireGuard peer: the laptop, by `key`.
    fn server_peer(&self, key: &str) {
        let conf = format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51820\n\n[Peer]\nPublicKey = {key}\nAllowedIPs = 10.0.0.2/32\n",
            self.server_keys.0
        );
        let f = self.w.path().join("server.wg.conf");
        fs::write(&f, conf).unwrap();
        self.server()
            .exec_ok(&["wg", "setconf", "wg0", f.to_str().unwrap()]);
    }

    fn validate(&self) -> (i32, Value) {
        let (code, doc, _) = self.validate_output();
        (code, doc)
    }

    /// The exit code, the document and everything printed (stdout, stderr).
    fn validate_output(&self) -> (i32, Value, String) {
        self.validate_with(&[])
    }

    /// `validate server --json` with `extra` arguments.
    fn validate_with(&self, extra: &[&str]) -> (i32, Value, String) {
        let started = Instant::now();
        let internet = format!("{}:80", self.internet_ip);
        let mut args = vec![
            "validate",
            "server",
            "--image",
            IMAGE,
            "--internet",
            &internet,
            "--timeout",
            "2",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = self.w.pantheros(&self.flake, &args);
        let doc = serde_json::from_slice::<Value>(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "validate printed no JSON ({e}):\n{}\n{}",
                stdout(&out),
                stderr(&out)
            )
        });
        eprintln!("validate took {:.1} s", started.elapsed().as_secs_f64());
        let text = format!("{}{}", stdout(&out), stderr(&out));
        (out.status.code().unwrap_or(-1), doc, text)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, mut c) in self.parts.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn results(doc: &Value) -> Vec<(String, String)> {
    doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn row<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no row {id}: {doc}"))
}

/// The row this world's host cannot run: it has no Tailscale.
const NO_TAILSCALE: &str = "tailscale";

/// Every row passed (but the Tailscale row, not run here).
#[track_caller]
fn assert_signed_off(doc: &Value, code: i32) {
    let res = results(doc);
    let expected_ids = [
        "wireguard",
        "api-wireguard",
        "api-not-public",
        "api-listen",
        "rsync-wireguard",
        "rsync-allow",
        "container-blocked",
        "container-internet",
        "spire-server",
        "spire-agent",
        "spire-entries",
        "container-cgroup",
        "svid-worker",
        "svid-agent",
        "token-worker",
        "token-agent",
        "tailscale",
    ];
    assert_eq!(
        res.iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>(),
        expected_ids,
        "{doc:#}"
    );
    for (id, result) in &res {
        // This world's host runs no Tailscale (its row is unit-tested).
        let want = if id == NO_TAILSCALE {
            "not-run"
        } else {
            "passed"
        };
        assert_eq!(result, want, "{id}: {:#}", row(doc, id));
    }
    assert_eq!(code, 0, "{doc:#}");
}

/// Exactly `id` failed; `not_run` are the rows that could not run because of it.
#[track_caller]
fn assert_only_failed(doc: &Value, code: i32, id: &str, not_run: &[&str]) {
    assert_eq!(code, 40, "{doc:#}");
    assert_eq!(doc["failed"], serde_json::json!([id]), "{doc:#}");
    for (rid, result) in results(doc) {
        let want = if rid == id {
            "failed"
        } else if not_run.contains(&rid.as_str()) || rid == NO_TAILSCALE {
            "not-run"
        } else {
            "passed"
        };
        assert_eq!(
            result,
            want,
            "{rid} when {id} is broken: {:#}",
            row(doc, &rid)
        );
    }
    assert!(
        row(doc, id)["hint"].as_str().is_some_and(|h| !h.is_empty()),
        "{:#}",
        row(doc, id)
    );
}

#[test]
fn validate_signs_off_a_flashpods_host_and_fails_exactly_the_broken_row() {
    if !testworld::have_tools(&[
        "nix",
        "wireguard-go",
        "wg",
        "nft",
        "rsync",
        "podman",
        "runc",
        "busybox",
        "python3",
    ]) {
        return;
    }
    let Some(mut lab) = build_lab() else { return };
    start_wireguard(&mut lab);
    start_services(&mut lab);
    let tar = start_rootful_podman(&mut lab);
    start_spire_agent(&mut lab);
    start_token_service(&mut lab);
    every_row_passes_as_declared(&lab);
    each_broken_part_fails_its_own_row(&mut lab);
    rootless_podman_is_judged_as_it_is(&mut lab, &tar);
}

/// The lab: two hosts (the Flashpods server, "the internet"), the stand-in
/// SPIRE's state (the declared entries as the reconcile unit leaves them,
/// the host's attested agent), WireGuard keys and the flake.
fn build_lab() -> Option<Lab> {
    let mut w = World::new()?;
    let stub = testworld::stand_in_nixpkgs(w.path())?;
    w.add_host("server");
    w.add_host("internet");
    let internet_ip = w.host("internet").ip.clone();
    let server_ip = w.host("server").ip.clone();

    // The stand-in SPIRE: its server's state (the declared entries, as the
    // reconcile unit leaves them, and the host's attested agent).
    let spire = w.path().join("spire");
    fs::create_dir_all(spire.join("bin")).unwrap();
    for cli in ["spire-server", "spire-agent"] {
        fs::copy(
            testworld::project_root()
                .join("tests/fixtures/spire")
                .join(cli),
            spire.join("bin").join(cli),
        )
        .unwrap();
    }
    let id = |p: &str| serde_json::json!({ "trust_domain": "flashpods.local", "path": p });
    let entry = |t: &str| {
        serde_json::json!({
            "id": format!("entry-{t}"), "spiffe_id": id(&format!("/{t}")), "parent_id": id("/host"),
            "selectors": [{ "type": "docker", "value": format!("label:flashpods-job-type:{t}") }],
            "_parent": "spiffe://flashpods.local/host"
        })
    };
    fs::write(
        spire.join("state.json"),
        serde_json::json!({
            "entries": [entry("worker"), entry("agent")],
            "agents": [{ "id": id("/spire/agent/join_token/0f3c"), "attestation_type": "join_token", "banned": false }]
        })
        .to_string(),
    )
    .unwrap();

    let server_keys = testworld::wg_keypair();
    let laptop_keys = testworld::wg_keypair();
    let flake = w.path().join("flake");
    write_flake(&flake, &stub, &w, &laptop_keys.1, &spire);
    Some(Lab {
        w,
        flake,
        internet_ip,
        server_ip,
        server_keys,
        laptop_keys,
        spire,
        stub,
        parts: vec![],
    })
}

/// WireGuard: the server's wg0 and the laptop's own interface, until the
/// laptop reaches the server through the tunnel.
fn start_wireguard(lab: &mut Lab) {
    // --- WireGuard: the server's wg0 and the laptop's own interface (the
    // client namespace shares this machine's /run, so its name is unique).
    let laptop_if = format!("wgv{}", std::process::id() % 100_000);
    let cmd = lab.server().command(&["wireguard-go", "-f", "wg0"]);
    lab.start("wg-server", cmd);
    let cmd = lab.w.client(&["wireguard-go", "-f", &laptop_if]);
    lab.start("wg-laptop", cmd);
    wait_for("wireguard-go did not start on the server", 10, || {
        lab.server()
            .exec(&["test", "-S", "/run/wireguard/wg0.sock"])
            .status
            .success()
    });
    wait_for("wireguard-go did not start on the laptop", 10, || {
        Path::new(&format!("/run/wireguard/{laptop_if}.sock")).exists()
    });
    lab.server_peer(&lab.laptop_keys.1.clone());
    for argv in [
        vec!["ip", "addr", "add", "10.0.0.1/24", "dev", "wg0"],
        vec!["ip", "link", "set", "wg0", "up"],
    ] {
        lab.server().exec_ok(&argv);
    }
    let laptop_conf = lab.w.path().join("laptop.wg.conf");
    fs::write(
        &laptop_conf,
        format!(
            "[Interface]\nPrivateKey = {}\n\n[Peer]\nPublicKey = {}\nAllowedIPs = 10.0.0.0/24\nEndpoint = {}:51820\n",
            lab.laptop_keys.0, lab.server_keys.1, lab.server_ip
        ),
    )
    .unwrap();
    for argv in [
        vec!["wg", "setconf", &laptop_if, laptop_conf.to_str().unwrap()],
        vec!["ip", "addr", "add", "10.0.0.2/24", "dev", &laptop_if],
        vec!["ip", "link", "set", &laptop_if, "up"],
    ] {
        let out = lab.w.client_exec(&argv);
        assert!(out.status.success(), "{argv:?}: {}", stderr(&out));
    }
    wait_for(
        "the laptop never reached the server over WireGuard",
        15,
        || {
            lab.w
                .client_exec(&["busybox", "ping", "-c", "1", "-W", "1", "10.0.0.1"])
                .status
                .success()
        },
    );
}

/// The API on the WireGuard address, rsyncd, "the internet", the firewall.
fn start_services(lab: &mut Lab) {
    // --- Services: the API on the WireGuard address, rsyncd, the firewall.
    lab.api("10.0.0.1");
    lab.rsyncd("\"10.0.0.2\"");
    let cmd = lab.w.host("internet").command(&[
        "python3",
        "-m",
        "http.server",
        "80",
        "--bind",
        "0.0.0.0",
        "--directory",
        "/",
    ]);
    lab.start("internet", cmd);
    lab.firewall("\"10.88.0.0/16\"");
}

/// Rootful Podman behind the flashpods socket path, with the job image
/// imported; the image's tarball, for the rootless phase.
fn start_rootful_podman(lab: &mut Lab) -> std::path::PathBuf {
    // --- Podman: rootful first (the SPIRE rows need per-container cgroups,
    // which rootless Podman gets only from systemd's cgroup manager),
    // behind the flashpods user's socket path, with netavark's NAT for
    // egress; rootless at the end.
    let server = lab.server();
    server.mount_cgroups();
    server.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    server.exec_ok(&["mkdir", "-p", "/run/flashpods", "/nix/store"]);
    let pod = lab.w.path().join("podman");
    fs::create_dir_all(&pod).unwrap();
    // This machine cannot raise hard rlimits, and crun refuses its hybrid
    // cgroups: low ulimits and runc (reference/test-world.md).
    let conf = pod.join("containers.conf");
    fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n[engine]\nruntime = \"runc\"\n",
    )
    .unwrap();
    let storage = pod.join("storage");
    let conf_env = format!("CONTAINERS_CONF={}", conf.display());
    let podman_argv = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "env",
            conf_env.as_str(),
            "podman",
            "--root",
            storage.to_str().unwrap(),
            "--runroot",
            "/run/containers/storage",
            "--tmpdir",
            "/run/libpod",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let podman = |args: &[&str]| {
        let v = podman_argv(args);
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        lab.server().exec(&v)
    };
    let tar = image_tar(&lab.w, &lab.spire);
    let out = podman(&[
        "import",
        "--change",
        "CMD [\"/bin/sh\"]",
        tar.to_str().unwrap(),
        IMAGE,
    ]);
    assert!(out.status.success(), "podman import: {}", stderr(&out));
    let service = podman_argv(&[
        "system",
        "service",
        "--time=0",
        &format!("unix://{PODMAN_SOCKET}"),
    ]);
    let service: Vec<&str> = service.iter().map(String::as_str).collect();
    let cmd = lab.server().command(&service);
    lab.start("podman", cmd);
    wait_for("podman's socket never appeared", 15, || {
        lab.server()
            .exec(&["test", "-S", PODMAN_SOCKET])
            .status
            .success()
    });

    tar
}

/// The stand-in SPIRE agent, attesting through Podman's socket.
fn start_spire_agent(lab: &mut Lab) {
    // --- The stand-in SPIRE agent, attesting through Podman's socket.
    let agent = lab.spire.join("bin/spire-agent");
    let cmd = lab.server().command(&[
        agent.to_str().unwrap(),
        "run",
        "-socketPath",
        AGENT_SOCKET,
        "-podmanSocket",
        PODMAN_SOCKET,
    ]);
    lab.start("spire-agent", cmd);
    wait_for("the agent's socket never appeared", 10, || {
        lab.server()
            .exec(&["test", "-S", AGENT_SOCKET])
            .status
            .success()
    });
}

/// The stand-in token service, with the job secrets.
fn start_token_service(lab: &mut Lab) {
    // --- The stand-in token service, with the job secrets.
    let secrets = lab.w.path().join("secrets.json");
    fs::write(
        &secrets,
        r#"{"ANTHROPIC_API_KEY": "sk-ant-SECRET-VALUE-1", "GITHUB_TOKEN": "ghp_SECRET-VALUE-2"}"#,
    )
    .unwrap();
    let service = testworld::project_root().join("tests/fixtures/flashpods-token-service");
    let cmd = lab.server().command(&[
        service.to_str().unwrap(),
        "/run/flashpods/token.sock",
        secrets.to_str().unwrap(),
        "flashpods-token-service",
    ]);
    lab.start("token-service", cmd);
    wait_for("the token service's socket never appeared", 10, || {
        lab.server()
            .exec(&["test", "-S", "/run/flashpods/token.sock"])
            .status
            .success()
    });
}

/// Everything as declared: every row passes.
fn every_row_passes_as_declared(lab: &Lab) {
    // --- Everything as declared: every row passes, the document follows
    // its schema, and neither a token's value nor a JWT is printed.
    let (code, doc, text) = lab.validate_output();
    assert_signed_off(&doc, code);
    for secret in ["SECRET-VALUE", "stand-in"] {
        assert!(!text.contains(secret), "validate printed {secret}:\n{text}");
    }
    assert!(
        row(&doc, "token-agent")["evidence"]
            .as_str()
            .unwrap()
            .contains("ANTHROPIC_API_KEY, GITHUB_TOKEN"),
        "{doc:#}"
    );
    testworld::assert_schema(&doc, "validate");
    assert!(
        row(&doc, "svid-worker")["evidence"]
            .as_str()
            .unwrap()
            .contains("spiffe://flashpods.local/worker"),
        "{doc:#}"
    );
    let public = row(&doc, "api-not-public")["evidence"].as_str().unwrap();
    assert!(
        public.contains(&lab.server_ip) && public.contains("ssh's port 22 there answers"),
        "the public address is the one ssh connects to, and it answers on ssh's port: {doc:#}"
    );
    // An address where nothing answers proves nothing about the API: that
    // row is not run (and so not passed); nothing fails.
    let silent = format!("{}.250", lab.w.subnet);
    let (code, doc, _) = lab.validate_with(&["--public-address", &silent]);
    assert_eq!(row(&doc, "api-not-public")["result"], "not-run", "{doc:#}");
    assert_eq!(
        (code, &doc["failed"]),
        (0, &serde_json::json!([])),
        "{doc:#}"
    );
    // The human table, as printed without --json.
    let out = lab.w.pantheros(
        &lab.flake,
        &[
            "validate",
            "server",
            "--image",
            IMAGE,
            "--internet",
            &format!("{}:80", lab.internet_ip),
            "--timeout",
            "2",
        ],
    );
    let table = stdout(&out);
    assert!(
        table.contains("=== Flashpods sign-off: server (")
            && table.contains("16 passed, 0 failed, 1 not run"),
        "{table}\n{}",
        stderr(&out)
    );
}

/// Each part broken in turn fails exactly its own row, then is mended.
fn each_broken_part_fails_its_own_row(lab: &mut Lab) {
    // --- Broken: the firewall's rule for the container networks removed.
    // The catch-all drop still stops the container, but the declared rule
    // did not reject it: the row says so.
    lab.firewall("");
    let (code, doc) = lab.validate();
    assert_only_failed(&doc, code, "container-blocked", &[]);
    assert!(
        row(&doc, "container-blocked")["evidence"]
            .as_str()
            .unwrap()
            .contains("dropped (no answer in"),
        "{doc:#}"
    );
    lab.firewall("\"10.88.0.0/16\"");

    // --- Broken: rsyncd's `hosts allow` widened to the whole network.
    lab.rsyncd("\"10.0.0.0/24\"");
    let (code, doc) = lab.validate();
    assert_only_failed(&doc, code, "rsync-allow", &[]);
    assert!(
        row(&doc, "rsync-allow")["evidence"]
            .as_str()
            .unwrap()
            .contains("hosts allow = 10.0.0.0/24"),
        "{doc:#}"
    );
    lab.rsyncd("\"10.0.0.2\"");

    // --- Broken: the API bound to every address (the public one among
    // them); the firewall still hides it, the bind is wrong all the same.
    lab.api("0.0.0.0");
    let (code, doc) = lab.validate();
    assert_only_failed(&doc, code, "api-listen", &[]);
    assert!(
        row(&doc, "api-listen")["evidence"]
            .as_str()
            .unwrap()
            .contains("0.0.0.0:8080"),
        "{doc:#}"
    );
    lab.api("10.0.0.1");

    // --- Broken: a wrong WireGuard peer key (the configuration names a key
    // that is not the laptop's, and the host was deployed with it). The rows
    // that ride the tunnel are not run, never passed.
    let wrong = testworld::wg_keypair().1;
    write_flake(&lab.flake, &lab.stub, &lab.w, &wrong, &lab.spire);
    lab.server_peer(&wrong);
    let (code, doc) = lab.validate();
    assert_only_failed(
        &doc,
        code,
        "wireguard",
        &["api-wireguard", "rsync-wireguard"],
    );
    assert!(
        row(&doc, "wireguard")["evidence"]
            .as_str()
            .unwrap()
            .contains("no handshake with laptop"),
        "{doc:#}"
    );

    write_flake(
        &lab.flake,
        &lab.stub,
        &lab.w,
        &lab.laptop_keys.1.clone(),
        &lab.spire,
    );
    let right = lab.laptop_keys.1.clone();
    lab.server_peer(&right);
}

/// The module's own mode, rootless Podman: judged as it really is.
fn rootless_podman_is_judged_as_it_is(lab: &mut Lab, tar: &Path) {
    // --- The module's own mode: rootless Podman as the flashpods user (uid
    // 870, the module's default) behind the same socket. Its containers'
    // connections leave through slirp4netns as that user, from the host.
    lab.stop("podman");
    lab.server().exec_ok(&["rm", "-f", PODMAN_SOCKET]);
    let rootless = lab
        .server()
        .rootless_podman("flashpods", 870, "/run/flashpods/podman-runtime");
    lab.server()
        .exec_ok(&["chown", "870:870", "/run/flashpods"]);
    let out = rootless.import(tar, IMAGE);
    assert!(
        out.status.success(),
        "podman import (rootless): {}",
        stderr(&out)
    );
    let cmd = rootless.command(&[
        "podman",
        "system",
        "service",
        "--time=0",
        &format!("unix://{PODMAN_SOCKET}"),
    ]);
    lab.start("podman", cmd);
    wait_for("the rootless podman's socket never appeared", 15, || {
        lab.server()
            .exec(&["test", "-S", PODMAN_SOCKET])
            .status
            .success()
    });

    // The table of the rootful world only: the container is dropped, not
    // refused, and the row says so.
    let (code, doc) = lab.validate();
    assert_eq!(code, 40, "{doc:#}");
    let blocked = row(&doc, "container-blocked");
    assert_eq!(blocked["result"], "failed", "{blocked:#}");
    let evidence = blocked["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("API 10.0.0.1:8080 dropped")
            && evidence.contains("rsync 10.0.0.1:873 dropped"),
        "{blocked:#}"
    );
    assert_eq!(
        row(&doc, "container-internet")["result"],
        "passed",
        "{doc:#}"
    );

    // The module's table (the uid rule): refused, and egress still works.
    lab.firewall_for("\"10.88.0.0/16\"", "870");
    let (code, doc) = lab.validate();
    let blocked = row(&doc, "container-blocked");
    assert_eq!(blocked["result"], "passed", "{blocked:#}");
    let evidence = blocked["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("API 10.0.0.1:8080 refused")
            && evidence.contains("rsync 10.0.0.1:873 refused")
            && evidence.contains("rootless: uid 870"),
        "{blocked:#}"
    );
    assert_eq!(
        row(&doc, "container-internet")["result"],
        "passed",
        "{doc:#}"
    );
    // Its containers stay in the cgroup of the process that runs Podman
    // (cgroupfs, no delegation): no container id for the attestor, and the
    // SVID rows fail as they would on such a host.
    assert_eq!(code, 40, "{doc:#}");
    let cgroup = row(&doc, "container-cgroup");
    assert_eq!(cgroup["result"], "failed", "{cgroup:#}");
    assert!(
        cgroup["evidence"]
            .as_str()
            .unwrap()
            .contains("no container id there"),
        "{cgroup:#}"
    );
    for job in ["svid-worker", "svid-agent"] {
        assert_eq!(row(&doc, job)["result"], "failed", "{doc:#}");
    }
    drop(rootless);
}
