//! The SSH key a new server is created with: found in ~/.ssh (or given),
//! identified at Hetzner by its MD5 fingerprint, uploaded only if absent.

use super::Kind;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use base64::Engine;
use md5::{Digest, Md5};

use super::Failure;

#[derive(Debug, Clone)]
pub struct LocalKey {
    pub path: PathBuf,
    pub public_key: String,
    pub fingerprint: String,
    /// The file name without `.pub` (the upload's name).
    pub stem: String,
}

impl LocalKey {
    /// The private key next to the public one (pantheros logs in with it).
    pub fn private_key(&self) -> Result<PathBuf, Failure> {
        let p = self.path.with_extension("");
        if p.exists() {
            return Ok(p);
        }
        Err(Failure::new(
            Kind::SshKey,
            format!(
                "the private key for {} is not next to it",
                self.path.display()
            ),
            "pass --ssh-key with a public key whose private key is in the same directory",
        ))
    }
}

/// Hetzner's fingerprint: MD5 of the key blob, as aa:bb:… hex.
pub fn fingerprint(public_key: &str) -> Option<String> {
    let blob = public_key.split_whitespace().nth(1)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    let digest = Md5::digest(&bytes);
    Some(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

pub fn load(path: &Path) -> Result<LocalKey, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            Kind::SshKey,
            format!("reading {}: {e}", path.display()),
            "pass a readable public key with --ssh-key",
        )
    })?;
    let public_key = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    let fingerprint = fingerprint(&public_key).ok_or_else(|| {
        Failure::new(
            Kind::SshKey,
            format!("{} is not an OpenSSH public key", path.display()),
            "pass the .pub file (e.g. ~/.ssh/id_ed25519.pub)",
        )
    })?;
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".pub").to_string())
        .unwrap_or_else(|| "pantheros".into());
    Ok(LocalKey {
        path: path.to_path_buf(),
        public_key,
        fingerprint,
        stem,
    })
}

pub fn ssh_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".ssh")
}

/// `--ssh-key`, or the one key in ~/.ssh, or the user's pick of several.
pub fn choose(given: Option<&Path>) -> Result<LocalKey, Failure> {
    if let Some(p) = given {
        return load(p);
    }
    let dir = ssh_dir();
    let mut keys: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pub"))
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    match keys.len() {
        0 => Err(Failure::new(
            Kind::SshKey,
            format!(
                "no SSH public key in {}; no server was created",
                dir.display()
            ),
            "create one with `ssh-keygen -t ed25519`, or pass --ssh-key PATH",
        )),
        1 => load(&keys[0]),
        _ => {
            if !std::io::stdin().is_terminal() {
                return Err(Failure::new(
                    Kind::SshKey,
                    format!(
                        "several SSH keys in {}: {}",
                        dir.display(),
                        keys.iter()
                            .map(|k| k.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    "choose one with --ssh-key PATH",
                ));
            }
            let items: Vec<String> = keys.iter().map(|k| k.display().to_string()).collect();
            let pick = dialoguer::Select::new()
                .with_prompt("Which SSH key should the server trust?")
                .items(&items)
                .default(0)
                .interact()
                .map_err(|e| {
                    Failure::new(
                        Kind::SshKey,
                        format!("reading the choice: {e}"),
                        "pass --ssh-key PATH",
                    )
                })?;
            load(&keys[pick])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_ssh_keygen_md5() {
        // `ssh-keygen -E md5 -lf` of this key prints MD5:92:60:c7:79:…
        let k =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBpT1cQrCn7SMLGfTrDcN8r1SAsKpbkslx4EuvIRMvxI t";
        assert_eq!(
            fingerprint(k).unwrap(),
            "92:60:c7:79:79:ca:8b:8f:b7:ac:a1:f7:6c:db:3d:41"
        );
        assert!(fingerprint("not a key").is_none());
    }
}
