//! The checks of `validate`, one function each: gather the facts (here or
//! on the host, through `validate.sh`), then judge them in a pure function
//! (`judge_*`, unit-tested below) that makes the row. A new check is one
//! gather-and-judge pair here and one line in [`super::validate`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::spec::{Flashpods, Spire, TokenService};
use super::{Options, Row, Seat};
use crate::runner::{self, Output};
use crate::target::scripts::validate as script;

pub const WIREGUARD: (&str, &str) = (
    "wireguard",
    "WireGuard: a recent handshake and a ping of the host",
);
pub const API_WIREGUARD: (&str, &str) = ("api-wireguard", "API /health answers over WireGuard");
pub const API_PUBLIC: (&str, &str) = (
    "api-not-public",
    "API does not answer on the public address",
);
pub const API_LISTEN: (&str, &str) = ("api-listen", "API listens on the WireGuard address only");
pub const RSYNC_WIREGUARD: (&str, &str) = (
    "rsync-wireguard",
    "rsync lists the uploads module over WireGuard",
);
pub const RSYNC_ALLOW: (&str, &str) =
    ("rsync-allow", "the running rsyncd lets in the laptops only");
pub const CONTAINER_BLOCKED: (&str, &str) = (
    "container-blocked",
    "a job's container cannot reach the API or rsync",
);
pub const CONTAINER_INTERNET: (&str, &str) = (
    "container-internet",
    "a job's container reaches the internet",
);
pub const SPIRE_SERVER: (&str, &str) = ("spire-server", "SPIRE server healthy");
pub const SPIRE_AGENT: (&str, &str) = ("spire-agent", "SPIRE agent healthy and attested");
pub const SPIRE_ENTRIES: (&str, &str) = ("spire-entries", "SPIRE registration entries present");
pub const TOKEN_EXCHANGE: (&str, &str) = ("token-exchange", "token exchange for a job's SVID");

/// What `validate.sh` printed: `EXIT n`, `OUT line`s, and other tagged lines.
#[derive(Debug, Default, PartialEq)]
pub struct Tagged {
    pub exit: Option<i32>,
    pub out: Vec<String>,
    pub tags: Vec<(String, String)>,
}

impl Tagged {
    pub fn parse(text: &str) -> Tagged {
        let mut t = Tagged::default();
        for line in text.lines() {
            let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
            match tag {
                "EXIT" => t.exit = rest.trim().parse().ok(),
                "OUT" => t.out.push(rest.to_string()),
                _ => t.tags.push((tag.to_string(), rest.to_string())),
            }
        }
        t
    }

    fn ok(&self) -> bool {
        self.exit == Some(0)
    }

    fn last(&self) -> String {
        let lines = runner::tail(&self.out.join("\n"), 2);
        if lines.is_empty() {
            format!("exit {}, no output", self.exit.unwrap_or(-1))
        } else {
            lines.join(" / ")
        }
    }

    fn tag(&self, name: &str) -> impl Iterator<Item = &str> {
        self.tags
            .iter()
            .filter(move |(t, _)| t == name)
            .map(|(_, r)| r.as_str())
    }

    /// `SECTION name` splits spire's output: each section's own lines.
    fn sections(text: &str) -> BTreeMap<String, Tagged> {
        let mut map = BTreeMap::new();
        let mut name = String::new();
        let mut body = String::new();
        for line in text.lines().chain(std::iter::once("SECTION end")) {
            if let Some(next) = line.strip_prefix("SECTION ") {
                if !name.is_empty() {
                    map.insert(std::mem::take(&mut name), Tagged::parse(&body));
                }
                name = next.to_string();
                body.clear();
            } else {
                body.push_str(line);
                body.push('\n');
            }
        }
        map
    }
}

fn host_text(r: &Result<Output, String>) -> Result<&str, String> {
    r.as_ref().map(|o| o.stdout.as_str()).map_err(Clone::clone)
}

// --- WireGuard -----------------------------------------------------------

pub async fn wireguard(spec: &Flashpods, seat: &Seat<'_>, opts: &Options) -> Row {
    let addr = spec.wireguard.address.as_str();
    let wait = opts.timeout.to_string();
    // The ping goes first: it makes WireGuard handshake if it was idle.
    let ping = if which::which("ping").is_ok() {
        seat.local(&["ping", "-c", "1", "-W", &wait, addr]).await
    } else {
        seat.local(&["busybox", "ping", "-c", "1", "-W", &wait, addr])
            .await
    };
    let source = seat
        .local(&["ip", "route", "get", addr])
        .await
        .ok()
        .and_then(|o| route_source(&o.stdout));
    let handshakes = seat
        .host(script::handshakes(&spec.wireguard.interface))
        .await;
    judge_wireguard(
        spec,
        &ping,
        source.as_deref(),
        host_text(&handshakes),
        opts.handshake_within,
    )
}

/// `ip route get`'s source address (`… src 10.0.0.2 …`).
pub fn route_source(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "src" {
            return words.next().map(String::from);
        }
    }
    None
}

pub fn judge_wireguard(
    spec: &Flashpods,
    ping: &Result<Output, String>,
    source: Option<&str>,
    handshakes: Result<&str, String>,
    within: u64,
) -> Row {
    let (id, check) = WIREGUARD;
    let wg = &spec.wireguard;
    let keys_hint = |name: &str| {
        format!(
            "services.flashpods.wireguard.laptops.{name}.publicKey must be this laptop's public key \
             (`wg show` here), the laptop's peer must be the host's key, and UDP {} must reach the host",
            wg.listen_port
        )
    };
    // Which laptop this machine is: the one whose address it speaks from.
    let laptop = match source {
        Some(src) => match wg.laptops.iter().find(|(_, l)| l.address == src) {
            Some((name, l)) => Some((name.clone(), l.clone())),
            None => {
                return Row::failed(
                    id,
                    check,
                    format!(
                        "this machine reaches {} from {src}, which is no laptop's address",
                        wg.address
                    ),
                    "add this laptop (its WireGuard address and public key) to services.flashpods.wireguard.laptops, \
                     or bring up its WireGuard interface (services.flashpods.wireguard on the laptop)",
                );
            }
        },
        None => None,
    };
    let text = match handshakes {
        Ok(t) => t,
        Err(e) => {
            return Row::failed(
                id,
                check,
                e,
                "the host could not be asked: check `ssh` to it",
            );
        }
    };
    let t = Tagged::parse(text);
    if let Some(err) = t.tag("ERROR").next() {
        return Row::failed(
            id,
            check,
            format!(
                "`wg show {} latest-handshakes` on the host: {err}",
                wg.interface
            ),
            format!(
                "the host's WireGuard interface {} is not up: systemctl status wireguard-{}",
                wg.interface, wg.interface
            ),
        );
    }
    let now: u64 = t
        .tag("NOW")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let peers: BTreeMap<&str, u64> = t
        .tag("PEER")
        .filter_map(|r| {
            let (k, at) = r.split_once(' ')?;
            Some((k, at.trim().parse().ok()?))
        })
        .collect();
    // Without a source address: the laptop with the newest handshake.
    let (name, laptop) = match laptop {
        Some(l) => l,
        None => match wg
            .laptops
            .iter()
            .max_by_key(|(_, l)| peers.get(l.public_key.as_str()).copied().unwrap_or(0))
        {
            Some((n, l)) => (n.clone(), l.clone()),
            None => {
                return Row::failed(
                    id,
                    check,
                    "the configuration declares no laptop",
                    "services.flashpods.wireguard.laptops is empty",
                );
            }
        },
    };
    let ping_line = match ping {
        Ok(o) if o.success() => None,
        Ok(o) => Some(runner::tail(&format!("{}\n{}", o.stdout, o.stderr), 1).join("")),
        Err(e) => Some(e.clone()),
    };
    let Some(&at) = peers.get(laptop.public_key.as_str()) else {
        return Row::failed(
            id,
            check,
            format!(
                "the host's {} has no peer with {name}'s key {}",
                wg.interface, laptop.public_key
            ),
            "deploy the host: its running WireGuard peers are not services.flashpods.wireguard.laptops",
        );
    };
    if at == 0 {
        return Row::failed(
            id,
            check,
            format!(
                "no handshake with {name} ({}) ever; ping {}: {}",
                laptop.address,
                wg.address,
                ping_line.as_deref().unwrap_or("answered")
            ),
            keys_hint(&name),
        );
    }
    let age = now.saturating_sub(at);
    if age > within {
        return Row::failed(
            id,
            check,
            format!("the last handshake with {name} was {age} s ago (more than {within} s)"),
            keys_hint(&name),
        );
    }
    if let Some(line) = ping_line {
        return Row::failed(
            id,
            check,
            format!("ping {}: {line}", wg.address),
            format!(
                "the host's address on {} must be {} (services.flashpods.wireguard.address)",
                wg.interface, wg.address
            ),
        );
    }
    Row::passed(
        id,
        check,
        format!(
            "ping {} answered; {name} ({}) handshake {age} s ago",
            wg.address, laptop.address
        ),
    )
}

// --- The API -------------------------------------------------------------

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
    judge_api_not_public(&url, &http_get(&url, opts.timeout).await)
}

pub fn judge_api_not_public(url: &str, got: &Http) -> Row {
    let (id, check) = API_PUBLIC;
    match got {
        Http::Status(s) => Row::failed(
            id,
            check,
            format!("GET {url}: HTTP {s}"),
            "the API must only be reachable over WireGuard: services.flashpods.firewall.enable, and \
             `nft list table inet flashpods` on the host",
        ),
        other => Row::passed(id, check, format!("GET {url}: {other}")),
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
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            return Row::failed(
                id,
                check,
                e,
                "the host could not be asked: check `ssh` to it",
            );
        }
    };
    let t = Tagged::parse(text);
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

// --- rsync ---------------------------------------------------------------

pub async fn rsync_over_wireguard(spec: &Flashpods, seat: &Seat<'_>, opts: &Options) -> Row {
    let url = format!(
        "rsync://{}:{}/{}/",
        spec.rsync.address, spec.rsync.port, spec.rsync.module_name
    );
    let t = opts.timeout.to_string();
    let out = seat
        .local(&[
            "rsync",
            &format!("--contimeout={t}"),
            &format!("--timeout={t}"),
            &url,
        ])
        .await;
    judge_rsync_over_wireguard(&url, &out)
}

pub fn judge_rsync_over_wireguard(url: &str, out: &Result<Output, String>) -> Row {
    let (id, check) = RSYNC_WIREGUARD;
    match out {
        Ok(o) if o.success() => Row::passed(
            id,
            check,
            format!("rsync {url}: listed ({} entries)", o.stdout.lines().count()),
        ),
        Ok(o) => Row::failed(
            id,
            check,
            format!(
                "rsync {url}: {}",
                runner::tail(&format!("{}\n{}", o.stdout, o.stderr), 2).join(" / ")
            ),
            "services.flashpods.rsync.allow must hold this laptop's WireGuard address; systemctl status rsync on the host",
        ),
        Err(e) => Row::failed(
            id,
            check,
            e.clone(),
            "rsync must be installed on this laptop",
        ),
    }
}

pub async fn rsync_allow(spec: &Flashpods, seat: &Seat<'_>) -> Row {
    let r = seat.host(script::rsyncd()).await;
    judge_rsync_allow(spec, host_text(&r))
}

/// `key = value` of rsyncd.conf, per section ("" = global), keys lowercase.
fn rsyncd_conf(lines: &[String]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut conf: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            conf.entry(section.clone())
                .or_default()
                .insert(k.trim().to_lowercase(), v.trim().to_string());
        }
    }
    conf
}

pub fn judge_rsync_allow(spec: &Flashpods, text: Result<&str, String>) -> Row {
    let (id, check) = RSYNC_ALLOW;
    let t = match text {
        Ok(t) => Tagged::parse(t),
        Err(e) => {
            return Row::failed(
                id,
                check,
                e,
                "the host could not be asked: check `ssh` to it",
            );
        }
    };
    if let Some(err) = t.tag("ERROR").next() {
        return Row::failed(
            id,
            check,
            err.to_string(),
            "systemctl status rsync on the host (services.flashpods.rsync.enable)",
        );
    }
    let daemon = t.tag("DAEMON").next().unwrap_or("? ?").to_string();
    let file = daemon.split_once(' ').map_or("", |(_, f)| f).to_string();
    let conf = rsyncd_conf(&t.out);
    let module = spec.rsync.module_name.as_str();
    let lookup = |key: &str| {
        conf.get(module)
            .and_then(|m| m.get(key))
            .or_else(|| conf.get("").and_then(|g| g.get(key)))
            .or_else(|| conf.get("global").and_then(|g| g.get(key)))
            .cloned()
    };
    let hint = "rsyncd's `hosts allow` must be exactly services.flashpods.rsync.allow and `hosts deny` `*`: \
                deploy the host, and look for a hand-written rsyncd.conf";
    if !conf.contains_key(module) {
        return Row::failed(
            id,
            check,
            format!("{file} has no [{module}] module"),
            "services.flashpods.rsync.moduleName, and deploy the host",
        );
    }
    let words = |s: &str| -> Vec<String> {
        let mut v: Vec<String> = s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    let mut declared = spec.rsync.allow.clone();
    declared.sort();
    let allow = lookup("hosts allow");
    let deny = lookup("hosts deny");
    let evidence = format!(
        "rsyncd (pid {}, {file}): hosts allow = {}; hosts deny = {}",
        daemon.split(' ').next().unwrap_or("?"),
        allow.as_deref().unwrap_or("(unset: everyone)"),
        deny.as_deref().unwrap_or("(unset)")
    );
    match (allow.as_deref().map(words), deny.as_deref()) {
        (Some(a), Some("*")) | (Some(a), None) if a == declared => Row::passed(id, check, evidence),
        (Some(a), Some(_)) if a == declared => Row::failed(
            id,
            check,
            format!("{evidence}: with both set, a client matching neither is let in"),
            hint,
        ),
        _ => Row::failed(
            id,
            check,
            format!("{evidence}; declared: {}", declared.join(" ")),
            hint,
        ),
    }
}

// --- A job's container ---------------------------------------------------

fn job_label(spec: &Flashpods) -> String {
    match &spec.spire {
        Some(s) => format!(
            "{}={}",
            s.label_key,
            s.job_types.first().map_or("worker", String::as_str)
        ),
        None => "flashpods-job-type=worker".into(),
    }
}

pub async fn container(spec: &Flashpods, seat: &Seat<'_>, opts: &Options) -> [Row; 2] {
    let (ihost, iport) = (&opts.internet.0, opts.internet.1);
    let r = seat
        .host(script::container(
            &spec.podman_socket,
            &opts.image,
            &job_label(spec),
            opts.timeout,
            &[
                ("api", &spec.wireguard.address, spec.api.port),
                ("rsync", &spec.rsync.address, spec.rsync.port),
                ("internet", ihost, iport),
            ],
        ))
        .await;
    judge_container(spec, opts, host_text(&r))
}

pub fn judge_container(spec: &Flashpods, opts: &Options, text: Result<&str, String>) -> [Row; 2] {
    let (bid, bcheck) = CONTAINER_BLOCKED;
    let (iid, icheck) = CONTAINER_INTERNET;
    let podman_hint = format!(
        "the flashpods user's Podman (systemctl status flashpods-podman; socket {}); the image {} must \
         have sh and nc and be pullable or loaded (--image, services.flashpods.images)",
        spec.podman_socket, opts.image
    );
    let t = match text {
        Ok(t) => Tagged::parse(t),
        Err(e) => {
            return [
                Row::failed(bid, bcheck, e.clone(), podman_hint.clone()),
                Row::failed(iid, icheck, e, podman_hint),
            ];
        }
    };
    // The probe's own lines come through podman's output.
    let probes: BTreeMap<String, String> = t
        .out
        .iter()
        .filter_map(|l| l.strip_prefix("PROBE "))
        .filter_map(|r| r.split_once(' '))
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
    if probes.is_empty() {
        let e = format!("podman run: {}", t.last());
        return [
            Row::failed(bid, bcheck, e.clone(), podman_hint.clone()),
            Row::failed(iid, icheck, e, podman_hint),
        ];
    }
    let state = |n: &str| probes.get(n).map_or("not probed", String::as_str);
    let (api, rsync) = (state("api"), state("rsync"));
    let evidence = format!(
        "API {}:{} {api}; rsync {}:{} {rsync}",
        spec.wireguard.address, spec.api.port, spec.rsync.address, spec.rsync.port
    );
    let blocked = if api == "refused" && rsync == "refused" {
        Row::passed(bid, bcheck, evidence)
    } else if api == "open" || rsync == "open" {
        Row::failed(
            bid,
            bcheck,
            evidence,
            "the flashpods table must reject the container networks: services.flashpods.containerNetworks \
             must cover Podman's networks (`podman network inspect podman`), and `nft list table inet flashpods`",
        )
    } else {
        Row::failed(
            bid,
            bcheck,
            evidence,
            "the flashpods table's container rule did not reject the container (it was only dropped, or \
             not stopped): services.flashpods.containerNetworks must cover Podman's networks, and \
             `nft list table inet flashpods` must have the rule",
        )
    };
    let internet = match state("internet") {
        "open" => Row::passed(
            iid,
            icheck,
            format!(
                "{ihost}:{iport} open",
                ihost = opts.internet.0,
                iport = opts.internet.1
            ),
        ),
        other => Row::failed(
            iid,
            icheck,
            format!("{}:{} {other}", opts.internet.0, opts.internet.1),
            "container egress: Podman's NAT (netavark's tables) and the host's IPv4 forwarding; another target: --internet",
        ),
    };
    [blocked, internet]
}

// --- SPIRE ---------------------------------------------------------------

pub async fn spire(spire: &Spire, seat: &Seat<'_>) -> [Row; 3] {
    let r = seat
        .host(script::spire(
            &spire.bin,
            &spire.server_socket,
            &spire.agent_socket,
        ))
        .await;
    judge_spire(spire, host_text(&r))
}

/// `{trust_domain, path}` as SPIRE's JSON prints an ID.
fn spiffe(v: &serde_json::Value) -> String {
    format!(
        "spiffe://{}{}",
        v["trust_domain"].as_str().unwrap_or(""),
        v["path"].as_str().unwrap_or("")
    )
}

pub fn judge_spire(spire: &Spire, text: Result<&str, String>) -> [Row; 3] {
    let ((sid, scheck), (aid, acheck), (eid, echeck)) = (SPIRE_SERVER, SPIRE_AGENT, SPIRE_ENTRIES);
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            let hint = "the host could not be asked: check `ssh` to it";
            return [
                Row::failed(sid, scheck, e.clone(), hint),
                Row::failed(aid, acheck, e.clone(), hint),
                Row::failed(eid, echeck, e, hint),
            ];
        }
    };
    let sections = Tagged::sections(text);
    let section = |n: &str| {
        sections
            .get(n)
            .map(|t| (t.ok(), t.last(), t.out.join("\n")))
    };
    let server = match section("server-health") {
        Some((true, last, _)) => {
            Row::passed(sid, scheck, format!("spire-server healthcheck: {last}"))
        }
        Some((false, last, _)) => Row::failed(
            sid,
            scheck,
            format!("spire-server healthcheck: {last}"),
            format!(
                "systemctl status spire-server on the host (socket {})",
                spire.server_socket
            ),
        ),
        None => Row::failed(
            sid,
            scheck,
            "validate.sh printed no server health",
            "run `pantheros validate -v`",
        ),
    };
    let agents: Vec<String> = section("agents")
        .filter(|(ok, _, _)| *ok)
        .and_then(|(_, _, json)| serde_json::from_str::<serde_json::Value>(&json).ok())
        .map(|v| {
            v["agents"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|x| !x["banned"].as_bool().unwrap_or(false))
                        .map(|x| spiffe(&x["id"]))
                        .collect()
                })
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let agent = match section("agent-health") {
        Some((true, _, _)) if !agents.is_empty() => Row::passed(
            aid,
            acheck,
            format!("healthy; attested: {}", agents.join(", ")),
        ),
        Some((healthy, last, _)) => Row::failed(
            aid,
            acheck,
            if healthy {
                "healthy, but the server lists no attested agent".to_string()
            } else {
                format!("spire-agent healthcheck: {last}")
            },
            format!(
                "systemctl status spire-agent pantheros-spire-bootstrap on the host (the join token for {})",
                spire.host_id
            ),
        ),
        None => Row::failed(
            aid,
            acheck,
            "validate.sh printed no agent health",
            "run `pantheros validate -v`",
        ),
    };
    let entries = match section("entries") {
        Some((true, _, json)) => match serde_json::from_str::<serde_json::Value>(&json) {
            Ok(v) => {
                let present: Vec<(String, String, Vec<String>)> = v["entries"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|e| {
                                let mut sel: Vec<String> = e["selectors"]
                                    .as_array()
                                    .map(|s| {
                                        s.iter()
                                            .map(|x| {
                                                format!(
                                                    "{}:{}",
                                                    x["type"].as_str().unwrap_or(""),
                                                    x["value"].as_str().unwrap_or("")
                                                )
                                            })
                                            .collect()
                                    })
                                    .unwrap_or_default();
                                sel.sort();
                                (spiffe(&e["spiffe_id"]), spiffe(&e["parent_id"]), sel)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let missing: Vec<&str> = spire
                    .entries
                    .iter()
                    .filter(|want| {
                        let mut sel = want.selectors.clone();
                        sel.sort();
                        !present.iter().any(|(s, p, x)| {
                            *s == want.spiffe_id && *p == want.parent_id && *x == sel
                        })
                    })
                    .map(|e| e.spiffe_id.as_str())
                    .collect();
                if missing.is_empty() {
                    Row::passed(
                        eid,
                        echeck,
                        format!(
                            "{} of {} present: {}",
                            spire.entries.len(),
                            spire.entries.len(),
                            spire
                                .entries
                                .iter()
                                .map(|e| e.spiffe_id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                } else {
                    Row::failed(
                        eid,
                        echeck,
                        format!("missing (or with other selectors): {}", missing.join(", ")),
                        "systemctl status pantheros-spire-entries on the host (services.flashpods.spire.entries)",
                    )
                }
            }
            Err(e) => Row::failed(
                eid,
                echeck,
                format!("entry show printed no JSON: {e}"),
                "the spire package's CLI",
            ),
        },
        Some((false, last, _)) => Row::failed(
            eid,
            echeck,
            format!("spire-server entry show: {last}"),
            "systemctl status spire-server on the host",
        ),
        None => Row::failed(
            eid,
            echeck,
            "validate.sh printed no entries",
            "run `pantheros validate -v`",
        ),
    };
    [server, agent, entries]
}

pub async fn svid(
    spec: &Flashpods,
    spire: &Spire,
    job_type: &str,
    seat: &Seat<'_>,
    opts: &Options,
) -> Row {
    let r = seat
        .host(script::svid(
            &spec.podman_socket,
            &opts.image,
            &format!("{}={job_type}", spire.label_key),
            &spire.bin,
            &spire.agent_socket,
        ))
        .await;
    judge_svid(spire, job_type, host_text(&r))
}

pub fn judge_svid(spire: &Spire, job_type: &str, text: Result<&str, String>) -> Row {
    let id = format!("svid-{job_type}");
    let check = format!(
        "a container labelled {}={job_type} gets its SVID",
        spire.label_key
    );
    let want = spire.expected_id(job_type);
    let hint = format!(
        "the agent's docker workload attestor (services.flashpods.spire.containerSocket) and the entry for \
         {want}: systemctl status spire-agent pantheros-spire-entries on the host"
    );
    let t = match text {
        Ok(t) => Tagged::parse(t),
        Err(e) => return Row::failed(&id, &check, e, hint),
    };
    let got: Vec<String> = t
        .out
        .iter()
        .filter_map(|l| l.trim().strip_prefix("SPIFFE ID:"))
        .map(|s| s.trim().to_string())
        .collect();
    if t.ok() && got.contains(&want) {
        Row::passed(&id, &check, format!("SVID {want}"))
    } else if got.is_empty() {
        Row::failed(&id, &check, format!("no SVID: {}", t.last()), hint)
    } else {
        Row::failed(
            &id,
            &check,
            format!("got {}, expected {want}", got.join(", ")),
            hint,
        )
    }
}

// --- Token exchange ------------------------------------------------------

/// The row when the exchange cannot run: no token service, or no SPIRE.
pub fn token_exchange_not_run(spec: &Flashpods) -> Row {
    let (id, check) = TOKEN_EXCHANGE;
    Row::not_run(
        id,
        check,
        if spec.token_service.is_none() {
            "no token service is configured (services.flashpods.tokenService.package)"
        } else {
            "SPIRE is off (services.flashpods.spire.enable): no job can get a JWT-SVID"
        },
    )
}

pub async fn token(
    spec: &Flashpods,
    spire: &Spire,
    tokens: &TokenService,
    job_type: &str,
    seat: &Seat<'_>,
    opts: &Options,
) -> Row {
    let r = seat
        .host(script::token(
            &spec.podman_socket,
            &opts.image,
            &format!("{}={job_type}", spire.label_key),
            &spire.bin,
            &spire.agent_socket,
            &tokens.socket,
            &tokens.audience,
        ))
        .await;
    judge_token(spire, tokens, job_type, host_text(&r))
}

/// What the host printed: the SVID's ID, the token service's status and
/// the names (never the values) of the tokens it returned.
pub fn judge_token(
    spire: &Spire,
    tokens: &TokenService,
    job_type: &str,
    text: Result<&str, String>,
) -> Row {
    let id = format!("token-{job_type}");
    let check = format!("a {job_type} job exchanges its JWT-SVID for tokens");
    let want = spire.expected_id(job_type);
    let hint = format!(
        "systemctl status flashpods-token-service on the host (socket {}, audience {} from \
         services.flashpods.tokenService.audience, the secrets file services.flashpods.secretsFile)",
        tokens.socket, tokens.audience
    );
    let t = match text {
        Ok(t) => Tagged::parse(t),
        Err(e) => return Row::failed(&id, &check, e, hint),
    };
    if let Some(err) = t.tag("ERROR").next() {
        return Row::failed(&id, &check, err.to_string(), hint);
    }
    if t.exit.is_some_and(|c| c != 0) {
        return Row::failed(
            &id,
            &check,
            format!("no JWT-SVID for {}: {}", tokens.audience, t.last()),
            format!(
                "the agent and the entry for {want}: systemctl status spire-agent pantheros-spire-entries"
            ),
        );
    }
    let svid = t.tag("SVID").next().unwrap_or("").trim().to_string();
    let status = t.tag("STATUS").next().unwrap_or("000").trim().to_string();
    let keys: Vec<&str> = t.tag("KEY").collect();
    if svid != want {
        return Row::failed(
            &id,
            &check,
            format!("the job's JWT-SVID is {svid}, expected {want}"),
            format!("the registration entry for {want} (services.flashpods.spire.entries)"),
        );
    }
    if status == "200" && !keys.is_empty() {
        Row::passed(
            &id,
            &check,
            format!(
                "JWT-SVID {svid}; token service: HTTP 200 with {} (values not shown)",
                keys.join(", ")
            ),
        )
    } else {
        let why = if t.out.is_empty() {
            String::new()
        } else {
            format!(": {}", t.last())
        };
        Row::failed(
            &id,
            &check,
            format!(
                "JWT-SVID {svid}; token service: HTTP {status}, {} tokens{why}",
                keys.len()
            ),
            hint,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Outcome;
    use crate::validate::spec::*;

    fn spec() -> Flashpods {
        let mut laptops = BTreeMap::new();
        laptops.insert(
            "yoga".to_string(),
            Laptop {
                address: "10.0.0.2".into(),
                public_key: "LAPTOPKEY=".into(),
            },
        );
        Flashpods {
            user: "flashpods".into(),
            container_networks: vec!["10.88.0.0/16".into()],
            wireguard: Wireguard {
                interface: "wg0".into(),
                address: "10.0.0.1".into(),
                listen_port: 51820,
                laptops,
            },
            api: Api {
                port: 8080,
                configured: true,
            },
            rsync: Rsync {
                enable: true,
                address: "10.0.0.1".into(),
                port: 873,
                module_name: "uploads".into(),
                allow: vec!["10.0.0.2".into()],
            },
            firewall: Firewall { enable: true },
            podman_socket: "/run/flashpods/podman.sock".into(),
            spire: Some(spire()),
            token_service: None,
        }
    }

    fn spire() -> Spire {
        Spire {
            trust_domain: "flashpods.local".into(),
            host_id: "spiffe://flashpods.local/host".into(),
            label_key: "flashpods-job-type".into(),
            job_types: vec!["worker".into(), "agent".into()],
            entries: ["worker", "agent"]
                .iter()
                .map(|t| Entry {
                    spiffe_id: format!("spiffe://flashpods.local/{t}"),
                    parent_id: "spiffe://flashpods.local/host".into(),
                    selectors: vec![format!("docker:label:flashpods-job-type:{t}")],
                })
                .collect(),
            bin: "/nix/store/x-spire/bin".into(),
            server_socket: "/s.sock".into(),
            agent_socket: "/a.sock".into(),
        }
    }

    fn out(code: i32, stdout: &str) -> Output {
        Output {
            stdout: stdout.into(),
            stderr: String::new(),
            code: Some(code),
            duration: Duration::ZERO,
        }
    }

    fn opts() -> Options {
        Options {
            handshake_within: 180,
            image: "alpine".into(),
            internet: ("example.org".into(), 443),
            public_address: "203.0.113.7".into(),
            timeout: 5,
        }
    }

    #[test]
    fn wireguard_needs_a_recent_handshake_of_this_laptop_and_a_ping() {
        let s = spec();
        let ok = Ok(out(0, "64 bytes from 10.0.0.1"));
        let hs = "NOW 1000\nPEER LAPTOPKEY= 990\n";
        let r = judge_wireguard(&s, &ok, Some("10.0.0.2"), Ok(hs), 180);
        assert_eq!(r.result, Outcome::Passed, "{r:?}");
        assert!(r.evidence.contains("handshake 10 s ago"), "{r:?}");
        // Never: a wrong key on either side.
        let r = judge_wireguard(
            &s,
            &Ok(out(1, "100% packet loss")),
            Some("10.0.0.2"),
            Ok("NOW 1000\nPEER LAPTOPKEY= 0\n"),
            180,
        );
        assert_eq!(r.result, Outcome::Failed);
        assert!(r.evidence.contains("no handshake with yoga"), "{r:?}");
        assert!(r.hint.unwrap().contains("laptops.yoga.publicKey"));
        // Old.
        let r = judge_wireguard(
            &s,
            &ok,
            Some("10.0.0.2"),
            Ok("NOW 1000\nPEER LAPTOPKEY= 100\n"),
            180,
        );
        assert!(r.evidence.contains("900 s ago"), "{r:?}");
        // The host does not know this laptop's key.
        let r = judge_wireguard(
            &s,
            &ok,
            Some("10.0.0.2"),
            Ok("NOW 1000\nPEER OTHER= 990\n"),
            180,
        );
        assert!(r.evidence.contains("has no peer with yoga's key"), "{r:?}");
        // This machine is no laptop.
        let r = judge_wireguard(&s, &ok, Some("192.168.1.5"), Ok(hs), 180);
        assert!(
            r.evidence.contains("from 192.168.1.5, which is no laptop"),
            "{r:?}"
        );
        // The interface is missing.
        let r = judge_wireguard(
            &s,
            &ok,
            None,
            Ok("NOW 1\nERROR Unable to access interface: No such device"),
            180,
        );
        assert!(r.evidence.contains("No such device"), "{r:?}");
        // ssh failed.
        let r = judge_wireguard(&s, &ok, None, Err("ssh failed: timeout".into()), 180);
        assert_eq!(r.result, Outcome::Failed);
        // Ping fails although the handshake is recent.
        let r = judge_wireguard(
            &s,
            &Ok(out(1, "1 packets transmitted, 0 received")),
            Some("10.0.0.2"),
            Ok(hs),
            180,
        );
        assert!(r.evidence.starts_with("ping 10.0.0.1:"), "{r:?}");
    }

    #[test]
    fn route_source_reads_ip_route_get() {
        assert_eq!(
            route_source("10.0.0.1 dev wg0 src 10.0.0.2 uid 0 \n    cache \n").as_deref(),
            Some("10.0.0.2")
        );
        assert_eq!(
            route_source("RTNETLINK answers: Network is unreachable"),
            None
        );
    }

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
        assert!(judge_api_not_public(u, &Http::Refused).is_passed());
        assert!(judge_api_not_public(u, &Http::NoAnswer("nothing within 5 s".into())).is_passed());
        let r = judge_api_not_public(u, &Http::Status(200));
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

    #[test]
    fn rsyncd_must_let_in_the_laptops_only() {
        let s = spec();
        let conf = |allow: &str, deny: &str| {
            format!(
                "DAEMON 42 /nix/store/x-rsyncd.conf\nOUT address = 10.0.0.1\nOUT port = 873\nOUT \nOUT [uploads]\n\
                 OUT path = /tmp/flashpods/uploads\nOUT hosts allow = {allow}\nOUT hosts deny = {deny}\n"
            )
        };
        let r = judge_rsync_allow(&s, Ok(&conf("10.0.0.2", "*")));
        assert!(r.is_passed(), "{r:?}");
        assert!(
            r.evidence.contains("pid 42, /nix/store/x-rsyncd.conf"),
            "{r:?}"
        );
        let r = judge_rsync_allow(&s, Ok(&conf("10.0.0.0/24", "*")));
        assert_eq!(r.result, Outcome::Failed);
        assert!(
            r.evidence.contains("hosts allow = 10.0.0.0/24")
                && r.evidence.contains("declared: 10.0.0.2"),
            "{r:?}"
        );
        let r = judge_rsync_allow(&s, Ok(&conf("10.0.0.2", "10.9.9.9")));
        assert!(r.evidence.contains("matching neither is let in"), "{r:?}");
        let r = judge_rsync_allow(
            &s,
            Ok("DAEMON 42 /etc/rsyncd.conf\nOUT [other]\nOUT path = /x\n"),
        );
        assert!(r.evidence.contains("has no [uploads] module"), "{r:?}");
        let r = judge_rsync_allow(&s, Ok("ERROR no rsync daemon runs on the host\n"));
        assert!(r.hint.unwrap().contains("systemctl status rsync"));
        let ok =
            judge_rsync_over_wireguard("rsync://x/uploads/", &Ok(out(0, "drwx .\n-rw job.tar\n")));
        assert!(ok.is_passed() && ok.evidence.contains("2 entries"));
    }

    #[test]
    fn the_container_rows_read_the_probes() {
        let s = spec();
        let o = opts();
        let [b, i] = judge_container(
            &s,
            &o,
            Ok("EXIT 0\nOUT PROBE api refused\nOUT PROBE rsync refused\nOUT PROBE internet open\n"),
        );
        assert!(b.is_passed() && i.is_passed(), "{b:?} {i:?}");
        let [b, _] = judge_container(
            &s,
            &o,
            Ok("EXIT 0\nOUT PROBE api open\nOUT PROBE rsync refused\nOUT PROBE internet open\n"),
        );
        assert!(b.evidence.contains("API 10.0.0.1:8080 open"), "{b:?}");
        let [b, _] = judge_container(
            &s,
            &o,
            Ok(
                "EXIT 0\nOUT PROBE api unanswered nc: timed out\nOUT PROBE rsync unanswered nc: timed out\nOUT PROBE internet open\n",
            ),
        );
        assert_eq!(b.result, Outcome::Failed);
        assert!(b.hint.unwrap().contains("did not reject"));
        let [_, i] = judge_container(
            &s,
            &o,
            Ok(
                "EXIT 0\nOUT PROBE api refused\nOUT PROBE rsync refused\nOUT PROBE internet unanswered nc: timed out\n",
            ),
        );
        assert!(i.evidence.contains("example.org:443 unanswered"), "{i:?}");
        let [b, i] = judge_container(&s, &o, Ok("EXIT 125\nOUT Error: alpine: image not known\n"));
        assert!(b.evidence.contains("image not known") && i.evidence.contains("image not known"));
    }

    #[test]
    fn the_spire_rows_read_health_agents_and_entries() {
        let sp = spire();
        let entries = r#"{"entries":[
          {"spiffe_id":{"trust_domain":"flashpods.local","path":"/worker"},"parent_id":{"trust_domain":"flashpods.local","path":"/host"},"selectors":[{"type":"docker","value":"label:flashpods-job-type:worker"}]},
          {"spiffe_id":{"trust_domain":"flashpods.local","path":"/agent"},"parent_id":{"trust_domain":"flashpods.local","path":"/host"},"selectors":[{"type":"docker","value":"label:flashpods-job-type:agent"}]}]}"#;
        let agents = r#"{"agents":[{"id":{"trust_domain":"flashpods.local","path":"/spire/agent/join_token/abc"},"banned":false}]}"#;
        let text = |eh: i32, agents: &str, entries: &str| {
            let o = |s: &str| s.lines().map(|l| format!("OUT {l}\n")).collect::<String>();
            format!(
                "SECTION server-health\nEXIT 0\nOUT Server is healthy.\nSECTION agent-health\nEXIT {eh}\nOUT Agent is healthy.\nSECTION agents\nEXIT 0\n{}SECTION entries\nEXIT 0\n{}",
                o(agents),
                o(entries)
            )
        };
        let [s, a, e] = judge_spire(&sp, Ok(&text(0, agents, entries)));
        assert!(
            s.is_passed() && a.is_passed() && e.is_passed(),
            "{s:?} {a:?} {e:?}"
        );
        assert!(
            a.evidence
                .contains("spiffe://flashpods.local/spire/agent/join_token/abc")
        );
        let [_, a, _] = judge_spire(&sp, Ok(&text(0, r#"{"agents":[]}"#, entries)));
        assert!(a.evidence.contains("no attested agent"), "{a:?}");
        let [_, a, _] = judge_spire(&sp, Ok(&text(1, agents, entries)));
        assert_eq!(a.result, Outcome::Failed);
        let one = entries.replace("label:flashpods-job-type:agent", "label:other:agent");
        let [_, _, e] = judge_spire(&sp, Ok(&text(0, agents, &one)));
        assert!(
            e.evidence.contains("spiffe://flashpods.local/agent")
                && !e.evidence.contains("/worker"),
            "{e:?}"
        );
    }

    #[test]
    fn an_svid_row_wants_the_job_types_id() {
        let sp = spire();
        let ok = "EXIT 0\nOUT Received 1 svid after 3ms\nOUT \nOUT SPIFFE ID:\t\tspiffe://flashpods.local/worker\n";
        assert!(judge_svid(&sp, "worker", Ok(ok)).is_passed());
        let r = judge_svid(&sp, "agent", Ok(ok));
        assert!(
            r.evidence
                .contains("expected spiffe://flashpods.local/agent"),
            "{r:?}"
        );
        let r = judge_svid(
            &sp,
            "agent",
            Ok("EXIT 1\nOUT rpc error: no identity issued\n"),
        );
        assert!(r.evidence.contains("no identity issued"));
    }

    #[test]
    fn the_token_rows_name_the_tokens_never_their_values() {
        let mut s = spec();
        assert_eq!(token_exchange_not_run(&s).result, Outcome::NotRun);
        s.spire = None;
        s.token_service = Some(TokenService {
            socket: "/run/flashpods/token.sock".into(),
            audience: "flashpods-token-service".into(),
        });
        assert!(token_exchange_not_run(&s).evidence.contains("SPIRE is off"));
        let (sp, ts) = (spire(), s.token_service.clone().unwrap());
        let ok = "SVID spiffe://flashpods.local/agent\nSTATUS 200\nKEY ANTHROPIC_API_KEY\nKEY GITHUB_TOKEN\n";
        let r = judge_token(&sp, &ts, "agent", Ok(ok));
        assert!(r.is_passed(), "{r:?}");
        assert!(
            r.evidence
                .contains("ANTHROPIC_API_KEY, GITHUB_TOKEN (values not shown)")
        );
        let r = judge_token(&sp, &ts, "worker", Ok(ok));
        assert!(
            r.evidence
                .contains("expected spiffe://flashpods.local/worker"),
            "{r:?}"
        );
        let r = judge_token(
            &sp,
            &ts,
            "agent",
            Ok("SVID spiffe://flashpods.local/agent\nSTATUS 403\n"),
        );
        assert!(
            r.evidence.contains("HTTP 403, 0 tokens")
                && r.hint.as_deref().unwrap_or("").contains("audience"),
            "{r:?}"
        );
        let r = judge_token(
            &sp,
            &ts,
            "agent",
            Ok(
                "SVID spiffe://flashpods.local/agent\nSTATUS 000\nOUT curl: (7) Failed to connect\n",
            ),
        );
        assert!(r.evidence.contains("curl: (7)"), "{r:?}");
        let r = judge_token(
            &sp,
            &ts,
            "agent",
            Ok("EXIT 1\nOUT rpc error: no identity issued\n"),
        );
        assert!(r.evidence.contains("no JWT-SVID"), "{r:?}");
    }
}
