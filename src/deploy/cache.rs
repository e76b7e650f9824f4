//! Stage (part of the copy): fan-out through a binary cache
//! (`pantheros.deployment.cache`). The closure is uploaded once, signed,
//! to the cache, and the host substitutes it from there instead of
//! receiving it from this machine: a fleet costs one upload, not one per
//! host.
//!
//! 1. does the host's Nix trust the cache's key (preflight.sh asked, in the
//!    round trip it makes anyway)? A host that does not gets a direct copy,
//!    with a note;
//! 2. [`upload`]: `nix copy --to UPLOAD`, signed with the key: by the
//!    binary cache store itself (`?secret-key=`) for a `file://`, `s3://`
//!    or `http(s)://` upload; for an `ssh://` one (e.g. with
//!    `remote-store=file://DIR`) the closure is signed here first (`nix
//!    store sign`, which needs a trusted Nix user). One upload at a time
//!    for the whole run ([`Uploads`]), so
//!    a path several hosts share is sent once (Nix skips what the cache
//!    already has); a cache that cannot be written fails every host of the
//!    run before any changes;
//! 3. [`fetch`]: the host substitutes the closure from the cache's URL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::build::Built;
use super::{Ctx, StageError};
use crate::host::scripts::{self, CACHE};
use crate::inventory::CacheSpec;

/// The run's uploads: one at a time, and each upload store's first
/// failure, which fails every later host the same way.
#[derive(Clone, Default)]
pub struct Uploads(Arc<tokio::sync::Mutex<BTreeMap<String, String>>>);

/// How the fan-out went for one host.
#[derive(Debug, PartialEq, Eq)]
pub enum Fanned {
    /// The host substituted its closure from the cache.
    Substituted,
    /// Not through the cache (why): copy directly.
    Direct(String),
}

/// Upload the closure once and let the host substitute it (`trusted`: the
/// host trusts the cache's key, as its preflight said); Err when the cache
/// cannot be written (nothing changed on any host).
pub async fn fan_out(
    ctx: &Ctx,
    built: &Built,
    cache: &CacheSpec,
    trusted: bool,
) -> Result<Fanned, StageError> {
    if !trusted {
        return Ok(Fanned::Direct(format!(
            "{} does not trust the cache's key {} (its nix.settings.trusted-public-keys; the deployment \
             module adds it once this system is deployed)",
            ctx.name(),
            cache.public_key
        )));
    }
    upload(ctx, built, cache).await?;
    ctx.say(&format!("substituting the closure from {}", cache.url));
    let cmd = ctx
        .target
        .root_script(
            &CACHE,
            &scripts::cache_fetch_args(&cache.url, &built.toplevel),
        )
        .timeout(Duration::from_secs(3600));
    match ctx.log.run_ok(&cmd).await {
        Ok(_) => Ok(Fanned::Substituted),
        Err(f) => Ok(Fanned::Direct(format!(
            "substituting from {} failed ({})",
            cache.url,
            f.tail.last().cloned().unwrap_or_else(|| f.how.clone())
        ))),
    }
}

/// The store the deployer uploads to.
pub fn upload_store(cache: &CacheSpec) -> String {
    cache.upload.clone().unwrap_or_else(|| cache.url.clone())
}

/// A binary cache store signs what it is given with its `secret-key`.
fn signs_itself(store: &str) -> bool {
    ["file://", "s3://", "http://", "https://"]
        .iter()
        .any(|p| store.starts_with(p))
}

/// The `nix copy --to` URI: with the signing key for a store that signs.
pub fn upload_uri(cache: &CacheSpec) -> String {
    let store = upload_store(cache);
    match &cache.secret_key_file {
        Some(k) if signs_itself(&store) => {
            let sep = if store.contains('?') { '&' } else { '?' };
            format!("{store}{sep}secret-key={k}")
        }
        _ => store,
    }
}

/// Sign the closure here, then copy it to the cache, one upload at a time
/// for the run.
async fn upload(ctx: &Ctx, built: &Built, cache: &CacheSpec) -> Result<(), StageError> {
    let store = upload_store(cache);
    let mut failed = ctx.opts.caches.0.lock().await;
    if let Some(why) = failed.get(&store) {
        return Err(unwritable(&store, why.clone()));
    }
    if let Some(key) = cache
        .secret_key_file
        .as_ref()
        .filter(|_| !signs_itself(&store))
    {
        let sign = ctx
            .nix
            .cmd(vec![
                "store".into(),
                "sign".into(),
                "--key-file".into(),
                key.clone(),
                "--recursive".into(),
                built.toplevel.clone(),
            ])
            .timeout(Duration::from_secs(600));
        if let Err(f) = ctx.log.run_ok(&sign).await {
            let why = f.tail.last().cloned().unwrap_or_else(|| f.how.clone());
            failed.insert(store.clone(), why);
            return Err(StageError::cmd(
                format!("signing the closure for the binary cache {store} failed; nothing was changed"),
                f,
            )
            .hint("check pantheros.deployment.cache.secretKeyFile (a key made by `nix-store --generate-binary-cache-key`)"));
        }
    }
    ctx.say(&format!("uploading the closure to the cache {store}"));
    let cmd = ctx
        .nix
        .cmd(vec![
            "copy".into(),
            "--to".into(),
            upload_uri(cache),
            built.toplevel.clone(),
        ])
        .timeout(Duration::from_secs(3600));
    match ctx.log.run_ok(&cmd).await {
        Ok(_) => Ok(()),
        Err(f) => {
            let why = f.tail.last().cloned().unwrap_or_else(|| f.how.clone());
            failed.insert(store.clone(), why);
            Err(StageError::cmd(
                format!("uploading the closure to the binary cache {store} failed; nothing was changed"),
                f,
            )
            .hint(
                "check that the cache is reachable and writable from this machine (pantheros.deployment.cache.upload), \
                 or deploy without it (remove the option); no host was changed",
            ))
        }
    }
}

/// A later host of a run whose upload to `store` failed.
fn unwritable(store: &str, why: String) -> StageError {
    StageError::new(format!(
        "the binary cache {store} could not be written earlier in this run ({why}); nothing was changed"
    ))
    .hint("check that the cache is reachable and writable from this machine; no host was changed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upload_store_is_the_url_unless_named() {
        let mut c = CacheSpec {
            url: "http://c:8080".into(),
            public_key: "c-1:AAA=".into(),
            ..Default::default()
        };
        assert_eq!(upload_store(&c), "http://c:8080");
        c.secret_key_file = Some("/home/me/key".into());
        c.upload = Some("file:///srv/cache".into());
        assert_eq!(upload_uri(&c), "file:///srv/cache?secret-key=/home/me/key");
        c.upload = Some("s3://b?region=eu".into());
        assert_eq!(upload_uri(&c), "s3://b?region=eu&secret-key=/home/me/key");
        // An ssh store does not sign: the closure is signed before.
        c.upload = Some("ssh://c?remote-store=file:///srv/cache".into());
        assert_eq!(upload_uri(&c), "ssh://c?remote-store=file:///srv/cache");
        assert!(!signs_itself(&upload_store(&c)));
    }
}
