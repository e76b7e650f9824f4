//! The Flashpods host's own scripts (modules/lib/flashpods-*.sh), run for
//! real: the API token and secrets kept private, the SQLite backups.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("modules/lib")
        .join(name)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_api_token_is_created_once_and_secrets_are_made_private() {
    let d = tempfile::tempdir().unwrap();
    let token = d.path().join("api-token");
    let secrets = d.path().join("secrets.json");
    let run = || {
        Command::new("sh")
            .arg(script("flashpods-secrets.sh"))
            .arg(&token)
            .arg(&secrets)
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{}", testworld::stderr(&out));
    assert!(
        testworld::stderr(&out).contains("secrets.json is missing"),
        "{}",
        testworld::stderr(&out)
    );
    let t = std::fs::read_to_string(&token).unwrap();
    assert_eq!(t.len(), 64, "{t:?}");
    assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(mode(&token), 0o600);
    // Not regenerated on the next boot.
    std::fs::write(
        &secrets,
        r#"{"anthropic_api_key":"sk-ant-x","github_token":"ghp_x"}"#,
    )
    .unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(run().status.success());
    assert_eq!(std::fs::read_to_string(&token).unwrap(), t);
    assert_eq!(mode(&secrets), 0o600);
    // An empty token file counts as missing.
    std::fs::write(&token, "").unwrap();
    assert!(run().status.success());
    assert_ne!(std::fs::read_to_string(&token).unwrap(), t);
    assert_eq!(std::fs::read_to_string(&token).unwrap().len(), 64);
}

#[test]
fn backups_are_complete_sqlite_copies_and_only_the_newest_are_kept() {
    if testworld::which("sqlite3").is_none() {
        testworld::cannot_run("sqlite3 is not installed (bash scripts/setup)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("flashpods.db");
    let backups = d.path().join("backups");
    let run = || {
        Command::new("sh")
            .arg(script("flashpods-backup.sh"))
            .arg(&db)
            .arg(&backups)
            .arg("3")
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success() && testworld::stdout(&out).contains("no database yet"));
    testworld::sh(&[
        "sqlite3",
        db.to_str().unwrap(),
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, state TEXT); INSERT INTO jobs (state) VALUES ('done'), ('running');",
    ]);
    for _ in 0..5 {
        let out = run();
        assert!(out.status.success(), "{}", testworld::stderr(&out));
    }
    let files: Vec<_> = std::fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        assert!(
            f.extension().is_some_and(|x| x == "db"),
            "no temporary left: {f:?}"
        );
        let n = testworld::sh(&["sqlite3", f.to_str().unwrap(), "SELECT count(*) FROM jobs"]);
        assert_eq!(testworld::stdout(&n).trim(), "2");
        assert_eq!(mode(f), 0o600);
    }
}
