//! The machine the tests run on: prerequisites, CI and skips, nixpkgs'
//! lib, and small command helpers.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const STATE_DIR: &str = "/run/pantheros-test-world";
pub(crate) const PREFIX: &str = "pht";
pub(crate) const TOOLS: &[&str] = &["ip", "unshare", "nsenter", "ssh", "ssh-keygen", "nix", "nc"];
pub(crate) const SSHD: &str = "/usr/sbin/sshd";

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
    pub(crate) fn libc_geteuid() -> u32;
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
