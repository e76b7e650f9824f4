//! Command-line arguments (types only).

use clap::{Args, Parser, Subcommand};

/// `--help`'s list of exit codes, from the one table in the code.
pub fn exit_codes_help() -> String {
    let mut s = String::from("Exit codes:\n");
    for (code, meaning) in crate::error::exit::TABLE {
        let meaning = meaning.replace('`', "");
        s.push_str(&format!("  {code:>2}  {meaning}\n"));
    }
    s
}

#[derive(Debug, Parser)]
#[command(
    name = "pantheros",
    version,
    about = "Deploy, roll back and provision a fleet of NixOS hosts from one flake",
    after_help = exit_codes_help()
)]
pub struct Cli {
    /// The flake (a path, searched upward for flake.nix, or a flake URL).
    #[arg(long, global = true, env = "PANTHEROS_FLAKE", value_name = "REF")]
    pub flake: Option<String>,

    /// More diagnostics on stderr (-v: every command run, -vv: more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Colour and the live progress display: auto (on a terminal, unless
    /// NO_COLOR is set), always, or never (plain `[host] …` lines).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        value_name = "WHEN"
    )]
    pub color: crate::report::progress::ColorChoice,

    #[command(flatten)]
    pub nix: NixFlags,

    #[command(subcommand)]
    pub command: Command,
}

/// One-off overrides of a host's `pantheros.deployment` for this run
/// (the flake is not changed). The address and user need a single host.
#[derive(Debug, Clone, Default, Args)]
pub struct HostOverrides {
    /// Connect to this address instead of the host's targetHost.
    #[arg(long, value_name = "ADDRESS")]
    pub target_host: Option<String>,

    /// Log in as this user instead of the host's targetUser.
    #[arg(long, value_name = "USER")]
    pub target_user: Option<String>,

    /// SSH port instead of the host's targetPort.
    #[arg(long, value_name = "PORT")]
    pub target_port: Option<u16>,

    /// One more ssh argument (repeatable), after the host's sshOptions,
    /// e.g. `--ssh-opt=-oProxyJump=bastion`.
    #[arg(long = "ssh-opt", value_name = "ARG", allow_hyphen_values = true)]
    pub ssh_opt: Vec<String>,

    /// Seconds the host waits for the reachability proof, instead of its
    /// confirmTimeout.
    #[arg(long, value_name = "SECONDS")]
    pub confirm_timeout: Option<u64>,

    /// Substitute the hosts' closures from this binary cache (the hosts'
    /// pantheros.deployment.cache.url for this run; its publicKey and
    /// secretKeyFile still come from the host).
    #[arg(long, value_name = "URL")]
    pub cache: Option<String>,
}

impl HostOverrides {
    /// Apply to the selected hosts; an address or user for several hosts
    /// is refused (it would send them all to one machine).
    pub fn apply(&self, hosts: &mut [crate::inventory::Host]) -> crate::error::Result<()> {
        if (self.target_host.is_some() || self.target_user.is_some()) && hosts.len() > 1 {
            return Err(crate::error::Error::Usage(format!(
                "--target-host and --target-user override one host, but {} are selected",
                hosts.len()
            )));
        }
        for h in hosts {
            let d = &mut h.deployment;
            if let Some(t) = &self.target_host {
                d.target_host = Some(t.clone());
            }
            if let Some(u) = &self.target_user {
                d.target_user = u.clone();
            }
            if let Some(p) = self.target_port {
                d.target_port = p;
            }
            d.ssh_options.extend(self.ssh_opt.iter().cloned());
            if let Some(c) = self.confirm_timeout {
                d.confirm_timeout = c.max(1);
            }
            if let Some(url) = &self.cache {
                match &mut d.cache {
                    Some(c) => c.url = url.clone(),
                    None => {
                        return Err(crate::error::Error::Usage(format!(
                            "--cache {url}: {} has no pantheros.deployment.cache (its publicKey, which the host must trust)",
                            h.name
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Flags handed to every Nix command a run starts (evaluation, builds,
/// copies), as `nix` itself spells them.
#[derive(Debug, Clone, Default, Args)]
pub struct NixFlags {
    /// Nix: show the full evaluation trace of an error.
    #[arg(long, global = true)]
    pub show_trace: bool,

    /// Nix: evaluate impurely (environment variables, absolute paths).
    #[arg(long, global = true)]
    pub impure: bool,

    /// Nix: print full build logs (`-L`).
    #[arg(short = 'L', long, global = true)]
    pub print_build_logs: bool,

    /// Nix: set a configuration option for every Nix command (repeatable),
    /// e.g. `--option cores 4`.
    #[arg(long = "option", global = true, num_args = 2, value_names = ["NAME", "VALUE"], action = clap::ArgAction::Append)]
    pub option: Vec<String>,

    /// Nix: build on these remote builders (Nix's `builders` setting, e.g.
    /// `ssh://builder x86_64-linux`).
    #[arg(long, global = true, value_name = "SPEC")]
    pub builders: Option<String>,
}

impl Cli {
    /// Parse a command line as `pantheros` would (for the docs test: every
    /// command the documentation shows must parse).
    pub fn parse_words<I, S>(argv: I) -> std::result::Result<Cli, String>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        <Cli as Parser>::try_parse_from(argv).map_err(|e| e.to_string())
    }

    /// Did the command ask for `--json`? (Then every exit prints a document.)
    pub fn wants_json(&self) -> bool {
        match &self.command {
            Command::Hosts(a) => a.json,
            Command::Deploy(a) => a.activation.json,
            Command::BuildAll(a) => a.json,
            Command::Rollback(a) => a.activation.json,
            Command::Provision(p) => p.wants_json(),
            Command::Up(a) => a.json,
            Command::Validate(a) => a.json,
            Command::Facts(a) => a.json,
            Command::Exec(a) => a.json,
            Command::Status(a) => a.json,
            Command::Keys(KeysCommand::Upload(a)) => a.json,
            Command::Completions { .. } | Command::Man => false,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the hosts of the flake with their deployment metadata.
    Hosts(HostsArgs),
    /// Build, dry-activate, show the changes, confirm, switch and verify hosts.
    Deploy(DeployArgs),
    /// Build every host (or the selected ones) in parallel.
    #[command(name = "build-all")]
    BuildAll(BuildAllArgs),
    /// List generations of a host, or switch it to the previous or a chosen one.
    Rollback(RollbackArgs),
    /// Create Hetzner Cloud servers for hosts of the flake and install NixOS on them.
    #[command(subcommand)]
    Provision(ProvisionCommand),
    /// From nothing to a verified host: create its server, install NixOS, deploy (each step skipped when done).
    Up(UpArgs),
    /// Check a deployed Flashpods host against its own configuration (the checklist's Phase 4) and print the sign-off table.
    Validate(ValidateArgs),
    /// Show a host's recorded facts (addresses, host key…), or read them again from Hetzner and over SSH.
    Facts(FactsArgs),
    /// Which hosts run what the flake says: one evaluation, one round trip per host.
    Status(StatusArgs),
    /// Run one command on the selected hosts, in parallel (its argv passed as given).
    Exec(ExecArgs),
    /// Secrets the deployer writes to hosts (`pantheros.deployment.keys`).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `pantheros man | man -l -`.
    Man,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Host names, globs ('*-vps') or @tag; none means every host.
    #[arg(value_name = "SELECTOR")]
    pub selectors: Vec<String>,

    /// Hosts asked at once.
    #[arg(long, short = 'j', default_value_t = 16)]
    pub jobs: usize,

    /// One JSON document on stdout (docs/json/status.schema.json).
    #[arg(long)]
    pub json: bool,

    /// Exit 19 when any host is not in sync (for monitoring and CI).
    #[arg(long)]
    pub exit_code: bool,

    /// Also write the states in the Prometheus text format to FILE
    /// (replaced whole), e.g. for node_exporter's textfile collector.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub password: SudoPasswordFlags,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Host names, globs ('*-vps') or @tag; at least one.
    #[arg(value_name = "SELECTOR", required = true)]
    pub selectors: Vec<String>,

    /// Run it as root, through the host's privilege escalation
    /// (`pantheros.deployment.sudo`; nothing when the SSH user is root).
    #[arg(long)]
    pub sudo: bool,

    /// Hosts at once.
    #[arg(long, short = 'j', default_value_t = 8)]
    pub jobs: usize,

    /// Seconds the command gets on each host; then it is stopped there
    /// (coreutils `timeout` on the host) and the host counts as failed.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub timeout: u64,

    /// One JSON document on stdout: each host's exit code, stdout and
    /// stderr (docs/json/exec.schema.json), instead of prefixed lines.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub password: SudoPasswordFlags,

    /// The command and its arguments, after `--`; each argument reaches
    /// the host exactly as given (no second round of shell parsing).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct FactsArgs {
    /// The host.
    pub host: String,

    /// Read the facts again (the server from the Hetzner API, the SSH host
    /// key over the network) and, after showing what changes, write them.
    #[arg(long)]
    pub refresh: bool,

    /// With --refresh: write without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write the selected hosts' keys again, without deploying.
    Upload(KeysUploadArgs),
}

#[derive(Debug, Args)]
pub struct KeysUploadArgs {
    /// Host names, globs ('*-vps') or @tag ('*' for every host).
    #[arg(value_name = "SELECTOR", required = true)]
    pub selectors: Vec<String>,

    /// Print one JSON document on stdout: per host, each key's name, path,
    /// owner, group, mode and size (never a value or a digest).
    #[arg(long)]
    pub json: bool,

    /// Where logs go (default: <flake>/logs in a git checkout, else
    /// $XDG_STATE_HOME/pantheros/logs/<flake dir>-<hash>, so a plain
    /// directory flake never copies its logs into the store).
    #[arg(long, env = "PANTHEROS_LOG_DIR", value_name = "DIR")]
    pub log_dir: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub password: SudoPasswordFlags,
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
pub struct DeployArgs {
    /// Host names, globs ('*-vps') or @tag ('*' for every host).
    #[arg(value_name = "SELECTOR", required = true)]
    pub selectors: Vec<String>,

    #[command(flatten)]
    pub eval: EvalFlags,

    /// Only build; do not touch the hosts.
    #[arg(long, conflicts_with = "dry_run")]
    pub build_only: bool,

    /// Build, copy, dry-activate and show the changes; switch nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Hosts worked on at once.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,

    /// Activate the first N selected hosts (in name order) first; the others only after all
    /// of them switched, proved reachability and passed their health checks.
    /// A failing canary stops the rollout: no other host is changed.
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with_all = ["build_only", "dry_run"])]
    pub canary: usize,

    /// When any host does not succeed, roll back the hosts this run switched
    /// (to the generation each ran before), so the fleet stays on one
    /// configuration.
    #[arg(long, conflicts_with_all = ["build_only", "dry_run"])]
    pub rollback_succeeded: bool,

    /// Go on with the other hosts after one failed, also when a selected
    /// host fails to evaluate (it is reported, stage "evaluate", and the
    /// others run). Without it, a host that fails to evaluate refuses the
    /// run, and the first failure stops every host that has not started
    /// its activation (those already activating finish).
    #[arg(long)]
    pub keep_going: bool,

    /// Deploy to this machine, without SSH, whatever targetHost says.
    #[arg(long)]
    pub local: bool,

    /// Deploy this already built system (e.g. what CI built and pushed to
    /// a cache) to the one selected host: its system is not evaluated; the
    /// path is realised here (substituted when it is not in the store),
    /// checked to be a NixOS system for the host's platform, and goes
    /// through the same pipeline.
    #[arg(long, value_name = "STORE_PATH", conflicts_with = "build_only")]
    pub store_path: Option<String>,

    /// Build the systems on this machine (an ssh destination, reached
    /// with the host's sshOptions) and copy each from there to its host:
    /// this machine's store never holds the closures.
    #[arg(long, value_name = "HOST", conflicts_with_all = ["store_path", "from_json"])]
    pub build_host: Option<String>,

    /// Deploy the systems a `build-all --json` (or `deploy --build-only
    /// --json`) run built, each selected host its own `toplevel` from that
    /// document; as with --store-path, no system is evaluated.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["build_only", "store_path"])]
    pub from_json: Option<std::path::PathBuf>,

    /// Stop before anything is built when the evaluation printed a warning
    /// (for CI); the warnings are shown either way.
    #[arg(long)]
    pub fail_on_warnings: bool,

    #[command(flatten)]
    pub activation: ActivationFlags,
}

/// The flags of an activation, shared by `deploy` and `rollback`.
#[derive(Debug, Clone, Args)]
pub struct ActivationFlags {
    /// What activation does: switch (now and on boot), boot (next boot
    /// only) or test (now, not on boot).
    #[arg(long, value_enum, default_value = "switch")]
    pub goal: crate::deploy::Goal,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Print one JSON document with the result on stdout.
    #[arg(long)]
    pub json: bool,

    /// Skip the reachability proof after activation (no magic rollback).
    #[arg(long)]
    pub no_magic_rollback: bool,

    /// Keep the new generation even when health checks fail.
    #[arg(long)]
    pub no_rollback_on_health: bool,

    /// Remove a deploy lock left behind on the hosts by a dead deployment
    /// (refused while that deployment's activation still runs on the host).
    #[arg(long)]
    pub break_lock: bool,

    /// With --break-lock: break it even while its activation still runs.
    #[arg(long, requires = "break_lock")]
    pub force: bool,

    /// Switch live even when NixOS's pre-switch checks refuse it (a changed
    /// switch inhibitor such as systemd or dbus): sets NIXOS_NO_CHECK=1 for
    /// this activation. The safe way is `--goal boot` and a reboot.
    #[arg(long)]
    pub force_switch: bool,

    /// Reboot into the new system once, prove it (a fresh SSH connection,
    /// the health checks), and only then make it the boot default; if it
    /// does not prove itself, the host comes back on the old system (its
    /// boot watchdog reboots it there by itself). `--reboot=if-needed`:
    /// only hosts whose plan needs a reboot (switch inhibitors, a new
    /// kernel). Needs systemd-boot on the host.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "always", value_name = "WHEN")]
    pub reboot: Option<crate::deploy::Reboot>,

    /// Where logs go (default: <flake>/logs in a git checkout, else
    /// $XDG_STATE_HOME/pantheros/logs/<flake dir>-<hash>, so a plain
    /// directory flake never copies its logs into the store).
    #[arg(long, env = "PANTHEROS_LOG_DIR", value_name = "DIR")]
    pub log_dir: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub password: SudoPasswordFlags,

    #[command(flatten)]
    pub overrides: HostOverrides,
}

/// Where the hosts' sudo password comes from, when their sudo asks for one
/// (deploy, rollback, keys upload, exec --sudo).
#[derive(Debug, Clone, Args)]
pub struct SudoPasswordFlags {
    /// A command that prints the password for the hosts' sudo (its first
    /// line), e.g. `pass show hosts/sudo`; used only on hosts whose sudo
    /// asks for one, handed to it on stdin, never shown.
    #[arg(long, env = "PANTHEROS_SUDO_PASSWORD_COMMAND", value_name = "CMD")]
    pub sudo_password_command: Option<String>,

    /// Ask for the hosts' sudo password on the terminal, once per run.
    #[arg(long, conflicts_with = "sudo_password_command")]
    pub ask_sudo_password: bool,
}

impl SudoPasswordFlags {
    /// The run's sudo password, when one was asked for.
    pub fn sudo_password(
        &self,
    ) -> crate::error::Result<Option<std::sync::Arc<crate::host::password::Password>>> {
        use crate::host::password::Password;
        let p = match (&self.sudo_password_command, self.ask_sudo_password) {
            (Some(cmd), _) => Password::from_command(cmd),
            (None, true) => Password::ask(),
            (None, false) => return Ok(None),
        };
        p.map(|p| Some(std::sync::Arc::new(p)))
            .map_err(crate::error::Error::Usage)
    }
}

impl ActivationFlags {
    /// Flags that cannot go together: `--reboot` keeps the new system as
    /// the boot default (not `--goal test`) and reboots a remote host (not
    /// this machine, which could not watch itself come back).
    pub fn refuse_conflicts(&self, local: bool) -> crate::error::Result<()> {
        let Some(_) = self.reboot else {
            return Ok(());
        };
        if self.goal == crate::deploy::Goal::Test {
            return Err(crate::error::Error::Usage(
                "--reboot makes the new system the boot default once it proves itself; it cannot go with --goal test"
                    .into(),
            ));
        }
        if local {
            return Err(crate::error::Error::Usage(
                "--reboot reboots a host and watches it come back; this machine cannot watch itself (use --goal boot, then reboot)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The run's options for `mode`, logging to `log_dir`.
    pub fn options(
        &self,
        mode: crate::deploy::Mode,
        log_dir: std::path::PathBuf,
        display: &crate::report::Display,
    ) -> crate::deploy::Options {
        let touches_hosts = !matches!(
            mode,
            crate::deploy::Mode::BuildOnly | crate::deploy::Mode::DryRun
        );
        crate::deploy::Options {
            magic_rollback: self.no_magic_rollback.then_some(false),
            rollback_on_health: self.no_rollback_on_health.then_some(false),
            break_lock: self.break_lock && touches_hosts,
            force: self.force,
            force_switch: self.force_switch,
            reboot: self.reboot.unwrap_or_default(),
            ..crate::deploy::Options::new(mode, self.goal, log_dir, display.clone())
        }
    }
}

/// How the hosts' systems are evaluated (deploy, build-all).
#[derive(Debug, Clone, Default, Args)]
pub struct EvalFlags {
    /// Evaluate the selected hosts' systems in N `nix eval` processes at
    /// once (a large fleet: one process holds every host's evaluation in
    /// its memory and uses one core); 1: always one process. Default: one
    /// process for fewer than 8 systems or on one core, else one per core
    /// (at most 4).
    #[arg(long, value_name = "N", env = "PANTHEROS_EVAL_JOBS")]
    pub eval_jobs: Option<usize>,

    /// With --eval-jobs: each worker's memory in MiB (its data segment,
    /// `prlimit --data`); a worker past it fails alone, and its hosts are
    /// then evaluated one by one.
    #[arg(long, value_name = "MIB", requires = "eval_jobs")]
    pub eval_max_memory: Option<u64>,
}

impl EvalFlags {
    /// The evaluation's options for the systems of `selectors`.
    pub fn options(&self, selectors: &[String], disko: bool) -> crate::inventory::EvalOptions {
        crate::inventory::EvalOptions {
            drv_for: Some(selectors.to_vec()),
            disko,
            jobs: self.eval_jobs.unwrap_or(0),
            max_memory_mib: self.eval_max_memory,
            ..Default::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct BuildAllArgs {
    /// Host names, globs or @tag; none builds every host.
    #[arg(value_name = "SELECTOR")]
    pub selectors: Vec<String>,

    #[command(flatten)]
    pub eval: EvalFlags,

    /// Stop before anything is built when the evaluation printed a warning
    /// (for CI); the warnings are shown either way.
    #[arg(long)]
    pub fail_on_warnings: bool,

    /// Builds at once (default: the number of CPUs).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,

    /// Print one JSON document with the results on stdout.
    #[arg(long)]
    pub json: bool,

    /// Where logs go (default: <flake>/logs in a git checkout, else
    /// $XDG_STATE_HOME/pantheros/logs/<flake dir>-<hash>, so a plain
    /// directory flake never copies its logs into the store).
    #[arg(long, env = "PANTHEROS_LOG_DIR", value_name = "DIR")]
    pub log_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Host names, globs ('*-vps') or @tag, as for deploy; none means this
    /// machine.
    #[arg(value_name = "SELECTOR")]
    pub selectors: Vec<String>,

    /// List the generations instead of switching.
    #[arg(long, conflicts_with_all = ["to", "break_lock"])]
    pub list: bool,

    /// Switch to generation N (default: the one before the current).
    #[arg(long, value_name = "N")]
    pub to: Option<u64>,

    /// With --list: also compute each generation's closure size.
    #[arg(long, requires = "list")]
    pub sizes: bool,

    /// Hosts rolled back at once.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,

    #[command(flatten)]
    pub activation: ActivationFlags,
}

/// `pantheros provision VERB`: Hetzner Cloud servers for the flake's hosts.
#[derive(Debug, Subcommand)]
pub enum ProvisionCommand {
    /// Create (or find) the server for a host and wait until it runs.
    Create(CreateArgs),
    /// Servers created by pantheros.
    List(ListArgs),
    /// Delete a host's server (one pantheros created).
    Destroy(DestroyArgs),
    /// Attach or detach an ISO image.
    #[command(subcommand)]
    Iso(IsoCommand),
    /// Boot a host's server into Hetzner's rescue system (with your SSH key).
    Rescue(RescueArgs),
    /// Install the host's NixOS configuration on its server (nixos-anywhere), then verify it.
    Install(InstallArgs),
}

impl ProvisionCommand {
    /// Did the command ask for `--json`?
    pub fn wants_json(&self) -> bool {
        match self {
            ProvisionCommand::Create(a) => a.json,
            ProvisionCommand::List(a) => a.json,
            ProvisionCommand::Install(a) => a.json,
            _ => false,
        }
    }
}

/// Which server to order, overriding the host's `pantheros.deployment.hetzner`
/// (`provision create` and `up`).
#[derive(Debug, Clone, Default, Args)]
pub struct ServerChoice {
    /// Server type (default: the host's hetzner.serverType, else cx23).
    #[arg(long)]
    pub server_type: Option<String>,
    /// Image the server starts with before NixOS (default: the host's hetzner.image, else ubuntu-24.04).
    #[arg(long)]
    pub image: Option<String>,
    /// Location (default: the host's hetzner.location, else nbg1).
    #[arg(long)]
    pub location: Option<String>,
    /// Public SSH key the server trusts and pantheros logs in with (default: the one in ~/.ssh, or a choice).
    #[arg(long, value_name = "PATH")]
    pub ssh_key: Option<std::path::PathBuf>,
    /// Create the server without a public IPv4 address (default: the host's hetzner.ipv6Only).
    #[arg(long)]
    pub ipv6_only: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The host (from the flake) to create a server for.
    #[arg(value_name = "HOST")]
    pub host: String,
    #[command(flatten)]
    pub server: ServerChoice,
    /// Check everything and show what would be created; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for Hetzner's actions and the server.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub timeout: u64,
    /// Kamal config to update (default: config/deploy.yml when it exists).
    #[arg(long, value_name = "PATH", conflicts_with = "no_kamal")]
    pub kamal: Option<std::path::PathBuf>,
    /// Leave the Kamal config alone.
    #[arg(long)]
    pub no_kamal: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The host whose server is deleted.
    #[arg(value_name = "HOST")]
    pub host: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Seconds to wait for the deletion to finish.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum IsoCommand {
    /// Attach an ISO to a host's server (it boots from it on the next reset).
    Attach(IsoAttachArgs),
    /// Detach the ISO from a host's server.
    Detach(IsoDetachArgs),
}

#[derive(Debug, Args)]
pub struct IsoAttachArgs {
    /// The host whose server gets the ISO.
    #[arg(value_name = "HOST")]
    pub host: String,
    /// The ISO's name or ID (`hcloud iso list` shows them).
    #[arg(value_name = "ISO")]
    pub iso: String,
    /// Seconds to wait for Hetzner's action.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct IsoDetachArgs {
    /// The host whose server loses its ISO.
    #[arg(value_name = "HOST")]
    pub host: String,
    /// Seconds to wait for Hetzner's action.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct RescueArgs {
    /// The host whose server boots into the rescue system.
    #[arg(value_name = "HOST")]
    pub host: String,
    /// Public SSH key the rescue system trusts (default: the one in ~/.ssh).
    #[arg(long, value_name = "PATH")]
    pub ssh_key: Option<std::path::PathBuf>,
    /// Seconds to wait for Hetzner's actions.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub timeout: u64,
}

/// How `provision install` reaches an installer on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// Boot Hetzner's rescue system first (enable rescue + reset).
    Rescue,
    /// Start from the running image (nixos-anywhere kexecs into its installer).
    Kexec,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The host (from the flake) whose server gets its configuration.
    #[arg(value_name = "HOST")]
    pub host: String,
    /// How to reach an installer: kexec from the running image, or Hetzner's rescue system.
    #[arg(long, value_enum, default_value = "kexec")]
    pub via: Via,
    /// Public SSH key to log in with (its private key must be next to it).
    #[arg(long, value_name = "PATH")]
    pub ssh_key: Option<std::path::PathBuf>,
    /// Seconds for each wait (Hetzner actions, the reboot, verification).
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub timeout: u64,
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The host (from the flake): a Hetzner host (provider = "hetzner").
    #[arg(value_name = "HOST")]
    pub host: String,
    #[command(flatten)]
    pub server: ServerChoice,
    /// How to reach an installer: kexec from the running image, or Hetzner's rescue system.
    #[arg(long, value_enum, default_value = "kexec")]
    pub via: Via,
    /// Seconds for each wait (Hetzner actions, the installation's reboot, verification).
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub timeout: u64,
    /// Show what each step would do; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation before the first deploy.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print one JSON document on stdout: each step's result and the deploy's outcome.
    #[arg(long)]
    pub json: bool,
    /// Kamal config to update (default: config/deploy.yml when it exists).
    #[arg(long, value_name = "PATH", conflicts_with = "no_kamal")]
    pub kamal: Option<std::path::PathBuf>,
    /// Leave the Kamal config alone.
    #[arg(long)]
    pub no_kamal: bool,
    /// Where logs go (default: <flake>/logs in a git checkout, else
    /// $XDG_STATE_HOME/pantheros/logs/<flake dir>-<hash>, so a plain
    /// directory flake never copies its logs into the store).
    #[arg(long, env = "PANTHEROS_LOG_DIR", value_name = "DIR")]
    pub log_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The host (from the flake) that runs Flashpods (`services.flashpods.enable`).
    #[arg(value_name = "HOST")]
    pub host: String,
    /// A WireGuard handshake older than this many seconds fails the WireGuard row.
    #[arg(long, default_value_t = 180, value_name = "SECONDS")]
    pub handshake_within: u64,
    /// Image for the test containers on the host (needs `sh` and `nc`; pulled when missing).
    #[arg(
        long,
        default_value = "docker.io/library/alpine:latest",
        value_name = "IMAGE"
    )]
    pub image: String,
    /// An internet address the containers must reach.
    #[arg(
        long,
        default_value = "api.anthropic.com:443",
        value_name = "HOST:PORT"
    )]
    pub internet: String,
    /// The host's public address, where the API must not answer (default: the address ssh connects to, from `ssh -G`).
    #[arg(long, value_name = "ADDRESS")]
    pub public_address: Option<String>,
    /// Seconds each probe may take.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub timeout: u64,
    /// Print one JSON document on stdout: every row with its result, evidence and hint.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand says what it does and every argument has help:
    /// `--help`, the man page and the completions show nothing unexplained.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if a.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() {
                    missing.push(format!("{path}: argument {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{name}: no description"));
                }
                walk(sub, &name, missing);
            }
        }
        let mut missing = vec![];
        walk(&super::Cli::command(), "pantheros", &mut missing);
        assert!(missing.is_empty(), "without help: {missing:#?}");
    }
}
