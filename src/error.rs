//! One error type for the whole tool. Every variant knows its exit code and a
//! hint that tells the user what to do next.

use std::fmt;
use std::path::PathBuf;

/// Exit codes. Documented in README.md and in `pantheros --help`, both
/// from [`exit::TABLE`] (a test checks README's table against it).
pub mod exit {
    /// Every exit code with its meaning: the one source of the
    /// documentation.
    pub const TABLE: &[(i32, &str)] = &[
        (0, "success"),
        (1, "failed; nothing was changed"),
        (2, "usage error"),
        (3, "failed after a change; the host was rolled back"),
        (4, "rollback failed; manual action is needed"),
        (
            5,
            "interrupted (Ctrl-C, SIGTERM) before any host changed; every lock released",
        ),
        (
            6,
            "a host's state is unknown (interrupted or cut off mid-change, or its task crashed): check it by hand",
        ),
        (
            7,
            "activated, but health checks failed and rollback was disabled (`--no-rollback-on-health`), or its post-activation keys could not be written: the new generation stays",
        ),
        (
            8,
            "`keys upload`: a host's keys could not all be read or written (each key that was written is whole)",
        ),
        (
            9,
            "reboot required: NixOS would not switch to the new system live (its init changed: it is the boot default now; or switch inhibitors refused: nothing changed, use `--goal boot` or `--force-switch`)",
        ),
        (10, "no `flake.nix` found"),
        (11, "the flake has no `nixosConfigurations`"),
        (12, "`nix` is not installed"),
        (13, "`nix` is too old (flakes need 2.4 or newer)"),
        (
            14,
            "evaluation failed (the flake, or a selected host), or it printed warnings and `--fail-on-warnings` was given",
        ),
        (15, "unknown host"),
        (16, "the selection matched no host"),
        (
            17,
            "a selected host still carries example values (nothing was done; `pantheros hosts` lists them)",
        ),
        (
            18,
            "exec: the command failed, timed out or could not run on at least one host (each host's result is shown)",
        ),
        (
            19,
            "status --exit-code: a host is not in sync (its state and why are shown)",
        ),
        (20, "provision: no usable Hetzner API token"),
        (21, "provision: no usable SSH key"),
        (
            22,
            "provision: server type, location or image not usable (nothing created)",
        ),
        (23, "provision: a Hetzner API call failed"),
        (
            24,
            "provision: waiting for Hetzner took longer than `--timeout`",
        ),
        (
            25,
            "provision: a server of that name exists and pantheros did not create it",
        ),
        (26, "provision: no such server"),
        (30, "install: the rescue system could not be booted"),
        (
            31,
            "install: nixos-anywhere failed (or its inputs could not be built)",
        ),
        (
            32,
            "install: the server did not come back after the installation's reboot",
        ),
        (
            33,
            "install: the server does not run the host's configuration, or presents a host key pantheros did not make",
        ),
        (
            40,
            "validate: a check failed (the failing rows are named, each with a hint)",
        ),
        (
            41,
            "validate: the host does not run Flashpods (`services.flashpods.enable` is not set)",
        ),
    ];

    /// Everything asked for was done.
    pub const OK: i32 = 0;
    /// Failed; nothing was changed on any host.
    pub const FAILED_NOTHING_CHANGED: i32 = 1;
    /// The command line could not be understood (clap uses 2 as well).
    pub const USAGE: i32 = 2;
    /// Failed after a change, and the host was rolled back to where it was.
    pub const ROLLED_BACK: i32 = 3;
    /// Failed, and rolling back failed too: manual action is needed.
    pub const ROLLBACK_FAILED: i32 = 4;
    /// Interrupted (Ctrl-C, SIGTERM) before any host changed; locks released.
    pub const INTERRUPTED: i32 = 5;
    /// A host's state is unknown (interrupted or cut off mid-change, or its
    /// task crashed): check it by hand.
    pub const STATE_UNKNOWN: i32 = 6;
    /// Activated, but health checks failed and rollback was disabled
    /// (`--no-rollback-on-health`): the new generation stays active.
    pub const UNHEALTHY: i32 = 7;
    /// `keys upload`: a host's keys could not all be read or written (each
    /// key that was written is whole).
    pub const KEYS_FAILED: i32 = 8;
    /// NixOS would not switch to the new system live: it is the boot
    /// default (exit 100 of switch-to-configuration), or switch inhibitors
    /// refused and nothing changed.
    pub const REBOOT_REQUIRED: i32 = 9;
    /// validate: at least one row failed.
    pub const VALIDATE_FAILED: i32 = 40;
    /// validate: the host does not run Flashpods.
    pub const NOT_FLASHPODS: i32 = 41;
    /// No flake.nix was found.
    pub const NO_FLAKE: i32 = 10;
    /// The flake has no `nixosConfigurations` output.
    pub const NO_NIXOS_CONFIGURATIONS: i32 = 11;
    /// `nix` is not installed or not on PATH.
    pub const NIX_MISSING: i32 = 12;
    /// The installed Nix is too old.
    pub const NIX_TOO_OLD: i32 = 13;
    /// Evaluating the flake failed (for all hosts or for a selected host).
    pub const EVAL_FAILED: i32 = 14;
    /// A selector named a host that the flake does not have.
    pub const UNKNOWN_HOST: i32 = 15;
    /// The selectors matched no host.
    pub const EMPTY_SELECTION: i32 = 16;
    /// A selected host still carries example values (unfilled placeholders).
    pub const NEEDS_SETUP: i32 = 17;
    /// `exec`: not every host ran the command successfully.
    pub const EXEC_FAILED: i32 = 18;
    /// `status --exit-code`: a host is not in sync.
    pub const NOT_IN_SYNC: i32 = 19;
    /// provision: no usable Hetzner API token.
    pub const TOKEN: i32 = 20;
    /// provision: no usable SSH key.
    pub const SSH_KEY: i32 = 21;
    /// provision: server type, location or image not usable (nothing created).
    pub const PREFLIGHT: i32 = 22;
    /// provision: a Hetzner API call failed.
    pub const API: i32 = 23;
    /// provision: waiting for Hetzner (an action, the server) took longer than --timeout.
    pub const TIMEOUT: i32 = 24;
    /// provision: a server with that name exists and pantheros did not create it.
    pub const FOREIGN_SERVER: i32 = 25;
    /// provision: no such server.
    pub const NO_SERVER: i32 = 26;
    /// install: the rescue system could not be booted.
    pub const RESCUE: i32 = 30;
    /// install: nixos-anywhere failed.
    pub const INSTALL: i32 = 31;
    /// install: the server did not come back after the installation's reboot.
    pub const REBOOT: i32 = 32;
    /// install: the server does not run the host's configuration.
    pub const VERIFY: i32 = 33;
}

/// What went wrong in provisioning or an installation: one kind per exit
/// code (20–26, 30–33; a refused confirmation is 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioning {
    /// No usable Hetzner API token (or Hetzner refused it).
    Token,
    /// No usable SSH key.
    SshKey,
    /// Server type, location or image not usable; nothing was created.
    Preflight,
    /// A Hetzner API call failed.
    Api,
    /// Waiting for Hetzner took longer than `--timeout`.
    Timeout,
    /// A server with that name exists and pantheros did not create it.
    ForeignServer,
    /// No such server.
    NoServer,
    /// The user did not confirm; nothing was changed.
    NotConfirmed,
    /// The rescue system could not be booted.
    Rescue,
    /// nixos-anywhere (or preparing its inputs) failed.
    Install,
    /// The server did not come back after the installation's reboot.
    Reboot,
    /// The server does not run the host's configuration, or presents a host
    /// key pantheros did not make.
    Verify,
}

impl Provisioning {
    pub fn exit_code(self) -> i32 {
        match self {
            Provisioning::Token => exit::TOKEN,
            Provisioning::SshKey => exit::SSH_KEY,
            Provisioning::Preflight => exit::PREFLIGHT,
            Provisioning::Api => exit::API,
            Provisioning::Timeout => exit::TIMEOUT,
            Provisioning::ForeignServer => exit::FOREIGN_SERVER,
            Provisioning::NoServer => exit::NO_SERVER,
            Provisioning::NotConfirmed => exit::FAILED_NOTHING_CHANGED,
            Provisioning::Rescue => exit::RESCUE,
            Provisioning::Install => exit::INSTALL,
            Provisioning::Reboot => exit::REBOOT,
            Provisioning::Verify => exit::VERIFY,
        }
    }
}

/// An external command that did not do what was asked.
#[derive(Debug, Clone)]
pub struct CommandFailure {
    /// The argv, exactly as run (secrets are never part of an argv).
    pub argv: Vec<String>,
    /// How it ended: "exit status 1", "killed by signal 9", "timed out after 30s", "could not start: …".
    pub how: String,
    /// The last lines it printed on stderr (or stdout when stderr was empty).
    pub tail: Vec<String>,
}

impl CommandFailure {
    /// Shell-like rendering of the argv, for error messages and logs.
    pub fn command_line(&self) -> String {
        render_argv(&self.argv)
    }

    /// The whole stderr/stdout tail as one string.
    pub fn output(&self) -> String {
        self.tail.join("\n")
    }
}

impl fmt::Display for CommandFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed ({})", self.command_line(), self.how)
    }
}

/// Quote an argv so that a user can paste it into a shell.
pub fn render_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,#^".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no flake.nix found in {} or any directory above it", start.display())]
    FlakeNotFound { start: PathBuf },

    #[error("the flake {flake} has no `nixosConfigurations` output")]
    NoNixosConfigurations {
        flake: String,
        failure: CommandFailure,
    },

    #[error("`nix` was not found on PATH")]
    NixMissing,

    #[error("Nix {found} is too old: pantheros needs Nix {min} or newer (or Lix)")]
    NixTooOld { found: String, min: String },

    #[error("evaluating {what} failed")]
    Eval {
        what: String,
        failure: CommandFailure,
    },

    #[error("{} selected host(s) failed to evaluate: {}", failed.len(), failed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "))]
    HostsFailedToEvaluate {
        /// (host, Nix's message) for each.
        failed: Vec<(String, String)>,
    },

    #[error("unknown host `{name}`{}", did_you_mean(suggestions))]
    UnknownHost {
        name: String,
        suggestions: Vec<String>,
        known: Vec<String>,
    },

    #[error("the selection {selectors} matched no host")]
    EmptySelection {
        selectors: String,
        known: Vec<String>,
    },

    #[error("{}", needs_setup(unfilled))]
    NeedsSetup { unfilled: Vec<Unfilled> },

    #[error(
        "the evaluation printed {} warning(s) and --fail-on-warnings was given; nothing was built or changed:\n  {}",
        warnings.len(),
        warnings.join("\n  ")
    )]
    Warnings { warnings: Vec<String> },

    #[error("{0}")]
    Command(CommandFailure),

    #[error("{0}")]
    Usage(String),

    /// A step failed before anything changed: what, the command (if one
    /// failed) and what to do.
    #[error("{message}")]
    NothingChanged {
        message: String,
        failure: Option<Box<CommandFailure>>,
        hint: Option<String>,
    },

    /// `validate` was given a host that does not run Flashpods.
    #[error(
        "{host} does not run Flashpods: services.flashpods.enable is not set in its configuration"
    )]
    NotFlashpods { host: String },

    /// Provisioning or installation failed (each kind its exit code).
    #[error("{message}")]
    Provision {
        kind: Provisioning,
        message: String,
        hint: String,
    },

    #[error("unexpected output from `{command}`: {detail}")]
    UnexpectedOutput { command: String, detail: String },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// One example value a selected host still carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Unfilled {
    pub host: String,
    pub placeholder: String,
    pub file: String,
    pub description: String,
    /// The fact that fills it, when the machines decide the value.
    pub from_fact: Option<String>,
}

fn needs_setup(unfilled: &[Unfilled]) -> String {
    let mut hosts: Vec<&str> = unfilled.iter().map(|u| u.host.as_str()).collect();
    hosts.dedup();
    let mut s = format!(
        "{} still carr{} example values; nothing was done:",
        hosts.join(", "),
        if hosts.len() == 1 { "ies" } else { "y" }
    );
    for u in unfilled {
        match &u.from_fact {
            // Another host's fact ("hetzner-vps.wireguardPublicKey").
            Some(fact) if fact.contains('.') => {
                let (owner, name) = fact.split_once('.').unwrap_or((&u.host, fact));
                s.push_str(&format!(
                    "\n  {}: {}: {owner}'s fact {name} is not recorded yet ({}): `pantheros up {owner}` \
                     (or `pantheros deploy {owner}`) records it",
                    u.host, u.placeholder, u.description
                ))
            }
            Some(fact) => s.push_str(&format!(
                "\n  {}: {}: the fact {fact} is not recorded yet ({}): `pantheros up {}` records it \
                 (or `pantheros facts {} --refresh` once the server exists)",
                u.host, u.placeholder, u.description, u.host, u.host
            )),
            None => s.push_str(&format!(
                "\n  {}: {} in {}: {}",
                u.host, u.placeholder, u.file, u.description
            )),
        }
    }
    s
}

fn did_you_mean(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", s.join(", "))
    }
}

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::FlakeNotFound { .. } => exit::NO_FLAKE,
            Error::NoNixosConfigurations { .. } => exit::NO_NIXOS_CONFIGURATIONS,
            Error::NixMissing => exit::NIX_MISSING,
            Error::NixTooOld { .. } => exit::NIX_TOO_OLD,
            Error::Eval { .. } | Error::HostsFailedToEvaluate { .. } => exit::EVAL_FAILED,
            Error::UnknownHost { .. } => exit::UNKNOWN_HOST,
            Error::EmptySelection { .. } => exit::EMPTY_SELECTION,
            Error::NeedsSetup { .. } => exit::NEEDS_SETUP,
            Error::Warnings { .. } => exit::EVAL_FAILED,
            Error::Usage(_) => exit::USAGE,
            Error::NothingChanged { .. } => exit::FAILED_NOTHING_CHANGED,
            Error::NotFlashpods { .. } => exit::NOT_FLASHPODS,
            Error::Provision { kind, .. } => kind.exit_code(),
            Error::Command(_) | Error::UnexpectedOutput { .. } | Error::Io { .. } => {
                exit::FAILED_NOTHING_CHANGED
            }
        }
    }

    /// The failed command behind this error, if there is one.
    pub fn failure(&self) -> Option<&CommandFailure> {
        match self {
            Error::NoNixosConfigurations { failure, .. }
            | Error::Eval { failure, .. }
            | Error::Command(failure) => Some(failure),
            Error::NothingChanged { failure, .. } => failure.as_deref(),
            _ => None,
        }
    }

    /// What the user should do next.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::FlakeNotFound { .. } => {
                "run pantheros inside your flake's directory, or pass --flake PATH".into()
            }
            Error::NoNixosConfigurations { .. } => {
                "define `nixosConfigurations.<host> = nixpkgs.lib.nixosSystem { … }` in flake.nix".into()
            }
            Error::NixMissing => "install Nix (https://nixos.org/download, or `apt-get install nix-bin` on Debian) \
                 and make sure `nix` is on PATH"
                .into(),
            Error::NixTooOld { .. } => {
                "upgrade Nix (nix-env -iA nixpkgs.nixVersions.stable) or use Lix".into()
            }
            Error::Eval { .. } => {
                "fix the Nix error above; `nix eval` with --show-trace on the same attribute gives the full trace".into()
            }
            Error::HostsFailedToEvaluate { .. } => {
                "fix the Nix errors above, or leave those hosts out of the selection".into()
            }
            Error::UnknownHost { known, .. } => format!("known hosts: {}", known.join(", ")),
            Error::EmptySelection { known, .. } => format!(
                "selectors are host names, globs such as '*-vps', or @tag; known hosts: {}",
                known.join(", ")
            ),
            Error::Warnings { .. } => "fix what each warning names in the host's configuration, or run without --fail-on-warnings"
                .into(),
            Error::NeedsSetup { .. } => "replace each example value in the file named, then run the same command again; \
                 `pantheros hosts` lists what each host still needs"
                .into(),
            Error::Command(_) => "see the command's output above; run with -v for every command pantheros runs".into(),
            Error::UnexpectedOutput { .. } => {
                "this is a bug or an unsupported Nix version; please report it with the output of `nix --version`".into()
            }
            Error::Io { .. } => return None,
            Error::Usage(_) => "see `pantheros --help`".into(),
            Error::NothingChanged { hint, .. } => return hint.clone(),
            Error::NotFlashpods { .. } => "validate checks a Flashpods host: import pantheros.nixosModules.flashpods and set \
                 services.flashpods.enable = true"
                .into(),
            Error::Provision { hint, .. } => return Some(hint.clone()),
        })
    }
}

/// A failure inside a stage: a message plus, where there is one, the command.
#[derive(Debug, Clone)]
pub struct StageError {
    pub message: String,
    pub failure: Option<Box<CommandFailure>>,
    pub hint: Option<String>,
    /// The stage it happened in, when that is not the step's own (a
    /// connection opened during the build).
    pub stage: Option<&'static str>,
}

impl StageError {
    pub fn new(message: impl Into<String>) -> Self {
        StageError {
            message: message.into(),
            failure: None,
            hint: None,
            stage: None,
        }
    }
    pub fn cmd(message: impl Into<String>, f: CommandFailure) -> Self {
        StageError {
            message: message.into(),
            failure: Some(Box::new(f)),
            hint: None,
            stage: None,
        }
    }
    /// Say which stage this happened in.
    pub fn at(mut self, stage: &'static str) -> Self {
        self.stage = Some(stage);
        self
    }
    pub fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
    /// As a top-level error.
    pub fn into_error(self) -> crate::error::Error {
        Error::NothingChanged {
            message: self.message,
            failure: self.failure,
            hint: self.hint,
        }
    }

    /// The full text: message, command, result, last lines, hint.
    pub fn render(&self) -> String {
        let mut s = self.message.clone();
        if let Some(f) = &self.failure {
            s.push_str(&format!(
                "\n  command: {}\n  result:  {}",
                crate::report::shorten_argv(&f.argv),
                f.how
            ));
            if !f.tail.is_empty() {
                s.push_str("\n  output (last lines):");
                for l in &f.tail {
                    s.push_str(&format!("\n    {l}"));
                }
            }
        }
        if let Some(h) = &self.hint {
            s.push_str(&format!("\n  hint: {h}"));
        }
        s
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
