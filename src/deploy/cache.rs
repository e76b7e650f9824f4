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
//!    for the whole run, carrying every host waiting for it ([`Uploads`]),
//!    so a path several hosts share is sent once (Nix skips what the cache
//!    already has) and a fleet costs about two uploads; a cache that cannot
//!    be written fails every host of the run before any changes;
//! 3. [`fetch`]: the host substitutes the closure from the cache's URL.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::build::Built;
use super::{Ctx, StageError};
use crate::host::scripts::{self, CACHE};
use crate::inventory::CacheSpec;

/// The run's uploads: one `nix copy` at a time, in batches. A host asks
/// for its toplevel to be uploaded; while an upload runs, the hosts that
/// ask meanwhile wait together, and the next upload carries all of them in
/// one command. A fleet of N hosts that reach the copy together costs two
/// uploads (the first host's closure, then the others' own paths), not N
/// one after another; a path several hosts share is sent once (Nix skips
/// what the cache has). An upload store's first failure fails every later
/// host the same way.
#[derive(Clone, Default)]
pub struct Uploads {
    /// Held while an upload runs (tokio's lock serves its waiters in turn).
    turn: Arc<tokio::sync::Mutex<()>>,
    stores: Arc<std::sync::Mutex<BTreeMap<String, StoreUploads>>>,
}

/// One upload store's part of the run.
#[derive(Default)]
struct StoreUploads {
    /// Toplevels uploaded (their closures are in the cache).
    uploaded: BTreeSet<String>,
    /// Toplevels waiting for the next upload.
    waiting: Vec<String>,
    /// Why an upload failed (every later host fails with it).
    failed: Option<String>,
}

/// How one host's upload was served.
#[derive(Debug, PartialEq, Eq)]
pub enum Served {
    /// This host ran the upload, for this many toplevels (its own and
    /// those of the hosts that were waiting).
    Ran(usize),
    /// Another host's upload carried it.
    Carried,
}

impl Uploads {
    fn with<R>(&self, store: &str, f: impl FnOnce(&mut StoreUploads) -> R) -> R {
        let mut all = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(store.to_string()).or_default())
    }

    /// Get `top` into `store`: wait for the turn, then either find it
    /// carried by an earlier batch or run `upload` on every toplevel
    /// waiting (`top` among them). `upload` says why it failed, besides
    /// its error for this host.
    pub async fn get_in<F, Fut>(
        &self,
        store: &str,
        top: &str,
        upload: F,
    ) -> Result<Served, StageError>
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<(), (StageError, String)>>,
    {
        self.with(store, |s| {
            if !s.uploaded.contains(top) && !s.waiting.iter().any(|t| t == top) {
                s.waiting.push(top.to_string());
            }
        });
        let _turn = self.turn.lock().await;
        let batch = self.with(store, |s| {
            if let Some(why) = &s.failed {
                return Err(unwritable(store, why.clone()));
            }
            if s.uploaded.contains(top) {
                return Ok(None);
            }
            Ok(Some(std::mem::take(&mut s.waiting)))
        })?;
        let Some(batch) = batch else {
            return Ok(Served::Carried);
        };
        let n = batch.len();
        match upload(batch.clone()).await {
            Ok(()) => {
                self.with(store, |s| s.uploaded.extend(batch));
                Ok(Served::Ran(n))
            }
            Err((e, why)) => {
                self.with(store, |s| s.failed = Some(why));
                Err(e)
            }
        }
    }
}

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
        .session
        .target
        .root_script(
            &CACHE,
            &scripts::cache_fetch_args(&cache.url, &built.toplevel),
        )
        .timeout(Duration::from_secs(3600));
    match ctx.session.run_ok(&cmd).await {
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

/// Get the host's closure into the cache: in the run's next upload
/// ([`Uploads`]), or found there, carried by another host's.
async fn upload(ctx: &Ctx, built: &Built, cache: &CacheSpec) -> Result<(), StageError> {
    let store = upload_store(cache);
    let served = ctx
        .opts
        .caches
        .get_in(&store, &built.toplevel, |batch| {
            upload_batch(ctx, cache, batch)
        })
        .await?;
    if served == Served::Carried {
        ctx.session.log.note(&format!(
            "{} was uploaded to {store} with another host's batch",
            built.toplevel
        ));
    }
    Ok(())
}

/// One upload of `batch` (toplevels): signed here first when the store
/// does not sign (an `ssh://` one), then `nix copy --to` the cache.
async fn upload_batch(
    ctx: &Ctx,
    cache: &CacheSpec,
    batch: Vec<String>,
) -> Result<(), (StageError, String)> {
    let store = upload_store(cache);
    let why =
        |f: &crate::error::CommandFailure| f.tail.last().cloned().unwrap_or_else(|| f.how.clone());
    if let Some(key) = cache
        .secret_key_file
        .as_ref()
        .filter(|_| !signs_itself(&store))
    {
        let mut argv: Vec<String> = vec![
            "store".into(),
            "sign".into(),
            "--key-file".into(),
            key.clone(),
            "--recursive".into(),
        ];
        argv.extend(batch.iter().cloned());
        let sign = ctx.nix.cmd(argv).timeout(Duration::from_secs(600));
        if let Err(f) = ctx.session.run_ok(&sign).await {
            let w = why(&f);
            return Err((StageError::cmd(
                format!("signing the closure for the binary cache {store} failed; nothing was changed"),
                f,
            )
            .hint("check pantheros.deployment.cache.secretKeyFile (a key made by `nix-store --generate-binary-cache-key`)"), w));
        }
    }
    ctx.say(&match batch.len() {
        1 => format!("uploading the closure to the cache {store}"),
        n => format!("uploading the closures of {n} hosts to the cache {store}"),
    });
    let mut argv: Vec<String> = vec!["copy".into(), "--to".into(), upload_uri(cache)];
    argv.extend(batch);
    let cmd = ctx.nix.cmd(argv).timeout(Duration::from_secs(3600));
    ctx.session.run_ok(&cmd).await.map(|_| ()).map_err(|f| {
        let w = why(&f);
        (
            StageError::cmd(
                format!("uploading the closure to the binary cache {store} failed; nothing was changed"),
                f,
            )
            .hint(
                "check that the cache is reachable and writable from this machine (pantheros.deployment.cache.upload), \
                 or deploy without it (remove the option); no host was changed",
            ),
            w,
        )
    })
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

    /// Three hosts ask while the first one's upload runs: the second
    /// uploads both waiting toplevels in one batch, the third finds its
    /// own carried; a failure fails every later host of that store.
    #[tokio::test]
    async fn hosts_waiting_for_an_upload_go_in_one_batch() {
        let up = Uploads::default();
        let batches = Arc::new(std::sync::Mutex::new(Vec::<Vec<String>>::new()));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let (up, batches) = (up.clone(), batches.clone());
            tokio::spawn(async move {
                up.get_in("c", "/nix/store/a", |b| async move {
                    batches.lock().unwrap().push(b);
                    let _ = started_tx.send(());
                    let _ = release_rx.await;
                    Ok(())
                })
                .await
            })
        };
        started_rx.await.unwrap();
        let later = |top: &'static str| {
            let (up, batches) = (up.clone(), batches.clone());
            tokio::spawn(async move {
                up.get_in("c", top, |b| async move {
                    batches.lock().unwrap().push(b);
                    Ok(())
                })
                .await
            })
        };
        let (b, c) = (later("/nix/store/b"), later("/nix/store/c"));
        // Both are waiting behind the first upload before it ends.
        while up.with("c", |s| s.waiting.len()) < 2 {
            tokio::task::yield_now().await;
        }
        release_tx.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), Served::Ran(1));
        let mut served = vec![b.await.unwrap().unwrap(), c.await.unwrap().unwrap()];
        served.sort_by_key(|s| format!("{s:?}"));
        assert_eq!(served, [Served::Carried, Served::Ran(2)]);
        assert_eq!(
            *batches.lock().unwrap(),
            [
                vec!["/nix/store/a".to_string()],
                vec!["/nix/store/b".into(), "/nix/store/c".into()]
            ]
        );
        // Asked again: already there, nothing runs.
        let again = up
            .get_in("c", "/nix/store/b", |_| async { panic!("uploaded twice") })
            .await;
        assert_eq!(again.unwrap(), Served::Carried);
        // A failed upload fails the later hosts of that store.
        let failed = up
            .get_in("d", "/nix/store/e", |_| async {
                Err((StageError::new("no"), "disk full".to_string()))
            })
            .await;
        assert!(failed.is_err());
        let later = up
            .get_in("d", "/nix/store/f", |_| async { panic!("tried again") })
            .await;
        assert!(later.unwrap_err().render().contains("disk full"));
    }

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
