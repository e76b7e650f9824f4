//! Keys (`pantheros.deployment.keys`): secrets read on the deployer and
//! written on light hosts over real SSH, checked on the host (owner, group,
//! mode, content) and searched for in every output the run leaves.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testworld::{World, assert_exit, assert_stderr_has, json, stderr, stdout, write_fleet};

const FILE_VALUE: &str = "file-secret-Q7vX2pLm";
const CMD_VALUE: &str = "command-secret-Zr81kTw";

/// A secret file on the deployer, 0600 from its first byte.
fn secret_file(w: &World, name: &str, value: &str) -> PathBuf {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let p = w.path().join("secrets").join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&p)
        .unwrap();
    f.write_all(value.as_bytes()).unwrap();
    p
}

/// `stat` of a file on the host: "user group mode size", or "" when absent.
fn stat(w: &World, host: &str, path: &str) -> String {
    stdout(&w.host(host).exec(&["stat", "-c", "%U %G %a %s", path]))
        .trim()
        .to_string()
}

fn read_on_host(w: &World, host: &str, path: &str) -> String {
    stdout(&w.host(host).exec(&["cat", path]))
}

/// Every file under `dir` (logs, .info), as text.
fn all_text_under(dir: &Path) -> String {
    let mut s = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_symlink() {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(t) = std::fs::read(&p) {
                s.push_str(&String::from_utf8_lossy(&t));
            }
        }
    }
    s
}

/// Two keys: one from a file (owned by nobody:nogroup, 0640, pre-activation)
/// and one from a slow command (root, 0600, post-activation).
fn keys_config(w: &World) -> String {
    let file = secret_file(w, "app", FILE_VALUE);
    let cmd_src = secret_file(w, "cmd-src", CMD_VALUE);
    format!(
        r#"keys = {{
          app-secret = {{ keyFile = "{}"; user = "nobody"; group = "nogroup"; permissions = "0640"; }};
          api-token = {{ keyCommand = [ "sh" "-c" "sleep 1; cat {}" ]; uploadAt = "post-activation"; destDir = "/run/keys-late"; }};
        }};"#,
        file.display(),
        cmd_src.display()
    )
}

#[test]
fn keys_reach_the_host_with_owner_and_mode_and_no_output_holds_a_value() {
    let Some(mut w) = World::new() else { return };
    w.add_host("alpha");
    let flake = w.path().join("fleet");
    write_fleet(&flake, &[w.fixture_host("alpha", 1, &keys_config(&w))]);
    let out = deploy_while_the_process_table_is_sampled(&w, &flake);
    the_keys_are_on_the_host_as_declared(&w);
    the_json_names_each_key(&out);
    no_output_holds_a_value(&w, &flake, &out);
    keys_upload_writes_them_again(&w, &flake);
    a_noop_redeploy_writes_them_again(&w, &flake);
}

fn deploy_while_the_process_table_is_sampled(
    w: &World,
    flake: &std::path::Path,
) -> std::process::Output {
    // The deploy runs while the process table (one PID namespace for the
    // deployer, its ssh, and the host's sshd and shells) is sampled.
    let child = w.spawn_pantheros_captured(flake, &["-vv", "deploy", "alpha", "--yes", "--json"]);
    let pid = child.id();
    let sampler = std::thread::spawn(move || {
        let mut samples = 0;
        let mut seen = String::new();
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let ps = stdout(&testworld::sh(&["ps", "-eo", "args"]));
            for v in [FILE_VALUE, CMD_VALUE] {
                if ps.contains(v) {
                    seen.push_str(&ps);
                }
            }
            // Environments too (readable as root).
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                if let Ok(env) = std::fs::read(e.path().join("environ")) {
                    let env = String::from_utf8_lossy(&env);
                    if env.contains(FILE_VALUE) || env.contains(CMD_VALUE) {
                        seen.push_str(&env);
                    }
                }
            }
            samples += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        (samples, seen)
    });
    let out = child.wait_with_output().unwrap();
    let (samples, seen) = sampler.join().unwrap();
    assert_exit(&out, 0);
    assert!(
        samples > 10,
        "the process table was sampled {samples} times"
    );
    assert!(seen.is_empty(), "a value was in a process table:\n{seen}");
    out
}

fn the_keys_are_on_the_host_as_declared(w: &World) {
    // On the host: owner, group, mode, content; the directory root's, 0711.
    assert_eq!(
        stat(w, "alpha", "/run/keys/app-secret"),
        format!("nobody nogroup 640 {}", FILE_VALUE.len())
    );
    assert_eq!(read_on_host(w, "alpha", "/run/keys/app-secret"), FILE_VALUE);
    assert_eq!(
        stat(w, "alpha", "/run/keys")
            .split(' ')
            .take(3)
            .collect::<Vec<_>>(),
        ["root", "root", "711"]
    );
    assert_eq!(
        stat(w, "alpha", "/run/keys-late/api-token"),
        format!("root root 600 {}", CMD_VALUE.len())
    );
    assert_eq!(
        read_on_host(w, "alpha", "/run/keys-late/api-token"),
        CMD_VALUE
    );
    // No temporary file left behind.
    let left = stdout(
        &w.host("alpha")
            .exec(&["sh", "-c", "ls -A /run/keys /run/keys-late"]),
    );
    assert!(
        !left.contains(".app-secret.") && !left.contains(".api-token."),
        "{left}"
    );
}

fn the_json_names_each_key(out: &std::process::Output) {
    // --json names each key with its path, owner, mode and size.
    let v = json(out);
    testworld::assert_schema(&v, "deploy");
    let keys = v["hosts"][0]["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{v}");
    assert_eq!(keys[0]["name"], "app-secret");
    assert_eq!(keys[0]["path"], "/run/keys/app-secret");
    assert_eq!(keys[0]["user"], "nobody");
    assert_eq!(keys[0]["mode"], "0640");
    assert_eq!(keys[0]["size"], FILE_VALUE.len());
    assert_eq!(keys[1]["name"], "api-token");
}

fn no_output_holds_a_value(w: &World, flake: &std::path::Path, out: &std::process::Output) {
    // No value in stdout, stderr (-vv shows every command), logs, .info, or
    // what the evaluation returns.
    let logs = all_text_under(&w.path().join("logs"));
    assert!(logs.contains("app-secret"), "the log names the keys");
    let hosts = w.pantheros(flake, &["hosts", "--json"]);
    for text in [stdout(out), stderr(out), logs, stdout(&hosts)] {
        for v in [FILE_VALUE, CMD_VALUE] {
            assert!(!text.contains(v), "a value leaked:\n{text}");
        }
    }
}

fn keys_upload_writes_them_again(w: &World, flake: &std::path::Path) {
    // `keys upload` after the host lost /run/keys (a reboot): written again.
    w.host("alpha")
        .exec_ok(&["rm", "-rf", "/run/keys", "/run/keys-late"]);
    let out = w.pantheros(flake, &["keys", "upload", "alpha", "--json"]);
    assert_exit(&out, 0);
    let v = json(&out);
    testworld::assert_schema(&v, "keys");
    assert_eq!(v["hosts"][0]["result"], "success");
    assert_eq!(v["hosts"][0]["keys"].as_array().unwrap().len(), 2);
    assert_eq!(read_on_host(w, "alpha", "/run/keys/app-secret"), FILE_VALUE);
    assert_eq!(
        read_on_host(w, "alpha", "/run/keys-late/api-token"),
        CMD_VALUE
    );
    for v in [FILE_VALUE, CMD_VALUE] {
        assert!(!stdout(&out).contains(v) && !stderr(&out).contains(v));
    }
}

fn a_noop_redeploy_writes_them_again(w: &World, flake: &std::path::Path) {
    // A redeploy of the same system is a no-op that still writes the keys.
    w.host("alpha").exec_ok(&["rm", "-rf", "/run/keys"]);
    let out = w.pantheros(flake, &["deploy", "alpha", "--yes", "--json"]);
    assert_exit(&out, 0);
    let v = json(&out);
    assert_eq!(v["hosts"][0]["result"], "unchanged");
    assert_eq!(v["hosts"][0]["keys"].as_array().unwrap().len(), 2);
    assert_eq!(read_on_host(w, "alpha", "/run/keys/app-secret"), FILE_VALUE);
}

#[test]
fn a_key_that_cannot_be_read_or_owned_changes_nothing_on_the_host() {
    let Some((w, flake)) = testworld::world_with_deployed_host("alpha") else {
        return;
    };
    let gen1 = w.profile_target("alpha");
    let cases = [
        (
            r#"keys.tok = { keyCommand = [ "sh" "-c" "echo no such entry >&2; exit 3" ]; };"#,
            vec!["key `tok`", "keyCommand `sh -c", "exit status 3"],
        ),
        (
            r#"keys.tok = { keyFile = "/nonexistent/secret"; };"#,
            vec!["key `tok`", "cannot read its keyFile /nonexistent/secret"],
        ),
        (
            r#"keys.tok = { keyFile = "/etc/hostname"; user = "no-such-user-x"; };"#,
            vec![
                "user no-such-user-x",
                "No key was written",
                "post-activation",
            ],
        ),
    ];
    for (keys, needles) in cases {
        write_fleet(&flake, &[w.fixture_host("alpha", 2, keys)]);
        let out = w.pantheros(&flake, &["deploy", "alpha", "--yes"]);
        assert_exit(&out, 1);
        assert_stderr_has(&out, &needles);
        assert_eq!(w.generation_marker("alpha"), "1", "{keys}");
        assert_eq!(w.profile_target("alpha"), gen1);
        assert_eq!(stat(&w, "alpha", "/run/keys/tok"), "", "{keys}");
        // No lock left behind.
        assert_eq!(stat(&w, "alpha", "/var/lib/pantheros/lock"), "");
    }
    // keys upload fails the same way, with its own exit code.
    let out = w.pantheros(&flake, &["keys", "upload", "alpha"]);
    assert_exit(&out, 8);
    assert_stderr_has(&out, &["user no-such-user-x"]);
}

#[test]
fn post_activation_keys_wait_for_a_healthy_switch() {
    let Some((w, flake)) = testworld::world_with_deployed_host("alpha") else {
        return;
    };
    let early = secret_file(&w, "early", "early-value");
    let late = secret_file(&w, "late", "late-value");
    let keys = format!(
        r#"keys.early = {{ keyFile = "{}"; }}; keys.late = {{ keyFile = "{}"; uploadAt = "post-activation"; }};"#,
        early.display(),
        late.display()
    );
    // A switch that fails: rolled back, so the late key is never written.
    let mut h = w.fixture_host("alpha", 2, &keys);
    h.fail_switch = true;
    write_fleet(&flake, &[h]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes"]);
    assert_exit(&out, 3);
    assert_eq!(w.generation_marker("alpha"), "1");
    assert_eq!(read_on_host(&w, "alpha", "/run/keys/early"), "early-value");
    assert_eq!(stat(&w, "alpha", "/run/keys/late"), "");

    // A health check that fails: rolled back too, no late key.
    write_fleet(
        &flake,
        &[w.fixture_host(
            "alpha",
            3,
            &format!("{keys} healthChecks.commands = [ \"false\" ]; healthChecks.timeout = 2;"),
        )],
    );
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes"]);
    assert_exit(&out, 3);
    assert_eq!(stat(&w, "alpha", "/run/keys/late"), "");

    // A healthy switch: now it is.
    write_fleet(&flake, &[w.fixture_host("alpha", 4, &keys)]);
    let out = w.pantheros(&flake, &["deploy", "alpha", "--yes"]);
    assert_exit(&out, 0);
    assert_eq!(read_on_host(&w, "alpha", "/run/keys/late"), "late-value");

    // A rollback says keys are not versioned, and leaves them as they are.
    let out = w.pantheros(&flake, &["rollback", "alpha", "--yes"]);
    assert_exit(&out, 0);
    assert_stderr_has(&out, &["keys are not versioned with generations"]);
    assert_eq!(read_on_host(&w, "alpha", "/run/keys/late"), "late-value");
}

#[test]
fn a_reader_never_sees_a_partial_or_wrong_mode_key_while_it_is_replaced() {
    let Some((w, flake)) = testworld::world_with_deployed_host("alpha") else {
        return;
    };
    // Two values big enough that writing one takes many writes.
    let a = "A".repeat(256 * 1024);
    let b = "B".repeat(256 * 1024);
    let src = secret_file(&w, "big", &a);
    let keys = format!(
        r#"keys.big = {{ keyFile = "{}"; user = "nobody"; group = "nogroup"; permissions = "0640"; }};"#,
        src.display()
    );
    write_fleet(&flake, &[w.fixture_host("alpha", 1, &keys)]);
    let out = w.pantheros(&flake, &["keys", "upload", "alpha"]);
    assert_exit(&out, 0);

    // On the host, a reader loops: mode and owner, then size and first byte.
    let reader = w
        .host("alpha")
        .command(&[
            "sh",
            "-c",
            "while [ ! -e /run/keys/stop ]; do \
               s=$(stat -c '%U:%G:%a' /run/keys/big); cat /run/keys/big >/run/snap; \
               echo \"$s $(wc -c </run/snap) $(head -c 1 /run/snap)$(tail -c 1 /run/snap)\"; \
             done > /run/reader.log",
        ])
        .spawn()
        .unwrap();
    let started = Instant::now();
    for i in 0..6 {
        secret_file(&w, "big", if i % 2 == 0 { &b } else { &a });
        let out = w.pantheros(&flake, &["keys", "upload", "alpha"]);
        assert_exit(&out, 0);
    }
    w.host("alpha").exec_ok(&["touch", "/run/keys/stop"]);
    let mut reader = reader;
    let _ = reader.wait();
    let log = read_on_host(&w, "alpha", "/run/reader.log");
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines.len() > 20,
        "the reader read {} times in {:?}",
        lines.len(),
        started.elapsed()
    );
    let size = 256 * 1024;
    for l in &lines {
        assert!(
            *l == format!("nobody:nogroup:640 {size} AA")
                || *l == format!("nobody:nogroup:640 {size} BB"),
            "the reader saw {l:?}"
        );
    }
    assert!(
        lines.iter().any(|l| l.ends_with("BB")),
        "no replacement was seen"
    );
}

/// On a host run by systemd: a key owned by a non-root user reaches it,
/// and the key's unit is restarted after each write (so units that are
/// PartOf it follow a new value).
#[test]
fn on_a_systemd_host_a_written_key_restarts_its_unit() {
    let Some(mut w) = World::with_systemd() else {
        return;
    };
    w.add_systemd_host("sys1");
    let flake = w.path().join("fleet");
    // The key unit as the deployment module declares it, and a record of
    // each start.
    w.ssh_ok(
        "sys1",
        "cat > /etc/systemd/system/pantheros-key-tok.service <<'UNIT'\n\
         [Service]\nType=oneshot\nRemainAfterExit=yes\n\
         ExecStart=/bin/sh -c 'echo started >> /run/key-starts'\nUNIT\n\
         systemctl daemon-reload && systemctl start pantheros-key-tok.service",
    );
    let src = secret_file(&w, "tok", "systemd-secret-1");
    let keys = format!(
        r#"confirmTimeout = 8; keys.tok = {{ keyFile = "{}"; user = "nobody"; group = "nogroup"; permissions = "0440"; }};"#,
        src.display()
    );
    write_fleet(&flake, &[w.fixture_host("sys1", 1, &keys)]);
    let out = w.pantheros(&flake, &["deploy", "sys1", "--yes"]);
    assert_exit(&out, 0);
    assert_eq!(
        w.ssh_ok(
            "sys1",
            "stat -c '%U %G %a' /run/keys/tok; cat /run/keys/tok"
        ),
        "nobody nogroup 440\nsystemd-secret-1"
    );
    assert_eq!(w.ssh_ok("sys1", "cat /run/key-starts").lines().count(), 2);

    secret_file(&w, "tok", "systemd-secret-2");
    let out = w.pantheros(&flake, &["keys", "upload", "sys1"]);
    assert_exit(&out, 0);
    assert_eq!(w.ssh_ok("sys1", "cat /run/keys/tok"), "systemd-secret-2");
    assert_eq!(w.ssh_ok("sys1", "cat /run/key-starts").lines().count(), 3);
}
