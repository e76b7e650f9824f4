//! `pantheros validate HOST`: evaluate the flake once (the host's deployment
//! metadata and its Flashpods summary), connect, run the checks
//! ([`crate::validate`]), print the sign-off table (or `--json`) and exit
//! 40 when a row failed.

use super::app::App;

use serde::Serialize;

use crate::cli::ValidateArgs;
use crate::error::{Error, Result, exit};
use crate::host::{self, Target};
use crate::runner;
use crate::validate::{self, Options, Row, Seat};
use crate::{inventory, report};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    host: &'a str,
    exit_code: i32,
    checked_at: &'a str,
    rows: &'a [Row],
    failed: Vec<&'a str>,
}

/// `HOST:PORT` (an IPv6 address in brackets).
pub fn parse_target(s: &str) -> Result<(String, u16)> {
    let bad = || {
        Error::Usage(format!(
            "--internet {s}: expected HOST:PORT, e.g. api.anthropic.com:443"
        ))
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// The address and port ssh really connects to (`ssh -G`'s `hostname`
/// and `port`), for the "not on the public address" check and its control.
async fn public_address(t: &Target) -> Result<(String, u16)> {
    let Some(cmd) = t.resolve_cmd() else {
        return Err(Error::Usage(format!(
            "{} is deployed locally: give its public address with --public-address",
            t.name
        )));
    };
    let out = runner::run_ok(&cmd)
        .await
        .map_err(|f| Error::NothingChanged {
            message: format!("could not read {}'s address from ssh's settings", t.name),
            failure: Some(Box::new(f)),
            hint: Some("give the host's public address with --public-address".into()),
        })?;
    ssh_destination(&out.stdout).ok_or_else(|| Error::UnexpectedOutput {
        command: cmd.argv.join(" "),
        detail: "no `hostname` or `port` line".into(),
    })
}

/// The `hostname` and `port` lines of `ssh -G`.
pub fn ssh_destination(text: &str) -> Option<(String, u16)> {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
    };
    Some((value("hostname ")?, value("port ")?.parse().ok()?))
}

pub async fn validate(app: &App, args: ValidateArgs) -> Result<i32> {
    let internet = parse_target(&args.internet)?;
    let flake = app.flake()?;
    let nix = app.nix()?;
    let selectors = vec![args.host.clone()];
    let opts = inventory::EvalOptions {
        extras: vec![inventory::Extra {
            name: "flashpods",
            nix: crate::validate::spec::SUMMARY_NIX,
            for_hosts: selectors.clone(),
        }],
        ..Default::default()
    };
    let inv = inventory::load(&nix, &flake, &opts).await?;
    let selection = inv.select(&selectors)?;
    if let Some(err) = selection.failure() {
        return Err(err);
    }
    let Some(host) = selection.hosts.iter().find(|h| h.name == args.host) else {
        return Err(Error::Usage(format!(
            "validate takes one host by name; {} is not one",
            args.host
        )));
    };
    let summary = host
        .extras
        .get("flashpods")
        .filter(|v| !v.is_null())
        .map(|v| serde_json::from_value::<crate::validate::spec::Flashpods>(v.clone()));
    let spec = match summary {
        Some(Ok(spec)) => Some(spec),
        Some(Err(e)) => {
            return Err(Error::UnexpectedOutput {
                command: "nix eval".into(),
                detail: format!("the Flashpods summary of {} did not parse: {e}", host.name),
            });
        }
        None => None,
    };
    let Some(spec) = spec else {
        return Err(Error::NotFlashpods {
            host: host.name.clone(),
        });
    };

    let control =
        host::control_dir().map_err(|e| Error::io("creating the SSH control directory", e))?;
    let target = Target::for_host(host, control.path(), false);
    if let Some(cmd) = target.connect_cmd() {
        runner::run_ok(&cmd)
            .await
            .map_err(|f| Error::NothingChanged {
                message: format!("could not connect to {}; nothing was checked", host.name),
                failure: Some(Box::new(f)),
                hint: Some(format!(
                    "check `ssh {}` works (address, host key, user, key)",
                    target.destination()
                )),
            })?;
    }
    let (public, public_ssh_port) = match args.public_address.clone() {
        Some(a) => (a, host.deployment.target_port),
        None => public_address(&target).await?,
    };
    let options = Options {
        handshake_within: args.handshake_within,
        image: args.image.clone(),
        internet,
        public_address: public,
        public_ssh_port,
        timeout: args.timeout,
    };
    let seat = Seat {
        target: &target,
        timeout: args.timeout,
    };
    let progress = app.display.spinner();
    progress.say(&format!(
        "validating {}: from this laptop and over SSH",
        host.name
    ));
    let seen = |r: &Row| {
        progress.say(&format!(
            "validating {}: {} {} ({:.1} s)",
            host.name,
            r.id,
            r.result.label(),
            r.seconds
        ))
    };
    let rows = validate::validate(&spec, &seat, &options, &seen).await;
    progress.done(&format!("validated {}: {} rows", host.name, rows.len()));
    target.close().await;

    let checked_at = chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string();
    let failed = validate::failed(&rows);
    let code = if failed.is_empty() {
        exit::OK
    } else {
        exit::VALIDATE_FAILED
    };
    let table = validate::render(&host.name, &checked_at, &rows);
    if args.json {
        eprint!("{table}");
        report::print_document(&Document {
            host: &host.name,
            exit_code: code,
            checked_at: &checked_at,
            rows: &rows,
            failed,
        });
    } else {
        print!("{table}");
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internet_targets_are_host_and_port() {
        assert_eq!(
            parse_target("api.anthropic.com:443").unwrap(),
            ("api.anthropic.com".into(), 443)
        );
        assert_eq!(
            parse_target("[2001:db8::1]:80").unwrap(),
            ("2001:db8::1".into(), 80)
        );
        for bad in [
            "example.org",
            ":443",
            "example.org:https",
            "example.org:70000",
        ] {
            assert!(matches!(parse_target(bad), Err(Error::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn ssh_g_names_the_real_address_and_port() {
        let g = "user root\nhostname 203.0.113.7\nport 2222\n";
        assert_eq!(ssh_destination(g), Some(("203.0.113.7".into(), 2222)));
        assert_eq!(ssh_destination("user root\nport 22\n"), None);
        assert_eq!(ssh_destination("hostname h\nport x\n"), None);
    }
}
