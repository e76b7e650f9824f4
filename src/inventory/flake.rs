//! Finding the flake the user means.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A flake reference, as given to `nix`.
#[derive(Debug, Clone)]
pub struct FlakeRef {
    /// What is passed to nix before `#attr`.
    pub arg: String,
    /// The flake's directory when it is local.
    pub root: Option<PathBuf>,
}

impl FlakeRef {
    /// `REF#attr`.
    pub fn attr(&self, attr: &str) -> String {
        format!("{}#{}", self.arg, attr)
    }
}

impl std::fmt::Display for FlakeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.arg)
    }
}

/// Resolve `--flake REF` (default `.`). A URL-like reference (`github:…`,
/// `path:…`, `git+https://…`) is passed to nix as it is; a plain path is
/// searched upward for `flake.nix`, as colmena does, so that pantheros works
/// from any sub-directory of the flake.
pub fn resolve(reference: Option<&str>, cwd: &Path) -> Result<FlakeRef> {
    let reference = reference.unwrap_or(".");
    if is_url(reference) {
        return Ok(FlakeRef {
            arg: reference.to_string(),
            root: None,
        });
    }
    let start = cwd.join(reference);
    let start = start.canonicalize().map_err(|_| Error::FlakeNotFound {
        start: start.clone(),
    })?;
    let mut dir = if start.is_file() {
        start
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or(start.clone())
    } else {
        start.clone()
    };
    loop {
        if dir.join("flake.nix").is_file() {
            return Ok(FlakeRef {
                arg: dir.to_string_lossy().into_owned(),
                root: Some(dir),
            });
        }
        if !dir.pop() {
            return Err(Error::FlakeNotFound { start });
        }
    }
}

fn is_url(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && !scheme.contains('/')
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_references_pass_through() {
        for r in [
            "github:owner/repo",
            "path:/x",
            "git+https://example.org/r",
            "flake:nixpkgs",
        ] {
            let f = resolve(Some(r), Path::new("/")).unwrap();
            assert_eq!(f.arg, r);
            assert!(f.root.is_none());
        }
    }

    #[test]
    fn searches_upward_for_flake_nix() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("flake.nix"), "{ outputs = _: { }; }").unwrap();
        let sub = d.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        let f = resolve(None, &sub).unwrap();
        assert_eq!(f.root.unwrap(), d.path().canonicalize().unwrap());
    }

    #[test]
    fn no_flake_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        match resolve(None, d.path()) {
            Err(Error::FlakeNotFound { .. }) => {}
            other => panic!("{other:?}"),
        }
        match resolve(Some("does/not/exist"), d.path()) {
            Err(Error::FlakeNotFound { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
