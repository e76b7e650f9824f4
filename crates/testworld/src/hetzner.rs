//! The Hetzner Cloud API fake (tests/hetzner/fake_hcloud.py) as a test
//! fixture: started on 127.0.0.1 with the stored OpenAPI schema, queried
//! for its request log and schema violations, stopped on drop.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct FakeHetzner {
    pub child: Child,
    pub port: u16,
    /// The network namespace it listens in (None: the machine's loopback).
    pub netns: Option<String>,
}

/// The stored schema: $PANTHEROS_HETZNER_SPEC, or shared/hetzner beside the repo.
pub fn spec_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PANTHEROS_HETZNER_SPEC") {
        return Some(PathBuf::from(p));
    }
    let p = super::project_root().join("../shared/hetzner/cloud-openapi.json");
    p.exists().then_some(p)
}

impl FakeHetzner {
    pub fn start() -> Option<FakeHetzner> {
        Self::start_in(None)
    }

    /// Start it on the loopback of a network namespace (for a deployer that
    /// runs inside the test world).
    pub fn start_in(netns: Option<&str>) -> Option<FakeHetzner> {
        let Some(spec) = spec_path() else {
            super::cannot_run(
                "the Hetzner OpenAPI schema is missing (../shared/hetzner/cloud-openapi.json or $PANTHEROS_HETZNER_SPEC)",
            );
            return None;
        };
        if !super::try_sh(&["python3", "-c", "import openapi_core"])
            .status
            .success()
        {
            super::cannot_run("python3 lacks openapi-core (bash scripts/setup installs it)");
            return None;
        }
        let script = super::project_root().join("tests/hetzner/fake_hcloud.py");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .arg("--")
                    .arg("python3");
                c
            }
            None => Command::new("python3"),
        };
        let mut child = cmd
            .arg(script)
            .arg("--spec")
            .arg(spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Hetzner fake");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the Hetzner fake did not start: {line:?}"));
        Some(FakeHetzner {
            child,
            port,
            netns: netns.map(str::to_string),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// The argv prefix that runs a command where the fake listens.
    fn in_netns(&self) -> Vec<String> {
        match &self.netns {
            Some(ns) => vec![
                "nsenter".into(),
                format!("--net=/run/netns/{ns}"),
                "--".into(),
            ],
            None => vec![],
        }
    }

    fn control(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}/__fake/{path}", self.port);
        let mut argv = self.in_netns();
        argv.extend([
            "curl".to_string(),
            "-sS".into(),
            "-X".into(),
            method.into(),
            url,
        ]);
        if let Some(b) = body {
            argv.extend([
                "-H".into(),
                "Content-Type: application/json".into(),
                "--data".into(),
                b.to_string(),
            ]);
        }
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = super::sh(&refs);
        serde_json::from_slice(&out.stdout).expect("fake control answer")
    }

    /// Every API request so far: method, path, query, body.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.control("GET", "requests", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The first request with this method and path (panics when none came).
    #[track_caller]
    pub fn first(&self, method: &str, path: &str) -> serde_json::Value {
        self.requests()
            .into_iter()
            .find(|r| r["method"] == method && r["path"] == path)
            .unwrap_or_else(|| panic!("no {method} {path} reached the fake"))
    }

    /// Requests with this method and path.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r["method"] == method && r["path"] == path)
            .count()
    }

    pub fn mutating_requests(&self) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["method"] != "GET")
            .collect()
    }

    /// Requests or responses that did not match the schema.
    pub fn violations(&self) -> Vec<serde_json::Value> {
        self.control("GET", "violations", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Make the next `times` matching requests fail with Hetzner's error
    /// (`after`: carry the request out first, then fail, like a timeout
    /// after the server has acted).
    pub fn inject(
        &self,
        method: &str,
        path_regex: &str,
        status: u16,
        code: &str,
        times: u32,
        after: bool,
    ) {
        self.control(
            "POST",
            "inject",
            Some(serde_json::json!({"method": method, "path": path_regex, "status": status, "code": code,
                                    "message": format!("injected {code}"), "times": times, "after": after})),
        );
    }

    pub fn inject_details(
        &self,
        method: &str,
        path_regex: &str,
        status: u16,
        code: &str,
        message: &str,
        details: serde_json::Value,
    ) {
        self.control(
            "POST",
            "inject",
            Some(serde_json::json!({"method": method, "path": path_regex, "status": status, "code": code,
                                    "message": message, "times": 1, "details": details})),
        );
    }

    /// The state per token (project).
    pub fn state(&self) -> serde_json::Value {
        self.control("GET", "state", None)
    }

    /// Deprecate a server type in every location, orderable until
    /// `unavailable_after` (RFC 3339).
    pub fn deprecate(&self, server_type: &str, unavailable_after: &str) {
        self.control(
            "POST",
            "deprecate",
            Some(
                serde_json::json!({"server_type": server_type, "announced": "2026-09-01T00:00:00Z",
                                    "unavailable_after": unavailable_after}),
            ),
        );
    }

    /// What a reset (POST /v1/servers/ID/actions/reset) of the server
    /// named `name` does in the test world: `argv` runs, as the fake.
    pub fn on_reset(&self, name: &str, argv: &[String]) {
        self.control(
            "POST",
            "on-reset",
            Some(serde_json::json!({"name": name, "argv": argv})),
        );
    }

    /// Create a server through the API itself (validated like any request),
    /// labelled as pantheros labels its own, for the project of `token`.
    pub fn create_server(&self, token: &str, name: &str) -> serde_json::Value {
        let mut argv = self.in_netns();
        let body = serde_json::json!({
            "name": name, "server_type": "cx23", "image": "ubuntu-24.04", "location": "fsn1",
            "labels": {"managed-by": "pantheros", "pantheros-host": name},
        });
        argv.extend([
            "curl".to_string(),
            "-sS".into(),
            "-X".into(),
            "POST".into(),
            "-H".into(),
            format!("Authorization: Bearer {token}"),
            "-H".into(),
            "Content-Type: application/json".into(),
            "--data".into(),
            body.to_string(),
            format!("{}/servers", self.endpoint()),
        ]);
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = super::sh(&refs);
        serde_json::from_slice(&out.stdout).expect("the fake's answer to POST /servers")
    }

    /// The IPv6 network (`NET::/64`) the server named `name` gets when it
    /// is created.
    pub fn set_ipv6(&self, name: &str, net: &str) {
        self.control(
            "POST",
            "set-ipv6",
            Some(serde_json::json!({"name": name, "net": net})),
        );
    }

    pub fn set_ip(&self, name: &str, ip: &str) {
        self.control(
            "POST",
            "set-ip",
            Some(serde_json::json!({"name": name, "ip": ip})),
        );
    }
}

impl Drop for FakeHetzner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
