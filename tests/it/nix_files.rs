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

/// What pantheros relies on in flake.lock: a version-7 lock whose root
/// inputs are exactly the inputs flake.nix declares, each locked (a narHash),
/// and every `follows` of flake.nix recorded as such. Which revision or
/// branch is pinned is the maintainers' choice, not checked here.
#[test]
fn flake_lock_is_a_valid_v7_lock_for_the_inputs() {
    if testworld::which("nix").is_none() {
        testworld::cannot_run("nix is not installed (bash scripts/setup)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("flake.lock")).unwrap()).unwrap();
    assert_eq!(lock["version"], 7);
    let nodes = &lock["nodes"];
    let root_node = &nodes[lock["root"].as_str().expect("a root node name")];
    // flake.nix's own inputs, read by nix (not by text search).
    let declared = testworld::json(&testworld::sh(&[
        "nix",
        "--extra-experimental-features",
        "nix-command",
        "eval",
        "--json",
        "--impure",
        "--expr",
        &format!(
            "builtins.mapAttrs (_: i: {{ follows = builtins.mapAttrs (_: f: f.follows or null) (i.inputs or {{ }}); }}) (import {}/flake.nix).inputs",
            root.display()
        ),
    ]));
    let root_inputs = root_node["inputs"].as_object().expect("root inputs");
    let mut locked_names: Vec<&String> = root_inputs.keys().collect();
    locked_names.sort();
    let mut declared_names: Vec<&String> = declared.as_object().unwrap().keys().collect();
    declared_names.sort();
    assert_eq!(locked_names, declared_names, "flake.lock's root inputs");
    for (input, node_name) in root_inputs {
        let node = &nodes[node_name.as_str().expect("a node name")];
        let hash = node["locked"]["narHash"].as_str().unwrap_or("");
        assert!(hash.starts_with("sha256-"), "{input} is not locked: {node}");
        assert!(node["original"].is_object(), "{input}: no original");
        for (sub, follows) in declared[input]["follows"].as_object().unwrap() {
            if let Some(target) = follows.as_str() {
                assert_eq!(
                    node["inputs"][sub],
                    serde_json::json!([target]),
                    "{input}.inputs.{sub} follows {target} in flake.nix"
                );
            }
        }
    }
}

/// The package's source (the fileset in nix/package.nix) holds all cargo
/// needs: the workspace loads from a copy of just those files, and every
/// file the code includes at compile time is in it.
#[test]
fn the_package_source_holds_what_cargo_needs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let package = std::fs::read_to_string(root.join("nix/package.nix")).unwrap();
    let entries: Vec<&str> = package
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("../"))
        .collect();
    assert!(entries.contains(&"../src"), "{entries:?}");
    let copy = tempfile::tempdir().unwrap();
    for e in &entries {
        let rel = e.trim_start_matches("../");
        let to = copy.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let out = testworld::sh(&[
            "cp",
            "-a",
            root.join(rel).to_str().unwrap(),
            to.to_str().unwrap(),
        ]);
        assert!(out.status.success());
    }
    let out = testworld::try_sh(&[
        "cargo",
        "metadata",
        "--offline",
        "--no-deps",
        "--format-version",
        "1",
        "--manifest-path",
        copy.path().join("Cargo.toml").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "cargo cannot load the package source: {}",
        testworld::stderr(&out)
    );

    // include_str!/include_bytes! targets, resolved from each including file.
    let mut sources = vec![];
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    rust_files(&copy.path().join("src"), &mut sources);
    rust_files(&copy.path().join("crates"), &mut sources);
    let mut missing = vec![];
    for f in &sources {
        let text = std::fs::read_to_string(f).unwrap();
        for part in text.split("include_str!(\"").skip(1) {
            let rel = &part[..part.find('"').unwrap()];
            let target = f.parent().unwrap().join(rel);
            if !target.exists() {
                missing.push(format!("{} includes {rel}", f.display()));
            }
        }
    }
    assert!(missing.is_empty(), "not in the package source: {missing:?}");
}

/// The package's source fileset holds every target Cargo.toml names (cargo
/// refuses a manifest whose target file is missing, so `nix build` would
/// fail on a bench added without it).
#[test]
fn the_package_source_holds_every_cargo_target() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let package = std::fs::read_to_string(root.join("nix/package.nix")).unwrap();
    let targets: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("path = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|p| p.ends_with(".rs"))
        .collect();
    assert!(
        !targets.is_empty(),
        "no [[example]] paths found in Cargo.toml"
    );
    // A fileset entry covers a target when it is the file or a folder
    // holding it (../src holds src/main.rs).
    let entries: Vec<&str> = package
        .lines()
        .filter_map(|l| l.trim().strip_prefix("../"))
        .collect();
    let missing: Vec<&&str> = targets
        .iter()
        .filter(|t| {
            !entries
                .iter()
                .any(|e| **t == *e || t.starts_with(&format!("{e}/")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "nix/package.nix's fileset lacks {missing:?}"
    );
}
