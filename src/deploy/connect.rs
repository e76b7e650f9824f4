//! Stage: open the host's SSH master connection while the build runs, so
//! the handshake costs no wall time of its own and every later command of
//! the run (preflight, copy, activation, health) rides that one connection.

use super::{Ctx, StageError};

/// Open the master (hosts deployed locally have nothing to open), then,
/// with a sudo password for the run, find out whether this host needs it.
pub async fn connect(ctx: &Ctx) -> Result<(), StageError> {
    open(ctx).await?;
    settle_password(ctx).await
}

/// With a sudo password for the run: when the host's escalation works
/// without one (`sudo -n true`), it is not used there; otherwise it is
/// checked once (`sudo -S -k true`) before anything changes. The probes run
/// through the host's log.
async fn settle_password(ctx: &Ctx) -> Result<(), StageError> {
    let settled = ctx
        .session
        .target
        .settle_password_with(|c| async move { ctx.session.run(&c).await })
        .await;
    match settled {
        Ok(false) => {
            if ctx.session.target.password.is_some() {
                ctx.session
                    .log
                    .note("the escalation needs no password here: the password is not used");
            }
            Ok(())
        }
        Ok(true) => {
            ctx.say(&format!(
                "{} asks for a password here: using the run's",
                ctx.host.deployment.privilege_escalation_command.join(" ")
            ));
            Ok(())
        }
        Err(u) => {
            let e = match u.failure {
                Some(f) => StageError::cmd(u.message, f),
                None => StageError::new(u.message),
            };
            Err(if u.wrong_password {
                e.hint(format!(
                    "check the password for {} on {} (what --sudo-password-command prints, or what you typed)",
                    ctx.host.deployment.target_user, ctx.host.name
                ))
            } else {
                e
            })
        }
    }
}

async fn open(ctx: &Ctx) -> Result<(), StageError> {
    let Some(cmd) = ctx.session.target.connect_cmd() else {
        return Ok(());
    };
    ctx.session.run_ok(&cmd).await.map_err(|f| {
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
    unreachable_hint_for(&ctx.host, &ctx.session.target.destination())
}

/// [`unreachable_hint`] for `host` reached at `destination`: a host whose
/// address pantheros recorded (a server it created) may have been replaced,
/// and its facts gone stale.
fn unreachable_hint_for(host: &crate::inventory::Host, destination: &str) -> String {
    use crate::inventory::facts::names;
    let facts = &host.deployment.facts;
    let recorded = facts.contains_key(names::SERVER_ID)
        && host.deployment.target_host.as_deref().is_some_and(|t| {
            [names::IPV4, names::IPV6_ADDRESS]
                .iter()
                .filter_map(|n| facts.get(*n).and_then(|v| v.as_str()))
                .any(|v| v.split('/').next() == Some(t))
        });
    let stale = if recorded {
        format!(
            "; its address comes from the facts pantheros recorded when it created the server: if the server \
             was replaced, `pantheros facts {} --refresh` reads the new one (and its host key)",
            host.name
        )
    } else {
        String::new()
    };
    format!(
        "ssh to {} failed: check `ssh {destination}` works (address, host key, user, key){stale}; nothing was changed",
        host.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_host_with_recorded_addresses_is_pointed_at_its_facts() {
        let mut h = crate::inventory::Host {
            name: "web".into(),
            uses_module: true,
            deployment: Default::default(),
            drv_path: None,
            system: None,
            disko_drv_path: None,
            toplevel: None,
            extras: Default::default(),
            warnings: vec![],
        };
        h.deployment.target_host = Some("203.0.113.7".into());
        let plain = unreachable_hint_for(&h, "root@203.0.113.7");
        assert!(
            plain.contains("check `ssh root@203.0.113.7` works"),
            "{plain}"
        );
        assert!(!plain.contains("facts"), "{plain}");
        h.deployment.facts.insert("serverId".into(), 42.into());
        h.deployment
            .facts
            .insert("ipv4".into(), "203.0.113.7".into());
        let stale = unreachable_hint_for(&h, "root@203.0.113.7");
        assert!(stale.contains("`pantheros facts web --refresh`"), "{stale}");
        // Set by hand elsewhere: the facts are not where the address came from.
        h.deployment.target_host = Some("web.example.org".into());
        assert!(!unreachable_hint_for(&h, "root@web.example.org").contains("facts"));
    }
}
