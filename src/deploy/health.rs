//! Stage: the host's health checks after activation (systemd's own view on
//! systemd hosts, then the declared services, HTTP endpoints fetched on the
//! host, and commands), retried until they pass or the host's timeout ends.

use std::time::{Duration, Instant};

use super::Ctx;
use crate::target::scripts::{self, HealthArgs};

/// Run the checks; `Err` carries what the last round found wrong.
pub async fn health(ctx: &Ctx, systemd: bool) -> Result<(), String> {
    let hc = &ctx.host.deployment.health_checks;
    let checks = HealthArgs {
        systemd,
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
            .timeout(Duration::from_secs(60));
        let round = tokio::select! {
            r = ctx.log.run(&cmd) => r,
            signal = ctx.interrupt.wait() => return Err(format!("interrupted by {signal}")),
        };
        let last = match round {
            Ok(o) if o.success() => {
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
