//! The fixture fleet: flakes, toplevels and the pantheros binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::*;

/// A copy of the fixture fleet flake in a fresh folder (outside any git
/// checkout, so nix reads it as a `path:` flake and sees every file).
pub fn fixture_flake(into: &Path) -> PathBuf {
    let src = project_root().join("tests/fixtures/fleet");
    let dst = into.join("fleet");
    fs::create_dir_all(&dst).unwrap();
    for e in fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    copy_boot_watchdog(&dst);
    dst
}

/// The deployment module's boot watchdog script, which every fixture
/// system carries as its `pantheros-boot-watchdog` unit (as the module
/// gives every NixOS system): one script for both.
fn copy_boot_watchdog(dir: &Path) {
    fs::copy(
        project_root().join("modules/lib/boot-watchdog.sh"),
        dir.join("boot-watchdog.sh"),
    )
    .unwrap();
}

/// Build `nixosConfigurations.<host>.config.system.build.toplevel` of a
/// flake with the machine's nix and return its store path.
pub fn build_toplevel(flake: &Path, host: &str) -> String {
    let attr = format!(
        "{}#nixosConfigurations.{host}.config.system.build.toplevel",
        flake.display()
    );
    let out = sh(&[
        "nix",
        "--extra-experimental-features",
        "nix-command flakes",
        "build",
        "--option",
        "substituters",
        "",
        "--no-link",
        "--json",
        &attr,
    ]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("nix build --json output");
    v[0]["outputs"]["out"]
        .as_str()
        .expect("an out path")
        .to_string()
}

/// A host of a generated fixture fleet.
#[derive(Clone, Debug)]
pub struct FixtureHost {
    pub name: String,
    pub generation: u32,
    /// (pname, version) packages in the system closure.
    pub packages: Vec<(String, String)>,
    pub fail_switch: bool,
    pub block_ssh: bool,
    /// From boot on, new SSH connections are refused (a system whose sshd
    /// never comes up; systemd hosts).
    pub ssh_dead_at_boot: bool,
    /// The boot watchdog's unit fails at once.
    pub watchdog_broken: bool,
    /// No boot watchdog (a system without the deployment module).
    pub no_watchdog: bool,
    /// A unit that never finishes starting (the host stays "starting").
    pub hang_boot: bool,
    /// The activation script fails: the switch goes on, then exits 2.
    pub fail_activate_script: bool,
    pub fail_unit: bool,
    pub switch_seconds: u32,
    pub build_seconds: u32,
    /// KiB of random data in the closure (a slow copy).
    pub blob_kib: u32,
    /// KiB of data in one store path that every host with the same salt
    /// shares (`(KiB, salt)`).
    pub shared_blob: Option<(u32, String)>,
    /// KiB the activation prints.
    pub output_kib: u32,
    /// A unit that fails while /var/lib/pantheros-fixture/break-flaky
    /// exists (systemd hosts).
    pub flaky_unit: bool,
    /// `system.switch.inhibitors` (None: the fixture's default, systemd).
    pub inhibitors: Option<Vec<(String, String)>>,
    /// A pre-switch check that always fails.
    pub fail_pre_switch_check: bool,
    /// `init-interface-version` (None: the default, as the base system's).
    pub init_interface: Option<String>,
    /// The kernel version of the kernel, initrd and modules links.
    pub kernel: Option<String>,
    /// NixOS `warnings` the configuration declares.
    pub warnings: Vec<String>,
    /// A warning printed while the toplevel is evaluated (`lib.warn`'s
    /// way on this Nix: `builtins.trace "warning: …"`), outside `warnings`.
    pub trace_warning: Option<String>,
    /// A Nix expression for the text added to the system's etc/motd (the
    /// flake's `readFacts PATH` in scope), e.g. what a fact says.
    pub motd: Option<String>,
    /// Nix attrset body for `pantheros.deployment` (without braces).
    pub deployment: String,
}

impl FixtureHost {
    pub fn new(name: &str, generation: u32) -> Self {
        FixtureHost {
            name: name.into(),
            generation,
            packages: vec![("hello".into(), "2.12".into())],
            fail_switch: false,
            block_ssh: false,
            ssh_dead_at_boot: false,
            watchdog_broken: false,
            no_watchdog: false,
            hang_boot: false,
            fail_activate_script: false,
            fail_unit: false,
            switch_seconds: 0,
            build_seconds: 0,
            blob_kib: 0,
            shared_blob: None,
            output_kib: 0,
            flaky_unit: false,
            inhibitors: None,
            fail_pre_switch_check: false,
            init_interface: None,
            kernel: None,
            warnings: vec![],
            trace_warning: None,
            motd: None,
            deployment: String::new(),
        }
    }
}

/// Write a fixture flake (flake.nix, flake.lock, system.nix and its
/// activation program) into `dir`.
pub fn write_fleet(dir: &Path, hosts: &[FixtureHost]) {
    fs::create_dir_all(dir).unwrap();
    for f in [
        "system.nix",
        "switch-to-configuration.sh",
        "pre-switch-check.sh",
    ] {
        fs::copy(
            project_root().join("tests/fixtures/fleet").join(f),
            dir.join(f),
        )
        .unwrap();
    }
    copy_boot_watchdog(dir);
    fs::write(
        dir.join("flake.lock"),
        r#"{"nodes":{"root":{}},"root":"root","version":7}"#,
    )
    .unwrap();
    let mut body = String::new();
    for h in hosts {
        let pkgs: Vec<String> = h
            .packages
            .iter()
            .map(|(p, v)| format!("{{ pname = \"{p}\"; version = \"{v}\"; }}"))
            .collect();
        let mut extra = String::new();
        if let Some(inh) = &h.inhibitors {
            let kv: Vec<String> = inh
                .iter()
                .map(|(k, v)| format!("\"{k}\" = \"{v}\";"))
                .collect();
            extra.push_str(&format!(" inhibitors = {{ {} }};", kv.join(" ")));
        }
        if let Some(i) = &h.init_interface {
            extra.push_str(&format!(" initInterface = \"{i}\";"));
        }
        if let Some((kib, salt)) = &h.shared_blob {
            extra.push_str(&format!(
                " sharedBlobKiB = {kib}; sharedBlobSalt = \"{salt}\";"
            ));
        }
        if let Some(k) = &h.kernel {
            extra.push_str(&format!(" kernel = \"{k}\";"));
        }
        if let Some(m) = &h.motd {
            extra.push_str(&format!(" motd = {m};"));
        }
        let warnings: Vec<String> = h
            .warnings
            .iter()
            .map(|w| format!("\"{}\"", w.replace('"', "\\\"")))
            .collect();
        let trace = match &h.trace_warning {
            Some(t) => format!("builtins.trace \"warning: {}\" ", t.replace('"', "\\\"")),
            None => String::new(),
        };
        body.push_str(&format!(
            "    {name} = {{ config = {{\n      warnings = [ {warn} ];\n      system.build.toplevel = {trace}mkSystem {{ name = \"{name}\"; generation = \"{g}\"; \
             packages = [ {pkgs} ]; failSwitch = {fs}; blockSsh = {bs}; failUnit = {fu}; sshDeadAtBoot = {sd}; watchdogBroken = {wb}; noWatchdog = {nw}; hangBoot = {hb}; failActivateScript = {fa}; flakyUnit = {fl}; failPreSwitchCheck = {fp}; \
             switchSeconds = {ss}; buildSeconds = {bsec}; blobKiB = {blob}; outputKiB = {out};{extra} }};\n      \
             pantheros.deployment = {{ {dep} }};\n    }}; }};\n",
            warn = warnings.join(" "),
            fl = h.flaky_unit,
            fp = h.fail_pre_switch_check,
            name = h.name,
            g = h.generation,
            pkgs = pkgs.join(" "),
            fs = h.fail_switch,
            bs = h.block_ssh,
            sd = h.ssh_dead_at_boot,
            wb = h.watchdog_broken,
            nw = h.no_watchdog,
            hb = h.hang_boot,
            fa = h.fail_activate_script,
            fu = h.fail_unit,
            ss = h.switch_seconds,
            bsec = h.build_seconds,
            blob = h.blob_kib,
            out = h.output_kib,
            dep = h.deployment,
        ));
    }
    fs::write(
        dir.join("flake.nix"),
        format!(
            "{{\n  outputs = {{ self }}:\n    let\n      mkSystem = import ./system.nix;\n      \
             # What modules/lib/facts.nix reads.\n      \
             readFacts = path: if builtins.pathExists path then builtins.mapAttrs (_: f: f.value) (builtins.fromJSON (builtins.readFile path)).facts else {{ }};\n    \
             in {{\n  nixosConfigurations = {{\n{body}  }};\n  }};\n}}\n"
        ),
    )
    .unwrap();
}

/// The `pantheros` binary under test.
pub fn pantheros_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PANTHEROS_TEST_BIN") {
        return PathBuf::from(p);
    }
    // The running test binary (target/<profile>/deps/it-…) or example
    // (target/<profile>/examples/demo) sits below the pantheros binary
    // that cargo built beside it in the same profile.
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("pantheros"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| project_root().join("target/debug/pantheros"))
}

impl World {
    /// Deployment metadata that reaches `host` through this world's ssh config.
    pub fn deployment_for(&self, host: &str, extra: &str) -> String {
        format!(
            "targetHost = \"{host}\"; sshOptions = [ \"-F\" \"{}\" ]; {extra}",
            self.ssh_config.display()
        )
    }

    /// Run `pantheros ARGS` from the client namespace, in `dir`.
    pub fn pantheros(&self, dir: &Path, args: &[&str]) -> Output {
        self.pantheros_command(dir, args)
            .output()
            .expect("run pantheros")
    }

    /// `pantheros ARGS` in the client namespace, in `dir`, logging under
    /// the world and never reading a flake from the caller's environment.
    pub(crate) fn pantheros_command(&self, dir: &Path, args: &[&str]) -> Command {
        let bin = pantheros_bin();
        let mut argv = vec![bin.to_str().unwrap()];
        argv.extend_from_slice(args);
        let mut c = self.client(&argv);
        c.current_dir(dir)
            .env("PANTHEROS_LOG_DIR", self.path().join("logs"))
            .env_remove("PANTHEROS_FLAKE");
        c
    }
}
