//! A distributed lock in Redis, so that one reader in the whole fleet recomputes.
//!
//! - Acquire: `SET <key>:lock <random token> NX PX <ms>`. `NX` makes it a lock; `PX` makes
//!   a holder that crashes (or stalls) lose it after a bound instead of blocking forever.
//! - Release: compare-and-delete in Lua, atomically. A plain `DEL` could delete a lock that
//!   expired under us and was taken by someone else.
//! - Waiters re-read the cache with jittered exponential backoff instead of queueing on the
//!   lock; after `max_wait` they load anyway, so a read never hangs on a sick holder.
//!
//! The lock is advisory: if the holder outlives `PX`, a second loader may start. For a
//! cache that costs one duplicate recompute, not a correctness bug, so no fencing tokens.

use std::future::Future;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use rand::RngExt;
use redis::aio::ConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::entry::{self, CacheError, Entry, Read, Served};

/// How the lock behaves.
#[derive(Debug, Clone, Copy)]
pub struct LockSettings {
    /// Lock lifetime. Longer than a recompute under load, or a slow holder loses it mid-load.
    pub px: Duration,
    /// How long a waiter re-reads the cache before loading without the lock.
    pub max_wait: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for LockSettings {
    fn default() -> Self {
        Self {
            px: Duration::from_secs(3),
            max_wait: Duration::from_secs(5),
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(50),
        }
    }
}

/// Proof that we hold a lock: its key and our token.
#[derive(Debug, Clone)]
pub struct LockGuard {
    pub key: String,
    pub token: String,
}

/// `SET key token NX PX px`: `Some(guard)` if we got it.
pub async fn try_acquire(
    redis: &mut ConnectionManager,
    lock_key: &str,
    px: Duration,
) -> Result<Option<LockGuard>, CacheError> {
    let token = format!("{:032x}", rand::random::<u128>());
    let ok: Option<String> = redis::cmd("SET")
        .arg(lock_key)
        .arg(&token)
        .arg("NX")
        .arg("PX")
        .arg(px.as_millis().max(1) as u64)
        .query_async(redis)
        .await?;
    Ok(ok.map(|_| LockGuard {
        key: lock_key.to_string(),
        token,
    }))
}

static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
              return redis.call('DEL', KEYS[1])
          else
              return 0
          end",
    )
});

/// Compare-and-delete. `false` means the lock was no longer ours (it expired, and maybe
/// someone else holds it now) and nothing was deleted.
pub async fn release(redis: &mut ConnectionManager, guard: &LockGuard) -> Result<bool, CacheError> {
    let deleted: i64 = RELEASE
        .key(&guard.key)
        .arg(&guard.token)
        .invoke_async(redis)
        .await?;
    Ok(deleted == 1)
}

/// Cache-aside where only the lock holder recomputes; everyone else waits for the cache.
pub async fn read<T, F, Fut>(
    redis: &mut ConnectionManager,
    key: &str,
    ttl: Duration,
    settings: LockSettings,
    load: F,
) -> Result<Read<T>, CacheError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let lock_key = format!("{key}:lock");
    let started = Instant::now();
    let mut backoff = settings.backoff_min;
    let mut waited = false;
    loop {
        if let Some(hit) = entry::get::<T>(redis, key).await? {
            let served = if waited { Served::Shared } else { Served::Hit };
            return Ok(Read::new(hit.value, served));
        }
        if let Some(guard) = try_acquire(redis, &lock_key, settings.px).await? {
            let result = load_under_lock(redis, key, ttl, load).await;
            // Release even when the load failed, or every waiter sits out the whole PX.
            if !release(redis, &guard).await? {
                tracing::warn!(
                    key,
                    "lock expired while loading; another loader may have run"
                );
            }
            return result;
        }
        if started.elapsed() >= settings.max_wait {
            // The holder is stuck or gone and its PX is long: stop waiting and load.
            let t0 = Instant::now();
            let value = load().await?;
            let stored = Entry::new(value, t0.elapsed(), ttl);
            entry::set(redis, key, &stored, Some(ttl)).await?;
            return Ok(Read::new(stored.value, Served::GaveUpWaiting));
        }
        waited = true;
        // Jitter, so a crowd of waiters does not poll Redis in lockstep.
        let pause = rand::rng().random_range(backoff / 2..=backoff);
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(settings.backoff_max);
    }
}

async fn load_under_lock<T, F, Fut>(
    redis: &mut ConnectionManager,
    key: &str,
    ttl: Duration,
    load: F,
) -> Result<Read<T>, CacheError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    // Double-check: the previous holder may have filled the cache just before releasing.
    if let Some(hit) = entry::get::<T>(redis, key).await? {
        return Ok(Read::new(hit.value, Served::Shared));
    }
    let t0 = Instant::now();
    let value = load().await?;
    let stored = Entry::new(value, t0.elapsed(), ttl);
    entry::set(redis, key, &stored, Some(ttl)).await?;
    Ok(Read::new(stored.value, Served::Loaded))
}
