//! The Hetzner Cloud API through the `hcloud` crate: a client with
//! timeouts, hcloud-go's retry policy, and errors that say which call
//! failed, Hetzner's message and code, and what to do — never the token.

use std::future::Future;
use std::time::Duration;

use hcloud::apis::configuration::Configuration;

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
