//! `pantheros rollback`: list the selected hosts' generations, or switch
//! them to the previous (or a chosen) one. No selector means this machine.

use super::app::App;
use super::flake_hosts;
use crate::cli;
use crate::error::{Error, Result, exit};
use crate::inventory::Host;

pub async fn rollback(app: &App, args: cli::RollbackArgs) -> Result<i32> {
    let a = &args.activation;
    let (mut hosts, default_logs) = flake_hosts(app, &args.selectors).await?;
    a.overrides.apply(&mut hosts)?;
    if args.list {
        let reach = crate::host::Reach {
            force_local: false,
            password: a.password.sudo_password()?,
            executor: crate::host::exec::processes(),
            display: app.display.clone(),
        };
        return list(&hosts, args.sizes, a.json, &reach).await;
    }
    a.refuse_conflicts(args.selectors.is_empty() || hosts.iter().any(|h| h.is_local()))?;
    let log_dir = a.log_dir.clone().unwrap_or(default_logs);
    let nix = app.nix()?;
    let opts = crate::deploy::Options {
        force_local: args.selectors.is_empty(),
        rollback_to: args.to,
        sudo_password: a.password.sudo_password()?,
        origin: app
            .flake()
            .map(|f| crate::deploy::record::Origin::of(&f))
            .unwrap_or_else(|_| crate::deploy::record::Origin::here()),
        ..a.options(crate::deploy::Mode::Rollback, log_dir, &app.display)
    };
    let fleet = crate::deploy::fleet::FleetArgs {
        yes: a.yes,
        json: a.json,
        jobs: args.jobs,
        canary: 0,
        rollback_succeeded: false,
        keep_going: true,
        master_log: None,
        unevaluated: vec![],
    };
    Ok(crate::deploy::fleet::deploy(&nix, hosts, opts, fleet).await)
}

/// `--list`: each host's generations, in selection order. A host that
/// cannot be read is reported (stderr, and an `error` in `--json`) and the
/// others are still listed; the exit code is then the first failure's.
async fn list(hosts: &[Host], sizes: bool, json: bool, reach: &crate::host::Reach) -> Result<i32> {
    let control = crate::host::control_dir()
        .map_err(|e| Error::io("creating the SSH control directory", e))?;
    let mut read: Vec<(&Host, Result<Vec<crate::generations::Generation>>)> = Vec::new();
    for host in hosts {
        // A read-only query: its commands are not logged.
        let log = crate::report::log::HostLog::discard()
            .map_err(|e| Error::io("opening /dev/null", e))?;
        let target = crate::host::Target::for_host(host, control.path(), false)
            .with_password(reach.password.clone());
        let session = crate::host::Session::new(host, target, log, reach);
        if let Err(why) = session.target.settle_password().await {
            read.push((host, Err(Error::Usage(why))));
            session.target.close().await;
            continue;
        }
        let res = crate::generations::list_with_records(
            &session,
            &host.deployment.profile,
            sizes,
            &format!("{}/records", crate::deploy::preflight::STATE_DIR),
        )
        .await;
        session.target.close().await;
        read.push((host, res.map_err(|e| e.into_error())));
    }
    drop(control);
    let code = read
        .iter()
        .find_map(|(_, r)| r.as_ref().err().map(Error::exit_code))
        .unwrap_or(exit::OK);
    // One host: its error is the run's error, printed as every error is.
    if let [(_, Err(_))] = &read[..] {
        if let Some((_, Err(e))) = read.pop() {
            return Err(e);
        }
    }
    if json {
        let entries: Vec<serde_json::Value> = read
            .iter()
            .map(|(h, r)| match r {
                Ok(gens) => serde_json::json!({
                    "host": h.name,
                    "profile": h.deployment.profile,
                    "generations": gens,
                }),
                Err(e) => serde_json::json!({
                    "host": h.name,
                    "profile": h.deployment.profile,
                    "error": { "message": e.to_string(), "hint": e.hint(), "exitCode": e.exit_code() },
                }),
            })
            .collect();
        let mut doc = serde_json::json!({
            "exitCode": code,
            "hosts": entries,
        });
        // One host: its fields at the top, as before selectors existed.
        if let [(h, Ok(gens))] = &read[..] {
            doc["host"] = h.name.clone().into();
            doc["profile"] = h.deployment.profile.clone().into();
            doc["generations"] = serde_json::to_value(gens).unwrap_or_default();
        }
        crate::report::print_document(&doc);
        return Ok(code);
    }
    let several = read.len() > 1;
    for (h, r) in &read {
        match r {
            Ok(gens) => {
                if several {
                    println!("== {}", h.name);
                }
                print!("{}", crate::generations::table(gens));
            }
            Err(e) => {
                eprintln!("[{}] could not list its generations:", h.name);
                crate::report::print_error(e);
            }
        }
    }
    Ok(code)
}
