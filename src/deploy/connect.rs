//! Stage: open the host's SSH master connection while the build runs, so
//! the handshake costs no wall time of its own and every later command of
//! the run (preflight, copy, activation, health) rides that one connection.

use super::{Ctx, StageError};

/// Open the master. Hosts deployed locally have nothing to open.
pub async fn connect(ctx: &Ctx) -> Result<(), StageError> {
    let Some(cmd) = ctx.target.connect_cmd() else {
        return Ok(());
    };
    ctx.log.run_ok(&cmd).await.map_err(|f| {
        let ssh_failed = f.how == "exit status 255";
        let e = StageError::cmd(format!("could not connect to {}", ctx.host.name), f);
        if ssh_failed {
            e.hint(unreachable_hint(ctx))
        } else {
            e
        }
    })?;
    Ok(())
}

/// What to try when ssh itself (exit 255) failed.
pub fn unreachable_hint(ctx: &Ctx) -> String {
    format!(
        "ssh to {} failed: check `ssh {}` works (address, host key, user, key); nothing was changed",
        ctx.host.name,
        ctx.target.destination()
    )
}
