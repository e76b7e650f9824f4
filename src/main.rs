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
    if inv.hosts.is_empty() && inv.errors.is_empty() {
        return Err(Error::EmptySelection {
            selectors: "(all hosts)".into(),
            known: vec![],
        });
    }
    // Hosts that failed to evaluate can still be selected by name or glob.
    #[derive(Clone)]
    struct Entry<'a> {
        name: &'a str,
        host: Option<&'a inventory::Host>,
        tags: &'a [String],
    }
    impl inventory::select::Selectable for Entry<'_> {
        fn name(&self) -> &str {
            self.name
        }
        fn tags(&self) -> &[String] {
            self.tags
        }
    }
    let mut entries: Vec<Entry> = inv
        .hosts
        .iter()
        .map(|h| Entry {
            name: &h.name,
            host: Some(h),
            tags: &h.deployment.tags,
        })
        .chain(inv.errors.iter().map(|e| Entry {
            name: &e.name,
            host: None,
            tags: &[],
        }))
        .collect();
    entries.sort_by(|a, b| a.name.cmp(b.name));
    let chosen = inventory::select::select(&entries, &args.selectors)?;
    let selected: Vec<&inventory::Host> = chosen.iter().filter_map(|&i| entries[i].host).collect();
    let failed: Vec<&inventory::HostError> = chosen
        .iter()
        .filter(|&&i| entries[i].host.is_none())
        .filter_map(|&i| inv.errors.iter().find(|e| e.name == entries[i].name))
        .collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = serde_json::json!({
            "flake": inv.flake,
            "hosts": selected,
            "errors": failed,
        });
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    } else {
        let _ = write!(out, "{}", report::hosts_table(&selected));
    }
    drop(out);
    if failed.is_empty() {
        return Ok(exit::OK);
    }
    for e in &failed {
        eprintln!("error: host {} failed to evaluate:", e.name);
        for l in e.message.lines() {
            eprintln!("    {l}");
        }
    }
    let err = Error::HostsFailedToEvaluate {
        count: failed.len(),
        names: failed
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    };
    report::print_error(&err);
    Ok(err.exit_code())
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
    let all: Vec<inventory::Host> = inv.hosts.clone();
    let mut names: Vec<String> = all.iter().map(|h| h.name.clone()).collect();
    names.extend(inv.errors.iter().map(|e| e.name.clone()));
    // Failed hosts that a name or glob selects are errors; check the names first.
    for s in selectors {
        if let inventory::select::Selector::Name(n) = inventory::select::Selector::parse(s) {
            if let Some(e) = inv.errors.iter().find(|e| e.name == n) {
                eprintln!("error: host {} failed to evaluate:", e.name);
                for l in e.message.lines() {
                    eprintln!("    {l}");
                }
                return Err(Error::HostsFailedToEvaluate {
                    count: 1,
                    names: e.name.clone(),
                });
            }
            if !names.contains(&n) {
                names.sort();
                return Err(Error::UnknownHost {
                    suggestions: inventory::select::closest(&n, &names),
                    name: n,
                    known: names,
                });
            }
        }
    }
    // A glob that also matches a host that failed to evaluate: that host's
    // error is reported and nothing runs (tags of such a host are unknown).
    let failed: Vec<&inventory::HostError> = inv
        .errors
        .iter()
        .filter(|e| {
            selectors.is_empty()
                || selectors
                    .iter()
                    .any(|s| match inventory::select::Selector::parse(s) {
                        inventory::select::Selector::Glob(g) => {
                            glob::Pattern::new(&g).is_ok_and(|p| p.matches(&e.name))
                        }
                        _ => false,
                    })
        })
        .collect();
    if !failed.is_empty() {
        for e in &failed {
            eprintln!("error: host {} failed to evaluate:", e.name);
            for l in e.message.lines() {
                eprintln!("    {l}");
            }
        }
        return Err(Error::HostsFailedToEvaluate {
            count: failed.len(),
            names: failed
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let chosen = inventory::select::select(&all, selectors)?;
    let hosts: Vec<inventory::Host> = chosen.into_iter().map(|i| all[i].clone()).collect();
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

/// The host a rollback talks about: from the flake, or this machine.
async fn rollback_host(
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
            name: pantheros::deploy::target::hostname(),
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
    if let Some(e) = inv.errors.iter().find(|e| e.name == name) {
        eprintln!(
            "error: host {} failed to evaluate:\n    {}",
            e.name,
            e.message.replace('\n', "\n    ")
        );
        return Err(Error::HostsFailedToEvaluate {
            count: 1,
            names: e.name.clone(),
        });
    }
    let Some(h) = inv.hosts.iter().find(|h| h.name == name) else {
        let known = inv.names();
        return Err(Error::UnknownHost {
            suggestions: inventory::select::closest(name, &known),
            name: name.into(),
            known,
        });
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
    let (host, default_logs) = rollback_host(flake, cwd, args.host.as_deref()).await?;
    let log_dir = args.log_dir.clone().unwrap_or(default_logs);
    if args.list {
        let control = pantheros::transport::control_dir()
            .map_err(|e| Error::io("creating the SSH control directory", e))?;
        let target = pantheros::transport::Target::for_host(&host, &control, false);
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
            let (host, _) = rollback_host(flake, cwd, Some(&name)).await?;
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
