//! Facts the machines decide, exchanged between hosts without a hand edit:
//! each host's deploy reads back what its configuration asks for
//! (`recordFacts`, e.g. its WireGuard public key) into its facts file, and
//! the other host's configuration reads it from there. A host whose
//! placeholder waits for another host's fact is refused, naming the
//! command that records it.

use testworld::{World, assert_exit, assert_stderr_has, json, stderr, write_fleet};

#[test]
fn a_key_made_on_one_host_reaches_the_other_through_facts() {
    let Some(mut w) = World::new() else { return };
    w.add_host("srv");
    w.add_host("lap");
    let flake = w.path().join("fleet");
    // Each host makes its key at its first activation (here: when missing)
    // and prints its public half when asked.
    for h in ["srv", "lap"] {
        w.host(h).exec_ok(&[
            "sh",
            "-c",
            &format!("mkdir -p /nix/var/wg && echo {h}-public-key-$RANDOM > /nix/var/wg/key.pub"),
        ]);
    }
    let host = |name: &str, peer: &str, generation: u32, waits: bool| {
        let mut h = w.fixture_host(
            name,
            generation,
            &format!(
                "factsFile = ./{name}.facts.json; facts = readFacts ./{name}.facts.json; \
                 recordFacts = {{ wireguardPublicKey = \"cat /nix/var/wg/key.pub\"; }}; {}",
                if waits {
                    format!(
                        "placeholders.peerKey = {{ filled = (readFacts ./{peer}.facts.json) ? wireguardPublicKey; \
                         fromFact = \"{peer}.wireguardPublicKey\"; file = \"{peer}.facts.json\"; \
                         description = \"{peer}'s WireGuard public key\"; }};"
                    )
                } else {
                    String::new()
                }
            ),
        );
        h.motd = Some(format!(
            "\"peer key: ${{(readFacts ./{peer}.facts.json).wireguardPublicKey or \"unknown\"}}\""
        ));
        h
    };
    // The laptop needs the server's key; the server takes the laptop's
    // when it is known (a peer left out until then).
    write_fleet(
        &flake,
        &[host("srv", "lap", 1, false), host("lap", "srv", 1, true)],
    );

    // The laptop first: refused, with the command that records the key.
    let out = w.pantheros(&flake, &["deploy", "lap", "--yes"]);
    assert_exit(&out, 17);
    assert_stderr_has(
        &out,
        &[
            "srv's fact wireguardPublicKey is not recorded yet",
            "`pantheros up srv`",
        ],
    );

    // The server: deployed, its key read back into srv.facts.json.
    let out = w.pantheros(&flake, &["deploy", "srv", "--yes", "--json"]);
    assert_exit(&out, 0);
    let srv_key = w.host("srv").exec_ok(&["cat", "/nix/var/wg/key.pub"]);
    let srv_key = srv_key.trim();
    assert_eq!(
        json(&out)["hosts"][0]["factsRead"]["wireguardPublicKey"],
        srv_key
    );
    let facts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(flake.join("srv.facts.json")).unwrap())
            .unwrap();
    assert_eq!(facts["facts"]["wireguardPublicKey"]["value"], srv_key);
    assert_eq!(facts["facts"]["wireguardPublicKey"]["source"], "host");
    assert_stderr_has(&out, &["fact wireguardPublicKey = "]);

    // Now the laptop deploys, with the server's key in its system.
    assert_exit(&w.pantheros(&flake, &["deploy", "lap", "--yes"]), 0);
    let motd = |h: &str| {
        w.host(h)
            .exec_ok(&["sh", "-c", "cat /run/current-system/etc/motd"])
    };
    assert!(
        motd("lap").contains(&format!("peer key: {srv_key}")),
        "{}",
        motd("lap")
    );

    // And the server, deployed again, has the laptop's.
    let lap_key = w.host("lap").exec_ok(&["cat", "/nix/var/wg/key.pub"]);
    let out = w.pantheros(&flake, &["deploy", "srv", "--yes"]);
    assert_exit(&out, 0);
    assert!(
        motd("srv").contains(&format!("peer key: {}", lap_key.trim())),
        "{}\n{}",
        motd("srv"),
        stderr(&out)
    );
}
