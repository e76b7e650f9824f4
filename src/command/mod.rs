//! One file per subcommand; this module dispatches to them and holds what
//! several share (host selection with drvPaths, log and GC-root places).

pub mod app;
pub mod build_all;
pub mod deploy;
pub mod exec;
pub mod facts;
pub mod hosts;
pub mod keys;
pub mod provision;
pub mod rollback;
pub mod status;
pub mod up;
pub mod validate;

use crate::cli::{Cli, Command};
use crate::error::{Error, Result};
use crate::provision::Kind;
use crate::{inventory, nix};
use app::App;

pub async fn run(cli: Cli, display: crate::report::Display) -> Result<i32> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?;
    let app = &App::new(cli.flake, cwd, cli.nix, display);
    match cli.command {
        Command::Hosts(args) => {
            let (flake, nix) = app.open()?;
            let inv = inventory::load(&nix, &flake, &inventory::EvalOptions::default()).await?;
            hosts::hosts(&inv, &args)
        }
        Command::Deploy(args) => deploy::deploy(app, args).await,
        Command::BuildAll(args) => build_all::build_all(app, args).await,
        Command::Rollback(args) => rollback::rollback(app, args).await,
        Command::Provision(args) => provision::provision(app, args).await,
        Command::Up(args) => up::up(app, args).await,
        Command::Validate(args) => validate::validate(app, args).await,
        Command::Facts(args) => facts::facts(app, args).await,
        Command::Exec(args) => exec::exec(app, args).await,
        Command::Status(args) => status::status(app, args).await,
        Command::Keys(crate::cli::KeysCommand::Upload(args)) => keys::upload(app, args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "pantheros", &mut text);
            print_generated(&text, "the completion script")
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut text = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut text)
                .map_err(|e| Error::io("rendering the man page", e))?;
            print_generated(&text, "the man page")
        }
    }
}

/// Write a generated document to stdout; a reader that stops early (`| head`)
/// is not an error.
fn print_generated(text: &[u8], what: &str) -> Result<i32> {
    use std::io::Write;
    match std::io::stdout().write_all(text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io(format!("writing {what}"), e))
        }
        _ => Ok(crate::error::exit::OK),
    }
}

/// Evaluate the flake once, with drvPaths for the selected hosts (and,
/// with `disko`, their disko scripts'), and return those hosts (every one
/// evaluated).
pub async fn selected_hosts(
    display: &crate::report::Display,
    nix: &nix::Nix,
    flake: &inventory::FlakeRef,
    selectors: &[String],
    disko: bool,
) -> Result<Vec<inventory::Host>> {
    let opts = crate::cli::EvalFlags::default().options(selectors, disko);
    let (hosts, _) =
        selected_hosts_checked(display, nix, flake, selectors, opts, false, false).await?;
    Ok(hosts)
}

/// [`selected_hosts`], showing the selected hosts' evaluation warnings
/// first (grouped per host; those Nix printed for no host in particular
/// as `[evaluation]`), and with `fail_on_warnings` refusing to go on when
/// there is any. A selected host that failed to evaluate refuses the run,
/// unless `keep_going` (`deploy --keep-going`): then those hosts come back
/// beside the others, (host, Nix's message) each, and only a selection
/// where none evaluated is refused.
pub async fn selected_hosts_checked(
    display: &crate::report::Display,
    nix: &nix::Nix,
    flake: &inventory::FlakeRef,
    selectors: &[String],
    opts: inventory::EvalOptions,
    fail_on_warnings: bool,
    keep_going: bool,
) -> Result<(Vec<inventory::Host>, Vec<(String, String)>)> {
    let inv = inventory::load(nix, flake, &opts).await?;
    let selection = inv.select(selectors)?;
    let failed: Vec<(String, String)> = selection
        .failed
        .iter()
        .map(|e| (e.name.clone(), e.message.clone()))
        .collect();
    if !failed.is_empty() && (!keep_going || selection.hosts.is_empty()) {
        return Err(Error::HostsFailedToEvaluate { failed });
    }
    let hosts: Vec<inventory::Host> = selection.hosts.into_iter().cloned().collect();
    let mut warned: Vec<String> = vec![];
    for h in &hosts {
        for w in &h.warnings {
            display.say(&h.name, &format!("warning: {w}"));
            warned.push(format!("{}: {w}", h.name));
        }
    }
    for w in &inv.warnings {
        display.say("evaluation", &format!("warning: {w}"));
        warned.push(w.clone());
    }
    if fail_on_warnings && !warned.is_empty() {
        return Err(Error::Warnings { warnings: warned });
    }
    let missing: Vec<&str> = hosts
        .iter()
        .filter(|h| h.drv_path.is_none())
        .map(|h| h.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Error::UnexpectedOutput {
            command: "nix eval".into(),
            detail: format!("no toplevel derivation for {}", missing.join(", ")),
        });
    }
    Ok((hosts, failed))
}
/// Record what each host's deploy read back (`recordFacts`) in its facts
/// file; a file that cannot be written is said, and the deploy stands.
pub fn record_read_facts(
    display: &crate::report::Display,
    hosts: &[inventory::Host],
    flake: &inventory::FlakeRef,
    outcomes: &[crate::deploy::Outcome],
) {
    for o in outcomes.iter().filter(|o| !o.facts_read.is_empty()) {
        let Some(host) = hosts.iter().find(|h| h.name == o.host) else {
            continue;
        };
        let values: Vec<(&str, serde_json::Value)> = o
            .facts_read
            .iter()
            .map(|(n, v)| (n.as_str(), serde_json::Value::String(v.clone())))
            .collect();
        if let Err(e) = inventory::facts::record(display, host, flake, &values, "host") {
            display.say(
                &host.name,
                &format!("warning: the facts read from the host could not be recorded: {e}"),
            );
        }
    }
}

/// Where a run's logs and GC roots go: `--log-dir`/`$PANTHEROS_LOG_DIR`;
/// else `logs/` in the flake when it is a git checkout (git flakes copy only
/// tracked files to the store, and `logs/` is ignored); else the user's
/// state directory, because Nix copies every file of a plain directory
/// flake into the world-readable store on every evaluation, logs included.
pub fn log_root(
    flake: &inventory::FlakeRef,
    cwd: &std::path::Path,
    given: Option<std::path::PathBuf>,
) -> std::path::PathBuf {
    if let Some(g) = given {
        return g;
    }
    let root = flake.root.clone().unwrap_or_else(|| cwd.to_path_buf());
    if root.join(".git").exists() {
        return root.join("logs");
    }
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "flake".into());
    let key = {
        use md5::{Digest, Md5};
        let d = Md5::digest(root.to_string_lossy().as_bytes());
        d.iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    state_logs().join(format!("{name}-{key}"))
}
/// The selected hosts of the flake (for rollback), or, without selectors,
/// this machine; and where their logs go. One evaluation, no derivations.
pub async fn flake_hosts(
    app: &App,
    selectors: &[String],
) -> Result<(Vec<inventory::Host>, std::path::PathBuf)> {
    if selectors.is_empty() {
        // The same rule as every run: a plain directory flake's logs/
        // would be copied into the world-readable store.
        let root = match app.flake() {
            Ok(f) => app.log_root(&f, None),
            Err(_) => state_logs(),
        };
        let host = inventory::Host {
            name: crate::host::hostname(),
            uses_module: false,
            deployment: inventory::Deployment {
                target_host: Some("localhost".into()),
                ..Default::default()
            },
            drv_path: None,
            system: None,
            disko_drv_path: None,
            toplevel: None,
            extras: Default::default(),
            warnings: vec![],
        };
        return Ok((vec![host], root));
    }
    let flake = app.flake()?;
    let nix = app.nix()?;
    let inv = inventory::load(&nix, &flake, &inventory::EvalOptions::default()).await?;
    let selection = inv.select(selectors)?;
    if let Some(err) = selection.failure() {
        return Err(err);
    }
    let hosts = selection.hosts.into_iter().cloned().collect();
    Ok((hosts, app.log_root(&flake, None)))
}

/// One host of the flake by name (for provision), or, without a name, this
/// machine; and where its logs go.
pub async fn flake_host(
    app: &App,
    name: Option<&str>,
) -> Result<(inventory::Host, std::path::PathBuf)> {
    let selectors: Vec<String> = name.iter().map(|n| n.to_string()).collect();
    let (mut hosts, logs) = flake_hosts(app, &selectors).await?;
    if hosts.len() != 1 {
        return Err(Error::Usage(format!(
            "`{}` selects {} hosts; name exactly one",
            name.unwrap_or_default(),
            hosts.len()
        )));
    }
    Ok((hosts.remove(0), logs))
}

/// `$XDG_STATE_HOME/pantheros/logs`, for runs outside any flake.
pub fn state_logs() -> std::path::PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/state"))
        })
        .unwrap_or_else(|| std::path::PathBuf::from("/var/log"))
        .join("pantheros/logs")
}
/// Build a host's toplevel from its derivation (with a GC root) and return it.
pub async fn build_toplevel(
    nix: &nix::Nix,
    host: &inventory::Host,
    logs: &std::path::Path,
) -> Result<String> {
    let drv = host
        .drv_path
        .clone()
        .ok_or_else(|| Error::UnexpectedOutput {
            command: "nix eval".into(),
            detail: format!("no derivation for {}", host.name),
        })?;
    realise(nix, &drv, logs, &host.name).await
}

/// Build what an installation installs (the toplevel and disko's script),
/// from the one evaluation; a host without a disk layout is refused.
pub async fn build_for_install(
    nix: &nix::Nix,
    host: &inventory::Host,
    logs: &std::path::Path,
) -> Result<crate::provision::install::Built> {
    let Some(disko) = host.disko_drv_path.as_deref() else {
        return Err(crate::provision::Failure::new(Kind::Install,
            format!("{} declares no disk layout (config.system.build.diskoScript)", host.name),
            "import disko's NixOS module (disko.nixosModules.disko) and declare disko.devices for the host",
        )
        .into_error());
    };
    Ok(crate::provision::install::Built {
        toplevel: build_toplevel(nix, host, logs).await?,
        disko: realise(nix, disko, logs, &format!("{}-disko", host.name)).await?,
    })
}

/// Build `drv` with an indirect GC root `<logs>/gcroots/<root>`; its output.
pub async fn realise(
    nix: &nix::Nix,
    drv: &str,
    logs: &std::path::Path,
    root: &str,
) -> Result<String> {
    let roots = logs.join("gcroots");
    let rooted = nix
        .rooted_realise(drv, &roots, root)
        .map_err(|e| Error::io(format!("creating {}", roots.display()), e))?;
    crate::runner::run_ok(&rooted.cmd)
        .await
        .map_err(Error::Command)?;
    rooted
        .output()
        .map_err(|e| Error::io(format!("reading {}", rooted.root.display()), e))
}
