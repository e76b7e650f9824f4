//! The README's demo: bring up the example fleet's servers as test hosts
//! (network namespaces with their own sshd and Nix store) on this machine,
//! then deploy to them end to end and roll one back. Needs root.
//!
//!     cargo build && cargo run --example demo

use std::process::ExitCode;

use testworld::{FixtureHost, World, write_fleet};

fn step(w: &World, flake: &std::path::Path, args: &[&str], expect: i32) -> bool {
    println!("\n+ pantheros {}", args.join(" "));
    let bin = testworld::pantheros_bin();
    let mut argv = vec![bin.to_str().unwrap()];
    argv.extend_from_slice(args);
    let status = w
        .client(&argv)
        .current_dir(flake)
        .env("PANTHEROS_LOG_DIR", w.path().join("logs"))
        .status()
        .expect("run pantheros");
    if status.code() != Some(expect) {
        eprintln!("demo: expected exit {expect}, got {status}");
        return false;
    }
    true
}

fn host(
    w: &World,
    name: &str,
    generation: u32,
    hello: &str,
    extra: &[(&str, &str)],
) -> FixtureHost {
    let mut h = FixtureHost::new(name, generation);
    h.packages = vec![("hello".into(), hello.into())];
    h.packages
        .extend(extra.iter().map(|(p, v)| (p.to_string(), v.to_string())));
    h.deployment = w.deployment_for(
        name,
        r#"tags = [ "server" ]; confirmTimeout = 10;
           healthChecks.commands = [ "test -s /run/pantheros-fixture/generation" ];"#,
    );
    h
}

fn main() -> ExitCode {
    if !testworld::pantheros_bin().exists() {
        eprintln!("demo: build pantheros first (cargo build)");
        return ExitCode::FAILURE;
    }
    let Some(mut w) = World::new() else {
        eprintln!("demo: the test hosts cannot be built here (see above)");
        return ExitCode::FAILURE;
    };
    println!("Bringing up hetzner-vps and ovh-vps as namespace hosts (own sshd, own /nix)...");
    w.add_host("hetzner-vps");
    w.add_host("ovh-vps");
    let flake = w.path().join("fleet");
    write_fleet(
        &flake,
        &[
            host(&w, "hetzner-vps", 1, "2.12", &[]),
            host(&w, "ovh-vps", 1, "2.12", &[]),
        ],
    );
    let ok = step(&w, &flake, &["hosts"], 0)
        && step(&w, &flake, &["deploy", "@server", "--yes"], 0)
        && {
            println!("\n# a new configuration for hetzner-vps: hello 2.13 and curl");
            write_fleet(
                &flake,
                &[
                    host(&w, "hetzner-vps", 2, "2.13", &[("curl", "8.5.0")]),
                    host(&w, "ovh-vps", 1, "2.12", &[]),
                ],
            );
            true
        }
        && step(&w, &flake, &["deploy", "hetzner-vps", "--dry-run"], 0)
        && step(&w, &flake, &["deploy", "@server", "--yes"], 0)
        && step(&w, &flake, &["rollback", "hetzner-vps", "--list"], 0)
        && step(&w, &flake, &["rollback", "hetzner-vps", "--yes"], 0)
        && step(&w, &flake, &["rollback", "hetzner-vps", "--list"], 0);
    let running = testworld::stdout(
        &w.host("hetzner-vps")
            .exec(&["cat", "/run/pantheros-fixture/generation"]),
    );
    println!("\nhetzner-vps now runs generation {}", running.trim());
    println!("logs were in {}", w.path().join("logs").display());
    println!("(the test hosts are torn down now)");
    if ok && running.trim() == "1" {
        println!("demo: ok");
        ExitCode::SUCCESS
    } else {
        println!("demo: FAILED");
        ExitCode::FAILURE
    }
}
