//! `pantheros rollback`: list and switch generations over SSH, with the
//! same activation path as deploy (watchdog, rollback of the rollback).

use testworld::{FixtureHost, World, json, stderr, stdout, write_fleet};
use testworld::{assert_exit, assert_stderr_has};

fn host(w: &World, name: &str, generation: u32, fail: bool) -> FixtureHost {
    let mut h = w.fixture_host(name, generation, "");
    h.fail_switch = fail;
    h.packages = vec![("hello".into(), format!("2.{}", 10 + generation))];
    h
}

/// Deploy generations 1, 2 (fails: rolled back, but stays listed) and 3.
fn three_generations(w: &World, flake: &std::path::Path) -> Vec<String> {
    let mut systems = vec![];
    for (g, fail) in [(1, false), (2, true), (3, false)] {
        write_fleet(flake, &[host(w, "alpha", g, fail)]);
        let out = w.pantheros(flake, &["deploy", "alpha", "--yes", "--json"]);
        let expect = if fail { 3 } else { 0 };
        assert_eq!(out.status.code(), Some(expect), "{}", stderr(&out));
        systems.push(
            json(&out)["hosts"][0]["toplevel"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    systems
}

#[test]
fn list_switch_to_previous_and_to_n_and_rollback_of_a_broken_generation() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let flake = w.path().join("fleet");
    let systems = three_generations(&w, &flake);

    // --list: three generations, 3 current, dates, versions.
    let out = w.pantheros(&flake, &["rollback", "alpha", "--list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("GEN") && lines[0].contains("CURRENT"));
    assert!(
        lines[3].starts_with("3 ")
            && lines[3].contains(" * ")
            && lines[3].contains("26.05.3 (Fixture)"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("1 ") && !lines[1].contains(" * "),
        "{table}"
    );
    let out = w.pantheros(
        &flake,
        &["rollback", "alpha", "--list", "--json", "--sizes"],
    );
    let v = json(&out);
    assert_eq!(v["host"], "alpha");
    assert_eq!(v["profile"], "/nix/var/nix/profiles/system");
    let gens = v["generations"].as_array().unwrap();
    assert_eq!(
        gens.iter()
            .map(|g| g["number"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(gens[2]["current"], true);
    assert_eq!(gens[2]["system"], systems[2].as_str());
    assert!(gens[2]["closureSize"].as_u64().unwrap() > 0);
    assert!(
        gens[0]["date"].as_str().unwrap().len() == 19,
        "{}",
        gens[0]["date"]
    );

    // Default: the previous generation (2) is broken, its switch fails, and
    // the host comes back to 3 by itself.
    let out = w.pantheros(&flake, &["rollback", "alpha", "--yes", "--json"]);
    assert_exit(&out, 3);
    let v = json(&out);
    assert_eq!(v["hosts"][0]["result"], "rolled-back");
    assert_eq!(v["hosts"][0]["generationAfter"], 3);
    assert_eq!(w.profile_target("alpha"), systems[2]);
    assert_eq!(w.generation_marker("alpha"), "3");

    // --to 1: works; no new generation is created; diff shown.
    let out = w.pantheros(
        &flake,
        &["rollback", "alpha", "--to", "1", "--yes", "--json"],
    );
    assert_exit(&out, 0);
    assert_stderr_has(&out, &["generation 3 -> generation 1"]);
    let hello = stderr(&out)
        .lines()
        .find(|l| l.contains("[U] hello"))
        .unwrap_or_default()
        .to_string();
    assert!(hello.ends_with("2.13 -> 2.11"), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["hosts"][0]["generationBefore"], 3);
    assert_eq!(v["hosts"][0]["generationAfter"], 1);
    assert_eq!(w.profile_target("alpha"), systems[0]);
    assert_eq!(w.generation_marker("alpha"), "1");
    let listing = w.host("alpha").exec_ok(&[
        "nix-env",
        "-p",
        "/nix/var/nix/profiles/system",
        "--list-generations",
    ]);
    assert_eq!(listing.lines().count(), 3, "{listing}");

    // Now at the oldest: the default rollback has nowhere to go.
    let out = w.pantheros(&flake, &["rollback", "alpha", "--yes"]);
    assert_exit(&out, 1);
    assert_stderr_has(&out, &["already at the oldest generation (1)"]);
    // A generation that does not exist: the existing ones are named.
    let out = w.pantheros(&flake, &["rollback", "alpha", "--to", "9", "--yes"]);
    assert_exit(&out, 1);
    assert_stderr_has(&out, &["generation 9 does not exist", "1, 2, 3"]);
    assert_eq!(w.generation_marker("alpha"), "1");

    // --goal boot: the profile moves, the running system does not.
    let out = w.pantheros(
        &flake,
        &["rollback", "alpha", "--to", "3", "--goal", "boot", "--yes"],
    );
    assert_exit(&out, 0);
    assert_eq!(w.profile_target("alpha"), systems[2]);
    assert_eq!(w.generation_marker("alpha"), "1");
}

#[test]
fn missing_profile_collected_generation_and_held_lock_are_errors() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[host(&w, "alpha", 1, false)]);

    let out = w.pantheros(&flake, &["rollback", "alpha", "--list"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out)
            .contains("the profile /nix/var/nix/profiles/system does not exist on root@alpha"),
        "{}",
        stderr(&out)
    );

    for g in [1, 2] {
        write_fleet(&flake, &[host(&w, "alpha", g, false)]);
        assert_eq!(
            w.pantheros(&flake, &["deploy", "alpha", "--yes"])
                .status
                .code(),
            Some(0)
        );
    }
    // Generation 1's system disappears from the host's private store.
    let gen1 = w
        .host("alpha")
        .exec_ok(&["readlink", "-f", "/nix/var/nix/profiles/system-1-link"])
        .trim()
        .to_string();
    w.host("alpha")
        .exec_ok(&["sh", "-c", &format!("chmod -R u+w {gen1} && rm -rf {gen1}")]);
    let out = w.pantheros(&flake, &["rollback", "alpha", "--yes"]);
    assert_exit(&out, 1);
    assert_stderr_has(&out, &["garbage-collected"]);
    let out = w.pantheros(&flake, &["rollback", "alpha", "--list"]);
    assert!(
        stdout(&out).contains("(garbage-collected)"),
        "{}",
        stdout(&out)
    );

    // A deploy lock held on the host.
    w.host("alpha").exec_ok(&["sh", "-c", "mkdir -p /var/lib/pantheros/lock && echo 'pantheros x by ci@laptop (pid 1)' > /var/lib/pantheros/lock/owner"]);
    let out = w.pantheros(&flake, &["rollback", "alpha", "--to", "2", "--yes"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out)
            .contains("another deployment holds the lock on this host: pantheros x by ci@laptop"),
        "{}",
        stderr(&out)
    );
    assert_eq!(w.generation_marker("alpha"), "2");
}

#[test]
fn rollback_on_a_systemd_host_brings_units_back() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    w.add_systemd_host("sys1");
    let flake = w.path().join("fleet");
    for g in [1, 2] {
        let mut h = FixtureHost::new("sys1", g);
        h.deployment = w.deployment_for(
            "sys1",
            "confirmTimeout = 6; healthChecks.services = [ \"ssh.service\" ];",
        );
        write_fleet(&flake, &[h]);
        let out = w.pantheros(&flake, &["deploy", "sys1", "--yes"]);
        assert_exit(&out, 0);
    }
    let out = w.pantheros(&flake, &["rollback", "sys1", "--yes", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["hosts"][0]["generationAfter"], 1);
    assert_eq!(
        w.ssh_ok("sys1", "cat /run/pantheros-fixture/generation")
            .trim(),
        "1"
    );
    let cg = w.ssh_ok("sys1", "cat /run/pantheros-fixture/cgroup");
    assert!(cg.contains("pantheros-"), "{cg}");
    assert_eq!(
        w.ssh_ok("sys1", "systemctl is-system-running").trim(),
        "running"
    );
    let log = std::path::PathBuf::from(json(&out)["hosts"][0]["log"].as_str().unwrap());
    assert!(
        log.to_string_lossy().contains("/rollback/rollback-sys1-"),
        "{}",
        log.display()
    );
    assert!(log.with_extension("info").exists());
}

/// `rollback` takes selectors like `deploy`: a glob and a name list both
/// hosts' generations in one document (one entry per host, valid against
/// its schema), and roll both back in one run.
#[test]
fn rollback_takes_selectors_like_deploy() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    w.add_host("beta");
    let flake = w.path().join("fleet");
    for g in [1, 2] {
        write_fleet(
            &flake,
            &[host(&w, "alpha", g, false), host(&w, "beta", g, false)],
        );
        assert_exit(
            &w.pantheros(&flake, &["deploy", "alpha", "beta", "--yes"]),
            0,
        );
    }
    let out = w.pantheros(&flake, &["rollback", "al*", "beta", "--list", "--json"]);
    assert_exit(&out, 0);
    let v = json(&out);
    testworld::assert_schema(&v, "generations");
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{v}");
    for (entry, name) in hosts.iter().zip(["alpha", "beta"]) {
        assert_eq!(entry["host"], name, "{v}");
        assert_eq!(entry["generations"].as_array().unwrap().len(), 2, "{v}");
    }
    let table = stdout(&w.pantheros(&flake, &["rollback", "alpha", "beta", "--list"]));
    assert!(
        table.contains("== alpha") && table.contains("== beta"),
        "{table}"
    );

    let out = w.pantheros(&flake, &["rollback", "alpha", "beta", "--yes", "--json"]);
    assert_exit(&out, 0);
    let v = json(&out);
    testworld::assert_schema(&v, "deploy");
    assert_eq!(v["hosts"].as_array().unwrap().len(), 2, "{v}");
    for h in ["alpha", "beta"] {
        assert_eq!(w.generation_marker(h), "1", "{h}");
    }
}
