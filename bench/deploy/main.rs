//! bench/deploy: what a deploy costs over the floor, on a systemd host.
//!
//! The floor is what no deploy tool can avoid: `nix-store --realise` of an
//! already-built closure plus one fresh `ssh host true`. Measured here: a
//! no-op redeploy (the same closure again) and a one-package-change deploy
//! (build, copy, activate, confirm, health), each as wall time (median) and
//! as a ratio to the floor, and the number of SSH connections the target's
//! sshd accepted per deploy (from its journal; the goal is one master
//! connection plus the one fresh reachability proof).
//!
//!     bash bench/deploy/run.sh        (needs root; builds the release binary)

use std::time::{Duration, Instant};

use testworld::{FixtureHost, World, write_fleet};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn accepted(w: &World, host: &str) -> usize {
    let out =
        w.systemd_host(host)
            .exec(&["journalctl", "--no-pager", "-o", "cat", "-u", "ssh.service"]);
    testworld::stdout(&out)
        .lines()
        .filter(|l| l.contains("Accepted publickey"))
        .count()
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let Some(mut w) = World::with_systemd() else {
        eprintln!("bench: the systemd test host cannot be built here");
        std::process::exit(1);
    };
    w.add_systemd_host("bench1");
    let flake = w.path().join("fleet");
    let fleet = |generation: u32, hello: &str| {
        let mut h = FixtureHost::new("bench1", generation);
        h.packages = vec![("hello".into(), hello.into())];
        h.deployment = w.deployment_for("bench1", r#"healthChecks.services = [ "ssh.service" ];"#);
        write_fleet(&flake, &[h]);
    };
    let deploy = || {
        let start = Instant::now();
        let out = w.pantheros(&flake, &["deploy", "bench1", "--yes", "--json"]);
        let took = start.elapsed();
        assert!(
            out.status.success(),
            "deploy failed: {}",
            testworld::stderr(&out)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            took,
            v["hosts"][0]["result"].as_str().unwrap_or("").to_string(),
            v["hosts"][0]["toplevel"].as_str().unwrap_or("").to_string(),
        )
    };

    fleet(1, "2.12");
    let (_, result, top) = deploy();
    assert_eq!(result, "success");
    let drv = testworld::stdout(&testworld::sh(&["nix-store", "--query", "--deriver", &top]))
        .trim()
        .to_string();

    // The floor.
    let mut floor = vec![];
    for _ in 0..runs {
        let start = Instant::now();
        testworld::sh(&["nix-store", "--realise", &drv]);
        let out = w
            .client(&[
                "ssh",
                "-F",
                w.ssh_config.to_str().unwrap(),
                "-o",
                "ControlPath=none",
                "bench1",
                "true",
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        floor.push(start.elapsed());
    }
    let floor = median(floor);

    // No-op redeploys.
    let mut noop = vec![];
    let mut noop_conns = vec![];
    for _ in 0..runs {
        let before = accepted(&w, "bench1");
        let (t, result, _) = deploy();
        assert_eq!(result, "unchanged");
        noop_conns.push(accepted(&w, "bench1") - before);
        noop.push(t);
    }
    let noop = median(noop);

    // One package changes each time.
    let mut change = vec![];
    let mut change_conns = vec![];
    for i in 0..runs {
        fleet(2 + i as u32, &format!("2.{}", 13 + i));
        let before = accepted(&w, "bench1");
        let (t, result, _) = deploy();
        assert_eq!(result, "success");
        change_conns.push(accepted(&w, "bench1") - before);
        change.push(t);
    }
    let change = median(change);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("deploy benchmark on a systemd host (median of {runs})");
    println!(
        "{:<28} {:>9} {:>7} {:>16}",
        "case", "ms", "ratio", "ssh connections"
    );
    println!(
        "{:<28} {:>9.1} {:>7} {:>16}",
        "floor (realise + ssh true)",
        ms(floor),
        "1.00",
        1
    );
    println!(
        "{:<28} {:>9.1} {:>7.2} {:>16}",
        "no-op redeploy",
        ms(noop),
        ms(noop) / ms(floor),
        noop_conns.iter().max().unwrap()
    );
    println!(
        "{:<28} {:>9.1} {:>7.2} {:>16}",
        "one package changed",
        ms(change),
        ms(change) / ms(floor),
        change_conns.iter().max().unwrap()
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "deploy",
            "runs": runs,
            "floorMs": ms(floor),
            "noopMs": ms(noop),
            "noopRatio": ms(noop) / ms(floor),
            "noopSshConnections": noop_conns,
            "changeMs": ms(change),
            "changeRatio": ms(change) / ms(floor),
            "changeSshConnections": change_conns,
        })
    );
    if *change_conns.iter().max().unwrap() > 2 || *noop_conns.iter().max().unwrap() > 1 {
        eprintln!("bench: more SSH connections than one master plus one reachability proof");
        std::process::exit(1);
    }
}
