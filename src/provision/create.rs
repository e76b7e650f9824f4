//! `pantheros provision create HOST`: preflight (the server type exists,
//! is orderable in the location, the image exists for its architecture),
//! the SSH key (found by fingerprint, uploaded once), the server (reused
//! when pantheros already made it, created otherwise), waited for until it
//! runs, and Kamal's config updated. Nothing is created before the
//! preflight passes; running it again changes nothing.

use super::Kind;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::cloud::{Cloud, LABEL_HOST, LABEL_MANAGED, NewServer, ServerType};
use super::{CreateArgs, Failure, Spinner, exit, foreign, kamal, sshkey, wait};

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub name: String,
    pub id: Option<i64>,
    pub server_type: String,
    pub location: String,
    pub image: String,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub status: String,
    /// "created", "reused" or "dry-run".
    pub result: String,
    pub ssh_key_fingerprint: String,
    pub ssh_key_uploaded: bool,
    pub kamal: Option<String>,
}

impl Created {
    /// Where the server is reached: its IPv4 address, or, for an IPv6-only
    /// server, the first address of its routed /64.
    pub fn address(&self) -> Option<String> {
        super::cloud::reach_address(self.ipv4.as_deref(), self.ipv6.as_deref())
    }

    /// The facts the server's creation decided, for the host's facts file
    /// (nothing for a dry run, or a server without addresses yet).
    pub fn facts(&self) -> Vec<(&'static str, serde_json::Value)> {
        if self.result == "dry-run" {
            return vec![];
        }
        server_facts(self.id, self.ipv4.as_deref(), self.ipv6.as_deref())
    }
}

/// The facts of a server as the API describes it: its id, IPv4 address,
/// routed IPv6 network, the address the host takes in it and the gateway.
pub fn server_facts(
    id: Option<i64>,
    ipv4: Option<&str>,
    ipv6: Option<&str>,
) -> Vec<(&'static str, serde_json::Value)> {
    use crate::inventory::facts::names;
    let mut v = vec![];
    if let Some(id) = id {
        v.push((names::SERVER_ID, id.into()));
    }
    if let Some(ip) = ipv4 {
        v.push((names::IPV4, ip.into()));
    }
    if let Some(net) = ipv6 {
        v.push((names::IPV6, net.into()));
        if let Some(addr) = first_address(net) {
            v.push((names::IPV6_ADDRESS, addr.into()));
            // Hetzner routes every server's /64 through this gateway.
            v.push((names::IPV6_GATEWAY, "fe80::1".into()));
        }
    }
    v
}

/// The first host address of a routed IPv6 network, with its prefix:
/// `2a01:4f8:c012:abcd::/64` → `2a01:4f8:c012:abcd::1/64`.
pub fn first_address(network: &str) -> Option<String> {
    let (addr, prefix) = network.split_once('/')?;
    let a: std::net::Ipv6Addr = addr.parse().ok()?;
    let mut seg = a.segments();
    seg[7] = 1;
    Some(format!("{}/{prefix}", std::net::Ipv6Addr::from(seg)))
}

/// Record what the creation decided in the host's facts file; whether a
/// fact changed (then the host's configuration reads something new).
pub fn record_facts(
    display: &crate::report::Display,
    host: &crate::inventory::Host,
    flake: &crate::inventory::FlakeRef,
    created: &Created,
) -> Result<bool, Failure> {
    crate::inventory::facts::record(display, host, flake, &created.facts(), "hetzner-api")
        .map(|changes| !changes.is_empty())
        .map_err(|e| {
            Failure::new(
                Kind::Api,
                format!("the server exists, but its facts could not be recorded: {e}"),
                "fix the file's permissions, then run the same command again (the server is reused)",
            )
        })
}

/// `provision create HOST`: the server, its facts recorded, the result printed.
pub async fn create(
    display: &crate::report::Display,
    host: &crate::inventory::Host,
    flake: &crate::inventory::FlakeRef,
    args: &CreateArgs,
) -> Result<i32, Failure> {
    let wanted = Wanted::of(host, args)?;
    let cloud = super::connect().await?;
    let key = sshkey::choose(args.server.ssh_key.as_deref())?;
    let out = ensure_server(display, &cloud, &key, &wanted, args).await?;
    let _changed = record_facts(display, host, flake, &out)?;
    if out.address().is_some() {
        eprintln!("  next:     pantheros provision install {}", out.name);
    }
    if args.json {
        crate::report::print_document(&out);
    }
    Ok(exit::OK)
}

/// The host's server, created when pantheros has none (or, with
/// `--dry-run`, what would be created), waited for until it runs, its
/// details printed; the Kamal config updated.
pub async fn ensure_server(
    display: &crate::report::Display,
    cloud: &impl Cloud,
    key: &sshkey::LocalKey,
    wanted: &Wanted,
    args: &CreateArgs,
) -> Result<Created, Failure> {
    let mut out = server_for(display, cloud, wanted, key, args).await?;
    if let Some(ip) = out.address() {
        eprintln!("  name:     {}", out.name);
        eprintln!("  type:     {}", out.server_type);
        eprintln!("  location: {}", out.location);
        eprintln!(
            "  IPv4:     {}",
            out.ipv4.clone().unwrap_or_else(|| "- (IPv6 only)".into())
        );
        eprintln!(
            "  IPv6:     {}",
            out.ipv6.clone().unwrap_or_else(|| "-".into())
        );
        eprintln!("  connect:  ssh root@{ip}");
        let kamal = args.kamal.clone().or_else(|| {
            let p = PathBuf::from("config/deploy.yml");
            p.exists().then_some(p)
        });
        if let Some(path) = kamal.filter(|_| !args.no_kamal && !args.dry_run) {
            out.kamal = Some(kamal_update(&path, &ip));
        }
    }
    Ok(out)
}

/// The server a host asks for (its settings, overridden by the flags).
#[derive(Debug, Clone)]
pub struct Wanted {
    pub name: String,
    pub server_type: String,
    pub location: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    /// No public IPv4 address.
    pub ipv6_only: bool,
}

impl Wanted {
    pub fn of(host: &crate::inventory::Host, args: &CreateArgs) -> Result<Wanted, Failure> {
        let d = &host.deployment;
        if d.provider.as_deref() != Some("hetzner") {
            return Err(Failure::new(
                Kind::Preflight,
                format!(
                    "{} is not a Hetzner host (pantheros.deployment.provider = {})",
                    host.name,
                    d.provider.as_deref().unwrap_or("null")
                ),
                format!(
                    "set pantheros.deployment.provider = \"hetzner\"; in {}'s configuration",
                    host.name
                ),
            ));
        }
        let mut labels: HashMap<String, String> = d.hetzner.labels.clone().into_iter().collect();
        labels.insert(LABEL_MANAGED.into(), "pantheros".into());
        labels.insert(LABEL_HOST.into(), host.name.clone());
        Ok(Wanted {
            name: host.name.clone(),
            server_type: args
                .server
                .server_type
                .clone()
                .unwrap_or_else(|| d.hetzner.server_type.clone()),
            location: args
                .server
                .location
                .clone()
                .unwrap_or_else(|| d.hetzner.location.clone()),
            image: args
                .server
                .image
                .clone()
                .unwrap_or_else(|| d.hetzner.image.clone()),
            labels,
            ipv6_only: args.server.ipv6_only || d.hetzner.ipv6_only,
        })
    }
}

/// The flow, on any [`Cloud`]: preflight, key, server, wait.
pub async fn server_for(
    display: &crate::report::Display,
    cloud: &impl Cloud,
    w: &Wanted,
    key: &sshkey::LocalKey,
    args: &CreateArgs,
) -> Result<Created, Failure> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let progress = display.spinner();
    progress.say(&format!(
        "checking {} in {} with {}",
        w.server_type, w.location, w.image
    ));
    preflight(cloud, &w.server_type, &w.location, &w.image).await?;

    // Idempotent: a server of ours with that name is reused.
    let existing = cloud.server_named(&w.name).await?;
    if let Some(s) = &existing {
        if !s.is_ours(&w.name) {
            return Err(foreign(&w.name));
        }
    }
    let (key_id, uploaded) = ensure_ssh_key(cloud, key, args.dry_run || existing.is_some()).await?;
    let (server, result) = match existing {
        Some(s) => {
            progress.say(&format!(
                "server {} exists (id {}); reusing it",
                s.name, s.id
            ));
            (
                Some(wait::running(cloud, s.id, deadline, &progress).await?),
                "reused",
            )
        }
        None if args.dry_run => (None, "dry-run"),
        None => {
            progress.say(&format!(
                "creating {} ({}, {}, {})",
                w.name, w.server_type, w.location, w.image
            ));
            let id = create_once(cloud, w, key_id, deadline, &progress).await?;
            (
                Some(wait::running(cloud, id, deadline, &progress).await?),
                "created",
            )
        }
    };
    match result {
        "dry-run" => progress.done(&format!(
            "dry run: would create {} ({} in {}){}; nothing was changed",
            w.name,
            w.server_type,
            w.location,
            if key_id.is_none() {
                " and upload the SSH key"
            } else {
                ""
            }
        )),
        _ => progress.done(&format!("server {} is running ({result})", w.name)),
    }
    Ok(Created {
        name: w.name.clone(),
        id: server.as_ref().map(|s| s.id),
        server_type: server
            .as_ref()
            .map(|s| s.server_type.clone())
            .unwrap_or(w.server_type.clone()),
        location: server
            .as_ref()
            .map(|s| s.location.clone())
            .unwrap_or(w.location.clone()),
        image: w.image.clone(),
        ipv4: server.as_ref().and_then(|s| s.ipv4.clone()),
        ipv6: server.as_ref().and_then(|s| s.ipv6.clone()),
        status: server
            .as_ref()
            .map(|s| s.status.clone())
            .unwrap_or_else(|| "not created".into()),
        result: result.into(),
        ssh_key_fingerprint: key.fingerprint.clone(),
        ssh_key_uploaded: uploaded,
        kamal: None,
    })
}

/// Create the server once. A create whose answer was lost (502/504, a
/// timeout) may still have made the server: it is looked up by name before
/// anything is posted again, so no second server is ever made.
async fn create_once(
    cloud: &impl Cloud,
    w: &Wanted,
    key_id: Option<i64>,
    deadline: Instant,
    progress: &Spinner,
) -> Result<i64, Failure> {
    let new = NewServer {
        name: w.name.clone(),
        server_type: w.server_type.clone(),
        location: w.location.clone(),
        image: w.image.clone(),
        labels: w.labels.clone(),
        ssh_key: key_id,
        ipv6_only: w.ipv6_only,
    };
    let mut attempt = 0;
    loop {
        match cloud.create_server(&new).await {
            Ok(started) => {
                wait::actions(cloud, &started.actions, deadline, progress).await?;
                return Ok(started.server);
            }
            Err(e)
                if matches!(e.status, Some(502) | Some(504))
                    || e.code == "timeout"
                    || e.code == "network" =>
            {
                progress.say(&format!("{e}; checking whether the server was created"));
                match cloud.server_named(&w.name).await? {
                    Some(s) if s.is_ours(&w.name) => return Ok(s.id),
                    Some(_) => return Err(foreign(&w.name)),
                    None if attempt < cloud.retries() && Instant::now() < deadline => {
                        tokio::time::sleep(cloud.backoff(attempt)).await;
                        attempt += 1;
                    }
                    None => {
                        return Err(Failure::api(Kind::Api, "creating the server failed", e));
                    }
                }
            }
            Err(e) => return Err(Failure::api(Kind::Api, "creating the server failed", e)),
        }
    }
}

/// The SSH key at Hetzner with this fingerprint, uploading it if absent
/// (unless `lookup_only`). Returns (id, uploaded now?).
pub async fn ensure_ssh_key(
    cloud: &impl Cloud,
    key: &sshkey::LocalKey,
    lookup_only: bool,
) -> Result<(Option<i64>, bool), Failure> {
    if let Some(id) = cloud.ssh_key_with_fingerprint(&key.fingerprint).await? {
        return Ok((Some(id), false));
    }
    if lookup_only {
        return Ok((None, false));
    }
    let labels = HashMap::from([(LABEL_MANAGED.to_string(), "pantheros".to_string())]);
    let mut name = key.stem.clone();
    for attempt in 0..2 {
        match cloud.create_ssh_key(&name, &key.public_key, &labels).await {
            Ok(id) => return Ok((Some(id), true)),
            Err(e) if e.code == "uniqueness_error" => {
                // Uploaded meanwhile (same fingerprint): use it. Or the name
                // is taken by another key: add the fingerprint to the name.
                if let Some(id) = cloud.ssh_key_with_fingerprint(&key.fingerprint).await? {
                    return Ok((Some(id), false));
                }
                if attempt == 0 {
                    let short: String = key.fingerprint.replace(':', "").chars().take(8).collect();
                    name = format!("{}-{short}", key.stem);
                    continue;
                }
                return Err(Failure::api(Kind::Api, "uploading the SSH key failed", e));
            }
            Err(e) => return Err(Failure::api(Kind::Api, "uploading the SSH key failed", e)),
        }
    }
    Err(Failure::new(
        Kind::Api,
        "uploading the SSH key failed",
        "try again",
    ))
}

/// The type exists, is orderable in the location, and the image exists for
/// its architecture. Nothing is created before this passes.
pub async fn preflight(
    cloud: &impl Cloud,
    server_type: &str,
    location: &str,
    image: &str,
) -> Result<(), Failure> {
    let Some(st) = cloud.server_type(server_type).await? else {
        let types = cloud.server_types().await.unwrap_or_default();
        let now = chrono::Utc::now();
        let names: Vec<&str> = types
            .iter()
            .filter(|t| {
                t.deprecation
                    .as_ref()
                    .is_none_or(|d| !d.unavailable_at(now))
            })
            .map(|t| t.name.as_str())
            .collect();
        return Err(Failure::new(
            Kind::Preflight,
            format!("server type {server_type} does not exist at Hetzner; nothing was created"),
            format!("choose one of: {} (--server-type)", names.join(", ")),
        ));
    };
    if !st.offers.iter().any(|o| o.location == location) {
        let offered: Vec<&str> = st.offers.iter().map(|o| o.location.as_str()).collect();
        return Err(Failure::new(
            Kind::Preflight,
            format!("server type {server_type} is not offered in {location}; nothing was created"),
            format!("it is offered in: {} (--location)", offered.join(", ")),
        ));
    }
    if let Some(dep) = st.deprecation_in(location) {
        let now = chrono::Utc::now();
        let when = if dep.day().is_empty() {
            String::new()
        } else {
            format!(" (unavailable after {})", dep.day())
        };
        if dep.unavailable_at(now) {
            let types = cloud.server_types().await.unwrap_or_default();
            return Err(Failure::new(
                Kind::Preflight,
                format!(
                    "server type {server_type} is deprecated{when} and can no longer be ordered in {location}; nothing was created"
                ),
                successors_hint(&types, &st, location),
            ));
        }
        eprintln!(
            "warning: server type {server_type} is deprecated: it can be ordered in {location} until {}; choose a current type soon",
            dep.day()
        );
    }
    if !cloud.image_exists(image, &st.architecture).await? {
        return Err(Failure::new(
            Kind::Preflight,
            format!(
                "image {image} does not exist for {} (server type {server_type}); nothing was created",
                st.architecture
            ),
            "use an image Hetzner offers for that architecture, e.g. --image ubuntu-24.04 or debian-12",
        ));
    }
    Ok(())
}

/// The hint for a server type that can no longer be ordered: only types
/// the API offers in that location today, of the same architecture, never
/// a deprecated one and never the refused type itself.
pub fn successors_hint(types: &[ServerType], refused: &ServerType, location: &str) -> String {
    let mut names: Vec<&str> = types
        .iter()
        .filter(|t| t.name != refused.name && t.architecture == refused.architecture)
        .filter(|t| t.offers.iter().any(|o| o.location == location))
        .filter(|t| t.deprecation_in(location).is_none())
        .map(|t| t.name.as_str())
        .collect();
    names.sort_unstable();
    if names.is_empty() {
        format!(
            "no current {} server type is offered in {location}: choose another --location (or an arm type)",
            refused.architecture
        )
    } else {
        format!(
            "use a current type offered in {location}: --server-type {} (or set deployment.hetzner.serverType)",
            names.join(", ")
        )
    }
}

fn kamal_update(path: &std::path::Path, ip: &str) -> String {
    match kamal::update_file(path, ip) {
        Ok(kamal::Outcome::Updated {
            before: Some(b),
            line,
        }) => {
            eprintln!("Kamal: {}:{line}: {b} -> {ip}", path.display());
            "updated".into()
        }
        Ok(kamal::Outcome::Updated { before: None, line }) => {
            eprintln!("Kamal: {}:{line}: added {ip}", path.display());
            "updated".into()
        }
        Ok(kamal::Outcome::Unchanged) => {
            eprintln!("Kamal: {} already lists {ip}", path.display());
            "unchanged".into()
        }
        Ok(kamal::Outcome::Manual(how)) => {
            eprintln!("Kamal: {} was not changed: {how}", path.display());
            "manual".into()
        }
        Err(e) => {
            eprintln!("Kamal: {} was not changed: {e}", path.display());
            "manual".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`server_for`] with plain progress lines.
    async fn flow(
        cloud: &FakeCloud,
        w: &Wanted,
        k: &sshkey::LocalKey,
        a: &CreateArgs,
    ) -> Result<Created, Failure> {
        server_for(&crate::report::Display::plain(), cloud, w, k, a).await
    }
    use crate::provision::fake::{FakeCloud, api_error, key};

    fn st(name: &str, arch: &str, offers: &[(&str, bool)]) -> ServerType {
        let dep = |gone: bool| {
            gone.then(|| super::super::cloud::Deprecation {
                announced: "2025-10-16T00:00:00Z".into(),
                unavailable_after: "2026-01-01T00:00:00Z".into(),
            })
        };
        ServerType {
            name: name.into(),
            architecture: arch.into(),
            deprecation: None,
            offers: offers
                .iter()
                .map(|(l, gone)| super::super::cloud::Offer {
                    location: (*l).into(),
                    deprecation: dep(*gone),
                })
                .collect(),
        }
    }

    /// The hint never names the refused type, a deprecated one, one of
    /// another architecture or one not offered in the location.
    #[test]
    fn the_first_address_of_the_routed_network() {
        assert_eq!(
            first_address("2a01:4f8:c012:abcd::/64").as_deref(),
            Some("2a01:4f8:c012:abcd::1/64")
        );
        assert_eq!(first_address("not an address"), None);
    }

    #[test]
    fn a_refused_types_hint_names_only_current_types_offered_there() {
        let refused = st("cx23", "x86", &[("nbg1", true)]);
        let types = vec![
            refused.clone(),
            st("cx33", "x86", &[("nbg1", false)]),
            st("cpx22", "x86", &[("nbg1", false), ("ash", false)]),
            st("cx22", "x86", &[("nbg1", true)]),
            st("cax11", "arm", &[("nbg1", false)]),
            st("ccx13", "x86", &[("fsn1", false)]),
        ];
        let hint = successors_hint(&types, &refused, "nbg1");
        assert!(hint.contains("--server-type cpx22, cx33"), "{hint}");
        for never in ["cx23", "cx22", "cax11", "ccx13"] {
            assert!(!hint.contains(never), "{never} in {hint}");
        }
        let hint = successors_hint(&types, &refused, "sin");
        assert!(
            hint.contains("no current x86 server type is offered in sin"),
            "{hint}"
        );
    }

    #[tokio::test]
    async fn a_type_no_longer_orderable_is_refused_with_its_date_and_current_successors() {
        let cloud = FakeCloud::new();
        let err = preflight(&cloud, "cx22", "nbg1", "ubuntu-24.04")
            .await
            .unwrap_err();
        let text = format!("{err:?}");
        assert!(text.contains("unavailable after 2026-01-01"), "{text}");
        assert!(text.contains("--server-type cx23"), "{text}");
        assert!(
            !text.contains("cx22 (") && !text.contains(", cx22"),
            "{text}"
        );
    }

    fn args(dry_run: bool) -> CreateArgs {
        CreateArgs {
            host: "web".into(),
            server: Default::default(),
            dry_run,
            json: false,
            timeout: 5,
            kamal: None,
            no_kamal: true,
        }
    }

    fn wanted(server_type: &str, location: &str, image: &str) -> Wanted {
        let labels = HashMap::from([
            (LABEL_MANAGED.to_string(), "pantheros".to_string()),
            (LABEL_HOST.to_string(), "web".to_string()),
        ]);
        Wanted {
            name: "web".into(),
            server_type: server_type.into(),
            location: location.into(),
            image: image.into(),
            labels,
            ipv6_only: false,
        }
    }

    fn standard() -> Wanted {
        wanted("cx23", "nbg1", "ubuntu-24.04")
    }

    #[tokio::test]
    async fn a_second_run_reuses_the_server_and_the_key() {
        let cloud = FakeCloud::new();
        let k = key("id_ed25519");
        let first = flow(&cloud, &standard(), &k, &args(false)).await.unwrap();
        assert_eq!(first.result, "created");
        assert!(first.ssh_key_uploaded);
        assert_eq!(first.status, "running");
        let again = flow(&cloud, &standard(), &k, &args(false)).await.unwrap();
        assert_eq!(again.result, "reused");
        assert!(!again.ssh_key_uploaded);
        assert_eq!(again.id, first.id);
        assert_eq!(cloud.calls("create_server"), 1);
        assert_eq!(cloud.calls("create_ssh_key"), 1);
        assert_eq!(cloud.state().servers.len(), 1);
    }

    #[tokio::test]
    async fn a_dry_run_creates_nothing() {
        let cloud = FakeCloud::new();
        let out = flow(&cloud, &standard(), &key("k"), &args(true))
            .await
            .unwrap();
        assert_eq!(out.result, "dry-run");
        assert_eq!(out.status, "not created");
        assert_eq!(
            cloud.calls("create_server") + cloud.calls("create_ssh_key"),
            0
        );
    }

    /// A create whose answer was lost may have made the server: it is found
    /// by name, and never posted twice.
    #[tokio::test]
    async fn a_lost_answer_to_create_is_looked_up_not_repeated() {
        let cloud = FakeCloud::new();
        cloud.state().create_then_fail = Some(api_error("POST /v1/servers", 504, "timeout"));
        let out = flow(&cloud, &standard(), &key("k"), &args(false))
            .await
            .unwrap();
        assert_eq!(out.result, "created");
        assert_eq!(cloud.calls("create_server"), 1);
        assert_eq!(cloud.state().servers.len(), 1);
    }

    /// A 502 that made nothing: looked up (absent), then posted again, once.
    #[tokio::test]
    async fn a_failed_create_that_made_nothing_is_retried() {
        let cloud = FakeCloud::new();
        cloud.fail(
            "create_server",
            api_error("POST /v1/servers", 502, "bad_gateway"),
        );
        let out = flow(&cloud, &standard(), &key("k"), &args(false))
            .await
            .unwrap();
        assert_eq!(out.result, "created");
        assert_eq!(cloud.calls("create_server"), 2);
        assert_eq!(cloud.state().servers.len(), 1);
    }

    #[tokio::test]
    async fn other_api_errors_and_auth_have_their_own_codes() {
        let cloud = FakeCloud::new();
        cloud.fail(
            "create_server",
            api_error("POST /v1/servers", 403, "forbidden"),
        );
        let e = flow(&cloud, &standard(), &key("k"), &args(false))
            .await
            .unwrap_err();
        assert_eq!(e.kind, Kind::Api);
        assert!(e.hint.contains("not allowed"), "{}", e.hint);
        let cloud = FakeCloud::new();
        cloud.fail(
            "server_type",
            api_error("GET /v1/server_types", 401, "unauthorized"),
        );
        let e = flow(&cloud, &standard(), &key("k"), &args(false))
            .await
            .unwrap_err();
        assert_eq!(e.kind, Kind::Token);
    }

    #[tokio::test]
    async fn a_server_of_that_name_that_pantheros_did_not_make_is_left_alone() {
        let cloud = FakeCloud::new();
        cloud.add_server("web", &[("owner", "someone")]);
        let e = flow(&cloud, &standard(), &key("k"), &args(false))
            .await
            .unwrap_err();
        assert_eq!(e.kind, Kind::ForeignServer);
        assert_eq!(cloud.calls("create_server"), 0);
    }

    /// Every preflight refusal: exit 22, with what to choose, and nothing
    /// created (no key uploaded either).
    #[tokio::test]
    async fn preflight_refuses_before_anything_is_created() {
        for (w, says) in [
            (
                wanted("cx99", "nbg1", "ubuntu-24.04"),
                "choose one of: cx23, cax11",
            ),
            (wanted("cx22", "nbg1", "ubuntu-24.04"), "cx23"),
            (
                wanted("cx23", "ash", "ubuntu-24.04"),
                "offered in: nbg1, fsn1",
            ),
            (wanted("cax11", "fsn1", "x86-only"), "that architecture"),
        ] {
            let cloud = FakeCloud::new();
            let e = flow(&cloud, &w, &key("k"), &args(false)).await.unwrap_err();
            assert_eq!(e.kind, Kind::Preflight, "{w:?}");
            assert!(
                e.hint.contains(says) || e.message.contains(says),
                "{w:?}: {} / {}",
                e.message,
                e.hint
            );
            assert_eq!(
                cloud.calls("create_server") + cloud.calls("create_ssh_key"),
                0
            );
        }
    }

    /// A key name taken by another key: uploaded under the name plus the
    /// fingerprint.
    #[tokio::test]
    async fn a_taken_key_name_gets_the_fingerprint_added() {
        let cloud = FakeCloud::new();
        cloud.state().keys.push((1, "k".into(), "fp:other".into()));
        let (id, uploaded) = ensure_ssh_key(&cloud, &key("k"), false).await.unwrap();
        assert!(uploaded && id.is_some());
        let names: Vec<String> = cloud.state().keys.iter().map(|k| k.1.clone()).collect();
        assert_eq!(names.len(), 2);
        assert!(names[1].starts_with("k-fp"), "{names:?}");
    }

    #[tokio::test]
    async fn a_failed_or_endless_action_is_an_error() {
        let cloud = FakeCloud::new();
        cloud.state().action_polls = 1_000_000;
        let e = flow(
            &cloud,
            &standard(),
            &key("k"),
            &CreateArgs {
                timeout: 0,
                ..args(false)
            },
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, Kind::Timeout, "{}", e.message);

        // An action Hetzner reports as failed: an API failure naming it.
        let cloud = FakeCloud::new();
        cloud.state().action_error = Some(("no_space".into(), "no capacity left".into()));
        let e = flow(&cloud, &standard(), &key("k"), &args(false))
            .await
            .unwrap_err();
        assert_eq!(e.kind, Kind::Api, "{}", e.message);
        assert!(
            e.message.contains("failed: no capacity left (no_space)"),
            "{}",
            e.message
        );
    }
}
