//! bench/cache: a fleet behind a slow uplink, direct copies against
//! fan-out through a binary cache (`pantheros.deployment.cache`).
//!
//! 16 light hosts (`BENCH_HOSTS`), all at once, share a 32 MiB
//! (`BENCH_MIB`) incompressible store path; the deployer's side of the
//! test LAN is shaped to 20 Mbit/s (`BENCH_MBIT`, `tc` tbf), as a laptop's
//! uplink would be. Reported, in one run: the bytes leaving the deployer
//! and the wall time of a direct deploy of the fleet and of one through a
//! cache host (the upload over SSH into a `file://` cache that host serves
//! over HTTP), each against one host's direct deploy. Goals (issue 34):
//! the cache deploy sends each path once (≤ 1.1 × the closure's bytes) and
//! takes ≤ 1.3 × one host's copy plus the slowest host's substitution.
//!
//!     bash bench/cache/run.sh        (needs root; builds the release binary)

use std::path::Path;
use std::time::{Duration, Instant};

use testworld::{FixtureHost, World, write_fleet};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Bytes the deployer has sent to the cache host so far (an nftables
/// counter on the deployer's output, by destination address).
fn to_cache_bytes(w: &World) -> u64 {
    let out = testworld::sh(&[
        "ip",
        "netns",
        "exec",
        &w.client_ns,
        "nft",
        "-j",
        "list",
        "counter",
        "inet",
        "bench",
        "to_cache",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["nftables"]
        .as_array()
        .and_then(|a| a.iter().find_map(|e| e["counter"]["bytes"].as_u64()))
        .unwrap_or(0)
}

/// From a host's log: how long its first command containing `needle` took
/// (the `-> exit … in N ms` line after it).
fn command_ms(log: &str, needle: &str) -> Option<u64> {
    let mut seen = false;
    for line in log.lines() {
        if line.contains("] $ ") {
            seen = line.contains(needle);
        } else if seen && let Some(ms) = line.trim_start().strip_prefix("-> exit") {
            return ms
                .split(" in ")
                .nth(1)?
                .trim_end_matches(" ms")
                .trim()
                .parse()
                .ok();
        }
    }
    None
}

/// Bytes the deployer's namespace has sent on the LAN so far.
fn tx_bytes(w: &World) -> u64 {
    let out = testworld::sh(&["ip", "-j", "-s", "-n", &w.client_ns, "link", "show", "eth0"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v[0]["stats64"]["tx"]["bytes"].as_u64().unwrap_or(0)
}

struct Run {
    wall: Duration,
    sent: u64,
    /// Of `sent`, what went to the cache host.
    to_cache: u64,
    stages: Vec<serde_json::Value>,
    /// Each host's log.
    logs: Vec<String>,
}

fn deploy(w: &World, flake: &Path, hosts: &[FixtureHost], sshopts: &str) -> Run {
    write_fleet(flake, hosts);
    let bin = testworld::pantheros_bin();
    let mut argv = vec![bin.to_str().unwrap().to_string(), "deploy".into()];
    argv.extend(hosts.iter().map(|h| h.name.clone()));
    argv.extend([
        "-j".into(),
        hosts.len().to_string(),
        "--yes".into(),
        "--json".into(),
    ]);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (sent, to_cache) = (tx_bytes(w), to_cache_bytes(w));
    let start = Instant::now();
    let out = w
        .client(&refs)
        .current_dir(flake)
        .env("PANTHEROS_LOG_DIR", w.path().join("logs"))
        .env("NIX_SSHOPTS", sshopts)
        .env_remove("PANTHEROS_FLAKE")
        .output()
        .unwrap();
    let wall = start.elapsed();
    assert!(out.status.success(), "{}", testworld::stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hosts = v["hosts"].as_array().unwrap();
    Run {
        wall,
        sent: tx_bytes(w) - sent,
        to_cache: to_cache_bytes(w) - to_cache,
        stages: hosts.iter().map(|h| h["durationsMs"].clone()).collect(),
        logs: hosts
            .iter()
            .map(|h| std::fs::read_to_string(h["log"].as_str().unwrap_or("")).unwrap_or_default())
            .collect(),
    }
}

fn main() {
    let n = env("BENCH_HOSTS", 16) as usize;
    let mib = env("BENCH_MIB", 32);
    let mbit = env("BENCH_MBIT", 20);
    let Some(mut w) = World::new() else {
        eprintln!("bench: the test world cannot be built here");
        std::process::exit(1);
    };
    let names: Vec<String> = (1..=n).map(|i| format!("h{i}")).collect();
    for h in &names {
        w.add_host(h);
    }
    let cache = w.add_cache_host("cache");
    for h in &names {
        w.trust_cache_key(h, &cache.public_key);
    }
    let flake = w.path().join("fleet");
    let counter = format!(
        "table inet bench {{ counter to_cache {{ }}; chain out {{ type filter hook output priority 0; \
         ip daddr {} counter name to_cache; }}; }}",
        w.host("cache").ip
    );
    testworld::sh(&["ip", "netns", "exec", &w.client_ns, "nft", &counter]);
    testworld::sh(&[
        "ip",
        "netns",
        "exec",
        &w.client_ns,
        "tc",
        "qdisc",
        "add",
        "dev",
        "eth0",
        "root",
        "tbf",
        "rate",
        &format!("{mbit}mbit"),
        "burst",
        "64kbit",
        "latency",
        "400ms",
    ]);
    let sshopts = format!("-F {}", w.ssh_config.display());
    let cache_spec = format!(
        // zstd, not Nix's default xz: xz takes ~20 s for 32 MiB on this
        // machine, longer than the upload itself (docs/workflow.md).
        r#"cache = {{ url = "{}"; upload = "ssh://cache?remote-store=file://{}%3Fcompression%3Dzstd"; publicKey = "{}"; secretKeyFile = "{}"; }};"#,
        cache.url,
        cache.dir.display(),
        cache.public_key,
        cache.secret_key.display()
    );
    let fleet = |hosts: &[String], salt: &str, extra: &str| -> Vec<FixtureHost> {
        hosts
            .iter()
            .map(|h| {
                let mut f = w.fixture_host(h, 1, extra);
                f.shared_blob = Some(((mib * 1024) as u32, salt.to_string()));
                f
            })
            .collect()
    };

    // The module's default: the test world's 6 s is too short for a proof
    // that waits behind 15 other hosts' copies on a 20 Mbit/s uplink.
    let confirm = "confirmTimeout = 30; ";
    let one = deploy(&w, &flake, &fleet(&names[..1], "one", confirm), &sshopts);
    let direct = deploy(&w, &flake, &fleet(&names, "direct", confirm), &sshopts);
    let with_cache = format!("{confirm}{cache_spec}");
    let cached = deploy(&w, &flake, &fleet(&names, "cache", &with_cache), &sshopts);
    // How the cache stored the NARs (its narinfos' Compression).
    let compression = std::fs::read_dir(&cache.dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "narinfo"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Compression: ").map(String::from))
        })
        .collect::<std::collections::BTreeSet<_>>();
    println!("the cache's NARs: {compression:?}");
    drop(cache);

    let closure = (mib * 1024 * 1024) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let copy_ms = |r: &Run| -> Vec<u64> {
        r.stages
            .iter()
            .map(|s| s["copy"].as_u64().unwrap_or(0))
            .collect()
    };
    let one_copy = copy_ms(&one).first().copied().unwrap_or(0) as f64;
    let slowest_copy_cached = copy_ms(&cached).into_iter().max().unwrap_or(0) as f64;
    // The cache deploy's parts, from the hosts' logs: the upload (one host
    // uploads; the others find every path there), each host's substitution.
    let uploads: Vec<u64> = cached
        .logs
        .iter()
        .filter_map(|l| command_ms(l, "remote-store=file"))
        .collect();
    let upload_ms = uploads.iter().copied().max().unwrap_or(0) as f64;
    let slowest_fetch = cached
        .logs
        .iter()
        .filter_map(|l| command_ms(l, "cache.sh"))
        .max()
        .unwrap_or(0) as f64;
    let bound = 1.3 * (one_copy + slowest_fetch);
    println!("cache benchmark: {n} hosts, a shared {mib} MiB path, deployer uplink {mbit} Mbit/s");
    println!(
        "{:<34} {:>10} {:>8} {:>12} {:>8}",
        "case", "wall ms", "x one", "sent MiB", "x path"
    );
    for (name, r) in [
        ("one host, direct copy", &one),
        ("fleet, direct copies", &direct),
        ("fleet, through the cache", &cached),
    ] {
        println!(
            "{:<34} {:>10.0} {:>8.2} {:>12.1} {:>8.2}",
            name,
            ms(r.wall),
            ms(r.wall) / ms(one.wall),
            r.sent as f64 / 1048576.0,
            r.sent as f64 / closure
        );
    }
    println!(
        "through the cache: {:.1} MiB to the cache host = {:.2} x the path (goal <= 1.1: each path once), \
         {:.1} MiB to the {n} hosts (their commands); the upload {upload_ms:.0} ms \
         (one host's direct copy stage {one_copy:.0} ms), slowest substitution {slowest_fetch:.0} ms, \
         the slowest host's copy stage (waiting for the upload, then substituting) {slowest_copy_cached:.0} ms \
         = {:.2} x (one copy + slowest substitution) (goal <= 1.3); the whole deploy {:.0} ms = {:.2} x \
         (one host's whole deploy + slowest substitution)",
        cached.to_cache as f64 / 1048576.0,
        cached.to_cache as f64 / closure,
        cached.sent.saturating_sub(cached.to_cache) as f64 / 1048576.0,
        slowest_copy_cached / (one_copy + slowest_fetch).max(1.0),
        ms(cached.wall),
        ms(cached.wall) / (ms(one.wall) + slowest_fetch).max(1.0),
    );
    // Where the cache deploy's time went: each stage's slowest host.
    let mut slowest: std::collections::BTreeMap<String, u64> = Default::default();
    for st in &cached.stages {
        for (k, v) in st.as_object().into_iter().flatten() {
            let e = slowest.entry(k.clone()).or_default();
            *e = (*e).max(v.as_u64().unwrap_or(0));
        }
    }
    println!("through the cache, each stage's slowest host (ms): {slowest:?}");
    println!(
        "{}",
        serde_json::json!({
            "cacheToCacheBytes": cached.to_cache,
            "cacheToCachePerPath": cached.to_cache as f64 / closure,
            "cacheToHostsBytes": cached.sent.saturating_sub(cached.to_cache),
            "cacheUploadMs": upload_ms,
            "cacheSlowestSubstitutionMs": slowest_fetch,
            "cacheCopyStageOverCopyPlusSubstitution": slowest_copy_cached / (one_copy + slowest_fetch).max(1.0),
            "cacheWallOverOneDeployPlusSubstitution": ms(cached.wall) / (ms(one.wall) + slowest_fetch).max(1.0),
            "cacheSlowestStagesMs": slowest,
            "cacheCopyStageGoalMs": bound,
            "bench": "cache",
            "hosts": n,
            "sharedMiB": mib,
            "uplinkMbit": mbit,
            "oneHostMs": ms(one.wall),
            "oneHostCopyMs": one_copy,
            "directMs": ms(direct.wall),
            "directSentBytes": direct.sent,
            "cacheMs": ms(cached.wall),
            "cacheSentBytes": cached.sent,
            "cacheSentPerPath": cached.sent as f64 / closure,
            "directSentPerPath": direct.sent as f64 / closure,
            "cacheSlowestCopyStageMs": slowest_copy_cached,
            "cacheWallOverOneHost": ms(cached.wall) / ms(one.wall),
        })
    );
}
