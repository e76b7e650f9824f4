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
        let changed = f.output().contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || f.output().contains("Host key verification failed");
        let pinned = ctx
            .host
            .deployment
            .facts
            .contains_key(crate::inventory::facts::names::HOST_KEY);
        if changed && pinned {
            return StageError::cmd(
                format!(
                    "{} presents another SSH host key than the one pantheros pinned when it installed it \
                     (its hostKey fact); refused, nothing was changed",
                    ctx.host.name
                ),
                f,
            )
            .hint(changed_key_hint(ctx));
        }
        let e = StageError::cmd(format!("could not connect to {}", ctx.host.name), f);
        if ssh_failed {
            e.hint(unreachable_hint(ctx))
        } else {
            e
        }
    })?;
    Ok(())
}

/// What to do when a host pantheros installed presents another host key.
fn changed_key_hint(ctx: &Ctx) -> String {
    let host = &ctx.host.name;
    format!(
        "if you reinstalled or replaced the server, compare its key on the provider's console \
         (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) with `pantheros facts {host} --refresh`, which shows the \
         key it reads before writing it; otherwise someone may be in the middle: do not deploy"
    )
}

/// What to try when ssh itself (exit 255) failed.
pub fn unreachable_hint(ctx: &Ctx) -> String {
    format!(
        "ssh to {} failed: check `ssh {}` works (address, host key, user, key); nothing was changed",
        ctx.host.name,
        ctx.target.destination()
    )
}
