//! The SPIRE rows: server and agent health, the attested agent, the
//! registration entries, and each job type's X.509 SVID fetched from a
//! labelled container.

use super::{Tagged, host_text, section_texts};

use crate::host::scripts::validate as script;
use crate::validate::spec::{Flashpods, Spire};
use crate::validate::{Options, Row, Seat};

pub const SPIRE_SERVER: (&str, &str) = ("spire-server", "SPIRE server healthy");
pub const SPIRE_AGENT: (&str, &str) = ("spire-agent", "SPIRE agent healthy and attested");
pub const SPIRE_ENTRIES: (&str, &str) = ("spire-entries", "SPIRE registration entries present");
pub const CONTAINER_CGROUP: (&str, &str) = (
    "container-cgroup",
    "a job's container sits in a cgroup that names it (what the docker attestor reads)",
);

pub async fn spire(spire: &Spire, seat: &Seat<'_>) -> [Row; 3] {
    let r = seat
        .host(script::spire(
            &spire.bin,
            &spire.server_socket,
            &spire.agent_socket,
        ))
        .await;
    judge_spire(spire, host_text(&r))
}

/// `{trust_domain, path}` as SPIRE's JSON prints an ID.
fn spiffe(v: &serde_json::Value) -> String {
    format!(
        "spiffe://{}{}",
        v["trust_domain"].as_str().unwrap_or(""),
        v["path"].as_str().unwrap_or("")
    )
}

pub fn judge_spire(spire: &Spire, text: Result<&str, String>) -> [Row; 3] {
    let ((sid, scheck), (aid, acheck), (eid, echeck)) = (SPIRE_SERVER, SPIRE_AGENT, SPIRE_ENTRIES);
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            let hint = "the host could not be asked: check `ssh` to it";
            return [
                Row::failed(sid, scheck, e.clone(), hint),
                Row::failed(aid, acheck, e.clone(), hint),
                Row::failed(eid, echeck, e, hint),
            ];
        }
    };
    let sections = Tagged::sections(text);
    let section = |n: &str| {
        sections.get(n).map(|t| Section {
            ok: t.ok(),
            last: t.last(),
            out: t.out.join("\n"),
        })
    };
    [
        server_row(spire, section("server-health")),
        agent_row(spire, section("agent-health"), section("agents")),
        entries_row(spire, section("entries")),
    ]
}

/// One section of validate.sh's output: did its command succeed, its last
/// line, all its output.
struct Section {
    ok: bool,
    last: String,
    out: String,
}

fn server_row(spire: &Spire, health: Option<Section>) -> Row {
    let (id, check) = SPIRE_SERVER;
    match health {
        Some(Section { ok: true, last, .. }) => {
            Row::passed(id, check, format!("spire-server healthcheck: {last}"))
        }
        Some(Section { last, .. }) => Row::failed(
            id,
            check,
            format!("spire-server healthcheck: {last}"),
            format!(
                "systemctl status spire-server on the host (socket {})",
                spire.server_socket
            ),
        ),
        None => Row::failed(
            id,
            check,
            "validate.sh printed no server health",
            "run `pantheros validate -v`",
        ),
    }
}

fn agent_row(spire: &Spire, health: Option<Section>, agents: Option<Section>) -> Row {
    let (id, check) = SPIRE_AGENT;
    let agents: Vec<String> = agents
        .filter(|s| s.ok)
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s.out).ok())
        .and_then(|v| {
            v["agents"].as_array().map(|a| {
                a.iter()
                    .filter(|x| !x["banned"].as_bool().unwrap_or(false))
                    .map(|x| spiffe(&x["id"]))
                    .collect()
            })
        })
        .unwrap_or_default();
    match health {
        Some(Section { ok: true, .. }) if !agents.is_empty() => Row::passed(
            id,
            check,
            format!("healthy; attested: {}", agents.join(", ")),
        ),
        Some(Section { ok, last, .. }) => Row::failed(
            id,
            check,
            if ok {
                "healthy, but the server lists no attested agent".to_string()
            } else {
                format!("spire-agent healthcheck: {last}")
            },
            format!(
                "systemctl status spire-agent pantheros-spire-bootstrap on the host (the join token for {})",
                spire.host_id
            ),
        ),
        None => Row::failed(
            id,
            check,
            "validate.sh printed no agent health",
            "run `pantheros validate -v`",
        ),
    }
}

fn entries_row(spire: &Spire, entries: Option<Section>) -> Row {
    let (id, check) = SPIRE_ENTRIES;
    let json = match entries {
        Some(Section { ok: true, out, .. }) => out,
        Some(Section { last, .. }) => {
            return Row::failed(
                id,
                check,
                format!("spire-server entry show: {last}"),
                "systemctl status spire-server on the host",
            );
        }
        None => {
            return Row::failed(
                id,
                check,
                "validate.sh printed no entries",
                "run `pantheros validate -v`",
            );
        }
    };
    let v = match serde_json::from_str::<serde_json::Value>(&json) {
        Ok(v) => v,
        Err(e) => {
            return Row::failed(
                id,
                check,
                format!("entry show printed no JSON: {e}"),
                "the spire package's CLI",
            );
        }
    };
    let present = present_entries(&v);
    let missing: Vec<&str> = spire
        .entries
        .iter()
        .filter(|want| {
            let mut sel = want.selectors.clone();
            sel.sort();
            !present
                .iter()
                .any(|(s, p, x)| *s == want.spiffe_id && *p == want.parent_id && *x == sel)
        })
        .map(|e| e.spiffe_id.as_str())
        .collect();
    if !missing.is_empty() {
        return Row::failed(
            id,
            check,
            format!("missing (or with other selectors): {}", missing.join(", ")),
            "systemctl status pantheros-spire-entries on the host (services.flashpods.spire.entries)",
        );
    }
    let names: Vec<&str> = spire.entries.iter().map(|e| e.spiffe_id.as_str()).collect();
    Row::passed(
        id,
        check,
        format!(
            "{} of {} present: {}",
            names.len(),
            names.len(),
            names.join(", ")
        ),
    )
}

/// The entries `spire-server entry show -output json` lists: (SPIFFE ID,
/// parent ID, sorted `type:value` selectors).
fn present_entries(v: &serde_json::Value) -> Vec<(String, String, Vec<String>)> {
    let Some(entries) = v["entries"].as_array() else {
        return vec![];
    };
    entries
        .iter()
        .map(|e| {
            let mut sel: Vec<String> = e["selectors"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .map(|x| {
                            format!(
                                "{}:{}",
                                x["type"].as_str().unwrap_or(""),
                                x["value"].as_str().unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            sel.sort();
            (spiffe(&e["spiffe_id"]), spiffe(&e["parent_id"]), sel)
        })
        .collect()
}

/// One labelled container's cgroup, as the host sees it: the checklist's
/// "derive the cgroup configuration from a test container".
pub async fn container_cgroup(
    spec: &Flashpods,
    spire: &Spire,
    seat: &Seat<'_>,
    opts: &Options,
) -> Row {
    let label = format!(
        "{}={}",
        spire.label_key,
        spire.job_types.first().map_or("worker", String::as_str)
    );
    let r = seat
        .host(script::cgroup(&spec.podman_socket, &opts.image, &label))
        .await;
    judge_cgroup(spec, host_text(&r))
}

/// Which Podman socket an attestor that tells Podman apart (SPIRE's docker
/// plugin in its newer releases) asks for a container in `path`: a user
/// slice means rootless Podman of that uid (`podman_socket_path_template`,
/// `unix:///run/user/%d/podman/podman.sock` by default), another libpod
/// path rootful Podman (`podman_socket_path`).
pub fn attestor_socket(path: &str) -> Option<String> {
    if !path.contains("libpod") {
        return None;
    }
    let uid = path.split('/').find_map(|seg| {
        seg.strip_prefix("user-")?
            .strip_suffix(".slice")?
            .parse::<u32>()
            .ok()
    });
    Some(match uid {
        Some(uid) => format!("rootless Podman of uid {uid}: unix:///run/user/{uid}/podman/podman.sock unless podman_socket_path_template says otherwise"),
        None => "rootful Podman: unix:///run/podman/podman.sock unless podman_socket_path says otherwise".into(),
    })
}

pub fn judge_cgroup(spec: &Flashpods, text: Result<&str, String>) -> Row {
    let (id, check) = CONTAINER_CGROUP;
    let t = match text {
        Ok(t) => Tagged::parse(t),
        Err(e) => {
            return Row::failed(
                id,
                check,
                e,
                "the host could not be asked: check `ssh` to it",
            );
        }
    };
    let container = t.tag("ID").next().unwrap_or("").trim().to_string();
    if !t.ok() || container.len() < 12 {
        return Row::failed(
            id,
            check,
            format!("podman run: {}", t.last()),
            format!(
                "the flashpods user's Podman (systemctl status flashpods-podman; socket {}) and the image",
                spec.podman_socket
            ),
        );
    }
    let short = &container[..12];
    let paths: Vec<&str> = t
        .tag("CGROUP")
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .collect();
    if paths.is_empty() {
        return Row::failed(
            id,
            check,
            format!(
                "container {short}: its pid ({}) has no cgroup file",
                t.tag("PID").next().unwrap_or("?")
            ),
            "the container exited at once or Podman reported no pid: `podman inspect` on the host",
        );
    }
    match paths.iter().find(|p| p.contains(&container)) {
        Some(path) => {
            let asks = attestor_socket(path).map_or(String::new(), |s| {
                format!("; a Podman-aware attestor asks {s}")
            });
            Row::passed(id, check, format!("container {short} in {path}{asks}"))
        }
        None => {
            let mut seen: Vec<&str> = paths.clone();
            seen.sort_unstable();
            seen.dedup();
            Row::failed(
                id,
                check,
                format!(
                    "container {short} is in {}: no container id there",
                    seen.join(", ")
                ),
                "the attestor finds a container by the id in its cgroup, and this one has none: rootless \
                 Podman started by a system service leaves its containers in the service's cgroup unless \
                 the unit delegates (Delegate=yes) and Podman uses the systemd cgroup manager (the \
                 flashpods user's own systemd instance), on cgroups v2; see docs/validate.md",
            )
        }
    }
}

/// One labelled container for `job_type`: its SVID row and, with a token
/// service, its token exchange row (one container start for both).
pub async fn job(
    spec: &Flashpods,
    spire: &Spire,
    job_type: &str,
    seat: &Seat<'_>,
    opts: &Options,
) -> (Row, Option<Row>) {
    let tokens = spec.token_service.as_ref();
    let r = seat
        .host(script::job(
            &spec.podman_socket,
            &opts.image,
            &format!("{}={job_type}", spire.label_key),
            &spire.bin,
            &spire.agent_socket,
            tokens.map(|t| (t.socket.as_str(), t.audience.as_str())),
        ))
        .await;
    let sections = host_text(&r).map(section_texts);
    let section = |name: &str| match &sections {
        Ok(s) => Ok(s.get(name).cloned().unwrap_or_default()),
        Err(e) => Err(e.clone()),
    };
    let svid = judge_svid(
        spire,
        job_type,
        section("x509").as_deref().map_err(Clone::clone),
    );
    let token = tokens.map(|t| {
        super::judge_token(
            spire,
            t,
            job_type,
            section("token").as_deref().map_err(Clone::clone),
        )
    });
    (svid, token)
}

pub fn judge_svid(spire: &Spire, job_type: &str, text: Result<&str, String>) -> Row {
    let id = format!("svid-{job_type}");
    let check = format!(
        "a container labelled {}={job_type} gets its SVID",
        spire.label_key
    );
    let want = spire.expected_id(job_type);
    let hint = format!(
        "the agent's docker workload attestor (services.flashpods.spire.containerSocket) and the entry for \
         {want}: systemctl status spire-agent pantheros-spire-entries on the host"
    );
    let t = match text {
        Ok(t) => Tagged::parse(t),
        Err(e) => return Row::failed(&id, &check, e, hint),
    };
    let got: Vec<String> = t
        .out
        .iter()
        .filter_map(|l| l.trim().strip_prefix("SPIFFE ID:"))
        .map(|s| s.trim().to_string())
        .collect();
    if t.ok() && got.contains(&want) {
        Row::passed(&id, &check, format!("SVID {want}"))
    } else if got.is_empty() {
        Row::failed(&id, &check, format!("no SVID: {}", t.last()), hint)
    } else {
        Row::failed(
            &id,
            &check,
            format!("got {}, expected {want}", got.join(", ")),
            hint,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Outcome;
    use crate::validate::checks::fixtures::*;

    const ID: &str = "6469646e742065787065637420616e796f6e6520746f20726561642074686973";

    #[test]
    fn the_cgroup_row_finds_the_container_id_or_says_where_the_container_is() {
        let s = spec();
        let run = |cgroups: &str| {
            let lines: String = cgroups.lines().map(|l| format!("CGROUP {l}\n")).collect();
            judge_cgroup(&s, Ok(&format!("ID {ID}\nPID 4242\n{lines}EXIT 0\n")))
        };
        // Rootless Podman with the systemd cgroup manager (cgroups v2).
        let r = run(&format!(
            "0::/user.slice/user-870.slice/user@870.service/user.slice/libpod-{ID}.scope"
        ));
        assert!(r.is_passed(), "{r:?}");
        assert!(
            r.evidence
                .contains("rootless Podman of uid 870: unix:///run/user/870/podman/podman.sock"),
            "{r:?}"
        );
        // Rootful Podman, cgroupfs on v1.
        let r = run(&format!(
            "4:memory:/libpod_parent/libpod-{ID}\n1:cpu:/libpod_parent/libpod-{ID}"
        ));
        assert!(
            r.is_passed() && r.evidence.contains("rootful Podman"),
            "{r:?}"
        );
        // Docker's layout: no Podman socket named.
        let r = run(&format!("0::/system.slice/docker-{ID}.scope"));
        assert!(
            r.is_passed() && !r.evidence.contains("Podman-aware"),
            "{r:?}"
        );
        // Rootless Podman under a system service without delegation: the
        // service's cgroup, no id.
        let r = run(
            "0::/system.slice/flashpods-podman.service\n1:cpu:/system.slice/flashpods-podman.service",
        );
        assert_eq!(r.result, Outcome::Failed);
        assert!(
            r.evidence
                .contains("is in /system.slice/flashpods-podman.service: no container id"),
            "{r:?}"
        );
        assert!(r.hint.as_deref().unwrap().contains("Delegate=yes"));
        // Podman could not start it.
        let r = judge_cgroup(&s, Ok("EXIT 1\nOUT Error: alpine: image not known\n"));
        assert_eq!(r.result, Outcome::Failed);
        assert!(r.evidence.contains("image not known"), "{r:?}");
        assert_eq!(
            attestor_socket("/user-x.slice/libpod/abc")
                .as_deref()
                .map(|s| s.starts_with("rootful")),
            Some(true)
        );
    }

    #[test]
    fn the_spire_rows_read_health_agents_and_entries() {
        let sp = spire_conf();
        let entries = r#"{"entries":[
          {"spiffe_id":{"trust_domain":"flashpods.local","path":"/worker"},"parent_id":{"trust_domain":"flashpods.local","path":"/host"},"selectors":[{"type":"docker","value":"label:flashpods-job-type:worker"}]},
          {"spiffe_id":{"trust_domain":"flashpods.local","path":"/agent"},"parent_id":{"trust_domain":"flashpods.local","path":"/host"},"selectors":[{"type":"docker","value":"label:flashpods-job-type:agent"}]}]}"#;
        let agents = r#"{"agents":[{"id":{"trust_domain":"flashpods.local","path":"/spire/agent/join_token/abc"},"banned":false}]}"#;
        let text = |eh: i32, agents: &str, entries: &str| {
            let o = |s: &str| s.lines().map(|l| format!("OUT {l}\n")).collect::<String>();
            format!(
                "SECTION server-health\nEXIT 0\nOUT Server is healthy.\nSECTION agent-health\nEXIT {eh}\nOUT Agent is healthy.\nSECTION agents\nEXIT 0\n{}SECTION entries\nEXIT 0\n{}",
                o(agents),
                o(entries)
            )
        };
        let [s, a, e] = judge_spire(&sp, Ok(&text(0, agents, entries)));
        assert!(
            s.is_passed() && a.is_passed() && e.is_passed(),
            "{s:?} {a:?} {e:?}"
        );
        assert!(
            a.evidence
                .contains("spiffe://flashpods.local/spire/agent/join_token/abc")
        );
        let [_, a, _] = judge_spire(&sp, Ok(&text(0, r#"{"agents":[]}"#, entries)));
        assert!(a.evidence.contains("no attested agent"), "{a:?}");
        let [_, a, _] = judge_spire(&sp, Ok(&text(1, agents, entries)));
        assert_eq!(a.result, Outcome::Failed);
        let one = entries.replace("label:flashpods-job-type:agent", "label:other:agent");
        let [_, _, e] = judge_spire(&sp, Ok(&text(0, agents, &one)));
        assert!(
            e.evidence.contains("spiffe://flashpods.local/agent")
                && !e.evidence.contains("/worker"),
            "{e:?}"
        );
    }

    #[test]
    fn a_job_containers_output_splits_into_its_sections() {
        let text = "SECTION x509\nEXIT 0\nOUT SPIFFE ID:\tspiffe://flashpods.local/agent\nSECTION token\nSVID spiffe://flashpods.local/agent\nSTATUS 200\n";
        let s = section_texts(text);
        assert_eq!(
            s["x509"],
            "EXIT 0\nOUT SPIFFE ID:\tspiffe://flashpods.local/agent\n"
        );
        assert_eq!(
            s["token"],
            "SVID spiffe://flashpods.local/agent\nSTATUS 200\n"
        );
        assert!(judge_svid(&spire_conf(), "agent", Ok(&s["x509"])).is_passed());
        // Lines before the first section belong to none.
        assert_eq!(section_texts("stray\nSECTION a\nx\n").len(), 1);
    }

    #[test]
    fn an_svid_row_wants_the_job_types_id() {
        let sp = spire_conf();
        let ok = "EXIT 0\nOUT Received 1 svid after 3ms\nOUT \nOUT SPIFFE ID:\t\tspiffe://flashpods.local/worker\n";
        assert!(judge_svid(&sp, "worker", Ok(ok)).is_passed());
        let r = judge_svid(&sp, "agent", Ok(ok));
        assert!(
            r.evidence
                .contains("expected spiffe://flashpods.local/agent"),
            "{r:?}"
        );
        let r = judge_svid(
            &sp,
            "agent",
            Ok("EXIT 1\nOUT rpc error: no identity issued\n"),
        );
        assert!(r.evidence.contains("no identity issued"));
    }
}
