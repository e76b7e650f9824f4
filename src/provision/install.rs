//! `pantheros provision install HOST`: put the host's NixOS configuration
//! on its Hetzner server with nixos-anywhere (disko + nixos-install, from
//! the rescue system or through kexec from the running image), wait for
//! the reboot, pin the new host key in a known_hosts pantheros manages, and
//! verify that the server runs NixOS with exactly the built toplevel.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::hetzner::Hetzner;
use super::{
    Failure, Progress, credentials, ensure_ssh_key, exit, our_server, rescue_boot, sshkey,
};

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

/// Scan the server's current host keys into our known_hosts (replacing
/// what was there for that address: the installation made new keys).
async fn pin_host_key(ip: &str, kh: &std::path::Path) -> Option<String> {
    let scan = crate::runner::Cmd::new(["ssh-keyscan", "-T", "3", "-t", "ed25519", ip])
        .timeout(Duration::from_secs(10));
    let out = crate::runner::run(&scan).await.ok()?;
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return None;
    }
    if let Some(dir) = kh.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if kh.exists() {
        let _ = crate::runner::run(&crate::runner::Cmd::new([
            "ssh-keygen".to_string(),
            "-R".into(),
            ip.to_string(),
            "-f".into(),
            kh.to_string_lossy().into_owned(),
        ]))
        .await;
    }
    let mut text = std::fs::read_to_string(kh).unwrap_or_default();
    for l in &lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(kh, text).ok()?;
    Some(lines.join("\n"))
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

/// Install `flake_attr` (e.g. /path/to/flake#hetzner-vps) whose built
/// toplevel is `toplevel`.
pub async fn install(args: &InstallArgs, flake_attr: &str, toplevel: &str) -> Result<i32, Failure> {
    let (token, _) = credentials::resolve().await?;
    let h = Hetzner::new(&token)?;
    let key = sshkey::choose(args.ssh_key.as_deref())?;
    let private = key.private_key().ok_or_else(|| {
        Failure::new(
            exit::SSH_KEY,
            format!(
                "the private key for {} is not next to it",
                key.path.display()
            ),
            "pass --ssh-key with a public key whose private key is in the same directory",
        )
    })?;
    let server = our_server(&h, &args.host).await?;
    let ip = server
        .public_net
        .ipv4
        .as_ref()
        .map(|i| i.ip.clone())
        .ok_or_else(|| {
            Failure::new(
                exit::API,
                format!("{} has no IPv4 address", args.host),
                "nixos-anywhere needs one",
            )
        })?;
    let progress = Progress::new();
    let step = Duration::from_secs(args.timeout);

    // Phase 1: the installer environment.
    if args.via == Via::Rescue {
        let (key_id, _) = ensure_ssh_key(&h, &key, false).await?;
        progress.say(&format!("booting {} into the rescue system", args.host));
        rescue_boot(&h, &server, key_id, Instant::now() + step, &progress).await?;
        let deadline = Instant::now() + step;
        while crate::runner::run(
            &crate::runner::Cmd::new(["ssh-keyscan", "-T", "3", ip.as_str()])
                .timeout(Duration::from_secs(10)),
        )
        .await
        .map(|o| o.stdout.trim().is_empty())
        .unwrap_or(true)
        {
            if Instant::now() >= deadline {
                return Err(Failure::new(
                    exit::RESCUE,
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

    // Phase 2: nixos-anywhere.
    let mut argv = nixos_anywhere();
    argv.extend([
        "--flake".to_string(),
        flake_attr.to_string(),
        "-i".into(),
        private.to_string_lossy().into_owned(),
        format!("root@{ip}"),
    ]);
    progress.done(&format!(
        "installing {flake_attr} on {ip} with nixos-anywhere"
    ));
    let cmd = crate::runner::Cmd::new(argv.clone());
    let ran = match crate::runner::run_streaming(&cmd, &Shown).await {
        Ok(out) if !out.success() => Err(crate::runner::failure_of(&cmd, &out)),
        other => other.map(|_| ()),
    };
    if let Err(crate::error::CommandFailure { how, tail, .. }) = ran {
        return Err(Failure::new(
            exit::INSTALL,
            format!(
                "nixos-anywhere failed ({how})\n  command: {}\n  output (last lines):\n    {}",
                crate::error::render_argv(&argv),
                tail.join("\n    ")
            ),
            "read its output above; the server may be left in the installer: run install again, or `provision rescue` to look",
        ));
    }

    // Phase 3: the reboot, the new host key, and the proof.
    let kh = known_hosts();
    let progress = Progress::new();
    let deadline = Instant::now() + step;
    let mut last_error = String::from("no answer");
    let mut pinned = None;
    loop {
        progress.say(&format!(
            "waiting for {} to come back after the installation",
            args.host
        ));
        if let Some(k) = pin_host_key(&ip, &kh).await {
            pinned = Some(k);
            match inspect(&ip, &private, &kh).await {
                Ok((id, sys)) if id == "nixos" && sys == toplevel => break,
                Ok((id, sys)) if id == "nixos" => {
                    return Err(Failure::new(
                        exit::VERIFY,
                        format!(
                            "{} runs NixOS, but not the built configuration: /run/current-system is {sys}, expected {toplevel}",
                            args.host
                        ),
                        "run `pantheros deploy` for the host, or install again",
                    ));
                }
                Ok((id, _)) => {
                    last_error = format!("the server runs {id}, not NixOS (still the old system?)")
                }
                Err(e) => last_error = e,
            }
        }
        if Instant::now() >= deadline {
            let code = if pinned.is_none() {
                exit::REBOOT
            } else {
                exit::VERIFY
            };
            return Err(Failure::new(
                code,
                format!(
                    "{} did not come back as the installed NixOS: {last_error}",
                    args.host
                ),
                "look at the server's console in the Cloud Console (it may still be booting)",
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // Phase 4: tidy up.
    let server = super::get_server(&h, server.id).await?;
    super::detach_iso(&h, &server, Instant::now() + step, &progress).await?;
    progress.done(&format!("{} runs NixOS {toplevel}", args.host));
    eprintln!("  host key pinned in {}", kh.display());
    eprintln!("  next: pantheros deploy {}", args.host);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "version": crate::report::JSON_VERSION,
                "host": args.host, "ipv4": ip, "toplevel": toplevel, "knownHosts": kh,
                "hostKey": pinned, "via": format!("{:?}", args.via).to_lowercase(),
            }))
            .unwrap_or_default()
        );
    }
    Ok(exit::OK)
}
