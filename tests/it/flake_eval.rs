//! The flake-level evaluation tier: the project's own flake evaluated as
//! `nix flake check` evaluates it, through `--override-input nixpkgs` and
//! `--override-input disko` pointing at a stand-in flake
//! (tests/module-eval/flake.nix.in) whose `lib` is nixpkgs' real lib
//! (`$NIXPKGS_LIB` or the machine-level copy) and whose `lib.nixosSystem`
//! evaluates the modules against typed declarations of every NixOS and disko
//! option they use (tests/module-eval/nixos/, tests/module-eval/disko.nix).
//!
//! For every host: the toplevel evaluates (no failed assertion; warnings
//! listed), the configuration a build reads is forced, and every unit a
//! health check or an ordering names exists on the host. For every VM test:
//! each node the same, and every unit the script waits for exists on its
//! node. The tier's own tests then prove it fails on a wrong option type, a
//! misspelt option, a health check naming a unit the host lacks, and a
//! placeholder that throws instead of carrying an example.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

const SYSTEM: &str = "x86_64-linux";

/// A copy of the flake's sources and the stand-in inputs, in a temp dir.
struct Tier {
    _dir: tempfile::TempDir,
    flake: PathBuf,
    stub: PathBuf,
}

impl Tier {
    /// None (recorded as skipped; a failure under CI) without nix or a lib.
    fn new() -> Option<Tier> {
        if testworld::which("nix").is_none() {
            testworld::cannot_run("nix is not installed (bash scripts/setup)");
            return None;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().unwrap();
        let flake = dir.path().join("flake");
        fs::create_dir_all(flake.join("tests")).unwrap();
        for f in ["flake.nix", "flake.lock", "Cargo.toml", "Cargo.lock"] {
            fs::copy(root.join(f), flake.join(f)).unwrap();
        }
        // What the flake's outputs read: the package's source set, the
        // modules and hosts, the VM tests (and the fixture fleet one uses).
        for d in [
            "nix", "modules", "hosts", "src", "examples", "bench", "crates",
        ] {
            testworld::copy_dir(&root.join(d), &flake.join(d));
        }
        fs::create_dir_all(flake.join("scripts")).unwrap();
        fs::copy(
            root.join("scripts/nix-settings.conf"),
            flake.join("scripts/nix-settings.conf"),
        )
        .unwrap();
        for d in ["vm", "fixtures", "data"] {
            testworld::copy_dir(&root.join("tests").join(d), &flake.join("tests").join(d));
        }
        let stub = testworld::stand_in_nixpkgs(dir.path())?;
        Some(Tier {
            _dir: dir,
            flake,
            stub,
        })
    }

    /// `nix eval --json FLAKE#ATTR --apply APPLY` with the stand-in inputs:
    /// the value, or Nix's error text.
    fn eval(&self, attr: &str, apply: &str) -> Result<Value, String> {
        let stub = format!("path:{}", self.stub.display());
        let installable = format!("path:{}#{attr}", self.flake.display());
        let out = testworld::try_sh(&[
            "nix",
            "--extra-experimental-features",
            "nix-command flakes",
            "eval",
            "--json",
            "--no-write-lock-file",
            "--override-input",
            "nixpkgs",
            &stub,
            "--override-input",
            "disko",
            &stub,
            &installable,
            "--apply",
            apply,
        ]);
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap())
        } else {
            Err(testworld::stderr(&out))
        }
    }

    #[track_caller]
    fn eval_ok(&self, attr: &str, apply: &str) -> Value {
        self.eval(attr, apply)
            .unwrap_or_else(|e| panic!("{attr} does not evaluate:\n{e}"))
    }

    fn host_report(&self, host: &str) -> Result<Value, String> {
        self.eval(&format!("nixosConfigurations.{host}"), "c: c.report")
    }

    fn edit(&self, file: &str, from: &str, to: &str) {
        let p = self.flake.join(file);
        let s = fs::read_to_string(&p).unwrap();
        assert!(s.contains(from), "{file} no longer contains {from:?}");
        fs::write(&p, s.replacen(from, to, 1)).unwrap();
    }
}

fn names(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// A host's or node's report: it evaluated, was forced, names no missing unit.
#[track_caller]
fn assert_sound(what: &str, r: &Value) {
    assert!(
        r["drvPath"]
            .as_str()
            .unwrap_or("")
            .starts_with("/nix/store/"),
        "{what}: {r}"
    );
    assert_eq!(r["forced"], true, "{what}");
    assert_eq!(
        r["units"]["missing"],
        json!([]),
        "{what}: units named but absent"
    );
}

#[test]
fn the_shipped_flake_evaluates_as_nix_flake_check_would() {
    let Some(t) = Tier::new() else { return };
    each_host_lists_its_placeholders_and_warnings(&t);
    every_check_evaluates_with_what_its_script_waits_for(&t);
    the_other_outputs_evaluate(&t);
    the_hetzner_disk_is_laid_out_as_disko_does(&t);
    validate_reads_the_flashpods_summary(&t);
}

/// The four hosts, each with what a user must fill in before pantheros
/// deploys it and the warnings a build shows.
fn each_host_lists_its_placeholders_and_warnings(t: &Tier) {
    let hosts = t.eval_ok("nixosConfigurations", "builtins.attrNames");
    assert_eq!(hosts, json!(["hetzner-vps", "ovh-vps", "yoga", "zephyrus"]));
    // Each host: what a user must fill in before pantheros deploys it, and
    // the warnings a build shows (listed here so a new one is noticed).
    let expected = [
        (
            "hetzner-vps",
            vec![
                "adminSshKeys",
                "flashpodsApi",
                "flashpodsTokenService",
                "ipv6",
            ],
            vec![
                "services.flashpods.api.package is not set: the Flashpods API is not started.",
                "services.flashpods.wireguard.laptops.yoga.publicKey is not known yet: yoga is no WireGuard peer (deploy yoga, then this host again)",
            ],
        ),
        ("ovh-vps", vec!["adminSshKeys"], vec![]),
        (
            "yoga",
            vec![
                "adminSshKeys",
                "hardware",
                "serverEndpoint",
                "serverWireguardKey",
            ],
            vec![],
        ),
        (
            "zephyrus",
            vec![
                "adminSshKeys",
                "hardware",
                "serverEndpoint",
                "serverWireguardKey",
            ],
            vec![],
        ),
    ];
    for (host, placeholders, warnings) in expected {
        let r = t
            .host_report(host)
            .unwrap_or_else(|e| panic!("{host} does not evaluate:\n{e}"));
        assert_sound(host, &r);
        assert_eq!(names(&r["placeholders"]), placeholders, "{host}");
        // A fact's file is written by pantheros (it need not exist yet).
        for p in r["placeholders"]
            .as_object()
            .unwrap()
            .values()
            .filter(|p| p["fromFact"].is_null())
        {
            assert!(
                t.flake.join(p["file"].as_str().unwrap()).is_file(),
                "{host}: a placeholder names a file that does not exist: {p}"
            );
        }
        assert_eq!(r["warnings"], json!(warnings), "{host}");
        // Every command a unit's script starts by name is on its NixOS PATH.
        assert_eq!(
            r["bareCommands"],
            json!([]),
            "{host}: commands a NixOS service could not find (exit 127)"
        );
    }
}

/// Every check: the VM tests' nodes as hosts, and what their scripts
/// wait for; the package.
fn every_check_evaluates_with_what_its_script_waits_for(t: &Tier) {
    // Every check: the VM tests' nodes as hosts, and what their scripts
    // wait for; the package.
    let checks = t.eval_ok(&format!("checks.{SYSTEM}"), "builtins.attrNames");
    assert_eq!(checks, json!(["deploy", "flashpods", "package"]));
    for vm in ["deploy", "flashpods"] {
        let r = t.eval_ok(&format!("checks.{SYSTEM}.{vm}"), "c: c.report");
        let nodes = r["nodes"].as_object().unwrap();
        assert!(nodes.len() >= 2, "{vm}: {r}");
        for (node, nr) in nodes {
            assert_sound(&format!("{vm}.{node}"), nr);
        }
        let waits = r["waits"].as_array().unwrap();
        assert!(!waits.is_empty(), "{vm}: the script waits for no unit?");
        for w in waits {
            assert_eq!(
                w["exists"], true,
                "{vm}: waits for a unit its node lacks: {w}"
            );
        }
        let calls = r["calls"].as_array().unwrap();
        assert!(calls.len() >= waits.len(), "{vm}: {calls:?}");
        for c in calls {
            assert_eq!(
                c["known"], true,
                "{vm}: calls a method nixpkgs' test driver does not have: {c}"
            );
        }
    }
    let pkg = t.eval_ok(&format!("checks.{SYSTEM}.package"), "p: p.drvPath");
    assert!(
        pkg.as_str().unwrap().ends_with("-pantheros-0.1.0.drv"),
        "{pkg}"
    );
}

/// The apps, the shell, the formatter, the package and the modules.
fn the_other_outputs_evaluate(t: &Tier) {
    // The other outputs `nix flake check` evaluates.
    let apps = t.eval_ok(
        &format!("apps.{SYSTEM}"),
        "a: builtins.mapAttrs (_: x: { inherit (x) type; program = builtins.unsafeDiscardStringContext x.program; }) a",
    );
    for app in [
        "default",
        "deploy",
        "build-all",
        "rollback",
        "provision",
        "up",
        "hosts",
        "validate",
    ] {
        assert_eq!(apps[app]["type"], "app", "{app}");
        assert!(
            apps[app]["program"]
                .as_str()
                .unwrap()
                .starts_with("/nix/store/")
        );
    }
    for attr in [
        format!("devShells.{SYSTEM}.default"),
        format!("formatter.{SYSTEM}"),
        format!("packages.{SYSTEM}.default"),
    ] {
        let d = t.eval_ok(&attr, "d: d.drvPath");
        assert!(d.as_str().unwrap().ends_with(".drv"), "{attr}: {d}");
    }
    // The modules: the deployment module (default), the Flashpods host,
    // and a laptop's WireGuard side; the flake exports no renderer `lib`.
    let names = t.eval_ok("nixosModules", "m: builtins.attrNames m");
    assert_eq!(
        names,
        serde_json::json!(["default", "deployment", "flashpods", "flashpods-wireguard"])
    );
    // nixosModules.default is the deployment module alone.
    let m = t.eval_ok("nixosModules", "m: builtins.mapAttrs (_: toString) m");
    assert!(
        m["default"]
            .as_str()
            .unwrap()
            .ends_with("/modules/deployment.nix"),
        "{m}"
    );
}

/// The Hetzner host's disk as disko lays it out.
fn the_hetzner_disk_is_laid_out_as_disko_does(t: &Tier) {
    // The Hetzner host's disk as disko lays it out (lib/types/gpt.nix: labels
    // disk-<disk>-<partition>, the 100% partition last, its end -0) and
    // what disko configures from it: the mounts, the swap encrypted with a
    // random key on every boot, GRUB on the disk with the BIOS boot partition.
    let disk = t.eval_ok(
        "nixosConfigurations.hetzner-vps",
        "c: let k = c.config; p = k.disko.devices.disk.main.content.partitions; in { \
         root = k.fileSystems.\"/\".device; boot = k.fileSystems.\"/boot\".device; \
         swap = map (s: { inherit (s) device; random = s.randomEncryption.enable; }) k.swapDevices; \
         grub = k.boot.loader.grub.devices; swapPart = { inherit (p.swap) priority end; }; \
         bootPart = { inherit (p.boot) priority end type; }; }",
    );
    assert_eq!(
        disk,
        json!({
            "root": "/dev/disk/by-partlabel/disk-main-root",
            "boot": "/dev/disk/by-partlabel/disk-main-ESP",
            "swap": [{ "device": "/dev/disk/by-partlabel/disk-main-swap", "random": true }],
            "grub": ["/dev/sda"],
            "swapPart": { "priority": 9001, "end": "-0" },
            "bootPart": { "priority": 1000, "end": "+1M", "type": "EF02" }
        })
    );
}

/// What `validate` reads of a host.
fn validate_reads_the_flashpods_summary(t: &Tier) {
    // What `validate` reads of a host (the summary the inventory's one
    // evaluation splices in): the Flashpods host's declared values, in the
    // shape pantheros parses; null for a host without Flashpods.
    let summary =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/validate/summary.nix"))
            .unwrap();
    let apply = format!("cfg: ({summary}) cfg.config");
    let v = t.eval_ok("nixosConfigurations.hetzner-vps", &apply);
    let spec: pantheros::validate::spec::Flashpods = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("the summary does not parse ({e}): {v}"));
    assert_eq!(spec.wireguard.address, "10.0.0.1");
    assert_eq!(spec.wireguard.listen_port, 51820);
    assert!(!spec.wireguard.laptops.is_empty(), "{v}");
    assert_eq!((spec.api.port, spec.rsync.port), (8080, 873));
    assert_eq!(spec.rsync.module_name, "uploads");
    assert_eq!(spec.podman_socket, "/run/flashpods/podman.sock");
    let spire = spec.spire.expect("the example host runs SPIRE");
    assert_eq!(spire.trust_domain, "flashpods.local");
    assert_eq!(spire.job_types, ["worker", "agent"]);
    assert_eq!(spire.entries.len(), 2);
    assert_eq!(spire.agent_socket, "/run/spire/agent/public/api.sock");
    assert_eq!(spire.server_socket, "/run/spire/server/private/api.sock");
    assert!(
        spire.bin.starts_with("/nix/store/") && spire.bin.ends_with("/bin"),
        "{}",
        spire.bin
    );
    assert_eq!(t.eval_ok("nixosConfigurations.yoga", &apply), Value::Null);
}

/// The admin key placeholder is filled by whatever key the user writes
/// where the file invites it: in place of the example's own text (which
/// once kept every host "needs setup", since the check compared the list
/// with that same binding).
#[test]
fn a_key_written_in_place_of_the_example_fills_the_admin_key_placeholder() {
    let Some(t) = Tier::new() else { return };
    let before = t.host_report("ovh-vps").unwrap();
    assert_eq!(names(&before["placeholders"]), ["adminSshKeys"]);
    t.edit(
        "hosts/common/default.nix",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLEreplaceWithYourOwnAdminKey0000000000 example@pantheros",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ9userKeyUserKeyUserKeyUserKeyUserKeyUserKey0 me@laptop",
    );
    let after = t.host_report("ovh-vps").unwrap();
    assert_eq!(names(&after["placeholders"]), Vec::<String>::new());
}

#[test]
fn the_tier_fails_on_a_wrong_type_a_misspelt_option_a_missing_unit_and_a_throwing_placeholder() {
    // A wrong option type: nixpkgs declares networking.useDHCP a bool.
    let Some(t) = Tier::new() else { return };
    t.edit(
        "hosts/ovh-vps/default.nix",
        "networking.useDHCP = true;",
        "networking.useDHCP = \"yes\";",
    );
    let e = t.host_report("ovh-vps").unwrap_err();
    assert!(
        e.contains("networking.useDHCP") && e.contains("is not of type"),
        "{e}"
    );

    // A misspelt option does not exist.
    let Some(t) = Tier::new() else { return };
    t.edit(
        "hosts/ovh-vps/default.nix",
        "networking.useDHCP = true;",
        "networking.useDHCP = true;\n  services.opensh.enable = true;",
    );
    let e = t.host_report("ovh-vps").unwrap_err();
    assert!(
        e.contains("services.opensh") && e.contains("does not exist"),
        "{e}"
    );

    // A health check naming a unit the host does not have.
    let Some(t) = Tier::new() else { return };
    t.edit(
        "hosts/ovh-vps/default.nix",
        "healthChecks.services = [ \"sshd.service\" ];",
        "healthChecks.services = [ \"sshd.service\" \"nginx.service\" ];",
    );
    let r = t.host_report("ovh-vps").unwrap();
    assert_eq!(
        r["units"]["missing"],
        json!([{ "by": "pantheros.deployment.healthChecks.services", "unit": "nginx.service" }])
    );

    // A VM test waiting for a unit its node lacks.
    let Some(t) = Tier::new() else { return };
    t.edit(
        "tests/vm/deploy.nix",
        "target.wait_for_unit(\"sshd.service\")",
        "target.wait_for_unit(\"sshd.service\")\n    target.wait_for_unit(\"nginx.service\")",
    );
    let r = t.eval_ok(&format!("checks.{SYSTEM}.deploy"), "c: c.report");
    let absent: Vec<&Value> = r["waits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["exists"] == false)
        .collect();
    assert_eq!(
        absent,
        [&json!({ "node": "target", "unit": "nginx.service", "exists": false })]
    );

    // A driver method that does not exist (a typo the real test would only
    // hit after booting its VMs).
    t.edit(
        "tests/vm/deploy.nix",
        "target.wait_for_unit(\"nginx.service\")",
        "target.wait_for_units(\"nginx.service\")",
    );
    let r = t.eval_ok(&format!("checks.{SYSTEM}.deploy"), "c: c.report");
    let unknown: Vec<&Value> = r["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["known"] == false)
        .collect();
    assert_eq!(
        unknown,
        [&json!({ "node": "target", "method": "wait_for_units", "known": false })]
    );

    // A placeholder written the old way (a throw, not an example value)
    // stops the evaluation again: the tier catches it.
    let Some(t) = Tier::new() else { return };
    t.edit(
        "hosts/flashpods-network.nix",
        "publicKey = (factsOf \"yoga\").wireguardPublicKey or null;",
        "publicKey = throw \"set peers.yoga.publicKey\";",
    );
    let e = t.host_report("hetzner-vps").unwrap_err();
    assert!(e.contains("set peers.yoga.publicKey"), "{e}");
}
