//! The test world: real hosts on one machine.
//!
//! A [`World`] is a private LAN (a network namespace holding a bridge), one
//! *client* namespace on it from which the deployer runs, and any number of
//! light hosts. A light host is a network namespace plus one long-lived
//! anchor process that owns a private mount namespace (its own `/run`,
//! `/nix` and `/etc/nix`) and UTS namespace (its own hostname), and runs its
//! own `sshd` with a pinned host key. Everything is torn down on drop, also
//! when a test panics; a world left behind by a killed test run is reaped by
//! the next one.
//!
//! Needs root. When the world cannot be built, [`World::new`] returns `None`
//! and says why, except under `CI=true`, where it panics: a test that cannot
//! set up its world must fail there, not pass.

mod assert;
mod cache;
mod env;
mod fleet;
pub mod hetzner;
mod light;
mod systemd;
mod world;

pub use assert::*;
pub use cache::*;
pub use env::*;
pub use fleet::*;
pub use light::*;
pub use systemd::*;
pub use world::*;
