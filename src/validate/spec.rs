//! What a Flashpods host declares, as `validate` reads it: the summary
//! `summary.nix` makes of the host's configuration in the inventory's one
//! evaluation (field names as there).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The Nix function (configuration → summary or null) spliced into the
/// inventory's evaluation.
pub const SUMMARY_NIX: &str = include_str!("summary.nix");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Flashpods {
    pub user: String,
    pub container_networks: Vec<String>,
    /// `services.tailscale.enable`: the host should be joined.
    pub tailscale: bool,
    pub wireguard: Wireguard,
    pub api: Api,
    pub rsync: Rsync,
    pub firewall: Firewall,
    pub podman_socket: String,
    pub spire: Option<Spire>,
    pub token_service: Option<TokenService>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wireguard {
    pub interface: String,
    pub address: String,
    pub listen_port: u16,
    pub laptops: BTreeMap<String, Laptop>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Laptop {
    pub address: String,
    /// None while the laptop's key is not known (it is no peer yet).
    pub public_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Api {
    pub port: u16,
    /// Whether `services.flashpods.api.package` is set (the unit exists).
    pub configured: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rsync {
    pub enable: bool,
    pub address: String,
    pub port: u16,
    pub module_name: String,
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Firewall {
    pub enable: bool,
    /// Uids whose rootless containers' connections the table refuses.
    pub container_users: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spire {
    pub trust_domain: String,
    pub host_id: String,
    pub label_key: String,
    pub job_types: Vec<String>,
    pub entries: Vec<Entry>,
    /// The spire package's `bin` directory (in the host's closure).
    pub bin: String,
    pub server_socket: String,
    pub agent_socket: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    #[serde(rename = "spiffeID")]
    pub spiffe_id: String,
    #[serde(rename = "parentID")]
    pub parent_id: String,
    pub selectors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenService {
    pub socket: String,
    /// The JWT-SVID audience the service accepts.
    pub audience: String,
}

impl Spire {
    /// The SPIFFE ID a workload labelled with `job_type` must receive.
    pub fn expected_id(&self, job_type: &str) -> String {
        format!("spiffe://{}/{job_type}", self.trust_domain)
    }
}
