//! The end of a run, as the user reads it: the summary of every host, the
//! `--json` document, the outcome of a host whose task crashed, and each
//! host's `.info` file beside its log.

use std::collections::BTreeMap;

use super::{Ctx, HostResult, Mode, Outcome, preflight};

/// One line of the run's own log for a host that finished.
pub fn finished_line(o: &Outcome) -> String {
    let detail = match (&o.toplevel, &o.error) {
        (_, Some(e)) => e.lines().next().unwrap_or_default().to_string(),
        (Some(t), None) => t.clone(),
        (None, None) => String::new(),
    };
    format!(
        "{}: {} {detail} (log: {})",
        o.host,
        o.result.word(),
        o.log.display()
    )
}

/// The run's `--json` document.
pub fn print_document(code: i32, outcomes: &[Outcome]) {
    crate::report::print_document(&serde_json::json!({ "exitCode": code, "hosts": outcomes }));
}

/// A selected host that failed to evaluate while `--keep-going` ran the
/// others: a failed outcome at stage "evaluate", with Nix's message, and a
/// log of its own that says so.
pub fn unevaluated(
    name: &str,
    message: &str,
    opts: &super::Options,
    places: &super::RunPlaces<'_>,
) -> Outcome {
    let error = format!("{name} failed to evaluate; nothing was built or changed:\n{message}");
    let log =
        match crate::report::log::HostLog::create(places.log_dir, places.kind, name, places.ts) {
            Ok(l) => {
                l.note(&error);
                l.path.clone()
            }
            Err(_) => places.log_dir.to_path_buf(),
        };
    opts.display.say(
        name,
        &format!(
            "FAILED (nothing changed): {}",
            error.lines().next().unwrap_or_default()
        ),
    );
    Outcome {
        error: Some(error),
        stage: Some("evaluate".into()),
        ..nothing_learnt(name, String::new(), opts, HostResult::Failed, log)
    }
}

/// The outcome of a host the pipeline learnt nothing about: no system,
/// generation, plan or timing; the caller adds the error and what it knows.
fn nothing_learnt(
    host: &str,
    target: String,
    opts: &super::Options,
    result: HostResult,
    log: std::path::PathBuf,
) -> Outcome {
    Outcome {
        host: host.to_string(),
        target,
        mode: opts.mode,
        goal: opts.goal,
        result,
        generation_before: None,
        generation_after: None,
        system_before: None,
        system_after: None,
        toplevel: None,
        rollback_reason: None,
        reboot_required: None,
        rebooted: false,
        reboot: None,
        live: None,
        warnings: vec![],
        facts_read: BTreeMap::new(),
        error: None,
        diff: None,
        durations_ms: BTreeMap::new(),
        keys: vec![],
        stage: None,
        log,
        started: chrono::Local::now().to_rfc3339(),
    }
}

/// A host whose task panicked or was cancelled: its state is unknown. Its
/// lock is released if this run holds it; the outcome says to check by hand.
pub async fn crashed(ctx: &Ctx, e: &tokio::task::JoinError) -> Outcome {
    let why = if e.is_panic() {
        "the deployment task for this host crashed"
    } else {
        "the deployment task for this host was cancelled"
    };
    let msg = format!("{why}; the host's state is unknown: check it by hand");
    ctx.say(&msg);
    ctx.session.log.note(&format!("{msg} ({e})"));
    if ctx.opts.mode != Mode::BuildOnly {
        preflight::unlock_after_crash(ctx).await;
    }
    let o = Outcome {
        warnings: ctx.host.warnings.clone(),
        error: Some(format!(
            "{msg}\n  hint: {}",
            super::activate::console_hint(&ctx.host.name, &ctx.host.deployment.profile)
        )),
        ..nothing_learnt(
            &ctx.host.name,
            ctx.target_label(),
            &ctx.opts,
            HostResult::Unknown,
            ctx.session.log.path.clone(),
        )
    };
    write_info(ctx, &o);
    o
}

/// The end of a run: each host's result and, for several hosts, what
/// went wrong where. `paint` styles the result words (or not, for a file).
pub fn render_summary(
    outcomes: &[Outcome],
    mode: Mode,
    paint: &dyn Fn(&str, &str) -> String,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "\n=== Summary ===");
    if mode == Mode::BuildOnly {
        let passed = outcomes
            .iter()
            .filter(|o| o.result == HostResult::Success)
            .count();
        let _ = writeln!(out, "  Passed: {passed}");
        let _ = writeln!(out, "  Failed: {}", outcomes.len() - passed);
        let _ = writeln!(out, "  Total:  {}", outcomes.len());
    }
    for o in outcomes {
        let (style, text) = match o.result {
            HostResult::Success => ("32", "ok"),
            HostResult::Unchanged => ("32", "unchanged"),
            HostResult::RebootRequired => ("1;33", "REBOOT REQUIRED (not switched live)"),
            HostResult::Failed => ("31", "FAILED (nothing changed)"),
            HostResult::Interrupted => ("33", "INTERRUPTED (nothing changed)"),
            HostResult::Unhealthy => ("1;33", "UNHEALTHY (deployed; health checks failed)"),
            HostResult::RolledBack => ("33", "ROLLED BACK"),
            HostResult::RollbackFailed => ("1;31", "ROLLBACK FAILED (manual action needed)"),
            HostResult::Unknown => ("1;31", "STATE UNKNOWN (check the host by hand)"),
        };
        let mark = paint(style, text);
        // A host `--reboot` rebooted: into what it runs now.
        let rebooted = match (&o.reboot, o.rebooted) {
            (Some(r), true) => format!(
                " (rebooted; booted {})",
                r.booted_system
                    .as_deref()
                    .map(short_system)
                    .unwrap_or("nothing that answered")
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {:<20} {mark}{rebooted}  (log: {})",
            o.host,
            o.log.display()
        );
    }
    // Several hosts: what went wrong, all in one place at the end.
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !matches!(o.result, HostResult::Success | HostResult::Unchanged))
        .collect();
    if outcomes.len() > 1 && !failed.is_empty() {
        let _ = writeln!(out, "\n=== What went wrong ===");
        for o in failed {
            let at = o
                .stage
                .as_deref()
                .map(|s| format!(" at {s}"))
                .unwrap_or_default();
            let _ = writeln!(out, "{} ({}{at}):", o.host, o.result.word());
            let text = o
                .error
                .clone()
                .or_else(|| o.rollback_reason.clone())
                .or_else(|| o.reboot_required.clone())
                .unwrap_or_else(|| "no error was recorded".into());
            for l in text.lines() {
                let _ = writeln!(out, "  {l}");
            }
            let _ = writeln!(out, "  log: {}", o.log.display());
        }
    }
    out
}

/// A system's store path without the store directory and hash.
fn short_system(p: &str) -> &str {
    let name = p.rsplit('/').next().unwrap_or(p);
    name.split_once('-').map(|(_, n)| n).unwrap_or(name)
}

pub fn summary(outcomes: &[Outcome], mode: Mode, display: &crate::report::Display) {
    display.clear();
    eprint!(
        "{}",
        render_summary(outcomes, mode, &|style, text| display.paint(style, text))
    );
}

/// The `.info` file: the outcome as JSON, beside the log.
pub fn write_info(ctx: &Ctx, o: &Outcome) {
    let info = ctx.session.log.path.with_extension("info");
    match serde_json::to_vec_pretty(o) {
        Ok(bytes) => {
            if let Err(e) = crate::report::file::write_atomic(&info, &bytes, 0o600) {
                eprintln!("warning: could not write {}: {e}", info.display());
            }
        }
        Err(e) => eprintln!("warning: could not encode {}: {e}", info.display()),
    }
}
