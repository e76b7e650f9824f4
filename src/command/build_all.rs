//! `pantheros build-all`: every selected host built in parallel.

use super::app::App;
use super::selected_hosts_checked;
use crate::cli;
use crate::error::Result;

pub async fn build_all(app: &App, args: cli::BuildAllArgs) -> Result<i32> {
    let flake = app.flake()?;
    let nix = app.nix()?;
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let log_dir = app.log_root(&flake, args.log_dir.clone());
    // With evaluation workers, each share's systems start building as
    // soon as it is evaluated (kept until the run ends).
    let (_early, on_evaluated) = crate::deploy::build::EarlyBuilds::start(
        &nix,
        &crate::deploy::Options::gcroot_dir(&log_dir),
        jobs,
        false,
    );
    let opts = crate::inventory::EvalOptions {
        on_evaluated: Some(on_evaluated),
        ..args.eval.options(&args.selectors, false)
    };
    let (hosts, _) = selected_hosts_checked(
        &app.display,
        &nix,
        &flake,
        &args.selectors,
        opts,
        args.fail_on_warnings,
        false,
    )
    .await?;
    let header = format!(
        "=== pantheros parallel build ===\nBuilding with {jobs} parallel jobs\nHosts: {}",
        hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("{header}");
    let opts = crate::deploy::Options {
        force_local: true,
        ..crate::deploy::Options::new(
            crate::deploy::Mode::BuildOnly,
            crate::deploy::Goal::Switch,
            log_dir,
            app.display.clone(),
        )
    };
    let fleet = crate::deploy::fleet::FleetArgs {
        yes: true,
        json: args.json,
        jobs,
        canary: 0,
        rollback_succeeded: false,
        keep_going: true,
        master_log: Some(header),
        unevaluated: vec![],
    };
    Ok(crate::deploy::fleet::deploy(&nix, hosts, opts, fleet).await)
}
