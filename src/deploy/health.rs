//! Stage: the host's health checks after activation (systemd's own view on
//! systemd hosts, then the declared services, HTTP endpoints fetched on the
//! host, and commands), retried until they pass or the host's timeout ends.

use std::time::{Duration, Instant};

use super::Ctx;
use crate::host::scripts::{self, HealthArgs};

/// Run the checks; `Err` carries what the last round found wrong. Units in
/// `baseline` had failed before the deploy: they are not blamed on it.
pub async fn health(ctx: &Ctx, systemd: bool, baseline: &[String]) -> Result<(), String> {
    let hc = &ctx.host.deployment.health_checks;
    // Each check may take the host's timeout once per attempt, and the
    // attempts go on until that much time has passed overall.
    let per_check = hc.timeout.clamp(1, 300);
    let checks = HealthArgs {
        systemd,
        timeout: per_check,
        baseline: baseline.to_vec(),
        services: hc.services.clone(),
        http: hc.http.clone(),
        commands: hc.commands.clone(),
    };
    if checks.is_empty() {
        return Ok(());
    }
    let args = scripts::health_args(&checks);
    let deadline = Instant::now() + Duration::from_secs(hc.timeout);
    loop {
        let cmd = ctx
            .target
            .root_script(&scripts::HEALTH, &args)
            .timeout(Duration::from_secs(per_check * 2 + 30));
        let round = tokio::select! {
            r = ctx.log.run(&cmd) => r,
            signal = ctx.interrupt.wait() => return Err(format!("interrupted by {signal}")),
        };
        let last = match round {
            Ok(o) if o.success() => {
                for note in o.stdout.lines().filter(|l| l.starts_with("note: ")) {
                    ctx.say(note);
                }
                ctx.say("health checks passed");
                return Ok(());
            }
            Ok(o) => o.stdout.trim().replace('\n', "; "),
            Err(f) => f.to_string(),
        };
        if Instant::now() >= deadline || ctx.interrupt.fired().is_some() {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
