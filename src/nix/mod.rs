//! The `nix` command line: locating it, its version, and the flags every call needs.

pub mod errors;
pub mod store_path;

use std::path::PathBuf;

use crate::cli::NixFlags;
use crate::error::{Error, Result};
use crate::runner::{self, Cmd};

/// Flakes and `nix eval --apply` need at least this version.
pub const MIN_VERSION: (u32, u32) = (2, 4);

/// A Nix (or Lix) installation, and the flags the user gave for it on
/// pantheros' command line (`--show-trace`, `--option`, …).
#[derive(Debug, Clone)]
pub struct Nix {
    pub program: PathBuf,
    pub flags: NixFlags,
}

impl Nix {
    /// Find `nix` on PATH (or `$PANTHEROS_NIX`); every command made from it
    /// carries `flags`.
    pub fn locate(flags: NixFlags) -> Result<Self> {
        let program = match std::env::var_os("PANTHEROS_NIX") {
            Some(p) => PathBuf::from(p),
            None => which::which("nix").map_err(|_| Error::NixMissing)?,
        };
        Ok(Nix { program, flags })
    }

    /// A `nix` command with the flags every call needs. The experimental
    /// features are passed as `--extra-…`, which Nix 2.4 and later accept,
    /// and which is harmless where they are already enabled. Substituters
    /// are left to the user's nix.conf. The user's flags follow: global
    /// ones before the subcommand, `--impure` after an evaluating one.
    pub fn cmd<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let flags = &self.flags;
        let mut v = vec![
            self.program.to_string_lossy().into_owned(),
            "--extra-experimental-features".into(),
            "nix-command flakes".into(),
        ];
        v.extend(global_flags(flags));
        let mut args = args.into_iter().map(Into::into);
        if let Some(sub) = args.next() {
            let evaluates = matches!(sub.as_str(), "eval" | "build");
            v.push(sub);
            if evaluates && flags.impure {
                v.push("--impure".into());
            }
        }
        v.extend(args);
        Cmd::new(v)
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

/// The flags `nix` takes before its subcommand.
fn global_flags(f: &crate::cli::NixFlags) -> Vec<String> {
    let mut v = vec![];
    if f.show_trace {
        v.push("--show-trace".into());
    }
    if f.print_build_logs {
        v.push("--print-build-logs".into());
    }
    v.extend(store_options(f));
    v
}

/// `--option NAME VALUE` for every setting the user gave (`--builders`
/// included): what `nix-store` takes too.
pub fn store_options(f: &crate::cli::NixFlags) -> Vec<String> {
    let mut v = vec![];
    for pair in f.option.chunks(2) {
        if let [name, value] = pair {
            v.extend(["--option".to_string(), name.clone(), value.clone()]);
        }
    }
    if let Some(b) = &f.builders {
        v.extend(["--option".to_string(), "builders".into(), b.clone()]);
    }
    v
}

/// A build kept alive by a GC root: the command that realises it, and the
/// root (an indirect one, so `nix-collect-garbage` leaves the result alone
/// while the root exists).
pub struct Rooted {
    pub cmd: Cmd,
    pub root: PathBuf,
}

impl Nix {
    /// `nix-store --realise DRV` with the user's Nix options and an indirect
    /// GC root `dir/name` (`dir` is created).
    pub fn rooted_realise(
        &self,
        drv: &str,
        dir: &std::path::Path,
        name: &str,
    ) -> std::io::Result<Rooted> {
        std::fs::create_dir_all(dir)?;
        let root = dir.join(name);
        let cmd = Cmd::new([
            "nix-store".to_string(),
            "--realise".into(),
            drv.to_string(),
            "--add-root".into(),
            root.to_string_lossy().into_owned(),
            "--indirect".into(),
        ])
        .args(store_options(&self.flags));
        Ok(Rooted { cmd, root })
    }
}

impl Rooted {
    /// The store path the root points at, once the command ran.
    pub fn output(&self) -> std::io::Result<String> {
        Ok(std::fs::read_link(&self.root)?
            .to_string_lossy()
            .into_owned())
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
    fn pass_through_flags_go_where_nix_takes_them() {
        let f = crate::cli::NixFlags {
            show_trace: true,
            impure: true,
            print_build_logs: true,
            option: vec!["cores".into(), "2".into()],
            builders: Some("ssh://b x86_64-linux".into()),
        };
        assert_eq!(
            global_flags(&f),
            [
                "--show-trace",
                "--print-build-logs",
                "--option",
                "cores",
                "2",
                "--option",
                "builders",
                "ssh://b x86_64-linux"
            ]
        );
        assert_eq!(
            store_options(&crate::cli::NixFlags::default()),
            Vec::<String>::new()
        );
    }

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
