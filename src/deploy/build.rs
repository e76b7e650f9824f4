//! Stage: build the host's toplevel from the derivation the one evaluation
//! returned (no second evaluation), with a GC root; or, for
//! `buildOnTarget`, copy the derivation and build it there.

use super::{Ctx, Mode, StageError};
use crate::nix::store_path::StorePath;

/// A built system: its toplevel store path (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub toplevel: String,
    /// Built in the target's store (nothing to copy).
    pub on_target: bool,
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
        })
    }
}

pub async fn build(ctx: &Ctx) -> Result<Built, StageError> {
    let drv =
        ctx.host.drv_path.clone().ok_or_else(|| {
            StageError::new("the evaluation returned no derivation for this host")
        })?;
    ctx.say(&format!("building {drv}"));
    ctx.log.note(&format!("build {drv}"));
    let on_target = ctx.host.deployment.build_on_target
        && !ctx.target.is_local()
        && ctx.opts.mode != Mode::BuildOnly;
    let built = if on_target {
        let copy = ctx
            .nix
            .cmd([
                "copy".to_string(),
                "--derivation".into(),
                "--to".into(),
                ctx.target.store_uri(),
                drv.clone(),
            ])
            .envs(ctx.target.nix_copy_env());
        ctx.log
            .run_ok(&copy)
            .await
            .map_err(|f| StageError::cmd("copying the derivation to the target failed", f))?;
        let out = ctx
            .log
            .run_ok(
                &ctx.target
                    .root_cmd(&["nix-store".into(), "--realise".into(), drv.clone()]),
            )
            .await
            .map_err(|f| StageError::cmd("building on the target failed", f))?;
        Built::checked(out.stdout.lines().last().unwrap_or_default(), true)?
    } else {
        let dir = &ctx.opts.gcroot_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| StageError::new(format!("creating {}: {e}", dir.display())))?;
        let root = dir.join(&ctx.host.name);
        let cmd = crate::nix::realise_cmd(&drv, &root);
        ctx.log.run_ok(&cmd).await.map_err(|f| {
            StageError::cmd("the build failed", f)
                .hint("fix the build error above; nothing was changed on the host")
        })?;
        let top = std::fs::read_link(&root)
            .map_err(|e| StageError::new(format!("reading the GC root {}: {e}", root.display())))?;
        Built::checked(&top.to_string_lossy(), false)?
    };
    ctx.say(&format!("built {}", built.toplevel));
    Ok(built)
}
