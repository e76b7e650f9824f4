//! `pantheros provision`: Hetzner Cloud servers for the flake's hosts.
//!
//! The rooms: `cloud.rs` is the API as one typed interface (the real
//! client in `hetzner.rs`, with the retry policy; an in-memory fake for the
//! flows' unit tests in `fake.rs`); `wait.rs` waits for actions and servers;
//! one file per command: `create.rs`, `list.rs`, `destroy.rs`, `iso.rs`,
//! `rescue.rs`, `install.rs` (`pantheros up` is `command/up.rs`); the token
//! in `credentials.rs`, the local SSH key in `sshkey.rs`, Kamal's config in
//! `kamal.rs`.

pub mod cloud;
pub mod create;
pub mod credentials;
pub mod destroy;
#[cfg(test)]
mod fake;
pub mod hetzner;
pub mod install;
pub mod iso;
pub mod kamal;
pub mod list;
pub mod rescue;
pub mod sshkey;
pub mod wait;

pub use crate::cli::{CreateArgs, IsoCommand};
pub use crate::error::Provisioning as Kind;
pub use crate::error::exit;
use cloud::{Cloud, Server};
pub use cloud::{LABEL_HOST, LABEL_MANAGED};
pub use create::{Created, create, ensure_server};
pub use destroy::destroy;
use hetzner::{ApiError, Hetzner};
pub use iso::iso;
pub use list::list;
pub use rescue::rescue;

/// A provisioning failure: its kind (which is its exit code), message and
/// hint. It becomes [`crate::error::Error::Provision`].
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
    pub hint: String,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>, hint: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// An API call failed; a refused token is a token failure whatever the
    /// call was for.
    pub fn api(kind: Kind, context: &str, e: ApiError) -> Failure {
        let kind = if e.code == "unauthorized" || e.code == "token_readonly" {
            Kind::Token
        } else {
            kind
        };
        Failure::new(kind, format!("{context}: {e}"), e.hint())
    }

    pub fn into_error(self) -> crate::error::Error {
        crate::error::Error::Provision {
            kind: self.kind,
            message: self.message,
            hint: self.hint,
        }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure::api(Kind::Api, "Hetzner API", e)
    }
}

pub use crate::report::progress::Spinner;

/// The real API client, with the token from wherever the user keeps it.
pub async fn connect() -> Result<Hetzner, Failure> {
    let (token, source) = credentials::resolve().await?;
    tracing::debug!(source = %source, "Hetzner token");
    Ok(Hetzner::new(&token)?)
}

/// The server by id (it must exist).
pub async fn server(cloud: &impl Cloud, id: i64) -> Result<Server, Failure> {
    cloud.server(id).await?.ok_or_else(|| {
        Failure::new(
            Kind::NoServer,
            format!("server {id} does not exist"),
            "`pantheros provision list`",
        )
    })
}

/// The server pantheros created for `host`; a foreign one is an error.
pub async fn our_server(cloud: &impl Cloud, host: &str) -> Result<Server, Failure> {
    match cloud.server_named(host).await? {
        Some(s) if s.is_ours(host) => Ok(s),
        Some(_) => Err(foreign(host)),
        None => Err(Failure::new(
            Kind::NoServer,
            format!("there is no server named {host} in this Hetzner project"),
            format!("create it with `pantheros provision create {host}`"),
        )),
    }
}

fn foreign(host: &str) -> Failure {
    Failure::new(
        Kind::ForeignServer,
        format!(
            "a server named {host} exists in this project, but pantheros did not create it (labels {LABEL_MANAGED}=pantheros, {LABEL_HOST}={host} are missing)"
        ),
        "rename or delete that server in the Cloud Console, or add those labels if it is really this host",
    )
}
