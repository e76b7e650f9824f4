//! The pipeline and the fleet run against in-memory hosts (`target/fake.rs`):
//! the stage order, the activation state machine, every rollback path, the
//! lock, keys, and the fleet's exit code, without root, SSH or Nix.

use std::path::Path;
use std::sync::Arc;

use super::fleet::{self, FleetArgs};
use super::gate::{Gate, Permits};
use super::{Ctx, Goal, HostResult, Mode, Options, Outcome, interrupt, keys, pipeline};
use crate::host::Target;
use crate::host::fake::{Behaviour, FakeFleet, State};
use crate::inventory::{Deployment, Host, KeySpec, UploadAt};
use crate::nix::Nix;
use crate::report::log::HostLog;

const HASH: &str = "11111111111111111111111111111111";

fn drv(name: &str) -> String {
    format!("/nix/store/{HASH}-nixos-system-{name}-2.drv")
}

/// The toplevel the fake build of `name` yields.
fn top(name: &str) -> String {
    drv(name).trim_end_matches(".drv").to_string()
}

fn host(name: &str, tweak: impl FnOnce(&mut Deployment)) -> Host {
    let mut d = Deployment {
        target_host: Some(name.into()),
        confirm_timeout: 3,
        ..Default::default()
    };
    d.health_checks.services = vec!["app.service".into()];
    d.health_checks.timeout = 1;
    tweak(&mut d);
    Host {
        name: name.into(),
        uses_module: true,
        deployment: d,
        drv_path: Some(drv(name)),
        system: None,
        disko_drv_path: None,
        toplevel: None,
        extras: Default::default(),
        warnings: vec![],
    }
}

/// A host running generation 1 that misbehaves as told.
fn misbehaving(behaviour: Behaviour) -> State {
    State {
        behaviour,
        ..running_old()
    }
}

/// A host running generation 1 (an older system).
fn running_old() -> State {
    let old = format!("/nix/store/{HASH}-nixos-system-old-1");
    State {
        generations: vec![old.clone()],
        current: 1,
        running: Some(old),
        ..Default::default()
    }
}

fn options(fake: &FakeFleet, dir: &Path) -> Options {
    let mut o = Options::new(
        Mode::Deploy,
        Goal::Switch,
        dir.join("logs"),
        crate::report::Display::plain(),
    );
    o.executor = fake.executor();
    o
}

async fn run(fake: &FakeFleet, h: Host) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(fake, dir.path());
    let log = HostLog::create(&dir.path().join("logs"), "deploy", &h.name, "t").unwrap();
    let target = Target::for_host(&h, dir.path(), false);
    let reach = opts.reach();
    let session = crate::host::Session::new(&h, target, log, &reach);
    let ctx = Ctx {
        keys: keys::read(&h).await,
        session,
        host: h,
        opts: Arc::new(opts),
        nix: Nix {
            program: "nix".into(),
            flags: Default::default(),
        },
        interrupt: interrupt::Interrupt::never(),
    };
    pipeline::run_host(&ctx, Gate::open(), &Permits::new(1)).await
}

fn steps(fake: &FakeFleet, name: &str) -> Vec<String> {
    fake.state(name).steps
}

#[tokio::test]
async fn a_deploy_runs_its_stages_in_order_and_gives_the_lock_back() {
    let fake = FakeFleet::default();
    fake.add("a", running_old());
    let o = run(&fake, host("a", |_| {})).await;
    assert_eq!(o.result, HostResult::Success, "{:?}", o.error);
    assert_eq!(
        steps(&fake, "a"),
        [
            "connect",
            "preflight.sh",
            "copy",
            // The plan and both closures in one remote run.
            "dry-activate.sh",
            // The launch waits for the switch in the same command.
            "launch.sh",
            "confirm.sh",
            // The first round of health checks (the fake records it as
            // health.sh) and the generation ride the proof's command: no
            // remote command of their own.
            "health.sh",
            "unlock.sh"
        ]
    );
    let s = fake.state("a");
    assert_eq!(s.lock, None);
    assert_eq!(s.current, 2);
    // The deploy record, written by the unlock, while the lock was held.
    assert_eq!(s.records.len(), 1);
    let r = &s.records[0];
    assert_eq!(r["result"], "success");
    assert_eq!(r["mode"], "deploy");
    assert_eq!(r["toplevel"], top("a").as_str());
    assert_eq!(
        (r["generation"].as_u64(), r["generationBefore"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(r["runId"].as_str().is_some_and(|id| !id.is_empty()), "{r}");
    assert_eq!(s.running.as_deref(), Some(top("a").as_str()));
    assert_eq!(
        (o.generation_before, o.generation_after),
        (Some(1), Some(2))
    );
    assert_eq!(o.system_after.as_deref(), Some(top("a").as_str()));
    let diff = o.diff.expect("a diff");
    assert!(
        diff.render(&crate::report::Display::plain())
            .contains("hello"),
        "{}",
        diff.render(&crate::report::Display::plain())
    );
    for stage in [
        "build",
        "connect",
        "preflight",
        "copy",
        "diff",
        "activate",
        "health",
        "total",
    ] {
        assert!(o.durations_ms.contains_key(stage), "no timing for {stage}");
    }
}

#[tokio::test]
async fn redeploying_the_running_system_is_one_round_trip() {
    let fake = FakeFleet::default();
    fake.add(
        "a",
        State {
            generations: vec![top("a")],
            current: 1,
            running: Some(top("a")),
            ..Default::default()
        },
    );
    let o = run(&fake, host("a", |_| {})).await;
    assert_eq!(o.result, HostResult::Unchanged);
    assert_eq!(steps(&fake, "a"), ["connect", "preflight.sh"]);
    assert!(fake.state("a").records.is_empty(), "no change, no record");
    assert_eq!(fake.state("a").lock, None);
}

#[tokio::test]
async fn a_failed_switch_is_rolled_back_by_the_target() {
    let fake = FakeFleet::default();
    fake.add(
        "a",
        misbehaving(Behaviour {
            switch_fails: true,
            ..Default::default()
        }),
    );
    let o = run(&fake, host("a", |_| {})).await;
    assert_eq!(o.result, HostResult::RolledBack);
    assert!(
        o.rollback_reason
            .unwrap()
            .contains("switch-to-configuration failed")
    );
    let s = fake.state("a");
    assert_eq!((s.current, s.lock), (1, None));
    assert!(!s.steps.contains(&"health.sh".to_string()));
    assert_eq!(
        super::run_exit_code([o.result]),
        crate::error::exit::ROLLED_BACK
    );
}

#[tokio::test]
async fn without_a_fresh_connection_after_activation_the_target_goes_back() {
    let fake = FakeFleet::default();
    fake.add(
        "a",
        misbehaving(Behaviour {
            unreachable_after_switch: true,
            ..Default::default()
        }),
    );
    let o = run(&fake, host("a", |_| {})).await;
    assert_eq!(o.result, HostResult::RolledBack, "{:?}", o.error);
    let s = fake.state("a");
    assert_eq!(s.current, 1);
    assert!(s.running.unwrap().ends_with("-old-1"));
    assert!(!s.steps.contains(&"health.sh".to_string()));
    assert_eq!(s.lock, None);
}

#[tokio::test]
async fn failed_health_checks_roll_back_unless_that_is_disabled() {
    let unhealthy = || {
        misbehaving(Behaviour {
            health_fails: true,
            ..Default::default()
        })
    };
    let fake = FakeFleet::default();
    fake.add("a", unhealthy());
    let o = run(&fake, host("a", |_| {})).await;
    assert_eq!(o.result, HostResult::RolledBack);
    assert!(
        o.rollback_reason
            .unwrap()
            .contains("app.service is not active")
    );
    assert_eq!(fake.state("a").current, 1);

    fake.add("b", unhealthy());
    let o = run(&fake, host("b", |d| d.rollback_on_health_failure = false)).await;
    assert_eq!(o.result, HostResult::Unhealthy);
    assert_eq!(fake.state("b").current, 2);
    assert_eq!(
        super::run_exit_code([o.result]),
        crate::error::exit::UNHEALTHY
    );
}

#[tokio::test]
async fn a_rollback_that_fails_is_reported_as_such() {
    let fake = FakeFleet::default();
    fake.add(
        "a",
        misbehaving(Behaviour {
            health_fails: true,
            rollback_fails: true,
            ..Default::default()
        }),
    );
    let o = run(&fake, host("a", |_| {})).await;
    assert_eq!(o.result, HostResult::RollbackFailed);
    assert_eq!(
        super::run_exit_code([o.result]),
        crate::error::exit::ROLLBACK_FAILED
    );
}

#[tokio::test]
async fn a_lock_held_by_another_run_changes_nothing() {
    let fake = FakeFleet::default();
    fake.add(
        "a",
        misbehaving(Behaviour {
            locked_by: Some("run-7 pantheros by alice@laptop".into()),
            ..Default::default()
        }),
    );
    let o = run(&fake, host("a", |_| {})).await;
    assert_eq!(o.result, HostResult::Failed);
    assert!(o.error.unwrap().contains("alice@laptop"));
    assert_eq!(steps(&fake, "a"), ["connect", "preflight.sh"]);
    assert_eq!(fake.state("a").current, 1);
}

#[tokio::test]
async fn keys_go_before_the_activation_or_after_a_healthy_switch_only() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("secret");
    std::fs::write(&src, "v4lue").unwrap();
    let with_keys = |d: &mut Deployment| {
        let file = Some(src.to_string_lossy().into_owned());
        d.keys.insert(
            "early".into(),
            KeySpec {
                key_file: file.clone(),
                ..Default::default()
            },
        );
        d.keys.insert(
            "late".into(),
            KeySpec {
                key_file: file,
                upload_at: UploadAt::PostActivation,
                ..Default::default()
            },
        );
    };
    let fake = FakeFleet::default();
    fake.add("a", running_old());
    let o = run(&fake, host("a", with_keys)).await;
    assert_eq!(o.result, HostResult::Success);
    let s = fake.state("a");
    let at = |step: &str| s.steps.iter().position(|x| x == step).unwrap();
    let writes: Vec<usize> = s
        .steps
        .iter()
        .enumerate()
        .filter(|(_, x)| *x == "key-write.sh")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(writes.len(), 2);
    assert!(
        writes[0] < at("launch.sh") && at("health.sh") < writes[1],
        "{:?}",
        s.steps
    );
    assert_eq!(s.keys[0], ("/run/keys/early".into(), b"v4lue".to_vec()));
    assert_eq!(s.keys[1].0, "/run/keys/late");
    assert_eq!(o.keys.len(), 2);

    fake.add(
        "b",
        misbehaving(Behaviour {
            switch_fails: true,
            ..Default::default()
        }),
    );
    let o = run(&fake, host("b", with_keys)).await;
    assert_eq!(o.result, HostResult::RolledBack);
    let keys: Vec<String> = fake.state("b").keys.into_iter().map(|(p, _)| p).collect();
    assert_eq!(keys, ["/run/keys/early"]);
}

/// The fleet: every host gets its outcome, and the run's exit code is its
/// worst host's.
#[tokio::test]
async fn a_fleet_reports_every_host_and_exits_with_the_worst_result() {
    let fake = FakeFleet::default();
    fake.add("ok", running_old());
    fake.add(
        "fails",
        misbehaving(Behaviour {
            switch_fails: true,
            ..Default::default()
        }),
    );
    fake.add(
        "locked",
        misbehaving(Behaviour {
            locked_by: Some("another run".into()),
            ..Default::default()
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let hosts = vec![
        host("ok", |_| {}),
        host("fails", |_| {}),
        host("locked", |_| {}),
    ];
    let code = rollout(&fake, dir.path(), hosts, 2, 0, false, true).await;
    assert_eq!(code, crate::error::exit::ROLLED_BACK);
    assert_eq!(fake.state("ok").current, 2);
    assert_eq!(fake.state("fails").current, 1);
    for h in ["ok", "fails", "locked"] {
        let s = fake.state(h);
        assert_eq!(s.lock, None, "{h}");
    }
    // One .info per host.
    let infos = std::fs::read_dir(dir.path().join("logs/deploy"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".info"))
        .count();
    assert_eq!(infos, 3);
}

/// Without `--keep-going`, the first failure stops the hosts that have not
/// started their activation (one job: the hosts go one after another, in
/// name order); with it, every other host is deployed.
#[tokio::test]
async fn a_failure_stops_the_run_unless_it_keeps_going() {
    for keep_going in [false, true] {
        let fake = FakeFleet::default();
        fake.add(
            "a-fails",
            misbehaving(Behaviour {
                switch_fails: true,
                ..Default::default()
            }),
        );
        fake.add("b", running_old());
        fake.add("c", running_old());
        let hosts = vec![
            host("a-fails", |_| {}),
            host("b", |_| {}),
            host("c", |_| {}),
        ];
        let dir = tempfile::tempdir().unwrap();
        let code = rollout(&fake, dir.path(), hosts, 1, 0, false, keep_going).await;
        assert_eq!(
            code,
            crate::error::exit::ROLLED_BACK,
            "keep_going={keep_going}"
        );
        for h in ["b", "c"] {
            let s = fake.state(h);
            let activated = s.steps.iter().any(|x| x == "launch.sh");
            assert_eq!(
                activated, keep_going,
                "{h} (keep_going={keep_going}): {:?}",
                s.steps
            );
            assert_eq!(s.current, if keep_going { 2 } else { 1 }, "{h}");
            assert_eq!(s.lock, None, "{h} kept its lock");
        }
        if !keep_going {
            let info = std::fs::read_dir(dir.path().join("logs/deploy"))
                .unwrap()
                .flatten()
                .find(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with("deploy-c-") && n.ends_with(".info")
                })
                .expect("c's .info");
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(info.path()).unwrap()).unwrap();
            assert_eq!(v["result"], "failed", "{v}");
            let err = v["error"].as_str().unwrap_or_default();
            assert!(
                err.contains("not activated: a-fails (rolled-back) failed"),
                "{err}"
            );
        }
    }
}

/// A whole run of the fleet (`--yes`), logs under `dir`; its exit code.
async fn rollout(
    fake: &FakeFleet,
    dir: &Path,
    hosts: Vec<Host>,
    jobs: usize,
    canary: usize,
    rollback_succeeded: bool,
    keep_going: bool,
) -> i32 {
    let nix = Nix {
        program: "nix".into(),
        flags: Default::default(),
    };
    let args = FleetArgs {
        yes: true,
        json: false,
        jobs,
        canary,
        rollback_succeeded,
        keep_going,
        master_log: None,
        unevaluated: vec![],
    };
    fleet::deploy(&nix, hosts, options(fake, dir), args).await
}

/// `--canary 1`: the canary is activated and checked before any other
/// host is; when it fails, no other host changes and every lock is back.
#[tokio::test]
async fn a_failing_canary_stops_the_rollout_before_any_other_host_changes() {
    let fake = FakeFleet::default();
    fake.add(
        "c1",
        misbehaving(Behaviour {
            health_fails: true,
            ..Default::default()
        }),
    );
    fake.add("w1", running_old());
    fake.add("w2", running_old());
    let hosts = vec![host("c1", |_| {}), host("w1", |_| {}), host("w2", |_| {})];
    let dir = tempfile::tempdir().unwrap();
    let code = rollout(&fake, dir.path(), hosts, 4, 1, false, false).await;
    assert_eq!(code, crate::error::exit::ROLLED_BACK);
    for h in ["w1", "w2"] {
        let s = fake.state(h);
        assert_eq!(s.current, 1, "{h} changed");
        assert!(
            !s.steps.iter().any(|x| x == "launch.sh"),
            "{h}: {:?}",
            s.steps
        );
        assert!(
            s.steps.iter().any(|x| x == "dry-activate.sh"),
            "{h} was planned"
        );
        assert_eq!(s.lock, None, "{h} kept its lock");
    }
    assert_eq!(fake.state("c1").current, 1, "the canary was rolled back");
}

#[tokio::test]
async fn after_a_healthy_canary_the_rest_follow() {
    let fake = FakeFleet::default();
    for h in ["c1", "w1", "w2"] {
        fake.add(h, running_old());
    }
    let hosts = vec![host("c1", |_| {}), host("w1", |_| {}), host("w2", |_| {})];
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        rollout(&fake, dir.path(), hosts, 4, 1, false, false).await,
        0
    );
    let events = fake.events();
    let at = |e: &str| events.iter().position(|x| x == e).unwrap();
    for h in ["w1", "w2"] {
        assert_eq!(fake.state(h).current, 2);
        assert!(
            at("c1 health.sh") < at(&format!("{h} launch.sh")),
            "{h} activated before the canary was healthy: {events:?}"
        );
    }
}

/// `--rollback-succeeded`: one host fails, so the one this run switched
/// goes back to the generation it ran before; the run says both.
#[tokio::test]
async fn when_a_host_fails_the_succeeded_ones_are_rolled_back_on_request() {
    let fake = FakeFleet::default();
    fake.add("ok", running_old());
    fake.add(
        "fails",
        misbehaving(Behaviour {
            switch_fails: true,
            ..Default::default()
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let code = rollout(
        &fake,
        dir.path(),
        vec![host("ok", |_| {}), host("fails", |_| {})],
        2,
        0,
        true,
        true,
    )
    .await;
    assert_eq!(code, crate::error::exit::ROLLED_BACK);
    let ok = fake.state("ok");
    assert_eq!(ok.current, 1, "ok was not rolled back: {:?}", ok.steps);
    assert!(ok.running.unwrap().ends_with("-old-1"));
    assert_eq!(ok.lock, None);
    // It was switched first, then switched back.
    assert_eq!(ok.steps.iter().filter(|s| *s == "launch.sh").count(), 2);
    assert!(dir.path().join("logs/rollback").exists());
}

/// With `--yes` nothing is asked, so a host that has planned goes on to its
/// activation in the job slot it planned in: with one slot, the first host
/// is activated before the second is even planned (no fleet-wide barrier
/// between planning and activating).
#[tokio::test]
async fn with_yes_a_planned_host_goes_on_without_waiting_for_the_others() {
    let fake = FakeFleet::default();
    for h in ["a", "b"] {
        fake.add(h, running_old());
    }
    let hosts = vec![host("a", |_| {}), host("b", |_| {})];
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        rollout(&fake, dir.path(), hosts, 1, 0, false, false).await,
        0
    );
    let events = fake.events();
    let at = |e: &str| events.iter().position(|x| x == e).unwrap();
    let (first, second) = if at("a preflight.sh") < at("b preflight.sh") {
        ("a", "b")
    } else {
        ("b", "a")
    };
    assert!(
        at(&format!("{first} unlock.sh")) < at(&format!("{second} preflight.sh")),
        "{first} waited for {second}'s plan: {events:?}"
    );
}
