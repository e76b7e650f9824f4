//! `pantheros hosts` against the fixture fleet, with the real nix.

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn pantheros(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("pantheros").unwrap();
    c.current_dir(dir)
        .env_remove("PANTHEROS_FLAKE")
        .env_remove("PANTHEROS_NIX");
    c
}

fn nix_available() -> bool {
    if testworld::which("nix").is_some() {
        return true;
    }
    testworld::cannot_run("nix is not installed (apt-get install nix-bin)");
    false
}

fn fleet() -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let f = testworld::fixture_flake(d.path());
    (d, f)
}

/// The fixture fleet with zephyrus replaced by `definition` (to break it).
fn fleet_with_zephyrus(definition: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let (d, flake) = fleet();
    let f = flake.join("flake.nix");
    let s = fs::read_to_string(&f).unwrap();
    let healthy = "zephyrus = host { name = \"zephyrus\"; };";
    assert!(
        s.contains(healthy),
        "the fixture changed: {healthy} is gone"
    );
    fs::write(&f, s.replace(healthy, &format!("zephyrus = {definition};"))).unwrap();
    (d, flake)
}

#[test]
fn table_lists_every_host_with_defaults_for_hosts_without_the_module() {
    if !nix_available() {
        return;
    }
    let (_d, flake) = fleet();
    let out = pantheros(&flake)
        .arg("hosts")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert!(lines[0].starts_with("NAME") && lines[0].contains("FACTS"));
    // hetzner-vps's address is decided by Hetzner: it waits for `up`.
    assert_eq!(
        lines[5],
        "hetzner-vps waits for facts: ipv6Address (`pantheros up hetzner-vps` records them)"
    );
    assert!(
        lines[1].starts_with("hetzner-vps")
            && lines[1].contains("203.0.113.10")
            && lines[1].contains("hetzner")
    );
    assert!(lines[2].contains("ovh.example.org:2222") && lines[2].contains("deploy"));
    assert!(lines[3].contains("localhost (local)"));
    // zephyrus does not import the module: target = its name, user root.
    let z: Vec<&str> = lines[4].split_whitespace().collect();
    assert_eq!(&z[..3], &["zephyrus", "zephyrus", "root"]);
}

#[test]
fn works_from_a_subdirectory_and_with_flake_flag() {
    if !nix_available() {
        return;
    }
    let (d, flake) = fleet();
    let sub = flake.join("deep/er");
    fs::create_dir_all(&sub).unwrap();
    pantheros(&sub)
        .arg("hosts")
        .assert()
        .success()
        .stdout(predicate::str::contains("yoga"));
    pantheros(d.path())
        .args(["hosts", "--flake", flake.to_str().unwrap(), "yoga"])
        .assert()
        .success()
        .stdout(predicate::str::contains("yoga").and(predicate::str::contains("zephyrus").not()));
}

#[test]
fn json_is_a_stable_document() {
    if !nix_available() {
        return;
    }
    let (_d, flake) = fleet();
    let out = pantheros(&flake)
        .args(["hosts", "--json", "*-vps", "@laptop"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    testworld::assert_schema(&v, "hosts");
    let names: Vec<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["hetzner-vps", "ovh-vps", "yoga"]);
    let h = &v["hosts"][0];
    assert_eq!(h["targetHost"], "203.0.113.10");
    assert_eq!(h["targetPort"], 22);
    assert_eq!(h["provider"], "hetzner");
    assert_eq!(h["usesModule"], true);
    assert_eq!(h["hetzner"]["serverType"], "cx23");
    assert_eq!(h["profile"], "/nix/var/nix/profiles/system");
    assert_eq!(h["confirmTimeout"], 30);
    assert!(
        h.get("drvPath").is_none(),
        "hosts must not instantiate closures"
    );
    assert_eq!(v["errors"], serde_json::json!([]));
    assert_eq!(v["hosts"][1]["targetUser"], "deploy");
}

#[test]
fn hosts_does_not_instantiate_any_closure() {
    if !nix_available() {
        return;
    }
    let (_d, flake) = fleet();
    // A fleet whose toplevel would fail to instantiate: `hosts` must not care.
    let f = flake.join("flake.nix");
    let s = fs::read_to_string(&f).unwrap();
    assert!(s.contains("system.build.toplevel = mkSystem {"));
    fs::write(
        &f,
        s.replace(
            "system.build.toplevel = mkSystem {",
            "system.build.toplevel = throw \"toplevel touched\"; untouched = mkSystem {",
        ),
    )
    .unwrap();
    pantheros(&flake)
        .arg("hosts")
        .assert()
        .success()
        .stdout(predicate::str::contains("hetzner-vps"));
}

#[test]
fn unknown_host_suggests_and_exits_15() {
    if !nix_available() {
        return;
    }
    let (_d, flake) = fleet();
    pantheros(&flake)
        .args(["hosts", "hetzner"])
        .assert()
        .code(15)
        .stderr(predicate::str::contains(
            "unknown host `hetzner` (did you mean hetzner-vps?)",
        ))
        .stderr(predicate::str::contains(
            "hint: known hosts: hetzner-vps, ovh-vps, yoga, zephyrus",
        ));
}

/// Every command that takes hosts refuses an unknown name the same way,
/// before it builds, connects or locks anything (no world needed: the
/// fixture's hosts are not reachable, so any attempt would fail otherwise).
#[test]
fn every_command_refuses_an_unknown_host_before_anything_runs() {
    if !nix_available() {
        return;
    }
    let (_d, flake) = fleet();
    for args in [
        &["deploy", "hetzner", "--yes"][..],
        &["build-all", "hetzner"],
        &["rollback", "hetzner", "--list"],
        &["keys", "upload", "hetzner"],
    ] {
        pantheros(&flake)
            .args(args)
            .assert()
            .code(15)
            .stderr(predicate::str::contains(
                "unknown host `hetzner` (did you mean hetzner-vps?)",
            ));
    }
    assert!(
        !flake.join("logs").exists() && !flake.join("result").exists(),
        "nothing may be built or logged for an unknown host"
    );
}

#[test]
fn empty_selection_exits_16() {
    if !nix_available() {
        return;
    }
    let (_d, flake) = fleet();
    pantheros(&flake)
        .args(["hosts", "*-cloud"])
        .assert()
        .code(16)
        .stderr(predicate::str::contains("matched no host"));
    pantheros(&flake).args(["hosts", "@gpu"]).assert().code(16);
}

#[test]
fn not_in_a_flake_exits_10() {
    let d = tempfile::tempdir().unwrap();
    pantheros(d.path())
        .arg("hosts")
        .assert()
        .code(10)
        .stderr(predicate::str::contains("no flake.nix found"))
        .stderr(predicate::str::contains("hint:"));
}

#[test]
fn flake_without_nixos_configurations_exits_11() {
    if !nix_available() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("flake.nix"),
        "{ outputs = { self }: { lib = { }; }; }",
    )
    .unwrap();
    fs::write(
        d.path().join("flake.lock"),
        r#"{"nodes":{"root":{}},"root":"root","version":7}"#,
    )
    .unwrap();
    pantheros(d.path())
        .arg("hosts")
        .assert()
        .code(11)
        .stderr(predicate::str::contains(
            "has no `nixosConfigurations` output",
        ))
        .stderr(predicate::str::contains("command: "))
        .stderr(predicate::str::contains("nixosConfigurations"));
}

#[test]
fn nix_missing_exits_12_and_says_how_to_install() {
    let (_d, flake) = fleet();
    let empty = tempfile::tempdir().unwrap();
    pantheros(&flake)
        .env("PATH", empty.path())
        .arg("hosts")
        .assert()
        .code(12)
        .stderr(predicate::str::contains("`nix` was not found on PATH"))
        .stderr(predicate::str::contains("apt-get install nix-bin"));
}

#[test]
fn nix_too_old_exits_13() {
    let (d, flake) = fleet();
    // Nix 2.3 has no flakes: its `nix eval` rejects our flags and its
    // --version names the old release. (There is no real 2.3 to run here.)
    let old = d.path().join("nix-2.3");
    fs::write(
        &old,
        "#!/bin/sh\ncase \"$1\" in --version) echo 'nix (Nix) 2.3.16';; \
         *) echo \"error: unrecognised flag '--extra-experimental-features'\" >&2; exit 1;; esac\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&old, fs::Permissions::from_mode(0o755)).unwrap();
    pantheros(&flake)
        .env("PANTHEROS_NIX", &old)
        .arg("hosts")
        .assert()
        .code(13)
        .stderr(predicate::str::contains("Nix 2.3.16 is too old"));
}

#[test]
fn a_host_that_throws_is_reported_and_the_others_still_list() {
    if !nix_available() {
        return;
    }
    let (_d, flake) =
        fleet_with_zephyrus("{ config = throw \"zephyrus: missing hardware configuration\"; }");
    let out = pantheros(&flake)
        .args(["hosts", "--json"])
        .assert()
        .code(14)
        .get_output()
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hosts"].as_array().unwrap().len(), 3);
    assert_eq!(v["errors"][0]["name"], "zephyrus");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("missing hardware configuration")
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("host zephyrus failed to evaluate"), "{err}");
    // One short error on this machine's Nix: the user's message, never a
    // frame of pantheros' own --apply expression.
    let message = v["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("error: zephyrus: missing hardware configuration"),
        "{message}"
    );
    assert!(!message.contains("«string»"), "{message}");
    assert!(!err.contains("«string»"), "{err}");
    assert!(message.lines().count() <= 2, "{message}");
    // Selecting only healthy hosts succeeds.
    pantheros(&flake)
        .args(["hosts", "*-vps"])
        .assert()
        .success();
}

#[test]
fn an_uncatchable_error_in_one_host_falls_back_to_per_host_evaluation() {
    if !nix_available() {
        return;
    }
    // A missing attribute is not caught by tryEval: the single evaluation
    // fails, and pantheros finds which host it was.
    let (_d, flake) = fleet_with_zephyrus("{ config = { }.nothing.here; }");
    let out = pantheros(&flake)
        .args(["hosts", "--json"])
        .assert()
        .code(14)
        .get_output()
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["hetzner-vps", "ovh-vps", "yoga"]);
    assert_eq!(v["errors"][0]["name"], "zephyrus");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nothing"),
        "{}",
        v["errors"]
    );
}

#[test]
fn a_broken_flake_shows_nix_error_not_a_debug_dump() {
    if !nix_available() {
        return;
    }
    let (_d, flake) = fleet();
    fs::write(
        flake.join("flake.nix"),
        "{ outputs = { self }: { nixosConfigurations = undefinedThing; }; }",
    )
    .unwrap();
    let out = pantheros(&flake)
        .arg("hosts")
        .assert()
        .code(14)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: evaluating the flake"), "{err}");
    assert!(err.contains("undefined variable 'undefinedThing'"), "{err}");
    assert!(!err.contains("CommandFailure"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn help_documents_exit_codes() {
    let d = tempfile::tempdir().unwrap();
    pantheros(d.path()).arg("--help").assert().success().stdout(
        predicate::str::contains("Exit codes:").and(predicate::str::contains("rolled back")),
    );
}

#[test]
fn build_all_refuses_when_a_selected_host_fails_to_evaluate() {
    if !nix_available() {
        return;
    }
    let (_d, flake) = fleet_with_zephyrus("{ config = throw \"zephyrus is broken\"; }");
    let logs = tempfile::tempdir().unwrap();
    // Every host (no selector) and a glob that matches it: refused, nothing built.
    for args in [vec!["build-all"], vec!["build-all", "z*"]] {
        pantheros(&flake)
            .env("PANTHEROS_LOG_DIR", logs.path())
            .args(&args)
            .assert()
            .code(14)
            .stderr(predicate::str::contains("zephyrus is broken"));
    }
    assert!(
        !logs.path().join("build").exists(),
        "nothing may have been built"
    );
    // The healthy hosts alone build.
    let out = pantheros(&flake)
        .env("PANTHEROS_LOG_DIR", logs.path())
        .args(["build-all", "*-vps", "--json"])
        .assert()
        .success()
        .stderr(predicate::str::contains("Passed: 2"))
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    testworld::assert_schema(&v, "deploy");
    assert_eq!(v["hosts"].as_array().unwrap().len(), 2, "{v}");
    // The run's own log: the header, each host's result, the summary.
    let master: Vec<_> = std::fs::read_dir(logs.path().join("build"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("build-all-"))
        .collect();
    assert_eq!(master.len(), 1, "{master:?}");
    let text = std::fs::read_to_string(master[0].path()).unwrap();
    assert!(
        text.starts_with("=== pantheros parallel build ==="),
        "{text}"
    );
    for h in ["hetzner-vps", "ovh-vps"] {
        assert!(
            text.contains(&format!("{h}: success /nix/store/")),
            "{text}"
        );
    }
    assert!(
        text.contains("Passed: 2") && text.contains("Total:  2"),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = master[0].metadata().unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// Completions for bash, zsh and fish, and the man page, come from the
/// binary itself and know every subcommand.
#[test]
fn completions_and_the_man_page_cover_every_command() {
    let d = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = pantheros(d.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        for word in [
            "deploy",
            "rollback",
            "build-all",
            "provision",
            "keys",
            "canary",
        ] {
            assert!(text.contains(word), "{shell} completions lack {word}");
        }
    }
    let out = pantheros(d.path()).arg("man").output().unwrap();
    assert!(out.status.success());
    let man = String::from_utf8(out.stdout).unwrap();
    assert!(man.contains(".TH pantheros 1"), "{man}");
    for word in ["deploy", "keys", "Exit codes"] {
        assert!(man.contains(word), "the man page lacks {word}");
    }
    pantheros(d.path())
        .args(["completions", "tcsh"])
        .assert()
        .code(2);
}

/// Nix's own flags pass through: `--impure` lets the evaluation read the
/// environment, `--show-trace` gives the trace of an error, and
/// `--option` reaches the build (seen in `-v`'s command log).
#[test]
fn nix_flags_reach_the_evaluation_and_the_build() {
    if !nix_available() {
        return;
    }
    let (_d, flake) = fleet_with_zephyrus(
        r#"host { name = "zephyrus"; deployment = { tags = [ (builtins.getEnv "PANTHEROS_TAG_FROM_ENV") ]; }; }"#,
    );
    let tags = |args: &[&str]| {
        let out = pantheros(&flake)
            .args(args)
            .env("PANTHEROS_TAG_FROM_ENV", "from-env")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let z = v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == "zephyrus")
            .unwrap()
            .clone();
        z["tags"].clone()
    };
    assert_eq!(
        tags(&["hosts", "--json"]),
        serde_json::json!([""]),
        "pure: no environment"
    );
    assert_eq!(
        tags(&["hosts", "--json", "--impure"]),
        serde_json::json!(["from-env"])
    );

    // --show-trace: Nix's trace of a failing host.
    let (_d2, broken) = fleet_with_zephyrus(
        r#"host { name = "zephyrus"; deployment = { tags = [ (let f = x: x + "a"; in f 1) ]; }; }"#,
    );
    let plain = pantheros(&broken)
        .args(["build-all", "zephyrus"])
        .output()
        .unwrap();
    let traced = pantheros(&broken)
        .args(["build-all", "zephyrus", "--show-trace"])
        .output()
        .unwrap();
    assert_eq!(traced.status.code(), Some(14));
    let (plain, traced) = (
        String::from_utf8_lossy(&plain.stderr).into_owned(),
        String::from_utf8_lossy(&traced.stderr).into_owned(),
    );
    assert!(traced.contains("while evaluating"), "{traced}");
    assert!(!plain.contains("while evaluating"), "{plain}");
    // The whole trace, from its error line on: never a tail that starts
    // in the middle of a frame.
    let trace_start = traced.find("error:").expect("an error line");
    assert!(
        traced[trace_start..].contains("while evaluating"),
        "{traced}"
    );

    // --option: on the build's command line.
    let logs = tempfile::tempdir().unwrap();
    let out = pantheros(&flake)
        .args(["-v", "build-all", "zephyrus", "--option", "cores", "1"])
        .env("PANTHEROS_LOG_DIR", logs.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.contains("nix-store --realise") && l.contains("--option cores 1")),
        "{err}"
    );
}

/// `validate` on a host without Flashpods: exit 41 with the reason, and
/// with --json the error document; nothing is connected to. A host name
/// that does not exist is exit 15 as for every command.
#[test]
fn validate_refuses_a_host_that_does_not_run_flashpods() {
    if !nix_available() {
        return;
    }
    let (_d, flake) = fleet();
    let out = pantheros(&flake)
        .args(["validate", "hetzner-vps", "--json"])
        .assert()
        .code(41)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hetzner-vps does not run Flashpods: services.flashpods.enable is not set"),
        "{err}"
    );
    assert!(err.contains("pantheros.nixosModules.flashpods"), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["exitCode"], 41, "{doc}");
    testworld::assert_schema(&doc, "error");
    pantheros(&flake)
        .args(["validate", "no-such-host"])
        .assert()
        .code(15);
    pantheros(&flake)
        .args(["validate", "hetzner-vps", "--internet", "example.org"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("expected HOST:PORT"));
}

/// A placeholder filled by a fact the machines decide: `deploy` refuses the
/// host before anything else and names the command that records the fact.
#[test]
fn a_host_waiting_for_a_fact_is_refused_with_the_command_that_records_it() {
    if !nix_available() {
        return;
    }
    let (_d, flake) = fleet();
    let out = pantheros(&flake)
        .args(["deploy", "hetzner-vps", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(17));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the fact ipv6Address is not recorded yet")
            && err.contains("`pantheros up hetzner-vps` records it"),
        "{err}"
    );
}

/// `--eval-jobs N`: the metadata in one `nix eval`, then the selected
/// systems shared among N worker processes at once; the same systems as
/// one process. A broken host among them is still named (and refused);
/// a worker memory limit too small for its share fails it alone, and its
/// hosts are then evaluated one by one, so every host is in the result.
#[test]
fn systems_evaluate_in_workers_with_the_same_result() {
    if !nix_available() {
        return;
    }
    let (_d, flake) = fleet();
    let logs = tempfile::tempdir().unwrap();
    let toplevels = |args: &[&str]| build_all_toplevels(&flake, logs.path(), args);
    let (one, _) = toplevels(&["--eval-jobs", "1"]);
    let (workers, stderr) = toplevels(&["--eval-jobs", "3"]);
    assert_eq!(one, workers);
    assert!(one.len() >= 3, "{one:?}");
    let evals = evaluations(&stderr);
    assert_eq!(
        evals,
        1 + 3,
        "one metadata evaluation and three workers:\n{stderr}"
    );
    // Too little memory for any worker: each of its hosts alone (and only
    // its hosts), same systems.
    let (alone, stderr) = toplevels(&["--eval-jobs", "2", "--eval-max-memory", "1"]);
    assert_eq!(one, alone);
    assert!(
        stderr.contains("prlimit --data=1048576:1048576"),
        "{stderr}"
    );
    assert_eq!(
        evaluations(&stderr),
        1 + 2 + one.len(),
        "the metadata, two workers that fail, then each host once:\n{stderr}"
    );

    let (_d2, broken) = fleet_with_zephyrus("{ config = throw \"zephyrus is broken\"; }");
    pantheros(&broken)
        .env("PANTHEROS_LOG_DIR", logs.path())
        .args(["build-all", "--eval-jobs", "3"])
        .assert()
        .code(14)
        .stderr(predicate::str::contains("zephyrus is broken"));
}

/// An evaluation worker reads its share of hosts and nothing else, and a
/// host's warnings (which cost what its system does) are read only with
/// its system: a host outside the selection is never looked at beyond its
/// deployment metadata.
#[test]
fn a_worker_reads_only_its_share_and_warnings_only_with_systems() {
    if !nix_available() {
        return;
    }
    let (_d, flake) = fleet_with_zephyrus(
        "let z = host { name = \"zephyrus\"; }; in z // { config = z.config // { \
         warnings = builtins.trace \"warning: reading zephyrus' warnings\" [ ]; }; }",
    );
    let logs = tempfile::tempdir().unwrap();
    let stderr = |args: &[&str]| {
        let out = pantheros(&flake)
            .env("PANTHEROS_LOG_DIR", logs.path())
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        err
    };
    let probe = "reading zephyrus' warnings";
    // Selected: its warnings are read (the probe is seen) ...
    for jobs in ["1", "2"] {
        let err = stderr(&["build-all", "zephyrus", "yoga", "--eval-jobs", jobs]);
        assert!(err.contains(probe), "--eval-jobs {jobs}:\n{err}");
    }
    // ... not selected: never, in one process or in workers.
    for jobs in ["1", "2"] {
        let err = stderr(&["build-all", "yoga", "hetzner-vps", "--eval-jobs", jobs]);
        assert!(!err.contains(probe), "--eval-jobs {jobs}:\n{err}");
    }
}

/// `pantheros build-all --json -v ARGS` in `flake` (the evaluation as the
/// flags say: `PANTHEROS_EVAL_JOBS` unset), which must succeed: each host's
/// toplevel, and stderr without colours.
fn build_all_toplevels(
    flake: &Path,
    logs: &Path,
    args: &[&str],
) -> (std::collections::BTreeMap<String, String>, String) {
    let out = pantheros(flake)
        .env("PANTHEROS_LOG_DIR", logs)
        .env_remove("PANTHEROS_EVAL_JOBS")
        .args(["build-all", "--json", "-v"])
        .args(args)
        .output()
        .unwrap();
    let err = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tops = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let name = h["host"].as_str().unwrap().to_string();
            (name, h["toplevel"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    (tops, err)
}

/// How many `nix eval`s a `-v` log shows.
fn evaluations(err: &str) -> usize {
    err.lines()
        .filter(|l| l.contains("run") && l.contains(" eval "))
        .count()
}

/// `text` without terminal colour sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// With evaluation workers, a host's build starts as soon as its share is
/// evaluated, while a slower share still evaluates; the result is the same
/// systems as one process gives.
#[test]
fn builds_start_while_other_shares_still_evaluate() {
    if !nix_available() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let flake = d.path().join("slow");
    fs::create_dir_all(&flake).unwrap();
    // b's system takes about a second of evaluation; a's and c's none.
    fs::write(
        flake.join("flake.nix"),
        r#"{
  outputs = { self }:
    let
      slow = builtins.foldl' (a: i: a + builtins.foldl' builtins.add i (builtins.genList (x: x) 3000)) 0 (builtins.genList (x: x) 3000);
      host = name: extra: {
        config.system.build.toplevel = derivation {
          name = "early-${name}-${extra}";
          system = "x86_64-linux";
          builder = "/bin/sh";
          args = [ "-c" "echo ${name} > $out" ];
        };
      };
    in {
      nixosConfigurations = {
        a = host "a" "0";
        b = host "b" (toString slow);
        c = host "c" "0";
      };
    };
}
"#,
    )
    .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let (workers, err) = build_all_toplevels(&flake, logs.path(), &["--eval-jobs", "2"]);
    // Shares: [a, c] and [b]. a's and c's builds began before b's share
    // came back.
    let line = |needle: &str, host: &str| {
        err.lines()
            .position(|l| l.contains(needle) && l.contains(host))
            .unwrap_or_else(|| panic!("no {needle:?} for {host}:\n{err}"))
    };
    let b_back = line("share evaluated", "\"b\"");
    for h in ["host=a", "host=c"] {
        assert!(
            line("building while the others evaluate", h) < b_back,
            "{h} was not built early:\n{err}"
        );
    }
    assert!(
        err.lines().any(|l| l.contains("early build finished")
            && l.contains("host=a")
            && l.contains("ok=true")),
        "{err}"
    );
    // The same systems as one process gives.
    let (one, _) = build_all_toplevels(&flake, logs.path(), &["--eval-jobs", "1"]);
    assert_eq!(workers.len(), 3, "{workers:?}");
    assert_eq!(workers, one);
}

/// Without `--eval-jobs`, the number of processes follows the number of
/// systems: a few named hosts in one `nix eval`; a large selection (every
/// host of a 10-host flake, counted by its names alone) in one process per
/// core (at most 4) after the metadata; `--eval-jobs 1` always one.
#[test]
fn evaluation_workers_are_chosen_by_the_number_of_systems() {
    if !nix_available() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let d = tempfile::tempdir().unwrap();
    let flake = d.path().join("big");
    fs::create_dir_all(&flake).unwrap();
    fs::write(
        flake.join("flake.nix"),
        r#"{
  outputs = { self }: {
    nixosConfigurations = builtins.listToAttrs (map (i: {
      name = "h${toString i}";
      value.config.system.build.toplevel = derivation {
        name = "auto-jobs-${toString i}";
        system = "x86_64-linux";
        builder = "/bin/sh";
        args = [ "-c" "echo ${toString i} > $out" ];
      };
    }) (builtins.genList (i: i) 10));
  };
}
"#,
    )
    .unwrap();
    let logs = tempfile::tempdir().unwrap();
    // (the hosts' toplevels, how many `nix eval`s ran, -v's log)
    let run = |args: &[&str]| {
        let (tops, err) = build_all_toplevels(&flake, logs.path(), args);
        (tops, evaluations(&err), err)
    };
    let (forced, evals, err) = run(&["--eval-jobs", "1"]);
    assert_eq!(forced.len(), 10, "{forced:?}");
    assert_eq!(evals, 1, "--eval-jobs 1 is one process:\n{err}");
    let (few, evals, err) = run(&["h1", "h2"]);
    assert_eq!(few.len(), 2);
    assert_eq!(
        evals, 1,
        "two named hosts, one process, nothing counted:\n{err}"
    );
    let (all, evals, err) = run(&[]);
    assert_eq!(all, forced, "the same systems either way");
    if cores < 2 {
        assert_eq!(
            evals,
            1 + 1,
            "one core: the names, then one process:\n{err}"
        );
        return;
    }
    let workers = cores.min(4);
    assert_eq!(
        evals,
        1 + 1 + workers,
        "the names, the metadata, then {workers} workers:\n{err}"
    );
    assert!(err.contains("evaluation processes chosen"), "{err}");
    let named: Vec<String> = (0..9).map(|i| format!("h{i}")).collect();
    let named: Vec<&str> = named.iter().map(String::as_str).collect();
    let (nine, evals, err) = run(&named);
    assert_eq!(nine.len(), 9);
    assert_eq!(
        evals,
        1 + workers,
        "nine named hosts: counted as given, the metadata, then the workers:\n{err}"
    );
}

/// `deploy --keep-going` with a host that fails to evaluate (here among
/// workers): it is a failed outcome at stage "evaluate" with Nix's
/// message and a log of its own, and the others run; without
/// `--keep-going` the run is refused (14).
#[test]
fn keep_going_runs_the_others_when_one_host_fails_to_evaluate() {
    if !nix_available() {
        return;
    }
    let (_d, flake) = fleet_with_zephyrus("{ config = throw \"zephyrus is broken\"; }");
    let logs = tempfile::tempdir().unwrap();
    pantheros(&flake)
        .env("PANTHEROS_LOG_DIR", logs.path())
        .args(["deploy", "*", "--build-only", "--eval-jobs", "2"])
        .assert()
        .code(14);
    let out = pantheros(&flake)
        .env("PANTHEROS_LOG_DIR", logs.path())
        .args([
            "deploy",
            "*",
            "--build-only",
            "--keep-going",
            "--eval-jobs",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    testworld::assert_schema(&v, "deploy");
    let hosts = v["hosts"].as_array().unwrap();
    assert!(hosts.len() >= 3, "{v}");
    for h in hosts {
        if h["host"] == "zephyrus" {
            assert_eq!(h["result"], "failed", "{v}");
            assert_eq!(h["stage"], "evaluate", "{v}");
            assert!(
                h["error"].as_str().unwrap().contains("zephyrus is broken"),
                "{v}"
            );
            let log = std::fs::read_to_string(h["log"].as_str().unwrap()).unwrap();
            assert!(log.contains("zephyrus failed to evaluate"), "{log}");
        } else {
            assert_eq!(h["result"], "success", "{v}");
        }
    }
}
