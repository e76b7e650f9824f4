//! `pantheros up HOST`: from an empty Hetzner project to a verified NixOS
//! host in one command, in three named steps (the methods of [`Up`]), each skipped when it is already
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

use super::app::App;
use crate::provision::Kind;
use serde::Serialize;

use super::selected_hosts;
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
    display: crate::report::Display,
    json: bool,
    steps: Vec<Step>,
    deploy: Vec<crate::deploy::Outcome>,
}

const STEPS: [&str; 3] = ["server", "install", "deploy"];

impl Run {
    fn step(&mut self, step: &'static str, result: StepResult, detail: impl Into<String>) {
        let detail = detail.into();
        self.display.say(
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

pub async fn up(app: &App, args: cli::UpArgs) -> Result<i32> {
    let flake_ref = app.flake()?;
    let nix = app.nix()?;
    let mut hosts = selected_hosts(
        &app.display,
        &nix,
        &flake_ref,
        std::slice::from_ref(&args.host),
        true,
    )
    .await?;
    // up records the server's facts itself: those placeholders wait.
    let recorded_here: Vec<&str> = inventory::facts::FROM_CREATE
        .iter()
        .chain(inventory::facts::FROM_INSTALL)
        .copied()
        .collect();
    inventory::refuse_unfilled(&hosts, &recorded_here)?;
    let host = hosts.remove(0);
    let mut run = Run {
        host: host.name.clone(),
        display: app.display.clone(),
        json: args.json,
        steps: vec![],
        deploy: vec![],
    };
    let mut up = match Up::prepare(&nix, &flake_ref, &args, host, app).await {
        Ok(up) => up,
        Err(e) => return run.failed("server", e),
    };

    // 1. The server.
    let server = match up.server().await {
        Ok(s) => s,
        Err(e) => return run.failed("server", e),
    };
    let (result, detail) = server_report(&server);
    run.step("server", result, detail);
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
    match up.install(&ip).await {
        Ok((result, detail)) => run.step("install", result, detail),
        Err(e) => return run.failed("install", e),
    }
    if args.dry_run {
        let detail = format!("would deploy {} to {ip}", up.host.name);
        run.step("deploy", StepResult::WouldRun, detail);
        return Ok(run.end(exit::OK));
    }

    // 3. The first deploy.
    let (code, outcomes) = up.deploy(&ip).await;
    let (result, detail) = deploy_report(&ip, &outcomes);
    run.step("deploy", result, detail);
    run.deploy = outcomes;
    Ok(run.end(code))
}

/// What the steps share: the host (evaluated again when a step recorded a
/// fact), one API client and one SSH key for every step (a key chosen at a
/// prompt is asked for once).
struct Up<'a> {
    nix: &'a nix::Nix,
    flake: &'a inventory::FlakeRef,
    args: &'a cli::UpArgs,
    host: inventory::Host,
    logs: std::path::PathBuf,
    create: CreateArgs,
    wanted: p::create::Wanted,
    cloud: p::hetzner::Hetzner,
    key: sshkey::LocalKey,
    private: std::path::PathBuf,
    display: crate::report::Display,
}

impl<'a> Up<'a> {
    async fn prepare(
        nix: &'a nix::Nix,
        flake: &'a inventory::FlakeRef,
        args: &'a cli::UpArgs,
        host: inventory::Host,
        app: &App,
    ) -> Result<Up<'a>> {
        let create = CreateArgs {
            host: host.name.clone(),
            server: args.server.clone(),
            dry_run: args.dry_run,
            json: false,
            timeout: args.timeout,
            kamal: args.kamal.clone(),
            no_kamal: args.no_kamal,
        };
        let prepared = async {
            let wanted = p::create::Wanted::of(&host, &create)?;
            let cloud = p::connect().await?;
            let key = sshkey::choose(args.server.ssh_key.as_deref())?;
            let private = key.private_key()?;
            Ok::<_, p::Failure>((wanted, cloud, key, private))
        };
        let (wanted, cloud, key, private) = prepared.await.map_err(p::Failure::into_error)?;
        Ok(Up {
            nix,
            flake,
            args,
            logs: app.log_root(flake, args.log_dir.clone()),
            host,
            create,
            wanted,
            cloud,
            key,
            private,
            display: app.display.clone(),
        })
    }

    /// Step 1: the server, created unless pantheros already made one. What
    /// its creation decided goes into the host's facts, and the host is
    /// evaluated again with them: the installation and the deploy build
    /// the system that knows its own addresses.
    async fn server(&mut self) -> Result<p::create::Created> {
        let server = p::ensure_server(
            &self.display,
            &self.cloud,
            &self.key,
            &self.wanted,
            &self.create,
        )
        .await
        .map_err(p::Failure::into_error)?;
        if self.args.dry_run {
            return Ok(server);
        }
        let changed = p::create::record_facts(&self.display, &self.host, self.flake, &server)
            .map_err(p::Failure::into_error)?;
        if changed {
            let name = std::slice::from_ref(&self.args.host);
            let mut again = selected_hosts(&self.display, self.nix, self.flake, name, true).await?;
            if !again.is_empty() {
                self.host = again.remove(0);
                self.display
                    .say(&self.host.name, "evaluated again with the recorded facts");
            }
        }
        Ok(server)
    }

    /// Step 2: NixOS installed as `provision install` does, unless the
    /// server already runs NixOS with the host key pantheros pinned.
    async fn install(&self, ip: &str) -> Result<(StepResult, String)> {
        if install::runs_installed_nixos(ip, &self.private).await {
            return Ok((
                StepResult::Skipped,
                format!("{ip} runs NixOS with the host key pantheros pinned"),
            ));
        }
        if self.args.dry_run {
            return Ok((StepResult::WouldRun, format!("would install NixOS on {ip}")));
        }
        let built = super::build_for_install(self.nix, &self.host, &self.logs).await?;
        let how = InstallArgs {
            host: self.host.name.clone(),
            via: self.args.via,
            ssh_key: Some(self.key.path.clone()),
            timeout: self.args.timeout,
            json: false,
        };
        let done = install::install_system(&self.display, &self.cloud, &self.key, &how, &built)
            .await
            .map_err(p::Failure::into_error)?;
        install::record_facts(&self.display, &self.host, self.flake, &done)
            .map_err(p::Failure::into_error)?;
        Ok((
            StepResult::Done,
            format!("{} runs NixOS {}", done.address, done.toplevel),
        ))
    }

    /// Step 3: the first deploy through the whole pipeline, to the
    /// server's address, verifying the host key pantheros pinned and
    /// logging in with the key the server was made with.
    async fn deploy(self, ip: &str) -> (i32, Vec<crate::deploy::Outcome>) {
        let mut host = self.host;
        let d = &mut host.deployment;
        d.target_host = Some(ip.to_string());
        d.ssh_options.extend([
            "-i".to_string(),
            self.private.to_string_lossy().into_owned(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", install::known_hosts().display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
        ]);
        let opts = crate::deploy::Options {
            origin: crate::deploy::record::Origin::of(self.flake),
            ..crate::deploy::Options::new(
                crate::deploy::Mode::Deploy,
                crate::deploy::Goal::Switch,
                self.logs,
                self.display.clone(),
            )
        };
        let fleet = crate::deploy::fleet::FleetArgs {
            yes: self.args.yes,
            json: false,
            jobs: 1,
            canary: 0,
            rollback_succeeded: false,
            keep_going: true,
            master_log: None,
            unevaluated: vec![],
        };
        let evaluated = vec![host.clone()];
        let (code, outcomes) = crate::deploy::fleet::run(self.nix, vec![host], opts, fleet).await;
        super::record_read_facts(&self.display, &evaluated, self.flake, &outcomes);
        (code, outcomes)
    }
}

/// The server step's line.
fn server_report(server: &p::create::Created) -> (StepResult, String) {
    let at = server.address().unwrap_or_else(|| "no address yet".into());
    let id = server.id.unwrap_or(0);
    match server.result.as_str() {
        "reused" => (
            StepResult::Skipped,
            format!("{} exists (id {id}, {at})", server.name),
        ),
        "dry-run" => (
            StepResult::WouldRun,
            format!(
                "would create {} ({}, {})",
                server.name, server.server_type, server.location
            ),
        ),
        _ => (
            StepResult::Done,
            format!("created {} (id {id}, {at})", server.name),
        ),
    }
}

/// The deploy step's line.
fn deploy_report(ip: &str, outcomes: &[crate::deploy::Outcome]) -> (StepResult, String) {
    match outcomes.first() {
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
                    .as_deref()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
            ),
        ),
        None => (StepResult::Failed, "the deploy did not run".into()),
    }
}
