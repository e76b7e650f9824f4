//! The checks of `validate`, one function each: gather the facts (here or
//! on the host, through `validate.sh`), then judge them in a pure function
//! (`judge_*`, unit-tested beside it) that makes the row. A new check is one
//! gather-and-judge pair in the file of its row group and one line in
//! [`super::validate`].

mod api;
mod container;
mod rsync;
mod spire;
mod tailscale;
mod token;
mod wireguard;

pub use api::*;
pub use container::*;
pub use rsync::*;
pub use spire::*;
pub use tailscale::*;
pub use token::*;
pub use wireguard::*;

use std::collections::BTreeMap;

use super::Row;
use crate::runner::{self, Output};

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

    /// `SECTION name` splits a check's output into its sections.
    fn sections(text: &str) -> BTreeMap<String, Tagged> {
        section_texts(text)
            .into_iter()
            .map(|(name, body)| (name, Tagged::parse(&body)))
            .collect()
    }
}

/// The text of each `SECTION name` of a check's output.
fn section_texts(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut name: Option<String> = None;
    let mut body = String::new();
    for line in text.lines() {
        if let Some(next) = line.strip_prefix("SECTION ") {
            if let Some(done) = name.replace(next.to_string()) {
                map.insert(done, std::mem::take(&mut body));
            }
        } else if name.is_some() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some(done) = name {
        map.insert(done, body);
    }
    map
}

fn host_text(r: &Result<Output, String>) -> Result<&str, String> {
    r.as_ref().map(|o| o.stdout.as_str()).map_err(Clone::clone)
}

/// The host's answer parsed, or the failed row when the host could not be
/// asked at all (ssh failed, the command timed out).
fn host_facts(id: &str, check: &str, text: Result<&str, String>) -> Result<Tagged, Row> {
    text.map(Tagged::parse).map_err(|e| {
        Row::failed(
            id,
            check,
            e,
            "the host could not be asked: check `ssh` to it",
        )
    })
}

#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use crate::runner::Output;
    use crate::validate::Options;
    use crate::validate::spec::*;

    pub fn spec() -> Flashpods {
        let mut laptops = BTreeMap::new();
        laptops.insert(
            "yoga".to_string(),
            Laptop {
                address: "10.0.0.2".into(),
                public_key: Some("LAPTOPKEY=".into()),
            },
        );
        Flashpods {
            user: "flashpods".into(),
            container_networks: vec!["10.88.0.0/16".into()],
            tailscale: false,
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
            firewall: Firewall {
                enable: true,
                container_users: vec![870],
            },
            podman_socket: "/run/flashpods/podman.sock".into(),
            spire: Some(spire_conf()),
            token_service: None,
        }
    }

    pub fn spire_conf() -> Spire {
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

    pub fn out(code: i32, stdout: &str) -> Output {
        Output {
            stdout: stdout.into(),
            stderr: String::new(),
            code: Some(code),
            duration: Duration::ZERO,
        }
    }

    pub fn opts() -> Options {
        Options {
            handshake_within: 180,
            image: "alpine".into(),
            internet: ("example.org".into(), 443),
            public_address: "203.0.113.7".into(),
            public_ssh_port: 22,
            timeout: 5,
        }
    }
}
