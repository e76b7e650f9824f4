//! Stage: the host's health checks after activation (systemd's own view on
//! systemd hosts, then the declared services, HTTP endpoints fetched on the
//! host, and commands), retried until they pass or the host's timeout ends.
//! The first round usually rides the reachability proof's command (the
//! activation stage runs it there); the retries run here.

use std::time::{Duration, Instant};

use super::Ctx;
use crate::host::scripts::{self, HealthArgs};

/// How one round of checks ended: what it printed when it passed, what it
/// found wrong when it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    Passed(String),
    Failed(String),
}

/// The host's checks, or None when it declares none. Units in `baseline`
/// had failed before the deploy: they are not blamed on it.
pub fn checks(ctx: &Ctx, systemd: bool, baseline: &[String]) -> Option<HealthArgs> {
    let hc = &ctx.host.deployment.health_checks;
    let checks = HealthArgs {
        systemd,
        // Each check may take the host's timeout once per attempt, and the
        // attempts go on until that much time has passed overall.
        timeout: hc.timeout.clamp(1, 300),
        baseline: baseline.to_vec(),
        services: hc.services.clone(),
        http: hc.http.clone(),
        commands: hc.commands.clone(),
    };
    (!checks.is_empty()).then_some(checks)
}

/// Run the checks (taking `first` as the first round when the proof's
/// command ran it); `Err` carries what the last round found wrong.
pub async fn health(
    ctx: &Ctx,
    systemd: bool,
    baseline: &[String],
    first: Option<Round>,
) -> Result<(), String> {
    let Some(checks) = checks(ctx, systemd, baseline) else {
        return Ok(());
    };
    let args = scripts::health_args(&checks);
    let deadline = Instant::now() + Duration::from_secs(ctx.host.deployment.health_checks.timeout);
    let mut next = first;
    loop {
        let round = match next.take() {
            Some(r) => r,
            None => {
                let cmd = ctx
                    .session
                    .target
                    .root_script(&scripts::HEALTH, &args)
                    .timeout(Duration::from_secs(checks.timeout * 2 + 30));
                tokio::select! {
                    r = ctx.session.run(&cmd) => match r {
                        Ok(o) if o.success() => Round::Passed(o.stdout),
                        Ok(o) => Round::Failed(o.stdout.trim().replace('\n', "; ")),
                        Err(f) => Round::Failed(f.to_string()),
                    },
                    signal = ctx.interrupt.wait() => return Err(format!("interrupted by {signal}")),
                }
            }
        };
        let last = match round {
            Round::Passed(out) => {
                for note in out.lines().filter(|l| l.starts_with("note: ")) {
                    ctx.say(note);
                }
                ctx.say("health checks passed");
                return Ok(());
            }
            Round::Failed(last) => last,
        };
        if Instant::now() >= deadline || ctx.interrupt.fired().is_some() {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
