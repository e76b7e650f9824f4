//! `pantheros deploy`: the pipeline for the selected hosts.

use super::{log_root, selected_hosts_checked};
use crate::cli;
use crate::error::{Error, Result};
use crate::{inventory, nix};

pub async fn deploy(
    flake: Option<&str>,
    cwd: &std::path::Path,
    args: cli::DeployArgs,
) -> Result<i32> {
    let flake = inventory::flake::resolve(flake, cwd)?;
    let nix = nix::Nix::locate()?;
    let mut hosts = match &args.store_path {
        None => {
            selected_hosts_checked(&nix, &flake, &args.selectors, false, args.fail_on_warnings)
                .await?
        }
        Some(path) => prebuilt_host(&nix, &flake, &args.selectors, path).await?,
    };
    args.activation.overrides.apply(&mut hosts)?;
    // A build needs no real values; anything that touches a host does.
    if !args.build_only {
        inventory::refuse_unfilled(&hosts, &[])?;
    }
    if args.local && hosts.len() > 1 {
        return Err(Error::Usage(format!(
            "--local deploys to this machine, but {} hosts are selected",
            hosts.len()
        )));
    }
    let log_dir = log_root(&flake, cwd, args.activation.log_dir.clone());
    let mode = if args.build_only {
        crate::deploy::Mode::BuildOnly
    } else if args.dry_run {
        crate::deploy::Mode::DryRun
    } else {
        crate::deploy::Mode::Deploy
    };
    let opts = crate::deploy::Options {
        force_local: args.local,
        origin: crate::deploy::record::Origin::of(&flake),
        store_path: args.store_path.clone(),
        ..args.activation.options(mode, log_dir)
    };
    let fleet = crate::deploy::fleet::FleetArgs {
        yes: args.activation.yes,
        json: args.activation.json,
        jobs: args.jobs,
        canary: args.canary,
        rollback_succeeded: args.rollback_succeeded,
        keep_going: args.keep_going,
        master_log: None,
    };
    let json = fleet.json;
    let evaluated = hosts.clone();
    let (code, outcomes) = crate::deploy::fleet::run(&nix, hosts, opts, fleet).await;
    super::record_read_facts(&evaluated, &flake, &outcomes);
    if json {
        crate::deploy::fleet::print_document(code, &outcomes);
    }
    Ok(code)
}

/// `deploy --store-path`: the one selected host's deployment metadata (its
/// system is not evaluated: it is the given path), and its platform when
/// the configuration names one (`nixpkgs.hostPlatform`), to check the path
/// against.
async fn prebuilt_host(
    nix: &nix::Nix,
    flake: &inventory::FlakeRef,
    selectors: &[String],
    path: &str,
) -> Result<Vec<inventory::Host>> {
    let inv = inventory::load(nix, flake, &inventory::EvalOptions::default()).await?;
    let selection = inv.select(selectors)?;
    if let Some(err) = selection.failure() {
        return Err(err);
    }
    let mut hosts: Vec<inventory::Host> = selection.hosts.into_iter().cloned().collect();
    if hosts.len() != 1 {
        return Err(Error::Usage(format!(
            "--store-path {path} is one host's system, but {} hosts are selected",
            hosts.len()
        )));
    }
    let attr = flake.attr(&format!(
        "nixosConfigurations.\"{}\".config.nixpkgs.hostPlatform.system",
        hosts[0].name
    ));
    let platform = crate::runner::run(&nix.cmd(["eval", "--raw", attr.as_str()]))
        .await
        .ok()
        .filter(crate::runner::Output::success)
        .map(|o| o.stdout.trim().to_string())
        .filter(|s| !s.is_empty());
    hosts[0].system = platform;
    Ok(hosts)
}
