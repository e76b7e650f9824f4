//! Stage: the host's secrets (`pantheros.deployment.keys`), read on the
//! deployer and written on the host, never through the Nix store.
//!
//! [`read`] runs before any host's pipeline starts, one key at a time, with
//! the terminal left to key commands (a `pass`/gpg passphrase prompt), and
//! turns each source into a [`Key`] whose value only ever travels on the
//! stdin of one SSH command over the host's master connection. [`upload`]
//! first checks every owner and group on the host, then writes each key
//! atomically (key-write.sh). Values never reach an argument, the
//! environment, a log, `--json` or an error: only names, paths, owners,
//! modes and sizes do.

use std::time::Duration;

use serde::Serialize;

use super::StageError;
use crate::host::Session;
use crate::host::protocol::exits;
use crate::host::scripts;
use crate::inventory::{Host, KeySpec, UploadAt};

/// How long a key command may run (a passphrase prompt included).
pub const KEY_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// A key's value. Its Debug form shows only its size.
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<secret, {} bytes>", self.0.len())
    }
}

/// One key, read and ready to upload.
#[derive(Debug)]
pub struct Key {
    /// The attribute name under `keys`.
    pub name: String,
    /// The file name in `dir`.
    pub file: String,
    pub dir: String,
    pub user: String,
    pub group: String,
    pub mode: String,
    pub at: UploadAt,
    value: Secret,
}

impl Key {
    pub fn path(&self) -> String {
        format!("{}/{}", self.dir.trim_end_matches('/'), self.file)
    }
}

/// What was written, for the summary and `--json` (no value, no digest:
/// a digest of a short secret gives it away).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Uploaded {
    pub name: String,
    pub path: String,
    pub user: String,
    pub group: String,
    pub mode: String,
    pub size: u64,
}

fn bad(name: &str, what: impl std::fmt::Display) -> StageError {
    StageError::new(format!("key `{name}`: {what}")).hint(format!(
        "fix pantheros.deployment.keys.{name}; nothing was changed on the host"
    ))
}

fn safe_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

/// Check one key's declaration (the module checks the same; a flake that
/// sets `pantheros.deployment` without the module gets it here).
pub fn check(name: &str, spec: &KeySpec) -> Result<(), StageError> {
    match (&spec.key_file, &spec.key_command) {
        (Some(_), Some(_)) => return Err(bad(name, "has both keyFile and keyCommand; give one")),
        (None, None) => return Err(bad(name, "has no source: give keyFile or keyCommand")),
        (None, Some(argv)) if argv.is_empty() => {
            return Err(bad(name, "keyCommand is empty"));
        }
        (Some(f), None) if !f.starts_with('/') => {
            return Err(bad(
                name,
                format!("keyFile must be an absolute path on this machine, not {f:?}"),
            ));
        }
        _ => {}
    }
    let file = spec.name.as_deref().unwrap_or(name);
    if !safe_word(file) || file.starts_with('.') {
        return Err(bad(
            name,
            format!(
                "the file name {file:?} must be letters, digits, '-', '_', '.', '@' and not start with '.'"
            ),
        ));
    }
    if !spec.dest_dir.starts_with('/') || spec.dest_dir.contains("..") {
        return Err(bad(
            name,
            format!("destDir must be an absolute path, not {:?}", spec.dest_dir),
        ));
    }
    let octal = spec.permissions.len() == 3 || spec.permissions.len() == 4;
    if !octal || !spec.permissions.chars().all(|c| ('0'..='7').contains(&c)) {
        return Err(bad(
            name,
            format!(
                "permissions must be octal like \"0600\", not {:?}",
                spec.permissions
            ),
        ));
    }
    for (what, v) in [("user", &spec.user), ("group", &spec.group)] {
        if !safe_word(v) {
            return Err(bad(name, format!("{what} {v:?} is not a valid name")));
        }
    }
    Ok(())
}

/// Where a key's value comes from, for messages (never the value).
pub fn source_of(spec: &KeySpec) -> String {
    match (&spec.key_file, &spec.key_command) {
        (Some(f), _) => format!("keyFile {f}"),
        (None, Some(argv)) => format!("keyCommand `{}`", shell_words::join(argv)),
        (None, None) => "no source".into(),
    }
}

async fn run_key_command(name: &str, argv: &[String]) -> Result<Vec<u8>, StageError> {
    let shown = shell_words::join(argv);
    let fail = |how: String| {
        StageError::new(format!("key `{name}`: its keyCommand `{shown}` {how}")).hint(
            "run the command yourself to see why (its own messages are above); nothing was changed on the host",
        )
    };
    // stdin and stderr stay the terminal's, for a passphrase prompt;
    // stdout is the value.
    let child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("could not start: {e}")))?;
    let out = match tokio::time::timeout(KEY_COMMAND_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(fail(format!("could not be read: {e}"))),
        Err(_) => {
            return Err(fail(format!(
                "timed out after {}s and was killed",
                KEY_COMMAND_TIMEOUT.as_secs()
            )));
        }
    };
    if !out.status.success() {
        let how = match out.status.code() {
            Some(c) => format!("failed with exit status {c}"),
            None => "was killed by a signal".into(),
        };
        return Err(fail(how));
    }
    Ok(out.stdout)
}

/// Read every key of `host` on the deployer, in name order. The first
/// problem fails the host (naming the key and its source), before anything
/// on it changes.
pub async fn read(host: &Host) -> Result<Vec<Key>, StageError> {
    let mut keys = vec![];
    for (name, spec) in &host.deployment.keys {
        check(name, spec)?;
        let value = match (&spec.key_file, &spec.key_command) {
            (Some(f), _) => std::fs::read(f).map_err(|e| {
                StageError::new(format!("key `{name}`: cannot read its keyFile {f}: {e}")).hint(
                    "create the file (or fix the path) on this machine; nothing was changed on the host",
                )
            })?,
            (None, Some(argv)) => run_key_command(name, argv).await?,
            (None, None) => unreachable!("checked above"),
        };
        keys.push(Key {
            name: name.clone(),
            file: spec.name.clone().unwrap_or_else(|| name.clone()),
            dir: spec.dest_dir.clone(),
            user: spec.user.clone(),
            group: spec.group.clone(),
            mode: spec.permissions.clone(),
            at: spec.upload_at,
            value: Secret(value),
        });
    }
    Ok(keys)
}

/// Upload the keys of `keys` that are due `at` (all of them with None):
/// check owners and groups in one command, then one command per key, all
/// over the host's master connection. No keys due: no command at all.
pub async fn upload(
    s: &Session,
    keys: &[Key],
    at: Option<UploadAt>,
) -> Result<Vec<Uploaded>, StageError> {
    let due: Vec<&Key> = keys
        .iter()
        .filter(|k| at.is_none_or(|a| k.at == a))
        .collect();
    if due.is_empty() {
        return Ok(vec![]);
    }
    let check = s
        .target
        .root_script(
            &scripts::KEYS_CHECK,
            &scripts::keys_check_args(due.iter().map(|k| (k.user.as_str(), k.group.as_str()))),
        )
        .timeout(Duration::from_secs(60));
    let out = s
        .run(&check)
        .await
        .map_err(|f| StageError::cmd("could not check the keys' owners on the host", f))?;
    match out.code {
        Some(0) => {}
        Some(exits::KEY_OWNER) => {
            let missing: Vec<&str> = out
                .stdout
                .lines()
                .filter_map(|l| l.strip_prefix("MISSING "))
                .collect();
            let owners: Vec<String> = due
                .iter()
                .map(|k| format!("{} ({}:{})", k.name, k.user, k.group))
                .collect();
            return Err(StageError::new(format!(
                "keys: {} missing on {}; keys and owners: {}. No key was written",
                missing.join(", "),
                &s.name,
                owners.join(", ")
            ))
            .hint(
                "an owner that the new system creates does not exist before its activation: \
                 give that key `uploadAt = \"post-activation\"`, or own it by an existing user",
            ));
        }
        _ => {
            return Err(StageError::cmd(
                "checking the keys' owners failed on the host",
                crate::runner::failure_of(&check, &out),
            ));
        }
    }
    let mut uploaded = vec![];
    for k in due {
        let cmd = s
            .target
            .root_script_with_input(
                &scripts::KEY_WRITE,
                &scripts::key_write_args(&k.dir, &k.file, &k.user, &k.group, &k.mode),
                &k.value.0,
            )
            .timeout(Duration::from_secs(120));
        let out = s.run_ok(&cmd).await.map_err(|f| {
            StageError::cmd(
                format!("writing key `{}` to {} failed", k.name, k.path()),
                f,
            )
        })?;
        let size = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("KEY "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(k.value.0.len() as u64);
        s.log.note(&format!(
            "key {}: {} ({}:{} {}, {size} bytes)",
            k.name,
            k.path(),
            k.user,
            k.group,
            k.mode
        ));
        uploaded.push(Uploaded {
            name: k.name.clone(),
            path: k.path(),
            user: k.user.clone(),
            group: k.group.clone(),
            mode: k.mode.clone(),
            size,
        });
    }
    s.say(&format!(
        "uploaded {} key{}: {}",
        uploaded.len(),
        if uploaded.len() == 1 { "" } else { "s" },
        uploaded
            .iter()
            .map(|u| u.path.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(uploaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(f: impl FnOnce(&mut KeySpec)) -> KeySpec {
        let mut s = KeySpec {
            key_file: Some("/home/me/secret".into()),
            ..Default::default()
        };
        f(&mut s);
        s
    }

    #[test]
    fn a_key_needs_exactly_one_source() {
        assert!(check("k", &spec(|_| {})).is_ok());
        let both = spec(|s| s.key_command = Some(vec!["pass".into()]));
        assert!(check("k", &both).unwrap_err().message.contains("both"));
        let none = spec(|s| s.key_file = None);
        assert!(check("k", &none).unwrap_err().message.contains("no source"));
        let empty = spec(|s| {
            s.key_file = None;
            s.key_command = Some(vec![]);
        });
        assert!(check("k", &empty).unwrap_err().message.contains("empty"));
    }

    #[test]
    fn names_modes_and_owners_are_checked() {
        let rel = spec(|s| s.key_file = Some("secret".into()));
        assert!(check("k", &rel).unwrap_err().message.contains("absolute"));
        let slash = spec(|s| s.name = Some("../etc/passwd".into()));
        assert!(check("k", &slash).is_err());
        let hidden = spec(|s| s.name = Some(".x".into()));
        assert!(check("k", &hidden).is_err());
        let mode = spec(|s| s.permissions = "0800".into());
        assert!(check("k", &mode).unwrap_err().message.contains("octal"));
        let user = spec(|s| s.user = "a b".into());
        assert!(check("k", &user).unwrap_err().message.contains("user"));
        let dir = spec(|s| s.dest_dir = "/run/../etc".into());
        assert!(check("k", &dir).is_err());
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let k = Key {
            name: "k".into(),
            file: "k".into(),
            dir: "/run/keys".into(),
            user: "root".into(),
            group: "root".into(),
            mode: "0600".into(),
            at: UploadAt::PreActivation,
            value: Secret(b"hunter2".to_vec()),
        };
        let shown = format!("{k:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("7 bytes"));
        assert_eq!(k.path(), "/run/keys/k");
    }

    #[test]
    fn sources_are_named_without_values() {
        let c = spec(|s| {
            s.key_file = None;
            s.key_command = Some(vec!["pass".into(), "show".into(), "a b".into()]);
        });
        assert_eq!(source_of(&c), "keyCommand `pass show 'a b'`");
    }
}
