//! `pantheros up HOST`: from an empty Hetzner project to a verified NixOS
//! host in one command, in three steps, each skipped when it is already
//! done, so running `up` again after a failure resumes where it stopped:
//!
//! 1. **server**: the host's server, created unless pantheros already made
//!    one (and the Kamal config updated, as `provision create` does);
//! 2. **install**: NixOS installed as `provision install` does, unless the
//!    server already runs NixOS and presents the host key pantheros pinned
//!    when it installed it (a fresh image's key is never taken for that);
//! 3. **deploy**: the first deploy through the whole pipeline (dry-activate,
//!    diff, confirmation, switch, reachability, health checks), over SSH
//!    that verifies that pinned key.
//!
//! The host is evaluated once (toplevel and disk script); everything is
//! built by pantheros itself.

use crate::provision::Kind;
use serde::Serialize;

use super::{log_root, selected_hosts};
use crate::cli::{self, CreateArgs, InstallArgs};
use crate::error::{Error, Result, exit};
use crate::provision::{self as p, install, sshkey};
use crate::{inventory, nix};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepResult {
    Done,
    /// Already done before this run.
    Skipped,
    /// `--dry-run`: what would be done.
    WouldRun,
    Failed,
    /// An earlier step failed.
    NotRun,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub result: StepResult,
    pub detail: String,
}

/// The steps so far, and how the run ends.
struct Run {
    host: String,
    json: bool,
    steps: Vec<Step>,
    deploy: Vec<crate::deploy::Outcome>,
}

const STEPS: [&str; 3] = ["server", "install", "deploy"];

impl Run {
    fn step(&mut self, step: &'static str, result: StepResult, detail: impl Into<String>) {
        let detail = detail.into();
        crate::report::say(
            &self.host,
            &format!("up: {step}: {} ({detail})", word(result)),
        );
        self.steps.push(Step {
            step,
            result,
            detail,
        });
    }

    /// A step failed: say why as every error is said, then end.
    fn failed(mut self, step: &'static str, e: Error) -> Result<i32> {
        crate::report::print_error(&e);
        let code = e.exit_code();
        self.step(step, StepResult::Failed, e.to_string());
        Ok(self.end(code))
    }

    /// The table (and `--json`), the exit code.
    fn end(mut self, code: i32) -> i32 {
        for s in STEPS {
            if !self.steps.iter().any(|x| x.step == s) {
                self.steps.push(Step {
                    step: s,
                    result: StepResult::NotRun,
                    detail: "an earlier step did not succeed".into(),
                });
            }
        }
        eprintln!("\n=== pantheros up {} ===", self.host);
        for s in &self.steps {
            eprintln!("  {:<8} {:<9} {}", s.step, word(s.result), s.detail);
        }
        if code != exit::OK {
            eprintln!("  run `pantheros up {}` again to resume", self.host);
        }
        if self.json {
            crate::report::print_document(&serde_json::json!({
                "host": self.host,
                "exitCode": code,
                "steps": self.steps,
                "deploy": self.deploy,
            }));
        }
        code
    }
}

fn word(r: StepResult) -> &'static str {
    match r {
        StepResult::Done => "done",
        StepResult::Skipped => "skipped",
        StepResult::WouldRun => "would run",
        StepResult::Failed => "FAILED",
        StepResult::NotRun => "not run",
    }
}

pub async fn up(flake: Option<&str>, cwd: &std::path::Path, args: cli::UpArgs) -> Result<i32> {
    let flake_ref = inventory::flake::resolve(flake, cwd)?;
    let nix = nix::Nix::locate()?;
    let mut hosts =
        selected_hosts(&nix, &flake_ref, std::slice::from_ref(&args.host), true).await?;
    // up records the server's facts itself: those placeholders wait.
    let recorded_here: Vec<&str> = inventory::facts::FROM_CREATE
        .iter()
        .chain(inventory::facts::FROM_INSTALL)
        .copied()
        .collect();
    inventory::refuse_unfilled(&hosts, &recorded_here)?;
    let mut host = hosts.remove(0);
    let logs = log_root(&flake_ref, cwd, args.log_dir.clone());
    let mut run = Run {
        host: host.name.clone(),
        json: args.json,
        steps: vec![],
        deploy: vec![],
    };

    // 1. The server.
    let create = CreateArgs {
        host: host.name.clone(),
        server: args.server.clone(),
        dry_run: args.dry_run,
        json: false,
        timeout: args.timeout,
        kamal: args.kamal.clone(),
        no_kamal: args.no_kamal,
    };
    // One API client and one SSH key for every step (a key chosen at a
    // prompt is asked for once).
    let prepared = async {
        let wanted = p::create::Wanted::of(&host, &create)?;
        let cloud = p::connect().await?;
        let key = sshkey::choose(args.server.ssh_key.as_deref())?;
        let private = key.private_key()?;
        Ok::<_, p::Failure>((wanted, cloud, key, private))
    };
    let (wanted, cloud, key, private) = match prepared.await {
        Ok(p) => p,
        Err(f) => return run.failed("server", f.into_error()),
    };
    let server = match p::ensure_server(&cloud, &key, &wanted, &create).await {
        Ok(s) => s,
        Err(f) => return run.failed("server", f.into_error()),
    };
    // What the server's creation decided goes into the host's facts, and
    // the host is evaluated again with them: the installation and the
    // deploy build the system that knows its own addresses.
    let changed = if args.dry_run {
        false
    } else {
        match p::create::record_facts(&host, &flake_ref, &server) {
            Ok(changed) => changed,
            Err(f) => return run.failed("server", f.into_error()),
        }
    };
    if changed {
        match selected_hosts(&nix, &flake_ref, std::slice::from_ref(&args.host), true).await {
            Ok(mut again) if !again.is_empty() => {
                host = again.remove(0);
                crate::report::say(&host.name, "evaluated again with the recorded facts");
            }
            Ok(_) => {}
            Err(e) => return run.failed("server", e),
        }
    }
    let at = |ip: Option<String>| ip.unwrap_or_else(|| "no address yet".into());
    match server.result.as_str() {
        "reused" => run.step(
            "server",
            StepResult::Skipped,
            format!(
                "{} exists (id {}, {})",
                server.name,
                server.id.unwrap_or(0),
                at(server.address())
            ),
        ),
        "dry-run" => run.step(
            "server",
            StepResult::WouldRun,
            format!(
                "would create {} ({}, {})",
                server.name, server.server_type, server.location
            ),
        ),
        _ => run.step(
            "server",
            StepResult::Done,
            format!(
                "created {} (id {}, {})",
                server.name,
                server.id.unwrap_or(0),
                at(server.address())
            ),
        ),
    }
    let ip = match (server.address(), args.dry_run) {
        (Some(ip), _) => ip,
        (None, true) => {
            run.step(
                "install",
                StepResult::WouldRun,
                "would install NixOS on the new server",
            );
            run.step(
                "deploy",
                StepResult::WouldRun,
                "would deploy the host's configuration",
            );
            return Ok(run.end(exit::OK));
        }
        (None, false) => {
            let e = p::Failure::new(
                Kind::Api,
                format!(
                    "{} has no public address (neither IPv4 nor IPv6)",
                    server.name
                ),
                "the installation and the deploy need one: look at the server in the Cloud Console",
            );
            return run.failed("install", e.into_error());
        }
    };

    // 2. NixOS on it.
    if install::runs_installed_nixos(&ip, &private).await {
        run.step(
            "install",
            StepResult::Skipped,
            format!("{ip} runs NixOS with the host key pantheros pinned"),
        );
    } else if args.dry_run {
        run.step(
            "install",
            StepResult::WouldRun,
            format!("would install NixOS on {ip}"),
        );
    } else {
        let built = match super::build_for_install(&host, &logs).await {
            Ok(b) => b,
            Err(e) => return run.failed("install", e),
        };
        let how = InstallArgs {
            host: host.name.clone(),
            via: args.via,
            ssh_key: Some(key.path.clone()),
            timeout: args.timeout,
            json: false,
        };
        match install::install_system(&cloud, &key, &how, &built).await {
            Ok(done) => {
                if let Err(f) = install::record_facts(&host, &flake_ref, &done) {
                    return run.failed("install", f.into_error());
                }
                run.step(
                    "install",
                    StepResult::Done,
                    format!("{} runs NixOS {}", done.ipv4, done.toplevel),
                )
            }
            Err(f) => return run.failed("install", f.into_error()),
        }
    }
    if args.dry_run {
        run.step(
            "deploy",
            StepResult::WouldRun,
            format!("would deploy {} to {ip}", host.name),
        );
        return Ok(run.end(exit::OK));
    }

    // 3. The first deploy, to the server's address, verifying the host key
    // pantheros pinned and logging in with the key the server was made with.
    let d = &mut host.deployment;
    d.target_host = Some(ip.clone());
    d.ssh_options.extend([
        "-i".to_string(),
        private.to_string_lossy().into_owned(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", install::known_hosts().display()),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
    ]);
    let opts = crate::deploy::Options {
        origin: crate::deploy::record::Origin::of(&flake_ref),
        ..crate::deploy::Options::new(
            crate::deploy::Mode::Deploy,
            crate::deploy::Goal::Switch,
            logs,
        )
    };
    let fleet = crate::deploy::fleet::FleetArgs {
        yes: args.yes,
        json: false,
        jobs: 1,
        canary: 0,
        rollback_succeeded: false,
        keep_going: true,
        master_log: None,
    };
    let evaluated = vec![host.clone()];
    let (code, outcomes) = crate::deploy::fleet::run(&nix, vec![host], opts, fleet).await;
    super::record_read_facts(&evaluated, &flake_ref, &outcomes);
    let (result, detail) = match outcomes.first() {
        Some(o) if o.result == crate::deploy::HostResult::Unchanged => (
            StepResult::Skipped,
            format!("{ip} already runs this configuration"),
        ),
        Some(o) if o.result.succeeded() => (
            StepResult::Done,
            format!(
                "{ip} runs generation {} (health checks passed)",
                o.generation_after
                    .map(|g| g.to_string())
                    .unwrap_or_else(|| "?".into())
            ),
        ),
        Some(o) => (
            StepResult::Failed,
            format!(
                "{}: {}",
                o.result.word(),
                o.error
                    .clone()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
            ),
        ),
        None => (StepResult::Failed, "the deploy did not run".into()),
    };
    run.step("deploy", result, detail);
    run.deploy = outcomes;
    Ok(run.end(code))
}
