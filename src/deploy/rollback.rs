//! Rolling back: the deployer-initiated rollback after failed health checks
//! (the watchdog's rollback is in activate.sh), and choosing the generation
//! `pantheros rollback` returns to (that command enters the pipeline at
//! activation, with an existing generation).

use std::time::Duration;

use super::activate::{self, Activated, Wait};
use super::build::Built;
use super::{Ctx, StageError};
use crate::generations;
use crate::host::protocol::{Status, words};
use crate::host::scripts::Activation;

/// Go back to the generation the host had before this run's activation.
pub async fn roll_back(ctx: &Ctx, reason: String) -> Activated {
    let unit = format!("pantheros-{}-{}-rollback", ctx.opts.run_id, ctx.host.name);
    let what = Activation::Rollback {
        profile: ctx.host.deployment.profile.clone(),
        goal: ctx.opts.goal.as_str().into(),
        reason,
    };
    let deadline = Duration::from_secs(ctx.host.deployment.activation_timeout + 30);
    let waited =
        match activate::launch_and_wait(ctx, &unit, &what, words::ROLLED_BACK, deadline).await {
            Ok(w) => w,
            Err(e) => {
                return Activated::RollbackFailed {
                    reason: format!("could not start the rollback on the target: {}", e.render()),
                };
            }
        };
    match waited {
        Wait::Reached(s) => activate::ended(Some(s)),
        Wait::Interrupted(s) => Activated::Interrupted {
            status: s.unwrap_or(Status::None),
        },
        Wait::TimedOut(s) => Activated::Unknown {
            last: s
                .map(|s| s.describe())
                .unwrap_or_else(|| "no status could be read".into()),
        },
    }
}

/// The generation `pantheros rollback` goes to, as the system to activate.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub built: Built,
    pub generation: u64,
}

pub async fn choose(ctx: &Ctx) -> Result<Chosen, StageError> {
    let gens = generations::list(&ctx.session, &ctx.host.deployment.profile, false).await?;
    let g = generations::choose(&gens, ctx.opts.rollback_to)?.clone();
    generations::say_choice(&ctx.session, &gens, &g);
    Ok(Chosen {
        built: Built {
            toplevel: g.system,
            on_target: true,
            on_builder: None,
        },
        generation: g.number,
    })
}
