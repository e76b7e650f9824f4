//! Command-line arguments (types only).

use clap::{Args, Parser, Subcommand};

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
   0  success
   1  failed; nothing was changed
   2  usage error
   3  failed after a change; the host was rolled back
   4  rollback failed; manual action needed
  10  no flake.nix found
  11  the flake has no nixosConfigurations
  12  nix is not installed
  13  nix is too old
  14  evaluation failed
  15  unknown host
  16  the selection matched no host
  69  subcommand not available in this version";

#[derive(Debug, Parser)]
#[command(
    name = "pantheros",
    version,
    about = "Deploy, roll back and provision a fleet of NixOS hosts from one flake",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// The flake (a path, searched upward for flake.nix, or a flake URL).
    #[arg(long, global = true, env = "PANTHEROS_FLAKE", value_name = "REF")]
    pub flake: Option<String>,

    /// More diagnostics on stderr (-v: every command run, -vv: more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the hosts of the flake with their deployment metadata.
    Hosts(HostsArgs),
    /// Build, activate and verify hosts (planned).
    Deploy(Passthrough),
    /// Build every host in parallel (planned).
    #[command(name = "build-all")]
    BuildAll(Passthrough),
    /// List generations and roll a host back (planned).
    Rollback(Passthrough),
    /// Create Hetzner Cloud servers and install NixOS on them (planned).
    Provision(Passthrough),
}

#[derive(Debug, Args)]
pub struct HostsArgs {
    /// Host names, globs ('*-vps') or @tag; none selects every host.
    #[arg(value_name = "SELECTOR")]
    pub selectors: Vec<String>,

    /// Print one JSON document on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct Passthrough {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<String>,
}
