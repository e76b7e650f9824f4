//! Running the pipeline for many hosts: prepare all in parallel, one
//! confirmation for the whole set, then activate in parallel; record logs,
//! `.info` files and the `--json` document; one exit code for the run.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::{HostResult, HostRun, Mode, Options, Outcome, StageError, say};
use crate::inventory::Host;
use crate::nix::Nix;
use crate::report::log::HostLog;
use crate::target::{self, Target};

pub struct FleetArgs {
    pub yes: bool,
    pub json: bool,
    pub jobs: usize,
    pub break_lock: bool,
}

/// The end of one host's run, whatever the path: release its lock, write
/// its .info, and close its SSH master connection.
async fn finish(run: &mut HostRun, err: Option<&StageError>) -> Outcome {
    run.unlock().await;
    let outcome = record(run, err);
    run.target.close().await;
    outcome
}

fn record(run: &HostRun, err: Option<&StageError>) -> Outcome {
    let mut o = run.outcome.clone();
    if let Some(e) = err {
        o.error = Some(e.render());
        run.log.note(&format!("error: {}", e.render()));
    }
    o.durations_ms.insert("total".into(), run_started_ms(run));
    let info = run.log.path.with_extension("info");
    match serde_json::to_vec_pretty(&o) {
        Ok(bytes) => {
            if let Err(e) = write_atomic(&info, &bytes) {
                eprintln!("warning: could not write {}: {e}", info.display());
            }
        }
        Err(e) => eprintln!("warning: could not encode {}: {e}", info.display()),
    }
    o
}

fn run_started_ms(run: &HostRun) -> u64 {
    run.started.elapsed().as_millis() as u64
}

/// Write a file so that no reader ever sees half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Deploy `hosts` (already evaluated with their drvPaths).
pub async fn deploy(nix: &Nix, hosts: Vec<Host>, opts: Options, args: FleetArgs) -> i32 {
    let opts = Arc::new(opts);
    let control = match target::control_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: could not create a directory for SSH control sockets: {e}");
            return crate::error::exit::FAILED_NOTHING_CHANGED;
        }
    };
    let ts = crate::report::log::timestamp();
    let kind = match opts.mode {
        Mode::BuildOnly => "build",
        Mode::Rollback => "rollback",
        Mode::Deploy | Mode::DryRun => "deploy",
    };
    let log_dir = opts.log_dir.join(kind);
    let mut runs = Vec::new();
    for h in hosts {
        let target = Target::for_host(&h, &control, opts.force_local);
        let log = match HostLog::create(&log_dir, kind, &h.name, &ts) {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "error: could not create the log file in {}: {e}",
                    log_dir.display()
                );
                return crate::error::exit::FAILED_NOTHING_CHANGED;
            }
        };
        log.note(&format!(
            "pantheros {} {} goal={} target={}",
            env!("CARGO_PKG_VERSION"),
            match opts.mode {
                Mode::Deploy => "deploy",
                Mode::BuildOnly => "build-only",
                Mode::DryRun => "dry-run",
                Mode::Rollback => "rollback",
            },
            opts.goal.as_str(),
            if target.is_local() {
                "local".into()
            } else {
                target.destination()
            }
        ));
        runs.push(HostRun::new(h, target, log, opts.clone(), nix.clone()));
    }

    if args.break_lock {
        for r in &runs {
            let cmd = r.target.root_cmd(&[
                "rm".into(),
                "-rf".into(),
                format!("{}/lock", super::target::STATE_DIR),
            ]);
            let _ = r.log.run(&cmd).await;
        }
    }

    // Phase 1: build, ship, preflight, dry-activate, diff — in parallel.
    let sem = Arc::new(Semaphore::new(args.jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for mut r in runs {
        let sem = sem.clone();
        set.spawn(async move {
            let _p = sem.acquire_owned().await;
            let res = r.prepare().await;
            (r, res)
        });
    }
    let mut prepared: Vec<(HostRun, Result<(), StageError>)> = Vec::new();
    while let Some(j) = set.join_next().await {
        match j {
            Ok(x) => prepared.push(x),
            Err(e) => eprintln!("error: a deployment task crashed: {e}"),
        }
    }
    prepared.sort_by(|a, b| a.0.host.name.cmp(&b.0.host.name));

    let mut outcomes = Vec::new();
    let mut to_activate = Vec::new();
    for (mut r, res) in prepared {
        match res {
            Err(e) => {
                say(
                    &r.host.name,
                    &format!("FAILED (nothing changed): {}", e.render()),
                );
                r.outcome.result = HostResult::Failed;
                outcomes.push(finish(&mut r, Some(&e)).await);
            }
            Ok(()) => {
                if !matches!(opts.mode, Mode::Deploy | Mode::Rollback)
                    || r.outcome.result == HostResult::Unchanged
                {
                    if r.outcome.result == HostResult::Unchanged {
                        say(&r.host.name, "already running this system: nothing to do");
                    } else if opts.mode == Mode::BuildOnly {
                        say(&r.host.name, "built");
                    }
                    if let Some(d) = &r.outcome.diff {
                        eprintln!("Changes for {}:\n{}", r.host.name, d.render());
                    }
                    outcomes.push(finish(&mut r, None).await);
                } else {
                    to_activate.push(r);
                }
            }
        }
    }

    // Phase 2: show what changes, and ask once.
    if !to_activate.is_empty() {
        for r in &to_activate {
            let from = match r.outcome.generation_before {
                Some(g) => format!("generation {g}"),
                None => "no previous generation".into(),
            };
            let to = match r.switch_generation {
                Some(g) => format!("generation {g}"),
                None => "new".into(),
            };
            eprintln!("Changes for {} ({from} -> {to}):", r.host.name);
            if let Some(d) = &r.outcome.diff {
                eprint!("{}", d.render());
            }
        }
        let proceed = if args.yes {
            true
        } else if !std::io::stdin().is_terminal() {
            eprintln!(
                "error: refusing to deploy without confirmation: stdin is not a terminal\n\
                 hint: pass --yes to deploy non-interactively, or --dry-run to only see the changes"
            );
            false
        } else {
            let names: Vec<&str> = to_activate.iter().map(|r| r.host.name.as_str()).collect();
            let verb = if opts.mode == Mode::Rollback {
                "Roll back"
            } else {
                "Deploy to"
            };
            eprintln!("{verb} {}?", names.join(", "));
            dialoguer::Input::<String>::new()
                .with_prompt("Continue with deployment? (yes/no)")
                .interact_text()
                .map(|a| matches!(a.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
                .unwrap_or(false)
        };
        if !proceed {
            for mut r in to_activate.drain(..) {
                r.outcome.result = HostResult::Failed;
                let e = StageError::new("not confirmed; nothing was changed");
                outcomes.push(finish(&mut r, Some(&e)).await);
            }
        }
    }

    // Phase 3: activate, confirm, health — in parallel.
    let mut set = tokio::task::JoinSet::new();
    for mut r in to_activate {
        let sem = sem.clone();
        set.spawn(async move {
            let _p = sem.acquire_owned().await;
            let res = r.activate().await;
            (r, res)
        });
    }
    while let Some(j) = set.join_next().await {
        let Ok((mut r, res)) = j else { continue };
        match &res {
            Ok(()) => say(
                &r.host.name,
                &format!(
                    "{}: generation {} is active",
                    if r.opts.mode == Mode::Rollback {
                        "rolled back"
                    } else {
                        "deployed"
                    },
                    r.outcome
                        .generation_after
                        .map(|g| g.to_string())
                        .unwrap_or("?".into())
                ),
            ),
            Err(e) => say(
                &r.host.name,
                &format!("{:?}: {}", r.outcome.result, e.render()),
            ),
        }
        outcomes.push(finish(&mut r, res.as_ref().err()).await);
    }
    outcomes.sort_by(|a, b| a.host.cmp(&b.host));
    let code = outcomes
        .iter()
        .map(|o| o.result.exit_code())
        .max()
        .unwrap_or(0);
    summary(&outcomes, opts.mode);
    if args.json {
        let doc = serde_json::json!({ "exitCode": code, "hosts": outcomes });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    let _ = std::fs::remove_dir_all(&control);
    code
}

fn summary(outcomes: &[Outcome], mode: Mode) {
    eprintln!("\n=== Summary ===");
    if mode == Mode::BuildOnly {
        let passed = outcomes
            .iter()
            .filter(|o| o.result == HostResult::Success)
            .count();
        eprintln!("  Passed: {passed}");
        eprintln!("  Failed: {}", outcomes.len() - passed);
        eprintln!("  Total:  {}", outcomes.len());
    }
    for o in outcomes {
        let (style, text) = match o.result {
            HostResult::Success => ("32", "ok"),
            HostResult::Unchanged => ("32", "unchanged"),
            HostResult::Failed => ("31", "FAILED (nothing changed)"),
            HostResult::RolledBack => ("33", "ROLLED BACK"),
            HostResult::RollbackFailed => ("1;31", "ROLLBACK FAILED (manual action needed)"),
        };
        let mark = crate::report::paint(style, text);
        eprintln!("  {:<20} {mark}  (log: {})", o.host, o.log.display());
    }
}
