//! Can the new system be switched to live, or does it need a reboot? Read
//! during planning (dry-activate.sh's sections), before the one question:
//!
//! - NixOS 26.05's switch inhibitors (`system.switch.inhibitors`, a JSON
//!   object in each toplevel's `switch-inhibitors`): a key present in both
//!   the running system's and the new system's object whose value differs
//!   makes the pre-switch check refuse `switch` and `test` (never `boot`), as
//!   nixpkgs' switchable-system.nix compares them;
//! - `dry-activate` exiting 100: the new system's init is incompatible with
//!   the running one (`init-interface-version`), so a switch only makes it
//!   the boot default;
//! - a different kernel, initrd or kernel modules than `/run/booted-system`:
//!   the switch works, the new kernel runs after a reboot (a note).

use serde::Serialize;

use crate::host::protocol::section;
use crate::nix::store_path::{StorePath, split_name_version};

/// One switch inhibitor whose value changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inhibitor {
    pub key: String,
    pub before: String,
    pub after: String,
}

impl Inhibitor {
    /// "systemd: 258.1 -> 259", or "dbus-implementation: dbus -> broker".
    pub fn describe(&self) -> String {
        let (b, a) = (short(&self.before), short(&self.after));
        let (bn, bv) = split_name_version(&b);
        let (an, av) = split_name_version(&a);
        if bn == an && !bv.is_empty() && !av.is_empty() {
            format!("{}: {bn} {bv} -> {av}", self.key)
        } else {
            format!("{}: {b} -> {a}", self.key)
        }
    }
}

/// A store path's name without its store directory and hash; anything else
/// as it is.
fn short(v: &str) -> String {
    match StorePath::parse(v) {
        Some(p) => p.name,
        None => v.to_string(),
    }
}

/// What planning found about switching live.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Live {
    /// Switch inhibitors that change: a live switch is refused.
    pub inhibitors: Vec<Inhibitor>,
    /// dry-activate exited 100: the new init is incompatible; a switch
    /// makes the new system the boot default only.
    pub init_changed: bool,
    /// Boot-time parts that differ from the booted system ("new kernel
    /// 6.12.3"): the switch works, a reboot runs them.
    pub boot_changes: Vec<String>,
}

impl Live {
    /// Parse dry-activate.sh's `inhibitors-running`, `inhibitors-new` and
    /// `boot` sections, and its dry-activate exit status.
    pub fn read(out: &str, dry_activate_rc: i32) -> Live {
        let json = |name: &str| -> serde_json::Map<String, serde_json::Value> {
            let text = section(out, name).join("\n");
            match serde_json::from_str(&text) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            }
        };
        let (running, new) = (json("inhibitors-running"), json("inhibitors-new"));
        let inhibitors = running
            .iter()
            .filter_map(|(k, v)| {
                let after = new.get(k)?;
                (after != v).then(|| Inhibitor {
                    key: k.clone(),
                    before: plain(v),
                    after: plain(after),
                })
            })
            .collect();
        let boot_changes = section(out, "boot")
            .iter()
            .filter_map(|l| boot_change(l))
            .collect();
        Live {
            inhibitors,
            init_changed: dry_activate_rc == 100,
            boot_changes,
        }
    }

    /// A live switch (or test) would be refused by the pre-switch checks.
    pub fn inhibited(&self) -> bool {
        !self.inhibitors.is_empty()
    }

    /// The reasons a reboot is required or recommended, one line each.
    pub fn reasons(&self) -> Vec<String> {
        let mut r: Vec<String> = self
            .inhibitors
            .iter()
            .map(|i| format!("switch inhibitor changed: {}", i.describe()))
            .collect();
        if self.init_changed {
            r.push("the new system's init is incompatible with the running one".into());
        }
        r.extend(self.boot_changes.iter().cloned());
        r
    }

    /// The plan's one line about switching live.
    pub fn line(&self) -> String {
        if self.inhibited() {
            let which: Vec<String> = self.inhibitors.iter().map(Inhibitor::describe).collect();
            format!(
                "Live switch: refused by switch inhibitors ({}); needs --goal boot and a reboot",
                which.join(", ")
            )
        } else if self.init_changed {
            "Live switch: not possible (the new init is incompatible); a switch makes it the boot default, a reboot runs it".into()
        } else if !self.boot_changes.is_empty() {
            format!(
                "Live switch: yes; reboot to run the {}",
                self.boot_changes
                    .iter()
                    .map(|c| c.trim_start_matches("new "))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            "Live switch: yes".into()
        }
    }
}

fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// "kernel BOOTED NEW" → "new kernel 6.12.3" when both are known and differ.
fn boot_change(line: &str) -> Option<String> {
    let mut f = line.split_whitespace();
    let (link, booted, new) = (f.next()?, f.next()?, f.next()?);
    if booted == "-" || new == "-" || booted == new {
        return None;
    }
    // /nix/store/…-linux-6.12.3/bzImage: the version of the store path.
    let version = new
        .strip_prefix('/')
        .and_then(|p| {
            let parts: Vec<&str> = p.splitn(4, '/').collect();
            (parts.len() >= 3).then(|| format!("/{}/{}/{}", parts[0], parts[1], parts[2]))
        })
        .and_then(|p| StorePath::parse(&p))
        .map(|p| p.name_version().1.trim_end_matches("-modules").to_string())
        .unwrap_or_default();
    let what = match link {
        "kernel" => "kernel",
        "initrd" => "initrd",
        "kernel-modules" => "kernel modules",
        other => other,
    };
    Some(if version.is_empty() {
        format!("new {what}")
    } else {
        format!("new {what} {version}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz";

    fn out(running: &str, new: &str, boot: &str) -> String {
        format!(
            "== dry-activate\nwould activate\n== dry-activate-rc\n0\n== inhibitors-running\n{running}\n== inhibitors-new\n{new}\n== boot\n{boot}"
        )
    }

    /// Only keys present on both sides whose values differ refuse, as
    /// nixpkgs' switchInhibitors check compares them.
    #[test]
    fn changed_inhibitors_are_named_with_their_versions() {
        let o = out(
            &format!(
                r#"{{"systemd":"{H}-systemd-258.1","dbus-implementation":"dbus","gone":"x"}}"#
            ),
            &format!(
                r#"{{"systemd":"{H}-systemd-259","dbus-implementation":"broker","added":"y"}}"#
            ),
            "",
        );
        let live = Live::read(&o, 0);
        assert!(live.inhibited());
        let d: Vec<String> = live.inhibitors.iter().map(Inhibitor::describe).collect();
        assert_eq!(
            d,
            [
                "dbus-implementation: dbus -> broker",
                "systemd: systemd 258.1 -> 259"
            ]
        );
        assert!(
            live.line()
                .starts_with("Live switch: refused by switch inhibitors"),
            "{}",
            live.line()
        );
    }

    #[test]
    fn equal_or_missing_inhibitors_do_not_refuse() {
        let same = r#"{"systemd":"systemd-258.1"}"#;
        assert!(!Live::read(&out(same, same, ""), 0).inhibited());
        assert!(!Live::read(&out("", same, ""), 0).inhibited());
        assert!(!Live::read(&out(same, "not json", ""), 0).inhibited());
        assert_eq!(
            Live::read(&out(same, same, ""), 0).line(),
            "Live switch: yes"
        );
    }

    #[test]
    fn a_new_kernel_is_a_note_and_exit_100_an_incompatible_init() {
        let boot = format!(
            "kernel {H}-linux-6.12.1/bzImage {H}-linux-6.12.3/bzImage\ninitrd - {H}-initrd-linux-6.12.3/initrd\nkernel-modules {H}-linux-6.12.1-modules {H}-linux-6.12.1-modules"
        );
        let live = Live::read(&out("{}", "{}", &boot), 0);
        assert!(!live.inhibited());
        assert_eq!(live.boot_changes, ["new kernel 6.12.3"]);
        assert_eq!(
            live.line(),
            "Live switch: yes; reboot to run the kernel 6.12.3"
        );
        let live = Live::read(&out("{}", "{}", ""), 100);
        assert!(live.init_changed);
        assert_eq!(
            live.reasons(),
            ["the new system's init is incompatible with the running one"]
        );
    }
}
