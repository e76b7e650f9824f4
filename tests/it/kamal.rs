//! Kamal's config/deploy.yml: the new server's IP goes under servers → web
//! in each shape Kamal accepts, and every other byte stays as it was.

use std::path::Path;

use pantheros::provision::kamal::{Outcome, update_file, update_text};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kamal")
            .join(name),
    )
    .unwrap()
}

#[test]
fn the_three_shapes_match_their_golden_files() {
    for shape in ["list", "map", "hosts"] {
        let (text, outcome) =
            update_text(&fixture(&format!("{shape}.yml")), "203.0.113.1").unwrap();
        assert_eq!(text, fixture(&format!("{shape}.expected.yml")), "{shape}");
        assert!(
            matches!(outcome, Outcome::Updated { .. }),
            "{shape}: {outcome:?}"
        );
    }
}

#[test]
fn replacing_reports_the_old_value_and_line() {
    let (_, outcome) = update_text(&fixture("list.yml"), "203.0.113.1").unwrap();
    assert_eq!(
        outcome,
        Outcome::Updated {
            before: Some("192.0.2.10".into()),
            line: 6
        }
    );
}

#[test]
fn an_ip_already_there_changes_nothing() {
    let text = fixture("hosts.expected.yml");
    let (new, outcome) = update_text(&text, "203.0.113.1").unwrap();
    assert_eq!(outcome, Outcome::Unchanged);
    assert_eq!(new, text);
}

#[test]
fn a_malformed_file_is_left_untouched_with_instructions() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("deploy.yml");
    std::fs::write(&f, fixture("malformed.yml")).unwrap();
    let outcome = update_file(&f, "203.0.113.1").unwrap();
    match outcome {
        Outcome::Manual(how) => {
            assert!(how.contains("does not parse"), "{how}");
            assert!(how.contains("- 203.0.113.1"), "{how}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        fixture("malformed.yml")
    );
}

#[test]
fn a_flow_style_list_is_not_guessed_at() {
    let text = "servers:\n  web: [192.0.2.10]\n";
    match update_text(text, "203.0.113.1") {
        Err(Outcome::Manual(how)) => assert!(how.contains("servers:"), "{how}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn files_keep_their_mode_and_are_replaced_whole() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("deploy.yml");
    std::fs::write(&f, fixture("map.yml")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    update_file(&f, "203.0.113.1").unwrap();
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        fixture("map.expected.yml")
    );
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        1,
        "no temporary file left behind"
    );
}
