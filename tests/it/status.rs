//! `pantheros status` on light hosts, one per state: deployed and in sync,
//! changed by hand (drift), behind a newer flake, deployed for the next
//! boot (pending reboot), locked, unreachable; with the deploy record each
//! deploy left, the JSON schema, `--exit-code` and `--metrics`.

use std::path::Path;

use testworld::{World, assert_exit, assert_schema, json, stdout, write_fleet};

const HOSTS: [&str; 6] = ["alpha", "beta", "gamma", "delta", "eps", "zeta"];

#[test]
fn status_names_each_hosts_state_from_one_round_trip_each() {
    let Some(mut w) = World::new() else { return };
    for h in HOSTS {
        w.add_host(h);
    }
    let flake = w.path().join("fleet");
    deploy_the_fleet(&w, &flake);
    records_name_the_deploy(&w, &flake);
    put_each_host_in_its_state(&mut w, &flake);
    status_names_each_state(&w, &flake);
    the_table_exits_0(&w, &flake);
}

/// The fixture fleet with each host at its generation.
fn fleet(w: &World, flake: &Path, gens: [u32; 6]) {
    let hosts: Vec<_> = HOSTS
        .iter()
        .zip(gens)
        .map(|(h, g)| w.fixture_host(h, g, ""))
        .collect();
    write_fleet(flake, &hosts);
}

fn deploy_the_fleet(w: &World, flake: &Path) {
    // Generation 1 everywhere, then generation 2 for beta (changed back by
    // hand below) and, for the next boot only, delta.
    fleet(w, flake, [1; 6]);
    let out = w.pantheros(
        flake,
        &[
            "deploy", "--yes", "alpha", "beta", "gamma", "delta", "eps", "zeta",
        ],
    );
    assert_exit(&out, 0);
    fleet(w, flake, [1, 2, 1, 2, 1, 1]);
    assert_exit(&w.pantheros(flake, &["deploy", "--yes", "beta"]), 0);
    assert_exit(
        &w.pantheros(flake, &["deploy", "--yes", "delta", "--goal", "boot"]),
        0,
    );
}

fn records_name_the_deploy(w: &World, flake: &Path) {
    // The record beta's deploy left: whole JSON, naming what it activated.
    let rec = w
        .host("beta")
        .exec_ok(&["cat", "/var/lib/pantheros/records/last.json"]);
    let rec: serde_json::Value = serde_json::from_str(&rec).unwrap();
    assert_eq!(rec["result"], "success");
    assert_eq!(rec["generation"], 2);
    assert_eq!(
        rec["toplevel"].as_str(),
        Some(w.profile_target("beta").as_str())
    );
    assert!(rec["deployer"].as_str().unwrap().contains('@'), "{rec}");

    // `rollback --list`: each generation with the deploy that made it.
    let out = w.pantheros(flake, &["rollback", "beta", "--list", "--json"]);
    assert_exit(&out, 0);
    let doc = json(&out);
    assert_schema(&doc, "generations");
    let gens = doc["generations"].as_array().unwrap();
    assert_eq!(gens.len(), 2, "{doc:#}");
    for (g, n) in gens.iter().zip([1, 2]) {
        assert_eq!(g["record"]["generation"], n, "{g:#}");
        assert_eq!(g["record"]["result"], "success", "{g:#}");
    }
    let table = stdout(&w.pantheros(flake, &["rollback", "beta", "--list"]));
    assert!(
        table.contains("DEPLOYED BY") && table.contains("deploy by "),
        "{table}"
    );
}

fn put_each_host_in_its_state(w: &mut World, flake: &Path) {
    // beta by hand: back to generation 1, outside pantheros.
    w.host("beta").exec_ok(&[
        "sh",
        "-c",
        "nix-env -p /nix/var/nix/profiles/system --switch-generation 1 >/dev/null 2>&1 && \
         /nix/var/nix/profiles/system/bin/switch-to-configuration switch",
    ]);
    // gamma: the flake moves on without it.
    fleet(w, flake, [1, 2, 2, 2, 1, 1]);
    // eps: another deploy holds its lock.
    w.host("eps").exec_ok(&[
        "sh",
        "-c",
        "mkdir -p /var/lib/pantheros/lock && echo '20261207-000000-1 ci@runner since now' > /var/lib/pantheros/lock/owner",
    ]);
    // zeta: gone.
    w.kill_sshd("zeta");
}

fn status_names_each_state(w: &World, flake: &Path) {
    let metrics = w.path().join("status.prom");
    let out = w.pantheros(
        flake,
        &[
            "status",
            "--json",
            "--exit-code",
            "--metrics",
            metrics.to_str().unwrap(),
        ],
    );
    assert_exit(&out, 19);
    let doc = json(&out);
    assert_schema(&doc, "status");
    let state = |h: &str| {
        doc["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["host"] == h)
            .unwrap_or_else(|| panic!("{h} missing: {doc:#}"))
            .clone()
    };
    for (h, want) in [
        ("alpha", "in-sync"),
        ("beta", "drift"),
        ("gamma", "flake-ahead"),
        ("delta", "pending-reboot"),
        ("eps", "locked"),
        ("zeta", "unreachable"),
    ] {
        assert_eq!(state(h)["state"], want, "{h}: {:#}", state(h));
    }
    assert_eq!(doc["outOfSync"].as_array().unwrap().len(), 5, "{doc:#}");
    assert!(
        state("eps")["details"][0]
            .as_str()
            .unwrap()
            .contains("ci@runner")
    );
    let m = std::fs::read_to_string(&metrics).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&metrics).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "a scraper running as another user reads it");
    assert!(
        m.contains("pantheros_host_state{host=\"alpha\",state=\"in-sync\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("pantheros_host_state{host=\"zeta\",state=\"unreachable\"} 1"),
        "{m}"
    );
}

fn the_table_exits_0(w: &World, flake: &Path) {
    // The table, and without --exit-code a monitoring-neutral 0.
    let out = w.pantheros(flake, &["status", "alpha", "gamma"]);
    assert_exit(&out, 0);
    let t = stdout(&out);
    assert!(
        t.contains("alpha") && t.contains("in-sync") && t.contains("flake-ahead"),
        "{t}"
    );
    let out = w.pantheros(flake, &["status", "alpha", "--exit-code"]);
    assert_exit(&out, 0);
}
