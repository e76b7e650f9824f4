//! systemd hosts: a systemd-nspawn container on the LAN, booted from a
//! cached Debian rootfs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::*;

/// The password of systemd hosts' user `nopw`, whose sudo asks for it.
pub const NOPW_PASSWORD: &str = "nopw-sudo-secret-7731";

/// Where the systemd hosts' Debian rootfs is cached between runs.
pub fn systemd_cache() -> PathBuf {
    std::env::var_os("PANTHEROS_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/pantheros-test-world"))
}

/// The boot loader of a rebootable systemd host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootLoader {
    SystemdBoot,
    Grub,
}

/// A systemd host: systemd-nspawn booting the cached Debian rootfs (real
/// systemd as PID 1, sshd, nix 2.8) in its own network namespace on the
/// world's LAN, with a throw-away overlay so every boot starts pristine.
pub struct SystemdHost {
    pub name: String,
    pub ip: String,
    pub netns: String,
    pub machine: String,
    /// systemd-nspawn itself, or, for a rebootable host, machine.sh, which
    /// starts nspawn again at every boot.
    pub nspawn: Child,
    pub dir: PathBuf,
    /// A rebootable host's disk: the persistent overlay mounted here.
    pub disk: Option<PathBuf>,
}

impl SystemdHost {
    /// The systemd-nspawn process of the current boot.
    fn nspawn_pid(&self) -> String {
        if self.disk.is_some() {
            fs::read_to_string(self.dir.join("nspawn.pid"))
                .unwrap_or_default()
                .trim()
                .to_string()
        } else {
            self.nspawn.id().to_string()
        }
    }

    /// The container's init (nspawn runs under `setsid`: its child).
    fn init_pid(&self) -> String {
        let nspawn = self.nspawn_pid();
        let children = stdout(&try_sh(&["pgrep", "-P", &nspawn]));
        match children.split_whitespace().next() {
            Some(p) => p.to_string(),
            None => nspawn,
        }
    }

    /// Run a command inside the container (all its namespaces), without SSH.
    pub fn exec(&self, argv: &[&str]) -> Output {
        let pid = self.init_pid();
        let mut v = vec!["nsenter", "-t", &pid, "-a", "--"];
        v.extend_from_slice(argv);
        try_sh(&v)
    }

    /// The container's root directory, as this machine reaches it
    /// (`/proc/<its init>/root`): files copied there land inside it.
    pub fn root_dir(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.init_pid()))
    }

    /// A rebootable host's boots so far, as machine.sh logged them: one
    /// `boot N HOW ENTRY TOPLEVEL` line per boot (HOW: oneshot, default or
    /// none), an `exit N RC` line when it ended.
    pub fn boots(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("boots"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The toplevels a rebootable host booted, in order ("-": none).
    pub fn booted_toplevels(&self) -> Vec<String> {
        self.boots()
            .iter()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&"boot")).then(|| f.get(4).unwrap_or(&"-").to_string())
            })
            .collect()
    }

    /// Pull a rebootable host's plug and put it back: its init is killed
    /// (nothing shuts down cleanly) and machine.sh boots it again, as a
    /// provider's reset does.
    pub fn power_cycle(&self) {
        assert!(self.disk.is_some(), "{} is not rebootable", self.name);
        let init = self.init_pid();
        let _ = try_sh(&["kill", "-KILL", &init]);
    }

    /// An argv that power-cycles this rebootable host from outside (what
    /// a provider's reset does), for the Hetzner fake's on-reset.
    pub fn power_cycle_argv(&self) -> Vec<String> {
        vec![
            "sh".into(),
            "-c".into(),
            format!(
                "kill -KILL $(pgrep -P \"$(cat {})\" | head -n 1)",
                self.dir.join("nspawn.pid").display()
            ),
        ]
    }

    pub(crate) fn stop(&mut self) {
        if self.disk.is_some() {
            let _ = fs::write(self.dir.join("power-off"), "");
        }
        let pid = self.nspawn_pid();
        // nspawn asks the container's systemd to halt on SIGTERM.
        let _ = try_sh(&["kill", "-TERM", &pid]);
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        if let Some(disk) = &self.disk {
            let _ = try_sh(&["umount", "-l", disk.to_str().unwrap_or_default()]);
        }
        for h in ["systemd", "unified"] {
            let d = format!("/sys/fs/cgroup/{h}/{}", self.machine);
            if Path::new(&d).exists() {
                let _ = Command::new("find")
                    .args([&d, "-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                    .status();
            }
        }
    }
}

impl World {
    /// A world that can also run systemd hosts: needs systemd-nspawn and the
    /// cached rootfs (built on first use, about a minute).
    pub fn with_systemd() -> Option<World> {
        let w = World::new()?;
        if which("systemd-nspawn").is_none() {
            cannot_run("systemd-nspawn is not installed (apt-get install systemd-container)");
            return None;
        }
        if !Path::new("/sys/fs/cgroup/systemd").exists() {
            cannot_run(
                "/sys/fs/cgroup/systemd is missing: systemd hosts need the cgroup v1 hybrid layout",
            );
            return None;
        }
        let script = project_root().join("crates/testworld/systemd/build-rootfs.sh");
        let out = try_sh(&[
            "bash",
            script.to_str().unwrap(),
            systemd_cache().to_str().unwrap(),
        ]);
        if !out.status.success() {
            cannot_run(&format!(
                "building the systemd host rootfs failed: {}",
                stderr(&out)
            ));
            return None;
        }
        Some(w)
    }

    /// Build (once, cached beside bookworm's) the rootfs of another Debian
    /// release for systemd hosts: trixie's carries Nix 2.26. False, said
    /// as not run (a failure under CI), when it cannot be built.
    pub fn prepare_systemd_release(&self, release: &str) -> bool {
        let script = project_root().join("crates/testworld/systemd/build-rootfs.sh");
        let cache = systemd_cache().join(release);
        let out = try_sh(&[
            "bash",
            script.to_str().unwrap(),
            cache.to_str().unwrap(),
            release,
        ]);
        if !out.status.success() {
            cannot_run(&format!(
                "building the {release} systemd host rootfs failed: {}",
                stderr(&out)
            ));
            return false;
        }
        true
    }

    /// Boot a systemd host `name`, reachable as `ssh -F cfg name` (root) and
    /// as users `deploy` (password-less sudo) and `nopw` (sudo wants a
    /// password: [`NOPW_PASSWORD`]).
    pub fn add_systemd_host(&mut self, name: &str) -> &SystemdHost {
        self.add_systemd_host_on(name, "bookworm")
    }

    /// [`World::add_systemd_host`] on the rootfs of Debian `release` (one
    /// [`World::prepare_systemd_release`] made, or bookworm's own).
    pub fn add_systemd_host_on(&mut self, name: &str, release: &str) -> &SystemdHost {
        self.boot_systemd_host(name, release, None)
    }

    /// A systemd host that can reboot: its disk persists across boots (an
    /// overlay of the cached rootfs, kept in the world), it has systemd-boot
    /// (the stand-in `bootctl` and firmware of systemd/machine.sh choose
    /// what each boot runs: a one-shot entry once, else the default), and a
    /// reboot inside it or [`SystemdHost::power_cycle`] boots it again.
    pub fn add_rebootable_host(&mut self, name: &str) -> &SystemdHost {
        self.boot_systemd_host(name, "bookworm", Some(BootLoader::SystemdBoot))
    }

    /// [`World::add_rebootable_host`] with GRUB as NixOS installs it
    /// instead of systemd-boot; None (said as not run) without this
    /// machine's grub-editenv, which the stand-in firmware reads it with.
    pub fn add_rebootable_grub_host(&mut self, name: &str) -> Option<&SystemdHost> {
        if which("grub-editenv").is_none() {
            cannot_run("grub-editenv is not installed (bash scripts/setup: grub-common)");
            return None;
        }
        Some(self.boot_systemd_host(name, "bookworm", Some(BootLoader::Grub)))
    }

    fn boot_systemd_host(
        &mut self,
        name: &str,
        release: &str,
        loader: Option<BootLoader>,
    ) -> &SystemdHost {
        let (ns, ip) = self.new_slot("s");
        let hdir = self.path().join("systemd").join(name);
        fs::create_dir_all(&hdir).unwrap();
        let auth = hdir.join("authorized_keys");
        fs::copy(self.client_key.with_extension("pub"), &auth).unwrap();
        fs::set_permissions(&auth, fs::Permissions::from_mode(0o644)).unwrap();
        let tmpfiles = hdir.join("pantheros-base-system.conf");
        fs::write(&tmpfiles, boot_tmpfiles()).unwrap();
        fs::set_permissions(&tmpfiles, fs::Permissions::from_mode(0o644)).unwrap();
        let machine = format!("{}-{}", self.id, name);
        let rootfs = if release == "bookworm" {
            systemd_cache().join("rootfs")
        } else {
            systemd_cache().join(release).join("rootfs")
        };
        let a = auth.display();
        let t = tmpfiles.display();
        let mut nspawn_args = format!(
            "--boot --machine={machine} --hostname={name} --register=no --keep-unit --capability=CAP_NET_ADMIN \
             --network-namespace-path=/run/netns/{ns} --console=passive --bind-ro={a}:/root/.ssh/authorized_keys \
             --bind-ro={a}:/home/deploy/.ssh/authorized_keys --bind-ro={a}:/home/nopw/.ssh/authorized_keys"
        );
        let cgroup = format!(
            "for h in systemd unified; do mkdir -p /sys/fs/cgroup/$h/{machine}; echo $$ > /sys/fs/cgroup/$h/{machine}/cgroup.procs; done; \
             export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1;"
        );
        let (script, disk) = if let Some(loader) = loader {
            let disk = hdir.join("disk");
            for d in ["upper", "work", "disk"] {
                fs::create_dir_all(hdir.join(d)).unwrap();
            }
            sh(&[
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                &format!(
                    "lowerdir={},upperdir={},workdir={}",
                    rootfs.display(),
                    hdir.join("upper").display(),
                    hdir.join("work").display()
                ),
                disk.to_str().unwrap(),
            ]);
            match loader {
                // systemd-boot, installed: an ESP with an empty loader.
                BootLoader::SystemdBoot => {
                    fs::create_dir_all(disk.join("boot/EFI/systemd")).unwrap();
                    fs::create_dir_all(disk.join("boot/loader/entries")).unwrap();
                }
                // GRUB: its directory, filled by the first activation.
                BootLoader::Grub => fs::create_dir_all(disk.join("boot/grub")).unwrap(),
            }
            let bootctl = project_root().join("crates/testworld/systemd/bootctl");
            let machine_sh = project_root().join("crates/testworld/systemd/machine.sh");
            nspawn_args.push_str(&format!(
                " --directory={} --bind-ro={}:/usr/local/sbin/bootctl --bind-ro={}/boot-tmpfiles.conf:/etc/tmpfiles.d/pantheros-base-system.conf",
                disk.display(),
                bootctl.display(),
                hdir.display()
            ));
            (
                format!(
                    "{cgroup} exec bash {} {} {} {t} {ns} -- {nspawn_args}",
                    machine_sh.display(),
                    hdir.display(),
                    disk.display()
                ),
                Some(disk),
            )
        } else {
            nspawn_args.push_str(&format!(
                " --directory={} --volatile=overlay --bind-ro={t}:/etc/tmpfiles.d/pantheros-base-system.conf",
                rootfs.display()
            ));
            (
                format!("{cgroup} exec setsid systemd-nspawn {nspawn_args}"),
                None,
            )
        };
        // Read before the container starts: a panic after it would leave
        // the container running with no one to stop it.
        let hostkey = fs::read_to_string(rootfs.join("etc/ssh/ssh_host_ed25519_key.pub"))
            .unwrap_or_else(|e| {
                panic!("the {release} rootfs has no SSH host key ({e}): rebuild it")
            });
        let log = fs::File::create(hdir.join("console.log")).unwrap();
        let nspawn = Command::new("bash")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start systemd-nspawn");
        // Pin the host key and describe the host for ssh.
        self.describe_host(name, &ip, &hostkey);
        let mut host = SystemdHost {
            name: name.into(),
            ip,
            netns: ns,
            machine,
            nspawn,
            dir: hdir.clone(),
            disk,
        };
        let start = Instant::now();
        loop {
            if self.ssh(name, &["true"]).status.success() {
                break;
            }
            if let Ok(Some(st)) = host.nspawn.try_wait() {
                panic!(
                    "systemd-nspawn for {name} exited ({st}):\n{}",
                    fs::read_to_string(hdir.join("console.log")).unwrap_or_default()
                );
            }
            if start.elapsed() > Duration::from_secs(60) {
                host.stop();
                panic!(
                    "{name} did not accept ssh within 60 s:\n{}",
                    fs::read_to_string(hdir.join("console.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let st = self.ssh(name, &["systemctl", "is-system-running", "--wait"]);
        assert_eq!(
            stdout(&st).trim(),
            "running",
            "{name} did not boot cleanly: {}",
            stderr(&st)
        );
        self.systemd_hosts.push(host);
        self.systemd_hosts.last().unwrap()
    }

    /// Make systemd host `name` a deployer: the pantheros binary at
    /// /usr/local/bin/pantheros, and this world's SSH client files (key,
    /// config, known hosts) and `dirs` at the same paths as here, so a
    /// fleet written for this machine deploys from there unchanged.
    pub fn seat_deployer_on(&self, name: &str, dirs: &[&Path]) {
        let root = self.systemd_host(name).root_dir();
        let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
        let bin = inside(Path::new("/usr/local/bin/pantheros"));
        fs::create_dir_all(bin.parent().unwrap()).unwrap();
        fs::copy(pantheros_bin(), &bin)
            .unwrap_or_else(|e| panic!("copy pantheros into {name}: {e}"));
        let client = self.client_key.parent().unwrap().to_path_buf();
        for d in std::iter::once(client.as_path()).chain(dirs.iter().copied()) {
            let to = inside(d);
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            sh(&[
                "cp",
                "-a",
                d.to_str().unwrap(),
                to.parent().unwrap().to_str().unwrap(),
            ]);
        }
    }

    /// Make systemd host `name` a server with IPv6 alone, as Hetzner's
    /// IPv6-only servers are: a /64 of its own (`NET::/64`, returned), the
    /// host at its first address (`NET::1`, where Hetzner's images put it),
    /// the client on the same link at `NET::fe`, and the host's IPv4
    /// address removed. Its sshd (Debian's, listening on every address)
    /// answers on the IPv6 one only from now on.
    pub fn make_systemd_ipv6_only(&self, name: &str) -> String {
        let host = self.systemd_host(name);
        let index = host.ip.rsplit('.').next().unwrap_or("2").to_string();
        let net = format!("{}:{index}::", self.ipv6_prefix());
        sh(&[
            "ip",
            "-n",
            &self.client_ns,
            "addr",
            "add",
            &format!("{net}fe/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        crate::world::swap_ipv4_for_ipv6(&host.netns, &host.ip, &format!("{net}1"));
        format!("{net}/64")
    }

    /// `ssh name sh -c SCRIPT`, panicking on failure; returns stdout.
    #[track_caller]
    pub fn ssh_ok(&self, host: &str, script: &str) -> String {
        let out = self.ssh(host, &[script]);
        if !out.status.success() {
            panic!(
                "ssh {host} {script:?} failed ({}): {}{}",
                out.status,
                stdout(&out),
                stderr(&out)
            );
        }
        stdout(&out)
    }
}
