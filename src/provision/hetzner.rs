//! The Hetzner Cloud API through the `hcloud` crate: a client with
//! timeouts, hcloud-go's retry policy, and errors that say which call
//! failed, Hetzner's message and code, and what to do — never the token.

use std::future::Future;
use std::time::Duration;

use hcloud::apis::configuration::Configuration;
use hcloud::apis::{
    actions_api, images_api, isos_api, server_types_api, servers_api, ssh_keys_api,
};
use hcloud::models;

pub use super::cloud::ApiError;

/// The API base the crate is generated for; `HCLOUD_ENDPOINT` maps it elsewhere.
pub const API_BASE: &str = "https://api.hetzner.cloud/v1";

/// An API token. It has no Display; Debug never shows it.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(s: impl Into<String>) -> Token {
        Token(s.into().trim().to_string())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// How long to wait between retries: exponential from `base`, ×2, capped
/// at 60 s, with full jitter (hcloud-go's policy).
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.min(16))
        .min(Duration::from_secs(60));
    let ms = exp.as_millis() as u64;
    Duration::from_millis(if ms == 0 { 0 } else { fastrand::u64(0..=ms) })
}

pub struct Hetzner {
    pub config: Configuration,
    /// Retries after the first attempt (hcloud-go: 5).
    pub retries: u32,
    pub backoff_base: Duration,
    pub poll: Duration,
}

impl Hetzner {
    /// A client for `token`; `HCLOUD_ENDPOINT` (as in the hcloud CLI and the
    /// Terraform provider) points it at another base URL.
    pub fn new(token: &Token) -> Result<Hetzner, ApiError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("pantheros/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError {
                call: "creating the HTTP client".into(),
                status: None,
                code: "client".into(),
                message: e.to_string(),
                details: None,
            })?;
        let mut config = Configuration::new();
        config.client = client;
        config.user_agent = Some(concat!("pantheros/", env!("CARGO_PKG_VERSION")).into());
        config.bearer_access_token = Some(token.expose().to_string());
        if let Ok(endpoint) = std::env::var("HCLOUD_ENDPOINT") {
            config.base_path_mapping.insert(
                API_BASE.to_string(),
                endpoint.trim_end_matches('/').to_string(),
            );
        }
        let ms = |var: &str, default: u64| {
            std::env::var(var)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_millis(default))
        };
        Ok(Hetzner {
            config,
            retries: 5,
            backoff_base: ms("PANTHEROS_HCLOUD_BACKOFF_MS", 1000),
            poll: ms("PANTHEROS_HCLOUD_POLL_MS", 500),
        })
    }

    /// Run one API call with retries on `conflict`, `rate_limit_exceeded`,
    /// 502/504 and network timeouts. `retry_all` is false for calls that
    /// must not simply be repeated (a POST that may have taken effect):
    /// those retry only what Hetzner guarantees did nothing (429, conflict).
    pub async fn call<T, E, F, Fut>(&self, call: &str, retry_all: bool, f: F) -> Result<T, ApiError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, hcloud::apis::Error<E>>>,
    {
        let mut attempt = 0;
        loop {
            let err = match f().await {
                Ok(v) => return Ok(v),
                Err(e) => classify(call, e),
            };
            let retryable = match (err.status, err.code.as_str()) {
                (_, "rate_limit_exceeded") | (_, "conflict") => true,
                (Some(502), _)
                | (Some(504), _)
                | (_, "bad_gateway")
                | (_, "timeout")
                | (_, "network") => retry_all,
                _ => false,
            };
            if !retryable || attempt >= self.retries {
                return Err(err);
            }
            let wait = backoff(self.backoff_base, attempt);
            tracing::debug!(call, code = %err.code, attempt, wait_ms = wait.as_millis() as u64, "retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// A server as pantheros sees it.
fn server_of(s: hcloud::models::Server) -> super::cloud::Server {
    let status = serde_json::to_value(s.status)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| format!("{:?}", s.status).to_lowercase());
    super::cloud::Server {
        id: s.id,
        status,
        ipv4: s.public_net.ipv4.as_ref().map(|i| i.ip.clone()),
        ipv6: s.public_net.ipv6.as_ref().map(|i| i.ip.clone()),
        labels: s.labels,
        iso_attached: s.iso.is_some(),
        server_type: s.server_type.name,
        location: s.location.name,
        name: s.name,
    }
}

impl super::cloud::Cloud for Hetzner {
    fn poll(&self) -> Duration {
        self.poll
    }

    fn retries(&self) -> u32 {
        self.retries
    }

    fn backoff(&self, attempt: u32) -> Duration {
        backoff(self.backoff_base, attempt)
    }

    async fn server_named(&self, name: &str) -> Result<Option<super::cloud::Server>, ApiError> {
        let params = servers_api::ListServersParams {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let r = self
            .call("GET /v1/servers?name=…", true, || {
                servers_api::list_servers(&self.config, params.clone())
            })
            .await?;
        Ok(r.servers.into_iter().next().map(server_of))
    }

    async fn server(&self, id: i64) -> Result<Option<super::cloud::Server>, ApiError> {
        let params = servers_api::GetServerParams { id };
        let r = self
            .call(&format!("GET /v1/servers/{id}"), true, || {
                servers_api::get_server(&self.config, params.clone())
            })
            .await?;
        Ok(r.server.map(|s| server_of(*s)))
    }

    async fn servers_labelled(
        &self,
        selector: &str,
    ) -> Result<Vec<super::cloud::Server>, ApiError> {
        let params = servers_api::ListServersParams {
            label_selector: Some(selector.to_string()),
            per_page: Some(50),
            ..Default::default()
        };
        let r = self
            .call("GET /v1/servers?label_selector=…", true, || {
                servers_api::list_servers(&self.config, params.clone())
            })
            .await?;
        Ok(r.servers.into_iter().map(server_of).collect())
    }

    async fn create_server(
        &self,
        new: &super::cloud::NewServer,
    ) -> Result<super::cloud::Started, ApiError> {
        let mut req = models::CreateServerRequest::new(
            new.image.clone(),
            new.name.clone(),
            new.server_type.clone(),
        );
        req.location = Some(new.location.clone());
        req.labels = Some(new.labels.clone());
        req.ssh_keys = new.ssh_key.map(|id| vec![id.to_string()]);
        if new.ipv6_only {
            req.public_net = Some(Box::new(models::CreateServerRequestPublicNet {
                enable_ipv4: Some(false),
                enable_ipv6: Some(true),
                ..models::CreateServerRequestPublicNet::new()
            }));
        }
        req.start_after_create = Some(true);
        let params = servers_api::CreateServerParams {
            create_server_request: req,
        };
        // Not simply repeated: the request may have taken effect.
        let r = self
            .call("POST /v1/servers", false, || {
                servers_api::create_server(&self.config, params.clone())
            })
            .await?;
        let mut actions = vec![r.action.id];
        actions.extend(r.next_actions.iter().map(|a| a.id));
        Ok(super::cloud::Started {
            server: r.server.id,
            actions,
        })
    }

    async fn delete_server(&self, id: i64) -> Result<Option<i64>, ApiError> {
        let params = servers_api::DeleteServerParams { id };
        let r = self
            .call(&format!("DELETE /v1/servers/{id}"), true, || {
                servers_api::delete_server(&self.config, params.clone())
            })
            .await?;
        Ok(r.action.map(|a| a.id))
    }

    async fn action(&self, id: i64) -> Result<super::cloud::Action, ApiError> {
        use super::cloud::ActionState;
        let params = actions_api::GetActionParams { id };
        let a = self
            .call(&format!("GET /v1/actions/{id}"), true, || {
                actions_api::get_action(&self.config, params.clone())
            })
            .await?
            .action;
        let state = match a.status {
            models::action::Status::Success => ActionState::Success,
            models::action::Status::Running => ActionState::Running {
                progress: a.progress.into(),
            },
            models::action::Status::Error => {
                let (code, message) = a
                    .error
                    .map(|e| (e.code, e.message))
                    .unwrap_or_else(|| ("action_failed".into(), "the action failed".into()));
                ActionState::Error { code, message }
            }
        };
        Ok(super::cloud::Action {
            id: a.id,
            command: a.command,
            state,
        })
    }

    async fn ssh_key_with_fingerprint(&self, fingerprint: &str) -> Result<Option<i64>, ApiError> {
        let params = ssh_keys_api::ListSshKeysParams {
            fingerprint: Some(fingerprint.to_string()),
            ..Default::default()
        };
        let r = self
            .call("GET /v1/ssh_keys?fingerprint=…", true, || {
                ssh_keys_api::list_ssh_keys(&self.config, params.clone())
            })
            .await?;
        Ok(r.ssh_keys.into_iter().next().map(|k| k.id))
    }

    async fn create_ssh_key(
        &self,
        name: &str,
        public_key: &str,
        labels: &std::collections::HashMap<String, String>,
    ) -> Result<i64, ApiError> {
        let params = ssh_keys_api::CreateSshKeyParams {
            create_ssh_key_request: models::CreateSshKeyRequest {
                labels: Some(labels.clone()),
                name: name.to_string(),
                public_key: public_key.to_string(),
            },
        };
        let r = self
            .call("POST /v1/ssh_keys", false, || {
                ssh_keys_api::create_ssh_key(&self.config, params.clone())
            })
            .await?;
        Ok(r.ssh_key.id)
    }

    async fn server_type(&self, name: &str) -> Result<Option<super::cloud::ServerType>, ApiError> {
        let params = server_types_api::ListServerTypesParams {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let r = self
            .call("GET /v1/server_types?name=…", true, || {
                server_types_api::list_server_types(&self.config, params.clone())
            })
            .await?;
        Ok(r.server_types.into_iter().next().map(server_type))
    }

    async fn server_types(&self) -> Result<Vec<super::cloud::ServerType>, ApiError> {
        let params = server_types_api::ListServerTypesParams {
            per_page: Some(50),
            ..Default::default()
        };
        let r = self
            .call("GET /v1/server_types", true, || {
                server_types_api::list_server_types(&self.config, params.clone())
            })
            .await?;
        Ok(r.server_types.into_iter().map(server_type).collect())
    }

    async fn image_exists(&self, name: &str, architecture: &str) -> Result<bool, ApiError> {
        let params = images_api::ListImagesParams {
            name: Some(name.to_string()),
            architecture: Some(architecture.to_string()),
            ..Default::default()
        };
        let r = self
            .call("GET /v1/images?name=…", true, || {
                images_api::list_images(&self.config, params.clone())
            })
            .await?;
        Ok(!r.images.is_empty())
    }

    async fn iso_exists(&self, name: &str) -> Result<bool, ApiError> {
        let params = isos_api::ListIsosParams {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let r = self
            .call("GET /v1/isos?name=…", true, || {
                isos_api::list_isos(&self.config, params.clone())
            })
            .await?;
        Ok(!r.isos.is_empty())
    }

    async fn attach_iso(&self, server: i64, iso: &str) -> Result<i64, ApiError> {
        let params = servers_api::AttachIsoToServerParams {
            id: server,
            attach_iso_to_server_request: models::AttachIsoToServerRequest {
                iso: iso.to_string(),
            },
        };
        let r = self
            .call(
                &format!("POST /v1/servers/{server}/actions/attach_iso"),
                true,
                || servers_api::attach_iso_to_server(&self.config, params.clone()),
            )
            .await?;
        Ok(r.action.id)
    }

    async fn detach_iso(&self, server: i64) -> Result<i64, ApiError> {
        let params = servers_api::DetachIsoFromServerParams { id: server };
        let r = self
            .call(
                &format!("POST /v1/servers/{server}/actions/detach_iso"),
                true,
                || servers_api::detach_iso_from_server(&self.config, params.clone()),
            )
            .await?;
        Ok(r.action.id)
    }

    async fn enable_rescue(
        &self,
        server: i64,
        ssh_key: Option<i64>,
    ) -> Result<Option<i64>, ApiError> {
        let params = servers_api::EnableRescueModeForServerParams {
            id: server,
            enable_rescue_mode_for_server_request: models::EnableRescueModeForServerRequest {
                ssh_keys: ssh_key.map(|id| vec![id]),
                r#type: Some(models::enable_rescue_mode_for_server_request::Type::Linux64),
            },
        };
        let r = self
            .call(
                &format!("POST /v1/servers/{server}/actions/enable_rescue"),
                true,
                || servers_api::enable_rescue_mode_for_server(&self.config, params.clone()),
            )
            .await?;
        Ok(r.action.map(|a| a.id))
    }

    async fn reset(&self, server: i64) -> Result<i64, ApiError> {
        let params = servers_api::ResetServerParams { id: server };
        let r = self
            .call(
                &format!("POST /v1/servers/{server}/actions/reset"),
                true,
                || servers_api::reset_server(&self.config, params.clone()),
            )
            .await?;
        Ok(r.action.id)
    }
}

/// Turn the crate's error into ours, with Hetzner's code and message.
pub fn classify<E>(call: &str, e: hcloud::apis::Error<E>) -> ApiError {
    use hcloud::apis::Error;
    match e {
        Error::ResponseError(rc) => {
            let parsed: Option<hcloud::models::ErrorResponse> =
                serde_json::from_str(&rc.content).ok();
            let (code, message, details) = match parsed {
                Some(p) => (p.error.code, p.error.message, p.error.details.flatten()),
                None => (
                    format!("http_{}", rc.status.as_u16()),
                    rc.content.chars().take(200).collect(),
                    None,
                ),
            };
            ApiError {
                call: call.into(),
                status: Some(rc.status.as_u16()),
                code,
                message,
                details,
            }
        }
        Error::Reqwest(re) => ApiError {
            call: call.into(),
            status: re.status().map(|s| s.as_u16()),
            code: if re.is_timeout() {
                "timeout".into()
            } else {
                "network".into()
            },
            // reqwest's message names the URL (no token in it: it travels in a header).
            message: re.to_string(),
            details: None,
        },
        Error::Serde(se) => ApiError {
            call: call.into(),
            status: None,
            code: "api_changed".into(),
            message: format!("the answer did not match the API this pantheros knows: {se}"),
            details: None,
        },
        Error::Io(io) => ApiError {
            call: call.into(),
            status: None,
            code: "network".into(),
            message: io.to_string(),
            details: None,
        },
    }
}

/// The API's server type as pantheros' own.
fn server_type(t: models::ServerType) -> super::cloud::ServerType {
    let dep = |d: &models::DeprecationInfo| super::cloud::Deprecation {
        announced: d.announced.clone(),
        unavailable_after: d.unavailable_after.clone(),
    };
    super::cloud::ServerType {
        architecture: match t.architecture {
            models::Architecture::Arm => "arm".into(),
            models::Architecture::X86 => "x86".into(),
        },
        deprecation: match &t.deprecation {
            Some(Some(d)) => Some(dep(d)),
            // The old boolean without the object: no date is known.
            _ if t.deprecated.unwrap_or(false) => Some(super::cloud::Deprecation {
                announced: String::new(),
                unavailable_after: String::new(),
            }),
            _ => None,
        },
        offers: t
            .locations
            .iter()
            .map(|l| super::cloud::Offer {
                location: l.name.clone(),
                deprecation: l.deprecation.as_deref().map(dep),
            })
            .collect(),
        name: t.name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_is_redacted() {
        let t = Token::new("valid-secret-123\n");
        assert_eq!(t.expose(), "valid-secret-123");
        assert!(!format!("{t:?}").contains("secret"));
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        for attempt in 0..10 {
            let d = backoff(Duration::from_secs(1), attempt);
            assert!(d <= Duration::from_secs(60));
            assert!(d <= Duration::from_secs(1 << attempt));
        }
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
    }

    #[test]
    fn invalid_input_hint_names_fields() {
        let e = ApiError {
            call: "POST /v1/servers".into(),
            status: Some(422),
            code: "invalid_input".into(),
            message: "invalid input".into(),
            details: Some(
                serde_json::json!({"fields": [{"name": "location", "messages": ["unsupported location for server type"]}]}),
            ),
        };
        assert_eq!(
            e.to_string(),
            "POST /v1/servers failed: invalid input (invalid_input, HTTP 422)"
        );
        assert!(
            e.hint()
                .contains("location: unsupported location for server type")
        );
    }
}
