//! A host's facts file: what the machines decided (the server's id and
//! addresses from the Hetzner API, the SSH host key pantheros generated at
//! the installation), each with where it came from and when, written by
//! pantheros and read by the host's configuration
//! (`pantheros.deployment.factsFile`, modules/lib/facts.nix). The user
//! commits it like `flake.lock`.
//!
//! ```json
//! { "version": 1,
//!   "facts": { "ipv4": { "value": "203.0.113.10", "source": "hetzner-api", "recorded": "…" } } }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{FlakeRef, Host};

/// The facts' names, as the configuration reads them.
pub mod names {
    pub const SERVER_ID: &str = "serverId";
    pub const IPV4: &str = "ipv4";
    /// The server's routed network, e.g. `2a01:4f8:c012:abcd::/64`.
    pub const IPV6: &str = "ipv6";
    /// The address the host takes in it, e.g. `2a01:4f8:c012:abcd::1/64`.
    pub const IPV6_ADDRESS: &str = "ipv6Address";
    /// Hetzner's IPv6 gateway (`fe80::1`).
    pub const IPV6_GATEWAY: &str = "ipv6Gateway";
    /// The SSH host key (public) pantheros generated and installed.
    pub const HOST_KEY: &str = "hostKey";
}

/// The facts a server's creation records.
pub const FROM_CREATE: &[&str] = &[
    names::SERVER_ID,
    names::IPV4,
    names::IPV6,
    names::IPV6_ADDRESS,
    names::IPV6_GATEWAY,
];
/// The facts an installation records.
pub const FROM_INSTALL: &[&str] = &[names::HOST_KEY];

/// One recorded fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    pub value: serde_json::Value,
    /// Where it came from: `hetzner-api`, `pantheros install`, `ssh`, …
    pub source: String,
    /// When (RFC 3339).
    pub recorded: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FactsFile {
    pub version: u32,
    pub facts: BTreeMap<String, Fact>,
}

impl Default for FactsFile {
    fn default() -> Self {
        FactsFile {
            version: 1,
            facts: BTreeMap::new(),
        }
    }
}

/// A change to one fact: (name, before, after).
pub type Change = (String, Option<serde_json::Value>, serde_json::Value);

impl FactsFile {
    /// The file at `path`; an empty one when it does not exist.
    pub fn load(path: &Path) -> std::io::Result<FactsFile> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a pantheros facts file: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FactsFile::default()),
            Err(e) => Err(e),
        }
    }

    /// Set `values` (name → value) from `source`; what changed comes back
    /// (a value equal to the recorded one keeps its time and source).
    pub fn set(&mut self, values: &[(&str, serde_json::Value)], source: &str) -> Vec<Change> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut changes = vec![];
        for (name, value) in values {
            let before = self.facts.get(*name).map(|f| f.value.clone());
            if before.as_ref() == Some(value) {
                continue;
            }
            changes.push((name.to_string(), before, value.clone()));
            self.facts.insert(
                name.to_string(),
                Fact {
                    value: value.clone(),
                    source: source.to_string(),
                    recorded: now.clone(),
                },
            );
        }
        changes
    }

    /// Write it whole or not at all (a temporary file renamed over it),
    /// world-readable like the flake it belongs to: facts are no secrets.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        crate::report::file::write_atomic(path, text.as_bytes(), 0o644)
    }
}

/// Where `host`'s facts file is in the checkout: its `factsFile` (which
/// the evaluation saw in the flake's store copy) under the flake's root.
/// None for a host that declares none, or a flake that is not a local
/// directory.
pub fn path_of(host: &Host, flake: &FlakeRef) -> Option<PathBuf> {
    let in_store = host.deployment.facts_file.as_deref()?;
    let root = flake.root.as_ref()?;
    Some(root.join(relative_to_source(in_store)?))
}

/// `/nix/store/<hash>-<name>/hosts/x/facts.json` → `hosts/x/facts.json`
/// (a path outside the store is taken as relative to nothing: None).
fn relative_to_source(p: &str) -> Option<PathBuf> {
    let rest = p.strip_prefix("/nix/store/")?;
    let (_, inside) = rest.split_once('/')?;
    Some(PathBuf::from(inside))
}

/// Record `values` in `host`'s facts file; says what changed and where.
/// A host without a facts file records nothing (and says so once).
pub fn record(
    display: &crate::report::Display,
    host: &Host,
    flake: &FlakeRef,
    values: &[(&str, serde_json::Value)],
    source: &str,
) -> Result<Vec<Change>, String> {
    let Some(path) = path_of(host, flake) else {
        display.say(
            &host.name,
            "note: the host declares no pantheros.deployment.factsFile: its facts are not recorded",
        );
        return Ok(vec![]);
    };
    let mut file = FactsFile::load(&path).map_err(|e| e.to_string())?;
    let changes = file.set(values, source);
    if changes.is_empty() {
        return Ok(changes);
    }
    file.save(&path)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    for (name, before, after) in &changes {
        let was = before
            .as_ref()
            .map(|b| format!(" (was {})", show(b)))
            .unwrap_or_default();
        display.say(
            &host.name,
            &format!("fact {name} = {}{was} → {}", show(after), path.display()),
        );
    }
    stage_in_git(&path);
    Ok(changes)
}

/// A fact's value for messages: strings without quotes.
pub fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A flake in a git checkout sees only files git knows: add the facts
/// file to the index (the user commits it), quietly when git is absent.
fn stage_in_git(path: &Path) {
    let Some(dir) = path.parent() else { return };
    let inside = std::process::Command::new("git")
        .args(["rev-parse", "--is-inside-work-tree"])
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .output();
    if !matches!(inside, Ok(o) if o.status.success()) {
        return;
    }
    let _ = std::process::Command::new("git")
        .arg("add")
        .arg("--")
        .arg(path)
        .current_dir(dir)
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_path_maps_to_the_checkout() {
        assert_eq!(
            relative_to_source(
                "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-source/hosts/hetzner-vps/facts.json"
            ),
            Some(PathBuf::from("hosts/hetzner-vps/facts.json"))
        );
        assert_eq!(relative_to_source("/home/me/flake/facts.json"), None);
    }

    /// Facts are set with their source and time, an unchanged value keeps
    /// both, the file is written whole and reads back.
    #[test]
    fn facts_record_their_source_and_only_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts/h/facts.json");
        let mut f = FactsFile::load(&path).unwrap();
        assert!(f.facts.is_empty());
        let c = f.set(
            &[("ipv4", "203.0.113.10".into()), ("serverId", 42.into())],
            "hetzner-api",
        );
        assert_eq!(c.len(), 2);
        f.save(&path).unwrap();
        let mut back = FactsFile::load(&path).unwrap();
        assert_eq!(back, f);
        assert_eq!(back.facts["ipv4"].source, "hetzner-api");
        let c = back.set(
            &[("ipv4", "203.0.113.10".into()), ("ipv4b", "x".into())],
            "ssh",
        );
        assert_eq!(c, vec![("ipv4b".to_string(), None, serde_json::json!("x"))]);
        assert_eq!(back.facts["ipv4"].source, "hetzner-api");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        std::fs::write(&path, "not json").unwrap();
        assert!(FactsFile::load(&path).is_err());
    }
}
