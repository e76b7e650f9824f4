//! `pantheros provision install`: nixos-anywhere is a recording program on
//! PATH (tests/fixtures/nixos-anywhere), the Hetzner API is the schema-
//! validating fake, and a systemd host of the test world stands in for the
//! freshly installed server that pantheros then verifies over SSH.

use std::path::Path;

use testworld::hetzner::FakeHetzner;
use testworld::{World, stderr, stdout};
use testworld::{assert_exit, assert_stderr_has};

const TOKEN: &str = "valid-install-token";

#[test]
fn install_runs_nixos_anywhere_pins_the_host_key_and_verifies() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    w.add_systemd_host("sys1");
    let client_ns = w.client_ns.clone();
    let Some(fake) = FakeHetzner::start_in(Some(&client_ns)) else {
        return;
    };
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
    let run_with = |args: &[&str], fail: bool, ignore_key: bool| {
        let bin = testworld::pantheros_bin();
        let mut argv = vec![bin.to_str().unwrap()];
        argv.extend_from_slice(args);
        let out = w
            .client(&argv)
            .current_dir(&flake)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", w.path().join("config"))
            .env("HCLOUD_TOKEN", TOKEN)
            .env("HCLOUD_ENDPOINT", fake.endpoint())
            .env("PANTHEROS_HCLOUD_POLL_MS", "20")
            .env("PANTHEROS_LOG_DIR", w.path().join("logs"))
            .env("PATH", &path)
            .env("NIXOS_ANYWHERE_RECORD", &record)
            .env("NIXOS_ANYWHERE_FAIL", if fail { "1" } else { "0" })
            .env(
                "NIXOS_ANYWHERE_IGNORE_EXTRA_FILES",
                if ignore_key { "1" } else { "0" },
            )
            .env_remove("PANTHEROS_NIXOS_ANYWHERE")
            .output()
            .unwrap();
        assert!(
            !stdout(&out).contains(TOKEN) && !stderr(&out).contains(TOKEN),
            "token leaked"
        );
        out
    };
    let run = |args: &[&str], fail: bool| run_with(args, fail, false);
    let out = run(&["provision", "create", "hetzner-vps"], false);
    assert_exit(&out, 0);
    let ip = w.systemd_host("sys1").ip.clone();
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
    // nixos-anywhere got the store paths pantheros built (it evaluates
    // nothing), the host key pantheros made, our key and the server.
    let argv: Vec<String> = std::fs::read_to_string(&record)
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
    let on_host = |cmd: &str| {
        testworld::stdout(&w.systemd_host("sys1").exec(&["sh", "-c", cmd]))
            .trim()
            .to_string()
    };
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
    let out = run_with(
        &["provision", "install", "hetzner-vps", "--timeout", "8"],
        false,
        true,
    );
    assert_exit(&out, 33);
    assert_stderr_has(
        &out,
        &["not the one pantheros generated", "refusing to connect"],
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}
