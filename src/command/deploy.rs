//! `pantheros deploy`: the pipeline for the selected hosts.

use super::{log_root, selected_hosts};
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
    let mut hosts = selected_hosts(&nix, &flake, &args.selectors).await?;
    args.overrides.apply(&mut hosts)?;
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
        crate::deploy::Mode::BuildOnly
    } else if args.dry_run {
        crate::deploy::Mode::DryRun
    } else {
        crate::deploy::Mode::Deploy
    };
    let opts = crate::deploy::Options {
        magic_rollback: args.no_magic_rollback.then_some(false),
        rollback_on_health: args.no_rollback_on_health.then_some(false),
        force_local: args.local,
        break_lock: args.break_lock && !args.build_only && !args.dry_run,
        force: args.force,
        ..crate::deploy::Options::new(mode, args.goal, log_dir)
    };
    let fleet = crate::deploy::fleet::FleetArgs {
        yes: args.yes,
        json: args.json,
        jobs: args.jobs,
        canary: args.canary,
        rollback_succeeded: args.rollback_succeeded,
    };
    Ok(crate::deploy::fleet::deploy(&nix, hosts, opts, fleet).await)
}
