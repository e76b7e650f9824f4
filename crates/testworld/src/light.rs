//! Light hosts: a network namespace, an anchor process with its own
//! mount and UTS namespaces, and its own sshd; rootless Podman inside one.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::*;

/// A boot id as the kernel makes them (a random UUID).
pub(crate) fn new_boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/uuid").expect("read /proc/sys/kernel/random/uuid")
}

pub(crate) fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Kill every process in a network namespace, then delete it.
pub(crate) fn destroy_netns(ns: &str) {
    for sig in ["-TERM", "-KILL"] {
        let out = try_sh(&["ip", "netns", "pids", ns]);
        let pids: Vec<String> = stdout(&out).split_whitespace().map(String::from).collect();
        if pids.is_empty() {
            break;
        }
        let mut argv = vec!["kill", sig];
        argv.extend(pids.iter().map(String::as_str));
        let _ = try_sh(&argv);
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline
            && pids
                .iter()
                .any(|p| Path::new(&format!("/proc/{p}")).exists())
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = try_sh(&["ip", "netns", "del", ns]);
}

/// Tear down worlds whose owning test process is gone.
pub(crate) fn reap_stale_worlds() {
    let Ok(entries) = fs::read_dir(STATE_DIR) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".owner") else {
            continue;
        };
        let owner: u32 = fs::read_to_string(e.path())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if owner != 0 && pid_alive(owner) {
            continue;
        }
        let listed = stdout(&try_sh(&["ip", "netns", "list"]));
        for line in listed.lines() {
            let ns = line.split_whitespace().next().unwrap_or("");
            if ns.starts_with(&format!("{id}-")) {
                destroy_netns(ns);
            }
        }
        let _ = fs::remove_file(e.path());
    }
}

/// Where pantheros keeps a target's deploy lock (src/deploy/preflight.rs).
pub const TARGET_LOCK: &str = "/var/lib/pantheros/lock";

/// A light host: a network namespace and an anchor with private /run, /nix, /etc/nix.
pub struct LightHost {
    pub name: String,
    pub ip: String,
    pub netns: String,
    pub anchor: Child,
    pub dir: PathBuf,
    pub sshd: Option<Child>,
    pub host_key_pub: String,
}

impl LightHost {
    pub fn anchor_pid(&self) -> u32 {
        self.anchor.id()
    }

    /// A command that runs inside this host (its network, mounts and hostname).
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.anchor_pid().to_string())
            .args(["-n", "-m", "-u", "--wd=/", "--"])
            .args(argv)
            .stdin(Stdio::null());
        c
    }

    /// Run a command inside the host and return its output (not checked).
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.command(argv)
            .output()
            .unwrap_or_else(|e| panic!("could not run {argv:?} on {}: {e}", self.name))
    }

    /// Run a command inside the host; panic when it fails.
    #[track_caller]
    pub fn exec_ok(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        if !out.status.success() {
            panic!(
                "{argv:?} on {} failed ({}):\n{}{}",
                self.name,
                out.status,
                stdout(&out),
                stderr(&out)
            );
        }
        stdout(&out)
    }

    /// Mount the cgroup v1 hierarchies inside this host's private mount
    /// namespace (what a container runtime needs; `ip netns exec` left
    /// /sys/fs/cgroup empty). cgroup2 "unified" is left out on purpose:
    /// runc refuses the hybrid layout with it.
    pub fn mount_cgroups(&self) {
        self.exec_ok(&[
            "sh",
            "-c",
            "mount -t tmpfs -o mode=755 cgroup_root /sys/fs/cgroup && \
             for c in cpu cpuacct cpuset memory devices freezer blkio pids; do \
               mkdir -p /sys/fs/cgroup/$c && mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c; done && \
             mkdir -p /sys/fs/cgroup/systemd && mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd",
        ]);
    }

    /// Serve HTTP (python3 -m http.server) on `0.0.0.0:port` inside this
    /// host, and return once the port answers.
    pub fn serve_http(&self, port: &str) -> Child {
        let child = self
            .command(&[
                "python3",
                "-m",
                "http.server",
                port,
                "--bind",
                "0.0.0.0",
                "--directory",
                "/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let start = Instant::now();
        while !self.exec(&["nc", "-z", "127.0.0.1", port]).status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "port {port} never opened on {}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// Start this host's sshd (config in its `ssh/` directory) and wait
    /// until it accepts connections from the client namespace.
    pub(crate) fn start_sshd(&mut self, client_ns: &str) {
        let cfg = self.dir.join("ssh/sshd_config");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("sshd.log"))
            .unwrap();
        let sshd = self
            .command(&[SSHD, "-D", "-e", "-f", cfg.to_str().unwrap()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        self.sshd = Some(sshd);
        let ip = self.ip.clone();
        wait_until(
            &format!("sshd on {}", self.name),
            Duration::from_secs(10),
            || {
                try_sh(&[
                    "nsenter",
                    &format!("--net=/run/netns/{client_ns}"),
                    "--",
                    "nc",
                    "-z",
                    "-w1",
                    &ip,
                    "22",
                ])
                .status
                .success()
            },
        );
    }

    /// Whether a deploy lock is on this host (pantheros' lock directory).
    pub fn locked(&self) -> bool {
        self.exec(&["test", "-e", TARGET_LOCK]).status.success()
    }

    /// This host's private /nix, as seen from the root mount namespace.
    pub fn nix_dir(&self) -> PathBuf {
        self.dir.join("nix")
    }
}

/// Rootless Podman on a light host: a user that exists only in the host's
/// mount namespace (its own /etc/passwd, /etc/group, /etc/subuid and
/// /etc/subgid, bind-mounted there), with the runtime directory the
/// Flashpods module gives it and a /dev/net/tun its network helper
/// (slirp4netns) may open. This machine's /dev/net/tun is 0600 root; NixOS
/// has it 0666, so the host gets a 0666 node of its own on /run.
pub struct RootlessPodman {
    pub user: String,
    pub uid: u32,
    pub home: PathBuf,
    pub runtime_dir: String,
    pub conf: PathBuf,
    pub(crate) host_anchor: u32,
}

/// Containers' limits this machine can honour (no CAP_SYS_RESOURCE, so no
/// raised hard rlimits) and runc (crun refuses the hybrid cgroups).
pub const PODMAN_CONF: &str = "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n[engine]\nruntime = \"runc\"\n";

impl LightHost {
    /// Make `user` (uid = gid = `uid`, subordinate ids 200000:65536 as the
    /// Flashpods module declares) a rootless Podman user on this host.
    pub fn rootless_podman(&self, user: &str, uid: u32, runtime_dir: &str) -> RootlessPodman {
        let d = self.dir.join(format!("rootless-{user}"));
        fs::create_dir_all(&d).unwrap();
        // Home and configuration live on the host's private /run, where
        // the user can reach them (the world's directory is root's alone).
        let home = PathBuf::from(format!("/run/testworld-home/{user}"));
        let conf = PathBuf::from(format!("/run/testworld-home/{user}.containers.conf"));
        let etc = |name: &str, line: String| {
            let mut text = fs::read_to_string(format!("/etc/{name}")).unwrap_or_default();
            text.push_str(&line);
            let f = d.join(name);
            fs::write(&f, text).unwrap();
            fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
            f
        };
        let files = [
            (
                "passwd",
                etc(
                    "passwd",
                    format!("{user}:x:{uid}:{uid}::{}:/bin/sh\n", home.display()),
                ),
            ),
            ("group", etc("group", format!("{user}:x:{uid}:\n"))),
            ("subuid", etc("subuid", format!("{user}:200000:65536\n"))),
            ("subgid", etc("subgid", format!("{user}:200000:65536\n"))),
        ];
        // A user namespace may mount proc only where no other mount covers
        // part of one (the kernel's "fully visible" rule): the boot id's
        // bind mount goes, so this host cannot be "rebooted".
        let mut script =
            String::from("set -e; umount /proc/sys/kernel/random/boot_id 2>/dev/null || true; ");
        for (name, f) in &files {
            script.push_str(&format!(
                "touch /etc/{name}; mount --bind {} /etc/{name}; ",
                f.display()
            ));
        }
        script.push_str(&format!(
            "mkdir -p /run/testworld-dev && mknod -m 666 /run/testworld-dev/tun c 10 200 && \
             mount --bind /run/testworld-dev/tun /dev/net/tun; \
             install -d -m 0755 /run/testworld-home; install -d -o {uid} -g {uid} -m 0700 {home} {runtime_dir}; \
             printf '%s' '{PODMAN_CONF}' > {conf}; chmod 0644 {conf}",
            home = home.display(),
            conf = conf.display(),
        ));
        self.exec_ok(&["sh", "-c", &script]);
        RootlessPodman {
            user: user.into(),
            uid,
            home,
            runtime_dir: runtime_dir.into(),
            conf,
            host_anchor: self.anchor_pid(),
        }
    }
}

impl RootlessPodman {
    /// `argv` as the user, in the host, with Podman's environment (the
    /// process is the command itself, so killing it stops it).
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.host_anchor.to_string())
            // setpriv execs (runuser would fork and outlive a kill).
            .args(["-n", "-m", "-u", "--wd=/", "--", "setpriv"])
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.uid))
            .args(["--init-groups", "--", "env"])
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!("XDG_RUNTIME_DIR={}", self.runtime_dir))
            .arg(format!("CONTAINERS_CONF={}", self.conf.display()))
            .args(argv)
            .stdin(Stdio::null());
        c
    }

    /// Import a rootfs tarball as image `name` (root opens the file, the
    /// user reads it from standard input).
    pub fn import(&self, tar: &Path, name: &str) -> Output {
        let mut c = self.command(&[
            "podman",
            "import",
            "--change",
            "CMD [\"/bin/sh\"]",
            "-",
            name,
        ]);
        match fs::File::open(tar) {
            Ok(f) => c.stdin(f),
            Err(e) => panic!("open {}: {e}", tar.display()),
        };
        c.output()
            .unwrap_or_else(|e| panic!("could not run podman import as {}: {e}", self.user))
    }

    /// `podman ARGS…` as the user.
    pub fn podman(&self, args: &[&str]) -> Output {
        let mut argv = vec!["podman"];
        argv.extend_from_slice(args);
        self.command(&argv)
            .output()
            .unwrap_or_else(|e| panic!("could not run podman {args:?} as {}: {e}", self.user))
    }
}

impl Drop for RootlessPodman {
    /// Remove the user's containers and its pause process (rootless Podman
    /// keeps one holding its user namespace until it is killed).
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
        let pause = format!("{}/libpod/tmp/pause.pid", self.runtime_dir);
        let _ = Command::new("nsenter")
            .arg("-t")
            .arg(self.host_anchor.to_string())
            .args([
                "-m",
                "--",
                "sh",
                "-c",
                &format!("kill $(cat {pause}) 2>/dev/null"),
            ])
            .status();
    }
}
