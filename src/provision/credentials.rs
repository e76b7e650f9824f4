//! The Hetzner API token: `HETZNER_API_TOKEN`, then `HCLOUD_TOKEN`, then
//! the hcloud CLI's own config (`$HCLOUD_CONFIG`, else
//! `~/.config/hcloud/cli.toml`: the context `$HCLOUD_CONTEXT` names, else
//! its active context), then pantheros' credentials file
//! (`$XDG_CONFIG_HOME/pantheros/hcloud-token`, mode 0600 in a 0700
//! directory), then a hidden prompt on a terminal. A token file others can
//! read is refused. A prompted token is checked with one API call before it
//! is saved; an invalid one is never saved.

use super::Kind;
use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::Failure;
use super::hetzner::{Hetzner, Token};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Env(&'static str),
    /// A context of the hcloud CLI's config file.
    HcloudContext {
        name: String,
        file: PathBuf,
    },
    File(PathBuf),
    Prompt,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Env(v) => write!(f, "${v}"),
            Source::HcloudContext { name, file } => {
                write!(f, "the hcloud CLI context {name:?} ({})", file.display())
            }
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Prompt => f.write_str("the prompt"),
        }
    }
}

pub fn config_dir() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("/root/.config"))
        .join("pantheros")
}

pub fn token_file() -> PathBuf {
    config_dir().join("hcloud-token")
}

fn token_failure(message: String, hint: &str) -> Failure {
    Failure::new(Kind::Token, message, hint)
}

/// A token with whitespace or control characters inside cannot be sent as
/// an HTTP header: say so (where it came from), instead of failing later as
/// if the network were down.
fn checked(raw: &str, from: &str) -> Result<Token, Failure> {
    let t = Token::new(raw);
    if t.expose()
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(token_failure(
            format!(
                "the Hetzner API token in {from} contains a line break, space or control character"
            ),
            &format!(
                "set {from} again to the token alone (it was probably pasted with a line break)"
            ),
        ));
    }
    Ok(t)
}

/// The hcloud CLI's config file: `$HCLOUD_CONFIG`, else
/// `~/.config/hcloud/cli.toml` (its home-relative default, not XDG).
pub fn hcloud_config() -> Option<PathBuf> {
    std::env::var_os("HCLOUD_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/hcloud/cli.toml"))
        })
}

/// A token file must be the user's alone.
fn refuse_if_shared(file: &std::path::Path, meta: &std::fs::Metadata) -> Result<(), Failure> {
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(token_failure(
            format!(
                "{} is readable by others (mode {mode:04o}); refusing to use it",
                file.display()
            ),
            &format!(
                "run `chmod 600 {}` (and rotate the token if others could read it)",
                file.display()
            ),
        ));
    }
    Ok(())
}

/// The token of the hcloud CLI's selected context, if it has a config.
fn from_hcloud_cli() -> Result<Option<(Token, Source)>, Failure> {
    let Some(file) = hcloud_config() else {
        return Ok(None);
    };
    let Ok(meta) = std::fs::metadata(&file) else {
        return Ok(None);
    };
    refuse_if_shared(&file, &meta)?;
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(&file).map_err(|e| {
        token_failure(
            format!("reading the hcloud CLI's config {shown}: {e}"),
            "check the file's owner and permissions, or set HCLOUD_TOKEN",
        )
    })?;
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        token_failure(
            format!(
                "the hcloud CLI's config {shown} is not valid TOML: {}",
                e.message()
            ),
            "run `hcloud context list` to see what the hcloud CLI makes of it, or set HCLOUD_TOKEN",
        )
    })?;
    let chosen = std::env::var("HCLOUD_CONTEXT")
        .ok()
        .filter(|c| !c.is_empty())
        .map(|c| (c, "HCLOUD_CONTEXT"))
        .or_else(|| {
            doc.get("active_context")
                .and_then(|v| v.as_str())
                .filter(|c| !c.is_empty())
                .map(|c| (c.to_string(), "its active_context"))
        });
    let Some((name, why)) = chosen else {
        return Ok(None);
    };
    let contexts: Vec<&toml::Table> = doc
        .get("contexts")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|c| c.as_table()).collect())
        .unwrap_or_default();
    let context_name = |c: &toml::Table| c.get("name").and_then(|n| n.as_str()).map(String::from);
    let Some(ctx) = contexts
        .iter()
        .find(|c| context_name(c).as_deref() == Some(name.as_str()))
    else {
        let known: Vec<String> = contexts.iter().filter_map(|c| context_name(c)).collect();
        return Err(token_failure(
            format!(
                "{why} names the hcloud CLI context {name:?}, which {shown} does not have (it has: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
            "pick one with `hcloud context use NAME` or HCLOUD_CONTEXT=NAME, or set HCLOUD_TOKEN",
        ));
    };
    let token = ctx.get("token").and_then(|t| t.as_str()).unwrap_or("");
    if token.trim().is_empty() {
        let how = if ctx.contains_key("token_command") {
            "takes its token from a command (token_command), which pantheros does not run"
        } else {
            "has no token"
        };
        return Err(token_failure(
            format!("the hcloud CLI context {name:?} in {shown} {how}"),
            "set HCLOUD_TOKEN for pantheros (e.g. `export HCLOUD_TOKEN=$(your token command)`)",
        ));
    }
    let source = Source::HcloudContext { name, file };
    Ok(Some((checked(token, &source.to_string())?, source)))
}

/// Find the token without asking: environment, the hcloud CLI's config,
/// then pantheros' own file.
pub fn from_env_or_file() -> Result<Option<(Token, Source)>, Failure> {
    for var in ["HETZNER_API_TOKEN", "HCLOUD_TOKEN"] {
        if let Ok(v) = std::env::var(var) {
            if !v.trim().is_empty() {
                return Ok(Some((checked(&v, var)?, Source::Env(var))));
            }
        }
    }
    if let Some(found) = from_hcloud_cli()? {
        return Ok(Some(found));
    }
    let file = token_file();
    match std::fs::metadata(&file) {
        Ok(meta) => {
            refuse_if_shared(&file, &meta)?;
            let text = std::fs::read_to_string(&file).map_err(|e| {
                token_failure(
                    format!("reading {}: {e}", file.display()),
                    "check the file's owner and permissions",
                )
            })?;
            if text.trim().is_empty() {
                return Ok(None);
            }
            let t = checked(&text, &file.display().to_string())?;
            Ok(Some((t, Source::File(file))))
        }
        Err(_) => Ok(None),
    }
}

/// Save a token: the directory 0700, the file 0600, written whole or not at all.
pub fn save(token: &Token) -> Result<PathBuf, Failure> {
    let dir = config_dir();
    let fail = |what: String| token_failure(what, "check that the config directory is writable");
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| fail(format!("chmod 700 {}: {e}", dir.display())))?;
    let file = token_file();
    crate::report::file::write_atomic(&file, format!("{}\n", token.expose()).as_bytes(), 0o600)
        .map_err(|e| fail(format!("writing {}: {e}", file.display())))?;
    Ok(file)
}

/// Check a token with one read-only call (GET /v1/locations).
pub async fn validate(token: &Token) -> Result<(), super::hetzner::ApiError> {
    let h = Hetzner::new(token)?;
    let params = hcloud::apis::locations_api::ListLocationsParams {
        per_page: Some(1),
        ..Default::default()
    };
    h.call("GET /v1/locations", true, || {
        hcloud::apis::locations_api::list_locations(&h.config, params.clone())
    })
    .await
    .map(|_| ())
}

/// The token, from wherever it is; asks on a terminal as a last resort.
pub async fn resolve() -> Result<(Token, Source), Failure> {
    if let Some(found) = from_env_or_file()? {
        return Ok(found);
    }
    if !std::io::stdin().is_terminal() {
        return Err(token_failure(
            "no Hetzner API token: HETZNER_API_TOKEN and HCLOUD_TOKEN are unset, the hcloud CLI has no active context, and there is no saved token".into(),
            &format!(
                "create a token in the Hetzner Cloud Console (project → Security → API Tokens, Read & Write), \
                 then `export HCLOUD_TOKEN=…` or run pantheros on a terminal to save it in {}",
                token_file().display()
            ),
        ));
    }
    eprintln!("No Hetzner API token found.");
    eprintln!(
        "Create one at https://console.hetzner.cloud → your project → Security → API Tokens (Read & Write)."
    );
    let entered = dialoguer::Password::new()
        .with_prompt("Hetzner API token")
        .interact()
        .map_err(|e| {
            token_failure(
                format!("reading the token: {e}"),
                "run again on a terminal, or set HCLOUD_TOKEN",
            )
        })?;
    let token = Token::new(entered);
    if let Err(e) = validate(&token).await {
        return Err(Failure::api(
            Kind::Token,
            "the token was not saved: it does not work",
            e,
        ));
    }
    let path = save(&token)?;
    eprintln!("Token saved to {} (mode 0600).", path.display());
    Ok((token, Source::Prompt))
}
