//! Stage: copy the closure to the target over the host's master SSH
//! connection (through the host's ssh wrapper), letting it substitute what
//! it can. Bounded: an hour at most, and SSH's keep-alives end a dead link.

use super::build::Built;
use super::{Ctx, StageError};

pub async fn ship(ctx: &Ctx, built: &Built) -> Result<(), StageError> {
    if ctx.target.is_local() || built.on_target {
        return Ok(());
    }
    let mut args = vec!["copy".to_string()];
    if ctx.host.deployment.substitute_on_destination {
        args.push("--substitute-on-destination".into());
    }
    args.extend([
        "--to".into(),
        ctx.target.store_uri(),
        built.toplevel.clone(),
    ]);
    let cmd = ctx
        .nix
        .cmd(args)
        .envs(ctx.target.nix_copy_env())
        .timeout(std::time::Duration::from_secs(3600));
    ctx.say(&format!(
        "copying the closure to {}",
        ctx.target.destination()
    ));
    ctx.log.run_ok(&cmd).await.map_err(|f| {
        StageError::cmd("copying the closure to the target failed", f)
            .hint("check that you can `ssh` to the host and that it has nix; nothing was changed")
    })?;
    Ok(())
}
