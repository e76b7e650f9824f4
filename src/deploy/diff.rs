//! Stage: what the new system would change, asked of the target in one
//! remote run before anything changes: `switch-to-configuration
//! dry-activate` and the closure diff (packages added, removed and changed in version, from the store path
//! names of both closures, and the closure size delta).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::build::Built;
use super::live::Live;
use super::preflight::Current;
use super::{Ctx, StageError};
use crate::host::protocol::{exits, section};
use crate::host::scripts;
use crate::nix::store_path::StorePath;

/// What activating the new system would do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What dry-activate printed, stdout and stderr in the order written.
    pub dry_activate: Vec<String>,
    pub diff: Diff,
    /// Whether it can be switched to live, or needs a reboot.
    pub live: Live,
}

/// Dry-activate the new system (and read what decides whether it can be
/// switched to live), then diff its closure against the running one.
pub async fn plan(ctx: &Ctx, current: &Current, built: &Built) -> Result<Plan, StageError> {
    let d = &ctx.host.deployment;
    let old = current.running.as_deref().or(current.system.as_deref());
    // Another activation may hold NixOS's lock: wait for it a while.
    let wait = d.activation_timeout.min(120);
    let cmd = ctx
        .session
        .target
        .root_script(
            &scripts::DRY_ACTIVATE,
            &scripts::dry_activate_args(&built.toplevel, wait, old),
        )
        .timeout(std::time::Duration::from_secs(d.activation_timeout + wait));
    let out = ctx
        .session
        .run(&cmd)
        .await
        .map_err(|f| StageError::cmd("could not run dry-activate on the target", f))?;
    if out.code == Some(exits::NOT_A_SYSTEM) {
        return Err(StageError::new(format!(
            "{} is not a NixOS system (no nixos-version or bin/switch-to-configuration)",
            built.toplevel
        ))
        .hint("deploy a nixosConfigurations.<host>.config.system.build.toplevel"));
    }
    if out.code == Some(exits::ACTIVATION_LOCKED) {
        return Err(activation_locked(&out.stdout, wait));
    }
    if out.code == Some(exits::SYSTEM_STARTING) {
        return Err(system_starting(&out.stdout, wait));
    }
    if !out.success() {
        return Err(
            StageError::cmd("dry-activate failed", crate::runner::failure_of(&cmd, &out))
                .hint("fix the activation error above; nothing was changed"),
        );
    }
    let rc: i32 = section(&out.stdout, "dry-activate-rc")
        .first()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(-1);
    let printed: Vec<String> = section(&out.stdout, "dry-activate")
        .into_iter()
        .map(String::from)
        .collect();
    if rc != 0 && rc != 100 {
        let tail = printed[printed.len().saturating_sub(20)..].join("\n    ");
        return Err(StageError::new(format!(
            "dry-activate failed: `{}/bin/switch-to-configuration dry-activate` exited {rc}\n  output (last lines):\n    {tail}",
            built.toplevel
        ))
        .hint("fix the activation error above; nothing was changed"));
    }
    let dry_activate: Vec<String> = printed.into_iter().take(40).collect();
    for l in &dry_activate {
        ctx.say(&format!("dry-activate: {l}"));
    }
    let live = Live::read(&out.stdout, rc);
    // The closures came in the same run (after "== old" and "== new").
    let sections = parse_sections(&out.stdout);
    let before = sections.get("old").cloned().unwrap_or_default();
    let after = sections.get("new").cloned().unwrap_or_default();
    Ok(Plan {
        dry_activate,
        diff: diff(&before, &after),
        live,
    })
}

/// The plan waited `wait` seconds for the host's systemd to settle.
fn system_starting(stdout: &str, wait: u64) -> StageError {
    let mut lines = stdout.lines();
    let state = lines
        .next()
        .and_then(|l| l.strip_prefix("STARTING "))
        .unwrap_or("starting")
        .trim()
        .to_string();
    let jobs: Vec<&str> = lines.map(str::trim).filter(|l| !l.is_empty()).collect();
    let jobs = if jobs.is_empty() {
        "none listed".to_string()
    } else {
        jobs.join(", ")
    };
    StageError::new(format!(
        "the host's systemd is still starting after {wait}s (SystemState {state}; queued jobs: {jobs}); \
         NixOS's activation program waits for it to settle before it does anything; nothing was changed"
    ))
    .hint(
        "on the host, `systemctl list-jobs` shows what never finishes starting: fix or stop that unit \
         (`systemctl stop UNIT`), then deploy again",
    )
}

/// The plan waited `wait` seconds for another activation to release
/// NixOS's activation lock.
fn activation_locked(stdout: &str, wait: u64) -> StageError {
    let mut lines = stdout.lines();
    let lock = lines
        .next()
        .and_then(|l| l.strip_prefix("LOCKED-BY-ACTIVATION "))
        .unwrap_or("/run/nixos/switch-to-configuration.lock")
        .to_string();
    let holders: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
    StageError::new(format!(
        "another activation holds NixOS's activation lock {lock} (waited {wait}s){}; nothing was changed",
        if holders.is_empty() {
            String::new()
        } else {
            format!(": {}", holders.join("; "))
        }
    ))
    .hint("wait for that switch (a nixos-rebuild, another deploy) to finish, then deploy again")
}

/// One closure: store paths and their NAR sizes.
#[derive(Debug, Clone, Default)]
pub struct Closure {
    pub paths: Vec<(String, u64)>,
}

impl Closure {
    pub fn size(&self) -> u64 {
        self.paths.iter().map(|(_, s)| s).sum()
    }

    /// package name → versions present.
    fn packages(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (p, _) in &self.paths {
            let Some(sp) = StorePath::parse(p) else {
                continue;
            };
            if sp.name.ends_with(".drv") {
                continue;
            }
            let (name, version) = sp.name_version();
            if version.is_empty() || name.starts_with("nixos-system-") {
                continue;
            }
            m.entry(name.to_string())
                .or_default()
                .insert(version.to_string());
        }
        m
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    pub name: String,
    pub before: Vec<String>,
    pub after: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    pub added: Vec<Change>,
    pub removed: Vec<Change>,
    pub changed: Vec<Change>,
    pub size_before: u64,
    pub size_after: u64,
    pub paths_added: usize,
    pub paths_removed: usize,
}

pub fn diff(before: &Closure, after: &Closure) -> Diff {
    let b = before.packages();
    let a = after.packages();
    let mut d = Diff {
        size_before: before.size(),
        size_after: after.size(),
        ..Default::default()
    };
    for (name, av) in &a {
        match b.get(name) {
            None => d.added.push(Change {
                name: name.clone(),
                before: vec![],
                after: av.iter().cloned().collect(),
            }),
            Some(bv) if bv != av => d.changed.push(Change {
                name: name.clone(),
                before: bv.iter().cloned().collect(),
                after: av.iter().cloned().collect(),
            }),
            _ => {}
        }
    }
    for (name, bv) in &b {
        if !a.contains_key(name) {
            d.removed.push(Change {
                name: name.clone(),
                before: bv.iter().cloned().collect(),
                after: vec![],
            });
        }
    }
    let bp: BTreeSet<&str> = before.paths.iter().map(|(p, _)| p.as_str()).collect();
    let ap: BTreeSet<&str> = after.paths.iter().map(|(p, _)| p.as_str()).collect();
    d.paths_added = ap.difference(&bp).count();
    d.paths_removed = bp.difference(&ap).count();
    d
}

fn signed_size(delta: i128) -> String {
    let sign = if delta < 0 { "-" } else { "+" };
    format!(
        "{sign}{}",
        crate::report::human_size(delta.unsigned_abs() as u64)
    )
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// The human rendering, one line per package.
    /// The changes as lines, coloured as `display` says.
    pub fn render(&self, display: &crate::report::Display) -> String {
        let width = self
            .added
            .iter()
            .chain(&self.removed)
            .chain(&self.changed)
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0);
        let mut s = String::new();
        for c in &self.changed {
            s.push_str(&format!(
                "  {} {:<width$}  {} -> {}\n",
                display.paint("33", "[U]"),
                c.name,
                c.before.join(", "),
                c.after.join(", ")
            ));
        }
        for c in &self.added {
            s.push_str(&format!(
                "  {} {:<width$}  {}\n",
                display.paint("32", "[A]"),
                c.name,
                c.after.join(", ")
            ));
        }
        for c in &self.removed {
            s.push_str(&format!(
                "  {} {:<width$}  {}\n",
                display.paint("31", "[R]"),
                c.name,
                c.before.join(", ")
            ));
        }
        if self.is_empty() {
            s.push_str("  no package versions change\n");
        }
        s.push_str(&format!(
            "  closure: {} -> {} ({}); {} paths added, {} removed\n",
            crate::report::human_size(self.size_before),
            crate::report::human_size(self.size_after),
            signed_size(self.size_after as i128 - self.size_before as i128),
            self.paths_added,
            self.paths_removed
        ));
        s
    }
}

/// Parse the output of the target-side closure listing: sections that start
/// with `== NAME` followed by `path<TAB>size` lines.
pub fn parse_sections(out: &str) -> BTreeMap<String, Closure> {
    let mut m: BTreeMap<String, Closure> = BTreeMap::new();
    let mut cur: Option<String> = None;
    for line in out.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            cur = Some(name.trim().to_string());
            m.entry(name.trim().to_string()).or_default();
        } else if let (Some(c), Some((p, sz))) = (&cur, line.split_once('\t')) {
            if let Ok(sz) = sz.trim().parse() {
                m.entry(c.clone())
                    .or_default()
                    .paths
                    .push((p.to_string(), sz));
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(paths: &[(&str, u64)]) -> Closure {
        Closure {
            paths: paths
                .iter()
                .map(|(n, s)| (format!("/nix/store/{}-{n}", "a".repeat(32)), *s))
                .collect(),
        }
    }

    fn without_colour(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn added_removed_changed_and_size() {
        let before = c(&[
            ("hello-2.12", 100),
            ("wget-1.21", 50),
            ("etc", 5),
            ("nixos-system-x-26.05.1", 1),
        ]);
        let mut after = c(&[
            ("hello-2.13", 110),
            ("curl-8.5.0", 70),
            ("etc", 5),
            ("nixos-system-x-26.05.2", 1),
        ]);
        after.paths[2].0 = format!("/nix/store/{}-etc", "b".repeat(32));
        let d = diff(&before, &after);
        assert_eq!(
            d.changed,
            vec![Change {
                name: "hello".into(),
                before: vec!["2.12".into()],
                after: vec!["2.13".into()]
            }]
        );
        assert_eq!(d.added[0].name, "curl");
        assert_eq!(d.removed[0].name, "wget");
        assert_eq!(d.size_before, 156);
        assert_eq!(d.size_after, 186);
        assert_eq!(d.paths_added, 4);
        // Without colour codes, whether or not stderr is a terminal.
        let r = without_colour(&d.render(&crate::report::Display::plain()));
        assert!(r.contains("[U] hello  2.12 -> 2.13"), "{r}");
        assert!(r.contains("[A] curl   8.5.0"), "{r}");
        assert!(r.contains("[R] wget   1.21"), "{r}");
        assert!(r.contains("156 B -> 186 B (+30 B)"), "{r}");
    }

    #[test]
    fn identical_closures_have_no_changes() {
        let a = c(&[("hello-2.12", 100)]);
        let d = diff(&a, &a);
        assert!(d.is_empty());
        assert!(
            d.render(&crate::report::Display::plain())
                .contains("no package versions change")
        );
    }

    #[test]
    fn sizes_render_human() {
        assert_eq!(crate::report::human_size(512), "512 B");
        assert_eq!(crate::report::human_size(1536), "1.5 KiB");
        assert_eq!(crate::report::human_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(signed_size(-2048), "-2.0 KiB");
    }

    #[test]
    fn sections_parse() {
        let m = parse_sections(
            "== old\n/nix/store/x-a-1\t10\n== new\n/nix/store/y-a-2\t20\n/nix/store/z-b-1\t5\n",
        );
        assert_eq!(m["old"].size(), 10);
        assert_eq!(m["new"].paths.len(), 2);
    }
}
