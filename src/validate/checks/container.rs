//! The container rows: one labelled job container, started through the
//! flashpods Podman socket, tries the API, rsync and the internet.

use std::collections::BTreeMap;

use super::{Tagged, host_text};

use crate::target::scripts::validate as script;
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
    let (api, rsync) = (state("api"), state("rsync"));
    let evidence = format!(
        "API {}:{} {api}; rsync {}:{} {rsync}",
        spec.wireguard.address, spec.api.port, spec.rsync.address, spec.rsync.port
    );
    let blocked = if api == "refused" && rsync == "refused" {
        Row::passed(bid, bcheck, evidence)
    } else if api == "open" || rsync == "open" {
        Row::failed(
            bid,
            bcheck,
            evidence,
            "the flashpods table must reject the container networks: services.flashpods.containerNetworks \
             must cover Podman's networks (`podman network inspect podman`), and `nft list table inet flashpods`",
        )
    } else {
        Row::failed(
            bid,
            bcheck,
            evidence,
            "the flashpods table's container rule did not reject the container (it was only dropped, or \
             not stopped): services.flashpods.containerNetworks must cover Podman's networks, and \
             `nft list table inet flashpods` must have the rule",
        )
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
        let [b, _] = judge_container(
            &s,
            &o,
            Ok(
                "EXIT 0\nOUT PROBE api unanswered nc: timed out\nOUT PROBE rsync unanswered nc: timed out\nOUT PROBE internet open\n",
            ),
        );
        assert_eq!(b.result, Outcome::Failed);
        assert!(b.hint.unwrap().contains("did not reject"));
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
