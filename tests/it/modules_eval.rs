//! Our NixOS modules evaluated by the real module system (nixpkgs' lib),
//! with loose stand-ins for the NixOS options they set: option types,
//! defaults, assertions, and the values the modules generate. The lib is
//! `$NIXPKGS_LIB` or the machine-level copy (`testworld::NIXPKGS_LIB_HOME`);
//! without one the tests are recorded as not run, with that reason, also
//! under `CI=true` (the one named exception).

use std::path::Path;

/// `nix eval --json` of eval.nix called with `args` (Nix attrset body after
/// libPath and root) and then `.attr` when given; None without a copy of
/// nixpkgs' lib (recorded as skipped; a failure under CI).
fn eval_nix(args: &str, attr: &str) -> Option<std::process::Output> {
    let lib = testworld::nixpkgs_lib()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let expr = format!(
        "(import {}/tests/module-eval/eval.nix {{ libPath = {}; root = {}; {args} }}){attr}",
        root.display(),
        lib.display(),
        root.display()
    );
    Some(testworld::try_sh(&[
        "nix",
        "--extra-experimental-features",
        "nix-command",
        "eval",
        "--json",
        "--impure",
        "--expr",
        &expr,
    ]))
}

/// eval.nix's result, or None (see [`eval_nix`]).
fn evaluate() -> Option<serde_json::Value> {
    let out = eval_nix("", "")?;
    assert!(out.status.success(), "{}", testworld::stderr(&out));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// The defaults the deployment module declares are the ones the Rust
/// inventory assumes for a host that does not import the module: the same
/// options, the same values.
#[test]
fn deployment_module_defaults_equal_the_inventory_defaults() {
    let Some(v) = evaluate() else { return };
    let module = &v["deploymentDefaults"];
    let rust = serde_json::to_value(pantheros::inventory::Deployment::default()).unwrap();
    let keys = |j: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = j.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(module), keys(&rust), "the option sets differ");
    for k in keys(&rust) {
        assert_eq!(module[&k], rust[&k], "default of pantheros.deployment.{k}");
    }
}

/// `nixosModules.default` is the deployment module; alone it declares
/// deployment metadata and nothing else.
#[test]
fn the_default_module_declares_only_deployment_metadata() {
    let Some(v) = evaluate() else { return };
    assert_eq!(
        v["defaultDeclares"]["top"],
        serde_json::json!(["pantheros"])
    );
    assert_eq!(
        v["defaultDeclares"]["pantheros"],
        serde_json::json!(["deployment"])
    );
}

/// `nixosModules.flashpods` keeps its parts under the service:
/// `services.flashpods.{wireguard,firewall,rsync,spire}`, nothing under the
/// tool's own prefix and nothing new at the top level.
#[test]
fn the_flashpods_module_declares_its_parts_under_the_service() {
    let Some(v) = evaluate() else { return };
    let d = &v["flashpodsDeclares"];
    assert_eq!(d["top"], serde_json::json!([]), "{d}");
    assert_eq!(d["services"], serde_json::json!(["flashpods"]), "{d}");
    assert_eq!(
        d["parts"],
        serde_json::json!(["firewall", "rsync", "spire", "wireguard"]),
        "{d}"
    );
}

#[test]
fn modules_evaluate_with_the_real_module_system() {
    let Some(v) = evaluate() else { return };
    a_well_formed_server_is_what_the_checklist_asks(&v["server"]);
    misconfigurations_are_caught_with_clear_messages(&v);
    the_example_hosts_declare_their_metadata_and_placeholders(&v);
}

/// A well-formed Flashpods server: WireGuard, firewall, rsyncd, SPIRE,
/// the checklist's directories, the API's settings.
fn a_well_formed_server_is_what_the_checklist_asks(s: &serde_json::Value) {
    // A well-formed server: no failed assertion, no warning.
    assert_eq!(s["failedAssertions"], serde_json::json!([]), "{s}");
    assert_eq!(s["warnings"], serde_json::json!([]));
    // WireGuard server on 10.0.0.1/24:51820, the laptop as its peer, port open once.
    assert_eq!(s["wgIps"], serde_json::json!(["10.0.0.1/24"]));
    assert_eq!(s["wgListenPort"], 51820);
    assert_eq!(
        s["wgPeers"][0]["allowedIPs"],
        serde_json::json!(["10.0.0.2/32"])
    );
    assert_eq!(s["udpPorts"], serde_json::json!([51820]));
    // API and rsync let in on wg0 by the NixOS firewall; our table restricts them.
    assert_eq!(s["wgTcpPorts"], serde_json::json!([8080, 873]));
    assert_eq!(
        s["nftFlush"], false,
        "a reload must not flush Podman's tables"
    );
    let nft = s["nftContent"].as_str().unwrap();
    assert!(
        nft.contains(
            "iifname \"wg0\" ip saddr { 10.0.0.2 } tcp dport { 8080, 873 } counter accept"
        ),
        "{nft}"
    );
    assert!(nft.contains("ip saddr { 10.88.0.0/16 }"), "{nft}");
    // Rootless Podman's helper runs as the flashpods user, whose uid is
    // fixed so that the output rule can name it.
    assert_eq!(s["user"]["uid"], 870);
    assert!(
        nft.contains("chain output {")
            && nft.contains(
                "meta skuid 870 fib daddr type local tcp dport { 8080, 873 } counter reject with tcp reset"
            ),
        "{nft}"
    );
    // rsyncd: the uploads module, bound to the WireGuard address, laptop only, as flashpods.
    let r = &s["rsyncSettings"];
    assert_eq!(r["globalSection"]["address"], "10.0.0.1");
    assert!(
        r["globalSection"].get("port").is_none(),
        "the nixpkgs module sets the port itself"
    );
    assert_eq!(r["sections"]["uploads"]["hosts allow"], "10.0.0.2");
    assert_eq!(r["sections"]["uploads"]["uid"], "flashpods");
    assert_eq!(r["sections"]["uploads"]["path"], "/tmp/flashpods/uploads");
    // SPIRE: trust domain, the Podman socket for the docker attestor, join token as a credential.
    assert_eq!(s["spireTrustDomain"], "flashpods.local");
    assert_eq!(s["spireDockerSocket"], "unix:///run/flashpods/podman.sock");
    assert!(
        s["spireCredentials"][0]
            .as_str()
            .unwrap()
            .starts_with("join_token:/run/")
    );
    // The checklist's directories, modes and owners.
    let t = &s["tmpfiles"];
    for (dir, mode, owner) in [
        ("/tmp/flashpods/uploads", "0755", "flashpods"),
        ("/var/lib/flashpods/artifacts", "0755", "flashpods"),
        ("/var/lib/flashpods/db", "0755", "flashpods"),
        ("/var/log/flashpods", "0755", "flashpods"),
        ("/run/flashpods", "0750", "flashpods"),
        ("/etc/flashpods", "0700", "root"),
    ] {
        assert_eq!(t[dir]["d"]["mode"], mode, "{dir}");
        assert_eq!(t[dir]["d"]["user"], owner, "{dir}");
    }
    assert_eq!(s["user"]["isSystemUser"], true);
    assert_eq!(s["user"]["subUidRanges"][0]["count"], 65536);
    // The API: configured through the environment, the token as a credential.
    assert_eq!(s["apiEnv"]["FLASHPODS_LISTEN"], "10.0.0.1:8080");
    assert_eq!(
        s["apiCredentials"],
        serde_json::json!(["api-token:/etc/flashpods/api-token"])
    );
    assert_eq!(s["hasTokenService"], false, "no unit without a package");
    assert_eq!(s["backupTimer"]["OnCalendar"], "daily");
    assert!(
        s["podmanExec"]
            .as_str()
            .unwrap()
            .ends_with("system service --time=0 unix:///run/flashpods/podman.sock")
    );
}

/// Misconfigurations are refused by assertions and types, with clear
/// messages.
fn misconfigurations_are_caught_with_clear_messages(v: &serde_json::Value) {
    // Misconfigurations are caught by assertions, with clear messages.
    let msgs = |k: &str| {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        msgs("noLaptops")
            .iter()
            .any(|m| m.contains("services.flashpods.wireguard.laptops is empty"))
    );
    assert!(
        msgs("apiWithoutSchema")
            .iter()
            .any(|m| m.contains("api.schema must be set"))
    );
    assert_eq!(
        v["keyInStore"], false,
        "a store path for the key must be refused"
    );
    let key_script = v["keyScript"].as_str().unwrap();
    assert!(
        key_script.contains("> '/var/lib/my keys/wg0.key'")
            && key_script.contains("chmod 0444 '/var/lib/my keys/wg0.key.pub'"),
        "{key_script}"
    );
    assert!(
        v["peer"]["failedAssertions"][0]
            .as_str()
            .unwrap()
            .contains("must know the server's endpoint")
    );
    assert_eq!(v["peer"]["listenPort"], serde_json::Value::Null);
    assert_eq!(v["peer"]["udpPorts"], serde_json::json!([]));
}

/// The example hosts: metadata as `pantheros hosts` reads it; their example
/// values evaluate and are declared as unfilled placeholders.
fn the_example_hosts_declare_their_metadata_and_placeholders(v: &serde_json::Value) {
    // The example hosts: metadata as `pantheros hosts` reads it; their
    // example values evaluate and are declared as unfilled placeholders
    // (the admin key is set by this evaluation, so that one is filled).
    let h = &v["hosts"];
    assert_eq!(h["hetzner-vps"]["deployment"]["provider"], "hetzner");
    // The Flashpods host: the checklist's 8 vCPU and 16 GB (docs/hetzner.md).
    assert_eq!(
        h["hetzner-vps"]["deployment"]["hetzner"]["serverType"],
        "cx43"
    );
    assert_eq!(
        h["yoga"]["deployment"]["tags"],
        serde_json::json!(["workstation", "laptop"])
    );
    let unfilled = |host: &str| -> Vec<String> {
        let p = h[host]["deployment"]["placeholders"].as_object().unwrap();
        p.iter()
            .filter(|(_, v)| v["filled"] == false)
            .map(|(k, _)| k.clone())
            .collect()
    };
    assert_eq!(
        unfilled("hetzner-vps"),
        ["flashpodsApi", "flashpodsTokenService", "ipv6"]
    );
    // Each WireGuard host has its public key read back after a deploy, into
    // its own facts file, where the other side reads it.
    for host in ["hetzner-vps", "yoga"] {
        let cmd = h[host]["deployment"]["recordFacts"]["wireguardPublicKey"]
            .as_str()
            .unwrap_or_default();
        assert!(
            cmd.starts_with("cat ") && cmd.trim_end_matches('\'').ends_with(".pub"),
            "{host}: {cmd}"
        );
        assert!(
            h[host]["deployment"]["factsFile"]
                .as_str()
                .unwrap_or_default()
                .ends_with(&format!("hosts/{host}/facts.json")),
            "{host}"
        );
    }
    assert_eq!(
        unfilled("yoga"),
        ["hardware", "serverEndpoint", "serverWireguardKey"]
    );
    assert_eq!(unfilled("ovh-vps"), Vec::<String>::new());
    for host in ["hetzner-vps", "yoga"] {
        assert_eq!(h[host]["wireguardEvaluates"], true, "{host}");
        assert_eq!(h[host]["fileSystemsEvaluate"], true, "{host}");
    }
    assert_eq!(v["hetznerAssertions"], serde_json::json!([]));
    assert_eq!(v["hetznerFlashpods"], true);
    assert_eq!(v["sshSettings"]["PasswordAuthentication"], false);
}

/// Keys: the Flashpods secrets file is a key on hetzner-vps (from `pass`,
/// root 0600, kept across reboots), with a path unit and a key unit that
/// flashpods-secrets follows; a key with two sources fails its assertion.
#[test]
fn keys_declare_units_and_the_flashpods_secrets_are_one() {
    let Some(v) = evaluate() else { return };
    let k = &v["hetznerKeys"];
    let key = &k["deployment"]["flashpods-secrets"];
    assert_eq!(
        key["keyCommand"],
        serde_json::json!(["pass", "show", "flashpods/secrets.json"])
    );
    assert_eq!(key["path"], "/var/lib/pantheros/keys/flashpods-secrets");
    assert_eq!(key["permissions"], "0600");
    assert_eq!(key["user"], "root");
    assert_eq!(key["uploadAt"], "pre-activation");
    assert_eq!(k["secretsFile"], key["path"]);
    let unit = serde_json::json!(["pantheros-key-flashpods-secrets.service"]);
    for dep in ["after", "wants", "partOf"] {
        assert_eq!(k["secretsUnit"][dep], unit, "flashpods-secrets {dep}");
    }
    assert_eq!(
        k["pathUnit"]["pathConfig"]["PathExists"],
        "/var/lib/pantheros/keys/flashpods-secrets"
    );
    assert_eq!(
        k["keyUnit"]["unitConfig"]["ConditionPathExists"],
        "/var/lib/pantheros/keys/flashpods-secrets"
    );
    let failed = v["keyBothSources"].to_string();
    assert!(
        failed.contains("exactly one of keyFile and keyCommand (k)"),
        "{failed}"
    );
    // The Rust side reads the same declaration (the evaluated module's JSON).
    let spec: pantheros::inventory::KeySpec = serde_json::from_value(key.clone()).unwrap();
    assert_eq!(spec.dest_dir, "/var/lib/pantheros/keys");
    assert_eq!(
        spec.upload_at,
        pantheros::inventory::UploadAt::PreActivation
    );
}

/// A Nix path literal as keyFile fails evaluation with the reason, and the
/// file was not copied into the store on the way.
#[test]
fn a_path_literal_key_file_fails_evaluation_without_reaching_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let unique = format!("pantheros-literal-key-{}", std::process::id());
    let secret = dir.path().join(&unique);
    std::fs::write(&secret, "literal-secret").unwrap();
    let args = format!("keyFileLiteral = {};", secret.display());
    let Some(out) = eval_nix(&args, ".keyLiteral") else {
        return;
    };
    assert!(!out.status.success());
    let err = testworld::stderr(&out);
    assert!(
        err.contains("keys.k.keyFile is a Nix path literal"),
        "{err}"
    );
    assert!(err.contains("world-readable /nix/store"), "{err}");
    let store = std::fs::read_dir("/nix/store").unwrap();
    let copied: Vec<_> = store
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(&unique))
        .collect();
    assert!(copied.is_empty(), "copied into the store: {copied:?}");
}

/// The Flashpods secrets file is typed as nixpkgs types it (an absolute
/// path outside the store, `types.pathWith`): a store path, a relative path
/// or a Nix path literal fail evaluation; a path with a space reaches the
/// secrets script as one quoted argument.
#[test]
fn the_flashpods_secrets_file_is_an_external_path_passed_escaped() {
    let Some(v) = evaluate() else { return };
    let t = &v["secretsTypes"];
    assert_eq!(t["inStore"], false, "{t}");
    assert_eq!(t["relative"], false, "{t}");
    assert_eq!(t["literal"], false, "{t}");
    assert_eq!(t["spaced"], true, "{t}");
    let script = t["script"].as_str().unwrap();
    assert!(script.contains("'/var/lib/my secrets/s.json'"), "{script}");
}

/// docs/modules.md's option reference is every option our modules declare,
/// with its type, default and description, as the module system reports
/// them (so the words live once, in the modules). `PANTHEROS_UPDATE_DOCS=1`
/// writes it; otherwise a difference fails. Options named in the rest of
/// the page must exist too.
#[test]
fn modules_md_lists_every_option_and_only_real_ones() {
    let Some(v) = evaluate() else { return };
    let docs = v["optionDocs"].as_array().expect("optionDocs");
    assert!(docs.len() > 40, "only {} options?", docs.len());
    let mut section = String::new();
    for d in docs {
        let name = d["name"].as_str().unwrap();
        section.push_str(&format!("### `{name}`\n\n"));
        let default = match d["default"].as_str() {
            Some(t) if t.contains('\n') => format!("\n\n```nix\n{}\n```", t.trim_end()),
            Some(t) => format!(", default `{t}`"),
            None => String::new(),
        };
        section.push_str(&format!(
            "Type: {}{default}\n\n",
            d["type"].as_str().unwrap_or("?")
        ));
        let desc = d["description"].as_str().unwrap_or("").trim();
        if !desc.is_empty() {
            section.push_str(desc);
            section.push_str("\n\n");
        }
    }
    const BEGIN: &str = "<!-- options: generated from the modules by tests/it/modules_eval.rs; PANTHEROS_UPDATE_DOCS=1 cargo test modules_md writes it -->\n";
    const END: &str = "<!-- end of options -->\n";
    let path = testworld::project_root().join("docs/modules.md");
    let page = std::fs::read_to_string(&path).unwrap();
    let (before, after) = match (page.find(BEGIN), page.find(END)) {
        (Some(b), Some(e)) => (page[..b].to_string(), page[e + END.len()..].to_string()),
        _ => (page.clone() + "\n## Every option\n\n", String::new()),
    };
    let want = format!("{before}{BEGIN}\n{section}{END}{after}");
    if std::env::var_os("PANTHEROS_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    assert!(
        page == want,
        "docs/modules.md's option reference differs from the modules: run PANTHEROS_UPDATE_DOCS=1 cargo test modules_md"
    );
    // Option paths named elsewhere on the page are real (a prefix of one).
    let names: Vec<String> = docs
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    let prose = format!("{before}{after}");
    let mut unknown = vec![];
    for word in prose.split('`').skip(1).step_by(2) {
        let w = word.trim_end_matches(".*").trim_end_matches('.');
        if !(w.starts_with("pantheros.deployment") || w.starts_with("services.flashpods")) {
            continue;
        }
        let w = w.split([' ', '=']).next().unwrap_or(w);
        let known = names.iter().any(|n| {
            let n = n.replace("<name>", "*");
            let mut a = n.split('.');
            let mut b = w.split('.');
            loop {
                match (a.next(), b.next()) {
                    (_, None) => break true,
                    (None, Some(_)) => break false,
                    (Some("*"), Some(_)) => {}
                    (Some(x), Some(y)) if x == y => {}
                    _ => break false,
                }
            }
        });
        if !known {
            unknown.push(w.to_string());
        }
    }
    assert!(
        unknown.is_empty(),
        "docs/modules.md names options that do not exist: {unknown:?}"
    );
}

/// The host pantheros created is reached at the address it recorded: its
/// IPv4, or, for an IPv6-only server, the first address of its /64; with
/// neither, the attribute name (null).
#[test]
fn the_target_host_comes_from_the_recorded_ipv4_or_else_ipv6_address() {
    let dir = tempfile::tempdir().unwrap();
    let Some(stub) = testworld::stand_in_nixpkgs(dir.path()) else {
        return;
    };
    let flake = dir.path().join("flake");
    testworld::copy_dir(
        &testworld::project_root().join("modules"),
        &flake.join("modules"),
    );
    std::fs::write(
        flake.join("flake.nix"),
        format!(
            r#"{{
  inputs.nixpkgs.url = "path:{}";
  outputs = {{ self, nixpkgs }}: {{
    nixosConfigurations.server = nixpkgs.lib.nixosSystem {{
      modules = [ ./modules/deployment.nix {{
        nixpkgs.hostPlatform = "x86_64-linux";
        pantheros.deployment.factsFile = ./facts.json;
      }} ];
    }};
  }};
}}
"#,
            stub.display()
        ),
    )
    .unwrap();
    let fact = |name: &str, value: &str| {
        format!(
            r#""{name}": {{"value": "{value}", "source": "hetzner-api", "recorded": "2026-12-07T00:00:00Z"}}"#
        )
    };
    for (facts, want) in [
        (
            format!(
                "{}, {}",
                fact("ipv4", "203.0.113.9"),
                fact("ipv6Address", "2001:db8:5::1/64")
            ),
            "\"203.0.113.9\"",
        ),
        (fact("ipv6Address", "2001:db8:5::1/64"), "\"2001:db8:5::1\""),
        (String::new(), "null"),
    ] {
        std::fs::write(
            flake.join("facts.json"),
            format!("{{\"facts\": {{{facts}}}}}"),
        )
        .unwrap();
        let out = testworld::sh(&[
            "nix",
            "--extra-experimental-features",
            "nix-command flakes",
            "eval",
            "--json",
            &format!(
                "path:{}#nixosConfigurations.server.config.pantheros.deployment.targetHost",
                flake.display()
            ),
        ]);
        assert_eq!(
            testworld::stdout(&out).trim(),
            want,
            "facts {facts}: {}",
            testworld::stderr(&out)
        );
    }
}
