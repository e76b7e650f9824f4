//! One invocation of pantheros: where it runs, the flake it was pointed at
//! and the Nix flags it was given, built once in [`super::run`] and handed
//! to the subcommand, so no command reads them from anywhere else.

use std::path::PathBuf;

use crate::cli::NixFlags;
use crate::error::Result;
use crate::inventory::{self, FlakeRef};
use crate::nix::Nix;

pub struct App {
    /// `--flake`, as given.
    flake_arg: Option<String>,
    /// The directory pantheros was started in.
    pub cwd: PathBuf,
    nix_flags: NixFlags,
    /// How progress is shown (decided once, from `--color` and `-v`).
    pub display: crate::report::Display,
}

impl App {
    pub fn new(
        flake_arg: Option<String>,
        cwd: PathBuf,
        nix_flags: NixFlags,
        display: crate::report::Display,
    ) -> App {
        App {
            flake_arg,
            cwd,
            nix_flags,
            display,
        }
    }

    /// The flake: `--flake`, else the one around the current directory.
    pub fn flake(&self) -> Result<FlakeRef> {
        inventory::flake::resolve(self.flake_arg.as_deref(), &self.cwd)
    }

    /// The Nix to drive, carrying the user's Nix flags.
    pub fn nix(&self) -> Result<Nix> {
        Nix::locate(self.nix_flags.clone())
    }

    /// Both, for a command that evaluates the flake.
    pub fn open(&self) -> Result<(FlakeRef, Nix)> {
        Ok((self.flake()?, self.nix()?))
    }

    /// Where this run's logs go ([`super::log_root`]).
    pub fn log_root(&self, flake: &FlakeRef, given: Option<PathBuf>) -> PathBuf {
        super::log_root(flake, &self.cwd, given)
    }
}
