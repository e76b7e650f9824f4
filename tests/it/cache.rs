//! Fan-out through a binary cache (`pantheros.deployment.cache`): the
//! closure is uploaded once, signed, and each host substitutes it from the
//! cache over HTTP instead of receiving it from the deployer.

use testworld::{CacheHost, FixtureHost, World, assert_exit, write_fleet};

/// A world with a cache host and `hosts` light hosts; returns the cache
/// section of their deployment metadata (uploads into the cache's
/// directory, signed with its key).
fn cache_world(hosts: &[&str]) -> Option<(World, CacheHost, String)> {
    let mut w = World::new()?;
    for h in hosts {
        w.add_host(h);
    }
    let cache = w.add_cache_host("cache");
    let spec = format!(
        r#"cache = {{ url = "{}"; upload = "file://{}"; publicKey = "{}"; secretKeyFile = "{}"; }};"#,
        cache.url,
        cache.dir.display(),
        cache.public_key,
        cache.secret_key.display()
    );
    Some((w, cache, spec))
}

fn fixture(w: &World, name: &str, spec: &str) -> FixtureHost {
    let mut h = w.fixture_host(name, 1, spec);
    h.packages = vec![("hello".into(), "2.12".into())];
    h.blob_kib = 64;
    h
}

#[test]
fn a_fleet_substitutes_from_the_cache_the_deployer_uploaded_to_once() {
    let Some((w, cache, spec)) = cache_world(&["c1", "c2", "c3"]) else {
        return;
    };
    w.trust_cache_key("c1", &cache.public_key);
    w.trust_cache_key("c2", &cache.public_key);
    let flake = w.path().join("fleet");
    write_fleet(
        &flake,
        &[
            fixture(&w, "c1", &spec),
            fixture(&w, "c2", &spec),
            fixture(&w, "c3", &spec),
        ],
    );
    let out = w.pantheros(
        &flake,
        &["deploy", "c1", "c2", "c3", "-j", "3", "--yes", "--json"],
    );
    assert_exit(&out, 0);
    let v = testworld::json(&out);
    let stderr = testworld::stderr(&out);
    // A host's entry in the run's document.
    let outcome = |name: &str| {
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .unwrap()
            .clone()
    };
    let log_of =
        |name: &str| std::fs::read_to_string(outcome(name)["log"].as_str().unwrap()).unwrap();
    // What a host's store holds for its system, with its signatures: a
    // path substituted from the cache carries the cache's.
    let signed_by_cache = |name: &str| {
        let h = outcome(name);
        let top = h["toplevel"].as_str().unwrap();
        let sigs = w.host(name).exec_ok(&[
            "nix",
            "--extra-experimental-features",
            "nix-command",
            "path-info",
            "--sigs",
            top,
        ]);
        assert!(sigs.starts_with(top), "{name} does not hold {top}: {sigs}");
        sigs.contains("cache-1:")
    };
    for name in ["c1", "c2"] {
        assert!(
            signed_by_cache(name),
            "{name}'s system did not come from the cache"
        );
        let log = log_of(name);
        assert!(
            log.contains("cache.sh http://"),
            "{name} did not substitute:\n{log}"
        );
        assert!(
            !log.contains(&format!("--to ssh://root@{name}")),
            "{name} was copied to directly:\n{log}"
        );
        assert_eq!(w.generation_marker(name), "1");
    }
    // The host that does not trust the key: a direct copy, with a note.
    assert!(
        stderr.contains("[c3] note: c3 does not trust the cache's key"),
        "{stderr}"
    );
    assert!(log_of("c3").contains("--to ssh://root@c3"));
    assert!(!signed_by_cache("c3"), "c3's system came from the cache");
    assert_eq!(w.generation_marker("c3"), "1");
    // Every path reached the cache once: each "copying path" of the
    // uploads names a different path, and the cache holds them all.
    let mut uploaded: Vec<String> = ["c1", "c2", "c3"]
        .iter()
        .flat_map(|n| {
            log_of(n)
                .lines()
                .filter(|l| l.contains("copying path '") && l.contains("to 'file://"))
                .filter_map(|l| l.split('\'').nth(1).map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    let total = uploaded.len();
    uploaded.sort();
    uploaded.dedup();
    assert_eq!(
        uploaded.len(),
        total,
        "a path was uploaded twice: {uploaded:?}"
    );
    assert!(total > 3, "nothing was uploaded: {uploaded:?}");
    let narinfos = std::fs::read_dir(&cache.dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "narinfo")
        })
        .count();
    assert_eq!(narinfos, total);
}

#[test]
fn an_unwritable_cache_fails_every_host_before_any_changes() {
    let Some((w, cache, spec)) = cache_world(&["d1", "d2"]) else {
        return;
    };
    w.trust_cache_key("d1", &cache.public_key);
    w.trust_cache_key("d2", &cache.public_key);
    // The upload store cannot be written (a file where its directory goes).
    let blocked = w.path().join("blocked");
    std::fs::write(&blocked, "not a directory").unwrap();
    let spec = spec.replace(
        &format!("file://{}", cache.dir.display()),
        &format!("file://{}/cache", blocked.display()),
    );
    let flake = w.path().join("fleet");
    write_fleet(
        &flake,
        &[fixture(&w, "d1", &spec), fixture(&w, "d2", &spec)],
    );
    let out = w.pantheros(&flake, &["deploy", "d1", "d2", "--yes", "--json"]);
    assert_exit(&out, 1);
    let v = testworld::json(&out);
    for h in v["hosts"].as_array().unwrap() {
        assert_eq!(h["result"], "failed", "{v}");
        let err = h["error"].as_str().unwrap_or_default();
        assert!(
            err.contains("binary cache") && err.contains("nothing was changed"),
            "{err}"
        );
    }
    for name in ["d1", "d2"] {
        assert_eq!(w.generation_marker(name), "", "{name} was changed");
    }
}
