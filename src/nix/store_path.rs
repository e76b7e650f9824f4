//! Store path names, parsed the way Nix itself splits them.
//!
//! `/nix/store/<32-char hash>-<name>`, where the name splits into a package
//! name and a version at the first `-` that is followed by a digit (the rule
//! of `builtins.parseDrvName`). The crate `nix-compat` would be the natural
//! library, but the crates.io release is an empty placeholder, so this small,
//! fully tested parser lives here.

use std::fmt;

pub const HASH_LEN: usize = 32;
const NIX32: &str = "0123456789abcdfghijklmnpqrsvwxyz";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath {
    pub store_dir: String,
    pub hash: String,
    pub name: String,
}

impl StorePath {
    /// Parse an absolute store path (a trailing sub-path is not allowed).
    pub fn parse(path: &str) -> Option<StorePath> {
        let path = path.trim_end_matches('/');
        let (dir, base) = path.rsplit_once('/')?;
        if dir.is_empty() || !dir.starts_with('/') {
            return None;
        }
        if base.len() < HASH_LEN + 2 || !base.is_char_boundary(HASH_LEN) {
            return None;
        }
        let (hash, rest) = base.split_at(HASH_LEN);
        let name = rest.strip_prefix('-')?;
        if !hash.chars().all(|c| NIX32.contains(c)) || name.is_empty() {
            return None;
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-._?=".contains(c))
            || name.starts_with('.')
        {
            return None;
        }
        Some(StorePath {
            store_dir: dir.to_string(),
            hash: hash.to_string(),
            name: name.to_string(),
        })
    }

    /// (package name, version): version is empty when the name has none.
    pub fn name_version(&self) -> (&str, &str) {
        split_name_version(&self.name)
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}-{}", self.store_dir, self.hash, self.name)
    }
}

/// Split like `builtins.parseDrvName`: the version starts after the first
/// dash that is followed by something other than a letter.
pub fn split_name_version(name: &str) -> (&str, &str) {
    let bytes = name.as_bytes();
    for i in 0..bytes.len() {
        if bytes[i] == b'-' && i + 1 < bytes.len() && !bytes[i + 1].is_ascii_alphabetic() {
            return (&name[..i], &name[i + 1..]);
        }
    }
    (name, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_system_path() {
        let p = StorePath::parse(
            "/nix/store/srsb08idm9934vpzk3bcd5r8h90nwrb8-nixos-system-hetzner-vps-26.05.1",
        )
        .unwrap();
        assert_eq!(p.store_dir, "/nix/store");
        assert_eq!(p.hash, "srsb08idm9934vpzk3bcd5r8h90nwrb8");
        assert_eq!(p.name_version(), ("nixos-system-hetzner-vps", "26.05.1"));
    }

    #[test]
    fn splits_like_parse_drv_name() {
        assert_eq!(split_name_version("hello-2.12"), ("hello", "2.12"));
        assert_eq!(split_name_version("openssh-9.9p2"), ("openssh", "9.9p2"));
        assert_eq!(split_name_version("etc"), ("etc", ""));
        assert_eq!(split_name_version("source"), ("source", ""));
        assert_eq!(
            split_name_version("python3.12-requests-2.32.3"),
            ("python3.12-requests", "2.32.3")
        );
        assert_eq!(
            split_name_version("unit-script-foo-start"),
            ("unit-script-foo-start", "")
        );
        assert_eq!(
            split_name_version("linux-6.12.10-modules"),
            ("linux", "6.12.10-modules")
        );
    }

    #[test]
    fn rejects_what_is_not_a_store_path() {
        assert!(StorePath::parse("/nix/store/short-x").is_none());
        assert!(StorePath::parse("nix/store/srsb08idm9934vpzk3bcd5r8h90nwrb8-x").is_none());
        assert!(
            StorePath::parse("/nix/store/srsb08idm9934vpzk3bcd5r8h90nwrbe-x").is_none(),
            "e is not nix32"
        );
        assert!(StorePath::parse("/nix/store/srsb08idm9934vpzk3bcd5r8h90nwrb8-").is_none());
        assert!(StorePath::parse("/nix/store/srsb08idm9934vpzk3bcd5r8h90nwrb8-a b").is_none());
    }

    #[test]
    fn custom_store_dir_and_trailing_slash() {
        let p =
            StorePath::parse("/tmp/s/nix/store/srsb08idm9934vpzk3bcd5r8h90nwrb8-x-1.0/").unwrap();
        assert_eq!(p.store_dir, "/tmp/s/nix/store");
        assert_eq!(
            p.to_string(),
            "/tmp/s/nix/store/srsb08idm9934vpzk3bcd5r8h90nwrb8-x-1.0"
        );
    }
}
