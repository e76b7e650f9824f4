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
            let inv = inventory::load(&nix, &flake, inventory::EvalOptions::default()).await?;
            hosts(&inv, &args)
        }
        Command::Deploy(_) => not_available("deploy"),
        Command::BuildAll(_) => not_available("build-all"),
        Command::Rollback(_) => not_available("rollback"),
        Command::Provision(_) => not_available("provision"),
    }
}

fn not_available(command: &str) -> Result<i32> {
    Err(Error::NotAvailable {
        command: command.into(),
    })
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
