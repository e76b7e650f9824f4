//! modules/lib/spire-entries.sh, the registration reconciler: re-running it
//! neither duplicates nor leaks entries. SPIRE cannot be installed on the
//! test machines, so `spire-server` is a stand-in that speaks the same
//! `entry show -output json / create / delete` interface
//! (tests/fixtures/spire/spire-server); jq and the script are the real ones.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn reconcile(state: &Path, desired: &str, dir: &Path) -> String {
    let f = dir.join("desired");
    std::fs::write(&f, desired).unwrap();
    let path = format!(
        "{}:{}",
        root().join("tests/fixtures/spire").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg(root().join("modules/lib/spire-entries.sh"))
        .args([
            "/run/spire/server/private/api.sock",
            "spiffe://flashpods.local/host",
            f.to_str().unwrap(),
        ])
        .env("PATH", path)
        .env("FAKE_SPIRE_STATE", state)
        .env("FAKE_SPIRE_LOG", dir.join("calls.log"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reconcile failed: {}{}",
        testworld::stdout(&out),
        testworld::stderr(&out)
    );
    testworld::stdout(&out)
}

fn entries(state: &Path) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    let mut out: Vec<(String, String)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let id = format!(
                "spiffe://{}{}",
                e["spiffe_id"]["trust_domain"].as_str().unwrap(),
                e["spiffe_id"]["path"].as_str().unwrap()
            );
            let sels: Vec<String> = e["selectors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    format!(
                        "{}:{}",
                        s["type"].as_str().unwrap(),
                        s["value"].as_str().unwrap()
                    )
                })
                .collect();
            (id, sels.join(","))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn reconcile_creates_once_then_keeps_and_removes_stale_and_duplicates() {
    for t in ["jq", "python3"] {
        if testworld::which(t).is_none() {
            testworld::cannot_run(&format!("{t} is not installed (bash scripts/setup)"));
            return;
        }
    }
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state.json");
    // The desired list, exactly as lib/spire.nix renders it.
    let desired = testworld::render(&format!(
        "(import {}/modules/lib/spire.nix {{ }}).entriesText",
        root().display()
    ));
    let want = vec![
        (
            "spiffe://flashpods.local/agent".to_string(),
            "docker:label:flashpods-job-type:agent".to_string(),
        ),
        (
            "spiffe://flashpods.local/worker".to_string(),
            "docker:label:flashpods-job-type:worker".to_string(),
        ),
    ];
    let out = reconcile(&state, &desired, d.path());
    assert!(
        out.contains("created spiffe://flashpods.local/worker"),
        "{out}"
    );
    assert_eq!(entries(&state), want);
    // Three more runs (re-deploys): nothing is created or deleted.
    for _ in 0..3 {
        let out = reconcile(&state, &desired, d.path());
        assert!(
            !out.contains("created") && !out.contains("deleted"),
            "{out}"
        );
    }
    assert_eq!(entries(&state), want);

    // A stale entry and a duplicate appear (an old config, a crashed run).
    let fake = root().join("tests/fixtures/spire/spire-server");
    for (spiffe, sel) in [
        (
            "spiffe://flashpods.local/old",
            "docker:label:flashpods-job-type:old",
        ),
        (
            "spiffe://flashpods.local/worker",
            "docker:label:flashpods-job-type:worker",
        ),
    ] {
        let st = Command::new(&fake)
            .args([
                "entry",
                "create",
                "-socketPath",
                "x",
                "-parentID",
                "spiffe://flashpods.local/host",
                "-spiffeID",
                spiffe,
                "-selector",
                sel,
            ])
            .env("FAKE_SPIRE_STATE", &state)
            .status()
            .unwrap();
        assert!(st.success());
    }
    // An entry under another parent is not ours: it stays.
    let st = Command::new(&fake)
        .args([
            "entry",
            "create",
            "-socketPath",
            "x",
            "-parentID",
            "spiffe://flashpods.local/other",
            "-spiffeID",
            "spiffe://flashpods.local/x",
            "-selector",
            "unix:uid:0",
        ])
        .env("FAKE_SPIRE_STATE", &state)
        .status()
        .unwrap();
    assert!(st.success());
    let out = reconcile(&state, &desired, d.path());
    assert!(
        out.contains("deleted spiffe://flashpods.local/old"),
        "{out}"
    );
    let mut expect = want.clone();
    expect.push((
        "spiffe://flashpods.local/x".to_string(),
        "unix:uid:0".to_string(),
    ));
    expect.sort();
    assert_eq!(entries(&state), expect);

    // A job type removed from the configuration: its entry goes.
    let only_worker: String = desired
        .lines()
        .filter(|l| l.contains("/worker "))
        .map(|l| format!("{l}\n"))
        .collect();
    reconcile(&state, &only_worker, d.path());
    let left = entries(&state);
    assert!(
        left.iter().all(|(id, _)| !id.ends_with("/agent")),
        "{left:?}"
    );
    assert!(left.iter().any(|(id, _)| id.ends_with("/worker")));
}
