//! `pantheros provision` against a Hetzner fake that validates every request
//! and response with the stored OpenAPI schema (tests/hetzner/fake_hcloud.py).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use testworld::hetzner::FakeHetzner;
use testworld::{assert_exit, assert_stderr_has};
use testworld::{json, stderr, stdout};

const TOKEN: &str = "valid-3f9c2a-very-secret";

struct Env {
    dir: tempfile::TempDir,
    fake: FakeHetzner,
}

impl Env {
    fn new() -> Option<Env> {
        if testworld::which("nix").is_none() {
            testworld::cannot_run("nix is not installed");
            return None;
        }
        let fake = FakeHetzner::start()?;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home/.ssh")).unwrap();
        testworld::fixture_flake(dir.path());
        Some(Env { dir, fake })
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    fn flake(&self) -> PathBuf {
        self.dir.path().join("fleet")
    }

    fn add_key(&self, name: &str) -> PathBuf {
        let p = self.home().join(".ssh").join(name);
        testworld::keygen(&p, name);
        p.with_extension("pub")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(testworld::pantheros_bin());
        c.args(args)
            .current_dir(self.flake())
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.config())
            .env("HCLOUD_ENDPOINT", self.fake.endpoint())
            .env("PANTHEROS_HCLOUD_POLL_MS", "20")
            .env("PANTHEROS_HCLOUD_BACKOFF_MS", "20")
            .env_remove("HETZNER_API_TOKEN")
            .env_remove("HCLOUD_TOKEN")
            .env_remove("HCLOUD_CONFIG")
            .env_remove("HCLOUD_CONTEXT")
            .env_remove("PANTHEROS_FLAKE")
            .stdin(Stdio::null());
        c
    }

    /// Run with the token in HCLOUD_TOKEN; the token must not appear in any output.
    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[("HCLOUD_TOKEN", TOKEN)])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        for (_, v) in env {
            assert!(
                !stdout(&out).contains(v) && !stderr(&out).contains(v),
                "a token leaked into the output:\n{}{}",
                stdout(&out),
                stderr(&out)
            );
        }
        out
    }

    fn no_violations(&self) {
        let v = self.fake.violations();
        assert!(v.is_empty(), "requests or responses off the schema: {v:#?}");
    }
}

#[test]
fn create_with_defaults_then_a_second_run_reuses_the_server() {
    let Some(e) = Env::new() else { return };
    e.add_key("id_ed25519");
    let out = e.run(&["provision", "create", "hetzner-vps", "--json"]);
    assert_exit(&out, 0);
    let v = json(&out);
    testworld::assert_schema(&v, "provision");
    assert_eq!(v["result"], "created");
    assert_eq!(v["serverType"], "cx23");
    assert_eq!(v["location"], "nbg1");
    assert_eq!(v["status"], "running");
    let ip = v["ipv4"].as_str().unwrap().to_string();
    assert!(
        stderr(&out).contains(&format!("ssh root@{ip}")),
        "{}",
        stderr(&out)
    );
    // What was posted: defaults, our labels, the uploaded key.
    let post = e.fake.first("POST", "/v1/servers");
    assert_eq!(post["body"]["server_type"], "cx23");
    assert_eq!(post["body"]["image"], "ubuntu-24.04");
    assert_eq!(post["body"]["location"], "nbg1");
    assert_eq!(post["body"]["labels"]["managed-by"], "pantheros");
    assert_eq!(post["body"]["labels"]["pantheros-host"], "hetzner-vps");
    assert_eq!(post["body"]["ssh_keys"].as_array().unwrap().len(), 1);
    // The create action and its next actions were waited for.
    assert!(
        e.fake
            .requests()
            .iter()
            .filter(|r| r["path"].as_str().unwrap().starts_with("/v1/actions/"))
            .count()
            >= 2
    );

    // The server's facts are recorded in the host's facts file.
    let facts_path = e.flake().join("hetzner-vps.facts.json");
    let facts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&facts_path).unwrap()).unwrap();
    assert_eq!(facts["facts"]["ipv4"]["value"], ip.as_str(), "{facts}");
    assert_eq!(facts["facts"]["ipv6Address"]["source"], "hetzner-api");
    assert_stderr_has(&out, &["fact ipv4 = ", "hetzner-vps.facts.json"]);
    let recorded = std::fs::read_to_string(&facts_path).unwrap();

    // Again: the same server is reported, nothing is posted, and the
    // facts, unchanged, are left as they were (their times included).
    let out = e.run(&["provision", "create", "hetzner-vps", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["result"], "reused");
    assert_eq!(json(&out)["ipv4"], ip.as_str());
    assert_eq!(e.fake.count("POST", "/v1/servers"), 1);
    assert_eq!(std::fs::read_to_string(&facts_path).unwrap(), recorded);
    e.no_violations();
}

/// `--ipv6-only`: the server is created without a public IPv4 address
/// (`public_net.enable_ipv4 = false`, checked against the API's schema),
/// and only its IPv6 facts are recorded; it is reached at the first address
/// of its /64.
#[test]
fn an_ipv6_only_server_is_created_without_ipv4_and_reached_over_ipv6() {
    let Some(e) = Env::new() else { return };
    e.add_key("id_ed25519");
    let out = e.run(&[
        "provision",
        "create",
        "hetzner-vps",
        "--ipv6-only",
        "--json",
    ]);
    assert_exit(&out, 0);
    let v = json(&out);
    testworld::assert_schema(&v, "provision");
    assert!(v["ipv4"].is_null(), "{v}");
    let net = v["ipv6"].as_str().unwrap().to_string();
    let post = e.fake.first("POST", "/v1/servers");
    assert_eq!(post["body"]["public_net"]["enable_ipv4"], false, "{post}");
    assert_eq!(post["body"]["public_net"]["enable_ipv6"], true, "{post}");
    let address = net.trim_end_matches("/64").to_string() + "1";
    assert_stderr_has(&out, &["IPv6 only", &format!("ssh root@{address}")]);
    let facts: serde_json::Value = testworld::read_json(&e.flake().join("hetzner-vps.facts.json"));
    assert!(facts["facts"].get("ipv4").is_none(), "{facts}");
    assert_eq!(
        facts["facts"]["ipv6Address"]["value"],
        format!("{address}/64").as_str(),
        "{facts}"
    );
    e.no_violations();
}

#[test]
fn flags_override_the_hosts_settings() {
    let Some(e) = Env::new() else { return };
    e.add_key("id_ed25519");
    let out = e.run(&[
        "provision",
        "create",
        "hetzner-vps",
        "--server-type",
        "cpx22",
        "--location",
        "ash",
        "--image",
        "debian-12",
        "--json",
    ]);
    assert_exit(&out, 0);
    let post = e.fake.first("POST", "/v1/servers");
    assert_eq!(post["body"]["server_type"], "cpx22");
    assert_eq!(post["body"]["location"], "ash");
    assert_eq!(post["body"]["image"], "debian-12");
    assert_eq!(json(&out)["location"], "ash");
    e.no_violations();
}

#[test]
fn the_ssh_key_is_uploaded_once_over_three_runs_and_an_upload_race_is_absorbed() {
    let Some(e) = Env::new() else { return };
    e.add_key("id_ed25519");
    for _ in 0..3 {
        let out = e.run(&["provision", "create", "hetzner-vps"]);
        assert_exit(&out, 0);
    }
    assert_eq!(e.fake.count("POST", "/v1/ssh_keys"), 1);
    let state = e.fake.state();
    assert_eq!(state[TOKEN]["ssh_keys"].as_array().unwrap().len(), 1);

    // Another project (token): the upload "fails" with uniqueness_error after
    // the key was stored (someone else uploaded it meanwhile): looked up, not fatal.
    e.fake
        .inject("POST", "/v1/ssh_keys", 409, "uniqueness_error", 1, true);
    let out = e.run_with(
        &["provision", "create", "hetzner-vps"],
        &[("HCLOUD_TOKEN", "valid-second-project")],
    );
    assert_exit(&out, 0);
    assert_eq!(
        e.fake.state()["valid-second-project"]["ssh_keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    e.no_violations();
}

#[test]
fn ssh_keys_none_several_and_chosen() {
    let Some(e) = Env::new() else { return };
    // None: an error with the ssh-keygen hint, and no server.
    let out = e.run(&["provision", "create", "hetzner-vps"]);
    assert_exit(&out, 21);
    assert_stderr_has(&out, &["ssh-keygen -t ed25519"]);
    assert_eq!(e.fake.mutating_requests().len(), 0);
    // Several without a terminal: named, and --ssh-key picks one.
    e.add_key("id_ed25519");
    let second = e.add_key("id_work");
    let out = e.run(&["provision", "create", "hetzner-vps"]);
    assert_exit(&out, 21);
    assert_stderr_has(&out, &["id_work.pub", "--ssh-key"]);
    let out = e.run(&[
        "provision",
        "create",
        "hetzner-vps",
        "--ssh-key",
        second.to_str().unwrap(),
        "--json",
    ]);
    assert_exit(&out, 0);
    let keys = e.fake.state()[TOKEN]["ssh_keys"].clone();
    assert_eq!(keys[0]["name"], "id_work");
    assert_eq!(
        keys[0]["public_key"].as_str().unwrap().trim(),
        std::fs::read_to_string(&second).unwrap().trim()
    );
    e.no_violations();
}

#[test]
fn token_resolution_order_file_modes_and_missing_token() {
    let Some(e) = Env::new() else { return };
    e.add_key("id_ed25519");
    // HETZNER_API_TOKEN wins over HCLOUD_TOKEN.
    let out = e.run_with(
        &["provision", "create", "hetzner-vps", "--dry-run"],
        &[
            ("HETZNER_API_TOKEN", "valid-first"),
            ("HCLOUD_TOKEN", "broken-second"),
        ],
    );
    assert_exit(&out, 0);
    assert!(
        e.fake.state().get("valid-first").is_some(),
        "the first token must have been used"
    );
    // A token with a line break inside (pasted badly) is a token problem
    // (exit 20, naming the variable), not a network failure; nothing is sent.
    let before = e.fake.requests().len();
    let out = e.run_with(
        &["provision", "create", "hetzner-vps", "--dry-run"],
        &[("HETZNER_API_TOKEN", "valid-first\nsecond-line")],
    );
    assert_exit(&out, 20);
    assert_stderr_has(&out, &["HETZNER_API_TOKEN contains a line break"]);
    assert!(!stderr(&out).contains("second-line"), "{}", stderr(&out));
    assert_eq!(e.fake.requests().len(), before);
    // No token anywhere and no terminal: exit 20 with the console hint, no request.
    let before = e.fake.requests().len();
    let out = e.run_with(&["provision", "create", "hetzner-vps"], &[]);
    assert_exit(&out, 20);
    assert_stderr_has(&out, &["API Tokens"]);
    assert_eq!(e.fake.requests().len(), before);
    // The saved file is used when it is 0600, refused when others can read it.
    let dir = e.config().join("pantheros");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hcloud-token");
    std::fs::write(&file, "valid-from-file\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = e.run_with(&["provision", "create", "hetzner-vps", "--dry-run"], &[]);
    assert_exit(&out, 0);
    assert!(e.fake.state().get("valid-from-file").is_some());
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = e.run_with(&["provision", "create", "hetzner-vps", "--dry-run"], &[]);
    assert_exit(&out, 20);
    assert_stderr_has(&out, &["readable by others", "chmod 600"]);
    assert!(!stderr(&out).contains("valid-from-file"));
    // An invalid token from the environment: said so, exit 20, not echoed.
    let out = e.run_with(
        &["provision", "create", "hetzner-vps"],
        &[("HCLOUD_TOKEN", "nope-this-is-secret")],
    );
    assert_exit(&out, 20);
    assert_stderr_has(&out, &["(unauthorized, HTTP 401)"]);
    e.no_violations();
}

#[test]
fn a_prompted_token_is_checked_before_it_is_saved() {
    let Some(e) = Env::new() else { return };
    e.add_key("id_ed25519");
    // A real terminal (a pty) answers the hidden prompt.
    let prompt = |answer: &str| {
        let bin = testworld::pantheros_bin();
        let mut c = e.command(&[]);
        c.arg("-c")
            .arg(format!(
                "(sleep 1; printf '%s\\r' '{answer}') | python3 -c 'import pty,sys,os; sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))' {} provision create hetzner-vps --dry-run",
                bin.display()
            ));
        let mut sh = Command::new("sh");
        sh.args(c.get_args().collect::<Vec<_>>());
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        sh.current_dir(e.flake()).output().unwrap()
    };
    let file = e.config().join("pantheros/hcloud-token");
    let out = prompt("invalid-typed-token");
    assert_eq!(
        out.status.code(),
        Some(20),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(!file.exists(), "an invalid token must not be saved");
    assert!(
        !stdout(&out).contains("invalid-typed-token"),
        "the prompt must not echo the token"
    );
    let out = prompt("valid-typed-token");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        "valid-typed-token"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(file.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert!(!stdout(&out).contains("valid-typed-token"));
}

#[test]
fn preflight_rejects_unknown_deprecated_and_misplaced_types_before_any_post() {
    let Some(e) = Env::new() else { return };
    e.add_key("id_ed25519");
    let out = e.run(&[
        "provision",
        "create",
        "hetzner-vps",
        "--server-type",
        "cx99",
    ]);
    assert_exit(&out, 22);
    assert_stderr_has(&out, &["cx99 does not exist", "cx23"]);
    let out = e.run(&[
        "provision",
        "create",
        "hetzner-vps",
        "--server-type",
        "cx22",
    ]);
    assert_exit(&out, 22);
    assert_stderr_has(
        &out,
        &[
            "deprecated (unavailable after 2026-01-01)",
            "--server-type cpx22, cx23",
        ],
    );
    // The shipped type itself deprecated: its hint never suggests it, and
    // names only current x86 types offered in the location.
    e.fake.deprecate("cx23", "2026-11-30T00:00:00Z");
    let out = e.run(&[
        "provision",
        "create",
        "hetzner-vps",
        "--server-type",
        "cx23",
    ]);
    assert_exit(&out, 22);
    assert_stderr_has(
        &out,
        &[
            "server type cx23 is deprecated (unavailable after 2026-11-30)",
            "--server-type cpx22, cx43 (or",
        ],
    );
    let hint = stderr(&out);
    let hint = hint.split("hint:").nth(1).unwrap_or_default();
    for never in ["cx23", "cx22", "cax11"] {
        assert!(!hint.contains(never), "{never} suggested: {hint}");
    }
    let out = e.run(&[
        "provision",
        "create",
        "hetzner-vps",
        "--server-type",
        "cax11",
        "--location",
        "ash",
    ]);
    assert_exit(&out, 22);
    assert_stderr_has(&out, &["not offered in ash", "fsn1, nbg1, hel1"]);
    let out = e.run(&[
        "provision",
        "create",
        "hetzner-vps",
        "--image",
        "windows-11",
    ]);
    assert_exit(&out, 22);
    assert!(
        e.fake.mutating_requests().is_empty(),
        "{:?}",
        e.fake.mutating_requests()
    );
    e.no_violations();
}

#[test]
fn dry_run_sends_no_mutating_request() {
    let Some(e) = Env::new() else { return };
    e.add_key("id_ed25519");
    let out = e.run(&["provision", "create", "hetzner-vps", "--dry-run", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["result"], "dry-run");
    testworld::assert_schema(&json(&out), "provision");
    assert_stderr_has(&out, &["would create hetzner-vps"]);
    assert!(e.fake.mutating_requests().is_empty());
    assert!(!e.flake().join("hetzner-vps.facts.json").exists());
    assert!(e.fake.requests().len() >= 3, "preflight should still ask");
    e.no_violations();
}

#[test]
fn rate_limits_gateways_and_conflicts_are_retried_without_duplicates() {
    let Some(e) = Env::new() else { return };
    e.add_key("id_ed25519");
    e.fake.inject(
        "GET",
        "/v1/server_types",
        429,
        "rate_limit_exceeded",
        2,
        false,
    );
    e.fake
        .inject("POST", "/v1/servers", 409, "conflict", 1, false);
    // A gateway error after Hetzner created the server: looked up, not posted again.
    e.fake
        .inject("POST", "/v1/servers", 502, "bad_gateway", 1, true);
    let out = e.run(&["provision", "create", "hetzner-vps", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(e.fake.count("GET", "/v1/server_types"), 3);
    let servers = e.fake.state()[TOKEN]["servers"].as_array().unwrap().len();
    assert_eq!(servers, 1, "exactly one server");
    assert_eq!(
        e.fake.count("POST", "/v1/servers"),
        2,
        "the conflict retried once, the 502 not re-posted"
    );
    e.no_violations();
}

#[test]
fn api_errors_show_message_code_and_a_hint() {
    let Some(e) = Env::new() else { return };
    e.add_key("id_ed25519");
    e.fake
        .inject("POST", "/v1/servers", 412, "resource_unavailable", 1, false);
    let out = e.run(&["provision", "create", "hetzner-vps"]);
    assert_exit(&out, 23);
    let err = stderr(&out);
    assert!(err.contains("POST /v1/servers failed: injected resource_unavailable (resource_unavailable, HTTP 412)"), "{err}");
    assert!(err.contains("--location"), "{err}");
    e.fake.inject_details(
        "POST",
        "/v1/servers",
        422,
        "invalid_input",
        "invalid input in field 'name'",
        serde_json::json!({"fields": [{"name": "name", "messages": ["must be a valid hostname"]}]}),
    );
    let out = e.run(&["provision", "create", "hetzner-vps"]);
    assert_exit(&out, 23);
    assert_stderr_has(
        &out,
        &[
            "(invalid_input, HTTP 422)",
            "name: must be a valid hostname",
        ],
    );
    e.no_violations();
}

#[test]
fn list_destroy_and_foreign_servers() {
    let Some(e) = Env::new() else { return };
    e.add_key("id_ed25519");
    assert_eq!(
        e.run(&["provision", "create", "hetzner-vps"]).status.code(),
        Some(0)
    );
    let out = e.run(&["provision", "list", "--json"]);
    assert_exit(&out, 0);
    let v = json(&out);
    testworld::assert_schema(&v, "provision");
    assert_eq!(v["servers"][0]["name"], "hetzner-vps");
    assert_eq!(v["servers"][0]["host"], "hetzner-vps");
    let out = e.run(&["provision", "list"]);
    assert!(
        stdout(&out)
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("hetzner-vps"),
        "{}",
        stdout(&out)
    );
    // No terminal, no --yes: nothing is deleted.
    let out = e.run(&["provision", "destroy", "hetzner-vps"]);
    assert_exit(&out, 1);
    assert_eq!(
        e.fake.count("DELETE", "/v1/servers/1001").max(
            e.fake
                .mutating_requests()
                .iter()
                .filter(|r| r["method"] == "DELETE")
                .count()
        ),
        0
    );
    let out = e.run(&["provision", "destroy", "hetzner-vps", "--yes"]);
    assert_exit(&out, 0);
    assert!(
        e.fake.state()[TOKEN]["servers"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // A server of that name that pantheros did not make is never touched.
    let raw = format!("{}/servers", e.fake.endpoint());
    testworld::sh(&[
        "curl",
        "-sS",
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {TOKEN}"),
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"name":"hetzner-vps","server_type":"cx23","image":"ubuntu-24.04","location":"nbg1"}"#,
        &raw,
    ]);
    let out = e.run(&["provision", "create", "hetzner-vps"]);
    assert_exit(&out, 25);
    let out = e.run(&["provision", "destroy", "hetzner-vps", "--yes"]);
    assert_exit(&out, 25);
    assert_eq!(
        e.fake.state()[TOKEN]["servers"].as_array().unwrap().len(),
        1
    );
    let out = e.run(&["provision", "destroy", "ovh-vps", "--yes"]);
    assert_exit(&out, 26);
    e.no_violations();
}

#[test]
fn iso_attach_detach_and_rescue() {
    let Some(e) = Env::new() else { return };
    e.add_key("id_ed25519");
    assert_eq!(
        e.run(&["provision", "create", "hetzner-vps"]).status.code(),
        Some(0)
    );
    let out = e.run(&[
        "provision",
        "iso",
        "attach",
        "hetzner-vps",
        "nixos-minimal-25.05-x86_64",
    ]);
    assert_exit(&out, 0);
    assert_eq!(
        e.fake.state()[TOKEN]["servers"][0]["iso"]["name"],
        "nixos-minimal-25.05-x86_64"
    );
    let out = e.run(&["provision", "iso", "attach", "hetzner-vps", "no-such.iso"]);
    assert_exit(&out, 22);
    let out = e.run(&["provision", "iso", "detach", "hetzner-vps"]);
    assert_exit(&out, 0);
    assert!(e.fake.state()[TOKEN]["servers"][0]["iso"].is_null());
    let out = e.run(&["provision", "rescue", "hetzner-vps"]);
    assert_exit(&out, 0);
    assert_eq!(e.fake.state()[TOKEN]["servers"][0]["rescue_enabled"], true);
    assert_eq!(e.fake.count("POST", "/v1/servers/1001/actions/reset"), 1);
    e.no_violations();
}

#[test]
fn a_non_hetzner_host_is_refused() {
    let Some(e) = Env::new() else { return };
    e.add_key("id_ed25519");
    let out = e.run(&["provision", "create", "yoga"]);
    assert_exit(&out, 22);
    assert_stderr_has(&out, &["not a Hetzner host"]);
    let out = e.run(&["provision", "create", "hetzner"]);
    assert_exit(&out, 15);
}

#[test]
fn the_kamal_config_gets_the_new_ip() {
    let Some(e) = Env::new() else { return };
    e.add_key("id_ed25519");
    let cfg = e.flake().join("config");
    std::fs::create_dir_all(&cfg).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kamal/map.yml");
    std::fs::copy(&src, cfg.join("deploy.yml")).unwrap();
    let out = e.run(&["provision", "create", "hetzner-vps", "--json"]);
    assert_exit(&out, 0);
    let ip = json(&out)["ipv4"].as_str().unwrap().to_string();
    assert_eq!(json(&out)["kamal"], "updated");
    assert!(
        stderr(&out).contains(&format!("192.0.2.10 -> {ip}")),
        "{}",
        stderr(&out)
    );
    let expected = std::fs::read_to_string(src)
        .unwrap()
        .replace("\"192.0.2.10\"", &format!("\"{ip}\""));
    assert_eq!(
        std::fs::read_to_string(cfg.join("deploy.yml")).unwrap(),
        expected
    );
}

/// hcloud CLI users already have a token in the hcloud CLI's own config:
/// its active context is used (after the environment), `HCLOUD_CONTEXT`
/// picks another, `HCLOUD_CONFIG` moves the file, and a context that is
/// missing or gets its token from a command is a clear token error (20).
#[test]
fn the_token_of_the_hcloud_cli_context_is_used() {
    let Some(e) = Env::new() else { return };
    let dir = e.home().join(".config/hcloud");
    std::fs::create_dir_all(&dir).unwrap();
    let cli = dir.join("cli.toml");
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    write(
        &cli,
        &format!(
            "active_context = \"stale\"\n\n[[contexts]]\nname = \"stale\"\ntoken = \"invalid-stale-token\"\n\n\
             [[contexts]]\nname = \"work\"\ntoken = \"{TOKEN}\"\n\n[[contexts]]\nname = \"cmd\"\ntoken_command = \"pass hcloud\"\n"
        ),
    );
    // The active context's token is the one sent: it is refused (401 → 20).
    let out = e.run_with(&["provision", "list"], &[]);
    assert_exit(&out, 20);
    // Hetzner refused exactly that token (no token at all would say so
    // instead), and the hint names where pantheros looks.
    assert_stderr_has(&out, &["(unauthorized, HTTP 401)", "hcloud CLI's context"]);
    // HCLOUD_CONTEXT picks the working one; nothing else is needed.
    let out = e.run_with(
        &["provision", "list", "--json"],
        &[("HCLOUD_CONTEXT", "work")],
    );
    assert_exit(&out, 0);
    testworld::assert_schema(&json(&out), "provision");
    assert!(!stdout(&out).contains(TOKEN) && !stderr(&out).contains(TOKEN));
    // A context that is not there, or that runs a command for its token
    // (the context's name is in the error, so run_with's leak check is not
    // for these: no token is).
    let in_context = |name: &str| {
        let out = e
            .command(&["provision", "list"])
            .env("HCLOUD_CONTEXT", name)
            .output()
            .unwrap();
        assert!(!stderr(&out).contains(TOKEN) && !stderr(&out).contains("invalid-stale-token"));
        out
    };
    let out = in_context("nope");
    assert_exit(&out, 20);
    assert_stderr_has(&out, &["\"nope\"", "it has: stale, work, cmd"]);
    let out = in_context("cmd");
    assert_exit(&out, 20);
    assert_stderr_has(&out, &["token_command", "HCLOUD_TOKEN"]);
    // The environment still comes first.
    let out = e.run(&["provision", "list"]);
    assert_exit(&out, 0);
    // HCLOUD_CONFIG moves the file; one others can read is refused.
    let moved = e.dir.path().join("elsewhere.toml");
    write(
        &moved,
        &format!("active_context = \"w\"\n[[contexts]]\nname = \"w\"\ntoken = \"{TOKEN}\"\n"),
    );
    let path = moved.to_str().unwrap();
    let out = e.run_with(&["provision", "list"], &[("HCLOUD_CONFIG", path)]);
    assert_exit(&out, 0);
    std::fs::set_permissions(&moved, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = e
        .command(&["provision", "list"])
        .env("HCLOUD_CONFIG", path)
        .output()
        .unwrap();
    assert!(!stderr(&out).contains(TOKEN));
    assert_exit(&out, 20);
    assert_stderr_has(&out, &["readable by others"]);
    e.no_violations();
}

/// `pantheros facts`: the recorded facts as a table; `--refresh` reads the
/// server again from the API, shows what changes, and writes only when
/// confirmed.
#[test]
fn facts_shows_and_refreshes_what_the_api_says() {
    let Some(e) = Env::new() else { return };
    e.add_key("id_ed25519");
    let out = e.run(&["provision", "create", "hetzner-vps", "--json"]);
    assert_exit(&out, 0);
    let ip = json(&out)["ipv4"].as_str().unwrap().to_string();
    let out = e.run(&["facts", "hetzner-vps"]);
    assert_exit(&out, 0);
    let table = stdout(&out);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("ipv4") && l.contains(&ip) && l.contains("hetzner-api")),
        "{table}"
    );

    // The file says something else now (edited, or stale).
    let path = e.flake().join("hetzner-vps.facts.json");
    let stale = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&format!("\"{ip}\""), "\"198.51.100.99\"");
    std::fs::write(&path, &stale).unwrap();
    // Without a terminal and without --yes: shown, refused, not written.
    let out = e.run(&["facts", "hetzner-vps", "--refresh"]);
    assert_exit(&out, 2);
    assert_stderr_has(&out, &[&format!("ipv4: 198.51.100.99 -> {ip}"), "--yes"]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), stale);
    // With --yes: written.
    let out = e.run(&["facts", "hetzner-vps", "--refresh", "--yes", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["facts"]["ipv4"]["value"], ip.as_str());
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains(&format!("\"{ip}\""))
    );
    assert!(
        e.fake
            .mutating_requests()
            .iter()
            .all(|r| r["path"] != "/v1/servers" || r["method"] != "DELETE")
    );
    e.no_violations();
}
