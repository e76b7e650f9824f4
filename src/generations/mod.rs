//! Generations of a host's system profile: listing them, and choosing the
//! one `pantheros rollback` returns to.

use serde::Serialize;

use crate::error::StageError;
use crate::host::protocol::exits;
use crate::host::{Session, scripts};

/// One generation, as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Generation {
    pub number: u64,
    /// The host's local time, as nix-env prints it.
    pub date: String,
    pub current: bool,
    /// The toplevel store path the generation points at.
    pub system: String,
    /// Whether that store path still exists.
    pub present: bool,
    /// `nixos-version` of the generation, when it has one.
    pub version: Option<String>,
    /// Closure size in bytes, with `--sizes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closure_size: Option<u64>,
    /// The newest deploy record that made this generation the host's
    /// (`rollback --list` only; None when no pantheros run recorded it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<crate::deploy::record::Record>,
}

/// The deploy records after generations.sh's GEN lines, each after a
/// "== record" line; one that does not parse is left out.
pub fn parse_records(out: &str) -> Vec<crate::deploy::record::Record> {
    out.split("\n== record\n")
        .skip(1)
        .filter_map(|chunk| serde_json::from_str(chunk.trim()).ok())
        .collect()
}

/// Give each generation the newest record (by run id, which starts with
/// the time) that left the host on it.
pub fn attach_records(gens: &mut [Generation], mut records: Vec<crate::deploy::record::Record>) {
    records.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    for g in gens.iter_mut() {
        g.record = records
            .iter()
            .rev()
            .find(|r| {
                r.generation == Some(g.number) && r.toplevel.as_deref() == Some(g.system.as_str())
            })
            .cloned();
    }
}

/// Parse generations.sh's (and preflight.sh's) GEN lines: the one parser
/// of a host's generations.
pub fn parse(out: &str) -> Vec<Generation> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() < 8 || f[0] != "GEN" {
                return None;
            }
            Some(Generation {
                number: f[1].parse().ok()?,
                date: f[2].to_string(),
                current: f[3] == "(current)",
                system: f[4].to_string(),
                present: f[5] == "yes",
                version: Some(f[6].to_string()).filter(|v| !v.is_empty()),
                closure_size: f[7].trim().parse().ok(),
                record: None,
            })
        })
        .collect()
}

/// List the generations of `profile` on the session's host.
pub async fn list(
    session: &Session,
    profile: &str,
    sizes: bool,
) -> Result<Vec<Generation>, StageError> {
    list_from(session, profile, sizes, None).await
}

/// [`list`], each generation with the deploy record that made it the
/// host's (from `records_dir`).
pub async fn list_with_records(
    session: &Session,
    profile: &str,
    sizes: bool,
    records_dir: &str,
) -> Result<Vec<Generation>, StageError> {
    list_from(session, profile, sizes, Some(records_dir)).await
}

async fn list_from(
    session: &Session,
    profile: &str,
    sizes: bool,
    records_dir: Option<&str>,
) -> Result<Vec<Generation>, StageError> {
    let args = match records_dir {
        Some(dir) => scripts::generations_with_records_args(profile, sizes, dir),
        None => scripts::generations_args(profile, sizes),
    };
    let target = &session.target;
    let cmd = target.root_script(&scripts::GENERATIONS, &args);
    let out = session
        .run(&cmd)
        .await
        .map_err(|f| StageError::cmd("listing generations failed", f))?;
    if out.code == Some(exits::NO_PROFILE) {
        return Err(StageError::new(format!(
            "the profile {profile} does not exist on {}",
            if target.is_local() {
                "this machine".to_string()
            } else {
                target.destination()
            }
        ))
        .hint(
            "deploy the host first, or set pantheros.deployment.profile to the profile it uses",
        ));
    }
    if !out.success() {
        let mut e = StageError::cmd(
            "listing generations failed",
            crate::runner::failure_of(&cmd, &out),
        );
        if crate::host::needs_password(&out.stderr) {
            e = e.hint("sudo wants a password on the target: allow the deploy user to run it without one (NOPASSWD)");
        }
        return Err(e);
    }
    let mut gens = parse(&out.stdout);
    if records_dir.is_some() {
        attach_records(&mut gens, parse_records(&out.stdout));
    }
    Ok(gens)
}

/// Which generation to return to: `to`, or the newest one older than the
/// current one (what `nix-env --rollback` picks).
pub fn choose(gens: &[Generation], to: Option<u64>) -> Result<&Generation, StageError> {
    let current = gens.iter().find(|g| g.current);
    let numbers = || {
        gens.iter()
            .map(|g| g.number.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen = match to {
        Some(n) => gens.iter().find(|g| g.number == n).ok_or_else(|| {
            StageError::new(format!("generation {n} does not exist"))
                .hint(format!("existing generations: {}", numbers()))
        })?,
        None => {
            let cur = current.map(|g| g.number).unwrap_or(u64::MAX);
            gens.iter()
                .filter(|g| g.number < cur)
                .max_by_key(|g| g.number)
                .ok_or_else(|| {
                    StageError::new(format!(
                        "already at the oldest generation ({})",
                        current.map(|g| g.number).unwrap_or(0)
                    ))
                    .hint(format!(
                        "existing generations: {}; pick one with --to N",
                        numbers()
                    ))
                })?
        }
    };
    if !chosen.present {
        return Err(StageError::new(format!(
            "generation {} points at {}, which was garbage-collected",
            chosen.number, chosen.system
        ))
        .hint("pick another generation with --to N, or redeploy that configuration with `pantheros deploy`"));
    }
    Ok(chosen)
}

/// Say which generation a rollback goes to.
pub fn say_choice(session: &Session, gens: &[Generation], to: &Generation) {
    let from = gens
        .iter()
        .find(|g| g.current)
        .map(|g| g.number.to_string())
        .unwrap_or("?".into());
    session.say(&format!("rolling back: generation {from} -> {}", to.number));
}

/// The `--list` table.
/// "deploy by u@yoga from abc1234 (dirty)": who made a generation the
/// host's, and from which commit.
fn deployed_by(r: &crate::deploy::record::Record) -> String {
    let mode = serde_json::to_value(r.mode)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let rev = match (&r.origin.revision, r.origin.dirty) {
        (Some(rev), Some(true)) => format!(" from {} (dirty)", &rev[..rev.len().min(7)]),
        (Some(rev), _) => format!(" from {}", &rev[..rev.len().min(7)]),
        (None, _) => String::new(),
    };
    format!("{mode} by {}{rev}", r.origin.deployer)
}

pub fn table(gens: &[Generation]) -> String {
    let rows: Vec<Vec<String>> = gens
        .iter()
        .map(|g| {
            vec![
                g.number.to_string(),
                g.date.clone(),
                if g.current { "*".into() } else { String::new() },
                g.version.clone().unwrap_or_else(|| "-".into()),
                g.closure_size
                    .map(crate::report::human_size)
                    .unwrap_or_else(|| "-".into()),
                g.record.as_ref().map_or_else(|| "-".into(), deployed_by),
                if g.present {
                    g.system.clone()
                } else {
                    format!("{} (garbage-collected)", g.system)
                },
            ]
        })
        .collect();
    crate::report::table(
        &[
            "GEN",
            "DATE",
            "CURRENT",
            "VERSION",
            "SIZE",
            "DEPLOYED BY",
            "SYSTEM",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(n: u64, current: bool, present: bool) -> Generation {
        Generation {
            number: n,
            date: "2026-11-22 01:46:06".into(),
            current,
            system: format!("/nix/store/{}-nixos-system-x-{n}", "a".repeat(32)),
            present,
            version: None,
            closure_size: None,
            record: None,
        }
    }

    #[test]
    fn each_generation_gets_the_newest_record_that_left_the_host_on_it() {
        let mut gens = vec![g(1, false, true), g(2, true, true)];
        let rec = |run: &str, n: u64, who: &str| {
            format!(
                "== record\n{{\"version\":1,\"runId\":\"{run}\",\"mode\":\"deploy\",\"goal\":\"switch\",\"flake\":\"/f\",\
                 \"revision\":\"0123456789abcdef\",\"dirty\":true,\"deployer\":\"{who}\",\"started\":\"s\",\"finished\":\"f\",\
                 \"toplevel\":\"{}\",\"generation\":{n},\"result\":\"success\",\"systemBefore\":null,\"generationBefore\":null}}\n",
                g(n, false, true).system
            )
        };
        let out = format!(
            "GEN\t1\td t\t-\tx\tyes\t\t-\n{}{}{}== record\nnot json\n",
            rec("20261201-1", 1, "a@x"),
            rec("20261203-1", 2, "c@z"),
            rec("20261202-1", 2, "b@y")
        );
        let records = parse_records(&out);
        assert_eq!(records.len(), 3);
        attach_records(&mut gens, records);
        assert_eq!(gens[0].record.as_ref().unwrap().origin.deployer, "a@x");
        assert_eq!(gens[1].record.as_ref().unwrap().origin.deployer, "c@z");
        let t = table(&gens);
        assert!(t.contains("deploy by c@z from 0123456 (dirty)"), "{t}");
    }

    #[test]
    fn parses_the_listing() {
        let out = "GEN\t3\t2026-11-22 01:46:07\t(current)\t/nix/store/x-sys\tyes\t26.05.3 (Fixture)\t1024\nGEN\t1\t2026-11-22 01:40:00\t\t/nix/store/y\tno\t\t\n";
        let v = parse(out);
        assert_eq!(v.len(), 2);
        assert!(v[0].current && v[0].present);
        assert_eq!(v[0].version.as_deref(), Some("26.05.3 (Fixture)"));
        assert_eq!(v[0].closure_size, Some(1024));
        assert!(!v[1].current && !v[1].present && v[1].version.is_none());
    }

    #[test]
    fn previous_is_the_newest_older_than_current() {
        let gens = vec![
            g(1, false, true),
            g(2, false, true),
            g(5, true, true),
            g(7, false, true),
        ];
        assert_eq!(choose(&gens, None).unwrap().number, 2);
        assert_eq!(choose(&gens, Some(7)).unwrap().number, 7);
    }

    #[test]
    fn errors_name_what_exists() {
        let gens = vec![g(1, true, true), g(2, false, false)];
        let e = choose(&gens, None).unwrap_err();
        assert!(e.message.contains("oldest generation (1)"), "{}", e.message);
        let e = choose(&gens, Some(9)).unwrap_err();
        assert!(e.message.contains("generation 9 does not exist"));
        assert!(e.hint.unwrap().contains("1, 2"));
        let e = choose(&gens, Some(2)).unwrap_err();
        assert!(e.message.contains("garbage-collected"), "{}", e.message);
    }
}
