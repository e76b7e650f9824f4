//! pantheros' integration tests: one test binary, one module per area.
//! The test world (namespace hosts, systemd hosts, fixture fleets, the
//! Hetzner fake) is the `testworld` crate.

mod cache;
mod cli_hosts;
mod deploy_light;
mod deploy_systemd;
mod docs;
mod eval_warnings;
mod exec;
mod facts_exchange;
mod faults;
mod flake_apps;
mod flake_eval;
mod flashpods_podman;
mod flashpods_scripts;
mod flashpods_traffic;
mod interrupts;
mod kamal;
mod keys;
mod mixed_nix;
mod modules_eval;
mod nix_files;
mod provision;
mod provision_install;
mod reach;
mod real_activation;
mod reboot;
mod renderers;
mod rollback;
mod spire_entries;
mod status;
mod validate;
mod world;
