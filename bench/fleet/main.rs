//! bench/fleet: a fleet of light hosts deployed at once.
//!
//! 32 light hosts (`BENCH_HOSTS`), `-j 8` (`BENCH_JOBS`): a no-op redeploy
//! and a one-change deploy of the whole fleet, each against the same
//! deploy to one host alone in the same run. With 8 at a time, 32 hosts are
//! 4 waves, so the goal is wall ≤ 1.25 × (4 × one host). Also reported: the
//! evaluations per run (from `-v`'s command log; from 8 hosts on, the
//! evaluation workers' processes: at most 2 + 2 per worker), the SSH connections each
//! host's sshd accepted per run (goal ≤ 2: master + reachability proof), and
//! the deployer's peak RSS (VmHWM, sampled while it runs), and the SSH
//! floor: one plain `ssh HOST true` per host, `-j` at a time, which on a
//! small machine running both ends bounds any tool's fleet deploy.
//! The one-change case runs twice: with the hosts' root ~/.bashrc empty,
//! and with one that takes 100 ms (as pyenv's or nvm's init does), which
//! every SSH session's login shell reads: what each remote command costs.
//! Last, `status` of the whole fleet (every host asked at once): one
//! evaluation (or the workers') and one connection per host, its wall time against the
//! evaluation plus the slowest host's round trip (goal ≤ 1.2 ×).
//!
//!     bash bench/fleet/run.sh        (needs root; builds the release binary)

use std::path::Path;
use std::time::{Duration, Instant};

use testworld::{World, write_fleet};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn accepted(w: &World, host: &str) -> usize {
    std::fs::read_to_string(w.host(host).dir.join("sshd.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Accepted publickey"))
        .count()
}

/// The evaluations `-v` logged (each `nix eval` it ran).
fn evaluations(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("run") && l.contains(" eval "))
        .count()
}

/// The most SSH connections any of `hosts` accepted since `before`.
fn most_new_connections(w: &World, hosts: &[String], before: &[usize]) -> usize {
    hosts
        .iter()
        .zip(before)
        .map(|(h, b)| accepted(w, h) - b)
        .max()
        .unwrap_or(0)
}

struct Run {
    wall: Duration,
    evals: usize,
    max_conns: usize,
    peak_rss_kib: u64,
    /// Each stage's median over the hosts, in ms.
    stages: serde_json::Map<String, serde_json::Value>,
}

/// Deploy `hosts` (generation `g`), measuring wall time, evaluations,
/// connections per host and the deployer's peak RSS.
fn deploy(w: &World, flake: &Path, hosts: &[String], g: u32, jobs: usize, expect: &str) -> Run {
    let fixtures: Vec<_> = hosts.iter().map(|h| w.fixture_host(h, g, "")).collect();
    write_fleet(flake, &fixtures);
    let before: Vec<usize> = hosts.iter().map(|h| accepted(w, h)).collect();
    let bin = testworld::pantheros_bin();
    let mut argv = vec![
        bin.to_str().unwrap().to_string(),
        "-v".into(),
        "deploy".into(),
    ];
    argv.extend(hosts.iter().cloned());
    argv.extend([
        "--yes".into(),
        "--json".into(),
        "-j".into(),
        jobs.to_string(),
    ]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let start = Instant::now();
    let child = w
        .client(&argv)
        .current_dir(flake)
        .env("PANTHEROS_LOG_DIR", w.path().join("logs"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0u64;
        while let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            {
                peak = peak.max(kib);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    });
    let out = child.wait_with_output().unwrap();
    let wall = start.elapsed();
    let peak_rss_kib = sampler.join().unwrap_or(0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "deploy failed:\n{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results: Vec<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["result"].as_str().unwrap_or(""))
        .collect();
    assert!(results.iter().all(|r| *r == expect), "{results:?}");
    let mut per_stage: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for h in v["hosts"].as_array().unwrap() {
        for (stage, ms) in h["durationsMs"].as_object().into_iter().flatten() {
            per_stage
                .entry(stage.clone())
                .or_default()
                .push(ms.as_u64().unwrap_or(0));
        }
    }
    let stages = per_stage
        .into_iter()
        .map(|(stage, mut v)| {
            v.sort();
            (stage, serde_json::json!(v[v.len() / 2]))
        })
        .collect();
    assert_eq!(results.len(), hosts.len());
    let evals = evaluations(&err);
    let max_conns = most_new_connections(w, hosts, &before);
    Run {
        wall,
        evals,
        max_conns,
        peak_rss_kib,
        stages,
    }
}

struct Status {
    wall: Duration,
    evaluation_ms: f64,
    slowest_ms: f64,
    evals: usize,
    max_conns: usize,
}

/// `status` of every host at once (`-j` = the fleet), after the deploys.
fn status(w: &World, flake: &Path, hosts: &[String]) -> Status {
    let before: Vec<usize> = hosts.iter().map(|h| accepted(w, h)).collect();
    let bin = testworld::pantheros_bin();
    let jobs = hosts.len().to_string();
    let argv = [bin.to_str().unwrap(), "-v", "status", "--json", "-j", &jobs];
    let start = Instant::now();
    let out = w.client(&argv).current_dir(flake).output().unwrap();
    let wall = start.elapsed();
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let slowest = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["seconds"].as_f64())
        .fold(0.0, f64::max);
    let evals = evaluations(&String::from_utf8_lossy(&out.stderr));
    let max_conns = most_new_connections(w, hosts, &before);
    Status {
        wall,
        evaluation_ms: doc["evaluationSeconds"].as_f64().unwrap_or(0.0) * 1000.0,
        slowest_ms: slowest * 1000.0,
        evals,
        max_conns,
    }
}

fn main() {
    let n = env("BENCH_HOSTS", 32);
    let jobs = env("BENCH_JOBS", 8);
    // One evaluation below 8 hosts; from 8 on, evaluation workers by
    // themselves: the names counted, the metadata, then at most two
    // shares per worker (one worker per core, at most 4).
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let eval_bound = if n >= 8 && cores >= 2 {
        2 + 2 * cores.min(4)
    } else {
        1
    };
    let Some(mut w) = World::new() else {
        eprintln!("bench: the test world cannot be built here");
        std::process::exit(1);
    };
    let names: Vec<String> = (1..=n).map(|i| format!("h{i:02}")).collect();
    let started = Instant::now();
    for h in &names {
        w.add_host(h);
    }
    eprintln!(
        "{n} light hosts up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let flake = w.path().join("fleet");
    let one = vec![names[0].clone()];

    // First deploys (not measured), then one host alone and the fleet, no-op and one change.
    deploy(&w, &flake, &names, 1, jobs, "success");
    let one_noop = deploy(&w, &flake, &one, 1, jobs, "unchanged");
    let fleet_noop = deploy(&w, &flake, &names, 1, jobs, "unchanged");
    let one_change = deploy(&w, &flake, &one, 2, jobs, "success");
    let mut fixtures = vec![w.fixture_host(&names[0], 2, "")];
    fixtures.extend(names[1..].iter().map(|h| w.fixture_host(h, 1, "")));
    write_fleet(&flake, &fixtures);
    let fleet_change = deploy(&w, &flake, &names, 3, jobs, "success");

    // The same change with a costly login rc on every host (each SSH
    // session's login shell reads ~/.bashrc; pyenv's or nvm's init costs
    // 100-250 ms): 100 ms of sleep stands in for it.
    for h in &names {
        w.set_login_rc(h, "sleep 0.1\n");
    }
    let one_change_rc = deploy(&w, &flake, &one, 4, jobs, "success");
    let mut fixtures = vec![w.fixture_host(&names[0], 4, "")];
    fixtures.extend(names[1..].iter().map(|h| w.fixture_host(h, 3, "")));
    write_fleet(&flake, &fixtures);
    let fleet_change_rc = deploy(&w, &flake, &names, 5, jobs, "success");
    for h in &names {
        w.set_login_rc(h, "");
    }

    // What this machine allows: one `ssh HOST true` per host, `jobs` at a
    // time (each handshake's CPU, both ends on the same cores, is the limit).
    let ssh_cfg = w.ssh_config.to_str().unwrap().to_string();
    let start = Instant::now();
    for wave in names.chunks(jobs) {
        let children: Vec<_> = wave
            .iter()
            .map(|h| {
                w.client(&["ssh", "-F", &ssh_cfg, "-o", "ControlPath=none", h, "true"])
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
    }
    let ssh_floor = start.elapsed();

    let status = status(&w, &flake, &names);

    let waves = n.div_ceil(jobs) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("fleet benchmark: {n} light hosts, -j {jobs} ({waves} waves)");
    println!(
        "{:<12} {:>12} {:>12} {:>8} {:>6} {:>10} {:>10}",
        "case", "1 host ms", "fleet ms", "ratio*", "evals", "ssh/host", "peak MiB"
    );
    let mut doc = serde_json::Map::new();
    let mut ok = true;
    for (case, o, f) in [
        ("no-op", &one_noop, &fleet_noop),
        ("one change", &one_change, &fleet_change),
        ("change+rc", &one_change_rc, &fleet_change_rc),
    ] {
        let ratio = ms(f.wall) / (waves * ms(o.wall));
        println!(
            "{:<12} {:>12.0} {:>12.0} {:>8.2} {:>6} {:>10} {:>10.1}",
            case,
            ms(o.wall),
            ms(f.wall),
            ratio,
            f.evals,
            f.max_conns,
            f.peak_rss_kib as f64 / 1024.0
        );
        doc.insert(
            case.replace(' ', "_"),
            serde_json::json!({
                "oneHostMs": ms(o.wall), "fleetMs": ms(f.wall), "ratio": ratio,
                "evaluations": f.evals, "maxSshConnectionsPerHost": f.max_conns,
                "peakRssKiB": f.peak_rss_kib,
                "oneHostStagesMs": o.stages, "fleetStagesMedianMs": f.stages,
            }),
        );
        ok &= f.evals <= eval_bound && f.max_conns <= 2;
    }
    println!("* fleet wall / ({waves} × one host); change+rc: every host's ~/.bashrc takes 100 ms");
    println!(
        "ssh floor: {n} × `ssh true`, {jobs} at a time: {:.0} ms; the no-op fleet is {:.2} × that",
        ms(ssh_floor),
        ms(fleet_noop.wall) / ms(ssh_floor)
    );
    doc.insert(
        "ssh_floor".into(),
        serde_json::json!({ "ms": ms(ssh_floor), "noopFleetRatio": ms(fleet_noop.wall) / ms(ssh_floor) }),
    );
    let floor = status.evaluation_ms + status.slowest_ms;
    let status_ratio = ms(status.wall) / floor;
    println!(
        "status: {n} hosts in {:.0} ms = {:.2} × (evaluation {:.0} ms + slowest round trip {:.0} ms); {} evaluation(s), {} ssh connection(s) per host at most",
        ms(status.wall),
        status_ratio,
        status.evaluation_ms,
        status.slowest_ms,
        status.evals,
        status.max_conns
    );
    doc.insert(
        "status".into(),
        serde_json::json!({
            "wallMs": ms(status.wall), "evaluationMs": status.evaluation_ms,
            "slowestRoundTripMs": status.slowest_ms, "ratio": status_ratio,
            "evaluations": status.evals, "maxSshConnectionsPerHost": status.max_conns,
        }),
    );
    ok &= status.evals <= eval_bound && status.max_conns <= 1;
    println!(
        "{}",
        serde_json::json!({ "bench": "fleet", "hosts": n, "jobs": jobs, "cases": doc })
    );
    if !ok {
        eprintln!(
            "bench: more evaluations per run than the workers' bound ({eval_bound}), or more than 2 SSH connections per host"
        );
        std::process::exit(1);
    }
}
