//! pantheros: the engine behind the `pantheros` binary.
//!
//! The deployment pipeline reads top to bottom: [`inventory`] (the flake's
//! hosts) → [`nix`] (eval, build, copy) → … Every external command goes
//! through [`runner`].

pub mod cli;
pub mod command;
pub mod deploy;
pub mod error;
pub mod generations;
pub mod inventory;
pub mod nix;
pub mod provision;
pub mod report;
pub mod runner;
pub mod target;
pub mod validate;
