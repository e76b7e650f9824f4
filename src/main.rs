//! pantheros: deploy, roll back and provision a NixOS fleet from one flake.

use std::io::Write;

use clap::Parser;

use pantheros::cli::{self, Cli, Command};
use pantheros::error::{Error, Result, exit};
use pantheros::{inventory, nix, report};

fn main() {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            std::process::exit(exit::FAILED_NOTHING_CHANGED);
        }
    };
    let code = match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            report::print_error(&e);
            e.exit_code()
        }
    };
    std::process::exit(code);
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "pantheros=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PANTHEROS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

async fn run(cli: Cli) -> Result<i32> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?;
    match cli.command {
        Command::Hosts(args) => {
            let flake = inventory::flake::resolve(cli.flake.as_deref(), &cwd)?;
            let nix = nix::Nix::locate()?;
            let inv = inventory::load(&nix, &flake, &inventory::EvalOptions::default()).await?;
            hosts(&inv, &args)
        }
        Command::Deploy(args) => deploy(cli.flake.as_deref(), &cwd, args).await,
        Command::BuildAll(args) => build_all(cli.flake.as_deref(), &cwd, args).await,
        Command::Rollback(args) => rollback(cli.flake.as_deref(), &cwd, args).await,
        Command::Provision(args) => provision(cli.flake.as_deref(), &cwd, args).await,
    }
}

fn hosts(inv: &inventory::Inventory, args: &cli::HostsArgs) -> Result<i32> {
    let selection = inv.select(&args.selectors)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = serde_json::json!({
            "flake": inv.flake,
            "hosts": selection.hosts,
            "errors": selection.failed,
        });
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    } else {
        let _ = write!(out, "{}", report::hosts_table(&selection.hosts));
    }
    drop(out);
    // The healthy hosts are listed; the failed ones are reported after them.
    match selection.failure() {
        None => Ok(exit::OK),
        Some(err) => {
            report::print_error(&err);
            Ok(err.exit_code())
        }
    }
}

/// Evaluate the flake once, with drvPaths for the selected hosts, and
/// return those hosts (every one evaluated).
async fn selected_hosts(
    nix: &nix::Nix,
    flake: &inventory::FlakeRef,
    selectors: &[String],
) -> Result<Vec<inventory::Host>> {
    let opts = inventory::EvalOptions {
        drv_for: Some(selectors.to_vec()),
    };
    let inv = inventory::load(nix, flake, &opts).await?;
    let selection = inv.select(selectors)?;
    if let Some(err) = selection.failure() {
        return Err(err);
    }
    let hosts: Vec<inventory::Host> = selection.hosts.into_iter().cloned().collect();
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
    Ok(hosts)
}

fn log_root(
    flake: &inventory::FlakeRef,
    cwd: &std::path::Path,
    given: Option<std::path::PathBuf>,
) -> std::path::PathBuf {
    given.unwrap_or_else(|| {
        flake
            .root
            .clone()
            .unwrap_or_else(|| cwd.to_path_buf())
            .join("logs")
    })
}

async fn deploy(flake: Option<&str>, cwd: &std::path::Path, args: cli::DeployArgs) -> Result<i32> {
    let flake = inventory::flake::resolve(flake, cwd)?;
    let nix = nix::Nix::locate()?;
    let hosts = selected_hosts(&nix, &flake, &args.selectors).await?;
    // A build needs no real values; anything that touches a host does.
    if !args.build_only {
        inventory::refuse_unfilled(&hosts)?;
    }
    if args.local && hosts.len() > 1 {
        return Err(Error::Usage(format!(
            "--local deploys to this machine, but {} hosts are selected",
            hosts.len()
        )));
    }
    let log_dir = log_root(&flake, cwd, args.log_dir);
    let mode = if args.build_only {
        pantheros::deploy::Mode::BuildOnly
    } else if args.dry_run {
        pantheros::deploy::Mode::DryRun
    } else {
        pantheros::deploy::Mode::Deploy
    };
    let opts = pantheros::deploy::Options {
        magic_rollback: args.no_magic_rollback.then_some(false),
        rollback_on_health: args.no_rollback_on_health.then_some(false),
        force_local: args.local,
        ..pantheros::deploy::Options::new(mode, args.goal, log_dir)
    };
    let fleet = pantheros::deploy::fleet::FleetArgs {
        yes: args.yes,
        json: args.json,
        jobs: args.jobs,
        break_lock: args.break_lock,
    };
    Ok(pantheros::deploy::fleet::deploy(&nix, hosts, opts, fleet).await)
}

async fn build_all(
    flake: Option<&str>,
    cwd: &std::path::Path,
    args: cli::BuildAllArgs,
) -> Result<i32> {
    let flake = inventory::flake::resolve(flake, cwd)?;
    let nix = nix::Nix::locate()?;
    let hosts = selected_hosts(&nix, &flake, &args.selectors).await?;
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    eprintln!("=== pantheros parallel build ===");
    eprintln!("Building with {jobs} parallel jobs");
    eprintln!(
        "Hosts: {}",
        hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let log_dir = log_root(&flake, cwd, args.log_dir);
    let opts = pantheros::deploy::Options {
        force_local: true,
        ..pantheros::deploy::Options::new(
            pantheros::deploy::Mode::BuildOnly,
            pantheros::deploy::Goal::Switch,
            log_dir,
        )
    };
    let fleet = pantheros::deploy::fleet::FleetArgs {
        yes: true,
        json: args.json,
        jobs,
        break_lock: false,
    };
    Ok(pantheros::deploy::fleet::deploy(&nix, hosts, opts, fleet).await)
}

/// One host of the flake by name (for rollback and provision), or, without
/// a name, this machine; and where its logs go.
async fn flake_host(
    flake: Option<&str>,
    cwd: &std::path::Path,
    name: Option<&str>,
) -> Result<(inventory::Host, std::path::PathBuf)> {
    let Some(name) = name else {
        let root = inventory::flake::resolve(flake, cwd)
            .ok()
            .and_then(|f| f.root)
            .map(|r| r.join("logs"))
            .unwrap_or_else(state_logs);
        let host = inventory::Host {
            name: pantheros::target::hostname(),
            uses_module: false,
            deployment: inventory::Deployment {
                target_host: Some("localhost".into()),
                ..Default::default()
            },
            drv_path: None,
            system: None,
        };
        return Ok((host, root));
    };
    let flake = inventory::flake::resolve(flake, cwd)?;
    let nix = nix::Nix::locate()?;
    let inv = inventory::load(&nix, &flake, &inventory::EvalOptions::default()).await?;
    let selection = inv.select(&[name.to_string()])?;
    if let Some(err) = selection.failure() {
        return Err(err);
    }
    let [h] = selection.hosts[..] else {
        return Err(Error::Usage(format!(
            "`{name}` selects {} hosts; name exactly one",
            selection.hosts.len()
        )));
    };
    Ok((h.clone(), log_root(&flake, cwd, None)))
}

/// `$XDG_STATE_HOME/pantheros/logs`, for runs outside any flake.
fn state_logs() -> std::path::PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/state"))
        })
        .unwrap_or_else(|| std::path::PathBuf::from("/var/log"))
        .join("pantheros/logs")
}

async fn rollback(
    flake: Option<&str>,
    cwd: &std::path::Path,
    args: cli::RollbackArgs,
) -> Result<i32> {
    let (host, default_logs) = flake_host(flake, cwd, args.host.as_deref()).await?;
    let log_dir = args.log_dir.clone().unwrap_or(default_logs);
    if args.list {
        let control = pantheros::target::control_dir()
            .map_err(|e| Error::io("creating the SSH control directory", e))?;
        let target = pantheros::target::Target::for_host(&host, &control, false);
        let log = pantheros::report::log::HostLog::discard()
            .map_err(|e| Error::io("opening /dev/null", e))?;
        let res =
            pantheros::generations::list(&target, &log, &host.deployment.profile, args.sizes).await;
        target.close().await;
        let _ = std::fs::remove_dir_all(&control);
        let gens = res.map_err(|e| e.into_error())?;
        if args.json {
            let doc = serde_json::json!({
                "host": host.name,
                "profile": host.deployment.profile,
                "generations": gens,
            });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else {
            print!("{}", pantheros::generations::table(&gens));
        }
        return Ok(exit::OK);
    }
    let nix = nix::Nix::locate()?;
    let opts = pantheros::deploy::Options {
        magic_rollback: args.no_magic_rollback.then_some(false),
        rollback_on_health: args.no_rollback_on_health.then_some(false),
        force_local: args.host.is_none(),
        rollback_to: args.to,
        ..pantheros::deploy::Options::new(pantheros::deploy::Mode::Rollback, args.goal, log_dir)
    };
    let fleet = pantheros::deploy::fleet::FleetArgs {
        yes: args.yes,
        json: args.json,
        jobs: 1,
        break_lock: false,
    };
    Ok(pantheros::deploy::fleet::deploy(&nix, vec![host], opts, fleet).await)
}

async fn provision(
    flake: Option<&str>,
    cwd: &std::path::Path,
    args: pantheros::provision::ProvisionArgs,
) -> Result<i32> {
    use pantheros::provision::{self as p, ProvisionCmd};
    let res = match args.action {
        Some(ProvisionCmd::List { json }) => p::list(json).await,
        Some(ProvisionCmd::Destroy { host, yes, timeout }) => p::destroy(&host, yes, timeout).await,
        Some(ProvisionCmd::Iso { action }) => p::iso(&action).await,
        Some(ProvisionCmd::Rescue {
            host,
            ssh_key,
            timeout,
        }) => p::rescue(&host, ssh_key.as_deref(), timeout).await,
        Some(ProvisionCmd::Install(a)) => {
            let flake_ref = inventory::flake::resolve(flake, cwd)?;
            let nix = nix::Nix::locate()?;
            let hosts = selected_hosts(&nix, &flake_ref, std::slice::from_ref(&a.host)).await?;
            inventory::refuse_unfilled(&hosts)?;
            let host = &hosts[0];
            let toplevel = build_toplevel(host, &log_root(&flake_ref, cwd, None)).await?;
            let attr = flake_ref.attr(&host.name);
            p::install::install(&a, &attr, &toplevel).await
        }
        None => {
            let Some(name) = args.create.host.clone() else {
                return Err(Error::Usage(
                    "provision needs a HOST (or list, destroy, iso, rescue, install)".into(),
                ));
            };
            let (host, _) = flake_host(flake, cwd, Some(&name)).await?;
            inventory::refuse_unfilled([&host])?;
            p::create(&host, &args.create).await
        }
    };
    res.map_err(|f| f.into_error())
}

/// Build a host's toplevel from its derivation (with a GC root) and return it.
async fn build_toplevel(host: &inventory::Host, logs: &std::path::Path) -> Result<String> {
    let drv = host
        .drv_path
        .clone()
        .ok_or_else(|| Error::UnexpectedOutput {
            command: "nix eval".into(),
            detail: format!("no derivation for {}", host.name),
        })?;
    let roots = logs.join("gcroots");
    std::fs::create_dir_all(&roots)
        .map_err(|e| Error::io(format!("creating {}", roots.display()), e))?;
    let root = roots.join(&host.name);
    let cmd = pantheros::runner::Cmd::new([
        "nix-store".to_string(),
        "--realise".into(),
        drv,
        "--add-root".into(),
        root.to_string_lossy().into_owned(),
        "--indirect".into(),
    ]);
    pantheros::runner::run_ok(&cmd)
        .await
        .map_err(Error::Command)?;
    let top = std::fs::read_link(&root)
        .map_err(|e| Error::io(format!("reading {}", root.display()), e))?;
    Ok(top.to_string_lossy().into_owned())
}
