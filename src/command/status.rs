//! `pantheros status [SELECTOR...]`: which hosts run what the flake says.
//!
//! One evaluation gives each host's toplevel path (its derivation's output,
//! not built); one round trip per host (at most `-j` at once) reads what
//! the host runs, boots and would boot, its failed units, its deploy lock
//! and its last deploy record (`host-state.sh`). [`judge`] turns that into
//! one state per host, worst first:
//!
//! | state | when |
//! |---|---|
//! | `unreachable` | the host could not be asked |
//! | `locked` | a deploy holds its lock |
//! | `drift` | it runs a system no pantheros run left it on (or has no record) |
//! | `pending-reboot` | its boot default is not what runs, or the running kernel, initrd or modules are not the booted ones |
//! | `degraded` | systemd units have failed |
//! | `flake-ahead` | the flake's system for it is not the one it runs |
//! | `in-sync` | none of these |

use super::app::App;
use std::io::Write;
use std::sync::Arc;

use serde::Serialize;

use crate::cli::StatusArgs;
use crate::deploy::record::Record;
use crate::error::{Error, Result, exit};
use crate::host::{self, Target, protocol::section, scripts};
use crate::inventory::Host;
use crate::runner;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    InSync,
    FlakeAhead,
    Degraded,
    PendingReboot,
    Drift,
    Locked,
    Unreachable,
}

impl State {
    pub const ALL: [State; 7] = [
        State::InSync,
        State::FlakeAhead,
        State::Degraded,
        State::PendingReboot,
        State::Drift,
        State::Locked,
        State::Unreachable,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            State::InSync => "in-sync",
            State::FlakeAhead => "flake-ahead",
            State::Degraded => "degraded",
            State::PendingReboot => "pending-reboot",
            State::Drift => "drift",
            State::Locked => "locked",
            State::Unreachable => "unreachable",
        }
    }
}

/// What `host-state.sh` read on a host.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub generation: Option<u64>,
    /// The profile's system: the boot default.
    pub profile: Option<String>,
    pub running: Option<String>,
    pub booted: Option<String>,
    /// Kernel, initrd and modules that differ between running and booted.
    pub boot_files_changed: Vec<String>,
    pub systemd: bool,
    pub failed_units: Vec<String>,
    /// The lock's holder and how long it has held it.
    pub lock: Option<Lock>,
    pub record: Option<Record>,
    /// A record that is there but could not be read.
    pub record_error: Option<String>,
    /// The system of a `deploy --reboot` trial whose marker is still on
    /// the host (its boot watchdog judges that system's next boot).
    pub reboot_trial: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lock {
    pub holder: String,
    pub seconds: u64,
}

pub fn parse_probe(out: &str) -> Probe {
    let one = |name: &str| {
        section(out, name)
            .first()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
    };
    let files = |name: &str| -> Vec<(String, String)> {
        section(out, name)
            .iter()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ').unwrap_or((l, ""));
                (!k.is_empty()).then(|| (k.to_string(), v.trim().to_string()))
            })
            .collect()
    };
    let booted_files = files("booted-boot-files");
    let boot_files_changed = files("running-boot-files")
        .into_iter()
        .filter(|(k, v)| {
            booted_files
                .iter()
                .any(|(bk, bv)| bk == k && !bv.is_empty() && !v.is_empty() && bv != v)
        })
        .map(|(k, _)| k)
        .collect();
    let lock = one("lock").map(|l| {
        let (age, holder) = l.split_once(' ').unwrap_or((&l, ""));
        Lock {
            holder: holder.trim().to_string(),
            seconds: age.parse().unwrap_or(0),
        }
    });
    let record_text = section(out, "record").join("\n");
    let (record, record_error) = if record_text.trim().is_empty() {
        (None, None)
    } else {
        match serde_json::from_str::<Record>(&record_text) {
            Ok(r) => (Some(r), None),
            Err(e) => (
                None,
                Some(format!("its last deploy record is unreadable: {e}")),
            ),
        }
    };
    Probe {
        generation: one("generation").and_then(|g| g.parse().ok()),
        profile: one("profile"),
        running: one("running"),
        booted: one("booted"),
        boot_files_changed,
        systemd: one("systemd").as_deref() == Some("yes"),
        failed_units: section(out, "failed")
            .iter()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        lock,
        record,
        record_error,
        reboot_trial: one("trial"),
    }
}

/// One host's status.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    pub host: String,
    pub state: State,
    /// Why, in words: the first line is the state's own reason.
    pub details: Vec<String>,
    /// The flake's system for the host (not built).
    pub flake_system: Option<String>,
    /// None when the host could not be asked.
    pub probe: Option<Probe>,
    /// The round trip that asked it, in seconds.
    pub seconds: f64,
}

/// The store path's name without its hash, for the table.
fn short(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.split_once('-').map_or(name, |(_, rest)| rest)
}

/// Whether a record explains what the host runs: the system it activated,
/// or, for a boot-only run (the new system waits for the next boot), the
/// one that ran before it.
fn explains(r: &Record, running: &str) -> bool {
    r.toplevel.as_deref() == Some(running)
        || (r.goal == crate::deploy::Goal::Boot && r.system_before.as_deref() == Some(running))
}

/// The host's one state, and every reason that applies (worst first).
pub fn judge(
    host: &str,
    flake_system: Option<&str>,
    probe: std::result::Result<Probe, String>,
) -> HostStatus {
    let probe = match probe {
        Ok(p) => p,
        Err(why) => {
            return HostStatus {
                host: host.into(),
                state: State::Unreachable,
                details: vec![why],
                flake_system: flake_system.map(String::from),
                probe: None,
                seconds: 0.0,
            };
        }
    };
    let mut found: Vec<(State, String)> = vec![];
    if let Some(l) = &probe.lock {
        found.push((
            State::Locked,
            format!("locked by {} for {} s", l.holder, l.seconds),
        ));
    }
    let running = probe.running.as_deref().unwrap_or("");
    match (&probe.record, &probe.record_error) {
        (_, Some(e)) => found.push((State::Drift, e.clone())),
        (None, None) => found.push((
            State::Drift,
            format!(
                "runs {}, and no pantheros deploy is recorded on it",
                short(running)
            ),
        )),
        (Some(r), None) if !explains(r, running) => found.push((
            State::Drift,
            format!(
                "runs {}, not {} that {} left it on ({} at {})",
                short(running),
                r.toplevel.as_deref().map_or("?", short),
                r.origin.deployer,
                serde_json::to_value(r.result)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                r.finished
            ),
        )),
        _ => {}
    }
    if let Some(profile) = probe.profile.as_deref().filter(|p| *p != running) {
        found.push((
            State::PendingReboot,
            format!(
                "its boot default (generation {}) is {}, not the running system",
                probe.generation.map_or("?".into(), |g| g.to_string()),
                short(profile)
            ),
        ));
    }
    // A trial a --reboot run left behind (a running one holds the lock).
    if let Some(t) = probe
        .reboot_trial
        .as_deref()
        .filter(|_| probe.lock.is_none())
    {
        found.push((
            State::PendingReboot,
            format!(
                "a --reboot trial of {} was left unfinished (/var/lib/pantheros/trial): its boot watchdog judges \
                 that system's next boot; deploy again with --reboot, or remove the marker",
                short(t)
            ),
        ));
    }
    if !probe.boot_files_changed.is_empty() {
        found.push((
            State::PendingReboot,
            format!(
                "the running system's {} differ from the booted one's: a reboot runs them",
                probe.boot_files_changed.join(", ")
            ),
        ));
    }
    if !probe.failed_units.is_empty() {
        found.push((
            State::Degraded,
            format!("failed units: {}", probe.failed_units.join(", ")),
        ));
    }
    if let Some(f) = flake_system.filter(|f| *f != running) {
        found.push((
            State::FlakeAhead,
            format!(
                "the flake's system is {}; it runs {}",
                short(f),
                short(running)
            ),
        ));
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    let state = found.first().map_or(State::InSync, |f| f.0);
    let mut details: Vec<String> = found.into_iter().map(|(_, d)| d).collect();
    if details.is_empty() {
        details.push(match flake_system {
            Some(_) => format!("runs {} as the flake says", short(running)),
            None => format!("runs {}; the flake gave no system for it", short(running)),
        });
    }
    HostStatus {
        host: host.into(),
        state,
        details,
        flake_system: flake_system.map(String::from),
        probe: Some(probe),
        seconds: 0.0,
    }
}

/// Prometheus text: one `pantheros_host_state` series per host and state
/// (1 for its state), and each host's generation.
pub fn metrics(statuses: &[HostStatus]) -> String {
    let mut s = String::from(
        "# HELP pantheros_host_state 1 for the host's state as `pantheros status` judged it.\n\
         # TYPE pantheros_host_state gauge\n",
    );
    let label = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    for h in statuses {
        for st in State::ALL {
            s.push_str(&format!(
                "pantheros_host_state{{host=\"{}\",state=\"{}\"}} {}\n",
                label(&h.host),
                st.as_str(),
                u8::from(st == h.state)
            ));
        }
    }
    s.push_str(
        "# HELP pantheros_host_generation The host's current system profile generation.\n\
         # TYPE pantheros_host_generation gauge\n",
    );
    for h in statuses {
        if let Some(g) = h.probe.as_ref().and_then(|p| p.generation) {
            s.push_str(&format!(
                "pantheros_host_generation{{host=\"{}\"}} {g}\n",
                label(&h.host)
            ));
        }
    }
    s
}

async fn probe(target: &Target, profile: &str) -> std::result::Result<Probe, String> {
    if let Err(why) = target.settle_password().await {
        target.close().await;
        return Err(format!("could not be asked: {why}"));
    }
    let cmd = target
        .root_script(
            &scripts::HOST_STATE,
            &scripts::host_state_args(crate::deploy::preflight::STATE_DIR, profile),
        )
        .timeout(std::time::Duration::from_secs(30));
    let r = runner::run_ok(&cmd).await;
    target.close().await;
    match r {
        Ok(out) => Ok(parse_probe(&out.stdout)),
        Err(f) => Err(format!(
            "could not be asked ({}): {}",
            f.how,
            f.tail.last().map(String::as_str).unwrap_or("no output")
        )),
    }
}

fn table(statuses: &[HostStatus]) -> String {
    let w = statuses
        .iter()
        .map(|s| s.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!("{:<w$}  {:<14}  {:>4}  DETAIL\n", "HOST", "STATE", "GEN");
    for s in statuses {
        let generation = s
            .probe
            .as_ref()
            .and_then(|p| p.generation)
            .map_or("-".into(), |g| g.to_string());
        out.push_str(&format!(
            "{:<w$}  {:<14}  {:>4}  {}\n",
            s.host,
            s.state.as_str(),
            generation,
            s.details.first().map(String::as_str).unwrap_or("")
        ));
        for more in s.details.iter().skip(1) {
            out.push_str(&format!("{:<w$}  {:<14}  {:>4}  {more}\n", "", "", ""));
        }
    }
    out
}

pub async fn status(app: &App, args: StatusArgs) -> Result<i32> {
    let flake = app.flake()?;
    let nix = app.nix()?;
    let selectors = if args.selectors.is_empty() {
        vec!["*".to_string()]
    } else {
        args.selectors.clone()
    };
    let evaluation = std::time::Instant::now();
    let hosts: Vec<Host> =
        super::selected_hosts(&app.display, &nix, &flake, &selectors, false).await?;
    let evaluation = evaluation.elapsed().as_secs_f64();
    let control =
        host::control_dir().map_err(|e| Error::io("creating the SSH control directory", e))?;
    let password = args.password.sudo_password()?;
    let permits = Arc::new(tokio::sync::Semaphore::new(args.jobs.max(1)));
    let mut tasks = Vec::new();
    for h in &hosts {
        let target = Target::for_host(h, control.path(), false).with_password(password.clone());
        let profile = h.deployment.profile.clone();
        let permits = permits.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let started = std::time::Instant::now();
            let p = probe(&target, &profile).await;
            (p, started.elapsed().as_secs_f64())
        }));
    }
    let mut statuses = Vec::new();
    for (h, t) in hosts.iter().zip(tasks) {
        let (p, seconds) = t
            .await
            .unwrap_or_else(|e| (Err(format!("its task ended abnormally: {e}")), 0.0));
        statuses.push(HostStatus {
            seconds,
            ..judge(&h.name, h.toplevel.as_deref(), p)
        });
    }
    if let Some(path) = &args.metrics {
        // Whole (a scraper never reads half of it), and readable by one
        // running as another user (node_exporter): states, no secrets.
        crate::report::file::write_atomic(path, metrics(&statuses).as_bytes(), 0o644)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    let out_of_sync: Vec<&str> = statuses
        .iter()
        .filter(|s| s.state != State::InSync)
        .map(|s| s.host.as_str())
        .collect();
    if args.json {
        crate::report::print_document(&serde_json::json!({
            "flake": flake.arg,
            "evaluationSeconds": evaluation,
            "hosts": statuses,
            "outOfSync": out_of_sync,
        }));
    } else {
        let _ = write!(std::io::stdout().lock(), "{}", table(&statuses));
    }
    Ok(if args.exit_code && !out_of_sync.is_empty() {
        exit::NOT_IN_SYNC
    } else {
        exit::OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/aaaa-nixos-system-a-26.05";
    const B: &str = "/nix/store/bbbb-nixos-system-a-26.05";

    fn record(toplevel: &str) -> String {
        format!(
            r#"{{"version":1,"runId":"r1","mode":"deploy","goal":"switch","flake":"/f","revision":null,"dirty":null,
            "deployer":"u@yoga","started":"s","finished":"2026-12-07T10:00:00+00:00","toplevel":"{toplevel}",
            "generation":2,"result":"success","systemBefore":null,"generationBefore":1}}"#
        )
    }

    fn text(running: &str, profile: &str, rec: &str, extra: &str) -> String {
        format!(
            "== generation\n2\n== profile\n{profile}\n== running\n{running}\n== booted\n{running}\n\
             == running-boot-files\nkernel /k1\ninitrd /i1\n== booted-boot-files\nkernel /k1\ninitrd /i1\n\
             == systemd\nyes\n== failed\n{extra}== lock\n== record\n{rec}\n"
        )
    }

    #[test]
    fn each_state_comes_from_what_the_host_said() {
        let st = |flake: Option<&str>, t: &str| judge("a", flake, Ok(parse_probe(t)));
        let s = st(Some(A), &text(A, A, &record(A), ""));
        assert_eq!(s.state, State::InSync, "{s:?}");
        let s = st(Some(B), &text(A, A, &record(A), ""));
        assert_eq!(s.state, State::FlakeAhead);
        assert!(
            s.details[0].contains("bbbb") || s.details[0].contains("nixos-system-a"),
            "{s:?}"
        );
        let s = st(Some(A), &text(A, A, &record(A), "app.service\n"));
        assert_eq!(s.state, State::Degraded);
        assert_eq!(s.details[0], "failed units: app.service");
        let s = st(Some(A), &text(A, B, &record(A), ""));
        assert_eq!(s.state, State::PendingReboot);
        // Hand-changed: the host runs what no record names.
        let s = st(Some(A), &text(B, B, &record(A), ""));
        assert_eq!(s.state, State::Drift);
        assert!(s.details[0].contains("u@yoga"), "{s:?}");
        let s = st(Some(A), &text(A, A, "", ""));
        assert_eq!(s.state, State::Drift);
        assert!(s.details[0].contains("no pantheros deploy is recorded"));
        let s = st(Some(A), &text(A, A, "{broken", ""));
        assert_eq!(s.state, State::Drift);
        // The lock outranks the rest; every reason stays in the details.
        let t = text(A, A, &record(A), "x.service\n")
            .replace("== lock\n", "== lock\n42 20261207-1-9 u@yoga since now\n");
        let s = st(Some(B), &t);
        assert_eq!(s.state, State::Locked);
        assert!(s.details[0].contains("for 42 s"), "{s:?}");
        assert_eq!(s.details.len(), 3, "{s:?}");
        // A --reboot trial left behind: pending reboot, unless a run holds
        // the lock (then it is that run's).
        let t = format!("{}== trial\n{B}\n", text(A, A, &record(A), ""));
        let s = st(Some(A), &t);
        assert_eq!(s.state, State::PendingReboot, "{s:?}");
        assert!(s.details[0].contains("--reboot trial of"), "{s:?}");
        let locked = t.replace("== lock\n", "== lock\n42 20261207-1-9 u@yoga since now\n");
        let s = st(Some(A), &locked);
        assert!(!s.details.iter().any(|d| d.contains("trial")), "{s:?}");
        // A new kernel in the running system, not yet booted.
        let t = text(A, A, &record(A), "").replace(
            "== booted-boot-files\nkernel /k1",
            "== booted-boot-files\nkernel /k0",
        );
        let s = st(Some(A), &t);
        assert_eq!(s.state, State::PendingReboot);
        assert!(s.details[0].contains("kernel"), "{s:?}");
        let s = judge(
            "a",
            Some(A),
            Err("could not be asked (exit status 255): refused".into()),
        );
        assert_eq!(s.state, State::Unreachable);
    }

    #[test]
    fn metrics_are_one_series_per_host_and_state() {
        let s = vec![judge(
            "a\"b",
            Some(A),
            Ok(parse_probe(&text(A, A, &record(A), ""))),
        )];
        let m = metrics(&s);
        assert!(
            m.contains("pantheros_host_state{host=\"a\\\"b\",state=\"in-sync\"} 1\n"),
            "{m}"
        );
        assert!(
            m.contains("pantheros_host_state{host=\"a\\\"b\",state=\"drift\"} 0\n"),
            "{m}"
        );
        assert!(
            m.contains("pantheros_host_generation{host=\"a\\\"b\"} 2\n"),
            "{m}"
        );
        assert_eq!(m.matches("pantheros_host_state{").count(), State::ALL.len());
    }
}
