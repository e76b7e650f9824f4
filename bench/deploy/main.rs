//! bench/deploy: what a deploy costs over the floor, on a systemd host.
//!
//! Each case has the floor no deploy tool can avoid, measured in the same
//! run. A no-op redeploy's floor: `nix-store --realise` of the built
//! toplevel plus one SSH round trip (`ssh host true`). A one-package
//! change's floor: that, plus `nix copy` of an equivalent new closure, plus
//! one SSH command running `nix-env --set` and `switch-to-configuration
//! switch`. Reported: wall time (median), the ratio to the floor, and the
//! SSH connections the target's sshd accepted per deploy (from its journal;
//! the goal is one master connection plus the one fresh reachability proof).
//! Goals (issue 10): no-op ≤ 1.15 ×, one change ≤ 2.0 ×.
//!
//!     bash bench/deploy/run.sh        (needs root; builds the release binary)

use std::time::{Duration, Instant};

use testworld::{FixtureHost, World, write_fleet};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// One command of a deploy, from its host log: when it started (ms after
/// the first command), how long it took, what it was.
struct Step {
    at: u64,
    took: u64,
    what: String,
    remote: bool,
    fresh: bool,
}

/// The commands one deploy ran, read from its host log.
struct Account {
    steps: Vec<Step>,
    /// Remote process starts (each command run on the host through ssh is
    /// one login shell and one script).
    remote: usize,
    /// Connections made outside the master (the reachability proof).
    fresh: usize,
}

fn clock_ms(stamp: &str) -> Option<u64> {
    let mut it = stamp.split([':', '.']);
    let (h, m, s, ms) = (it.next()?, it.next()?, it.next()?, it.next()?);
    Some(
        h.parse::<u64>().ok()? * 3_600_000
            + m.parse::<u64>().ok()? * 60_000
            + s.parse::<u64>().ok()? * 1000
            + ms.parse::<u64>().ok()?,
    )
}

fn account(log: &str) -> Account {
    let mut steps: Vec<Step> = vec![];
    let mut first = None;
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix('[')
            && let Some((stamp, cmd)) = rest.split_once("] $ ")
        {
            let Some(t) = clock_ms(stamp) else { continue };
            let t0 = *first.get_or_insert(t);
            let words: Vec<&str> = cmd.split_whitespace().collect();
            let script = words
                .iter()
                .find(|w| w.trim_matches('\'').ends_with(".sh"))
                .map(|w| w.trim_matches('\'').to_string());
            let remote = words.first() == Some(&"ssh");
            let what = script
                .unwrap_or_else(|| words.iter().take(2).copied().collect::<Vec<_>>().join(" "));
            steps.push(Step {
                at: t - t0,
                took: 0,
                what,
                remote,
                fresh: remote && cmd.contains("ControlPath=none"),
            });
        } else if let Some(rest) = line.trim_start().strip_prefix("-> exit")
            && let Some(ms) = rest.split(" in ").nth(1)
            && let Some(last) = steps.last_mut()
        {
            last.took = ms.trim_end_matches(" ms").trim().parse().unwrap_or(0);
        }
    }
    Account {
        remote: steps.iter().filter(|s| s.remote).count(),
        fresh: steps.iter().filter(|s| s.fresh).count(),
        steps,
    }
}

impl Account {
    fn render(&self) -> String {
        let mut out = String::from("one change deploy, command by command (from its host log):\n");
        for s in &self.steps {
            out.push_str(&format!(
                "  {:>6} ms {:>6} ms  {}{}\n",
                s.at,
                s.took,
                s.what,
                if s.fresh {
                    "  (fresh connection)"
                } else if s.remote {
                    "  (over the master)"
                } else {
                    ""
                }
            ));
        }
        out.push_str(&format!(
            "  remote process starts: {}, fresh connections: {}\n\n",
            self.remote, self.fresh
        ));
        out
    }
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
    let key_file = w.path().join("bench-key");
    std::fs::write(&key_file, "bench-secret").unwrap();
    let keyed = |generation: u32, hello: &str, keys: bool| {
        let mut h = FixtureHost::new("bench1", generation);
        h.packages = vec![("hello".into(), hello.into())];
        let mut extra = r#"healthChecks.services = [ "ssh.service" ];"#.to_string();
        if keys {
            extra.push_str(&format!(
                r#" keys.a.keyFile = "{k}"; keys.b = {{ keyFile = "{k}"; uploadAt = "post-activation"; }};"#,
                k = key_file.display()
            ));
        }
        h.deployment = w.deployment_for("bench1", &extra);
        write_fleet(&flake, &[h]);
    };
    let fleet = |generation: u32, hello: &str| keyed(generation, hello, false);
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
            v["hosts"][0]["durationsMs"].clone(),
            v["hosts"][0]["log"].as_str().unwrap_or("").to_string(),
        )
    };

    fleet(1, "2.12");
    let (_, result, top, _, _) = deploy();
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
    let mut noop_stages = serde_json::Value::Null;
    for _ in 0..runs {
        let before = accepted(&w, "bench1");
        let (t, result, _, stages, _) = deploy();
        assert_eq!(result, "unchanged");
        noop_stages = stages;
        noop_conns.push(accepted(&w, "bench1") - before);
        noop.push(t);
    }
    let noop = median(noop);

    // One package changes each time; the floor does the same with an
    // equivalent closure (another version of the package) by hand.
    let mut change = vec![];
    let mut change_floor = vec![];
    let mut change_conns = vec![];
    let mut change_stages = serde_json::Value::Null;
    let mut change_log = String::new();
    let ssh_cfg = w.ssh_config.to_str().unwrap().to_string();
    let profile = "/nix/var/nix/profiles/system";
    for i in 0..runs {
        fleet(100 + i as u32, &format!("3.{i}"));
        let out = w.pantheros(&flake, &["deploy", "bench1", "--build-only", "--json"]);
        assert!(out.status.success(), "{}", testworld::stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let top = v["hosts"][0]["toplevel"].as_str().unwrap().to_string();
        let drv = testworld::stdout(&testworld::sh(&["nix-store", "--query", "--deriver", &top]))
            .trim()
            .to_string();
        let start = Instant::now();
        testworld::sh(&["nix-store", "--realise", &drv]);
        let ssh = |cmd: &str| {
            let out = w
                .client(&[
                    "ssh",
                    "-F",
                    &ssh_cfg,
                    "-o",
                    "ControlPath=none",
                    "bench1",
                    cmd,
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", testworld::stderr(&out));
        };
        ssh("true");
        let copy = w
            .client(&[
                "nix",
                "--extra-experimental-features",
                "nix-command",
                "copy",
                "--to",
                "ssh://bench1",
                &top,
            ])
            .env("NIX_SSHOPTS", w.nix_sshopts())
            .output()
            .unwrap();
        assert!(copy.status.success(), "{}", testworld::stderr(&copy));
        ssh(&format!(
            "nix-env -p {profile} --set {top} && {top}/bin/switch-to-configuration switch"
        ));
        change_floor.push(start.elapsed());

        fleet(200 + i as u32, &format!("4.{i}"));
        let before = accepted(&w, "bench1");
        let (t, result, _, stages, log) = deploy();
        assert_eq!(result, "success");
        change_stages = stages;
        change_log = std::fs::read_to_string(&log).unwrap_or_default();
        change_conns.push(accepted(&w, "bench1") - before);
        change.push(t);
    }
    let change = median(change);
    let change_floor = median(change_floor);

    // What two keys (one before, one after the activation) add to a
    // one-package change: time, and SSH connections (the goal: none).
    let mut keyed_change = vec![];
    let mut keyed_conns = vec![];
    for i in 0..runs {
        keyed(300 + i as u32, &format!("5.{i}"), true);
        let before = accepted(&w, "bench1");
        let (t, result, _, _, _) = deploy();
        assert_eq!(result, "success");
        keyed_conns.push(accepted(&w, "bench1") - before);
        keyed_change.push(t);
    }
    let keyed_change = median(keyed_change);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let account = account(&change_log);
    print!("{}", account.render());
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
        "{:<28} {:>9.1} {:>7} {:>16}",
        "change floor (+copy, switch)",
        ms(change_floor),
        "1.00",
        3
    );
    println!(
        "{:<28} {:>9.1} {:>7.2} {:>16}",
        "one package changed",
        ms(change),
        ms(change) / ms(change_floor),
        change_conns.iter().max().unwrap()
    );
    println!(
        "{:<28} {:>9.1} {:>7} {:>16}",
        "  the same with 2 keys",
        ms(keyed_change),
        format!("+{:.0}", ms(keyed_change) - ms(change)),
        keyed_conns.iter().max().unwrap()
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
            "changeFloorMs": ms(change_floor),
            "changeMs": ms(change),
            "changeRatio": ms(change) / ms(change_floor),
            "changeSshConnections": change_conns,
            "noopStagesMs": noop_stages,
            "changeStagesMs": change_stages,
            "keyedChangeMs": ms(keyed_change),
            "keyedChangeSshConnections": keyed_conns,
            "changeRemoteStarts": account.remote,
            "changeFreshConnections": account.fresh,
        })
    );
    if *change_conns.iter().max().unwrap() > 2
        || *noop_conns.iter().max().unwrap() > 1
        || *keyed_conns.iter().max().unwrap() > 2
    {
        eprintln!("bench: more SSH connections than one master plus one reachability proof");
        std::process::exit(1);
    }
}
