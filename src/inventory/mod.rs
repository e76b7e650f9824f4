//! The fleet, read from the flake's own outputs in one evaluation.
//!
//! Every host is a `nixosConfigurations.<name>`; its deployment metadata is
//! `config.pantheros.deployment` (declared by `modules/deployment.nix`).
//! Hosts that do not import the module still appear, with defaults.

pub mod eval;
pub mod facts;
pub mod flake;
pub mod select;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{CommandFailure, Error, Result};
use crate::nix::{self, Nix};
use crate::runner;
pub use flake::FlakeRef;
use select::Selectable;

pub use eval::{EvalOptions, Extra, OnEvaluated};
#[cfg(test)]
use eval::{glob_to_regex, nix_string};

/// Health checks run after activation (see the deploy pipeline).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct HealthChecks {
    pub services: Vec<String>,
    pub http: Vec<String>,
    pub commands: Vec<String>,
    pub timeout: u64,
}

impl Default for HealthChecks {
    fn default() -> Self {
        HealthChecks {
            services: vec![],
            http: vec![],
            commands: vec![],
            timeout: 60,
        }
    }
}

/// Hetzner Cloud settings for `pantheros provision`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Hetzner {
    pub server_type: String,
    pub location: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// Create the server without a public IPv4 address.
    pub ipv6_only: bool,
}

impl Default for Hetzner {
    fn default() -> Self {
        Hetzner {
            server_type: "cx23".into(),
            location: "nbg1".into(),
            image: "ubuntu-24.04".into(),
            labels: BTreeMap::new(),
            ipv6_only: false,
        }
    }
}

/// An example value a host still carries (`pantheros.deployment.placeholders.<name>`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Placeholder {
    pub filled: bool,
    pub file: String,
    pub description: String,
    /// The recorded fact that fills it (a value the machines decide).
    #[serde(default)]
    pub from_fact: Option<String>,
}

/// `config.pantheros.deployment`, with the module's defaults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Deployment {
    /// `null` in the module means "the attribute name".
    pub target_host: Option<String>,
    pub target_user: String,
    pub target_port: u16,
    pub ssh_options: Vec<String>,
    pub tags: Vec<String>,
    pub profile: String,
    pub provider: Option<String>,
    pub build_on_target: bool,
    /// `buildHost`: where this host's system is built (an ssh destination).
    pub build_host: Option<String>,
    pub substitute_on_destination: bool,
    pub magic_rollback: bool,
    pub confirm_timeout: u64,
    pub activation_timeout: u64,
    /// `deploy --reboot`: seconds to wait for the host to answer again.
    pub reboot_timeout: u64,
    /// Seconds the boot watchdog waits for the proof of a trial boot.
    pub reboot_confirm_timeout: u64,
    pub rollback_on_failed_units: bool,
    pub rollback_on_health_failure: bool,
    pub privilege_escalation_command: Vec<String>,
    pub health_checks: HealthChecks,
    pub hetzner: Hetzner,
    pub placeholders: BTreeMap<String, Placeholder>,
    /// The host's facts file as the evaluation saw it (a path in the
    /// flake's store copy; [`crate::facts`] finds it in the checkout).
    pub facts_file: Option<String>,
    /// The recorded facts, by name.
    pub facts: BTreeMap<String, serde_json::Value>,
    /// Facts read back from the host after a successful deploy: a shell
    /// command per fact, run as root; its output is the value.
    pub record_facts: BTreeMap<String, String>,
    /// Secrets the deployer uploads (`pantheros.deployment.keys`): their
    /// sources and destinations, never their values.
    pub keys: BTreeMap<String, KeySpec>,
    /// `pantheros.deployment.cache`: a binary cache the host substitutes
    /// its closure from, which the deployer uploads to once.
    pub cache: Option<CacheSpec>,
}

/// `pantheros.deployment.cache`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct CacheSpec {
    /// Where the host substitutes from (its `extra-substituters`).
    pub url: String,
    /// Where the deployer uploads (a store URI; `url` when unset).
    pub upload: Option<String>,
    /// The cache's public key, which the host must trust.
    pub public_key: String,
    /// The secret key the uploads are signed with: a file on the
    /// deployer (never in the store).
    pub secret_key_file: Option<String>,
}

/// When a key is uploaded, relative to the activation.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UploadAt {
    #[default]
    PreActivation,
    PostActivation,
}

/// One `pantheros.deployment.keys.<name>`, with the module's defaults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct KeySpec {
    /// A file on the deployer.
    pub key_file: Option<String>,
    /// Or an argv run on the deployer; its stdout is the secret.
    pub key_command: Option<Vec<String>>,
    pub dest_dir: String,
    /// The file name (the attribute name when unset).
    pub name: Option<String>,
    pub user: String,
    pub group: String,
    pub permissions: String,
    pub upload_at: UploadAt,
}

impl Default for KeySpec {
    fn default() -> Self {
        KeySpec {
            key_file: None,
            key_command: None,
            dest_dir: "/run/keys".into(),
            name: None,
            user: "root".into(),
            group: "root".into(),
            permissions: "0600".into(),
            upload_at: UploadAt::PreActivation,
        }
    }
}

impl Default for Deployment {
    fn default() -> Self {
        Deployment {
            target_host: None,
            target_user: "root".into(),
            target_port: 22,
            ssh_options: vec![],
            tags: vec![],
            profile: "/nix/var/nix/profiles/system".into(),
            provider: None,
            build_on_target: false,
            build_host: None,
            substitute_on_destination: true,
            magic_rollback: true,
            confirm_timeout: 30,
            activation_timeout: 600,
            reboot_timeout: 600,
            cache: None,
            reboot_confirm_timeout: 180,
            rollback_on_failed_units: true,
            rollback_on_health_failure: true,
            privilege_escalation_command: vec!["sudo".into(), "-n".into()],
            health_checks: HealthChecks::default(),
            hetzner: Hetzner::default(),
            placeholders: BTreeMap::new(),
            facts_file: None,
            facts: BTreeMap::new(),
            record_facts: BTreeMap::new(),
            keys: BTreeMap::new(),
        }
    }
}

impl Deployment {
    /// The placeholders still holding their example value, by name.
    pub fn unfilled(&self) -> Vec<(&str, &Placeholder)> {
        self.placeholders
            .iter()
            .filter(|(_, p)| !p.filled)
            .map(|(n, p)| (n.as_str(), p))
            .collect()
    }
}

/// Refuse hosts that still carry example values, before anything touches
/// them (deploy, provision, install): every such host and value is named.
/// A placeholder filled by a fact that this run records (`recorded_here`:
/// `up` records the server's addresses, for one) does not count.
pub fn refuse_unfilled<'a>(
    hosts: impl IntoIterator<Item = &'a Host>,
    recorded_here: &[&str],
) -> Result<()> {
    let unfilled: Vec<crate::error::Unfilled> = hosts
        .into_iter()
        .flat_map(|h| {
            h.deployment
                .unfilled()
                .into_iter()
                .filter(|(_, p)| {
                    p.from_fact
                        .as_deref()
                        .is_none_or(|f| !recorded_here.contains(&f))
                })
                .map(|(n, p)| crate::error::Unfilled {
                    host: h.name.clone(),
                    placeholder: n.to_string(),
                    file: p.file.clone(),
                    description: p.description.clone(),
                    from_fact: p.from_fact.clone(),
                })
        })
        .collect();
    if unfilled.is_empty() {
        Ok(())
    } else {
        Err(Error::NeedsSetup { unfilled })
    }
}

/// One host of the fleet.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    pub name: String,
    /// Whether the configuration imports the pantheros deployment module.
    pub uses_module: bool,
    #[serde(flatten)]
    pub deployment: Deployment,
    /// The toplevel's derivation, only when it was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drv_path: Option<String>,
    /// The toplevel's system (e.g. x86_64-linux), only with the derivation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// disko's `system.build.diskoScript` derivation, only when asked for
    /// (an installation) and only when the host declares one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disko_drv_path: Option<String>,
    /// The toplevel's output path (not built), with the derivation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toplevel: Option<String>,
    /// The extra values a command asked for ([`Extra`]), by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extras: BTreeMap<String, serde_json::Value>,
    /// The configuration's evaluation warnings (NixOS's `warnings`, and
    /// what Nix printed as a warning while evaluating only this host).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Host {
    pub fn target_host(&self) -> &str {
        self.deployment.target_host.as_deref().unwrap_or(&self.name)
    }

    pub fn is_local(&self) -> bool {
        matches!(self.target_host(), "localhost" | "127.0.0.1" | "::1")
    }
}

impl Selectable for Host {
    fn name(&self) -> &str {
        &self.name
    }
    fn tags(&self) -> &[String] {
        &self.deployment.tags
    }
}

/// A host whose configuration could not be evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct HostError {
    pub name: String,
    pub message: String,
}

/// The result of reading the flake.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub flake: String,
    #[serde(skip)]
    pub nix_version: String,
    pub hosts: Vec<Host>,
    pub errors: Vec<HostError>,
    /// Warnings Nix printed during the evaluation that no host's
    /// `warnings` names (a `lib.warn` outside the `warnings` option).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What selectors pick: the hosts that evaluated, and the errors of the
/// selected hosts that did not.
#[derive(Debug)]
pub struct Selection<'a> {
    pub hosts: Vec<&'a Host>,
    pub failed: Vec<&'a HostError>,
}

impl Selection<'_> {
    /// The error for the failed hosts, if any (deploy and build-all refuse them).
    pub fn failure(&self) -> Option<Error> {
        (!self.failed.is_empty()).then(|| Error::HostsFailedToEvaluate {
            failed: self
                .failed
                .iter()
                .map(|e| (e.name.clone(), e.message.clone()))
                .collect(),
        })
    }
}

impl Inventory {
    /// Apply selectors (names, globs, @tag) to every host, the ones that
    /// failed to evaluate included: they can be named or matched by a glob
    /// (their tags are unknown), and an unknown name gets suggestions from
    /// all of them.
    pub fn select(&self, selectors: &[String]) -> Result<Selection<'_>> {
        enum Item<'a> {
            Ok(&'a Host),
            Failed(&'a HostError),
        }
        struct Entry<'a>(&'a str, &'a [String], Item<'a>);
        impl Selectable for Entry<'_> {
            fn name(&self) -> &str {
                self.0
            }
            fn tags(&self) -> &[String] {
                self.1
            }
        }
        let mut entries: Vec<Entry> = self
            .hosts
            .iter()
            .map(|h| Entry(&h.name, &h.deployment.tags, Item::Ok(h)))
            .chain(
                self.errors
                    .iter()
                    .map(|e| Entry(&e.name, &[], Item::Failed(e))),
            )
            .collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        if entries.is_empty() {
            return Err(Error::EmptySelection {
                selectors: "(all hosts)".into(),
                known: vec![],
            });
        }
        let mut selection = Selection {
            hosts: vec![],
            failed: vec![],
        };
        for i in select::select(&entries, selectors)? {
            match entries[i].2 {
                Item::Ok(h) => selection.hosts.push(h),
                Item::Failed(e) => selection.failed.push(e),
            }
        }
        Ok(selection)
    }
}

#[derive(Deserialize)]
struct RawAll {
    #[serde(rename = "nixVersion")]
    nix_version: String,
    hosts: BTreeMap<String, RawHost>,
}

#[derive(Deserialize)]
struct RawHost {
    #[serde(default)]
    failed: bool,
    #[serde(default)]
    deployment: Option<Deployment>,
    #[serde(default, rename = "drvPath")]
    drv_path: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default, rename = "diskoDrvPath")]
    disko_drv_path: Option<String>,
    #[serde(default)]
    toplevel: Option<String>,
    #[serde(default)]
    extras: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    warnings: Vec<String>,
}

impl RawHost {
    fn into_host(self, name: String) -> Host {
        Host {
            uses_module: self.deployment.is_some(),
            deployment: self.deployment.unwrap_or_default(),
            drv_path: self.drv_path,
            system: self.system,
            disko_drv_path: self.disko_drv_path,
            toplevel: self.toplevel,
            extras: self.extras,
            warnings: self.warnings,
            name,
        }
    }
}

/// Nix's error, short: its message and where in the user's files
/// (see [`crate::nix::errors::short`]).
pub fn clean_nix_error(stderr: &str) -> String {
    crate::nix::errors::short(stderr)
}

/// The warnings an evaluation printed on stderr, in order, without
/// repeats: `evaluation warning: …` (Nix 2.23 and newer, `builtins.warn`,
/// which nixpkgs' `lib.warn` uses) and `trace: warning: …` (`lib.warn` on
/// older Nix, through `builtins.trace`), each with its continuation lines.
pub fn eval_warnings(stderr: &str) -> Vec<String> {
    let plain = crate::nix::errors::strip_ansi(stderr);
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in plain.lines() {
        let start = line
            .strip_prefix("evaluation warning: ")
            .or_else(|| line.strip_prefix("trace: warning: "));
        match (start, current.as_mut()) {
            (Some(text), _) => {
                if let Some(done) = current.take() {
                    out.push(done);
                }
                current = Some(text.trim_end().to_string());
            }
            (None, Some(cur))
                if line.starts_with(char::is_whitespace) && !line.trim().is_empty() =>
            {
                cur.push('\n');
                cur.push_str(line.trim());
            }
            (None, _) => {
                if let Some(done) = current.take() {
                    out.push(done);
                }
            }
        }
    }
    if let Some(done) = current {
        out.push(done);
    }
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|w| seen.insert(w.clone()));
    out
}

/// A failed evaluation: Nix's error short, or, when the user asked for
/// `--show-trace`, the whole trace (never a tail cut mid-frame).
fn eval_failure(cmd: &runner::Cmd, out: &runner::Output) -> CommandFailure {
    let mut f = runner::failure_of(cmd, out);
    let traced = cmd.argv.iter().any(|a| a == "--show-trace");
    let text = if traced {
        crate::nix::errors::full(&out.stderr)
    } else {
        clean_nix_error(&out.stderr)
    };
    if !text.is_empty() {
        f.tail = text.lines().map(String::from).collect();
    }
    f
}

/// Read the fleet from the flake: one `nix eval` for all hosts, or, with
/// systems to evaluate and more than one worker (`opts.jobs`, or chosen by
/// [`auto_jobs`] when it is 0), [`load_in_workers`].
pub async fn load(nix: &Nix, flake: &FlakeRef, opts: &EvalOptions) -> Result<Inventory> {
    if let Some(selectors) = &opts.drv_for {
        let jobs = match opts.jobs {
            0 => auto_jobs(nix, flake, selectors).await,
            n => n,
        };
        if jobs > 1 {
            let opts = EvalOptions {
                jobs,
                ..opts.clone()
            };
            return load_in_workers(nix, flake, &opts).await;
        }
    }
    load_in_one(nix, flake, opts).await
}

/// From how many systems to evaluate worker processes pay off. Measured
/// with `bench/eval` (hosts through nixpkgs' module system, 2 cores, one
/// share per worker): 4 hosts 1.12 × one process with 2 workers, 8 hosts
/// 0.83 ×, 16 hosts 0.72 ×, 32 hosts 0.85 ×, 100 hosts 0.75 ×.
pub const AUTO_WORKERS_FROM: usize = 8;

/// The most workers chosen automatically (bench/eval: more workers than
/// cores cost more than they save; each one evaluates every host's
/// deployment metadata again).
const AUTO_WORKERS_MAX: usize = 4;

/// How many evaluation processes for the systems `selectors` pick, when
/// the user did not say (`--eval-jobs`): one for fewer than
/// [`AUTO_WORKERS_FROM`] systems or on one core, else one per core up to
/// [`AUTO_WORKERS_MAX`]. Plain host names are counted as given; a glob, a
/// tag or no selector counts every host of the flake (its names only, one
/// cheap `nix eval` that evaluates no configuration). When even that
/// fails, one process (whose evaluation then says why).
async fn auto_jobs(nix: &Nix, flake: &FlakeRef, selectors: &[String]) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        return 1;
    }
    let named: Option<std::collections::BTreeSet<&str>> = selectors
        .iter()
        .map(|s| match select::Selector::parse(s) {
            select::Selector::Name(_) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    let systems = match named {
        Some(names) if !names.is_empty() => names.len(),
        _ => match host_names(nix, flake).await {
            Ok(names) => names.len(),
            Err(_) => return 1,
        },
    };
    let jobs = if systems >= AUTO_WORKERS_FROM {
        cores.min(AUTO_WORKERS_MAX)
    } else {
        1
    };
    tracing::debug!(systems, cores, jobs, "evaluation processes chosen");
    jobs
}

/// The flake's host names (`nixosConfigurations`' attribute names; no
/// configuration is evaluated).
async fn host_names(nix: &Nix, flake: &FlakeRef) -> Result<Vec<String>> {
    let names_cmd = nix.cmd([
        "eval".to_string(),
        "--json".into(),
        flake.attr("nixosConfigurations"),
        "--apply".into(),
        "builtins.attrNames".into(),
    ]);
    let names_out = runner::run(&names_cmd).await.map_err(Error::Command)?;
    if !names_out.success() {
        return Err(Error::Eval {
            what: format!("the flake {flake}"),
            failure: eval_failure(&names_cmd, &names_out),
        });
    }
    serde_json::from_str(&names_out.stdout).map_err(|e| Error::UnexpectedOutput {
        command: "nix eval".into(),
        detail: format!("the host names did not parse: {e}"),
    })
}

/// The systems of a large fleet in `opts.jobs` processes: first the
/// deployment metadata of every host (one process, no system evaluated),
/// then the selected hosts' systems dealt into shares ([`shares_for`]),
/// each a `nix eval` of its hosts alone, `opts.jobs` of them at once and
/// each bounded in memory (`opts.max_memory_mib`). Each share's hosts are
/// handed to `opts.on_evaluated` as soon as it returns (their builds can
/// start while the others evaluate). A share whose evaluation fails as a
/// whole has its hosts evaluated one by one, so every host is in the
/// result, evaluated or with its own error.
async fn load_in_workers(nix: &Nix, flake: &FlakeRef, opts: &EvalOptions) -> Result<Inventory> {
    let meta_opts = EvalOptions {
        drv_for: None,
        disko: false,
        jobs: 1,
        max_memory_mib: None,
        ..opts.clone()
    };
    let mut inv = load_in_one(nix, flake, &meta_opts).await?;
    let selectors = opts.drv_for.clone().unwrap_or_default();
    let picked: Vec<String> = inv
        .select(&selectors)?
        .hosts
        .iter()
        .map(|h| h.name.clone())
        .collect();
    let mut queue = shares_for(&picked, opts.jobs).into_iter();
    tracing::debug!(
        workers = opts.jobs,
        shares = queue.len(),
        hosts = picked.len(),
        "evaluating systems in workers"
    );
    let mut tasks = tokio::task::JoinSet::new();
    let start = |tasks: &mut tokio::task::JoinSet<_>, share: Vec<String>| {
        let (nix, flake, opts) = (nix.clone(), flake.clone(), opts.clone());
        tasks.spawn(async move {
            let r = evaluate_share(&nix, &flake, &opts, &share).await;
            (share, r)
        });
    };
    for share in queue.by_ref().take(opts.jobs.max(1)) {
        start(&mut tasks, share);
    }
    while let Some(joined) = tasks.join_next().await {
        if let Some(next) = queue.next() {
            start(&mut tasks, next);
        }
        let Ok((share, result)) = joined else {
            continue;
        };
        let evaluated = merge_share(&mut inv, &share, result?);
        tracing::debug!(hosts = ?share, "share evaluated");
        if let Some(hook) = &opts.on_evaluated {
            (hook.0)(evaluated);
        }
    }
    inv.errors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(inv)
}

/// One share's systems: a `nix eval` of those hosts alone (the others are
/// not read at all: every worker reading every host's metadata and
/// warnings would cost each nearly the whole fleet's evaluation); when it
/// fails as a whole (out of its memory, a host Nix cannot catch), each of
/// its hosts on its own.
async fn evaluate_share(
    nix: &Nix,
    flake: &FlakeRef,
    opts: &EvalOptions,
    share: &[String],
) -> Result<Inventory> {
    let share_opts = EvalOptions {
        drv_for: Some(share.to_vec()),
        only: Some(share.to_vec()),
        jobs: 1,
        ..opts.clone()
    };
    if let Ok(part) = eval_all(nix, flake, &share_opts).await? {
        return Ok(part);
    }
    let mut hosts = vec![];
    let errors = explain_failures(nix, flake, &share_opts, share.to_vec(), &mut hosts).await?;
    Ok(Inventory {
        flake: flake.to_string(),
        nix_version: String::new(),
        hosts,
        errors,
        warnings: vec![],
    })
}

/// Put a share's results into the inventory: each host's system and
/// warnings, or its error (the host then leaves `inv.hosts`). The hosts it
/// evaluated, as they now are in `inv`.
fn merge_share(inv: &mut Inventory, share: &[String], part: Inventory) -> Vec<Host> {
    for w in part.warnings {
        if !inv.warnings.contains(&w) {
            inv.warnings.push(w);
        }
    }
    let mut evaluated = vec![];
    for name in share {
        if let Some(e) = part.errors.iter().find(|e| &e.name == name) {
            inv.hosts.retain(|h| &h.name != name);
            if !inv.errors.iter().any(|x| &x.name == name) {
                inv.errors.push(e.clone());
            }
        } else if let (Some(new), Some(h)) = (
            part.hosts.iter().find(|h| &h.name == name),
            inv.hosts.iter_mut().find(|h| &h.name == name),
        ) {
            h.drv_path = new.drv_path.clone();
            h.system = new.system.clone();
            h.toplevel = new.toplevel.clone();
            h.disko_drv_path = new.disko_drv_path.clone();
            for w in &new.warnings {
                if !h.warnings.contains(w) {
                    h.warnings.push(w.clone());
                }
            }
            evaluated.push(h.clone());
        }
    }
    evaluated
}

/// The selected `names` dealt into shares, round robin (so neighbours in
/// name, often alike in cost, land apart): about eight hosts each, at
/// least one and at most two per worker. More shares than workers let the
/// first ones' builds start early and bound each process's memory; each
/// share costs a process start (bench/fleet: with four-host shares, 32
/// trivial hosts' no-op deploy took 0.8 s longer).
fn shares_for(names: &[String], jobs: usize) -> Vec<Vec<String>> {
    let jobs = jobs.max(1);
    let n = (names.len() / 8)
        .clamp(jobs, jobs * 2)
        .clamp(1, names.len().max(1));
    let mut shares = vec![vec![]; n];
    for (i, name) in names.iter().enumerate() {
        shares[i % n].push(name.clone());
    }
    shares.retain(|s: &Vec<String>| !s.is_empty());
    shares
}

/// One `nix eval` for all hosts; when it fails as a whole, the reason
/// (an old Nix, a flake without nixosConfigurations) or every host
/// evaluated on its own.
async fn load_in_one(nix: &Nix, flake: &FlakeRef, opts: &EvalOptions) -> Result<Inventory> {
    match eval_all(nix, flake, opts).await? {
        Ok(inv) => Ok(inv),
        Err((cmd, out)) => whole_failure(nix, flake, opts, &cmd, &out).await,
    }
}

/// One `nix eval` for all hosts (each under tryEval), bounded in memory
/// when `opts.max_memory_mib` says so: the inventory, or, when the
/// evaluation failed as a whole, its command and output.
async fn eval_all(
    nix: &Nix,
    flake: &FlakeRef,
    opts: &EvalOptions,
) -> Result<std::result::Result<Inventory, (runner::Cmd, runner::Output)>> {
    let mut cmd = nix.cmd([
        "eval".to_string(),
        "--json".into(),
        flake.attr("nixosConfigurations"),
        "--apply".into(),
        eval::apply(opts, None),
    ]);
    if let Some(mib) = opts.max_memory_mib {
        let limit = mib.saturating_mul(1024 * 1024);
        cmd.argv.splice(
            0..0,
            [
                "prlimit".to_string(),
                format!("--data={limit}:{limit}"),
                "--".into(),
            ],
        );
    }
    let out = runner::run(&cmd).await.map_err(Error::Command)?;
    if out.success() {
        let raw: RawAll =
            serde_json::from_str(&out.stdout).map_err(|e| Error::UnexpectedOutput {
                command: "nix eval".into(),
                detail: format!("the inventory JSON did not parse: {e}"),
            })?;
        nix::check_version(&raw.nix_version)?;
        let mut hosts = Vec::new();
        let mut failed = Vec::new();
        for (name, h) in raw.hosts {
            if h.failed {
                failed.push(name);
            } else {
                hosts.push(h.into_host(name));
            }
        }
        let errors = explain_failures(nix, flake, opts, failed, &mut hosts).await?;
        // What Nix printed that no host's `warnings` already says.
        let warnings = eval_warnings(&out.stderr)
            .into_iter()
            .filter(|w| !hosts.iter().any(|h| h.warnings.contains(w)))
            .collect();
        return Ok(Ok(Inventory {
            flake: flake.to_string(),
            nix_version: raw.nix_version,
            hosts,
            errors,
            warnings,
        }));
    }
    Ok(Err((cmd, out)))
}

/// The evaluation as a whole failed. First rule out a Nix too old for this
/// command line, then a flake-level problem, then find the host(s).
async fn whole_failure(
    nix: &Nix,
    flake: &FlakeRef,
    opts: &EvalOptions,
    cmd: &runner::Cmd,
    out: &runner::Output,
) -> Result<Inventory> {
    let failure = eval_failure(cmd, out);
    nix.probe_version().await?;
    let text = failure.output();
    if text.contains("does not provide attribute") && text.contains("nixosConfigurations") {
        return Err(Error::NoNixosConfigurations {
            flake: flake.to_string(),
            failure,
        });
    }
    let names = host_names(nix, flake).await?;
    let mut hosts = Vec::new();
    let errors = explain_failures(nix, flake, opts, names, &mut hosts).await?;
    Ok(Inventory {
        flake: flake.to_string(),
        nix_version: String::new(),
        hosts,
        errors,
        warnings: eval_warnings(&out.stderr),
    })
}

/// Evaluate `names` one by one (a few at a time): hosts that evaluate go to
/// `hosts`, the others come back with Nix's own error message.
async fn explain_failures(
    nix: &Nix,
    flake: &FlakeRef,
    opts: &EvalOptions,
    names: Vec<String>,
    hosts: &mut Vec<Host>,
) -> Result<Vec<HostError>> {
    let limit = Arc::new(tokio::sync::Semaphore::new(4));
    let mut tasks = tokio::task::JoinSet::new();
    for name in names {
        let cmd = nix.cmd([
            "eval".to_string(),
            "--json".into(),
            flake.attr("nixosConfigurations"),
            "--apply".into(),
            eval::apply(opts, Some(&name)),
        ]);
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let out = runner::run(&cmd).await;
            (name, cmd, out)
        });
    }
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok((name, cmd, out)) = joined else {
            continue;
        };
        let out = out.map_err(Error::Command)?;
        if out.success() {
            let raw: RawHost =
                serde_json::from_str(&out.stdout).map_err(|e| Error::UnexpectedOutput {
                    command: "nix eval".into(),
                    detail: format!("host {name}: {e}"),
                })?;
            let mut host = raw.into_host(name);
            // Evaluated alone: what it printed is its own.
            for w in eval_warnings(&out.stderr) {
                if !host.warnings.contains(&w) {
                    host.warnings.push(w);
                }
            }
            hosts.push(host);
        } else {
            errors.push(HostError {
                name,
                message: eval_failure(&cmd, &out).output(),
            });
        }
    }
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    errors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_dealt_round_robin() {
        let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        assert_eq!(shares_for(&names, 2), [vec!["a", "c", "e"], vec!["b", "d"]]);
        assert_eq!(shares_for(&names, 9).len(), 5);
        assert_eq!(shares_for(&names[..1], 0), [vec!["a"]]);
        assert!(shares_for(&[], 4).is_empty());
        // About eight hosts a share, one or two shares a worker.
        let many: Vec<String> = (0..100).map(|i| format!("h{i}")).collect();
        assert_eq!(shares_for(&many, 2).len(), 4);
        assert_eq!(shares_for(&many[..32], 2).len(), 4);
        assert_eq!(shares_for(&many[..16], 2).len(), 2);
        assert_eq!(shares_for(&many[..10], 2).len(), 2);
        assert_eq!(shares_for(&many, 4).len(), 8);
        assert_eq!(shares_for(&many[..16], 4).len(), 4);
    }

    #[test]
    fn globs_become_nix_regexes() {
        assert_eq!(glob_to_regex("*-vps"), ".*-vps");
        assert_eq!(glob_to_regex("web?.example"), "web.\\.example");
        assert_eq!(glob_to_regex("[!a]x"), "[^a]x");
    }

    #[test]
    fn nix_strings_are_escaped() {
        assert_eq!(nix_string(r#"a"b\c${d}"#), r#""a\"b\\c\${d}""#);
    }

    /// Warnings as each Nix prints them (tests/data/nix-errors): 2.8 has
    /// only `trace: warning:`, 2.26 and 2.34 also `evaluation warning:`.
    #[test]
    fn warnings_are_read_from_every_nix_version() {
        let trace = "a lib.warn on an older nixpkgs";
        let warn = "services.flashpods.api.package is not set; the API is left out";
        assert_eq!(
            eval_warnings(include_str!(
                "../../tests/data/nix-errors/2.8/warnings.stderr"
            )),
            [trace]
        );
        for out in [
            include_str!("../../tests/data/nix-errors/2.26/warnings.stderr"),
            include_str!("../../tests/data/nix-errors/2.34/warnings.stderr"),
        ] {
            assert_eq!(eval_warnings(out), [warn, trace]);
        }
        assert_eq!(
            eval_warnings(
                "evaluation warning: first line\n  second line\nother\nevaluation warning: first line\n  second line\n"
            ),
            ["first line\nsecond line"]
        );
    }

    #[test]
    fn nix_errors_are_cleaned() {
        let raw = "\u{1b}[31;1merror:\u{1b}[0m undefined variable 'x'\n\n       at /f.nix:1:1:\n(use '--show-trace' to show detailed location information)\n";
        assert_eq!(
            clean_nix_error(raw),
            "error: undefined variable 'x'\n       at /f.nix:1:1"
        );
    }

    fn inventory() -> Inventory {
        let host = |name: &str, tags: &[&str]| {
            let mut h = RawHost {
                failed: false,
                deployment: None,
                drv_path: None,
                disko_drv_path: None,
                toplevel: None,
                extras: BTreeMap::new(),
                system: None,
                warnings: vec![],
            }
            .into_host(name.into());
            h.deployment.tags = tags.iter().map(|t| t.to_string()).collect();
            h
        };
        Inventory {
            flake: ".".into(),
            nix_version: "2.8.0".into(),
            hosts: vec![host("hetzner-vps", &["server"]), host("yoga", &["laptop"])],
            errors: vec![HostError {
                name: "ovh-vps".into(),
                message: "error: boom".into(),
            }],
            warnings: vec![],
        }
    }

    #[test]
    fn selection_includes_failed_hosts_by_name_glob_or_all() {
        let inv = inventory();
        fn names(sel: &Selection) -> (Vec<String>, Vec<String>) {
            (
                sel.hosts.iter().map(|h| h.name.clone()).collect(),
                sel.failed.iter().map(|e| e.name.clone()).collect(),
            )
        }
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(&inv.select(&[]).unwrap()),
            (v(&["hetzner-vps", "yoga"]), v(&["ovh-vps"]))
        );
        assert_eq!(
            names(&inv.select(&["*-vps".into()]).unwrap()),
            (v(&["hetzner-vps"]), v(&["ovh-vps"]))
        );
        assert_eq!(
            names(&inv.select(&["@server".into()]).unwrap()),
            (v(&["hetzner-vps"]), v(&[]))
        );
        let sel = inv.select(&["ovh-vps".into()]).unwrap();
        match sel.failure() {
            Some(Error::HostsFailedToEvaluate { failed }) => assert_eq!(
                failed,
                vec![("ovh-vps".to_string(), "error: boom".to_string())]
            ),
            other => panic!("{other:?}"),
        }
        match inv.select(&["ovh".into()]) {
            Err(Error::UnknownHost { suggestions, .. }) => assert_eq!(suggestions[0], "ovh-vps"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn host_without_module_gets_defaults() {
        let raw: RawHost = serde_json::from_str(r#"{"deployment":null}"#).unwrap();
        let h = raw.into_host("zephyrus".into());
        assert!(!h.uses_module);
        assert_eq!(h.target_host(), "zephyrus");
        assert_eq!(h.deployment.target_user, "root");
        assert_eq!(h.deployment.target_port, 22);
        assert_eq!(h.deployment.profile, "/nix/var/nix/profiles/system");
    }

    #[test]
    fn partial_metadata_keeps_defaults_for_the_rest() {
        let raw: RawHost =
            serde_json::from_str(r#"{"deployment":{"targetHost":"10.0.0.1","tags":["a"],"healthChecks":{"services":["sshd"]}}}"#)
                .unwrap();
        let h = raw.into_host("x".into());
        assert_eq!(h.target_host(), "10.0.0.1");
        assert_eq!(h.deployment.health_checks.services, vec!["sshd"]);
        assert_eq!(h.deployment.health_checks.timeout, 60);
        assert_eq!(h.deployment.confirm_timeout, 30);
    }
}

/// The generated Nix regexes agree with the `glob` crate's reading of the
/// same selector, checked with the real `builtins.match` on random names
/// and patterns (one `nix eval` for the whole batch).
#[cfg(test)]
mod glob_agreement {
    use super::glob_to_regex;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    const ALPHABET: &[char] = &['a', 'b', '.', '+', '-', '_', '('];

    fn literal() -> impl Strategy<Value = String> {
        proptest::sample::select(ALPHABET).prop_map(String::from)
    }

    fn class() -> impl Strategy<Value = String> {
        (
            any::<bool>(),
            proptest::collection::vec(proptest::sample::select(&['a', 'b', '.', '+'][..]), 1..3),
        )
            .prop_map(|(neg, cs)| {
                format!(
                    "[{}{}]",
                    if neg { "!" } else { "" },
                    cs.into_iter().collect::<String>()
                )
            })
    }

    fn pattern() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                4 => literal(),
                1 => Just("*".to_string()),
                1 => Just("?".to_string()),
                1 => class(),
            ],
            0..6,
        )
        .prop_map(|parts| parts.concat())
    }

    fn name() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(ALPHABET), 0..7)
            .prop_map(|cs| cs.into_iter().collect())
    }

    #[test]
    fn nix_regexes_and_the_glob_crate_agree() {
        if testworld::which("nix").is_none() {
            testworld::cannot_run("nix is not installed (bash scripts/setup)");
            return;
        }
        let mut runner = TestRunner::deterministic();
        let mut cases = Vec::new();
        for _ in 0..600 {
            let p = pattern().new_tree(&mut runner).unwrap().current();
            // Names drawn at random rarely match: also try names made to fit.
            let n = name().new_tree(&mut runner).unwrap().current();
            let fitted: String = p
                .replace("[!", "[")
                .chars()
                .filter(|c| !"*?[]!".contains(*c))
                .collect();
            for candidate in [n, fitted] {
                cases.push((p.clone(), candidate));
            }
        }
        let exprs: Vec<String> = cases
            .iter()
            .map(|(p, n)| {
                format!(
                    "(builtins.match {} {} != null)",
                    super::nix_string(&glob_to_regex(p)),
                    super::nix_string(n)
                )
            })
            .collect();
        let expr = format!("[ {} ]", exprs.join(" "));
        let out = testworld::sh(&[
            "nix",
            "--extra-experimental-features",
            "nix-command",
            "eval",
            "--json",
            "--expr",
            &expr,
        ]);
        let got: Vec<bool> = serde_json::from_slice(&out.stdout).unwrap();
        let mut disagree = vec![];
        let mut compared = 0;
        for ((p, n), nix) in cases.iter().zip(got) {
            // `**` is no pattern to the glob crate (recursive wildcard): such
            // a selector is refused before any Nix runs, so nothing to compare.
            let Ok(pattern) = glob::Pattern::new(p) else {
                continue;
            };
            compared += 1;
            let glob = pattern.matches(n);
            if glob != nix {
                disagree.push(format!("pattern {p:?} name {n:?}: glob {glob}, nix {nix}"));
            }
        }
        assert!(compared > 1000, "only {compared} comparable cases");
        assert!(
            disagree.is_empty(),
            "{} of {} cases disagree:\n{}",
            disagree.len(),
            compared,
            disagree.join("\n")
        );
    }
}
