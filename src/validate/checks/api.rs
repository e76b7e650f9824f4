//! The API rows: `/health` over WireGuard, nothing on the public address,
//! and the API's sockets bound to the WireGuard address alone.

use std::time::Duration;

use super::{host_facts, host_text};

use crate::host::scripts::validate as script;
use crate::validate::spec::Flashpods;
use crate::validate::{Options, Row, Seat};

pub const API_WIREGUARD: (&str, &str) = ("api-wireguard", "API /health answers over WireGuard");
pub const API_PUBLIC: (&str, &str) = (
    "api-not-public",
    "API does not answer on the public address",
);
pub const API_LISTEN: (&str, &str) = ("api-listen", "API listens on the WireGuard address only");

/// The API rows of a host that declares no API package: not run, never
/// failed (there is nothing to check yet); None when it declares one.
pub fn api_rows_not_run(spec: &Flashpods) -> Option<[Row; 3]> {
    if spec.api.configured {
        return None;
    }
    let why = "the host declares no API package (services.flashpods.api.package)";
    Some([API_WIREGUARD, API_PUBLIC, API_LISTEN].map(|(id, check)| Row::not_run(id, check, why)))
}

/// How an HTTP request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Http {
    Status(u16),
    Refused,
    NoAnswer(String),
}

impl std::fmt::Display for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Http::Status(s) => write!(f, "HTTP {s}"),
            Http::Refused => write!(f, "connection refused"),
            Http::NoAnswer(why) => write!(f, "no answer ({why})"),
        }
    }
}

pub async fn http_get(url: &str, timeout: u64) -> Http {
    let client = match reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(timeout))
        .timeout(Duration::from_secs(timeout))
        .build()
    {
        Ok(c) => c,
        Err(e) => return Http::NoAnswer(format!("no HTTP client: {e}")),
    };
    match client.get(url).send().await {
        Ok(r) => Http::Status(r.status().as_u16()),
        Err(e) => {
            let mut source: Option<&dyn std::error::Error> = Some(&e);
            while let Some(s) = source {
                if let Some(io) = s.downcast_ref::<std::io::Error>()
                    && io.kind() == std::io::ErrorKind::ConnectionRefused
                {
                    return Http::Refused;
                }
                source = s.source();
            }
            if e.is_timeout() {
                Http::NoAnswer(format!("nothing within {timeout} s"))
            } else {
                Http::NoAnswer(e.to_string())
            }
        }
    }
}

fn health_url(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("http://[{address}]:{port}/health")
    } else {
        format!("http://{address}:{port}/health")
    }
}

pub async fn api_over_wireguard(spec: &Flashpods, _seat: &Seat<'_>, opts: &Options) -> Row {
    let url = health_url(&spec.wireguard.address, spec.api.port);
    judge_api_over_wireguard(spec, &url, &http_get(&url, opts.timeout).await)
}

pub fn judge_api_over_wireguard(spec: &Flashpods, url: &str, got: &Http) -> Row {
    let (id, check) = API_WIREGUARD;
    match got {
        Http::Status(s) if (200..300).contains(s) => {
            Row::passed(id, check, format!("GET {url}: HTTP {s}"))
        }
        other => Row::failed(
            id,
            check,
            format!("GET {url}: {other}"),
            if spec.api.configured {
                "systemctl status flashpods-api on the host; this laptop's address must be in \
                 services.flashpods.wireguard.laptops (the firewall lets only those in)"
            } else {
                "services.flashpods.api.package is not set: no flashpods-api unit runs"
            },
        ),
    }
}

pub async fn api_not_public(spec: &Flashpods, _seat: &Seat<'_>, opts: &Options) -> Row {
    let url = health_url(&opts.public_address, spec.api.port);
    // Silence on the API port means something only if the address answers
    // at all: ssh's port there is the control.
    let control = tcp_connect(&opts.public_address, opts.public_ssh_port, opts.timeout).await;
    let got = http_get(&url, opts.timeout).await;
    judge_api_not_public(
        &url,
        (&opts.public_address, opts.public_ssh_port),
        &control,
        &got,
    )
}

/// Whether a TCP connection to `host:port` opens within `timeout` seconds.
pub async fn tcp_connect(host: &str, port: u16, timeout: u64) -> Result<(), String> {
    let connect = tokio::net::TcpStream::connect((host, port));
    match tokio::time::timeout(Duration::from_secs(timeout), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("nothing within {timeout} s")),
    }
}

pub fn judge_api_not_public(
    url: &str,
    (host, ssh_port): (&str, u16),
    control: &Result<(), String>,
    got: &Http,
) -> Row {
    let (id, check) = API_PUBLIC;
    match (got, control) {
        (Http::Status(s), _) => Row::failed(
            id,
            check,
            format!("GET {url}: HTTP {s}"),
            "the API must only be reachable over WireGuard: services.flashpods.firewall.enable, and \
             `nft list table inet flashpods` on the host",
        ),
        (other, Ok(())) => Row::passed(
            id,
            check,
            format!("GET {url}: {other}; ssh's port {ssh_port} there answers"),
        ),
        (other, Err(e)) => Row::not_run(
            id,
            check,
            format!(
                "GET {url}: {other}, but {host}:{ssh_port} (ssh) does not answer either ({e}): \
                 that silence proves nothing; give the host's public address with --public-address"
            ),
        ),
    }
}

pub async fn api_listens_on_wireguard(spec: &Flashpods, seat: &Seat<'_>) -> Row {
    let r = seat.host(script::listen(spec.api.port)).await;
    judge_api_listen(spec, host_text(&r))
}

/// The address part of `ss`'s local address (`10.0.0.1:8080`, `*:8080`,
/// `[::ffff:10.0.0.1]:8080`).
fn listen_address(local: &str) -> &str {
    let host = local.rsplit_once(':').map_or(local, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.split('%').next().unwrap_or(host);
    host.strip_prefix("::ffff:").unwrap_or(host)
}

pub fn judge_api_listen(spec: &Flashpods, text: Result<&str, String>) -> Row {
    let (id, check) = API_LISTEN;
    let port = spec.api.port;
    let t = match host_facts(id, check, text) {
        Ok(t) => t,
        Err(row) => return row,
    };
    if let Some(err) = t.tag("ERROR").next() {
        return Row::failed(
            id,
            check,
            format!("`ss` on the host: {err}"),
            "the host needs iproute2's ss",
        );
    }
    let locals: Vec<&str> = t.tag("LISTEN").collect();
    if locals.is_empty() {
        return Row::failed(
            id,
            check,
            format!("nothing listens on port {port}"),
            "systemctl status flashpods-api on the host (services.flashpods.api.package, services.flashpods.api.port)",
        );
    }
    let wrong: Vec<&str> = locals
        .iter()
        .copied()
        .filter(|l| listen_address(l) != spec.wireguard.address)
        .collect();
    if wrong.is_empty() {
        Row::passed(id, check, format!("listening on {}", locals.join(", ")))
    } else {
        Row::failed(
            id,
            check,
            format!(
                "listening on {} (not only {}:{port})",
                locals.join(", "),
                spec.wireguard.address
            ),
            "the API must bind the WireGuard address (FLASHPODS_LISTEN, from services.flashpods.wireguard.address): \
             on any other address only the firewall keeps it private",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_without_an_api_package_gets_its_api_rows_not_run() {
        let mut s = crate::validate::checks::fixtures::spec();
        assert!(api_rows_not_run(&s).is_none());
        s.api.configured = false;
        let rows = api_rows_not_run(&s).unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["api-wireguard", "api-not-public", "api-listen"]);
        for r in &rows {
            assert_eq!(r.result, crate::validate::Outcome::NotRun);
            assert!(r.evidence.contains("declares no API package"), "{r:?}");
        }
    }
    use crate::validate::Outcome;
    use crate::validate::checks::fixtures::*;

    #[test]
    fn the_api_rows() {
        let s = spec();
        let u = "http://10.0.0.1:8080/health";
        assert!(judge_api_over_wireguard(&s, u, &Http::Status(200)).is_passed());
        let r = judge_api_over_wireguard(&s, u, &Http::Refused);
        assert!(
            r.evidence.contains("connection refused") && r.hint.unwrap().contains("flashpods-api")
        );
        assert!(!judge_api_over_wireguard(&s, u, &Http::Status(503)).is_passed());
        let at = ("203.0.113.7", 22);
        assert!(judge_api_not_public(u, at, &Ok(()), &Http::Refused).is_passed());
        let r = judge_api_not_public(u, at, &Ok(()), &Http::NoAnswer("nothing within 5 s".into()));
        assert!(
            r.is_passed() && r.evidence.contains("ssh's port 22 there answers"),
            "{r:?}"
        );
        // Silence everywhere proves nothing: not run, never passed.
        let r = judge_api_not_public(u, at, &Err("nothing within 5 s".into()), &Http::Refused);
        assert_eq!(r.result, Outcome::NotRun);
        assert!(r.evidence.contains("proves nothing"), "{r:?}");
        let r = judge_api_not_public(u, at, &Err("refused".into()), &Http::Status(200));
        assert_eq!(r.result, Outcome::Failed);
        assert!(r.hint.unwrap().contains("services.flashpods.firewall"));
        assert_eq!(health_url("fd00::1", 8080), "http://[fd00::1]:8080/health");
    }

    #[test]
    fn the_api_must_listen_on_the_wireguard_address_alone() {
        let s = spec();
        assert!(judge_api_listen(&s, Ok("LISTEN 10.0.0.1:8080\n")).is_passed());
        assert!(judge_api_listen(&s, Ok("LISTEN [::ffff:10.0.0.1]:8080\n")).is_passed());
        for wide in [
            "LISTEN 0.0.0.0:8080",
            "LISTEN *:8080",
            "LISTEN 10.0.0.1:8080\nLISTEN [::]:8080",
        ] {
            let r = judge_api_listen(&s, Ok(wide));
            assert_eq!(r.result, Outcome::Failed, "{wide}");
            assert!(r.hint.unwrap().contains("FLASHPODS_LISTEN"));
        }
        let r = judge_api_listen(&s, Ok(""));
        assert!(r.evidence.contains("nothing listens on port 8080"));
    }
}
