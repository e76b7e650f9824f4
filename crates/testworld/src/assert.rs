//! What the tests read and assert: JSON, exit codes, output, schemas.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::*;

/// A JSON file's content (panics, naming the file, when it is missing or
/// not JSON).
#[track_caller]
pub fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", path.display()))
}

/// Parse a command's stdout as JSON, or fail with everything it printed.
#[track_caller]
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            stdout(out),
            stderr(out)
        )
    })
}

/// `nix eval --raw` of an expression with `lib` (modules/lib) and `net`
/// (hosts/flashpods-network.nix) in scope.
pub fn render(expr: &str) -> String {
    let root = project_root();
    let full = format!(
        "let lib = import {}/modules/lib; net = import {}/hosts/flashpods-network.nix; in {expr}",
        root.display(),
        root.display()
    );
    stdout(&sh(&[
        "nix",
        "--extra-experimental-features",
        "nix-command",
        "eval",
        "--raw",
        "--impure",
        "--expr",
        &full,
    ]))
}

impl World {
    /// Start `pantheros ARGS` from the client namespace in the background.
    pub fn spawn_pantheros(&self, dir: &Path, args: &[&str]) -> Child {
        self.spawn_pantheros_with(dir, args, Stdio::null)
    }

    /// The same, with stdout and stderr kept for `wait_with_output`.
    pub fn spawn_pantheros_captured(&self, dir: &Path, args: &[&str]) -> Child {
        self.spawn_pantheros_with(dir, args, Stdio::piped)
    }

    pub(crate) fn spawn_pantheros_with(
        &self,
        dir: &Path,
        args: &[&str],
        io: fn() -> Stdio,
    ) -> Child {
        self.pantheros_command(dir, args)
            .stdout(io())
            .stderr(io())
            .spawn()
            .expect("start pantheros")
    }
}

// ---- The fixture vocabulary shared by every test --------------------------------

/// A world with one light host `name` that already runs fixture generation 1
/// (deployed by pantheros), and the fixture flake's folder. None when the
/// world cannot be built (see [`World::new`]).
pub fn world_with_deployed_host(name: &str) -> Option<(World, PathBuf)> {
    let mut w = World::new()?;
    w.add_host(name);
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[w.fixture_host(name, 1, "")]);
    let out = w.pantheros(&flake, &["deploy", name, "--yes"]);
    assert_exit(&out, 0);
    Some((w, flake))
}

impl World {
    /// A fixture host deployed through this world's SSH config. `extra` is
    /// more `pantheros.deployment` (Nix attrset body); `confirmTimeout`
    /// defaults to 6 s unless `extra` sets it.
    pub fn fixture_host(&self, name: &str, generation: u32, extra: &str) -> FixtureHost {
        let mut h = FixtureHost::new(name, generation);
        let timeout = if extra.contains("confirmTimeout") {
            ""
        } else {
            "confirmTimeout = 6; "
        };
        h.deployment = self.deployment_for(name, &format!("{timeout}{extra}"));
        h
    }

    /// The generation the fixture system running on a light host says it is
    /// ("" when none was activated).
    pub fn generation_marker(&self, host: &str) -> String {
        let out = self
            .host(host)
            .exec(&["cat", "/run/pantheros-fixture/generation"]);
        stdout(&out).trim().to_string()
    }

    /// The store path the host's system profile points at.
    pub fn profile_target(&self, host: &str) -> String {
        self.host(host)
            .exec_ok(&["readlink", "-f", "/nix/var/nix/profiles/system"])
            .trim()
            .to_string()
    }
}

/// The command exited with `code`; otherwise fail showing its output.
/// A one-host deploy that was rolled back (exit 3, `--json`): its
/// rollback reason.
#[track_caller]
pub fn rollback_reason(out: &Output) -> String {
    assert_exit(out, 3);
    let v = json(out);
    assert_eq!(v["hosts"][0]["result"], "rolled-back", "{v}");
    v["hosts"][0]["rollbackReason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// Every needle occurs in the command's stderr; otherwise fail showing it.
#[track_caller]
pub fn assert_stderr_has(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    let missing: Vec<&&str> = needles.iter().filter(|n| !err.contains(**n)).collect();
    assert!(missing.is_empty(), "stderr lacks {missing:?}:\n{err}");
}

/// No needle occurs in the command's stdout or stderr.
#[track_caller]
pub fn assert_output_lacks(out: &Output, needles: &[&str]) {
    let all = format!("{}{}", stdout(out), stderr(out));
    let found: Vec<&&str> = needles.iter().filter(|n| all.contains(**n)).collect();
    assert!(found.is_empty(), "output contains {found:?}:\n{all}");
}

pub(crate) const VALIDATE_SCHEMA: &str = include_str!("validate_schema.py");

/// `doc` is valid against `docs/json/<name>.schema.json` (Python's
/// `jsonschema`, which `scripts/setup` installs with openapi-core).
#[track_caller]
pub fn assert_schema(doc: &serde_json::Value, name: &str) {
    let ok = Command::new("python3")
        .args(["-c", "import jsonschema, referencing"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        cannot_run("python3 with jsonschema is not installed (bash scripts/setup)");
        return;
    }
    let mut child = Command::new("python3")
        .args(["-c", VALIDATE_SCHEMA])
        .arg(project_root().join("docs/json"))
        .arg(name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(doc.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the document does not match docs/json/{name}.schema.json:\n{}{}\n{doc:#}",
        stdout(&out),
        stderr(&out)
    );
}
