//! The `nix` command line: locating it, its version, and the flags every call needs.

pub mod store_path;

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::runner::{self, Cmd};

/// Flakes and `nix eval --apply` need at least this version.
pub const MIN_VERSION: (u32, u32) = (2, 4);

/// A Nix (or Lix) installation.
#[derive(Debug, Clone)]
pub struct Nix {
    pub program: PathBuf,
}

impl Nix {
    /// Find `nix` on PATH (or `$PANTHEROS_NIX`).
    pub fn locate() -> Result<Self> {
        if let Some(p) = std::env::var_os("PANTHEROS_NIX") {
            return Ok(Nix {
                program: PathBuf::from(p),
            });
        }
        let program = which::which("nix").map_err(|_| Error::NixMissing)?;
        Ok(Nix { program })
    }

    /// A `nix` command with the flags every call needs. The experimental
    /// features are passed as `--extra-…`, which Nix 2.4 and later accept,
    /// and which is harmless where they are already enabled. Substituters
    /// are left to the user's nix.conf.
    pub fn cmd<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd::new([
            self.program.to_string_lossy().into_owned(),
            "--extra-experimental-features".into(),
            "nix-command flakes".into(),
        ])
        .args(args)
    }

    /// Run `nix --version` and check it is new enough. Called only when
    /// needed: the inventory reads the version from its one evaluation.
    pub async fn probe_version(&self) -> Result<String> {
        let cmd = Cmd::new([
            self.program.to_string_lossy().into_owned(),
            "--version".into(),
        ]);
        let out = runner::run_ok(&cmd).await.map_err(Error::Command)?;
        let v = out.stdout.trim().to_string();
        check_version(&v)?;
        Ok(v)
    }
}

/// Parse "nix (Nix) 2.8.0", "nix (Lix, like Nix) 2.91.1", "2.18.3-lix" or
/// "2.8.0pre20220311_d532269" into (major, minor).
pub fn parse_version(s: &str) -> Option<(u32, u32)> {
    let word = s
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let mut parts = word.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Fail with [`Error::NixTooOld`] when `s` names a version before [`MIN_VERSION`].
pub fn check_version(s: &str) -> Result<()> {
    match parse_version(s) {
        Some(v) if v >= MIN_VERSION => Ok(()),
        _ => Err(Error::NixTooOld {
            found: s
                .split_whitespace()
                .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
                .unwrap_or(s.trim())
                .to_string(),
            min: format!("{}.{}", MIN_VERSION.0, MIN_VERSION.1),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_nix_and_lix_parse() {
        assert_eq!(parse_version("nix (Nix) 2.8.0"), Some((2, 8)));
        assert_eq!(parse_version("nix (Lix, like Nix) 2.91.1"), Some((2, 91)));
        assert_eq!(parse_version("2.18.3-lix"), Some((2, 18)));
        assert_eq!(parse_version("2.8.0pre20220311_d532269"), Some((2, 8)));
        assert_eq!(parse_version("nix (Nix) 2.24.10"), Some((2, 24)));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn old_versions_are_refused() {
        assert!(check_version("nix (Nix) 2.8.0").is_ok());
        assert!(check_version("nix (Nix) 2.31.2").is_ok());
        assert!(matches!(
            check_version("nix-env (Nix) 2.3.16"),
            Err(Error::NixTooOld { .. })
        ));
        assert!(matches!(
            check_version("what"),
            Err(Error::NixTooOld { .. })
        ));
    }
}
