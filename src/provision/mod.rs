//! `pantheros provision`: Hetzner Cloud servers for the flake's hosts.
//!
//! create (default) → preflight (type, location, image) → SSH key (found,
//! looked up by fingerprint, uploaded once) → create or reuse → wait for
//! the actions and for `running` → print → Kamal config. Plus list,
//! destroy, iso attach/detach, rescue, and install (nixos-anywhere + verify).

pub mod credentials;
pub mod hetzner;
pub mod install;
pub mod kamal;
pub mod sshkey;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hcloud::apis::{
    actions_api, images_api, isos_api, server_types_api, servers_api, ssh_keys_api,
};
use hcloud::models;

pub use crate::error::exit;
use hetzner::{ApiError, Hetzner};

pub const LABEL_MANAGED: &str = "managed-by";
pub const LABEL_HOST: &str = "pantheros-host";

pub use crate::cli::{CreateArgs, IsoCommand};

/// A provisioning failure: its own exit code, message and hint.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
    pub hint: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>, hint: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn api(code: i32, context: &str, e: ApiError) -> Failure {
        let code = if e.code == "unauthorized" || e.code == "token_readonly" {
            exit::TOKEN
        } else {
            code
        };
        Failure::new(code, format!("{context}: {e}"), e.hint())
    }

    pub fn into_error(self) -> crate::error::Error {
        crate::error::Error::Coded {
            code: self.code,
            message: self.message,
            failure: None,
            hint: Some(self.hint),
        }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure::api(exit::API, "Hetzner API", e)
    }
}

/// Progress on stderr: a spinner on a terminal, plain lines otherwise.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn new() -> Progress {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let bar = tty.then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        Progress { bar }
    }

    pub fn say(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None => eprintln!("{msg}"),
        }
    }

    pub fn done(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.finish_with_message(msg.to_string()),
            None => eprintln!("{msg}"),
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// Wait for an action to finish (bounded by `deadline`).
pub async fn wait_action(
    h: &Hetzner,
    id: i64,
    deadline: Instant,
    progress: &Progress,
) -> Result<(), Failure> {
    loop {
        let params = actions_api::GetActionParams { id };
        let a = h
            .call(&format!("GET /v1/actions/{id}"), true, || {
                actions_api::get_action(&h.config, params.clone())
            })
            .await?
            .action;
        match a.status {
            models::action::Status::Success => return Ok(()),
            models::action::Status::Error => {
                let (code, msg) = a
                    .error
                    .map(|e| (e.code, e.message))
                    .unwrap_or_else(|| ("action_failed".into(), "the action failed".into()));
                return Err(Failure::new(
                    exit::API,
                    format!(
                        "Hetzner action {} ({}) failed: {msg} ({code})",
                        a.id, a.command
                    ),
                    "see the server in the Cloud Console; running the command again is safe",
                ));
            }
            models::action::Status::Running => {
                progress.say(&format!(
                    "waiting for {} (action {}, {}%)",
                    a.command, a.id, a.progress
                ));
            }
        }
        if Instant::now() >= deadline {
            return Err(Failure::new(
                exit::TIMEOUT,
                format!(
                    "Hetzner action {} ({}) is still running after the timeout",
                    a.id, a.command
                ),
                "raise --timeout, or check the server in the Cloud Console; running the command again is safe",
            ));
        }
        tokio::time::sleep(h.poll).await;
    }
}

pub async fn get_server(h: &Hetzner, id: i64) -> Result<models::Server, Failure> {
    let params = servers_api::GetServerParams { id };
    let r = h
        .call(&format!("GET /v1/servers/{id}"), true, || {
            servers_api::get_server(&h.config, params.clone())
        })
        .await?;
    r.server.map(|s| *s).ok_or_else(|| {
        Failure::new(
            exit::NO_SERVER,
            format!("server {id} does not exist"),
            "`pantheros provision list`",
        )
    })
}

/// The server with this name, if any.
pub async fn find_server(h: &Hetzner, name: &str) -> Result<Option<models::Server>, Failure> {
    let params = servers_api::ListServersParams {
        name: Some(name.to_string()),
        ..Default::default()
    };
    let r = h
        .call("GET /v1/servers?name=…", true, || {
            servers_api::list_servers(&h.config, params.clone())
        })
        .await?;
    Ok(r.servers.into_iter().next())
}

pub fn is_ours(s: &models::Server, host: &str) -> bool {
    s.labels.get(LABEL_MANAGED).map(String::as_str) == Some("pantheros")
        && s.labels.get(LABEL_HOST).map(String::as_str) == Some(host)
}

/// The server pantheros created for `host`; a foreign one is an error.
pub async fn our_server(h: &Hetzner, host: &str) -> Result<models::Server, Failure> {
    match find_server(h, host).await? {
        Some(s) if is_ours(&s, host) => Ok(s),
        Some(_) => Err(foreign(host)),
        None => Err(Failure::new(
            exit::NO_SERVER,
            format!("there is no server named {host} in this Hetzner project"),
            format!("create it with `pantheros provision create {host}`"),
        )),
    }
}

fn foreign(host: &str) -> Failure {
    Failure::new(
        exit::FOREIGN_SERVER,
        format!(
            "a server named {host} exists in this project, but pantheros did not create it (labels {LABEL_MANAGED}=pantheros, {LABEL_HOST}={host} are missing)"
        ),
        "rename or delete that server in the Cloud Console, or add those labels if it is really this host",
    )
}

pub async fn wait_running(
    h: &Hetzner,
    id: i64,
    deadline: Instant,
    progress: &Progress,
) -> Result<models::Server, Failure> {
    loop {
        let s = get_server(h, id).await?;
        if s.status == models::server::Status::Running {
            return Ok(s);
        }
        progress.say(&format!(
            "waiting for server {} to run (status: {:?})",
            s.name, s.status
        ));
        if Instant::now() >= deadline {
            return Err(Failure::new(
                exit::TIMEOUT,
                format!("server {} is not running after the timeout", s.name),
                "raise --timeout, or look at the server in the Cloud Console",
            ));
        }
        tokio::time::sleep(h.poll).await;
    }
}

/// The SSH key at Hetzner with this fingerprint, uploading it if absent.
/// Returns (id, uploaded now?).
pub async fn ensure_ssh_key(
    h: &Hetzner,
    key: &sshkey::LocalKey,
    dry_run: bool,
) -> Result<(Option<i64>, bool), Failure> {
    let lookup = || async {
        let params = ssh_keys_api::ListSshKeysParams {
            fingerprint: Some(key.fingerprint.clone()),
            ..Default::default()
        };
        h.call("GET /v1/ssh_keys?fingerprint=…", true, || {
            ssh_keys_api::list_ssh_keys(&h.config, params.clone())
        })
        .await
        .map(|r| r.ssh_keys.into_iter().next().map(|k| k.id))
    };
    if let Some(id) = lookup().await? {
        return Ok((Some(id), false));
    }
    if dry_run {
        return Ok((None, false));
    }
    let mut name = key.stem.clone();
    for attempt in 0..2 {
        let params = ssh_keys_api::CreateSshKeyParams {
            create_ssh_key_request: models::CreateSshKeyRequest {
                labels: Some(HashMap::from([(
                    LABEL_MANAGED.to_string(),
                    "pantheros".to_string(),
                )])),
                name: name.clone(),
                public_key: key.public_key.clone(),
            },
        };
        match h
            .call("POST /v1/ssh_keys", false, || {
                ssh_keys_api::create_ssh_key(&h.config, params.clone())
            })
            .await
        {
            Ok(r) => return Ok((Some(r.ssh_key.id), true)),
            Err(e) if e.code == "uniqueness_error" => {
                // Uploaded meanwhile (same fingerprint): use it. Or the name
                // is taken by another key: add the fingerprint to the name.
                if let Some(id) = lookup().await? {
                    return Ok((Some(id), false));
                }
                if attempt == 0 {
                    name = format!(
                        "{}-{}",
                        key.stem,
                        key.fingerprint
                            .replace(':', "")
                            .chars()
                            .take(8)
                            .collect::<String>()
                    );
                    continue;
                }
                return Err(Failure::api(exit::API, "uploading the SSH key failed", e));
            }
            Err(e) => return Err(Failure::api(exit::API, "uploading the SSH key failed", e)),
        }
    }
    Err(Failure::new(
        exit::API,
        "uploading the SSH key failed",
        "try again",
    ))
}

/// Preflight: the type exists, is orderable in the location, and the image
/// exists for its architecture. Nothing is created before this passes.
pub async fn preflight(
    h: &Hetzner,
    server_type: &str,
    location: &str,
    image: &str,
) -> Result<models::ServerType, Failure> {
    let params = server_types_api::ListServerTypesParams {
        name: Some(server_type.to_string()),
        ..Default::default()
    };
    let types = h
        .call("GET /v1/server_types?name=…", true, || {
            server_types_api::list_server_types(&h.config, params.clone())
        })
        .await?
        .server_types;
    let Some(st) = types.into_iter().next() else {
        let all = server_types_api::ListServerTypesParams {
            per_page: Some(50),
            ..Default::default()
        };
        let names: Vec<String> = h
            .call("GET /v1/server_types", true, || {
                server_types_api::list_server_types(&h.config, all.clone())
            })
            .await
            .map(|r| {
                r.server_types
                    .into_iter()
                    .filter(|t| !t.deprecated.unwrap_or(false))
                    .map(|t| t.name)
                    .collect()
            })
            .unwrap_or_default();
        return Err(Failure::new(
            exit::PREFLIGHT,
            format!("server type {server_type} does not exist at Hetzner; nothing was created"),
            format!("choose one of: {} (--server-type)", names.join(", ")),
        ));
    };
    let offered: Vec<&str> = st
        .locations
        .iter()
        .filter(|l| l.deprecation.is_none())
        .map(|l| l.name.as_str())
        .collect();
    let deprecated_here = st
        .locations
        .iter()
        .any(|l| l.name == location && l.deprecation.is_some());
    let deprecated_everywhere =
        st.deprecated.unwrap_or(false) || matches!(st.deprecation, Some(Some(_)));
    if deprecated_here || (deprecated_everywhere && offered.is_empty()) {
        return Err(Failure::new(
            exit::PREFLIGHT,
            format!(
                "server type {server_type} is deprecated and can no longer be ordered in {location}; nothing was created"
            ),
            "use a current type, e.g. --server-type cx23 (successor of cx22) or cpx22".to_string(),
        ));
    }
    if !st.locations.iter().any(|l| l.name == location) {
        return Err(Failure::new(
            exit::PREFLIGHT,
            format!("server type {server_type} is not offered in {location}; nothing was created"),
            format!("it is offered in: {} (--location)", offered.join(", ")),
        ));
    }
    let arch = match st.architecture {
        models::Architecture::Arm => "arm",
        models::Architecture::X86 => "x86",
    };
    let params = images_api::ListImagesParams {
        name: Some(image.to_string()),
        architecture: Some(arch.to_string()),
        ..Default::default()
    };
    let images = h
        .call("GET /v1/images?name=…", true, || {
            images_api::list_images(&h.config, params.clone())
        })
        .await?
        .images;
    if images.is_empty() {
        return Err(Failure::new(
            exit::PREFLIGHT,
            format!(
                "image {image} does not exist for {arch} (server type {server_type}); nothing was created"
            ),
            "use an image Hetzner offers for that architecture, e.g. --image ubuntu-24.04 or debian-12",
        ));
    }
    Ok(st)
}

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

fn ipv4(s: &models::Server) -> Option<String> {
    s.public_net.ipv4.as_ref().map(|i| i.ip.clone())
}

fn ipv6(s: &models::Server) -> Option<String> {
    s.public_net.ipv6.as_ref().map(|i| i.ip.clone())
}

/// `provision create HOST`: the server, then the result printed.
pub async fn create(host: &crate::inventory::Host, args: &CreateArgs) -> Result<i32, Failure> {
    let out = ensure_server(host, args).await?;
    if out.ipv4.is_some() {
        eprintln!("  next:     pantheros provision install {}", out.name);
    }
    if args.json {
        let mut doc = serde_json::to_value(&out).unwrap_or_default();
        if let Some(m) = doc.as_object_mut() {
            m.insert("version".into(), crate::report::JSON_VERSION.into());
        }
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    Ok(exit::OK)
}

/// The host's server, created when pantheros has none (or, with
/// `--dry-run`, what would be created), waited for until it runs; the
/// Kamal config updated.
pub async fn ensure_server(
    host: &crate::inventory::Host,
    args: &CreateArgs,
) -> Result<Created, Failure> {
    let d = &host.deployment;
    if d.provider.as_deref() != Some("hetzner") {
        return Err(Failure::new(
            exit::PREFLIGHT,
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
    let server_type = args
        .server_type
        .clone()
        .unwrap_or_else(|| d.hetzner.server_type.clone());
    let location = args
        .location
        .clone()
        .unwrap_or_else(|| d.hetzner.location.clone());
    let image = args
        .image
        .clone()
        .unwrap_or_else(|| d.hetzner.image.clone());
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let (token, source) = credentials::resolve().await?;
    tracing::debug!(source = %source, "Hetzner token");
    let h = Hetzner::new(&token)?;
    let key = sshkey::choose(args.ssh_key.as_deref())?;
    let progress = Progress::new();
    progress.say(&format!(
        "checking {server_type} in {location} with {image}"
    ));
    preflight(&h, &server_type, &location, &image).await?;

    // Idempotent: a server of ours with that name is reused.
    let existing = find_server(&h, &host.name).await?;
    if let Some(s) = &existing {
        if !is_ours(s, &host.name) {
            return Err(foreign(&host.name));
        }
    }
    let (key_id, uploaded) = ensure_ssh_key(&h, &key, args.dry_run || existing.is_some()).await?;
    let (server, result) = if let Some(s) = existing {
        progress.say(&format!(
            "server {} exists (id {}); reusing it",
            s.name, s.id
        ));
        let s = wait_running(&h, s.id, deadline, &progress).await?;
        (Some(s), "reused")
    } else if args.dry_run {
        (None, "dry-run")
    } else {
        let mut labels: HashMap<String, String> = d.hetzner.labels.clone().into_iter().collect();
        labels.insert(LABEL_MANAGED.into(), "pantheros".into());
        labels.insert(LABEL_HOST.into(), host.name.clone());
        let mut req =
            models::CreateServerRequest::new(image.clone(), host.name.clone(), server_type.clone());
        req.location = Some(location.clone());
        req.labels = Some(labels);
        req.ssh_keys = key_id.map(|id| vec![id.to_string()]);
        req.start_after_create = Some(true);
        let params = servers_api::CreateServerParams {
            create_server_request: req,
        };
        progress.say(&format!(
            "creating {} ({server_type}, {location}, {image})",
            host.name
        ));
        let mut attempt = 0;
        let id = loop {
            match h
                .call("POST /v1/servers", false, || {
                    servers_api::create_server(&h.config, params.clone())
                })
                .await
            {
                Ok(r) => {
                    wait_action(&h, r.action.id, deadline, &progress).await?;
                    for a in &r.next_actions {
                        wait_action(&h, a.id, deadline, &progress).await?;
                    }
                    break r.server.id;
                }
                // The request may have created the server before failing:
                // look it up by name before posting again.
                Err(e)
                    if matches!(e.status, Some(502) | Some(504))
                        || e.code == "timeout"
                        || e.code == "network" =>
                {
                    progress.say(&format!("{e}; checking whether the server was created"));
                    match find_server(&h, &host.name).await? {
                        Some(s) if is_ours(&s, &host.name) => break s.id,
                        Some(_) => return Err(foreign(&host.name)),
                        None if attempt < h.retries && Instant::now() < deadline => {
                            tokio::time::sleep(hetzner::backoff(h.backoff_base, attempt)).await;
                            attempt += 1;
                        }
                        None => {
                            return Err(Failure::api(exit::API, "creating the server failed", e));
                        }
                    }
                }
                Err(e) => return Err(Failure::api(exit::API, "creating the server failed", e)),
            }
        };
        (
            Some(wait_running(&h, id, deadline, &progress).await?),
            "created",
        )
    };

    let mut out = Created {
        name: host.name.clone(),
        id: server.as_ref().map(|s| s.id),
        server_type: server
            .as_ref()
            .map(|s| s.server_type.name.clone())
            .unwrap_or(server_type.clone()),
        location: server
            .as_ref()
            .map(|s| s.location.name.clone())
            .unwrap_or(location.clone()),
        image,
        ipv4: server.as_ref().and_then(ipv4),
        ipv6: server.as_ref().and_then(ipv6),
        status: server
            .as_ref()
            .map(|s| format!("{:?}", s.status).to_lowercase())
            .unwrap_or_else(|| "not created".into()),
        result: result.into(),
        ssh_key_fingerprint: key.fingerprint.clone(),
        ssh_key_uploaded: uploaded,
        kamal: None,
    };
    match result {
        "dry-run" => progress.done(&format!(
            "dry run: would create {} ({server_type} in {location}){}; nothing was changed",
            host.name,
            if key_id.is_none() {
                " and upload the SSH key"
            } else {
                ""
            }
        )),
        _ => progress.done(&format!("server {} is running ({result})", host.name)),
    }
    if let Some(ip) = out.ipv4.clone() {
        eprintln!("  name:     {}", out.name);
        eprintln!("  type:     {}", out.server_type);
        eprintln!("  location: {}", out.location);
        eprintln!("  IPv4:     {ip}");
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

/// `provision list`.
pub async fn list(json: bool) -> Result<i32, Failure> {
    let (token, _) = credentials::resolve().await?;
    let h = Hetzner::new(&token)?;
    let params = servers_api::ListServersParams {
        label_selector: Some(format!("{LABEL_MANAGED}==pantheros")),
        per_page: Some(50),
        ..Default::default()
    };
    let servers = h
        .call("GET /v1/servers?label_selector=…", true, || {
            servers_api::list_servers(&h.config, params.clone())
        })
        .await?
        .servers;
    if json {
        let v: Vec<serde_json::Value> = servers
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name, "id": s.id, "serverType": s.server_type.name, "location": s.location.name,
                    "status": format!("{:?}", s.status).to_lowercase(), "ipv4": ipv4(s), "ipv6": ipv6(s),
                    "host": s.labels.get(LABEL_HOST),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "version": crate::report::JSON_VERSION, "servers": v })
            )
            .unwrap_or_default()
        );
    } else {
        let rows: Vec<Vec<String>> = servers
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.id.to_string(),
                    s.server_type.name.clone(),
                    s.location.name.clone(),
                    format!("{:?}", s.status).to_lowercase(),
                    ipv4(s).unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        print!(
            "{}",
            crate::report::table(&["NAME", "ID", "TYPE", "LOCATION", "STATUS", "IPV4"], &rows)
        );
    }
    Ok(exit::OK)
}

/// `provision destroy HOST`.
pub async fn destroy(host: &str, yes: bool, timeout: u64) -> Result<i32, Failure> {
    let (token, _) = credentials::resolve().await?;
    let h = Hetzner::new(&token)?;
    let s = our_server(&h, host).await?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::new(
                exit::FAILED_NOTHING_CHANGED,
                format!("refusing to delete {host} without confirmation: stdin is not a terminal"),
                "pass --yes",
            ));
        }
        let answer: String = dialoguer::Input::new()
            .with_prompt(format!(
                "Delete server {host} ({}, {})? Type its name to confirm",
                s.id,
                ipv4(&s).unwrap_or_default()
            ))
            .interact_text()
            .unwrap_or_default();
        if answer.trim() != host {
            return Err(Failure::new(
                exit::FAILED_NOTHING_CHANGED,
                "not confirmed; nothing was deleted",
                "type the server's name",
            ));
        }
    }
    let params = servers_api::DeleteServerParams { id: s.id };
    let r = h
        .call(&format!("DELETE /v1/servers/{}", s.id), true, || {
            servers_api::delete_server(&h.config, params.clone())
        })
        .await?;
    let progress = Progress::new();
    if let Some(a) = r.action {
        wait_action(
            &h,
            a.id,
            Instant::now() + Duration::from_secs(timeout),
            &progress,
        )
        .await?;
    }
    progress.done(&format!("server {host} (id {}) deleted", s.id));
    Ok(exit::OK)
}

/// `provision iso attach|detach`.
pub async fn iso(cmd: &IsoCommand) -> Result<i32, Failure> {
    let (token, _) = credentials::resolve().await?;
    let h = Hetzner::new(&token)?;
    let progress = Progress::new();
    match cmd {
        IsoCommand::Attach(crate::cli::IsoAttachArgs { host, iso, timeout }) => {
            let s = our_server(&h, host).await?;
            let lp = isos_api::ListIsosParams {
                name: Some(iso.clone()),
                ..Default::default()
            };
            if h.call("GET /v1/isos?name=…", true, || {
                isos_api::list_isos(&h.config, lp.clone())
            })
            .await?
            .isos
            .is_empty()
            {
                return Err(Failure::new(
                    exit::PREFLIGHT,
                    format!("ISO {iso} does not exist at Hetzner"),
                    "list them in the Cloud Console (Servers → ISO Images)",
                ));
            }
            let params = servers_api::AttachIsoToServerParams {
                id: s.id,
                attach_iso_to_server_request: models::AttachIsoToServerRequest { iso: iso.clone() },
            };
            let r = h
                .call(
                    &format!("POST /v1/servers/{}/actions/attach_iso", s.id),
                    true,
                    || servers_api::attach_iso_to_server(&h.config, params.clone()),
                )
                .await?;
            wait_action(
                &h,
                r.action.id,
                Instant::now() + Duration::from_secs(*timeout),
                &progress,
            )
            .await?;
            progress.done(&format!("ISO {iso} attached to {host}"));
        }
        IsoCommand::Detach(crate::cli::IsoDetachArgs { host, timeout }) => {
            let s = our_server(&h, host).await?;
            detach_iso(
                &h,
                &s,
                Instant::now() + Duration::from_secs(*timeout),
                &progress,
            )
            .await?;
            progress.done(&format!("no ISO attached to {host}"));
        }
    }
    Ok(exit::OK)
}

pub async fn detach_iso(
    h: &Hetzner,
    s: &models::Server,
    deadline: Instant,
    progress: &Progress,
) -> Result<(), Failure> {
    if s.iso.is_none() {
        return Ok(());
    }
    let params = servers_api::DetachIsoFromServerParams { id: s.id };
    let r = h
        .call(
            &format!("POST /v1/servers/{}/actions/detach_iso", s.id),
            true,
            || servers_api::detach_iso_from_server(&h.config, params.clone()),
        )
        .await?;
    wait_action(h, r.action.id, deadline, progress).await
}

/// Enable rescue with our key and reset into it.
pub async fn rescue_boot(
    h: &Hetzner,
    s: &models::Server,
    key_id: Option<i64>,
    deadline: Instant,
    progress: &Progress,
) -> Result<(), Failure> {
    let params = servers_api::EnableRescueModeForServerParams {
        id: s.id,
        enable_rescue_mode_for_server_request: models::EnableRescueModeForServerRequest {
            ssh_keys: key_id.map(|id| vec![id]),
            r#type: Some(models::enable_rescue_mode_for_server_request::Type::Linux64),
        },
    };
    let r = h
        .call(
            &format!("POST /v1/servers/{}/actions/enable_rescue", s.id),
            true,
            || servers_api::enable_rescue_mode_for_server(&h.config, params.clone()),
        )
        .await
        .map_err(|e| Failure::api(exit::RESCUE, "enabling the rescue system failed", e))?;
    if let Some(a) = r.action {
        wait_action(h, a.id, deadline, progress)
            .await
            .map_err(|f| Failure {
                code: exit::RESCUE,
                ..f
            })?;
    }
    let params = servers_api::ResetServerParams { id: s.id };
    let r = h
        .call(
            &format!("POST /v1/servers/{}/actions/reset", s.id),
            true,
            || servers_api::reset_server(&h.config, params.clone()),
        )
        .await
        .map_err(|e| Failure::api(exit::RESCUE, "resetting into the rescue system failed", e))?;
    wait_action(h, r.action.id, deadline, progress)
        .await
        .map_err(|f| Failure {
            code: exit::RESCUE,
            ..f
        })
}

/// `provision rescue HOST`.
pub async fn rescue(
    host: &str,
    ssh_key: Option<&std::path::Path>,
    timeout: u64,
) -> Result<i32, Failure> {
    let (token, _) = credentials::resolve().await?;
    let h = Hetzner::new(&token)?;
    let key = sshkey::choose(ssh_key)?;
    let s = our_server(&h, host).await?;
    let (key_id, _) = ensure_ssh_key(&h, &key, false).await?;
    let progress = Progress::new();
    rescue_boot(
        &h,
        &s,
        key_id,
        Instant::now() + Duration::from_secs(timeout),
        &progress,
    )
    .await?;
    progress.done(&format!(
        "{host} is booting Hetzner's rescue system: ssh root@{} (your key {})",
        ipv4(&s).unwrap_or_default(),
        key.fingerprint
    ));
    Ok(exit::OK)
}
