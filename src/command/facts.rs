//! `pantheros facts HOST [--refresh]`: the facts pantheros recorded for a
//! host (what the machines decided), and reading them again: the server
//! from the Hetzner API, the SSH host key over the network. What would
//! change is shown before anything is written.

use super::app::App;
use std::io::IsTerminal;

use super::flake_host;
use crate::cli::FactsArgs;
use crate::error::{Error, Result, exit};
use crate::inventory::Host;
use crate::inventory::facts::{self, FactsFile, names};
use crate::runner::{self, Cmd};

pub async fn facts(app: &App, args: FactsArgs) -> Result<i32> {
    let (host, _) = flake_host(app, Some(&args.host)).await?;
    let flake_ref = app.flake()?;
    let Some(path) = facts::path_of(&host, &flake_ref) else {
        return Err(Error::Usage(format!(
            "{} declares no facts file: add `pantheros.deployment.factsFile = ./facts.json;` to its configuration",
            host.name
        )));
    };
    let mut file =
        FactsFile::load(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if args.refresh {
        let mut fresh = file.clone();
        let mut changes = vec![];
        for (values, source) in read_again(&host).await? {
            changes.extend(fresh.set(&values, source));
        }
        if changes.is_empty() {
            eprintln!("{}: the recorded facts are up to date", host.name);
        } else {
            eprintln!("{}: the facts change ({}):", host.name, path.display());
            for (name, before, after) in &changes {
                eprintln!(
                    "  {name}: {} -> {}",
                    before
                        .as_ref()
                        .map(facts::show)
                        .unwrap_or_else(|| "-".into()),
                    facts::show(after)
                );
            }
            if !args.yes && !confirmed()? {
                eprintln!("not written");
                return Ok(exit::FAILED_NOTHING_CHANGED);
            }
            fresh
                .save(&path)
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            eprintln!("written: {} (commit it like flake.lock)", path.display());
            file = fresh;
        }
    }
    if args.json {
        crate::report::print_document(&serde_json::json!({
            "host": host.name,
            "file": path,
            "facts": file.facts,
        }));
    } else {
        let rows: Vec<Vec<String>> = file
            .facts
            .iter()
            .map(|(n, f)| {
                vec![
                    n.clone(),
                    facts::show(&f.value),
                    f.source.clone(),
                    f.recorded.clone(),
                ]
            })
            .collect();
        if rows.is_empty() {
            eprintln!(
                "{} has no recorded facts yet ({}): `pantheros up {}` records them",
                host.name,
                path.display(),
                host.name
            );
        } else {
            print!(
                "{}",
                crate::report::table(&["FACT", "VALUE", "SOURCE", "RECORDED"], &rows)
            );
        }
    }
    Ok(exit::OK)
}

/// The facts read again, each group with its source: the server from the
/// Hetzner API (for a Hetzner host), the host key over SSH (from the
/// address the host is reached at).
async fn read_again(
    host: &Host,
) -> Result<Vec<(Vec<(&'static str, serde_json::Value)>, &'static str)>> {
    let mut groups = vec![];
    let mut address = host.deployment.target_host.clone();
    if host.deployment.provider.as_deref() == Some("hetzner") {
        let cloud = crate::provision::connect()
            .await
            .map_err(|f| f.into_error())?;
        let server = crate::provision::our_server(&cloud, &host.name)
            .await
            .map_err(|f| f.into_error())?;
        address = server.ipv4.clone().or(address);
        groups.push((
            crate::provision::create::server_facts(
                Some(server.id),
                server.ipv4.as_deref(),
                server.ipv6.as_deref(),
            ),
            "hetzner-api",
        ));
    }
    if let Some(addr) = address {
        match scan_host_key(&addr, host.deployment.target_port).await {
            Ok(key) => {
                eprintln!(
                    "note: the host key of {addr} was read over the network, unverified: \
                     compare it with the server's console before you trust it"
                );
                groups.push((vec![(names::HOST_KEY, key.into())], "ssh-keyscan"));
            }
            Err(why) => eprintln!(
                "note: the host key of {addr} could not be read ({why}); kept as recorded"
            ),
        }
    }
    Ok(groups)
}

/// The host's ed25519 key, as `ssh-keyscan` reads it: "ssh-ed25519 AAAA…".
async fn scan_host_key(address: &str, port: u16) -> std::result::Result<String, String> {
    let cmd = Cmd::new([
        "ssh-keyscan".to_string(),
        "-T".into(),
        "5".into(),
        "-t".into(),
        "ed25519".into(),
        "-p".into(),
        port.to_string(),
        address.to_string(),
    ])
    .timeout(std::time::Duration::from_secs(15));
    let out = runner::run(&cmd).await.map_err(|f| f.to_string())?;
    out.stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[1] == "ssh-ed25519").then(|| format!("{} {}", f[1], f[2]))
        })
        .ok_or_else(|| "no ed25519 key was offered".to_string())
}

/// Ask on the terminal; without one, refuse (the changes were shown).
fn confirmed() -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "refusing to write the facts without confirmation: stdin is not a terminal (pass --yes)".into(),
        ));
    }
    Ok(dialoguer::Input::<String>::new()
        .with_prompt("Write these facts? (yes/no)")
        .interact_text()
        .map(|a| matches!(a.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
        .unwrap_or(false))
}
