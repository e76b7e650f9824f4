//! `pantheros rollback`: list a host's generations, or switch to one.

use super::flake_host;
use crate::cli;
use crate::error::{Error, Result, exit};
use crate::nix;

pub async fn rollback(
    flake: Option<&str>,
    cwd: &std::path::Path,
    args: cli::RollbackArgs,
) -> Result<i32> {
    let (mut host, default_logs) = flake_host(flake, cwd, args.host.as_deref()).await?;
    args.overrides.apply(std::slice::from_mut(&mut host))?;
    let log_dir = args.log_dir.clone().unwrap_or(default_logs);
    if args.list {
        let control = crate::target::control_dir()
            .map_err(|e| Error::io("creating the SSH control directory", e))?;
        let target = crate::target::Target::for_host(&host, &control, false);
        let log = crate::report::log::HostLog::discard()
            .map_err(|e| Error::io("opening /dev/null", e))?;
        let res =
            crate::generations::list(&target, &log, &host.deployment.profile, args.sizes).await;
        target.close().await;
        let _ = std::fs::remove_dir_all(&control);
        let gens = res.map_err(|e| e.into_error())?;
        if args.json {
            let doc = serde_json::json!({
                "version": crate::report::JSON_VERSION,
                "host": host.name,
                "profile": host.deployment.profile,
                "generations": gens,
            });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else {
            print!("{}", crate::generations::table(&gens));
        }
        return Ok(exit::OK);
    }
    let nix = nix::Nix::locate()?;
    let opts = crate::deploy::Options {
        magic_rollback: args.no_magic_rollback.then_some(false),
        rollback_on_health: args.no_rollback_on_health.then_some(false),
        force_local: args.host.is_none(),
        rollback_to: args.to,
        break_lock: args.break_lock,
        force: args.force,
        ..crate::deploy::Options::new(crate::deploy::Mode::Rollback, args.goal, log_dir)
    };
    let fleet = crate::deploy::fleet::FleetArgs {
        yes: args.yes,
        json: args.json,
        jobs: 1,
        canary: 0,
        rollback_succeeded: false,
    };
    Ok(crate::deploy::fleet::deploy(&nix, vec![host], opts, fleet).await)
}
