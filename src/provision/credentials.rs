//! The Hetzner API token: `HETZNER_API_TOKEN`, then `HCLOUD_TOKEN`, then
//! the credentials file (`$XDG_CONFIG_HOME/pantheros/hcloud-token`, mode
//! 0600 in a 0700 directory; a file others can read is refused), then a
//! hidden prompt on a terminal. A prompted token is checked with one API
//! call before it is saved; an invalid one is never saved.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use super::hetzner::{Hetzner, Token};
use super::{Failure, exit};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Env(&'static str),
    File(PathBuf),
    Prompt,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Env(v) => write!(f, "${v}"),
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
    Failure::new(exit::TOKEN, message, hint)
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

/// Find the token without asking: environment, then the file.
pub fn from_env_or_file() -> Result<Option<(Token, Source)>, Failure> {
    for var in ["HETZNER_API_TOKEN", "HCLOUD_TOKEN"] {
        if let Ok(v) = std::env::var(var) {
            if !v.trim().is_empty() {
                return Ok(Some((checked(&v, var)?, Source::Env(var))));
            }
        }
    }
    let file = token_file();
    match std::fs::metadata(&file) {
        Ok(meta) => {
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
    let tmp = dir.join(".hcloud-token.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail(format!("creating {}: {e}", tmp.display())))?;
    f.write_all(format!("{}\n", token.expose()).as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| fail(format!("writing {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, &file)
        .map_err(|e| fail(format!("renaming to {}: {e}", file.display())))?;
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
            "no Hetzner API token: HETZNER_API_TOKEN and HCLOUD_TOKEN are unset and there is no saved token".into(),
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
            exit::TOKEN,
            "the token was not saved: it does not work",
            e,
        ));
    }
    let path = save(&token)?;
    eprintln!("Token saved to {} (mode 0600).", path.display());
    Ok((token, Source::Prompt))
}
