//! The container rows: one labelled job container, started through the
//! flashpods Podman socket, tries the API, rsync and the internet.

use std::collections::BTreeMap;

use super::{Tagged, host_text};

use crate::host::scripts::validate as script;
use crate::validate::spec::Flashpods;
use crate::validate::{Options, Row, Seat};

pub const CONTAINER_BLOCKED: (&str, &str) = (
    "container-blocked",
    "a job's container cannot reach the API or rsync",
);
pub const CONTAINER_INTERNET: (&str, &str) = (
    "container-internet",
    "a job's container reaches the internet",
);

fn job_label(spec: &Flashpods) -> String {
    match &spec.spire {
        Some(s) => format!(
            "{}={}",
            s.label_key,
            s.job_types.first().map_or("worker", String::as_str)
        ),
        None => "flashpods-job-type=worker".into(),
    }
}

pub async fn container(spec: &Flashpods, seat: &Seat<'_>, opts: &Options) -> [Row; 2] {
    let (ihost, iport) = (&opts.internet.0, opts.internet.1);
    let r = seat
        .host(script::container(
            &spec.podman_socket,
            &opts.image,
            &job_label(spec),
            opts.timeout,
            &[
                ("api", &spec.wireguard.address, spec.api.port),
                ("rsync", &spec.rsync.address, spec.rsync.port),
                ("internet", ihost, iport),
            ],
        ))
        .await;
    judge_container(spec, opts, host_text(&r))
}

pub fn judge_container(spec: &Flashpods, opts: &Options, text: Result<&str, String>) -> [Row; 2] {
    let (bid, bcheck) = CONTAINER_BLOCKED;
    let (iid, icheck) = CONTAINER_INTERNET;
    let podman_hint = format!(
        "the flashpods user's Podman (systemctl status flashpods-podman; socket {}); the image {} must \
         have sh and nc and be pullable or loaded (--image, services.flashpods.images)",
        spec.podman_socket, opts.image
    );
    let t = match text {
        Ok(t) => Tagged::parse(t),
        Err(e) => {
            return [
                Row::failed(bid, bcheck, e.clone(), podman_hint.clone()),
                Row::failed(iid, icheck, e, podman_hint),
            ];
        }
    };
    // The probe's own lines come through podman's output.
    let probes: BTreeMap<String, String> = t
        .out
        .iter()
        .filter_map(|l| l.strip_prefix("PROBE "))
        .filter_map(|r| r.split_once(' '))
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
    if probes.is_empty() {
        let e = format!("podman run: {}", t.last());
        return [
            Row::failed(bid, bcheck, e.clone(), podman_hint.clone()),
            Row::failed(iid, icheck, e, podman_hint),
        ];
    }
    let state = |n: &str| probes.get(n).map_or("not probed", String::as_str);
    let (api, rsync) = (verdict(state("api"), opts), verdict(state("rsync"), opts));
    let evidence = format!(
        "API {}:{} {}; rsync {}:{} {}",
        spec.wireguard.address,
        spec.api.port,
        api.words(),
        spec.rsync.address,
        spec.rsync.port,
        rsync.words()
    );
    let rules = container_rules(spec);
    let blocked = match (api, rsync) {
        (Verdict::Open, _) | (_, Verdict::Open) => Row::failed(
            bid,
            bcheck,
            evidence,
            format!(
                "the flashpods table let the container through ({rules}): a rootless container's \
                 connections leave as the user running Podman (services.flashpods.uid, \
                 services.flashpods.firewall.containerUsers), a rootful one from its network \
                 (services.flashpods.containerNetworks, `podman network inspect podman`); \
                 `nft list table inet flashpods`"
            ),
        ),
        (Verdict::Other(_), _) | (_, Verdict::Other(_)) => Row::failed(
            bid,
            bcheck,
            evidence,
            format!("the probe did not run as expected in the container ({rules}); {podman_hint}"),
        ),
        (Verdict::Refused, Verdict::Refused) => {
            Row::passed(bid, bcheck, format!("{evidence} ({rules})"))
        }
        // Dropped: kept away, but by the catch-all drop, so no container
        // rule matched this Podman's traffic; the declared rules are wrong
        // for it and the row fails, naming which port was only dropped.
        _ => Row::failed(
            bid,
            bcheck,
            format!("{evidence} ({rules})"),
            "no container rule matched the container (the catch-all drop stopped it): rootless Podman's \
             connections leave as the user running it, which must be in \
             services.flashpods.firewall.containerUsers (services.flashpods.uid); rootful Podman's come \
             from its network, which must be in services.flashpods.containerNetworks; \
             `nft list table inet flashpods`",
        ),
    };
    let internet = match state("internet") {
        "open" => Row::passed(
            iid,
            icheck,
            format!(
                "{ihost}:{iport} open",
                ihost = opts.internet.0,
                iport = opts.internet.1
            ),
        ),
        other => Row::failed(
            iid,
            icheck,
            format!("{}:{} {other}", opts.internet.0, opts.internet.1),
            "container egress: Podman's NAT (netavark's tables) and the host's IPv4 forwarding; another target: --internet",
        ),
    };
    [blocked, internet]
}

/// What one probe from the container met.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict<'a> {
    /// A TCP reset: one of the table's container rules rejected it.
    Refused,
    /// No answer within the probe's timeout: a drop stopped it.
    Dropped(u64),
    Open,
    Other(&'a str),
}

impl Verdict<'_> {
    fn words(&self) -> String {
        match self {
            Verdict::Refused => "refused (rejected by a container rule)".into(),
            Verdict::Dropped(t) => {
                format!("dropped (no answer in {t} s: the catch-all drop, not a container rule)")
            }
            Verdict::Open => "open".into(),
            Verdict::Other(s) => (*s).to_string(),
        }
    }
}

fn verdict<'a>(state: &'a str, opts: &Options) -> Verdict<'a> {
    match state.split_once(' ').unwrap_or((state, "")) {
        ("refused", _) => Verdict::Refused,
        // nc says "timed out" when nothing answered within -w.
        ("unanswered", why) if why.is_empty() || why.contains("timed out") => {
            Verdict::Dropped(opts.timeout)
        }
        ("open", _) => Verdict::Open,
        _ => Verdict::Other(state),
    }
}

/// The table's container rules as the host declares them, for the evidence.
fn container_rules(spec: &Flashpods) -> String {
    let users = &spec.firewall.container_users;
    let mut parts = vec![];
    if !users.is_empty() {
        let uids: Vec<String> = users.iter().map(u32::to_string).collect();
        parts.push(format!("rootless: uid {}", uids.join(", ")));
    }
    if !spec.container_networks.is_empty() {
        parts.push(format!("rootful: {}", spec.container_networks.join(", ")));
    }
    if parts.is_empty() {
        "the host declares no container rule".into()
    } else {
        format!("container rules for {}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Outcome;
    use crate::validate::checks::fixtures::*;

    #[test]
    fn the_container_rows_read_the_probes() {
        let s = spec();
        let o = opts();
        let [b, i] = judge_container(
            &s,
            &o,
            Ok("EXIT 0\nOUT PROBE api refused\nOUT PROBE rsync refused\nOUT PROBE internet open\n"),
        );
        assert!(b.is_passed() && i.is_passed(), "{b:?} {i:?}");
        let [b, _] = judge_container(
            &s,
            &o,
            Ok("EXIT 0\nOUT PROBE api open\nOUT PROBE rsync refused\nOUT PROBE internet open\n"),
        );
        assert!(b.evidence.contains("API 10.0.0.1:8080 open"), "{b:?}");
        assert_eq!(b.result, Outcome::Failed);
        assert!(b.hint.unwrap().contains("services.flashpods.uid"));
        let [b, _] = judge_container(
            &s,
            &o,
            Ok(
                "EXIT 0\nOUT PROBE api unanswered nc: timed out\nOUT PROBE rsync unanswered nc: timed out\nOUT PROBE internet open\n",
            ),
        );
        // Dropped: kept away by the catch-all only (what a rootless
        // container meets without the uid rule); named, and a failure.
        assert_eq!(b.result, Outcome::Failed, "{b:?}");
        assert!(
            b.hint.as_deref().unwrap().contains("containerUsers"),
            "{b:?}"
        );
        assert!(
            b.evidence
                .contains("API 10.0.0.1:8080 dropped (no answer in")
                && b.evidence
                    .contains("rootless: uid 870; rootful: 10.88.0.0/16"),
            "{b:?}"
        );
        let [b, _] = judge_container(
            &s,
            &o,
            Ok(
                "EXIT 0\nOUT PROBE api refused\nOUT PROBE rsync unanswered nc: timed out\nOUT PROBE internet open\n",
            ),
        );
        assert_eq!(b.result, Outcome::Failed, "{b:?}");
        assert!(
            b.evidence
                .contains("API 10.0.0.1:8080 refused (rejected by a container rule)")
                && b.evidence.contains("rsync 10.0.0.1:873 dropped"),
            "{b:?}"
        );
        let [b, _] = judge_container(
            &s,
            &o,
            Ok(
                "EXIT 0\nOUT PROBE api unanswered nc: bad address '10.0.0.1'\nOUT PROBE rsync refused\nOUT PROBE internet open\n",
            ),
        );
        assert_eq!(b.result, Outcome::Failed, "{b:?}");
        assert!(b.evidence.contains("bad address"), "{b:?}");
        let [_, i] = judge_container(
            &s,
            &o,
            Ok(
                "EXIT 0\nOUT PROBE api refused\nOUT PROBE rsync refused\nOUT PROBE internet unanswered nc: timed out\n",
            ),
        );
        assert!(i.evidence.contains("example.org:443 unanswered"), "{i:?}");
        let [b, i] = judge_container(&s, &o, Ok("EXIT 125\nOUT Error: alpine: image not known\n"));
        assert!(b.evidence.contains("image not known") && i.evidence.contains("image not known"));
    }
}
