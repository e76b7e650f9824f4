//! The test world: real hosts on one machine.
//!
//! A [`World`] is a private LAN (a network namespace holding a bridge), one
//! *client* namespace on it from which the deployer runs, and any number of
//! light hosts. A light host is a network namespace plus one long-lived
//! anchor process that owns a private mount namespace (its own `/run`,
//! `/nix` and `/etc/nix`) and UTS namespace (its own hostname), and runs its
//! own `sshd` with a pinned host key. Everything is torn down on drop, also
//! when a test panics; a world left behind by a killed test run is reaped by
//! the next one.
//!
//! Needs root. When the world cannot be built, [`World::new`] returns `None`
//! and says why, except under `CI=true`, where it panics: a test that cannot
//! set up its world must fail there, not pass.

pub mod hetzner;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const STATE_DIR: &str = "/run/pantheros-test-world";
const PREFIX: &str = "pht";
const TOOLS: &[&str] = &["ip", "unshare", "nsenter", "ssh", "ssh-keygen", "nix", "nc"];
const SSHD: &str = "/usr/sbin/sshd";

/// The pantheros checkout this crate belongs to (two levels above it).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Nix settings every test host gets in its private `/etc/nix` (the same
/// lines `scripts/setup` merges into the deployer's `/etc/nix/nix.conf`).
pub const NIX_SETTINGS: &str = include_str!("../../../scripts/nix-settings.conf");

/// Is this a CI run (where a world that cannot be built is a failure)?
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Skip (locally) or fail (CI) a test whose world cannot be built.
#[track_caller]
pub fn cannot_run(why: &str) {
    not_run(NotRun::World(why.to_string()));
}

/// Where skipped tests are recorded: `$PANTHEROS_SKIP_LOG`, else
/// `target/test-skips.log`. `scripts/test` empties it before the run and
/// counts it afterwards, so a test that returned early is never counted as
/// a pass.
pub fn skip_log() -> PathBuf {
    std::env::var_os("PANTHEROS_SKIP_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target/test-skips.log"))
}

/// Record that the calling test did not run its assertions, and why.
/// Prefer [`cannot_run`], which fails instead under `CI=true`.
#[track_caller]
pub fn skipped(why: &str) {
    let test = std::thread::current().name().unwrap_or("?").to_string();
    eprintln!("SKIPPED {test}: {why}");
    let line = format!("{test}\t{}\n", why.replace(['\n', '\t'], " "));
    let log = skip_log();
    if let Some(dir) = log.parent() {
        let _ = fs::create_dir_all(dir);
    }
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(&log) {
        let _ = f.write_all(line.as_bytes());
    }
}

/// The machine-level place for nixpkgs' `lib`, beside the test world's and
/// fresh-check's caches: `/var/cache/pantheros-nixpkgs-lib/lib`. Nothing
/// in the repository or in `../shared` is ever looked at: no registry serves
/// the lib and no copy of it may be kept there (README, "nixpkgs' lib").
pub const NIXPKGS_LIB_HOME: &str = "/var/cache/pantheros-nixpkgs-lib";

/// Why a tier that needs nixpkgs' lib did not run. The one reason a test
/// may give for not running that does not fail under `CI=true`.
pub const NO_NIXPKGS_LIB: &str =
    "nixpkgs' lib is not on this machine (no registry serves it; see README)";

/// Why a test did not run its assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRun {
    /// No nixpkgs' lib in `$NIXPKGS_LIB` or [`NIXPKGS_LIB_HOME`]: the one
    /// named exception, reported as not run also under CI.
    NoNixpkgsLib,
    /// Anything else that kept the test's world from being built.
    World(String),
}

impl NotRun {
    /// The reason as the skip list shows it.
    pub fn reason(&self) -> String {
        match self {
            NotRun::NoNixpkgsLib => NO_NIXPKGS_LIB.to_string(),
            NotRun::World(why) => format!("the test world cannot be built: {why}"),
        }
    }

    /// Whether a test that did not run for this reason fails the run: under
    /// CI every reason does, except the absent nixpkgs' lib.
    pub fn fails(&self, ci: bool) -> bool {
        ci && *self != NotRun::NoNixpkgsLib
    }
}

/// Record that the calling test did not run; panic (fail the test) when
/// the reason does not allow that under this run's `CI`.
#[track_caller]
pub fn not_run(why: NotRun) {
    if why.fails(in_ci()) {
        panic!("under CI=true this test must run: {}", why.reason());
    }
    skipped(&why.reason());
}

/// nixpkgs' real `lib` directory: `$NIXPKGS_LIB` (a `lib` directory, or a
/// nixpkgs checkout holding one), else [`NIXPKGS_LIB_HOME`]`/lib`. Accepted
/// only when it is one: `default.nix` and `modules.nix` are there and
/// `lib.version` evaluates. Err says why not (a `$NIXPKGS_LIB` that is set
/// but is no lib is a world error, not the named exception).
pub fn find_nixpkgs_lib() -> Result<PathBuf, NotRun> {
    static FOUND: std::sync::OnceLock<Result<PathBuf, NotRun>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            if let Some(dir) = std::env::var_os("NIXPKGS_LIB") {
                let dir = PathBuf::from(dir);
                return [dir.join("lib"), dir.clone()]
                    .into_iter()
                    .find_map(|p| check_nixpkgs_lib(&p).ok())
                    .ok_or_else(|| {
                        let why = check_nixpkgs_lib(&dir).err().unwrap_or_default();
                        NotRun::World(format!(
                            "NIXPKGS_LIB={} is not nixpkgs' lib ({why})",
                            dir.display()
                        ))
                    });
            }
            let home = Path::new(NIXPKGS_LIB_HOME).join("lib");
            if !home.exists() {
                return Err(NotRun::NoNixpkgsLib);
            }
            check_nixpkgs_lib(&home).map_err(|why| {
                NotRun::World(format!("{} is not nixpkgs' lib ({why})", home.display()))
            })
        })
        .clone()
}

/// `dir` canonicalised when it is nixpkgs' lib; else what is wrong.
pub fn check_nixpkgs_lib(dir: &Path) -> Result<PathBuf, String> {
    for f in ["default.nix", "modules.nix"] {
        if !dir.join(f).is_file() {
            return Err(format!("no {f}"));
        }
    }
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let expr = format!("(import {}).version", dir.display());
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--expr", &expr])
        .output()
        .map_err(|e| format!("nix-instantiate: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "lib.version does not evaluate: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(dir)
}

/// nixpkgs' lib, or None after recording the test as not run (see
/// [`find_nixpkgs_lib`] and [`NotRun::fails`]).
#[track_caller]
pub fn nixpkgs_lib() -> Option<PathBuf> {
    match find_nixpkgs_lib() {
        Ok(lib) => Some(lib),
        Err(why) => {
            not_run(why);
            None
        }
    }
}

/// Copy the directory tree `src` to `dst` (files and directories).
pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// The stand-in nixpkgs (and disko) flake of the evaluation tiers, made in
/// `dir`: tests/module-eval with its flake.nix pointing at nixpkgs' real
/// lib, whose `lib.nixosSystem` evaluates modules against the typed
/// stand-in declarations. None without a lib (recorded as not run; see
/// [`nixpkgs_lib`]).
pub fn stand_in_nixpkgs(dir: &Path) -> Option<PathBuf> {
    let lib = nixpkgs_lib()?;
    let stub = dir.join("stub");
    copy_dir(&project_root().join("tests/module-eval"), &stub);
    // The lib directory itself is the (non-flake) input: a bare `lib/`
    // copy and a nixpkgs checkout's `lib/` serve alike.
    let template = fs::read_to_string(stub.join("flake.nix.in")).unwrap();
    fs::write(
        stub.join("flake.nix"),
        template.replace("@NIXPKGS_LIB@", lib.to_str().unwrap()),
    )
    .unwrap();
    fs::remove_file(stub.join("flake.nix.in")).unwrap();
    Some(stub)
}

/// A fresh WireGuard key pair (private, public), made by `wg`.
pub fn wg_keypair() -> (String, String) {
    let private = stdout(&sh(&["wg", "genkey"])).trim().to_string();
    let out = Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(private.as_bytes())?;
            c.wait_with_output()
        })
        .expect("run wg pubkey");
    (private, stdout(&out).trim().to_string())
}

/// Why the world cannot be built here, if it cannot.
pub fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        return Some("it needs root (network and mount namespaces)".into());
    }
    for t in TOOLS {
        if which(t).is_none() {
            return Some(format!(
                "`{t}` is not installed (run .ci/run once, or apt-get install it)"
            ));
        }
    }
    if !Path::new(SSHD).exists() {
        return Some(format!(
            "{SSHD} is missing (apt-get install openssh-server)"
        ));
    }
    if !Path::new("/nix/store").exists() && fs::create_dir_all("/nix/store").is_err() {
        return Some("/nix/store does not exist (apt-get install nix-bin)".into());
    }
    None
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Whether every tool is installed; for the first one missing, the test is
/// recorded as not run (a failure under CI) and false comes back.
#[track_caller]
pub fn have_tools(tools: &[&str]) -> bool {
    match tools.iter().find(|t| which(t).is_none()) {
        Some(t) => {
            cannot_run(&format!("{t} is not installed (bash scripts/setup)"));
            false
        }
        None => true,
    }
}

/// Run a command, panicking with its output when it fails.
#[track_caller]
pub fn sh(argv: &[&str]) -> Output {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not run {argv:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{argv:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A new passphrase-less ed25519 key pair at `path` (and `path`.pub).
pub fn keygen(path: &Path, comment: &str) {
    sh(&[
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        comment,
        "-f",
        path.to_str().unwrap(),
    ]);
}

/// Run a command, returning whatever happened.
pub fn try_sh(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not run {argv:?}: {e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A boot id as the kernel makes them (a random UUID).
fn new_boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/uuid").expect("read /proc/sys/kernel/random/uuid")
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Kill every process in a network namespace, then delete it.
fn destroy_netns(ns: &str) {
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
fn reap_stale_worlds() {
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
    fn start_sshd(&mut self, client_ns: &str) {
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
    host_anchor: u32,
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
    next_index: u32,
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
    fn new_slot(&mut self, kind: &str) -> (String, String) {
        let index = self.next_index;
        self.next_index += 1;
        let ns = format!("{}-{}", self.id, index);
        let ip = format!("{}.{}", self.subnet, index);
        self.plug(&ns, &format!("{kind}{index}"), &ip);
        (ns, ip)
    }

    fn plug(&mut self, ns: &str, tag: &str, ip: &str) {
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
    fn describe_host(&self, name: &str, ip: &str, host_key: &str) {
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

    /// Start a light host `name` running sshd, reachable as `ssh -F cfg name`.
    pub fn add_host(&mut self, name: &str) -> &LightHost {
        let (ns, ip) = self.new_slot("h");
        let hdir = self.path().join("hosts").join(name);
        for sub in ["nix", "etc-nix", "ssh", "state"] {
            fs::create_dir_all(hdir.join(sub)).unwrap();
        }
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
             mount --bind {state} /var/lib/pantheros; \
             mount --bind {boot} /proc/sys/kernel/random/boot_id 2>/dev/null || rm -f {boot}; \
             {base}; exec sleep infinity",
            base = boot_script(),
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
        let octets: Vec<u32> = self
            .subnet
            .split('.')
            .filter_map(|o| o.parse().ok())
            .collect();
        let prefix = format!(
            "fd00:{:x}:{:x}::",
            octets.get(1).copied().unwrap_or(0),
            octets.get(2).copied().unwrap_or(0)
        );
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
        sh(&[
            "ip",
            "-n",
            &ns,
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
            &ns,
            "addr",
            "del",
            &format!("{v4}/24"),
            "dev",
            "eth0",
        ]);
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

    fn light_host_mut(&mut self, name: &str) -> &mut LightHost {
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
    dst
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
    pub fail_unit: bool,
    pub switch_seconds: u32,
    pub build_seconds: u32,
    /// KiB of random data in the closure (a slow copy).
    pub blob_kib: u32,
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
            fail_unit: false,
            switch_seconds: 0,
            build_seconds: 0,
            blob_kib: 0,
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
             packages = [ {pkgs} ]; failSwitch = {fs}; blockSsh = {bs}; failUnit = {fu}; flakyUnit = {fl}; failPreSwitchCheck = {fp}; \
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
        let bin = pantheros_bin();
        let mut argv = vec![bin.to_str().unwrap()];
        argv.extend_from_slice(args);
        self.client(&argv)
            .current_dir(dir)
            .env("PANTHEROS_LOG_DIR", self.path().join("logs"))
            .env_remove("PANTHEROS_FLAKE")
            .output()
            .expect("run pantheros")
    }
}

/// The password of systemd hosts' user `nopw`, whose sudo asks for it.
pub const NOPW_PASSWORD: &str = "nopw-sudo-secret-7731";

/// Where the systemd hosts' Debian rootfs is cached between runs.
pub fn systemd_cache() -> PathBuf {
    std::env::var_os("PANTHEROS_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/pantheros-test-world"))
}

/// A systemd host: systemd-nspawn booting the cached Debian rootfs (real
/// systemd as PID 1, sshd, nix 2.8) in its own network namespace on the
/// world's LAN, with a throw-away overlay so every boot starts pristine.
pub struct SystemdHost {
    pub name: String,
    pub ip: String,
    pub netns: String,
    pub machine: String,
    pub nspawn: Child,
    pub dir: PathBuf,
}

impl SystemdHost {
    /// Run a command inside the container (all its namespaces), without SSH.
    pub fn exec(&self, argv: &[&str]) -> Output {
        let children = stdout(&try_sh(&["pgrep", "-P", &self.nspawn.id().to_string()]));
        // nspawn runs under `setsid` → the container's init is nspawn's child.
        let mut pid = children.split_whitespace().next().unwrap_or("").to_string();
        if pid.is_empty() {
            pid = self.nspawn.id().to_string();
        }
        let mut v = vec!["nsenter", "-t", &pid, "-a", "--"];
        v.extend_from_slice(argv);
        try_sh(&v)
    }

    /// The container's root directory, as this machine reaches it
    /// (`/proc/<its init>/root`): files copied there land inside it.
    pub fn root_dir(&self) -> PathBuf {
        let children = stdout(&try_sh(&["pgrep", "-P", &self.nspawn.id().to_string()]));
        let pid = children
            .split_whitespace()
            .next()
            .map(str::to_string)
            .unwrap_or_else(|| self.nspawn.id().to_string());
        PathBuf::from(format!("/proc/{pid}/root"))
    }

    fn stop(&mut self) {
        let pid = self.nspawn.id().to_string();
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
        let script = format!(
            "for h in systemd unified; do mkdir -p /sys/fs/cgroup/$h/{machine}; echo $$ > /sys/fs/cgroup/$h/{machine}/cgroup.procs; done; \
             SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 exec setsid systemd-nspawn --boot --directory={root} --machine={machine} \
             --hostname={name} --volatile=overlay --register=no --keep-unit --capability=CAP_NET_ADMIN --network-namespace-path=/run/netns/{ns} \
             --console=passive --bind-ro={a}:/root/.ssh/authorized_keys --bind-ro={a}:/home/deploy/.ssh/authorized_keys \
             --bind-ro={a}:/home/nopw/.ssh/authorized_keys --bind-ro={t}:/etc/tmpfiles.d/pantheros-base-system.conf",
            root = rootfs.display(),
            t = tmpfiles.display(),
        );
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

/// Parse a command's stdout as JSON, or fail with everything it printed.
#[track_caller]
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            stdout(out),
            stderr(out)
        )
    })
}

/// `nix eval --raw` of an expression with `lib` (modules/lib) and `net`
/// (hosts/flashpods-network.nix) in scope.
pub fn render(expr: &str) -> String {
    let root = project_root();
    let full = format!(
        "let lib = import {}/modules/lib; net = import {}/hosts/flashpods-network.nix; in {expr}",
        root.display(),
        root.display()
    );
    stdout(&sh(&[
        "nix",
        "--extra-experimental-features",
        "nix-command",
        "eval",
        "--raw",
        "--impure",
        "--expr",
        &full,
    ]))
}

impl World {
    /// Start `pantheros ARGS` from the client namespace in the background.
    pub fn spawn_pantheros(&self, dir: &Path, args: &[&str]) -> Child {
        self.spawn_pantheros_with(dir, args, Stdio::null)
    }

    /// The same, with stdout and stderr kept for `wait_with_output`.
    pub fn spawn_pantheros_captured(&self, dir: &Path, args: &[&str]) -> Child {
        self.spawn_pantheros_with(dir, args, Stdio::piped)
    }

    fn spawn_pantheros_with(&self, dir: &Path, args: &[&str], io: fn() -> Stdio) -> Child {
        let bin = pantheros_bin();
        let mut argv = vec![bin.to_str().unwrap()];
        argv.extend_from_slice(args);
        self.client(&argv)
            .current_dir(dir)
            .env("PANTHEROS_LOG_DIR", self.path().join("logs"))
            .stdout(io())
            .stderr(io())
            .spawn()
            .expect("start pantheros")
    }
}

// ---- The fixture vocabulary shared by every test --------------------------------

/// A world with one light host `name` that already runs fixture generation 1
/// (deployed by pantheros), and the fixture flake's folder. None when the
/// world cannot be built (see [`World::new`]).
pub fn world_with_deployed_host(name: &str) -> Option<(World, PathBuf)> {
    let mut w = World::new()?;
    w.add_host(name);
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[w.fixture_host(name, 1, "")]);
    let out = w.pantheros(&flake, &["deploy", name, "--yes"]);
    assert_exit(&out, 0);
    Some((w, flake))
}

impl World {
    /// A fixture host deployed through this world's SSH config. `extra` is
    /// more `pantheros.deployment` (Nix attrset body); `confirmTimeout`
    /// defaults to 6 s unless `extra` sets it.
    pub fn fixture_host(&self, name: &str, generation: u32, extra: &str) -> FixtureHost {
        let mut h = FixtureHost::new(name, generation);
        let timeout = if extra.contains("confirmTimeout") {
            ""
        } else {
            "confirmTimeout = 6; "
        };
        h.deployment = self.deployment_for(name, &format!("{timeout}{extra}"));
        h
    }

    /// The generation the fixture system running on a light host says it is
    /// ("" when none was activated).
    pub fn generation_marker(&self, host: &str) -> String {
        let out = self
            .host(host)
            .exec(&["cat", "/run/pantheros-fixture/generation"]);
        stdout(&out).trim().to_string()
    }

    /// The store path the host's system profile points at.
    pub fn profile_target(&self, host: &str) -> String {
        self.host(host)
            .exec_ok(&["readlink", "-f", "/nix/var/nix/profiles/system"])
            .trim()
            .to_string()
    }
}

/// The command exited with `code`; otherwise fail showing its output.
/// A one-host deploy that was rolled back (exit 3, `--json`): its
/// rollback reason.
#[track_caller]
pub fn rollback_reason(out: &Output) -> String {
    assert_exit(out, 3);
    let v = json(out);
    assert_eq!(v["hosts"][0]["result"], "rolled-back", "{v}");
    v["hosts"][0]["rollbackReason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// Every needle occurs in the command's stderr; otherwise fail showing it.
#[track_caller]
pub fn assert_stderr_has(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    let missing: Vec<&&str> = needles.iter().filter(|n| !err.contains(**n)).collect();
    assert!(missing.is_empty(), "stderr lacks {missing:?}:\n{err}");
}

/// No needle occurs in the command's stdout or stderr.
#[track_caller]
pub fn assert_output_lacks(out: &Output, needles: &[&str]) {
    let all = format!("{}{}", stdout(out), stderr(out));
    let found: Vec<&&str> = needles.iter().filter(|n| all.contains(**n)).collect();
    assert!(found.is_empty(), "output contains {found:?}:\n{all}");
}

const VALIDATE_SCHEMA: &str = include_str!("validate_schema.py");

/// `doc` is valid against `docs/json/<name>.schema.json` (Python's
/// `jsonschema`, which `scripts/setup` installs with openapi-core).
#[track_caller]
pub fn assert_schema(doc: &serde_json::Value, name: &str) {
    let ok = Command::new("python3")
        .args(["-c", "import jsonschema, referencing"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        cannot_run("python3 with jsonschema is not installed (bash scripts/setup)");
        return;
    }
    let mut child = Command::new("python3")
        .args(["-c", VALIDATE_SCHEMA])
        .arg(project_root().join("docs/json"))
        .arg(name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(doc.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the document does not match docs/json/{name}.schema.json:\n{}{}\n{doc:#}",
        stdout(&out),
        stderr(&out)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one named exception: an absent nixpkgs' lib is "not run" also
    /// under CI; every other reason a world cannot be built fails there.
    #[test]
    fn only_an_absent_nixpkgs_lib_may_not_run_under_ci() {
        assert!(!NotRun::NoNixpkgsLib.fails(true));
        assert!(!NotRun::NoNixpkgsLib.fails(false));
        let other = NotRun::World("it needs root".into());
        assert!(other.fails(true));
        assert!(!other.fails(false));
        // A lib that is set but broken is not the exception either.
        assert!(
            NotRun::World("NIXPKGS_LIB=/x is not nixpkgs' lib (no default.nix)".into()).fails(true)
        );
        assert_eq!(NotRun::NoNixpkgsLib.reason(), NO_NIXPKGS_LIB);
    }

    /// A directory is accepted as nixpkgs' lib only when it is one.
    #[test]
    fn a_lib_is_accepted_only_when_it_evaluates() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_nixpkgs_lib(dir.path()).unwrap_err();
        assert!(err.contains("no default.nix"), "{err}");
        fs::write(dir.path().join("default.nix"), "{ }").unwrap();
        fs::write(dir.path().join("modules.nix"), "{ }").unwrap();
        let err = check_nixpkgs_lib(dir.path()).unwrap_err();
        assert!(err.contains("lib.version does not evaluate"), "{err}");
        fs::write(dir.path().join("default.nix"), r#"{ version = "26.11"; }"#).unwrap();
        assert!(check_nixpkgs_lib(dir.path()).is_ok());
    }
}
