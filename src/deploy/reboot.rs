//! Stage: `deploy --reboot` (and `rollback --reboot`). The new system is
//! booted **once** and kept only when it proves itself; otherwise the host
//! comes back on the old one, by itself if need be:
//!
//! 1. [`arm`]: the profile gets the new generation, the running system's
//!    boot loader installation keeps the old default, the new generation
//!    becomes the one-shot boot entry (systemd-boot's `bootctl
//!    set-oneshot`, or GRUB's `next_entry`, which NixOS's grub.cfg boots
//!    once and clears), the boot watchdog's trial marker is written, and
//!    the host reboots;
//! 2. [`await_boot`]: fresh connections until the host answers with a new
//!    boot id (bounded by `rebootTimeout`), reading what it booted;
//! 3. on the new system: the keys again (/run was emptied), the health
//!    checks, then `keep` (the watchdog is told, the new system becomes
//!    the default); an unhealthy one is sent `back` with a reboot;
//! 4. on the old system (the watchdog rebooted an unproven trial, or the
//!    one-shot entry did not boot): `back`, and why, from the watchdog's
//!    lines.
//!
//! A host that answers on neither, or not at all, is `Unknown`.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::activate::Activated;
use super::preflight::{Current, STATE_DIR};
use super::{Ctx, StageError, health, keys};
use crate::host::protocol::section;
use crate::host::scripts::{self, REBOOT, RebootStep};
use crate::inventory::UploadAt;

/// What a reboot deploy saw, for the outcome and `--json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RebootReport {
    /// The host was rebooted (armed and gone down).
    pub rebooted: bool,
    pub boot_id_before: Option<String>,
    /// The boot it answered from last.
    pub boot_id_after: Option<String>,
    /// What that boot runs (`/run/booted-system`).
    pub booted_system: Option<String>,
    /// The one-shot boot entry of the new generation (systemd-boot's entry
    /// id, or GRUB's menu path).
    pub entry: Option<String>,
    /// The boot watchdog's lines ("BOOT_ID trial|confirmed|expired|other SYSTEM").
    pub watchdog: Vec<String>,
}

/// How a reboot deploy ended, with what it saw.
pub struct Rebooted {
    pub activated: Activated,
    pub report: RebootReport,
    /// The profile's generation and system as the last step read them.
    pub observed: Option<(Option<u64>, Option<String>)>,
    /// The health checks failed on the new system and rollback is off: it
    /// stays (the default now), with what was wrong.
    pub unhealthy: Option<String>,
}

/// What one boot answered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    boot: String,
    booted: String,
    watchdog: Vec<String>,
}

/// Whether this host's boot loader can boot a generation once; Err says
/// why not, before anything changes. A `toplevel` without the boot
/// watchdog (a system that does not import the deployment module) gets a
/// warning: nothing but a reset would bring the old system back.
pub async fn loader(ctx: &Ctx, toplevel: &str) -> Result<(), StageError> {
    let cmd = ctx
        .session
        .target
        .root_script(
            &REBOOT,
            &scripts::reboot_args(STATE_DIR, &RebootStep::Loader { toplevel }),
        )
        .timeout(Duration::from_secs(30));
    let out =
        ctx.session.run_ok(&cmd).await.map_err(|f| {
            StageError::cmd("could not find out which boot loader the host uses", f)
        })?;
    if section(&out.stdout, "watchdog").join("").trim() == "no" {
        ctx.say(
            "warning: the new system has no pantheros boot watchdog (it does not import \
             pantheros.nixosModules.deployment): if it cannot be reached after the reboot, only a reset \
             (Hetzner's, through the API, or yours) brings the old system back",
        );
    }
    let said = section(&out.stdout, "loader").join(" ");
    match said.trim() {
        "systemd-boot" | "grub" => Ok(()),
        other => Err(StageError::new(format!(
            "--reboot cannot boot the new system once on {}: {}; nothing was changed",
            ctx.name(),
            other.strip_prefix("none ").unwrap_or(other)
        ))
        .hint(format!(
            "deploy with `--goal boot` and reboot the host yourself (there is then no automatic way back): \
             pantheros deploy {} --goal boot",
            ctx.name()
        ))),
    }
}

/// Boot `toplevel` once, prove it, keep it; otherwise bring the old
/// system back. `generation`: `rollback --reboot`'s chosen generation.
pub async fn reboot(
    ctx: &Ctx,
    toplevel: &str,
    generation: Option<u64>,
    current: &Current,
) -> Rebooted {
    let mut report = RebootReport::default();
    let (Some(generation_before), Some(system)) = (current.generation, current.system.clone())
    else {
        let reason = "the host has no previous generation to come back to".into();
        return ended(Activated::NotStarted { reason }, report);
    };
    let old = Old {
        generation: generation_before,
        system,
    };
    ctx.say("rebooting into the new system once (the old one stays the boot default)");
    let armed = match arm(ctx, toplevel, generation).await {
        Ok(a) => a,
        Err(activated) => return ended(activated, report),
    };
    report.rebooted = true;
    report.boot_id_before = Some(armed.boot.clone());
    report.entry = Some(armed.entry.clone());
    // The master connection died with the host; later commands open anew.
    ctx.session.target.close().await;

    let timeout = ctx.host.deployment.reboot_timeout;
    let answer = match await_boot(ctx, &armed.boot, timeout).await {
        Some(a) => a,
        None => match after_silence(ctx, &armed, &old, &mut report).await {
            Ok(a) => a,
            Err(activated) => return ended(activated, report),
        },
    };
    report.saw(Some(&answer));
    if answer.booted == old.system {
        let why = came_back_why(
            &answer,
            toplevel,
            ctx.host.deployment.reboot_confirm_timeout,
        );
        return ended(back_on_old(ctx, &old, why).await, report);
    }
    if answer.booted != toplevel {
        let last = format!(
            "after the reboot the host runs {}, neither the new system nor the old one",
            answer.booted
        );
        return ended(Activated::Unknown { last }, report);
    }
    on_new_system(ctx, toplevel, current, &old, &answer, report).await
}

/// What the host ran before: the generation and system to come back to.
struct Old {
    generation: u64,
    system: String,
}

impl Old {
    /// reboot.sh's `back` to this system (and, with `reboot`, a reboot).
    fn back<'a>(&'a self, ctx: &'a Ctx, reboot: bool) -> RebootStep<'a> {
        RebootStep::Back {
            profile: &ctx.host.deployment.profile,
            generation: self.generation,
            system: &self.system,
            reboot,
        }
    }
}

impl RebootReport {
    /// The boot the host answered from (none: it did not answer).
    fn saw(&mut self, answer: Option<&Answer>) {
        self.boot_id_after = answer.map(|a| a.boot.clone());
        self.booted_system = answer.map(|a| a.booted.clone()).filter(|b| !b.is_empty());
        if let Some(a) = answer {
            self.watchdog = a.watchdog.clone();
        }
    }
}

/// A reboot deploy's end; a host that did not answer is not asked again
/// for its generation.
fn ended(activated: Activated, report: RebootReport) -> Rebooted {
    Rebooted {
        observed: matches!(activated, Activated::Unknown { .. }).then_some((None, None)),
        activated,
        report,
        unhealthy: None,
    }
}

/// The host came back on the old system: the profile is put back on it,
/// and the deploy is rolled back, `why`.
async fn back_on_old(ctx: &Ctx, old: &Old, why: String) -> Activated {
    match step(ctx, &old.back(ctx, false)).await {
        Ok(_) => Activated::RolledBack {
            reason: format!("the new system did not prove itself after the reboot ({why})"),
        },
        Err(e) => Activated::RollbackFailed {
            reason: format!(
                "{why}; putting the old system back as the profile's generation failed: {e}"
            ),
        },
    }
}

/// No answer within rebootTimeout: the last resort, a reset through the
/// provider's API (the one-shot entry is spent: the old default boots).
/// Ok: the boot that answered after it, on another system than the old
/// one (judged as any answer); Err: how the deploy ends.
async fn after_silence(
    ctx: &Ctx,
    armed: &Armed,
    old: &Old,
    report: &mut RebootReport,
) -> Result<Answer, Activated> {
    let timeout = ctx.host.deployment.reboot_timeout;
    let reset = match provider_reset(ctx).await {
        Ok(note) => note,
        Err(why) => {
            ctx.session
                .log
                .note(&format!("no reset through a provider: {why}"));
            return Err(no_answer(ctx, timeout));
        }
    };
    ctx.say(&format!("{reset}; waiting for the old system"));
    match await_boot(ctx, &armed.boot, timeout).await {
        Some(a) if a.booted == old.system => {
            report.saw(Some(&a));
            let why = format!(
                "it did not answer within {timeout}s after the reboot, so {reset} and the old system came back"
            );
            Err(back_on_old(ctx, old, why).await)
        }
        Some(a) => Ok(a),
        None => Err(Activated::Unknown {
            last: format!(
                "{} did not answer within {timeout}s after the reboot, nor within {timeout}s after {reset}",
                ctx.name()
            ),
        }),
    }
}

/// The new system answered over a fresh connection: its keys (in /run,
/// emptied by the reboot), then its health; kept when they pass (or when
/// rollback is off), otherwise sent back with a reboot.
async fn on_new_system(
    ctx: &Ctx,
    toplevel: &str,
    current: &Current,
    old: &Old,
    answer: &Answer,
    mut report: RebootReport,
) -> Rebooted {
    ctx.say(&format!(
        "the host is back on the new system (boot {})",
        short(&answer.boot)
    ));
    let problems = match rewrite_keys(ctx).await {
        Err(e) => Some(format!("its keys could not be written again: {e}")),
        Ok(()) => health::health(ctx, current.systemd, &current.failed_units, None)
            .await
            .err()
            .map(|p| format!("health checks failed: {p}")),
    };
    let roll = ctx
        .opts
        .rollback_on_health
        .unwrap_or(ctx.host.deployment.rollback_on_health_failure);
    let p = match problems {
        None => return kept(ctx, toplevel, report, None).await,
        Some(p) if !roll => return kept(ctx, toplevel, report, Some(p)).await,
        Some(p) => p,
    };
    ctx.say(&format!("{p}; rebooting back into the old system"));
    if let Err(e) = step(ctx, &old.back(ctx, true)).await {
        let reason = format!("{p}; going back failed: {e}");
        return ended(Activated::RollbackFailed { reason }, report);
    }
    ctx.session.target.close().await;
    let again = await_boot(ctx, &answer.boot, ctx.host.deployment.reboot_timeout).await;
    report.saw(again.as_ref());
    let activated = match again {
        Some(a) if a.booted == old.system => Activated::RolledBack {
            reason: format!(
                "the new system did not prove itself after the reboot ({p}); rebooted back into generation {}",
                old.generation
            ),
        },
        Some(a) => Activated::Unknown {
            last: format!("{p}; after rebooting back the host runs {}", a.booted),
        },
        None => no_answer(ctx, ctx.host.deployment.reboot_timeout),
    };
    ended(activated, report)
}

/// The trial as armed: the boot id it left from, the one-shot entry.
struct Armed {
    boot: String,
    entry: String,
}

async fn arm(ctx: &Ctx, toplevel: &str, generation: Option<u64>) -> Result<Armed, Activated> {
    let d = &ctx.host.deployment;
    let args = scripts::reboot_args(
        STATE_DIR,
        &RebootStep::Arm {
            profile: &d.profile,
            toplevel,
            confirm_timeout: d.reboot_confirm_timeout,
            run_id: &ctx.opts.run_id,
            generation,
        },
    );
    let cmd = ctx
        .session
        .target
        .root_script(&REBOOT, &args)
        .timeout(Duration::from_secs(d.activation_timeout + 60));
    let out = match ctx.session.run(&cmd).await {
        Ok(o) => o.stdout,
        Err(f) => f.output().to_string(),
    };
    let failed = section(&out, "failed").join(" ");
    if !failed.trim().is_empty() {
        return Err(Activated::NotStarted {
            reason: failed.trim().to_string(),
        });
    }
    let armed = section(&out, "armed").join(" ");
    let entry = section(&out, "entry").join(" ");
    let f: Vec<&str> = armed.split_whitespace().collect();
    match f.as_slice() {
        [_gen, boot] => Ok(Armed {
            boot: boot.to_string(),
            entry: entry.trim().to_string(),
        }),
        _ => Err(Activated::Unknown {
            last: "preparing the reboot gave no answer (the host may or may not reboot into the new system once)"
                .into(),
        }),
    }
}

/// Fresh connections, a quarter second apart, until the host answers from
/// a boot other than `before`, for up to `seconds`. (A host that is down
/// refuses at once or times out after ssh's ConnectTimeout.)
async fn await_boot(ctx: &Ctx, before: &str, seconds: u64) -> Option<Answer> {
    let start = Instant::now();
    let args = scripts::reboot_args(STATE_DIR, &RebootStep::Check);
    while start.elapsed() < Duration::from_secs(seconds) {
        if ctx.interrupt.fired().is_some() {
            return None;
        }
        let cmd = ctx
            .session
            .target
            .fresh_root_script(&REBOOT, &args)
            .timeout(Duration::from_secs(15));
        if let Ok(out) = ctx.session.run(&cmd).await
            && out.success()
        {
            let boot = section(&out.stdout, "boot").join("").trim().to_string();
            if !boot.is_empty() && boot != before {
                return Some(Answer {
                    boot,
                    booted: section(&out.stdout, "booted").join("").trim().to_string(),
                    watchdog: section(&out.stdout, "trial-boots")
                        .iter()
                        .map(|l| l.to_string())
                        .collect(),
                });
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = ctx.interrupt.wait() => {}
        }
    }
    None
}

/// Why the host came back on the old system, from the watchdog's lines.
fn came_back_why(answer: &Answer, toplevel: &str, confirm: u64) -> String {
    let trial = answer
        .watchdog
        .iter()
        .any(|l| l.split_whitespace().nth(1) == Some("trial") && l.ends_with(toplevel));
    let expired = answer
        .watchdog
        .iter()
        .any(|l| l.split_whitespace().nth(1) == Some("expired"));
    if expired {
        format!(
            "it booted but was not proven within {confirm}s (unreachable over SSH?), so its boot watchdog \
             rebooted the host into the old system"
        )
    } else if trial {
        "it booted, then the host went down before it was proven; the old system, still the default, came back"
            .into()
    } else {
        "the host came back on the old system without booting the new one (its boot entry did not start, \
         or it went down before its watchdog ran)"
            .into()
    }
}

/// The new system stays: the watchdog is told, it becomes the default.
/// With `unhealthy`, it stays although its checks failed (rollback off).
async fn kept(
    ctx: &Ctx,
    toplevel: &str,
    report: RebootReport,
    unhealthy: Option<String>,
) -> Rebooted {
    let keep = RebootStep::Keep {
        profile: &ctx.host.deployment.profile,
        toplevel,
    };
    match step(ctx, &keep).await {
        Ok(out) => {
            let kept = section(&out, "kept").join(" ");
            let mut f = kept.split_whitespace();
            let generation = f.next().and_then(|g| g.parse().ok());
            let system = f.next().map(str::to_string);
            Rebooted {
                activated: Activated::Kept,
                report,
                observed: Some((generation, system)),
                unhealthy,
            }
        }
        Err(e) => Rebooted {
            activated: Activated::Unknown {
                last: format!(
                    "the new system runs and proved itself, but making it the default failed ({e}); \
                     its boot watchdog reboots it into the old system"
                ),
            },
            report,
            observed: None,
            unhealthy,
        },
    }
}

/// One reboot.sh step as root over the (new) master; its stdout, or what
/// failed.
async fn step(ctx: &Ctx, step: &RebootStep<'_>) -> Result<String, String> {
    let cmd = ctx
        .session
        .target
        .root_script(&REBOOT, &scripts::reboot_args(STATE_DIR, step))
        .timeout(Duration::from_secs(
            ctx.host.deployment.activation_timeout + 60,
        ));
    match ctx.session.run(&cmd).await {
        Ok(o) if o.success() => Ok(o.stdout),
        Ok(o) => Err({
            let failed = section(&o.stdout, "failed").join(" ");
            if failed.trim().is_empty() {
                crate::runner::tail(&o.stderr, 3).join("; ")
            } else {
                failed.trim().to_string()
            }
        }),
        Err(f) => Err(f.to_string()),
    }
}

/// The keys due before the activation, written again (a reboot empties
/// /run, where keys live).
async fn rewrite_keys(ctx: &Ctx) -> Result<(), String> {
    let keys = ctx.keys.as_ref().map_err(|e| e.message.clone())?;
    if !keys.iter().any(|k| k.at == UploadAt::PreActivation) {
        return Ok(());
    }
    keys::upload(&ctx.session, keys, Some(UploadAt::PreActivation))
        .await
        .map(|_| ())
        .map_err(|e| e.message)
}

/// Power-cycle a host pantheros provisioned on Hetzner (`provider =
/// "hetzner"`) through the API's reset action, for a host that answers on
/// no system: Ok says what was done, Err why nothing was.
async fn provider_reset(ctx: &Ctx) -> Result<String, String> {
    use crate::provision::{self, cloud::Cloud};
    if ctx.host.deployment.provider.as_deref() != Some("hetzner") {
        return Err("the host is not a Hetzner server (pantheros.deployment.provider)".into());
    }
    let failed = |f: provision::Failure| format!("{} ({})", f.message, f.hint);
    let cloud = provision::connect().await.map_err(failed)?;
    let id = ctx
        .host
        .deployment
        .facts
        .get(crate::inventory::facts::names::SERVER_ID)
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
    let server = match id {
        Some(id) => provision::server(&cloud, id).await,
        None => provision::our_server(&cloud, ctx.name()).await,
    }
    .map_err(failed)?;
    ctx.say(&format!(
        "no answer: resetting server {} through the Hetzner API (POST /v1/servers/{}/actions/reset)",
        server.id, server.id
    ));
    let action = cloud
        .reset(server.id)
        .await
        .map_err(|e| format!("POST /v1/servers/{}/actions/reset failed: {e}", server.id))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    provision::wait::action(&cloud, action, deadline, &provision::Spinner::silent())
        .await
        .map_err(failed)?;
    Ok(format!(
        "server {} was reset through the Hetzner API",
        server.id
    ))
}

/// The host did not answer within the timeout.
fn no_answer(ctx: &Ctx, seconds: u64) -> Activated {
    Activated::Unknown {
        last: format!(
            "{} did not answer within {seconds}s after the reboot (rebootTimeout): its boot watchdog brings \
             the old system back by itself when the new one boots but cannot be reached; a host that hangs \
             before that needs its console or a reset",
            ctx.name()
        ),
    }
}

/// The first block of a boot id, for progress lines.
fn short(boot: &str) -> &str {
    boot.split('-').next().unwrap_or(boot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(lines: &[&str]) -> Answer {
        Answer {
            boot: "b2".into(),
            booted: "/nix/store/old".into(),
            watchdog: lines.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn why_the_old_system_came_back() {
        let new = "/nix/store/new";
        let expired = answer(&[
            "b1 trial /nix/store/new",
            "b1 expired /nix/store/new",
            "b2 other /nix/store/old",
        ]);
        assert!(came_back_why(&expired, new, 90).contains("not proven within 90s"));
        let died = answer(&["b1 trial /nix/store/new", "b2 other /nix/store/old"]);
        assert!(came_back_why(&died, new, 90).contains("went down before it was proven"));
        let never = answer(&["b2 other /nix/store/old"]);
        assert!(came_back_why(&never, new, 90).contains("without booting the new one"));
    }

    #[test]
    fn short_boot_ids() {
        assert_eq!(short("d08b21c3-dd92-42b5"), "d08b21c3");
        assert_eq!(short(""), "");
    }
}
