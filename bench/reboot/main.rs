//! bench/reboot: what `deploy --reboot` costs on a rebootable systemd host
//! of the test world (systemd-nspawn with systemd-boot's stand-in).
//!
//! The floor is what a reboot costs anyway: `systemctl reboot` over SSH,
//! then fresh connections until the host answers from a new boot. A
//! one-package change deployed with `--reboot` adds the build, the copy,
//! the plan, the one-shot entry, the proof, the health checks and making
//! it the default. Reported: wall time (median), the ratio to the floor,
//! the reboot stage's own time, and what bringing back an unreachable new
//! system costs (its boot watchdog's confirm timeout plus a second boot).
//!
//!     bash bench/reboot/run.sh        (needs root; builds the release binary)

use std::time::{Duration, Instant};

use testworld::{FixtureHost, World, write_fleet};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn boot_id(w: &World) -> Option<String> {
    let out = w.ssh("rbench", &["cat /proc/sys/kernel/random/boot_id"]);
    out.status
        .success()
        .then(|| testworld::stdout(&out).trim().to_string())
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let Some(mut w) = World::with_systemd() else {
        eprintln!("bench: the systemd test host cannot be built here");
        std::process::exit(1);
    };
    w.add_rebootable_host("rbench");
    let flake = w.path().join("fleet");
    let fleet = |generation: u32, hello: &str, extra: &str, dead: bool| {
        let mut h = FixtureHost::new("rbench", generation);
        h.packages = vec![("hello".into(), hello.into())];
        h.ssh_dead_at_boot = dead;
        h.deployment = w.deployment_for(
            "rbench",
            &format!(r#"healthChecks.services = [ "fixture-app.service" ]; {extra}"#),
        );
        write_fleet(&flake, &[h]);
    };
    fleet(1, "2.12", "", false);
    let out = w.pantheros(&flake, &["deploy", "rbench", "--yes"]);
    assert!(out.status.success(), "{}", testworld::stderr(&out));

    // The floor: a bare reboot, until a fresh connection answers from the
    // new boot.
    let mut floor = vec![];
    for _ in 0..runs {
        let before = boot_id(&w).expect("the host answers");
        let start = Instant::now();
        let _ = w.ssh("rbench", &["systemctl reboot"]);
        loop {
            if boot_id(&w).is_some_and(|b| b != before) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "no new boot");
            std::thread::sleep(Duration::from_millis(100));
        }
        floor.push(start.elapsed());
    }
    let floor = median(floor);

    // One package changed, deployed with --reboot.
    let mut change = vec![];
    let mut stage = vec![];
    for i in 0..runs {
        fleet(100 + i as u32, &format!("3.{i}"), "", false);
        let start = Instant::now();
        let out = w.pantheros(&flake, &["deploy", "rbench", "--reboot", "--yes", "--json"]);
        change.push(start.elapsed());
        assert!(out.status.success(), "{}", testworld::stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["hosts"][0]["rebooted"], true);
        stage.push(Duration::from_millis(
            v["hosts"][0]["durationsMs"]["reboot"].as_u64().unwrap_or(0),
        ));
    }
    let change = median(change);
    let stage = median(stage);

    // An unreachable new system, brought back by its watchdog (confirm
    // timeout 10 s): once.
    fleet(900, "9.9", "rebootConfirmTimeout = 10;", true);
    let start = Instant::now();
    let out = w.pantheros(&flake, &["deploy", "rbench", "--reboot", "--yes", "--json"]);
    let back = start.elapsed();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(v["hosts"][0]["result"], "rolled-back", "{v}");

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("reboot benchmark on a rebootable systemd host (median of {runs})");
    println!("{:<44} {:>9} {:>7}", "case", "ms", "ratio");
    println!(
        "{:<44} {:>9.1} {:>7}",
        "floor (systemctl reboot until a new boot)",
        ms(floor),
        "1.00"
    );
    println!(
        "{:<44} {:>9.1} {:>7.2}",
        "one package changed, deploy --reboot",
        ms(change),
        ms(change) / ms(floor)
    );
    println!(
        "{:<44} {:>9.1} {:>7.2}",
        "  its reboot stage (arm, boot, prove, keep)",
        ms(stage),
        ms(stage) / ms(floor)
    );
    println!(
        "{:<44} {:>9.1} {:>7}",
        "unreachable new system, back by its watchdog",
        ms(back),
        "-"
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "reboot",
            "runs": runs,
            "floorMs": ms(floor),
            "rebootDeployMs": ms(change),
            "rebootDeployRatio": ms(change) / ms(floor),
            "rebootStageMs": ms(stage),
            "watchdogReturnMs": ms(back),
            "watchdogConfirmTimeoutS": 10,
        })
    );
}
