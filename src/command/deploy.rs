//! `pantheros deploy`: the pipeline for the selected hosts.

use super::app::App;
use super::selected_hosts_checked;
use crate::cli;
use crate::error::{Error, Result};
use crate::{inventory, nix};

pub async fn deploy(app: &App, args: cli::DeployArgs) -> Result<i32> {
    let flake = app.flake()?;
    let nix = app.nix()?;
    let prebuilt = prebuilt_systems(&args)?;
    let log_dir = app.log_root(&flake, args.activation.log_dir.clone());
    // With evaluation workers, each share's systems start building as
    // soon as it is evaluated (kept until the run ends).
    let (_early, on_evaluated) = crate::deploy::build::EarlyBuilds::start(
        &nix,
        &crate::deploy::Options::gcroot_dir(&log_dir),
        args.jobs,
        args.build_host.is_some(),
    );
    // With --keep-going, hosts that fail to evaluate are failed outcomes
    // and the others run; without it, they refuse the run.
    let (mut hosts, unevaluated) = match &prebuilt {
        None => {
            let opts = inventory::EvalOptions {
                on_evaluated: Some(on_evaluated),
                ..args.eval.options(&args.selectors, false)
            };
            selected_hosts_checked(
                &app.display,
                &nix,
                &flake,
                &args.selectors,
                opts,
                args.fail_on_warnings,
                args.keep_going,
            )
            .await?
        }
        Some(systems) => (
            prebuilt_hosts(&nix, &flake, &args.selectors, systems).await?,
            vec![],
        ),
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
    args.activation
        .refuse_conflicts(args.local || hosts.iter().any(|h| h.is_local()))?;
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
        sudo_password: args.activation.password.sudo_password()?,
        build_host: args.build_host.clone(),
        prebuilt: match (&prebuilt, hosts.as_slice()) {
            (Some(Prebuilt::One(path)), [h]) => [(h.name.clone(), path.clone())].into(),
            (Some(Prebuilt::ByHost(map)), _) => map.clone(),
            _ => Default::default(),
        },
        ..args.activation.options(mode, log_dir, &app.display)
    };
    let fleet = crate::deploy::fleet::FleetArgs {
        yes: args.activation.yes,
        json: args.activation.json,
        jobs: args.jobs,
        canary: args.canary,
        rollback_succeeded: args.rollback_succeeded,
        keep_going: args.keep_going,
        master_log: None,
        unevaluated,
    };
    let json = fleet.json;
    let evaluated = hosts.clone();
    let (code, outcomes) = crate::deploy::fleet::run(&nix, hosts, opts, fleet).await;
    super::record_read_facts(&app.display, &evaluated, &flake, &outcomes);
    if json {
        crate::deploy::summary::print_document(code, &outcomes);
    }
    Ok(code)
}

/// Systems built elsewhere: one path for the one selected host, or each
/// host's from a build document.
enum Prebuilt {
    One(String),
    ByHost(std::collections::BTreeMap<String, String>),
}

fn prebuilt_systems(args: &cli::DeployArgs) -> Result<Option<Prebuilt>> {
    if let Some(p) = &args.store_path {
        return Ok(Some(Prebuilt::One(p.clone())));
    }
    let Some(file) = &args.from_json else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::Usage(format!(
            "{} is not a build document (`build-all --json`): {e}",
            file.display()
        ))
    })?;
    let map: std::collections::BTreeMap<String, String> = doc["hosts"]
        .as_array()
        .map(|hosts| {
            hosts
                .iter()
                .filter_map(|h| {
                    Some((
                        h["host"].as_str()?.to_string(),
                        h["toplevel"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if map.is_empty() {
        return Err(Error::Usage(format!(
            "{} names no built system (hosts[].toplevel): give the output of `pantheros build-all --json`",
            file.display()
        )));
    }
    Ok(Some(Prebuilt::ByHost(map)))
}

/// Deploying systems built elsewhere: the selected hosts' deployment
/// metadata and platforms (`nixpkgs.hostPlatform`, to check each path
/// against) in one evaluation; their systems are not evaluated.
async fn prebuilt_hosts(
    nix: &nix::Nix,
    flake: &inventory::FlakeRef,
    selectors: &[String],
    prebuilt: &Prebuilt,
) -> Result<Vec<inventory::Host>> {
    // One evaluation: the deployment metadata and each selected host's
    // platform, never its system.
    let opts = inventory::EvalOptions {
        platform_for: Some(selectors.to_vec()),
        ..Default::default()
    };
    let inv = inventory::load(nix, flake, &opts).await?;
    let selection = inv.select(selectors)?;
    if let Some(err) = selection.failure() {
        return Err(err);
    }
    let hosts: Vec<inventory::Host> = selection.hosts.into_iter().cloned().collect();
    match prebuilt {
        Prebuilt::One(path) if hosts.len() != 1 => {
            return Err(Error::Usage(format!(
                "--store-path {path} is one host's system, but {} hosts are selected",
                hosts.len()
            )));
        }
        Prebuilt::ByHost(map) => {
            let missing: Vec<&str> = hosts
                .iter()
                .filter(|h| !map.contains_key(&h.name))
                .map(|h| h.name.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(Error::Usage(format!(
                    "the build document has no system for {}",
                    missing.join(", ")
                )));
            }
        }
        Prebuilt::One(_) => {}
    }
    Ok(hosts)
}
