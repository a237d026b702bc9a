//! Stale-while-revalidate: past its freshness a value is still served, at once, while one
//! background task refreshes it.
//!
//! The key lives in Redis for `ttl + stale_for`; the envelope says when it stops being
//! fresh. A reader who finds it stale returns it and tries to claim `<key>:refresh` with
//! `SET NX PX` (the lock from `redis_lock.rs`); only the claimer spawns the refresh, so the
//! fleet refreshes once per expiry, not once per instance. Readers never wait — the cost is
//! staleness, bounded by how long a refresh takes, which the lab measures.
//!
//! A key that is *missing* (cold start, evicted, past `stale_for`) is a plain miss here:
//! SWR only guards keys it still has.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use crate::entry::{self, CacheError, Entry, Read, Served, now_ms};
use crate::redis_lock;

/// One app instance's stale-while-revalidate cache.
pub struct Swr {
    /// How long a value is fresh.
    pub ttl: Duration,
    /// How long after that it may still be served stale.
    pub stale_for: Duration,
    /// Lifetime of the refresh claim (a refresher that dies frees it after this).
    pub refresh_px: Duration,
    // Background refreshes, so the instance can wait for them at shutdown instead of
    // leaving detached tasks behind. A std Mutex: only held to spawn or take the set.
    refreshes: Mutex<JoinSet<()>>,
}

impl Swr {
    pub fn new(ttl: Duration, stale_for: Duration, refresh_px: Duration) -> Self {
        Self {
            ttl,
            stale_for,
            refresh_px,
            refreshes: Mutex::new(JoinSet::new()),
        }
    }

    pub async fn read<T, F, Fut>(
        &self,
        redis: &mut ConnectionManager,
        key: &str,
        load: F,
    ) -> Result<Read<T>, CacheError>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, sqlx::Error>> + Send + 'static,
    {
        let keep_for = self.ttl + self.stale_for;
        match entry::get::<T>(redis, key).await? {
            Some(hit) if now_ms() <= hit.fresh_until_ms => Ok(Read::new(hit.value, Served::Hit)),
            Some(stale) => {
                let stale_ms = now_ms().saturating_sub(stale.fresh_until_ms);
                let claim = format!("{key}:refresh");
                if let Some(guard) = redis_lock::try_acquire(redis, &claim, self.refresh_px).await?
                {
                    let mut conn = redis.clone();
                    let key = key.to_string();
                    let ttl = self.ttl;
                    self.refreshes
                        .lock()
                        .expect("refresh set")
                        .spawn(async move {
                            let refreshed = refresh(&mut conn, &key, ttl, keep_for, load).await;
                            if let Err(e) = refreshed {
                                tracing::warn!(key, "background refresh failed: {e}");
                            }
                            let _ = redis_lock::release(&mut conn, &guard).await;
                        });
                }
                Ok(Read::new(stale.value, Served::Stale { stale_ms }))
            }
            None => {
                let t0 = Instant::now();
                let value = load().await?;
                let stored = Entry::new(value, t0.elapsed(), self.ttl);
                entry::set(redis, key, &stored, Some(keep_for)).await?;
                Ok(Read::new(stored.value, Served::Loaded))
            }
        }
    }

    /// Wait for background refreshes still running.
    pub async fn drain(&self) {
        let mut set = std::mem::take(&mut *self.refreshes.lock().expect("refresh set"));
        while set.join_next().await.is_some() {}
    }
}

/// The background refresh, run by whoever claimed `<key>:refresh`.
async fn refresh<T, F, Fut>(
    conn: &mut ConnectionManager,
    key: &str,
    ttl: Duration,
    keep_for: Duration,
    load: F,
) -> Result<(), CacheError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    // Double-check: a reader that saw the stale value just before the previous refresh
    // landed (and released its claim) can claim again. Without this it refreshes twice.
    if let Some(current) = entry::get::<T>(conn, key).await?
        && now_ms() <= current.fresh_until_ms
    {
        return Ok(());
    }
    let t0 = Instant::now();
    let value = load().await?;
    let stored = Entry::new(value, t0.elapsed(), ttl);
    entry::set(conn, key, &stored, Some(keep_for)).await
}
