//! The rsync rows: the uploads module over WireGuard, and the running
//! daemon's own `hosts allow`.

use std::collections::BTreeMap;

use super::{host_facts, host_text};
use crate::host::scripts::validate as script;
use crate::runner::{self, Output};
use crate::validate::spec::Flashpods;
use crate::validate::{Options, Row, Seat};

pub const RSYNC_WIREGUARD: (&str, &str) = (
    "rsync-wireguard",
    "rsync lists the uploads module over WireGuard",
);
pub const RSYNC_ALLOW: (&str, &str) =
    ("rsync-allow", "the running rsyncd lets in the laptops only");

pub async fn rsync_over_wireguard(spec: &Flashpods, seat: &Seat<'_>, opts: &Options) -> Row {
    let url = format!(
        "rsync://{}:{}/{}/",
        spec.rsync.address, spec.rsync.port, spec.rsync.module_name
    );
    let t = opts.timeout.to_string();
    let out = seat
        .local(&[
            "rsync",
            &format!("--contimeout={t}"),
            &format!("--timeout={t}"),
            &url,
        ])
        .await;
    judge_rsync_over_wireguard(&url, &out)
}

pub fn judge_rsync_over_wireguard(url: &str, out: &Result<Output, String>) -> Row {
    let (id, check) = RSYNC_WIREGUARD;
    match out {
        Ok(o) if o.success() => Row::passed(
            id,
            check,
            format!("rsync {url}: listed ({} entries)", o.stdout.lines().count()),
        ),
        Ok(o) => Row::failed(
            id,
            check,
            format!(
                "rsync {url}: {}",
                runner::tail(&format!("{}\n{}", o.stdout, o.stderr), 2).join(" / ")
            ),
            "services.flashpods.rsync.allow must hold this laptop's WireGuard address; systemctl status rsync on the host",
        ),
        Err(e) => Row::failed(
            id,
            check,
            e.clone(),
            "rsync must be installed on this laptop",
        ),
    }
}

pub async fn rsync_allow(spec: &Flashpods, seat: &Seat<'_>) -> Row {
    let r = seat.host(script::rsyncd()).await;
    judge_rsync_allow(spec, host_text(&r))
}

/// `key = value` of rsyncd.conf, per section ("" = global), keys lowercase.
fn rsyncd_conf(lines: &[String]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut conf: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            conf.entry(section.clone())
                .or_default()
                .insert(k.trim().to_lowercase(), v.trim().to_string());
        }
    }
    conf
}

pub fn judge_rsync_allow(spec: &Flashpods, text: Result<&str, String>) -> Row {
    let (id, check) = RSYNC_ALLOW;
    let t = match host_facts(id, check, text) {
        Ok(t) => t,
        Err(row) => return row,
    };
    if let Some(err) = t.tag("ERROR").next() {
        return Row::failed(
            id,
            check,
            err.to_string(),
            "systemctl status rsync on the host (services.flashpods.rsync.enable)",
        );
    }
    let daemon = t.tag("DAEMON").next().unwrap_or("? ?").to_string();
    let file = daemon.split_once(' ').map_or("", |(_, f)| f).to_string();
    let conf = rsyncd_conf(&t.out);
    let module = spec.rsync.module_name.as_str();
    let lookup = |key: &str| {
        conf.get(module)
            .and_then(|m| m.get(key))
            .or_else(|| conf.get("").and_then(|g| g.get(key)))
            .or_else(|| conf.get("global").and_then(|g| g.get(key)))
            .cloned()
    };
    let hint = "rsyncd's `hosts allow` must be exactly services.flashpods.rsync.allow and `hosts deny` `*`: \
                deploy the host, and look for a hand-written rsyncd.conf";
    if !conf.contains_key(module) {
        return Row::failed(
            id,
            check,
            format!("{file} has no [{module}] module"),
            "services.flashpods.rsync.moduleName, and deploy the host",
        );
    }
    let words = |s: &str| -> Vec<String> {
        let mut v: Vec<String> = s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    let mut declared = spec.rsync.allow.clone();
    declared.sort();
    let allow = lookup("hosts allow");
    let deny = lookup("hosts deny");
    let evidence = format!(
        "rsyncd (pid {}, {file}): hosts allow = {}; hosts deny = {}",
        daemon.split(' ').next().unwrap_or("?"),
        allow.as_deref().unwrap_or("(unset: everyone)"),
        deny.as_deref().unwrap_or("(unset)")
    );
    match (allow.as_deref().map(words), deny.as_deref()) {
        (Some(a), Some("*")) | (Some(a), None) if a == declared => Row::passed(id, check, evidence),
        (Some(a), Some(_)) if a == declared => Row::failed(
            id,
            check,
            format!("{evidence}: with both set, a client matching neither is let in"),
            hint,
        ),
        _ => Row::failed(
            id,
            check,
            format!("{evidence}; declared: {}", declared.join(" ")),
            hint,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Outcome;
    use crate::validate::checks::fixtures::*;

    #[test]
    fn rsyncd_must_let_in_the_laptops_only() {
        let s = spec();
        let conf = |allow: &str, deny: &str| {
            format!(
                "DAEMON 42 /nix/store/x-rsyncd.conf\nOUT address = 10.0.0.1\nOUT port = 873\nOUT \nOUT [uploads]\n\
                 OUT path = /tmp/flashpods/uploads\nOUT hosts allow = {allow}\nOUT hosts deny = {deny}\n"
            )
        };
        let r = judge_rsync_allow(&s, Ok(&conf("10.0.0.2", "*")));
        assert!(r.is_passed(), "{r:?}");
        assert!(
            r.evidence.contains("pid 42, /nix/store/x-rsyncd.conf"),
            "{r:?}"
        );
        let r = judge_rsync_allow(&s, Ok(&conf("10.0.0.0/24", "*")));
        assert_eq!(r.result, Outcome::Failed);
        assert!(
            r.evidence.contains("hosts allow = 10.0.0.0/24")
                && r.evidence.contains("declared: 10.0.0.2"),
            "{r:?}"
        );
        let r = judge_rsync_allow(&s, Ok(&conf("10.0.0.2", "10.9.9.9")));
        assert!(r.evidence.contains("matching neither is let in"), "{r:?}");
        let r = judge_rsync_allow(
            &s,
            Ok("DAEMON 42 /etc/rsyncd.conf\nOUT [other]\nOUT path = /x\n"),
        );
        assert!(r.evidence.contains("has no [uploads] module"), "{r:?}");
        let r = judge_rsync_allow(&s, Ok("ERROR no rsync daemon runs on the host\n"));
        assert!(r.hint.unwrap().contains("systemctl status rsync"));
        let ok =
            judge_rsync_over_wireguard("rsync://x/uploads/", &Ok(out(0, "drwx .\n-rw job.tar\n")));
        assert!(ok.is_passed() && ok.evidence.contains("2 entries"));
    }
}
