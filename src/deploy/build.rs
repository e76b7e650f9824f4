//! Stage: build the host's toplevel from the derivation the one evaluation
//! returned (no second evaluation), with a GC root; or, for
//! `buildOnTarget`, copy the derivation and build it there.

use std::sync::Arc;

use super::{Ctx, Mode, StageError};
use crate::nix::store_path::StorePath;

/// A built system: its toplevel store path (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub toplevel: String,
    /// Built in the target's store (nothing to copy).
    pub on_target: bool,
    /// Built on this build host (`--build-host`): copied from there to the
    /// target, never through this machine's store.
    pub on_builder: Option<String>,
}

impl Built {
    fn checked(path: &str, on_target: bool) -> Result<Built, StageError> {
        let path = path.trim();
        if StorePath::parse(path).is_none() {
            return Err(StageError::new(format!(
                "the build did not yield a store path (got {path:?})"
            )));
        }
        Ok(Built {
            toplevel: path.to_string(),
            on_target,
            on_builder: None,
        })
    }
}

pub async fn build(ctx: &Ctx) -> Result<Built, StageError> {
    if let Some(path) = ctx.opts.prebuilt.get(&ctx.host.name) {
        return prebuilt(ctx, path).await;
    }
    let drv =
        ctx.host.drv_path.clone().ok_or_else(|| {
            StageError::new("the evaluation returned no derivation for this host")
        })?;
    let build_host = ctx
        .opts
        .build_host
        .as_ref()
        .or(ctx.host.deployment.build_host.as_ref());
    if let Some(builder) = build_host {
        return on_builder(ctx, &drv, builder).await;
    }
    ctx.say(&format!("building {drv}"));
    ctx.session.log.note(&format!("build {drv}"));
    let on_target = ctx.host.deployment.build_on_target
        && !ctx.session.target.is_local()
        && ctx.opts.mode != Mode::BuildOnly;
    let built = if on_target {
        ctx.session
            .run_ok(&copy_derivation(ctx, &drv, ctx.session.target.store_uri()))
            .await
            .map_err(|f| StageError::cmd("copying the derivation to the target failed", f))?;
        let out = ctx
            .session
            .run_ok(&ctx.session.target.root_cmd(&[
                "nix-store".into(),
                "--realise".into(),
                drv.clone(),
            ]))
            .await
            .map_err(|f| StageError::cmd("building on the target failed", f))?;
        Built::checked(out.stdout.lines().last().unwrap_or_default(), true)?
    } else {
        let rooted = gc_rooted(ctx, &drv)?;
        ctx.session.run_ok(&rooted.cmd).await.map_err(|f| {
            StageError::cmd("the build failed", f)
                .hint("fix the build error above; nothing was changed on the host")
        })?;
        Built::checked(&output_of(&rooted)?, false)?
    };
    ctx.say(&format!("built {}", built.toplevel));
    Ok(built)
}

/// Builds started while the fleet is still being evaluated: evaluation
/// workers hand over each share of hosts as it returns
/// ([`crate::inventory::OnEvaluated`]), and each host built here is
/// realised at once, with the same GC root as [`build`]'s, so the build
/// stage then finds its system built (or waits on Nix's lock while it
/// builds). At most `jobs` at once. A failure is left to the build stage,
/// which runs the build again and reports it with its output. Dropping
/// this stops the builds still running.
pub struct EarlyBuilds {
    tasks: Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl EarlyBuilds {
    /// The builds and the hook that starts them. Hosts built elsewhere
    /// (`build_host` for the whole run, a host's `buildHost` or
    /// `buildOnTarget`) are left alone.
    pub fn start(
        nix: &crate::nix::Nix,
        gcroot_dir: &std::path::Path,
        jobs: usize,
        build_host: bool,
    ) -> (EarlyBuilds, crate::inventory::OnEvaluated) {
        let tasks = Arc::new(std::sync::Mutex::new(tokio::task::JoinSet::new()));
        let permits = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
        let (nix, dir, set) = (nix.clone(), gcroot_dir.to_path_buf(), tasks.clone());
        let hook = move |hosts: Vec<crate::inventory::Host>| {
            let mut set = set.lock().unwrap_or_else(|p| p.into_inner());
            for h in hosts {
                let d = &h.deployment;
                if build_host || d.build_on_target || d.build_host.is_some() {
                    continue;
                }
                let Some(drv) = h.drv_path.clone() else {
                    continue;
                };
                let Ok(rooted) = nix.rooted_realise(&drv, &dir, &h.name) else {
                    continue;
                };
                let permits = permits.clone();
                set.spawn(async move {
                    let Ok(_permit) = permits.acquire_owned().await else {
                        return;
                    };
                    tracing::debug!(host = %h.name, %drv, "building while the others evaluate");
                    let done = crate::runner::run(&rooted.cmd).await;
                    let ok = done.as_ref().is_ok_and(|o| o.success());
                    tracing::debug!(host = %h.name, ok, "early build finished");
                });
            }
        };
        (
            EarlyBuilds { tasks },
            crate::inventory::OnEvaluated(Arc::new(hook)),
        )
    }
}

impl Drop for EarlyBuilds {
    /// The run is over: the early builds still running are stopped (their
    /// `nix-store` processes killed with them).
    fn drop(&mut self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.abort_all();
    }
}

/// The host's realise of `drv`, rooted in the run's GC-root directory.
fn gc_rooted(ctx: &Ctx, drv: &str) -> Result<crate::nix::Rooted, StageError> {
    let dir = &ctx.opts.gcroot_dir;
    ctx.nix
        .rooted_realise(drv, dir, &ctx.host.name)
        .map_err(|e| StageError::new(format!("creating {}: {e}", dir.display())))
}

fn output_of(rooted: &crate::nix::Rooted) -> Result<String, StageError> {
    rooted.output().map_err(|e| {
        StageError::new(format!(
            "reading the GC root {}: {e}",
            rooted.root.display()
        ))
    })
}

/// `nix copy --derivation --to STORE DRV` through the host's ssh wrapper.
fn copy_derivation(ctx: &Ctx, drv: &str, store: String) -> crate::runner::Cmd {
    ctx.nix
        .cmd([
            "copy".to_string(),
            "--derivation".into(),
            "--to".into(),
            store,
            drv.to_string(),
        ])
        .envs(ctx.session.target.nix_copy_env())
}

/// `--build-host`: the derivation goes to the build host, is built there,
/// and the result stays there (ship copies it to the target from there).
/// The build host is reached with the host's `sshOptions` (through the ssh
/// wrapper, which passes them quoted).
async fn on_builder(ctx: &Ctx, drv: &str, builder: &str) -> Result<Built, StageError> {
    ctx.say(&format!("building {drv} on {builder}"));
    ctx.session
        .run_ok(&copy_derivation(ctx, drv, format!("ssh://{builder}")))
        .await
        .map_err(|f| {
            StageError::cmd(
                format!("copying the derivation to the build host {builder} failed"),
                f,
            )
            .hint(format!(
                "check `ssh {builder}` works and that it has nix; nothing was changed"
            ))
        })?;
    // The same ssh as the copy's: the host's wrapper, which reaches any
    // other machine with the host's own sshOptions, quoted.
    let ssh = ctx
        .session
        .target
        .ssh_wrapper()
        .map_err(|e| StageError::new(format!("writing the ssh wrapper: {e}")))?
        .join("ssh");
    let realise = crate::runner::Cmd::new([
        ssh.to_string_lossy().into_owned(),
        builder.to_string(),
        "--".into(),
        shell_words::join(["nix-store", "--realise", drv]),
    ]);
    let out = ctx.session.run_ok(&realise).await.map_err(|f| {
        StageError::cmd(format!("the build on {builder} failed"), f)
            .hint("its build log is above; nothing was changed on the host")
    })?;
    let mut built = Built::checked(out.stdout.lines().last().unwrap_or_default(), false)?;
    built.on_builder = Some(builder.to_string());
    ctx.say(&format!("built {} on {builder}", built.toplevel));
    Ok(built)
}

/// `deploy --store-path`: realise the given system here (a no-op when it
/// is in the store, a substitution when a cache has it), with a GC root,
/// and check that it is a NixOS system for the host's platform.
async fn prebuilt(ctx: &Ctx, path: &str) -> Result<Built, StageError> {
    let path = path.trim_end_matches('/');
    if StorePath::parse(path).is_none() {
        return Err(
            StageError::new(format!("--store-path {path:?} is not a store path"))
                .hint("give the toplevel's /nix/store/…-nixos-system-… path"),
        );
    }
    ctx.say(&format!("using the system built elsewhere: {path}"));
    let rooted = gc_rooted(ctx, path)?;
    ctx.session.run_ok(&rooted.cmd)
        .await
        .map_err(|f| {
            StageError::cmd(format!("{path} is not in this store and could not be substituted"), f)
                .hint("copy it here first (nix copy --from …) or add the cache that has it to your substituters")
        })?;
    check_system(std::path::Path::new(path), ctx.host.system.as_deref())?;
    Built::checked(path, false)
}

/// A NixOS toplevel: `nixos-version` and `bin/switch-to-configuration`,
/// and (when both are known) the platform in its `system` file is the
/// host's.
pub fn check_system(path: &std::path::Path, platform: Option<&str>) -> Result<(), StageError> {
    for needed in ["nixos-version", "bin/switch-to-configuration"] {
        if !path.join(needed).exists() {
            return Err(StageError::new(format!(
                "{} is not a NixOS system: it has no {needed}",
                path.display()
            ))
            .hint("give the toplevel (config.system.build.toplevel) of the host's configuration"));
        }
    }
    let built_for = std::fs::read_to_string(path.join("system")).ok();
    if let (Some(built_for), Some(platform)) = (built_for.as_deref().map(str::trim), platform) {
        if built_for != platform {
            return Err(StageError::new(format!(
                "{} is a system for {built_for}, but the host is {platform}",
                path.display()
            ))
            .hint("build the host's own configuration (nixpkgs.hostPlatform)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prebuilt_path_must_be_a_nixos_system_for_the_hosts_platform() {
        let d = tempfile::tempdir().unwrap();
        let sys = d.path();
        let e = check_system(sys, Some("x86_64-linux")).unwrap_err();
        assert!(
            e.message
                .contains("is not a NixOS system: it has no nixos-version"),
            "{e:?}"
        );
        std::fs::create_dir_all(sys.join("bin")).unwrap();
        std::fs::write(sys.join("nixos-version"), "26.05").unwrap();
        std::fs::write(sys.join("bin/switch-to-configuration"), "").unwrap();
        assert!(check_system(sys, Some("x86_64-linux")).is_ok());
        std::fs::write(sys.join("system"), "aarch64-linux").unwrap();
        let e = check_system(sys, Some("x86_64-linux")).unwrap_err();
        assert!(
            e.message
                .contains("a system for aarch64-linux, but the host is x86_64-linux"),
            "{e:?}"
        );
        assert!(check_system(sys, None).is_ok());
        std::fs::write(sys.join("system"), "x86_64-linux").unwrap();
        assert!(check_system(sys, Some("x86_64-linux")).is_ok());
    }
}
