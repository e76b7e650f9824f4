//! `pantheros validate HOST`: the Flashpods checklist's Phase 4, run against
//! what the host's own configuration declares ([`spec::Flashpods`], read in
//! the inventory's one evaluation). Some checks run here, on the laptop
//! (WireGuard, the API, rsync); the others run on the host over SSH
//! (`validate.sh`), among them the ones inside a labelled container.
//!
//! [`validate`] reads in the checklist's order; each row is a value: passed,
//! failed (with its evidence and a hint naming the option or unit to look
//! at) or not run (with the reason: a check that cannot run is never
//! reported as passed). Rows that need WireGuard are not run when it is
//! down, so one broken property fails one row.

pub mod checks;
pub mod spec;

use std::time::Instant;

use serde::Serialize;

use crate::host::{Target, scripts};
use crate::runner::{self, Cmd, Output};
use spec::Flashpods;

/// How a row ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Passed,
    Failed,
    NotRun,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::NotRun => "not run",
        }
    }
}

/// One row of the sign-off table.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// Stable name (`wireguard`, `api-wireguard`, `svid-worker`, …).
    pub id: String,
    /// What is checked, in words.
    pub check: String,
    pub result: Outcome,
    /// What was seen: the command's answer, the address, the age.
    pub evidence: String,
    /// For a failed row: which option or unit to look at.
    pub hint: Option<String>,
    pub seconds: f64,
}

impl Row {
    pub fn passed(id: &str, check: &str, evidence: impl Into<String>) -> Row {
        Row::new(id, check, Outcome::Passed, evidence.into(), None)
    }

    pub fn failed(
        id: &str,
        check: &str,
        evidence: impl Into<String>,
        hint: impl Into<String>,
    ) -> Row {
        Row::new(
            id,
            check,
            Outcome::Failed,
            evidence.into(),
            Some(hint.into()),
        )
    }

    pub fn not_run(id: &str, check: &str, why: impl Into<String>) -> Row {
        Row::new(id, check, Outcome::NotRun, why.into(), None)
    }

    fn new(id: &str, check: &str, result: Outcome, evidence: String, hint: Option<String>) -> Row {
        Row {
            id: id.into(),
            check: check.into(),
            result,
            evidence,
            hint,
            seconds: 0.0,
        }
    }

    fn took(mut self, since: Instant) -> Row {
        self.seconds = (since.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        self
    }

    pub fn is_passed(&self) -> bool {
        self.result == Outcome::Passed
    }
}

/// What the run may vary (the command line's options).
#[derive(Debug, Clone)]
pub struct Options {
    pub handshake_within: u64,
    pub image: String,
    pub internet: (String, u16),
    pub public_address: String,
    /// ssh's port on the public address: the control that proves the
    /// address answers at all.
    pub public_ssh_port: u16,
    pub timeout: u64,
}

/// Where the probes run: here (the laptop) and on the host.
pub struct Seat<'a> {
    pub target: &'a Target,
    pub timeout: u64,
}

impl Seat<'_> {
    /// `validate.sh` on the host, as root (`args` from [`scripts::validate`]).
    /// An Err is a command that could not run at all (ssh, a timeout).
    pub async fn host(&self, args: Vec<String>) -> Result<Output, String> {
        let cmd = self
            .target
            .root_script(&scripts::VALIDATE, &args)
            .timeout(std::time::Duration::from_secs(self.timeout * 6 + 30));
        settle(&cmd, runner::run(&cmd).await)
    }

    /// A command here, on the laptop.
    pub async fn local(&self, argv: &[&str]) -> Result<Output, String> {
        let cmd = Cmd::new(argv.iter().copied())
            .timeout(std::time::Duration::from_secs(self.timeout * 3 + 5));
        settle(&cmd, runner::run(&cmd).await)
    }
}

fn settle(cmd: &Cmd, r: Result<Output, crate::error::CommandFailure>) -> Result<Output, String> {
    match r {
        Ok(out) if out.code == Some(255) && cmd.argv.first().map(String::as_str) == Some("ssh") => {
            Err(format!(
                "ssh failed: {}",
                runner::tail(&out.stderr, 3).join(" / ")
            ))
        }
        Ok(out) => Ok(out),
        Err(f) => Err(format!("`{}` {}: {}", f.command_line(), f.how, f.output())),
    }
}

/// The rows so far; each is shown to `seen` as it is made (the progress
/// display), then kept.
struct Rows<'a> {
    rows: Vec<Row>,
    seen: &'a dyn Fn(&Row),
}

impl Rows<'_> {
    fn push(&mut self, row: Row) {
        (self.seen)(&row);
        self.rows.push(row);
    }
}

/// Run the checklist's Phase 4 against `spec`, in its order; `seen` is
/// told of each row as it is made.
pub async fn validate(
    spec: &Flashpods,
    seat: &Seat<'_>,
    opts: &Options,
    seen: &dyn Fn(&Row),
) -> Vec<Row> {
    let mut rows = Rows {
        rows: Vec::new(),
        seen,
    };
    macro_rules! timed {
        ($e:expr) => {{
            let started = Instant::now();
            let r: Row = $e;
            r.took(started)
        }};
    }

    // WireGuard first: the laptop's checks below ride it.
    let wireguard = timed!(checks::wireguard(spec, seat, opts).await);
    let tunnel = wireguard.is_passed();
    rows.push(wireguard);
    let over_tunnel = |id: &str, check: &str| {
        Row::not_run(id, check, "WireGuard is not up (see the wireguard row)")
    };

    // The API: over WireGuard only (when the host runs one).
    if let Some(not_run) = checks::api_rows_not_run(spec) {
        for r in not_run {
            rows.push(r);
        }
    } else {
        rows.push(if tunnel {
            timed!(checks::api_over_wireguard(spec, seat, opts).await)
        } else {
            over_tunnel(checks::API_WIREGUARD.0, checks::API_WIREGUARD.1)
        });
        rows.push(timed!(checks::api_not_public(spec, seat, opts).await));
        rows.push(timed!(checks::api_listens_on_wireguard(spec, seat).await));
    }

    // rsync: the laptop lists the uploads; nobody else may.
    if spec.rsync.enable {
        rows.push(if tunnel {
            timed!(checks::rsync_over_wireguard(spec, seat, opts).await)
        } else {
            over_tunnel(checks::RSYNC_WIREGUARD.0, checks::RSYNC_WIREGUARD.1)
        });
        rows.push(timed!(checks::rsync_allow(spec, seat).await));
    } else {
        for (id, check) in [checks::RSYNC_WIREGUARD, checks::RSYNC_ALLOW] {
            rows.push(Row::not_run(
                id,
                check,
                "services.flashpods.rsync.enable is false",
            ));
        }
    }

    // A job's container: kept from the API and rsync, on the internet.
    let started = Instant::now();
    let [blocked, internet] = checks::container(spec, seat, opts).await;
    rows.push(blocked.took(started));
    rows.push(internet);

    // SPIRE: server, agent, entries; then one labelled container per job
    // type for its SVID and (with a token service) its token exchange.
    match &spec.spire {
        Some(spire) => {
            let started = Instant::now();
            for r in checks::spire(spire, seat).await {
                rows.push(r.took(started));
            }
            rows.push(timed!(
                checks::container_cgroup(spec, spire, seat, opts).await
            ));
            let mut exchanges = Vec::new();
            for job_type in &spire.job_types {
                let started = Instant::now();
                let (svid, token) = checks::job(spec, spire, job_type, seat, opts).await;
                rows.push(svid.took(started));
                exchanges.extend(token.map(|t| t.took(started)));
            }
            if spec.token_service.is_none() {
                exchanges.push(checks::token_exchange_not_run(spec));
            }
            for r in exchanges {
                rows.push(r);
            }
        }
        None => {
            for (id, check) in [
                checks::SPIRE_SERVER,
                checks::SPIRE_AGENT,
                checks::SPIRE_ENTRIES,
                checks::CONTAINER_CGROUP,
            ] {
                rows.push(Row::not_run(
                    id,
                    check,
                    "services.flashpods.spire.enable is false",
                ));
            }
            rows.push(checks::token_exchange_not_run(spec));
        }
    }
    // Tailscale: joined with its auth key, when the host runs it.
    rows.push(if spec.tailscale {
        timed!(checks::tailscale(seat).await)
    } else {
        Row::not_run(
            checks::TAILSCALE.0,
            checks::TAILSCALE.1,
            "services.tailscale.enable is false",
        )
    });
    rows.rows
}

/// The failed rows' ids.
pub fn failed(rows: &[Row]) -> Vec<&str> {
    rows.iter()
        .filter(|r| r.result == Outcome::Failed)
        .map(|r| r.id.as_str())
        .collect()
}

/// The sign-off table, then each failed row's hint.
pub fn render(host: &str, checked_at: &str, rows: &[Row]) -> String {
    let id_w = rows.iter().map(|r| r.id.len()).max().unwrap_or(5).max(5);
    let mut s = format!("=== Flashpods sign-off: {host} ({checked_at}) ===\n");
    s.push_str(&format!(
        "{:<id_w$}  {:<7}  {:>6}  EVIDENCE\n",
        "CHECK", "RESULT", "TIME"
    ));
    for r in rows {
        s.push_str(&format!(
            "{:<id_w$}  {:<7}  {:>5.1}s  {}\n",
            r.id,
            r.result.label(),
            r.seconds,
            r.evidence
        ));
    }
    let failed: Vec<&Row> = rows
        .iter()
        .filter(|r| r.result == Outcome::Failed)
        .collect();
    let not_run = rows.iter().filter(|r| r.result == Outcome::NotRun).count();
    let passed = rows.iter().filter(|r| r.is_passed()).count();
    s.push_str(&format!(
        "\n{passed} passed, {} failed, {not_run} not run\n",
        failed.len()
    ));
    for r in failed {
        s.push_str(&format!(
            "  {}: {}\n    hint: {}\n",
            r.id,
            r.check,
            r.hint.as_deref().unwrap_or("")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_failed_row_with_its_hint() {
        let rows = vec![
            Row::passed("wireguard", "WireGuard is up", "ping ok"),
            Row::failed(
                "api-listen",
                "the API listens on WireGuard only",
                "0.0.0.0:8080",
                "look at X",
            ),
            Row::not_run("token-exchange", "tokens", "no token service"),
        ];
        let t = render("srv", "now", &rows);
        assert!(t.contains("=== Flashpods sign-off: srv (now) ==="), "{t}");
        assert!(t.contains("1 passed, 1 failed, 1 not run"), "{t}");
        assert!(
            t.contains("  api-listen: the API listens on WireGuard only\n    hint: look at X"),
            "{t}"
        );
        assert!(t.contains("token-exchange  not run"), "{t}");
        assert_eq!(failed(&rows), ["api-listen"]);
    }
}
