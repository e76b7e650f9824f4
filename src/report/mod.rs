//! What the user sees: tables, JSON documents, error reports.

use std::io::Write;

pub mod file;
pub mod log;
pub mod progress;
pub mod redact;

pub use progress::Display;

use crate::error::Error;
use crate::inventory::Host;

/// Render rows as left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{:<w$}  ", c, w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

pub fn hosts_table(hosts: &[&Host]) -> String {
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            let d = &h.deployment;
            let target = if h.is_local() {
                format!("{} (local)", h.target_host())
            } else if d.target_port == 22 {
                h.target_host().to_string()
            } else {
                format!("{}:{}", h.target_host(), d.target_port)
            };
            vec![
                h.name.clone(),
                target,
                d.target_user.clone(),
                if d.tags.is_empty() {
                    "-".into()
                } else {
                    d.tags.join(",")
                },
                d.provider.clone().unwrap_or_else(|| "-".into()),
                if d.facts.is_empty() {
                    "-".into()
                } else {
                    d.facts.keys().cloned().collect::<Vec<_>>().join(",")
                },
            ]
        })
        .collect();
    let mut out = table(
        &["NAME", "TARGET", "USER", "TAGS", "PROVIDER", "FACTS"],
        &rows,
    );
    // Hosts that still carry example values: pantheros will not deploy
    // them; values the machines decide wait for the command that records them.
    for h in hosts {
        let unfilled = h.deployment.unfilled();
        let (facts, examples): (Vec<_>, Vec<_>) =
            unfilled.iter().partition(|(_, p)| p.from_fact.is_some());
        if !facts.is_empty() {
            let what: Vec<&str> = facts
                .iter()
                .filter_map(|(_, p)| p.from_fact.as_deref())
                .collect();
            out.push_str(&format!(
                "{} waits for facts: {} (`pantheros up {}` records them)\n",
                h.name,
                what.join(", "),
                h.name
            ));
        }
        if !examples.is_empty() {
            let what: Vec<String> = examples
                .iter()
                .map(|(n, p)| format!("{n} ({})", p.file))
                .collect();
            out.push_str(&format!("{} needs setup: {}\n", h.name, what.join(", ")));
        }
    }
    out
}

/// Bytes in binary units (B, KiB, MiB, GiB).
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// The version of every `--json` document (its `version` field). Documents
/// of one version only ever gain fields; removing or changing one is a new
/// version. The schemas are in docs/json/.
pub const JSON_VERSION: u64 = 1;

/// Print `value` (an object) as a `--json` document: pretty, with its
/// `version` field.
pub fn print_document(value: &impl serde::Serialize) {
    let mut doc = serde_json::to_value(value).unwrap_or_default();
    if let Some(m) = doc.as_object_mut() {
        m.insert("version".into(), JSON_VERSION.into());
    }
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
}

/// The `--json` document of a run that ended with an error before any host
/// ran: the exit code, the error and its hint, and no hosts.
pub fn error_document(e: &Error) -> String {
    let doc = serde_json::json!({
        "version": JSON_VERSION,
        "exitCode": e.exit_code(),
        "error": {
            "message": e.to_string(),
            "hint": e.hint(),
            "command": e.failure().map(|f| shorten_argv(&f.argv)),
        },
        "hosts": [],
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Print an error the way every pantheros error looks: the cause, the
/// command and its last output lines, and what to do next.
pub fn print_error(e: &Error) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {e}");
    if let Error::HostsFailedToEvaluate { failed } = e {
        for (name, message) in failed {
            let _ = writeln!(err, "  host {name} failed to evaluate:");
            for l in message.lines() {
                let _ = writeln!(err, "    {l}");
            }
        }
    }
    if let Some(f) = e.failure() {
        let _ = writeln!(err, "  command: {}", shorten_argv(&f.argv));
        let _ = writeln!(err, "  result:  {}", f.how);
        if !f.tail.is_empty() {
            let _ = writeln!(err, "  output (last lines):");
            for l in &f.tail {
                let _ = writeln!(err, "    {l}");
            }
        }
    }
    if let Some(h) = e.hint() {
        let _ = writeln!(err, "hint: {h}");
    }
}

/// The argv for display; a Nix expression argument (several lines, or
/// longer than any remote command line pantheros sends) is elided (it is
/// logged in full with -v).
pub fn shorten_argv(argv: &[String]) -> String {
    let short: Vec<String> = argv
        .iter()
        .map(|a| {
            if a.len() > 600 || a.contains('\n') {
                format!("<expression, {} bytes; shown with -v>", a.len())
            } else {
                a.clone()
            }
        })
        .collect();
    crate::error::render_argv(&short)
}
