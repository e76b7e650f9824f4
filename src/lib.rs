//! pantheros: the engine behind the `pantheros` binary.
//!
//! [`command`] has one file per subcommand; each reads the flake's hosts
//! ([`inventory`], one evaluation), then runs its work: [`deploy`] (the
//! pipeline, one file per stage), [`provision`] (Hetzner, installation),
//! [`validate`], [`generations`]. [`host`] reaches a host (SSH or local)
//! and holds the scripts run there; [`nix`] wraps the Nix CLI; [`report`]
//! is what the user sees. Every external command goes through [`runner`].

pub mod cli;
pub mod command;
pub mod deploy;
pub mod error;
pub mod generations;
pub mod host;
pub mod inventory;
pub mod nix;
pub mod provision;
pub mod report;
pub mod runner;
pub mod validate;
