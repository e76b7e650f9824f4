//! Stage: copy the closure to the target over the host's master SSH
//! connection (through the host's ssh wrapper), letting it substitute what
//! it can. Bounded: an hour at most, and SSH's keep-alives end a dead link.

use super::build::Built;
use super::preflight::Current;
use super::{Ctx, StageError};
use crate::host::scripts;

pub async fn ship(ctx: &Ctx, built: &Built, current: &Current) -> Result<(), StageError> {
    if ctx.session.target.is_local() || built.on_target {
        return Ok(());
    }
    // Through the host's binary cache when it has one (not for a system
    // built elsewhere, which this machine does not hold).
    if let Some(cache) = &ctx.host.deployment.cache
        && built.on_builder.is_none()
    {
        let trusted = current.cache_trusted == Some(true);
        match super::cache::fan_out(ctx, built, cache, trusted).await? {
            super::cache::Fanned::Substituted => return Ok(()),
            super::cache::Fanned::Direct(why) => {
                ctx.say(&format!("note: {why}; copying the closure directly"))
            }
        }
    }
    let mut args = vec!["copy".to_string()];
    if ctx.host.deployment.substitute_on_destination {
        args.push("--substitute-on-destination".into());
    }
    // Built on a build host: from there to the target, streamed through
    // this process, never into this machine's store.
    if let Some(builder) = &built.on_builder {
        args.extend(["--from".into(), format!("ssh://{builder}")]);
    }
    args.extend([
        "--to".into(),
        ctx.session.target.store_uri(),
        built.toplevel.clone(),
    ]);
    let cmd = ctx
        .nix
        .cmd(args)
        .envs(ctx.session.target.nix_copy_env())
        .timeout(std::time::Duration::from_secs(3600));
    ctx.say(&format!(
        "copying the closure to {}",
        ctx.session.target.destination()
    ));
    let Err(f) = ctx.session.run_ok(&cmd).await else {
        return Ok(());
    };
    if !disk_full(&f.tail) {
        return Err(
            StageError::cmd("copying the closure to the target failed", f).hint(
                "check that you can `ssh` to the host and that it has nix; nothing was changed",
            ),
        );
    }
    let free = clean_up(ctx, built).await;
    Err(
        StageError::cmd("copying the closure to the target failed: its disk is full", f).hint(
            format!(
                "the host's disk is full{free}: what this copy left unregistered was removed, and nothing \
                 was changed; free space there (e.g. `nix-collect-garbage --delete-older-than 14d`, or a \
                 larger disk), then deploy again"
            ),
        ),
    )
}

/// Did the copy fail for lack of space (on the target: the local store was
/// written by the build already)?
fn disk_full(tail: &[String]) -> bool {
    tail.iter().any(|l| l.contains("No space left on device"))
}

/// Remove what a failed copy left of the closure on the target (paths on
/// disk that were never registered), and say how much space is free now.
async fn clean_up(ctx: &Ctx, built: &Built) -> String {
    let closure = crate::runner::Cmd::new(["nix-store", "-qR", built.toplevel.as_str()])
        .timeout(std::time::Duration::from_secs(300));
    let Ok(paths) = ctx.session.run_ok(&closure).await else {
        return String::new();
    };
    let paths: Vec<String> = paths.stdout.lines().map(String::from).collect();
    let cmd = ctx
        .session
        .target
        .root_script(&scripts::COPY_CLEANUP, &scripts::copy_cleanup_args(&paths))
        .timeout(std::time::Duration::from_secs(300));
    match ctx.session.run_ok(&cmd).await {
        Ok(out) => {
            let removed = out
                .stdout
                .lines()
                .filter(|l| l.starts_with("REMOVED "))
                .count();
            ctx.session
                .log
                .note(&format!("removed {removed} partly copied paths"));
            out.stdout
                .lines()
                .last()
                .and_then(|df| df.split_whitespace().nth(3))
                .map(|avail| format!(" ({avail} free on its store now)"))
                .unwrap_or_default()
        }
        Err(f) => {
            ctx.session
                .log
                .note(&format!("cleaning up after the copy failed: {}", f.how));
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_full_disk_is_told_apart_from_other_copy_failures() {
        let t = |l: &[&str]| super::disk_full(&l.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(t(&[
            "copying path …",
            "error: writing to file: No space left on device"
        ]));
        assert!(!t(&["error: cannot connect to 'root@h'"]));
    }
}
