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
    let mut hosts =
        selected_hosts_checked(&nix, &flake, &args.selectors, false, args.fail_on_warnings).await?;
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
