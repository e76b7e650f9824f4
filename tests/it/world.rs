//! Proof that the test world is real: ssh into a light host, copy a closure
//! into its private store, and set and list generations of its profile.

use testworld::assert_stderr_has;
use testworld::{World, build_toplevel, fixture_flake, stderr, stdout};

#[test]
fn ssh_reaches_a_light_host_with_its_own_hostname() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    w.add_host("beta");
    let out = w.ssh("alpha", &["hostname"]);
    assert!(out.status.success(), "ssh alpha: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "alpha");
    let out = w.ssh("beta", &["hostname"]);
    assert_eq!(stdout(&out).trim(), "beta");
    // The hosts' /run is private: nothing leaks to the machine's /run.
    w.host("alpha")
        .exec_ok(&["sh", "-c", "echo x > /run/alpha-only"]);
    assert!(!std::path::Path::new("/run/alpha-only").exists());
}

#[test]
fn a_changed_host_key_is_refused() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    // Pin a different key for alpha's address: ssh must refuse.
    w.pin_wrong_host_key("alpha");
    let out = w.ssh("alpha", &["true"]);
    assert_eq!(out.status.code(), Some(255));
    assert_stderr_has(
        &out,
        &[
            "HOST IDENTIFICATION HAS CHANGED",
            "Host key verification failed",
        ],
    );
}

#[test]
fn nix_copy_fills_the_private_store_and_profiles_work() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let flake = fixture_flake(w.path());
    let top = build_toplevel(&flake, "hetzner-vps");
    let alpha = w.host("alpha");
    // Not there before: the host's store is its own.
    let before = alpha.exec(&["nix-store", "--check-validity", &top]);
    assert!(
        !before.status.success(),
        "the path should not be in alpha's private store yet"
    );

    let sshopts = w.nix_sshopts();
    let out = w
        .client(&[
            "nix",
            "--extra-experimental-features",
            "nix-command",
            "copy",
            "--to",
            "ssh://alpha",
            &top,
        ])
        .env("NIX_SSHOPTS", &sshopts)
        .output()
        .unwrap();
    assert!(out.status.success(), "nix copy: {}", stderr(&out));
    alpha.exec_ok(&["nix-store", "--check-validity", &top]);
    assert!(
        alpha
            .nix_dir()
            .join("store")
            .join(top.trim_start_matches("/nix/store/"))
            .exists()
    );
    // The whole closure came along (the hello package the system links to).
    let refs = alpha.exec_ok(&["nix-store", "-qR", &top]);
    assert!(refs.lines().any(|l| l.ends_with("-hello-2.12")), "{refs}");

    // Profiles over ssh: set, list, and the link points at the system.
    let profile = "/nix/var/nix/profiles/system";
    let out = w.ssh("alpha", &["nix-env", "-p", profile, "--set", &top]);
    assert!(out.status.success(), "nix-env --set: {}", stderr(&out));
    let out = w.ssh("alpha", &["nix-env", "-p", profile, "--list-generations"]);
    let listing = stdout(&out);
    assert!(
        listing.lines().count() == 1 && listing.contains("(current)"),
        "{listing:?}"
    );
    let link = alpha.exec_ok(&["readlink", "-f", profile]);
    assert_eq!(link.trim(), top);
    // And the activation script runs on the host, changing its state.
    alpha.exec_ok(&[&format!("{profile}/bin/switch-to-configuration"), "switch"]);
    assert_eq!(
        alpha
            .exec_ok(&["cat", "/run/pantheros-fixture/generation"])
            .trim(),
        "1"
    );
}
