//! The WireGuard row: a ping of the host's WireGuard address from here,
//! then the host's own record of this laptop's last handshake.

use std::collections::BTreeMap;

use super::{host_facts, host_text};
use crate::host::scripts::validate as script;
use crate::runner::{self, Output};
use crate::validate::spec::{Flashpods, Laptop, Wireguard};
use crate::validate::{Options, Row, Seat};

pub const WIREGUARD: (&str, &str) = (
    "wireguard",
    "WireGuard: a recent handshake and a ping of the host",
);

pub async fn wireguard(spec: &Flashpods, seat: &Seat<'_>, opts: &Options) -> Row {
    let addr = spec.wireguard.address.as_str();
    let wait = opts.timeout.to_string();
    // The ping goes first: it makes WireGuard handshake if it was idle.
    let ping = if which::which("ping").is_ok() {
        seat.local(&["ping", "-c", "1", "-W", &wait, addr]).await
    } else {
        seat.local(&["busybox", "ping", "-c", "1", "-W", &wait, addr])
            .await
    };
    let source = seat
        .local(&["ip", "route", "get", addr])
        .await
        .ok()
        .and_then(|o| route_source(&o.stdout));
    let handshakes = seat
        .host(script::handshakes(&spec.wireguard.interface))
        .await;
    judge_wireguard(
        spec,
        &ping,
        source.as_deref(),
        host_text(&handshakes),
        opts.handshake_within,
    )
}

/// `ip route get`'s source address (`… src 10.0.0.2 …`).
pub fn route_source(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "src" {
            return words.next().map(String::from);
        }
    }
    None
}

pub fn judge_wireguard(
    spec: &Flashpods,
    ping: &Result<Output, String>,
    source: Option<&str>,
    handshakes: Result<&str, String>,
    within: u64,
) -> Row {
    let (id, check) = WIREGUARD;
    let wg = &spec.wireguard;
    // Which laptop this machine is: the one whose address it speaks from.
    let by_source = match source.map(|src| laptop_at(wg, src)).transpose() {
        Ok(l) => l,
        Err(row) => return row,
    };
    let t = match host_facts(id, check, handshakes) {
        Ok(t) => t,
        Err(row) => return row,
    };
    if let Some(err) = t.tag("ERROR").next() {
        return Row::failed(
            id,
            check,
            format!(
                "`wg show {} latest-handshakes` on the host: {err}",
                wg.interface
            ),
            format!(
                "the host's WireGuard interface {} is not up: systemctl status wireguard-{}",
                wg.interface, wg.interface
            ),
        );
    }
    let now: u64 = t
        .tag("NOW")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let peers: BTreeMap<&str, u64> = t
        .tag("PEER")
        .filter_map(|r| {
            let (k, at) = r.split_once(' ')?;
            Some((k, at.trim().parse().ok()?))
        })
        .collect();
    // Without a source address: the laptop with the newest handshake.
    let Some((name, laptop)) = by_source.or_else(|| newest(wg, &peers)) else {
        return Row::failed(
            id,
            check,
            "the configuration declares no laptop",
            "services.flashpods.wireguard.laptops is empty",
        );
    };
    let ping_line = match ping {
        Ok(o) if o.success() => None,
        Ok(o) => Some(runner::tail(&format!("{}\n{}", o.stdout, o.stderr), 1).join("")),
        Err(e) => Some(e.clone()),
    };
    let link = Link {
        wg,
        name: &name,
        laptop: &laptop,
        now,
        within,
    };
    link.judge(&peers, ping_line)
}

/// The laptop whose WireGuard address is `src`, or the row that says no
/// laptop has it.
fn laptop_at(wg: &Wireguard, src: &str) -> Result<(String, Laptop), Row> {
    let (id, check) = WIREGUARD;
    match wg.laptops.iter().find(|(_, l)| l.address == src) {
        Some((name, l)) => Ok((name.clone(), l.clone())),
        None => Err(Row::failed(
            id,
            check,
            format!(
                "this machine reaches {} from {src}, which is no laptop's address",
                wg.address
            ),
            "add this laptop (its WireGuard address and public key) to services.flashpods.wireguard.laptops, \
             or bring up its WireGuard interface (services.flashpods.wireguard on the laptop)",
        )),
    }
}

/// The laptop with the newest handshake on the host.
fn newest(wg: &Wireguard, peers: &BTreeMap<&str, u64>) -> Option<(String, Laptop)> {
    wg.laptops
        .iter()
        .max_by_key(|(_, l)| {
            l.public_key
                .as_deref()
                .and_then(|k| peers.get(k))
                .copied()
                .unwrap_or(0)
        })
        .map(|(n, l)| (n.clone(), l.clone()))
}

/// This laptop's link to the host, as the host's handshakes and a ping
/// over it show it.
struct Link<'a> {
    wg: &'a Wireguard,
    name: &'a str,
    laptop: &'a Laptop,
    now: u64,
    within: u64,
}

impl Link<'_> {
    fn judge(&self, peers: &BTreeMap<&str, u64>, ping_line: Option<String>) -> Row {
        let (id, check) = WIREGUARD;
        let (wg, name, laptop) = (self.wg, self.name, self.laptop);
        let keys_hint = format!(
            "services.flashpods.wireguard.laptops.{name}.publicKey must be this laptop's public key \
             (`wg show` here), the laptop's peer must be the host's key, and UDP {} must reach the host",
            wg.listen_port
        );
        let Some(key) = laptop.public_key.as_deref() else {
            return Row::failed(
                id,
                check,
                format!("{name}'s WireGuard key is not known yet: the host has no peer for it"),
                format!(
                    "deploy {name} (its key is recorded in its facts), then deploy the host again"
                ),
            );
        };
        let Some(&at) = peers.get(key) else {
            return Row::failed(
                id,
                check,
                format!(
                    "the host's {} has no peer with {name}'s key {key}",
                    wg.interface
                ),
                "deploy the host: its running WireGuard peers are not services.flashpods.wireguard.laptops",
            );
        };
        if at == 0 {
            return Row::failed(
                id,
                check,
                format!(
                    "no handshake with {name} ({}) ever; ping {}: {}",
                    laptop.address,
                    wg.address,
                    ping_line.as_deref().unwrap_or("answered")
                ),
                keys_hint,
            );
        }
        let age = self.now.saturating_sub(at);
        if age > self.within {
            return Row::failed(
                id,
                check,
                format!(
                    "the last handshake with {name} was {age} s ago (more than {} s)",
                    self.within
                ),
                keys_hint,
            );
        }
        if let Some(line) = ping_line {
            return Row::failed(
                id,
                check,
                format!("ping {}: {line}", wg.address),
                format!(
                    "the host's address on {} must be {} (services.flashpods.wireguard.address)",
                    wg.interface, wg.address
                ),
            );
        }
        Row::passed(
            id,
            check,
            format!(
                "ping {} answered; {name} ({}) handshake {age} s ago",
                wg.address, laptop.address
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Outcome;
    use crate::validate::checks::fixtures::*;

    #[test]
    fn wireguard_needs_a_recent_handshake_of_this_laptop_and_a_ping() {
        let s = spec();
        let ok = Ok(out(0, "64 bytes from 10.0.0.1"));
        let hs = "NOW 1000\nPEER LAPTOPKEY= 990\n";
        let r = judge_wireguard(&s, &ok, Some("10.0.0.2"), Ok(hs), 180);
        assert_eq!(r.result, Outcome::Passed, "{r:?}");
        assert!(r.evidence.contains("handshake 10 s ago"), "{r:?}");
        // Never: a wrong key on either side.
        let r = judge_wireguard(
            &s,
            &Ok(out(1, "100% packet loss")),
            Some("10.0.0.2"),
            Ok("NOW 1000\nPEER LAPTOPKEY= 0\n"),
            180,
        );
        assert_eq!(r.result, Outcome::Failed);
        assert!(r.evidence.contains("no handshake with yoga"), "{r:?}");
        assert!(r.hint.unwrap().contains("laptops.yoga.publicKey"));
        // Old.
        let r = judge_wireguard(
            &s,
            &ok,
            Some("10.0.0.2"),
            Ok("NOW 1000\nPEER LAPTOPKEY= 100\n"),
            180,
        );
        assert!(r.evidence.contains("900 s ago"), "{r:?}");
        // The host does not know this laptop's key.
        let r = judge_wireguard(
            &s,
            &ok,
            Some("10.0.0.2"),
            Ok("NOW 1000\nPEER OTHER= 990\n"),
            180,
        );
        assert!(r.evidence.contains("has no peer with yoga's key"), "{r:?}");
        // This machine is no laptop.
        let r = judge_wireguard(&s, &ok, Some("192.168.1.5"), Ok(hs), 180);
        assert!(
            r.evidence.contains("from 192.168.1.5, which is no laptop"),
            "{r:?}"
        );
        // The interface is missing.
        let r = judge_wireguard(
            &s,
            &ok,
            None,
            Ok("NOW 1\nERROR Unable to access interface: No such device"),
            180,
        );
        assert!(r.evidence.contains("No such device"), "{r:?}");
        // ssh failed.
        let r = judge_wireguard(&s, &ok, None, Err("ssh failed: timeout".into()), 180);
        assert_eq!(r.result, Outcome::Failed);
        // Ping fails although the handshake is recent.
        let r = judge_wireguard(
            &s,
            &Ok(out(1, "1 packets transmitted, 0 received")),
            Some("10.0.0.2"),
            Ok(hs),
            180,
        );
        assert!(r.evidence.starts_with("ping 10.0.0.1:"), "{r:?}");
    }

    #[test]
    fn route_source_reads_ip_route_get() {
        assert_eq!(
            route_source("10.0.0.1 dev wg0 src 10.0.0.2 uid 0 \n    cache \n").as_deref(),
            Some("10.0.0.2")
        );
        assert_eq!(
            route_source("RTNETLINK answers: Network is unreachable"),
            None
        );
    }
}
