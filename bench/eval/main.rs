//! bench/eval: evaluating a large fleet in one process against worker
//! processes (`--eval-jobs N`).
//!
//! A synthetic fleet of 4, 8, 16, 32 and 100 hosts (`BENCH_HOSTS`, comma-separated)
//! whose configurations go through nixpkgs' real module system (its `lib`,
//! as the test tiers find it): each host evaluates 1500 options
//! (`BENCH_OPTIONS`) and its toplevel and its `warnings` depend on all of
//! them (NixOS's warnings come from its modules' settings), beside cheap
//! deployment metadata, so an evaluation holds every host's configuration,
//! as a real fleet's does.
//! Each case is `pantheros build-all --json` after a warm-up run (the tiny
//! builds cached), timed, with the largest single process's peak RSS (GNU
//! time's %M: the pantheros process or one of its `nix eval`s). Reported:
//! wall and peak memory of one process (`--eval-jobs 1`), of 2 and 4
//! workers, and of pantheros' own choice (no flag), in one run.
//!
//!     bash bench/eval/run.sh        (needs nixpkgs' lib; see README)
//!     BENCH_OPTIONS=6000 BENCH_HOSTS=32,100 bash bench/eval/run.sh   (heavier hosts)

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn flake(dir: &Path, lib: &Path, hosts: usize, options: usize) {
    std::fs::create_dir_all(dir).unwrap();
    // A pure flake reads only its own files: nixpkgs' lib goes beside it.
    testworld::sh(&[
        "cp",
        "-r",
        lib.to_str().unwrap(),
        dir.join("lib").to_str().unwrap(),
    ]);
    std::fs::write(
        dir.join("flake.lock"),
        r#"{"nodes":{"root":{}},"root":"root","version":7}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("flake.nix"),
        format!(
            r#"{{
  outputs = {{ self }}:
    let
      lib = import ./lib;
      names = builtins.genList (i: "h${{toString i}}") {hosts};
      ids = builtins.genList (i: i) {options};
      host = name:
        let
          cfg = (lib.evalModules {{
            modules = [
              {{
                options = builtins.listToAttrs (map (i: {{
                  name = "o${{toString i}}";
                  value = lib.mkOption {{ type = lib.types.int; default = i; }};
                }}) ids);
              }}
              {{ config.o7 = lib.mkForce (builtins.stringLength name); }}
            ];
          }}).config;
          total = lib.foldl' (a: i: a + cfg."o${{toString i}}") 0 ids;
        in {{
          config = {{
            system.build.toplevel = derivation {{
              name = "eval-bench-${{name}}";
              system = "x86_64-linux";
              builder = "/bin/sh";
              args = [ "-c" "echo ${{toString total}} > $out" ];
            }};
            # As NixOS's: the warnings and the deployment metadata are read
            # from the same configuration (a module's warning depends on its
            # settings, so reading them costs what the system does).
            warnings = if total < 0 then [ "impossible" ] else [ ];
            pantheros.deployment = {{
              targetHost = name;
              tags = [ "bench" ];
            }};
          }};
        }};
    in {{ nixosConfigurations = lib.genAttrs names host; }};
}}
"#
        ),
    )
    .unwrap();
}

/// `pantheros build-all --json EXTRA` in `dir`: wall time and the largest
/// process's peak RSS in KiB.
fn run(dir: &Path, extra: &[&str]) -> (Duration, u64) {
    let bin = testworld::pantheros_bin();
    let rss = dir.join("rss");
    let start = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o", rss.to_str().unwrap()])
        .arg(&bin)
        .args(["build-all", "--json"])
        .args(extra)
        .current_dir(dir)
        .env("PANTHEROS_LOG_DIR", dir.join("logs"))
        .env_remove("PANTHEROS_FLAKE")
        .output()
        .unwrap();
    let wall = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kib = std::fs::read_to_string(&rss)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    (wall, kib)
}

fn main() {
    let Some(lib) = testworld::nixpkgs_lib() else {
        eprintln!("bench: nixpkgs' lib is not on this machine (see README)");
        std::process::exit(1);
    };
    let options: usize = std::env::var("BENCH_OPTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    let sizes: Vec<usize> = std::env::var("BENCH_HOSTS")
        .unwrap_or_else(|_| "4,8,16,32,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    println!("evaluation benchmark: hosts through nixpkgs' module system, {options} options each");
    println!(
        "{:<8} {:<12} {:>10} {:>8} {:>14}",
        "hosts", "evaluation", "wall ms", "x one", "peak RSS MiB"
    );
    let mut rows = vec![];
    for n in sizes {
        let dir = tmp.path().join(format!("fleet-{n}"));
        flake(&dir, &lib, n, options);
        run(&dir, &["--eval-jobs", "1"]); // warm-up: the builds, cached from now on
        let (one, one_rss) = run(&dir, &["--eval-jobs", "1"]);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{:<8} {:<12} {:>10.0} {:>8} {:>14.1}",
            n,
            "one process",
            ms(one),
            "1.00",
            one_rss as f64 / 1024.0
        );
        let mut row = serde_json::json!({"hosts": n, "oneMs": ms(one), "onePeakKiB": one_rss});
        // 0: no --eval-jobs, pantheros' own choice.
        for jobs in [2, 4, 0] {
            let flag = jobs.to_string();
            let extra: &[&str] = if jobs == 0 {
                &[]
            } else {
                &["--eval-jobs", &flag]
            };
            let (t, rss) = run(&dir, extra);
            let label = if jobs == 0 {
                "automatic".to_string()
            } else {
                format!("{jobs} workers")
            };
            println!(
                "{:<8} {:<12} {:>10.0} {:>8.2} {:>14.1}",
                n,
                label,
                ms(t),
                ms(t) / ms(one),
                rss as f64 / 1024.0
            );
            let key = if jobs == 0 {
                "automatic".to_string()
            } else {
                format!("workers{jobs}")
            };
            row[format!("{key}Ms")] = ms(t).into();
            row[format!("{key}PeakKiB")] = rss.into();
        }
        rows.push(row);
    }
    println!(
        "{}",
        serde_json::json!({"bench": "eval", "options": options, "runs": rows})
    );
}
