//! `pantheros keys upload SELECTOR…`: write the selected hosts' keys again
//! without deploying (after a reboot emptied `/run/keys`, or after a
//! secret changed), over one SSH connection per host.

use super::app::App;

use serde::Serialize;

use crate::cli;
use crate::deploy::keys;
use crate::error::{Error, Result, exit};
use crate::host;
use crate::inventory;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HostKeys {
    host: String,
    result: &'static str,
    keys: Vec<keys::Uploaded>,
    error: Option<String>,
}

pub async fn upload(app: &App, args: cli::KeysUploadArgs) -> Result<i32> {
    let flake = app.flake()?;
    let nix = app.nix()?;
    let inv = inventory::load(&nix, &flake, &inventory::EvalOptions::default()).await?;
    let selection = inv.select(&args.selectors)?;
    if let Some(err) = selection.failure() {
        return Err(err);
    }
    let hosts: Vec<inventory::Host> = selection.hosts.into_iter().cloned().collect();
    inventory::refuse_unfilled(&hosts, &[])?;
    let log_dir = app.log_root(&flake, args.log_dir.clone()).join("keys");
    let reach = host::Reach {
        force_local: false,
        password: args.password.sudo_password()?,
        executor: host::exec::processes(),
        display: app.display.clone(),
    };
    let control =
        host::control_dir().map_err(|e| Error::io("creating the SSH control directory", e))?;
    let ts = crate::report::log::timestamp();
    let places = host::RunPlaces {
        log_dir: &log_dir,
        kind: "keys",
        ts: &ts,
        control: control.path(),
    };
    let mut results = vec![];
    let mut failed = false;
    for h in hosts {
        let name = h.name.clone();
        if h.deployment.keys.is_empty() {
            app.display.say(&name, "no keys declared");
            results.push(HostKeys {
                host: name,
                result: "no-keys",
                keys: vec![],
                error: None,
            });
            continue;
        }
        let keys = keys::read(&h).await;
        let session = host::Session::open(&h, &places, &reach)
            .map_err(|e| Error::io(format!("creating the log in {}", log_dir.display()), e))?;
        let r = match (&keys, session.target.settle_password().await) {
            (_, Err(why)) => Err(crate::error::StageError::new(why)),
            (Ok(k), Ok(())) => keys::upload(&session, k, None).await,
            (Err(e), Ok(())) => Err(e.clone()),
        };
        session.target.close().await;
        match r {
            Ok(uploaded) => results.push(HostKeys {
                host: name,
                result: "success",
                keys: uploaded,
                error: None,
            }),
            Err(e) => {
                failed = true;
                let text = session.log.redact(&e.render());
                session.log.note(&text);
                app.display.say(&name, &format!("error: {text}"));
                results.push(HostKeys {
                    host: name,
                    result: "failed",
                    keys: vec![],
                    error: Some(text),
                });
            }
        }
    }
    if args.json {
        crate::report::print_document(&serde_json::json!({ "hosts": results }));
    } else {
        for r in &results {
            eprintln!(
                "  {:<20} {:<9} {}",
                r.host,
                r.result,
                r.keys
                    .iter()
                    .map(|k| format!(
                        "{} ({}:{} {}, {} bytes)",
                        k.path, k.user, k.group, k.mode, k.size
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(if failed { exit::KEYS_FAILED } else { exit::OK })
}
