//! `pantheros provision install HOST`: put the host's NixOS configuration
//! on its Hetzner server with nixos-anywhere (disko + nixos-install, from
//! the rescue system or through kexec from the running image), wait for
//! the reboot, pin the new host key in a known_hosts pantheros manages, and
//! verify that the server runs NixOS with exactly the built toplevel.

use super::Kind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cloud::Cloud;
use super::create::ensure_ssh_key;
use super::{Failure, credentials, exit, our_server, sshkey};

/// nixos-anywhere to run when it is not on PATH (override with
/// $PANTHEROS_NIXOS_ANYWHERE: a program path or a flake reference).
pub const NIXOS_ANYWHERE_FLAKE: &str = "github:nix-community/nixos-anywhere/1.11.0";

pub use crate::cli::{InstallArgs, Via};

/// The known_hosts pantheros keeps for the servers it installed.
pub fn known_hosts() -> PathBuf {
    credentials::config_dir().join("known_hosts")
}

/// How to run nixos-anywhere here.
pub fn nixos_anywhere() -> Vec<String> {
    if let Ok(v) = std::env::var("PANTHEROS_NIXOS_ANYWHERE") {
        if v.contains(':') {
            return vec![
                "nix".into(),
                "--extra-experimental-features".into(),
                "nix-command flakes".into(),
                "run".into(),
                v,
                "--".into(),
            ];
        }
        return vec![v];
    }
    match which::which("nixos-anywhere") {
        Ok(p) => vec![p.to_string_lossy().into_owned()],
        Err(_) => vec![
            "nix".into(),
            "--extra-experimental-features".into(),
            "nix-command flakes".into(),
            "run".into(),
            NIXOS_ANYWHERE_FLAKE.into(),
            "--".into(),
        ],
    }
}

/// nixos-anywhere's lines, shown as they arrive.
struct Shown;

impl crate::runner::Lines for Shown {
    fn line(&self, _: crate::runner::Stream, line: &str) {
        eprintln!("  | {line}");
    }
}

fn ssh_base(key: &std::path::Path, kh: &std::path::Path) -> Vec<String> {
    vec![
        "ssh".into(),
        "-i".into(),
        key.to_string_lossy().into_owned(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", kh.display()),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "ConnectTimeout=5".into(),
    ]
}

/// The installed system's SSH host key, made here before the installation
/// (the server gets it with the system, `--extra-files`), so the first
/// connection to the new system verifies a key pantheros made instead of
/// trusting whatever answers.
pub struct HostKey {
    /// Holds `etc/ssh/ssh_host_ed25519_key{,.pub}`; removed when dropped.
    pub extra_files: tempfile::TempDir,
    /// `ssh-ed25519 AAAA… root@HOST`
    pub public: String,
}

/// Generate the host key of `host` with ssh-keygen (mode 0600 from its
/// first byte, in a 0700 directory only this user can read).
pub async fn generate_host_key(host: &str) -> Result<HostKey, Failure> {
    let fail = |what: String| {
        Failure::new(
            Kind::Install,
            format!("generating the SSH host key for {host}: {what}"),
            "check that ssh-keygen (OpenSSH) is installed and the temporary directory is writable",
        )
    };
    let dir = tempfile::Builder::new()
        .prefix("pantheros-hostkey-")
        .tempdir()
        .map_err(|e| fail(e.to_string()))?;
    let ssh = dir.path().join("etc/ssh");
    std::fs::create_dir_all(&ssh).map_err(|e| fail(e.to_string()))?;
    let key = ssh.join("ssh_host_ed25519_key");
    let cmd = crate::runner::Cmd::new([
        "ssh-keygen".to_string(),
        "-q".into(),
        "-t".into(),
        "ed25519".into(),
        "-N".into(),
        String::new(),
        "-C".into(),
        format!("root@{host}"),
        "-f".into(),
        key.to_string_lossy().into_owned(),
    ])
    .timeout(Duration::from_secs(30));
    crate::runner::run_ok(&cmd)
        .await
        .map_err(|f| fail(f.to_string()))?;
    let public = std::fs::read_to_string(key.with_extension("pub"))
        .map_err(|e| fail(e.to_string()))?
        .trim()
        .to_string();
    Ok(HostKey {
        extra_files: dir,
        public,
    })
}

/// Pin `public` as the only key of `ip` in our known_hosts (0600, replaced
/// whole): what was there for that address belonged to the old system.
pub fn pin_host_key(kh: &std::path::Path, ip: &str, public: &str) -> Result<(), Failure> {
    let fail = |e: std::io::Error| {
        Failure::new(
            Kind::Install,
            format!("writing {}: {e}", kh.display()),
            "check that pantheros' config directory is writable",
        )
    };
    if let Some(dir) = kh.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut kept: Vec<String> = std::fs::read_to_string(kh)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            let first = l.split_whitespace().next().unwrap_or("");
            !first
                .split(',')
                .any(|h| h == ip || h == format!("[{ip}]:22"))
        })
        .map(String::from)
        .collect();
    let mut fields = public.split_whitespace();
    let (kind, material) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
    kept.push(format!("{ip} {kind} {material}"));
    let text = kept.join("\n") + "\n";
    crate::report::file::write_atomic(kh, text.as_bytes(), 0o600).map_err(fail)
}

/// What the server reports: (os-release ID, /run/current-system target).
async fn inspect(
    ip: &str,
    key: &std::path::Path,
    kh: &std::path::Path,
) -> Result<(String, String), String> {
    let mut argv = ssh_base(key, kh);
    argv.push(format!("root@{ip}"));
    argv.push(". /etc/os-release; echo \"ID=$ID\"; readlink -f /run/current-system".into());
    let out = crate::runner::run(&crate::runner::Cmd::new(argv).timeout(Duration::from_secs(20)))
        .await
        .map_err(|f| f.to_string())?;
    if !out.success() {
        return Err(out.stderr.trim().to_string());
    }
    let mut lines = out.stdout.lines();
    let id = lines
        .next()
        .unwrap_or("")
        .trim_start_matches("ID=")
        .to_string();
    let sys = lines.next().unwrap_or("").trim().to_string();
    Ok((id, sys))
}

/// What pantheros built for the installation: nixos-anywhere installs
/// exactly these store paths and evaluates nothing itself.
pub struct Built {
    pub toplevel: String,
    /// disko's script that partitions, formats and mounts the disks.
    pub disko: String,
}

/// What an installation left: the server runs `toplevel` and presents
/// `host_key`, pinned in `known_hosts`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Installed {
    pub host: String,
    /// The address it was installed and verified over (the IPv4 one, else
    /// the first of its IPv6 network).
    pub address: String,
    /// The server's public IPv4 address; none on an IPv6-only server.
    pub ipv4: Option<String>,
    pub toplevel: String,
    pub known_hosts: PathBuf,
    pub host_key: String,
    pub via: String,
}

/// `provision install HOST`: install, then print the result.
pub async fn install(
    display: &crate::report::Display,
    host: &crate::inventory::Host,
    flake: &crate::inventory::FlakeRef,
    args: &InstallArgs,
    built: &Built,
) -> Result<i32, Failure> {
    let cloud = super::connect().await?;
    let key = sshkey::choose(args.ssh_key.as_deref())?;
    let done = install_system(display, &cloud, &key, args, built).await?;
    record_facts(display, host, flake, &done)?;
    eprintln!("  host key pinned in {}", done.known_hosts.display());
    eprintln!("  next: pantheros deploy {}", args.host);
    if args.json {
        crate::report::print_document(&done);
    }
    Ok(exit::OK)
}

/// Record the host key the installation generated in the host's facts.
pub fn record_facts(
    display: &crate::report::Display,
    host: &crate::inventory::Host,
    flake: &crate::inventory::FlakeRef,
    done: &Installed,
) -> Result<(), Failure> {
    let key = done
        .host_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    crate::inventory::facts::record(
        display,
        host,
        flake,
        &[(crate::inventory::facts::names::HOST_KEY, key.into())],
        "pantheros install",
    )
    .map(|_| ())
    .map_err(|e| {
        Failure::new(
            Kind::Install,
            format!("NixOS is installed, but its host key could not be recorded: {e}"),
            "fix the file's permissions, then `pantheros facts HOST --refresh`",
        )
    })
}

/// Does the server at `ip` already run NixOS, reached with the host key
/// pantheros pinned when it installed it? (A key pantheros did not pin,
/// e.g. a fresh image's, is never taken for an installed system.)
pub async fn runs_installed_nixos(ip: &str, key: &std::path::Path) -> bool {
    matches!(inspect(ip, key, &known_hosts()).await, Ok((id, _)) if id == "nixos")
}

/// Install the host's built system on its server (logging in with `key`)
/// and verify it.
pub async fn install_system(
    display: &crate::report::Display,
    h: &impl Cloud,
    key: &sshkey::LocalKey,
    args: &InstallArgs,
    built: &Built,
) -> Result<Installed, Failure> {
    let private = key.private_key()?;
    let server = our_server(h, &args.host).await?;
    let ip = server.address().ok_or_else(|| {
        Failure::new(
            Kind::Api,
            format!(
                "{} has no public address (neither IPv4 nor IPv6)",
                args.host
            ),
            "nixos-anywhere needs one: look at the server in the Hetzner console",
        )
    })?;
    let step = Duration::from_secs(args.timeout);
    if args.via == Via::Rescue {
        boot_rescue(display, h, key, args, &server, &ip, step).await?;
    }
    let host_key = generate_host_key(&args.host).await?;
    run_nixos_anywhere(display, built, &host_key, &private, &ip).await?;
    let kh = known_hosts();
    pin_host_key(&kh, &ip, &host_key.public)?;
    let pinned = host_key.public.clone();
    drop(host_key);
    await_installed(
        display,
        &args.host,
        &ip,
        &private,
        &kh,
        &built.toplevel,
        step,
    )
    .await?;

    // Tidy up.
    let progress = display.spinner();
    let server = super::server(h, server.id).await?;
    super::iso::detach(h, &server, Instant::now() + step, &progress).await?;
    progress.done(&format!("{} runs NixOS {}", args.host, built.toplevel));
    Ok(Installed {
        host: args.host.clone(),
        ipv4: server.ipv4.clone(),
        address: ip,
        toplevel: built.toplevel.clone(),
        known_hosts: kh,
        host_key: pinned,
        via: format!("{:?}", args.via).to_lowercase(),
    })
}

/// Phase 1 (with `--via rescue`): the installer environment, Hetzner's
/// rescue system, booted and answering on port 22.
async fn boot_rescue(
    display: &crate::report::Display,
    h: &impl Cloud,
    key: &sshkey::LocalKey,
    args: &InstallArgs,
    server: &super::cloud::Server,
    ip: &str,
    step: Duration,
) -> Result<(), Failure> {
    let progress = display.spinner();
    let (key_id, _) = ensure_ssh_key(h, key, false).await?;
    progress.say(&format!("booting {} into the rescue system", args.host));
    super::rescue::boot(h, server, key_id, Instant::now() + step, &progress).await?;
    let deadline = Instant::now() + step;
    loop {
        let scan = crate::runner::Cmd::new(["ssh-keyscan", "-T", "3", ip])
            .timeout(Duration::from_secs(10));
        let answered = crate::runner::run(&scan)
            .await
            .is_ok_and(|o| !o.stdout.trim().is_empty());
        if answered {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Failure::new(
                Kind::Rescue,
                format!(
                    "the rescue system of {} did not answer on port 22",
                    args.host
                ),
                "check the server's console in the Cloud Console; then run install again",
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Phase 2: nixos-anywhere, with the system, the disk script and the host
/// key made here.
async fn run_nixos_anywhere(
    display: &crate::report::Display,
    built: &Built,
    host_key: &HostKey,
    private: &Path,
    ip: &str,
) -> Result<(), Failure> {
    let mut argv = nixos_anywhere();
    argv.extend([
        "--store-paths".to_string(),
        built.disko.clone(),
        built.toplevel.clone(),
        "--extra-files".into(),
        host_key.extra_files.path().to_string_lossy().into_owned(),
        "-i".into(),
        private.to_string_lossy().into_owned(),
        format!("root@{ip}"),
    ]);
    display.spinner().done(&format!(
        "installing {} on {ip} with nixos-anywhere",
        built.toplevel
    ));
    let cmd = crate::runner::Cmd::new(argv.clone());
    let ran = match crate::runner::run_streaming(&cmd, &Shown).await {
        Ok(out) if !out.success() => Err(crate::runner::failure_of(&cmd, &out)),
        other => other.map(|_| ()),
    };
    let Err(crate::error::CommandFailure { how, tail, .. }) = ran else {
        return Ok(());
    };
    Err(Failure::new(
        Kind::Install,
        format!(
            "nixos-anywhere failed ({how})\n  command: {}\n  output (last lines):\n    {}",
            crate::error::render_argv(&argv),
            tail.join("\n    ")
        ),
        "read its output above; the server may be left in the installer: run install again, or `provision rescue` to look",
    ))
}

/// Phase 3: the reboot, and the proof over a connection that verifies the
/// host key pantheros made (pinned in `kh` before the first connection).
async fn await_installed(
    display: &crate::report::Display,
    host: &str,
    ip: &str,
    private: &Path,
    kh: &Path,
    toplevel: &str,
    step: Duration,
) -> Result<(), Failure> {
    let progress = display.spinner();
    let deadline = Instant::now() + step;
    let mut answered = false;
    loop {
        progress.say(&format!(
            "waiting for {host} to come back after the installation"
        ));
        // What went wrong this time (the last one is reported).
        let (last_error, wrong_key) = match inspect(ip, private, kh).await {
            Ok((id, sys)) if id == "nixos" && sys == toplevel => return Ok(()),
            Ok((id, sys)) if id == "nixos" => {
                return Err(Failure::new(
                    Kind::Verify,
                    format!(
                        "{host} runs NixOS, but not the built configuration: /run/current-system is {sys}, expected {toplevel}"
                    ),
                    "run `pantheros deploy` for the host, or install again",
                ));
            }
            Ok((id, _)) => (
                format!("the server runs {id}, not NixOS (still the old system?)"),
                false,
            ),
            Err(e) => {
                // The installer (or anyone else at that address) has
                // another key: not the installed system, never trusted.
                let wrong = e.contains("Host key verification failed")
                    || e.contains("REMOTE HOST IDENTIFICATION HAS CHANGED");
                (e, wrong)
            }
        };
        // Did anything answer on port 22 (else the reboot never ended)?
        answered |= !["Connection refused", "timed out", "No route to host"]
            .iter()
            .any(|m| last_error.contains(m));
        if Instant::now() >= deadline {
            return Err(not_installed(
                host,
                ip,
                kh,
                &last_error,
                wrong_key,
                answered,
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Why the installed system never proved itself.
fn not_installed(
    host: &str,
    ip: &str,
    kh: &Path,
    last_error: &str,
    wrong_key: bool,
    answered: bool,
) -> Failure {
    if wrong_key {
        return Failure::new(
            Kind::Verify,
            format!(
                "{host} ({ip}) presents an SSH host key that is not the one pantheros generated for it; refusing to connect"
            ),
            format!(
                "the installation did not put the key in place, or another machine answers at {ip}: \
                 check the server's console in the Cloud Console; the expected key is pinned in {}",
                kh.display()
            ),
        );
    }
    let kind = if answered { Kind::Verify } else { Kind::Reboot };
    Failure::new(
        kind,
        format!("{host} did not come back as the installed NixOS: {last_error}"),
        "look at the server's console in the Cloud Console (it may still be booting)",
    )
}
