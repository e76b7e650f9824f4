//! The flake's apps run the pantheros subcommands: `nix run .#rollback --
//! ARGS` is `pantheros rollback ARGS`. nixpkgs cannot be downloaded here,
//! so the repository's flake.nix is evaluated with a stand-in nixpkgs
//! (tests/fixtures/stub-nixpkgs) whose package is the binary under test.

use std::fs;
use std::path::Path;

fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &dst.join(e.file_name()));
        } else {
            fs::copy(&p, dst.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn nix_run_of_each_app_runs_the_matching_subcommand() {
    if testworld::which("nix").is_none() {
        testworld::cannot_run("nix is not installed");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let d = tempfile::tempdir().unwrap();
    let flake = d.path().join("pantheros");
    fs::create_dir_all(&flake).unwrap();
    for f in ["flake.nix", "flake.lock", "Cargo.toml"] {
        fs::copy(root.join(f), flake.join(f)).unwrap();
    }
    for dir in ["nix", "modules", "hosts"] {
        copy_dir(&root.join(dir), &flake.join(dir));
    }
    let stub = d.path().join("stub-nixpkgs");
    copy_dir(&root.join("tests/fixtures/stub-nixpkgs"), &stub);
    fs::write(
        stub.join("binary"),
        testworld::pantheros_bin().to_str().unwrap(),
    )
    .unwrap();
    fs::write(
        stub.join("flake.lock"),
        r#"{"nodes":{"root":{}},"root":"root","version":7}"#,
    )
    .unwrap();

    let run = |app: &str, args: &[&str]| {
        let installable = format!("path:{}#{app}", flake.display());
        let stub_ref = format!("path:{}", stub.display());
        let mut argv = vec![
            "nix",
            "--extra-experimental-features",
            "nix-command flakes",
            "run",
            "--option",
            "substituters",
            "",
            "--no-write-lock-file",
            "--override-input",
            "nixpkgs",
            &stub_ref,
            "--override-input",
            "disko",
            &stub_ref,
            &installable,
            "--",
        ];
        argv.extend_from_slice(args);
        testworld::try_sh(&argv)
    };
    // Each app's --help names its own subcommand's options.
    for (app, marker) in [
        ("deploy", "--build-only"),
        ("build-all", "Builds at once"),
        ("rollback", "--list"),
        ("up", "--no-kamal"),
        ("hosts", "SELECTOR"),
        ("validate", "--handshake-within"),
    ] {
        let out = run(app, &["--help"]);
        assert!(
            out.status.success(),
            "nix run .#{app}: {}",
            testworld::stderr(&out)
        );
        let text = testworld::stdout(&out);
        assert!(
            text.contains(marker),
            "nix run .#{app} -- --help did not show {marker}:\n{text}"
        );
    }
    // The default app is the whole command line.
    let out = run("default", &["--version"]);
    assert!(
        testworld::stdout(&out).starts_with("pantheros "),
        "{}",
        testworld::stderr(&out)
    );
    // And real work goes through: the fixture fleet, listed by the hosts app.
    let fleet = testworld::fixture_flake(d.path());
    let out = run("hosts", &["--flake", fleet.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", testworld::stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hosts"].as_array().unwrap().len(), 4);
    // provision: its own options through the app as well.
    let out = run("provision", &["create", "--help"]);
    assert!(
        testworld::stdout(&out).contains("--server-type"),
        "{}",
        testworld::stdout(&out)
    );
}
