//! Every .nix file of the repository parses, and flake.lock is a valid
//! version-7 lock file for the flake's inputs.

use std::path::{Path, PathBuf};

fn nix_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "logs" | "node_modules") {
                nix_files(&p, out);
            }
        } else if name.ends_with(".nix") {
            out.push(p);
        }
    }
}

#[test]
fn every_nix_file_parses() {
    if testworld::which("nix-instantiate").is_none() {
        testworld::cannot_run("nix-instantiate is not installed (apt-get install nix-bin)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![];
    nix_files(root, &mut files);
    assert!(
        files.len() >= 10,
        "expected the flake, modules and hosts, found {files:?}"
    );
    let mut bad = vec![];
    for f in &files {
        let out = testworld::try_sh(&["nix-instantiate", "--parse", f.to_str().unwrap()]);
        if !out.status.success() {
            bad.push(format!("{}: {}", f.display(), testworld::stderr(&out)));
        }
    }
    assert!(
        bad.is_empty(),
        "files that do not parse:\n{}",
        bad.join("\n")
    );
}

#[test]
fn flake_lock_is_a_valid_v7_lock_for_the_inputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("flake.lock")).unwrap()).unwrap();
    assert_eq!(lock["version"], 7);
    assert_eq!(lock["root"], "root");
    let nodes = &lock["nodes"];
    let root_inputs = nodes["root"]["inputs"].as_object().unwrap();
    let mut names: Vec<&String> = root_inputs.keys().collect();
    names.sort();
    assert_eq!(names, ["disko", "nixpkgs"]);
    for (input, node_name) in root_inputs {
        let node = &nodes[node_name.as_str().unwrap()];
        let locked = &node["locked"];
        assert_eq!(locked["type"], "github", "{input}");
        let rev = locked["rev"].as_str().unwrap();
        assert!(
            rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()),
            "{input}: rev {rev}"
        );
        assert!(
            locked["narHash"].as_str().unwrap().starts_with("sha256-"),
            "{input}"
        );
        assert!(
            locked["lastModified"].as_u64().unwrap() > 1_700_000_000,
            "{input}"
        );
        assert!(node["original"].is_object(), "{input}");
    }
    assert_eq!(nodes["nixpkgs"]["original"]["ref"], "nixos-26.05");
    // disko follows our nixpkgs.
    assert_eq!(
        nodes["disko"]["inputs"]["nixpkgs"],
        serde_json::json!(["nixpkgs"])
    );
    // And flake.nix declares exactly these inputs.
    let flake = std::fs::read_to_string(root.join("flake.nix")).unwrap();
    assert!(flake.contains("github:NixOS/nixpkgs/nixos-26.05"));
    assert!(flake.contains("github:nix-community/disko"));
    assert!(flake.contains("inputs.nixpkgs.follows = \"nixpkgs\""));
}
