//! Naive cache-aside: `GET`; on a miss run the query and `SET ... PX ttl`.
//!
//! Correct, simple, and the cause of the incident: nothing stops every reader that misses
//! in the same instant from running the query. With C readers and a report that takes
//! L ms, one expiry costs Postgres up to C × L ms of work.

use std::future::Future;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::entry::{self, CacheError, Entry, Read, Served};

/// Read `key`, computing it with `load` on a miss. `ttl: None` stores without expiry.
pub async fn read<T, F, Fut>(
    redis: &mut ConnectionManager,
    key: &str,
    ttl: Option<Duration>,
    load: F,
) -> Result<Read<T>, CacheError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    if let Some(hit) = entry::get::<T>(redis, key).await? {
        return Ok(Read::new(hit.value, Served::Hit));
    }
    let t0 = Instant::now();
    let value = load().await?;
    let fresh_for = ttl.unwrap_or(Duration::MAX);
    let stored = Entry::new(value, t0.elapsed(), fresh_for);
    // A failed SET (Redis out of memory under `noeviction`) must not fail the read: the
    // reader already paid for the value. Count it and move on.
    let write_error = entry::set(redis, key, &stored, ttl)
        .await
        .err()
        .map(|e| e.to_string());
    Ok(Read {
        value: stored.value,
        served: Served::Loaded,
        write_error,
    })
}

/// Delete-on-write: after the database commit, drop the cached copy so the next reader
/// recomputes. (Not "update the cache on write": two writers racing would leave whichever
/// SET landed last, not whichever commit did.)
pub async fn invalidate(redis: &mut ConnectionManager, key: &str) -> Result<(), CacheError> {
    redis::cmd("DEL").arg(key).query_async::<()>(redis).await?;
    Ok(())
}
