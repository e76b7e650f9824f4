//! The world: a private LAN, the client namespace the deployer runs in,
//! and its teardown.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::*;

/// A private LAN with a client namespace and light hosts.
pub struct World {
    pub id: String,
    pub dir: tempfile::TempDir,
    pub lan: String,
    pub client_ns: String,
    pub subnet: String,
    pub hosts: Vec<LightHost>,
    pub systemd_hosts: Vec<SystemdHost>,
    /// Namespaces made by a test for its own purposes (torn down with the world).
    pub extra_netns: Vec<String>,
    pub client_key: PathBuf,
    pub ssh_config: PathBuf,
    pub known_hosts: PathBuf,
    pub(crate) next_index: u32,
}

impl World {
    /// Build an empty world (LAN + client namespace), or say why not.
    pub fn new() -> Option<World> {
        if let Some(why) = missing_prerequisite() {
            cannot_run(&why);
            return None;
        }
        fs::create_dir_all(STATE_DIR).expect("create the test world's state directory");
        reap_stale_worlds();
        // Claim a world number: `ip netns add` is atomic, so two test
        // processes never get the same one.
        let mut claimed = None;
        for n in 1..=250u32 {
            let lan = format!("{PREFIX}{n}-lan");
            if try_sh(&["ip", "netns", "add", &lan]).status.success() {
                claimed = Some(n);
                break;
            }
        }
        let Some(n) = claimed else {
            cannot_run("no free test world number (250 worlds exist?)");
            return None;
        };
        let id = format!("{PREFIX}{n}");
        // Host namespaces of an earlier world with this number (one whose
        // setup failed halfway) are stale: this world owns the number now.
        let lan_ns = format!("{id}-lan");
        for line in stdout(&try_sh(&["ip", "netns", "list"])).lines() {
            let ns = line.split_whitespace().next().unwrap_or("");
            if ns.starts_with(&format!("{id}-")) && ns != lan_ns {
                destroy_netns(ns);
            }
        }
        fs::write(
            format!("{STATE_DIR}/{id}.owner"),
            std::process::id().to_string(),
        )
        .expect("record the world's owner");
        let dir = tempfile::Builder::new()
            .prefix(&format!("pantheros-{id}-"))
            .tempdir()
            .expect("make the world's scratch folder");
        let lan = format!("{id}-lan");
        let subnet = format!("10.251.{n}");
        let mut w = World {
            client_ns: format!("{id}-client"),
            id,
            lan,
            subnet,
            hosts: vec![],
            systemd_hosts: vec![],
            extra_netns: vec![],
            client_key: dir.path().join("client/id_ed25519"),
            ssh_config: dir.path().join("client/ssh_config"),
            known_hosts: dir.path().join("client/known_hosts"),
            dir,
            next_index: 10,
        };
        sh(&["ip", "-n", &w.lan, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &w.lan, "link", "set", "br0", "up"]);
        sh(&["ip", "-n", &w.lan, "link", "set", "lo", "up"]);
        let client_ns = w.client_ns.clone();
        let client_ip = format!("{}.2", w.subnet);
        w.plug(&client_ns, "c", &client_ip);
        fs::create_dir_all(w.dir.path().join("client")).unwrap();
        keygen(&w.client_key, "pantheros-test-client");
        fs::write(&w.ssh_config, "").unwrap();
        fs::write(&w.known_hosts, "").unwrap();
        Some(w)
    }

    /// Make `ns` and plug its `eth0` into the LAN with address `ip`.
    /// The next host's network namespace and address, plugged into the LAN
    /// (`kind`: "h" light host, "s" systemd host, in the LAN-side veth name).
    pub(crate) fn new_slot(&mut self, kind: &str) -> (String, String) {
        let index = self.next_index;
        self.next_index += 1;
        let ns = format!("{}-{}", self.id, index);
        let ip = format!("{}.{}", self.subnet, index);
        self.plug(&ns, &format!("{kind}{index}"), &ip);
        (ns, ip)
    }

    pub(crate) fn plug(&mut self, ns: &str, tag: &str, ip: &str) {
        sh(&["ip", "netns", "add", ns]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        let n = self.id.trim_start_matches(PREFIX);
        let peer = format!("v{n}{tag}");
        sh(&[
            "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", &peer, "netns",
            &self.lan,
        ]);
        sh(&["ip", "-n", &self.lan, "link", "set", &peer, "master", "br0"]);
        sh(&["ip", "-n", &self.lan, "link", "set", &peer, "up"]);
        sh(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Pin `host_key` (a .pub line) for `ip` and add `Host name` to the
    /// world's ssh config (root, the client key, strict host key checking).
    pub(crate) fn describe_host(&self, name: &str, ip: &str, host_key: &str) {
        let key = host_key
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let mut kh = fs::OpenOptions::new()
            .append(true)
            .open(&self.known_hosts)
            .unwrap();
        writeln!(kh, "{ip} {key}").unwrap();
        let mut sc = fs::OpenOptions::new()
            .append(true)
            .open(&self.ssh_config)
            .unwrap();
        writeln!(
            sc,
            "Host {name}\n  HostName {ip}\n  User root\n  IdentityFile {id}\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {kh}\n  StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 3\n  LogLevel ERROR\n",
            id = self.client_key.display(),
            kh = self.known_hosts.display(),
        )
        .unwrap();
    }

    /// A command run from the client namespace (the deployer's seat). It
    /// keeps the machine's own mounts, so it sees the real /nix store.
    pub fn client(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.client_ns))
            .arg("--")
            .args(argv)
            .stdin(Stdio::null());
        c
    }

    /// Run from the client namespace and return the output (not checked).
    pub fn client_exec(&self, argv: &[&str]) -> Output {
        self.client(argv)
            .output()
            .expect("run a command in the client namespace")
    }

    /// `ssh -F <world config> HOST CMD...` from the client namespace.
    pub fn ssh(&self, host: &str, cmd: &[&str]) -> Output {
        let cfg = self.ssh_config.to_str().unwrap().to_string();
        let mut argv = vec!["ssh", "-F", &cfg, host];
        argv.extend_from_slice(cmd);
        self.client_exec(&argv)
    }

    /// Pin a freshly made, wrong host key for `host` (as after a reinstall
    /// or an attack); returns the known_hosts as it was, to restore.
    pub fn pin_wrong_host_key(&self, host: &str) -> String {
        let before = fs::read_to_string(&self.known_hosts).unwrap();
        let rogue = self.path().join(format!("rogue-{host}"));
        keygen(&rogue, "rogue");
        let key = fs::read_to_string(rogue.with_extension("pub")).unwrap();
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        let ip = &self.host(host).ip;
        let kept: String = before
            .lines()
            .filter(|l| l.split_whitespace().next() != Some(ip.as_str()))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&self.known_hosts, format!("{kept}{ip} {}\n", key.join(" "))).unwrap();
        before
    }

    /// `NIX_SSHOPTS` that makes nix's ssh use this world's config.
    pub fn nix_sshopts(&self) -> String {
        format!("-F {}", self.ssh_config.display())
    }

    /// Give light host `name`'s root a `~/.bashrc` (read by the login shell
    /// of every SSH session to it): how a costly one (pyenv, nvm) slows a
    /// deploy is measured with it.
    pub fn set_login_rc(&self, name: &str, text: &str) {
        let rc = self.path().join("hosts").join(name).join("root/.bashrc");
        fs::write(rc, text).unwrap();
    }

    /// Start a light host `name` running sshd, reachable as `ssh -F cfg name`.
    pub fn add_host(&mut self, name: &str) -> &LightHost {
        let (ns, ip) = self.new_slot("h");
        let hdir = self.path().join("hosts").join(name);
        for sub in ["nix", "etc-nix", "ssh", "state", "root"] {
            fs::create_dir_all(hdir.join(sub)).unwrap();
        }
        // root's own home, so this machine's ~/.bashrc (which every SSH
        // session's login shell reads) is not the host's: empty unless a
        // test or bench gives it one (set_login_rc).
        fs::write(hdir.join("root/.bashrc"), "").unwrap();
        fs::write(hdir.join("etc-nix/nix.conf"), NIX_SETTINGS).unwrap();
        fs::write(hdir.join("boot_id"), new_boot_id()).unwrap();
        // The anchor: sh sets up the private mounts (the host's own /run,
        // /nix, /etc/nix, /var/lib/pantheros and boot id), then execs sleep,
        // so its pid is the anchor's for as long as the host lives. (Inside
        // a container /proc/sys may refuse the boot id's mount: then the
        // file goes, and only reboot_host, which needs it, refuses to run.)
        let script = format!(
            "set -e; hostname {name}; mount -t tmpfs -o mode=755 tmpfs /run; mkdir -m 755 /run/sshd; \
             mount --bind {nix} /nix; mount --bind {etc} /etc/nix; mkdir -p /var/lib/pantheros; \
             mount --bind {state} /var/lib/pantheros; mount --bind {root} /root; \
             mount --bind {boot} /proc/sys/kernel/random/boot_id 2>/dev/null || rm -f {boot}; \
             {base}; exec sleep infinity",
            base = boot_script(),
            root = hdir.join("root").display(),
            nix = hdir.join("nix").display(),
            etc = hdir.join("etc-nix").display(),
            state = hdir.join("state").display(),
            boot = hdir.join("boot_id").display(),
        );
        let mut anchor = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "unshare",
                "--uts",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the host's anchor");
        let pid = anchor.id();
        let start = Instant::now();
        loop {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sleep" {
                break;
            }
            if let Ok(Some(status)) = anchor.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = anchor.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                panic!("the anchor of {name} exited ({status}): {err}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "anchor of {name} did not come up"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // sshd with a host key made for this run, pinned in known_hosts.
        let sdir = hdir.join("ssh");
        let hostkey = sdir.join("ssh_host_ed25519_key");
        keygen(&hostkey, name);
        let client_pub = fs::read_to_string(self.client_key.with_extension("pub")).unwrap();
        fs::write(sdir.join("authorized_keys"), &client_pub).unwrap();
        fs::set_permissions(&sdir, fs::Permissions::from_mode(0o700)).unwrap();
        let cfg = sdir.join("sshd_config");
        fs::write(
            &cfg,
            format!(
                "Port 22\nListenAddress {ip}\nHostKey {hk}\nAuthorizedKeysFile {ak}\nPidFile /run/sshd.pid\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\nMaxStartups 100\n\
                 SetEnv PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\n",
                hk = hostkey.display(),
                ak = sdir.join("authorized_keys").display(),
            ),
        )
        .unwrap();
        let host_key_pub = fs::read_to_string(hostkey.with_extension("pub")).unwrap();
        let mut host = LightHost {
            name: name.to_string(),
            ip: ip.clone(),
            netns: ns,
            anchor,
            dir: hdir.clone(),
            sshd: None,
            host_key_pub: host_key_pub.clone(),
        };
        let check = host.exec(&[SSHD, "-t", "-f", cfg.to_str().unwrap()]);
        assert!(
            check.status.success(),
            "sshd -t for {name}: {}",
            stderr(&check)
        );
        host.start_sshd(&self.client_ns);
        // Pin the host key and describe the host for ssh.
        self.describe_host(name, &ip, &host_key_pub);
        self.hosts.push(host);
        self.hosts.last().unwrap()
    }

    /// Reboot light host `name` as far as a deploy can tell: every process
    /// on it dies (sshd, a running activation and its watchdog), /run starts
    /// empty, the boot id changes, the boot default becomes the running
    /// system (`/run/current-system`, as NixOS's stage 2 sets it), and sshd
    /// comes back. Its disk (/nix, /var/lib/pantheros) keeps what it had.
    pub fn reboot_host(&mut self, name: &str) {
        let client_ns = self.client_ns.clone();
        let host = self.light_host_mut(name);
        assert!(
            host.dir.join("boot_id").exists(),
            "{name}: this machine would not let the light host have its own boot id \
             (/proc/sys refused the mount), so a reboot cannot be simulated"
        );
        let anchor = host.anchor_pid().to_string();
        for sig in ["-TERM", "-KILL"] {
            let pids = stdout(&try_sh(&["ip", "netns", "pids", &host.netns]));
            let others: Vec<&str> = pids.split_whitespace().filter(|p| *p != anchor).collect();
            if others.is_empty() {
                break;
            }
            let mut argv = vec!["kill", sig];
            argv.extend(others.iter().copied());
            let _ = try_sh(&argv);
            std::thread::sleep(Duration::from_millis(200));
        }
        if let Some(mut old) = host.sshd.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        fs::write(host.dir.join("boot_id"), new_boot_id()).unwrap();
        host.exec_ok(&[
            "sh",
            "-c",
            &format!(
                "umount -l /run && mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 755 /run/sshd && {}",
                boot_script()
            ),
        ]);
        host.start_sshd(&client_ns);
    }

    /// This world's IPv6 prefix (`fd00:X:Y`, from its IPv4 subnet), unique
    /// among the worlds running at once.
    pub(crate) fn ipv6_prefix(&self) -> String {
        let octets: Vec<u32> = self
            .subnet
            .split('.')
            .filter_map(|o| o.parse().ok())
            .collect();
        format!(
            "fd00:{:x}:{:x}",
            octets.get(1).copied().unwrap_or(0),
            octets.get(2).copied().unwrap_or(0)
        )
    }

    /// Kill a light host's sshd and every SSH session it serves (as a
    /// crash or an OOM kill of sshd would): open connections drop, new ones
    /// are refused until [`World::start_sshd`].
    pub fn kill_sshd(&mut self, name: &str) {
        let host = self.light_host_mut(name);
        if let Some(mut old) = host.sshd.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        let pids = stdout(&try_sh(&["ip", "netns", "pids", &host.netns]));
        for pid in pids.split_whitespace() {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sshd" {
                let _ = try_sh(&["kill", "-KILL", pid]);
            }
        }
    }

    /// Start a light host's sshd again (after [`World::kill_sshd`]).
    pub fn start_sshd(&mut self, name: &str) {
        let client_ns = self.client_ns.clone();
        self.light_host_mut(name).start_sshd(&client_ns);
    }

    /// Make light host `name` IPv6-only: the LAN gets an IPv6 prefix of
    /// this world (the client and the host an address each), the host loses
    /// its IPv4 address, its sshd listens on the IPv6 one only, and ssh
    /// knows the host by that literal (pinned key, the client key). Returns
    /// the literal (e.g. `fd00:fb:1::5`).
    pub fn make_ipv6_only(&mut self, name: &str) -> String {
        let prefix = format!("{}::", self.ipv6_prefix());
        // The client's address (once per world; "exists" is fine).
        let _ = try_sh(&[
            "ip",
            "-n",
            &self.client_ns,
            "addr",
            "add",
            &format!("{prefix}1/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        let host = self.host(name);
        let index = host.ip.rsplit('.').next().unwrap_or("2").to_string();
        let v6 = format!("{prefix}{index}");
        let (ns, v4) = (host.netns.clone(), host.ip.clone());
        swap_ipv4_for_ipv6(&ns, &v4, &v6);
        let cfg = host.dir.join("ssh/sshd_config");
        let text = fs::read_to_string(&cfg).unwrap().replace(
            &format!("ListenAddress {v4}\n"),
            &format!("ListenAddress {v6}\n"),
        );
        fs::write(&cfg, text).unwrap();
        let key = host.host_key_pub.clone();
        self.kill_sshd(name);
        self.light_host_mut(name).ip = v6.clone();
        self.start_sshd(name);
        self.describe_host(&v6, &v6, &key);
        v6
    }

    pub(crate) fn light_host_mut(&mut self, name: &str) -> &mut LightHost {
        self.hosts
            .iter_mut()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no light host {name}"))
    }

    /// A bare network namespace of this world (named `<world>-<suffix>`).
    pub fn add_netns(&mut self, suffix: &str) -> String {
        let ns = format!("{}-{suffix}", self.id);
        sh(&["ip", "netns", "add", &ns]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        self.extra_netns.push(ns.clone());
        ns
    }

    pub fn systemd_host(&self, name: &str) -> &SystemdHost {
        self.systemd_hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no systemd host {name} in this world"))
    }

    pub fn host(&self, name: &str) -> &LightHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in this world"))
    }
}

/// The system a test host boots before pantheros deployed anything, as a
/// NixOS host installed by nixos-anywhere would have one: `sw/bin`, the
/// fixtures' default `init-interface-version` and `switch-inhibitors`, and no
/// kernel links (a plan reads "unknown" for them, never "new kernel").
pub const BASE_SYSTEM: &str = "/run/pantheros-base-system";
pub const BASE_INIT_INTERFACE: &str = "systemd 2";
pub const BASE_INHIBITORS: &str = r#"{"systemd":"systemd-258.1"}"#;

/// Shell run at a light host's boot (its /run is new and /nix mounted):
/// the base system, then /run/current-system and /run/booted-system point
/// at the boot loader's default (the stand-in loader's entry in
/// /nix/var/pantheros-fixture/boot/default, else the system profile, else
/// the base system), as NixOS's stage 2 sets them.
pub fn boot_script() -> String {
    format!(
        "mkdir -p {BASE_SYSTEM}/sw/bin && printf '%s' '{BASE_INIT_INTERFACE}' > {BASE_SYSTEM}/init-interface-version && \
         printf '%s' '{BASE_INHIBITORS}' > {BASE_SYSTEM}/switch-inhibitors && \
         sys=$(cat /nix/var/pantheros-fixture/boot/default 2>/dev/null || readlink -f /nix/var/nix/profiles/system 2>/dev/null || true) && \
         {{ {{ [ -n \"$sys\" ] && [ -e \"$sys\" ]; }} || sys={BASE_SYSTEM}; }} && \
         ln -sfn \"$sys\" /run/current-system && ln -sfn \"$sys\" /run/booted-system"
    )
}

/// The base system of a systemd host, as a tmpfiles.d file its systemd
/// applies at boot (the cached rootfs is shared and never written).
pub fn boot_tmpfiles() -> String {
    format!(
        "d {BASE_SYSTEM}/sw/bin 0755 root root -\n\
         f+ {BASE_SYSTEM}/init-interface-version 0644 root root - {BASE_INIT_INTERFACE}\n\
         f+ {BASE_SYSTEM}/switch-inhibitors 0644 root root - {BASE_INHIBITORS}\n\
         L+ /run/current-system - - - - {BASE_SYSTEM}\n\
         L+ /run/booted-system - - - - {BASE_SYSTEM}\n"
    )
}

impl Drop for World {
    fn drop(&mut self) {
        for h in &mut self.systemd_hosts {
            h.stop();
        }
        for h in &self.systemd_hosts {
            destroy_netns(&h.netns);
        }
        for h in &mut self.hosts {
            if let Some(s) = &mut h.sshd {
                let _ = s.kill();
                let _ = s.wait();
            }
            let _ = h.anchor.kill();
            let _ = h.anchor.wait();
        }
        for h in &self.hosts {
            destroy_netns(&h.netns);
        }
        for ns in &self.extra_netns {
            destroy_netns(ns);
        }
        destroy_netns(&self.client_ns);
        destroy_netns(&self.lan);
        let _ = fs::remove_file(format!("{STATE_DIR}/{}.owner", self.id));
        // Store paths under the hosts' private /nix are read-only: make
        // them writable so the temporary folder can be removed.
        let _ = Command::new("chmod")
            .args([
                "-R",
                "u+w",
                self.dir.path().to_str().unwrap_or("/nonexistent"),
            ])
            .status();
    }
}

/// In network namespace `ns`: `v6`/64 on eth0 (no duplicate detection, so
/// it answers at once), then the IPv4 address `v4`/24 removed.
pub(crate) fn swap_ipv4_for_ipv6(ns: &str, v4: &str, v6: &str) {
    sh(&[
        "ip",
        "-n",
        ns,
        "addr",
        "add",
        &format!("{v6}/64"),
        "dev",
        "eth0",
        "nodad",
    ]);
    sh(&[
        "ip",
        "-n",
        ns,
        "addr",
        "del",
        &format!("{v4}/24"),
        "dev",
        "eth0",
    ]);
}
