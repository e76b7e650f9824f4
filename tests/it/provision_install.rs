//! `pantheros provision install`: nixos-anywhere is a recording program on
//! PATH (tests/fixtures/nixos-anywhere), the Hetzner API is the schema-
//! validating fake, and a systemd host of the test world stands in for the
//! freshly installed server that pantheros then verifies over SSH.

use std::path::Path;

use testworld::hetzner::FakeHetzner;
use testworld::{World, stderr, stdout};
use testworld::{assert_exit, assert_stderr_has};

const TOKEN: &str = "valid-install-token";

/// A world for installations: a systemd host (`sys1`) that stands in for
/// the server, the schema-validating Hetzner fake in the client namespace,
/// a home with the client's key, the fixture flake, and the recording
/// nixos-anywhere first on PATH.
struct Installation {
    w: World,
    fake: FakeHetzner,
    home: std::path::PathBuf,
    flake: std::path::PathBuf,
    record: std::path::PathBuf,
    path: String,
    ip: String,
}

impl Installation {
    fn new() -> Option<Installation> {
        let mut w = World::with_systemd()?;
        w.add_systemd_host("sys1");
        let client_ns = w.client_ns.clone();
        let fake = FakeHetzner::start_in(Some(&client_ns))?;
        let home = w.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::copy(&w.client_key, home.join(".ssh/id_ed25519")).unwrap();
        std::fs::copy(
            w.client_key.with_extension("pub"),
            home.join(".ssh/id_ed25519.pub"),
        )
        .unwrap();
        let flake = testworld::fixture_flake(w.path());
        let record = w.path().join("nixos-anywhere.argv");
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nixos-anywhere");
        let path = format!(
            "{}:{}",
            fixtures.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let ip = w.systemd_host("sys1").ip.clone();
        Some(Installation {
            w,
            fake,
            home,
            flake,
            record,
            path,
            ip,
        })
    }

    /// `pantheros ARGS` from the client namespace, with the stand-in
    /// nixos-anywhere told `env` (e.g. NIXOS_ANYWHERE_FAIL=1); the token
    /// never appears in its output.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let bin = testworld::pantheros_bin();
        let mut argv = vec![bin.to_str().unwrap()];
        argv.extend_from_slice(args);
        let mut c = self.w.client(&argv);
        c.current_dir(&self.flake)
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.w.path().join("config"))
            .env("HCLOUD_TOKEN", TOKEN)
            .env("HCLOUD_ENDPOINT", self.fake.endpoint())
            .env("PANTHEROS_HCLOUD_POLL_MS", "20")
            .env("PANTHEROS_HCLOUD_BACKOFF_MS", "20")
            .env("PANTHEROS_LOG_DIR", self.w.path().join("logs"))
            .env("PATH", &self.path)
            .env("NIXOS_ANYWHERE_RECORD", &self.record)
            .env_remove("PANTHEROS_NIXOS_ANYWHERE");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(
            !stdout(&out).contains(TOKEN) && !stderr(&out).contains(TOKEN),
            "token leaked"
        );
        out
    }

    /// A command on the server (not over SSH: its host key changes).
    fn on_host(&self, cmd: &str) -> String {
        stdout(&self.w.systemd_host("sys1").exec(&["sh", "-c", cmd]))
            .trim()
            .to_string()
    }
}

#[test]
fn install_runs_nixos_anywhere_pins_the_host_key_and_verifies() {
    let Some(i) = Installation::new() else { return };
    let (w, fake, home, ip) = (&i.w, &i.fake, &i.home, i.ip.clone());
    let run = |args: &[&str], fail: bool| {
        i.run(
            args,
            &[("NIXOS_ANYWHERE_FAIL", if fail { "1" } else { "0" })],
        )
    };
    let out = run(&["provision", "create", "hetzner-vps"], false);
    assert_exit(&out, 0);
    fake.set_ip("hetzner-vps", &ip);

    // A failing installer: its own exit code, its output shown.
    let out = run(&["provision", "install", "hetzner-vps"], true);
    assert_exit(&out, 31);
    assert_stderr_has(&out, &["nixos-anywhere failed", "kexec failed: simulated"]);

    let out = run(&["provision", "install", "hetzner-vps", "--json"], false);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    testworld::assert_schema(&v, "provision");
    assert_eq!(v["address"], ip.as_str(), "{v}");
    assert_eq!(v["ipv4"], ip.as_str(), "{v}");
    // nixos-anywhere got the store paths pantheros built (it evaluates
    // nothing), the host key pantheros made, our key and the server.
    let argv: Vec<String> = std::fs::read_to_string(&i.record)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let top = v["toplevel"].as_str().unwrap();
    assert!(top.contains("nixos-system-hetzner-vps"), "{top}");
    assert_eq!(argv[0], "--store-paths", "{argv:?}");
    assert!(argv[1].contains("-disko-hetzner-vps"), "{argv:?}");
    assert_eq!(argv[2], top);
    assert_eq!(argv[3], "--extra-files");
    assert_eq!(
        argv[5..],
        [
            "-i".to_string(),
            home.join(".ssh/id_ed25519").display().to_string(),
            format!("root@{ip}"),
        ]
    );
    // The extra files (the host's private key) are gone from this machine.
    assert!(!Path::new(&argv[4]).exists(), "{} was left behind", argv[4]);
    let on_host = |cmd: &str| i.on_host(cmd);
    // The disk script pantheros built ran on the server; the server runs
    // exactly the built toplevel, verified by pantheros.
    assert_eq!(
        on_host("cat /var/lib/pantheros-fixture/disko-ran"),
        "hetzner-vps"
    );
    assert_eq!(on_host("readlink -f /run/current-system"), top);
    // The key pinned (before the first connection) is the one pantheros
    // generated, which the server now presents; not the image's old key.
    let kh = std::fs::read_to_string(w.path().join("config/pantheros/known_hosts")).unwrap();
    let served = on_host("cat /etc/ssh/ssh_host_ed25519_key.pub");
    let material = served.split_whitespace().nth(1).unwrap();
    assert!(kh.contains(&format!("{ip} ssh-ed25519 {material}")), "{kh}");
    assert_eq!(
        v["hostKey"].as_str().unwrap().split_whitespace().nth(1),
        Some(material)
    );
    let image_key = std::fs::read_to_string(
        testworld::systemd_cache().join("rootfs/etc/ssh/ssh_host_ed25519_key.pub"),
    )
    .unwrap();
    assert_ne!(image_key.split_whitespace().nth(1), Some(material));
    assert_eq!(
        kh.lines()
            .filter(|l| l.starts_with(&format!("{ip} ")))
            .count(),
        1,
        "{kh}"
    );

    // A host that presents another key than the one pantheros made (here:
    // the installation left the old key) is refused, not trusted.
    let out = i.run(
        &["provision", "install", "hetzner-vps", "--timeout", "8"],
        &[("NIXOS_ANYWHERE_IGNORE_EXTRA_FILES", "1")],
    );
    assert_exit(&out, 33);
    assert_stderr_has(
        &out,
        &["not the one pantheros generated", "refusing to connect"],
    );

    // A server that never comes back after the installation: exit 32.
    let out = i.run(
        &["provision", "install", "hetzner-vps", "--timeout", "6"],
        &[("NIXOS_ANYWHERE_NEVER_BACK", "1")],
    );
    assert_exit(&out, 32);
    assert_stderr_has(&out, &["did not come back as the installed NixOS"]);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// `pantheros up` from an empty project: a systemd host of the test world
/// stands in for the server the fake creates (its address planned), the
/// recording nixos-anywhere installs, and the deploy runs the whole
/// pipeline against it. A failure at each step stops there, and running
/// `up` again resumes: what is done is skipped, never done twice.
#[test]
fn up_goes_from_nothing_to_a_deployed_host_and_resumes_after_failures() {
    let Some(i) = Installation::new() else { return };
    i.fake.set_ip("hetzner-vps", &i.ip);
    dry_run_creates_nothing(&i);
    a_server_that_cannot_be_created_stops_up_there(&i);
    a_failed_installation_stops_up_there(&i);
    without_a_terminal_nothing_is_switched(&i);
    the_first_deploy_runs_and_records_the_facts(&i);
    once_more_nothing_is_done_twice(&i);
}

/// `up hetzner-vps --json` with `extra`; the document (schema-checked) and
/// its steps as (step, result).
fn up(
    i: &Installation,
    extra: &[&str],
    install_fails: bool,
) -> (
    std::process::Output,
    serde_json::Value,
    Vec<(String, String)>,
) {
    let mut args = vec!["up", "hetzner-vps", "--json"];
    args.extend_from_slice(extra);
    let fail = if install_fails { "1" } else { "0" };
    let out = i.run(&args, &[("NIXOS_ANYWHERE_FAIL", fail)]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    testworld::assert_schema(&doc, "up");
    let steps: Vec<(String, String)> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (out, doc, steps)
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// `--dry-run`: what would happen; nothing is created.
fn dry_run_creates_nothing(i: &Installation) {
    let fake = &i.fake;
    // --dry-run: what would happen; nothing is created.
    let (out, _, steps) = up(i, &["--dry-run"], false);
    assert_exit(&out, 0);
    assert_eq!(
        steps,
        pairs(&[
            ("server", "would-run"),
            ("install", "would-run"),
            ("deploy", "would-run")
        ])
    );
    assert!(
        fake.mutating_requests().is_empty(),
        "{:?}",
        fake.mutating_requests()
    );
}

/// The server cannot be created: `up` stops there.
fn a_server_that_cannot_be_created_stops_up_there(i: &Installation) {
    let fake = &i.fake;
    // The server cannot be created: stop there.
    fake.inject("POST", "^/v1/servers$", 500, "server_error", 1, false);
    let (out, doc, steps) = up(i, &["--yes"], false);
    assert_exit(&out, 23);
    assert_eq!(doc["exitCode"], 23);
    assert_eq!(
        steps,
        pairs(&[
            ("server", "failed"),
            ("install", "not-run"),
            ("deploy", "not-run")
        ])
    );
    assert_stderr_has(&out, &["run `pantheros up hetzner-vps` again to resume"]);
}

/// Again: the server is created; the installation fails.
fn a_failed_installation_stops_up_there(i: &Installation) {
    let fake = &i.fake;
    // Again: the server is created; the installation fails.
    let (out, _, steps) = up(i, &["--yes"], true);
    assert_exit(&out, 31);
    assert_eq!(
        steps,
        pairs(&[
            ("server", "done"),
            ("install", "failed"),
            ("deploy", "not-run")
        ])
    );
    assert_eq!(
        fake.count("POST", "/v1/servers"),
        2,
        "one refused, one made"
    );
}

/// Again: the server is found and NixOS installed; the deploy is refused (no terminal, no --yes).
fn without_a_terminal_nothing_is_switched(i: &Installation) {
    let w = &i.w;
    // Again: the server is found and NixOS installed; the deploy is
    // refused (no terminal to confirm on, no --yes): nothing switched.
    let (out, _, steps) = up(i, &[], false);
    assert_exit(&out, 1);
    assert_eq!(
        steps,
        pairs(&[
            ("server", "skipped"),
            ("install", "done"),
            ("deploy", "failed")
        ])
    );
    assert_stderr_has(&out, &["refusing to deploy without confirmation"]);
    assert!(
        !w.systemd_host("sys1")
            .exec(&["test", "-e", "/nix/var/nix/profiles/system"])
            .status
            .success(),
        "the refused deploy switched the host"
    );
}

/// Again, with --yes: the first deploy, and the facts it recorded.
fn the_first_deploy_runs_and_records_the_facts(i: &Installation) {
    let record = &i.record;
    // Again, with --yes: the first deploy through the whole pipeline.
    std::fs::remove_file(record).unwrap();
    let (out, doc, steps) = up(i, &["--yes"], false);
    assert_exit(&out, 0);
    assert_eq!(
        steps,
        pairs(&[
            ("server", "skipped"),
            ("install", "skipped"),
            ("deploy", "done")
        ])
    );
    assert!(!record.exists(), "nixos-anywhere ran again");
    assert_eq!(doc["deploy"][0]["result"], "success", "{doc}");
    assert_eq!(doc["deploy"][0]["generationAfter"], 1, "{doc}");
    let on_host = |cmd: &str| i.on_host(cmd);
    let top = doc["deploy"][0]["toplevel"].as_str().unwrap().to_string();
    assert_eq!(on_host("readlink -f /nix/var/nix/profiles/system"), top);
    assert_eq!(on_host("readlink -f /run/current-system"), top);
    assert_eq!(on_host("cat /run/pantheros-fixture/generation"), "1");

    // What the machines decided is in the host's facts file, each fact
    // with its source; the system was built from the configuration that
    // reads them (its motd carries the recorded address), and the host's
    // placeholder waiting for that address never stopped `up`.
    let facts: serde_json::Value = testworld::read_json(&i.flake.join("hetzner-vps.facts.json"));
    let f = &facts["facts"];
    assert_eq!(f["ipv4"]["value"], i.ip.as_str(), "{facts}");
    assert_eq!(f["ipv4"]["source"], "hetzner-api");
    assert!(f["serverId"]["value"].as_i64().is_some(), "{facts}");
    let net = f["ipv6"]["value"].as_str().unwrap();
    let addr = f["ipv6Address"]["value"].as_str().unwrap();
    assert!(
        net.ends_with("::/64") && addr == net.replace("::/64", "::1/64"),
        "{facts}"
    );
    assert_eq!(f["ipv6Gateway"]["value"], "fe80::1");
    assert_eq!(f["hostKey"]["source"], "pantheros install");
    assert!(
        f["hostKey"]["value"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519 "),
        "{facts}"
    );
    assert!(
        on_host(&format!("cat {top}/etc/motd")).contains(&format!("ipv6 {addr}")),
        "the system was not built with the recorded address"
    );
}

/// Once more: everything is done; nothing is created, installed or switched.
fn once_more_nothing_is_done_twice(i: &Installation) {
    let (fake, record) = (&i.fake, &i.record);
    // Once more: everything is done; nothing is created, installed or
    // switched.
    let (out, _, steps) = up(i, &["--yes"], false);
    assert_exit(&out, 0);
    assert_eq!(
        steps,
        pairs(&[
            ("server", "skipped"),
            ("install", "skipped"),
            ("deploy", "skipped")
        ])
    );
    assert!(!record.exists(), "nixos-anywhere ran again");
    assert_eq!(fake.count("POST", "/v1/servers"), 2);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// `up --ipv6-only` to a server with no IPv4 address at all (Hetzner's
/// IPv6-only servers): the server is created without one, nixos-anywhere
/// is handed the IPv6 literal, the installed system's key is pinned for
/// that literal, the first deploy runs over it, and later commands reach
/// the host at the address recorded in its facts.
#[test]
fn up_installs_and_deploys_a_server_reached_over_ipv6_alone() {
    let Some(i) = Installation::new() else { return };
    // As the shipped hosts/hetzner-vps: no address of its own, reached at
    // the one recorded in its facts (the deployment module's default for
    // targetHost, written out: the fixture has no module system).
    let flake_nix = i.flake.join("flake.nix");
    let text = std::fs::read_to_string(&flake_nix).unwrap();
    let fixed = "targetHost = \"203.0.113.10\";";
    assert!(text.contains(fixed), "the fixture's hetzner-vps changed");
    // The key `up` logged in with: ssh takes the user's ~/.ssh from the
    // password database, not from the test's HOME, so it is named here.
    let from_facts = format!(
        "targetHost = hetznerFacts.ipv4 or \
         (builtins.head (builtins.split \"/\" (hetznerFacts.ipv6Address or \"\"))); \
         sshOptions = [ \"-i\" \"{}\" \"-o\" \"IdentitiesOnly=yes\" ];",
        i.home.join(".ssh/id_ed25519").display()
    );
    std::fs::write(&flake_nix, text.replace(fixed, &from_facts)).unwrap();
    let net = i.w.make_systemd_ipv6_only("sys1");
    i.fake.set_ipv6("hetzner-vps", &net);
    let address = net.replace("::/64", "::1");
    let host = i.w.systemd_host("sys1");
    let v4 = stdout(&testworld::sh(&[
        "ip",
        "-n",
        &host.netns,
        "-4",
        "addr",
        "show",
        "dev",
        "eth0",
    ]));
    assert!(v4.trim().is_empty(), "the server still has IPv4: {v4}");

    // The world's own connections before this point came over IPv4.
    let since = i.on_host("date +%s.%N");

    let (out, doc, steps) = up(&i, &["--ipv6-only", "--yes"], false);
    assert_exit(&out, 0);
    assert_eq!(
        steps,
        pairs(&[("server", "done"), ("install", "done"), ("deploy", "done")])
    );
    let post = i.fake.first("POST", "/v1/servers");
    assert_eq!(post["body"]["public_net"]["enable_ipv4"], false, "{post}");
    // nixos-anywhere was given the literal, unbracketed (as ssh takes it).
    let argv = std::fs::read_to_string(&i.record).unwrap();
    assert_eq!(
        argv.lines().last(),
        Some(format!("root@{address}").as_str())
    );
    // The installed system's key is pinned for the literal.
    let kh = std::fs::read_to_string(i.w.path().join("config/pantheros/known_hosts")).unwrap();
    let served = i.on_host("cat /etc/ssh/ssh_host_ed25519_key.pub");
    let material = served.split_whitespace().nth(1).unwrap();
    assert!(
        kh.contains(&format!("{address} ssh-ed25519 {material}")),
        "{kh}"
    );
    // The first deploy switched the host to the built system.
    let top = doc["deploy"][0]["toplevel"].as_str().unwrap().to_string();
    assert_eq!(doc["deploy"][0]["result"], "success", "{doc}");
    assert_eq!(i.on_host("readlink -f /run/current-system"), top);
    assert_eq!(i.on_host("readlink -f /nix/var/nix/profiles/system"), top);
    // Only IPv6 facts; the configuration was built with the address.
    let facts: serde_json::Value = testworld::read_json(&i.flake.join("hetzner-vps.facts.json"));
    assert!(facts["facts"].get("ipv4").is_none(), "{facts}");
    assert_eq!(
        facts["facts"]["ipv6Address"]["value"],
        format!("{address}/64").as_str(),
        "{facts}"
    );
    // Every SSH connection the server accepted came over IPv6 (it has no
    // other address; its sshd logs the peer of each).
    let accepted = i.on_host(&format!(
        "journalctl -q -u ssh --since @{since} --no-pager | grep 'Accepted publickey' || true"
    ));
    assert!(!accepted.is_empty(), "no accepted connection was logged");
    for line in accepted.lines() {
        assert!(
            line.contains(&format!("from {net_}", net_ = net.trim_end_matches(":/64"))),
            "{line}"
        );
    }

    // Later: `status` and a redeploy reach it at the recorded address.
    let out = i.run(&["status", "hetzner-vps", "--json"], &[]);
    assert_exit(&out, 0);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["hosts"][0]["state"], "in-sync", "{st}");
    let out = i.run(&["deploy", "hetzner-vps", "--yes", "--json"], &[]);
    assert_exit(&out, 0);
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["hosts"][0]["result"], "unchanged", "{d}");
    assert!(i.fake.violations().is_empty(), "{:?}", i.fake.violations());
}
