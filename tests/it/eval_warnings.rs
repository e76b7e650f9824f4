//! Evaluation warnings: every warning of the selected hosts is shown
//! before the plan and the question, grouped per host, written to the
//! host's log and listed in `--json`; `--fail-on-warnings` stops before
//! anything is built.

use testworld::{World, assert_exit, assert_stderr_has, json, stderr, write_fleet};

#[test]
fn warnings_are_shown_logged_and_listed_and_can_fail_the_run() {
    let Some(mut w) = World::new() else { return };
    w.add_host("warned");
    let flake = w.path().join("fleet");
    let mut h = w.fixture_host("warned", 1, "");
    h.warnings = vec!["services.example.package is not set; the service is left out".into()];
    h.trace_warning = Some("a lib.warn outside the warnings option".into());
    write_fleet(&flake, &[h]);

    // --fail-on-warnings (CI): shown, then refused before any build.
    let out = w.pantheros(&flake, &["deploy", "warned", "--yes", "--fail-on-warnings"]);
    assert_exit(&out, 14);
    assert_stderr_has(
        &out,
        &[
            "[warned] warning: services.example.package is not set; the service is left out",
            "warning: a lib.warn outside the warnings option",
            "--fail-on-warnings",
            "nothing was built or changed",
        ],
    );
    assert!(!stderr(&out).contains("building"), "{}", stderr(&out));
    assert_eq!(w.generation_marker("warned"), "");

    // Without it: shown before the plan, listed in --json, in the log.
    let out = w.pantheros(&flake, &["deploy", "warned", "--yes", "--json"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    let warned = err
        .find("[warned] warning: services.example.package")
        .expect("the warning is shown");
    let planned = err.find("Changes for warned").expect("the plan is shown");
    assert!(warned < planned, "the warning comes after the plan:\n{err}");
    let v = json(&out);
    assert_eq!(
        v["hosts"][0]["warnings"],
        serde_json::json!(["services.example.package is not set; the service is left out"])
    );
    let log = std::fs::read_to_string(v["hosts"][0]["log"].as_str().unwrap()).unwrap();
    assert!(
        log.contains("evaluation warning: services.example.package is not set"),
        "{log}"
    );
    assert_eq!(w.generation_marker("warned"), "1");
}
