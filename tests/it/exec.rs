//! `pantheros exec`: one command on light hosts over SSH, its argv reaching
//! each host exactly as given, a failing host, the per-host timeout (which
//! stops the command on the host) and an unreachable host.

use std::path::Path;

use testworld::{World, assert_exit, assert_schema, json, stdout, write_fleet};

fn fleet(w: &World) -> std::path::PathBuf {
    let flake = w.path().join("fleet");
    write_fleet(
        &flake,
        &[
            w.fixture_host("alpha", 1, ""),
            w.fixture_host("beta", 1, ""),
            w.fixture_host("gamma", 1, ""),
        ],
    );
    flake
}

#[test]
fn exec_passes_argv_literally_and_reports_every_host() {
    let Some(mut w) = World::new() else { return };
    for h in ["alpha", "beta", "gamma"] {
        w.add_host(h);
    }
    let flake = fleet(&w);
    argv_arrives_as_given(&w, &flake);
    plain_lines_name_their_host(&w, &flake);
    a_failing_host_is_named_and_the_others_kept(&w, &flake);
    the_timeout_stops_the_command_on_the_host(&w, &flake);
    an_unreachable_host_fails_alone(&mut w, &flake);
}

/// Quoting: spaces, both quotes, `$`, a backslash, a newline, an empty
/// argument; no shell on either side parses them a second time.
fn argv_arrives_as_given(w: &World, flake: &Path) {
    let args = [
        "a b",
        "$HOME",
        "it's",
        "x\"y",
        "back\\slash",
        "line1\nline2",
        "",
    ];
    let mut argv = vec!["exec", "alpha", "beta", "--json", "--", "printf", "%s|"];
    argv.extend(args);
    let out = w.pantheros(flake, &argv);
    assert_exit(&out, 0);
    let doc = json(&out);
    assert_schema(&doc, "exec");
    let want: String = args.iter().map(|a| format!("{a}|")).collect();
    let hosts = doc["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{doc:#}");
    for h in hosts {
        assert_eq!(h["stdout"], want.as_str(), "{h:#}");
        assert_eq!(h["exitCode"], 0);
    }
    assert_eq!(doc["failed"], serde_json::json!([]));
}

/// Lines prefixed with the host, in the plain output.
fn plain_lines_name_their_host(w: &World, flake: &Path) {
    let out = w.pantheros(
        flake,
        &[
            "exec",
            "alpha",
            "beta",
            "--",
            "sh",
            "-c",
            "echo on $(hostname)",
        ],
    );
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("[alpha] on alpha") && text.contains("[beta] on beta"),
        "{text}"
    );
}

/// One host fails: exit 18, that host named, the other's result kept.
fn a_failing_host_is_named_and_the_others_kept(w: &World, flake: &Path) {
    let out = w.pantheros(
        flake,
        &[
            "exec",
            "alpha",
            "beta",
            "--json",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; test $(hostname) = alpha",
        ],
    );
    assert_exit(&out, 18);
    let doc = json(&out);
    assert_schema(&doc, "exec");
    assert_eq!(doc["failed"], serde_json::json!(["beta"]), "{doc:#}");
    let beta = &doc["hosts"][1];
    assert_eq!(beta["exitCode"], 1);
    assert_eq!(beta["stdout"], "out\n");
    assert_eq!(beta["stderr"], "err\n");
}

/// The timeout stops the command on the host itself.
fn the_timeout_stops_the_command_on_the_host(w: &World, flake: &Path) {
    let started = std::time::Instant::now();
    let out = w.pantheros(
        flake,
        &[
            "exec",
            "alpha",
            "--timeout",
            "1",
            "--json",
            "--",
            "sleep",
            "31.25",
        ],
    );
    assert_exit(&out, 18);
    let doc = json(&out);
    assert_eq!(doc["hosts"][0]["timedOut"], true, "{doc:#}");
    assert_eq!(doc["hosts"][0]["exitCode"], 124);
    assert!(
        started.elapsed().as_secs() < 20,
        "it waited {:?}",
        started.elapsed()
    );
    let left = testworld::try_sh(&["pgrep", "-f", "sleep 31.25"]);
    assert!(
        !left.status.success(),
        "the command still runs: {}",
        stdout(&left)
    );
}

/// An unreachable host fails alone, named, with ssh's word for it.
fn an_unreachable_host_fails_alone(w: &mut World, flake: &Path) {
    w.kill_sshd("gamma");
    let out = w.pantheros(flake, &["exec", "alpha", "gamma", "--json", "--", "true"]);
    assert_exit(&out, 18);
    let doc = json(&out);
    assert_schema(&doc, "exec");
    assert_eq!(doc["failed"], serde_json::json!(["gamma"]), "{doc:#}");
    assert!(
        doc["hosts"][1]["error"]
            .as_str()
            .unwrap_or("")
            .contains("ssh failed"),
        "{doc:#}"
    );
    assert_eq!(doc["hosts"][0]["exitCode"], 0);
}
