//! An in-memory Hetzner project behind the [`Cloud`] trait, for unit tests
//! of the provisioning flows (no network, no Python): servers, SSH keys,
//! actions, the offer (server types, locations, images, ISOs), and failures
//! queued per call. The schema-validating HTTP fake (tests/hetzner/) tests
//! the real client; this one tests the flows' decisions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use super::cloud::*;

#[derive(Default)]
pub struct State {
    pub servers: BTreeMap<i64, Server>,
    pub keys: Vec<(i64, String, String)>,
    /// Actions: how many more polls each stays running, and its outcome.
    pub actions: BTreeMap<i64, (u32, Option<(String, String)>)>,
    /// Every call made, by method name ("create_server", …).
    pub calls: Vec<String>,
    /// Failures to return, per method, in order.
    pub failures: HashMap<&'static str, Vec<ApiError>>,
    /// A create that fails *after* making the server (its answer lost).
    pub create_then_fail: Option<ApiError>,
    /// How many polls a new action stays running.
    pub action_polls: u32,
    /// How new actions end: `Some((code, message))` makes them fail.
    pub action_error: Option<(String, String)>,
    pub next_id: i64,
}

pub struct FakeCloud(pub Mutex<State>);

/// The fake's fingerprint of a public key (Hetzner's is an MD5; any
/// function of the key does for the flows).
pub fn fingerprint(public_key: &str) -> String {
    format!(
        "fp:{}",
        public_key.split_whitespace().nth(1).unwrap_or(public_key)
    )
}

/// A local key as `sshkey::choose` returns it, consistent with the fake.
pub fn key(stem: &str) -> super::sshkey::LocalKey {
    let public_key = format!("ssh-ed25519 AAAA{stem} {stem}@laptop");
    super::sshkey::LocalKey {
        path: format!("/home/u/.ssh/{stem}.pub").into(),
        fingerprint: fingerprint(&public_key),
        public_key,
        stem: stem.into(),
    }
}

pub fn api_error(call: &str, status: u16, code: &str) -> ApiError {
    ApiError {
        call: call.into(),
        status: Some(status),
        code: code.into(),
        message: format!("injected {code}"),
        details: None,
    }
}

impl FakeCloud {
    pub fn new() -> FakeCloud {
        FakeCloud(Mutex::new(State {
            next_id: 1000,
            ..Default::default()
        }))
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next call of `method` fails with `e`.
    pub fn fail(&self, method: &'static str, e: ApiError) {
        self.state().failures.entry(method).or_default().push(e);
    }

    pub fn calls(&self, method: &str) -> usize {
        self.state().calls.iter().filter(|c| *c == method).count()
    }

    /// A server that exists already (e.g. made by someone else).
    pub fn add_server(&self, name: &str, labels: &[(&str, &str)]) -> i64 {
        let mut s = self.state();
        s.next_id += 1;
        let id = s.next_id;
        s.servers.insert(
            id,
            Server {
                id,
                name: name.into(),
                status: "running".into(),
                ipv4: Some(format!("192.0.2.{}", id % 250)),
                ipv6: None,
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                iso_attached: false,
                server_type: "cx23".into(),
                location: "nbg1".into(),
            },
        );
        id
    }

    /// Record the call; the queued failure for it, if any.
    fn enter(&self, method: &'static str) -> Result<(), ApiError> {
        let mut s = self.state();
        s.calls.push(method.into());
        match s.failures.get_mut(method) {
            Some(q) if !q.is_empty() => Err(q.remove(0)),
            _ => Ok(()),
        }
    }

    fn new_action(s: &mut State) -> i64 {
        s.next_id += 1;
        let id = s.next_id;
        let (polls, outcome) = (s.action_polls, s.action_error.clone());
        s.actions.insert(id, (polls, outcome));
        id
    }
}

impl Cloud for FakeCloud {
    fn poll(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn retries(&self) -> u32 {
        3
    }
    fn backoff(&self, _attempt: u32) -> Duration {
        Duration::from_millis(1)
    }

    async fn server_named(&self, name: &str) -> Result<Option<Server>, ApiError> {
        self.enter("server_named")?;
        Ok(self
            .state()
            .servers
            .values()
            .find(|s| s.name == name)
            .cloned())
    }

    async fn server(&self, id: i64) -> Result<Option<Server>, ApiError> {
        self.enter("server")?;
        Ok(self.state().servers.get(&id).cloned())
    }

    async fn servers_labelled(&self, selector: &str) -> Result<Vec<Server>, ApiError> {
        self.enter("servers_labelled")?;
        let (k, v) = selector.split_once("==").unwrap_or((selector, ""));
        Ok(self
            .state()
            .servers
            .values()
            .filter(|s| s.labels.get(k).map(String::as_str) == Some(v))
            .cloned()
            .collect())
    }

    async fn create_server(&self, new: &NewServer) -> Result<Started, ApiError> {
        self.enter("create_server")?;
        let mut s = self.state();
        if s.servers.values().any(|x| x.name == new.name) {
            return Err(api_error("POST /v1/servers", 409, "uniqueness_error"));
        }
        s.next_id += 1;
        let id = s.next_id;
        s.servers.insert(
            id,
            Server {
                id,
                name: new.name.clone(),
                status: "running".into(),
                ipv4: Some(format!("203.0.113.{}", id % 250)),
                ipv6: Some(format!("2001:db8:{:x}::/64", id % 250)),
                labels: new.labels.clone(),
                iso_attached: false,
                server_type: new.server_type.clone(),
                location: new.location.clone(),
            },
        );
        let actions = vec![FakeCloud::new_action(&mut s), FakeCloud::new_action(&mut s)];
        if let Some(e) = s.create_then_fail.take() {
            return Err(e);
        }
        Ok(Started {
            server: id,
            actions,
        })
    }

    async fn delete_server(&self, id: i64) -> Result<Option<i64>, ApiError> {
        self.enter("delete_server")?;
        let mut s = self.state();
        if s.servers.remove(&id).is_none() {
            return Err(api_error("DELETE /v1/servers", 404, "not_found"));
        }
        Ok(Some(FakeCloud::new_action(&mut s)))
    }

    async fn action(&self, id: i64) -> Result<Action, ApiError> {
        self.enter("action")?;
        let mut s = self.state();
        let Some((polls, outcome)) = s.actions.get_mut(&id) else {
            return Err(api_error("GET /v1/actions", 404, "not_found"));
        };
        let state = if *polls > 0 {
            *polls -= 1;
            ActionState::Running { progress: 50 }
        } else {
            match outcome.clone() {
                Some((code, message)) => ActionState::Error { code, message },
                None => ActionState::Success,
            }
        };
        Ok(Action {
            id,
            command: "fake_action".into(),
            state,
        })
    }

    async fn ssh_key_with_fingerprint(&self, fingerprint: &str) -> Result<Option<i64>, ApiError> {
        self.enter("ssh_key_with_fingerprint")?;
        Ok(self
            .state()
            .keys
            .iter()
            .find(|(_, _, fp)| fp == fingerprint)
            .map(|(id, _, _)| *id))
    }

    async fn create_ssh_key(
        &self,
        name: &str,
        public_key: &str,
        _labels: &HashMap<String, String>,
    ) -> Result<i64, ApiError> {
        self.enter("create_ssh_key")?;
        let mut s = self.state();
        if s.keys.iter().any(|(_, n, _)| n == name) {
            return Err(api_error("POST /v1/ssh_keys", 409, "uniqueness_error"));
        }
        s.next_id += 1;
        let id = s.next_id;
        s.keys.push((id, name.into(), fingerprint(public_key)));
        Ok(id)
    }

    async fn server_type(&self, name: &str) -> Result<Option<ServerType>, ApiError> {
        self.enter("server_type")?;
        Ok(fake_server_types().into_iter().find(|t| t.name == name))
    }

    async fn server_types(&self) -> Result<Vec<ServerType>, ApiError> {
        self.enter("server_types")?;
        Ok(fake_server_types())
    }

    async fn image_exists(&self, name: &str, architecture: &str) -> Result<bool, ApiError> {
        self.enter("image_exists")?;
        Ok(name == "ubuntu-24.04" || (name == "x86-only" && architecture == "x86"))
    }

    async fn iso_exists(&self, name: &str) -> Result<bool, ApiError> {
        self.enter("iso_exists")?;
        Ok(name.starts_with("nixos-"))
    }

    async fn attach_iso(&self, server: i64, _iso: &str) -> Result<i64, ApiError> {
        self.enter("attach_iso")?;
        let mut s = self.state();
        if let Some(x) = s.servers.get_mut(&server) {
            x.iso_attached = true;
        }
        Ok(FakeCloud::new_action(&mut s))
    }

    async fn detach_iso(&self, server: i64) -> Result<i64, ApiError> {
        self.enter("detach_iso")?;
        let mut s = self.state();
        if let Some(x) = s.servers.get_mut(&server) {
            x.iso_attached = false;
        }
        Ok(FakeCloud::new_action(&mut s))
    }

    async fn enable_rescue(
        &self,
        _server: i64,
        _key: Option<i64>,
    ) -> Result<Option<i64>, ApiError> {
        self.enter("enable_rescue")?;
        Ok(Some(FakeCloud::new_action(&mut self.state())))
    }

    async fn reset(&self, _server: i64) -> Result<i64, ApiError> {
        self.enter("reset")?;
        Ok(FakeCloud::new_action(&mut self.state()))
    }
}

/// The fake's server types: cx23 (x86, nbg1 and fsn1), cx22 (x86, nbg1,
/// no longer orderable since 2026-01-01) and cax11 (arm, fsn1).
fn fake_server_types() -> Vec<ServerType> {
    let gone = Deprecation {
        announced: "2025-10-16T00:00:00Z".into(),
        unavailable_after: "2026-01-01T00:00:00Z".into(),
    };
    let offer = |l: &str, deprecation: Option<Deprecation>| Offer {
        location: l.into(),
        deprecation,
    };
    vec![
        ServerType {
            name: "cx23".into(),
            architecture: "x86".into(),
            deprecation: None,
            offers: vec![offer("nbg1", None), offer("fsn1", None)],
        },
        ServerType {
            name: "cx22".into(),
            architecture: "x86".into(),
            deprecation: Some(gone.clone()),
            offers: vec![offer("nbg1", Some(gone))],
        },
        ServerType {
            name: "cax11".into(),
            architecture: "arm".into(),
            deprecation: None,
            offers: vec![offer("fsn1", None)],
        },
    ]
}
