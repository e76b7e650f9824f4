//! The Hetzner Cloud API as pantheros uses it: one typed interface, the
//! [`Cloud`] trait, with pantheros' own small types. The real client
//! (`hetzner::HetznerApi`, which owns the retry policy) and the in-memory
//! fake of the unit tests (`fake::FakeCloud`) implement it; the flows
//! (create, list, destroy, iso, rescue, install, up) only see the trait.
//! A new API call has one home: a method here, its implementation in
//! hetzner.rs, its behaviour in the fake.

use std::collections::HashMap;
use std::time::Duration;

/// The labels that mark a server as pantheros' own, for which host.
pub const LABEL_MANAGED: &str = "managed-by";
pub const LABEL_HOST: &str = "pantheros-host";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub id: i64,
    pub name: String,
    /// Hetzner's word: initializing, starting, running, off, …
    pub status: String,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub labels: HashMap<String, String>,
    pub iso_attached: bool,
    pub server_type: String,
    pub location: String,
}

impl Server {
    /// Where the server is reached: its IPv4 address, or, for an IPv6-only
    /// server, the first address of its routed /64.
    pub fn address(&self) -> Option<String> {
        reach_address(self.ipv4.as_deref(), self.ipv6.as_deref())
    }
}

/// A server's address for ssh: the IPv4 one, else the first host address
/// of its IPv6 network (`2a01:4f8:…::/64` → `2a01:4f8:…::1`).
pub fn reach_address(ipv4: Option<&str>, ipv6: Option<&str>) -> Option<String> {
    ipv4.map(String::from).or_else(|| {
        ipv6.and_then(super::create::first_address)
            .and_then(|a| a.split('/').next().map(String::from))
    })
}

impl Server {
    /// Created by pantheros for `host` (its labels say so).
    pub fn is_ours(&self, host: &str) -> bool {
        self.labels.get(LABEL_MANAGED).map(String::as_str) == Some("pantheros")
            && self.labels.get(LABEL_HOST).map(String::as_str) == Some(host)
    }

    pub fn running(&self) -> bool {
        self.status == "running"
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionState {
    Running { progress: i64 },
    Success,
    Error { code: String, message: String },
}

/// Something Hetzner does in the background (create, reset, attach_iso…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub id: i64,
    pub command: String,
    pub state: ActionState,
}

/// Hetzner's deprecation of a server type (in a location): announced, and
/// orderable until `unavailable_after` (RFC 3339, as the API gives them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    pub announced: String,
    pub unavailable_after: String,
}

impl Deprecation {
    /// The day it can no longer be ordered ("2026-01-01").
    pub fn day(&self) -> &str {
        self.unavailable_after
            .split('T')
            .next()
            .unwrap_or(&self.unavailable_after)
    }

    /// Past its `unavailable_after` at `now` (an unreadable date counts as
    /// past: Hetzner would refuse the order).
    pub fn unavailable_at(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        chrono::DateTime::parse_from_rfc3339(&self.unavailable_after)
            .map(|t| t <= now)
            .unwrap_or(true)
    }
}

/// Where a server type can be ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub location: String,
    /// Deprecated there (still orderable until its date).
    pub deprecation: Option<Deprecation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerType {
    pub name: String,
    /// "x86" or "arm" (as the image API spells architectures).
    pub architecture: String,
    /// Deprecated as a whole (every location).
    pub deprecation: Option<Deprecation>,
    pub offers: Vec<Offer>,
}

impl ServerType {
    /// The deprecation that applies in `location`: the location's own, else
    /// the type's.
    pub fn deprecation_in(&self, location: &str) -> Option<&Deprecation> {
        self.offers
            .iter()
            .find(|o| o.location == location)
            .and_then(|o| o.deprecation.as_ref())
            .or(self.deprecation.as_ref())
    }
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewServer {
    pub name: String,
    pub server_type: String,
    pub location: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    pub ssh_key: Option<i64>,
    /// No public IPv4 address (`public_net.enable_ipv4 = false`).
    pub ipv6_only: bool,
}

/// A create that was accepted: the server and the actions to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub server: i64,
    pub actions: Vec<i64>,
}

/// The API. Each call is one request (the real client retries what is safe
/// to retry, by its own policy); errors are Hetzner's code and message.
#[allow(async_fn_in_trait)] // used with concrete types inside pantheros only
pub trait Cloud {
    /// How long to wait between two looks at an action or a server.
    fn poll(&self) -> Duration;
    /// Looking a server up again after a create whose answer was lost:
    /// how often, and how long to wait before look `attempt`.
    fn retries(&self) -> u32;
    fn backoff(&self, attempt: u32) -> Duration;

    async fn server_named(&self, name: &str) -> Result<Option<Server>, ApiError>;
    async fn server(&self, id: i64) -> Result<Option<Server>, ApiError>;
    /// The servers whose labels match a selector (e.g. `managed-by==pantheros`).
    async fn servers_labelled(&self, selector: &str) -> Result<Vec<Server>, ApiError>;
    async fn create_server(&self, new: &NewServer) -> Result<Started, ApiError>;
    /// The deletion's action, if Hetzner reports one.
    async fn delete_server(&self, id: i64) -> Result<Option<i64>, ApiError>;
    async fn action(&self, id: i64) -> Result<Action, ApiError>;

    async fn ssh_key_with_fingerprint(&self, fingerprint: &str) -> Result<Option<i64>, ApiError>;
    async fn create_ssh_key(
        &self,
        name: &str,
        public_key: &str,
        labels: &HashMap<String, String>,
    ) -> Result<i64, ApiError>;

    async fn server_type(&self, name: &str) -> Result<Option<ServerType>, ApiError>;
    /// Every server type with its offers (for the hints of a refused one).
    async fn server_types(&self) -> Result<Vec<ServerType>, ApiError>;
    async fn image_exists(&self, name: &str, architecture: &str) -> Result<bool, ApiError>;

    async fn iso_exists(&self, name: &str) -> Result<bool, ApiError>;
    async fn attach_iso(&self, server: i64, iso: &str) -> Result<i64, ApiError>;
    async fn detach_iso(&self, server: i64) -> Result<i64, ApiError>;
    /// Rescue with this SSH key on the next boot; its action, if any.
    async fn enable_rescue(
        &self,
        server: i64,
        ssh_key: Option<i64>,
    ) -> Result<Option<i64>, ApiError>;
    async fn reset(&self, server: i64) -> Result<i64, ApiError>;
}

/// A failed API call.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// e.g. "POST /v1/servers"
    pub call: String,
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(
                f,
                "{} failed: {} ({}, HTTP {s})",
                self.call, self.message, self.code
            ),
            None => write!(f, "{} failed: {} ({})", self.call, self.message, self.code),
        }
    }
}

impl ApiError {
    /// What to do next, by Hetzner's error code.
    pub fn hint(&self) -> String {
        match self.code.as_str() {
            "unauthorized" => "the API token is invalid: create one in the Hetzner Cloud Console (project → Security → API Tokens) \
                               and set it where pantheros read this one (HETZNER_API_TOKEN comes first, then HCLOUD_TOKEN, \
                               then the hcloud CLI's context (HCLOUD_CONTEXT, else its active one), then \
                               ~/.config/pantheros/hcloud-token), or remove the saved one and run again to be asked"
                .into(),
            "token_readonly" => "the API token is read-only: create a Read & Write token".into(),
            "forbidden" | "resource_limit_exceeded" => {
                "the project is not allowed to do this (limits, or a restriction on the project): see the Cloud Console".into()
            }
            "maintenance" | "unavailable" => "Hetzner Cloud is under maintenance: try again later".into(),
            "resource_unavailable" | "placement_error" => {
                "the server type is not available there right now: try another --location or --server-type".into()
            }
            "invalid_input" | "unsupported_error" | "service_error" => {
                let fields = self
                    .details
                    .as_ref()
                    .and_then(|d| d.get("fields"))
                    .and_then(|f| f.as_array())
                    .map(|fs| {
                        fs.iter()
                            .filter_map(|f| {
                                let name = f.get("name")?.as_str()?;
                                let msgs = f
                                    .get("messages")
                                    .and_then(|m| m.as_array())
                                    .map(|m| m.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("; "))
                                    .unwrap_or_default();
                                Some(format!("{name}: {msgs}"))
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                if fields.is_empty() {
                    "check the values passed (server type, image, location, name)".into()
                } else {
                    format!("fix these fields: {fields}")
                }
            }
            "rate_limit_exceeded" => "the project's rate limit (3600 requests/hour) is exhausted: wait and try again".into(),
            "locked" => "another action is running on this resource: wait for it and try again".into(),
            "protected" => "the resource is protected: remove the protection in the Cloud Console first".into(),
            "not_found" => "it does not exist (any more): `pantheros provision list` shows what does".into(),
            "uniqueness_error" => "the name is already used in this project".into(),
            "timeout" | "network" => "Hetzner did not answer in time: check the network, then try again (it is safe to re-run)".into(),
            "api_changed" => "Hetzner's API answered with something this version of pantheros does not know: upgrade pantheros".into(),
            _ => "see Hetzner's message above".into(),
        }
    }
}
