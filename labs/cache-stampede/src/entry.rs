//! What sits in Redis under a cache key, and the two commands every mechanism uses.
//!
//! The value travels in an envelope with two numbers next to it: how long it took to
//! compute (`delta_ms`, XFetch needs it) and until when it counts as fresh
//! (`fresh_until_ms`; XFetch's "expiry", stale-while-revalidate's soft TTL). One JSON
//! string, one `GET`: a Redis hash would need `HGETALL` and gives nothing back here.
//!
//! Times are wall-clock milliseconds since the Unix epoch, because separate app instances
//! (separate machines, in production) share no other clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a cache read failed. Callers act on `Redis` (fail open) and `Postgres` (give up).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("cache entry does not decode: {0}")]
    Decode(#[from] serde_json::Error),
}

/// The cached envelope.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Entry<T> {
    pub value: T,
    /// How long the recompute took (XFetch's delta).
    pub delta_ms: u64,
    /// When the value stops being fresh.
    pub fresh_until_ms: u64,
}

impl<T> Entry<T> {
    pub fn new(value: T, delta: Duration, ttl: Duration) -> Self {
        Self {
            value,
            delta_ms: delta.as_millis() as u64,
            fresh_until_ms: now_ms().saturating_add(ttl.as_millis().min(u64::MAX as u128) as u64),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `GET key`, decoded.
pub async fn get<T: DeserializeOwned>(
    redis: &mut ConnectionManager,
    key: &str,
) -> Result<Option<Entry<T>>, CacheError> {
    let raw: Option<String> = redis::cmd("GET").arg(key).query_async(redis).await?;
    Ok(match raw {
        Some(s) => Some(serde_json::from_str(&s)?),
        None => None,
    })
}

/// `SET key entry PX ttl` (or without expiry when `ttl` is `None`: the keys `volatile-*`
/// eviction policies cannot touch).
pub async fn set<T: Serialize>(
    redis: &mut ConnectionManager,
    key: &str,
    entry: &Entry<T>,
    ttl: Option<Duration>,
) -> Result<(), CacheError> {
    let body = serde_json::to_string(entry)?;
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(body);
    if let Some(ttl) = ttl {
        cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
    }
    cmd.query_async::<()>(redis).await?;
    Ok(())
}

/// How a read was served. The scenarios count these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// A fresh value from Redis.
    Hit,
    /// This reader missed and recomputed the value itself.
    Loaded,
    /// This reader waited while another reader (in this instance, or in another one holding
    /// the Redis lock) recomputed, and got that result.
    Shared,
    /// Redis lock: waited `max_wait` for a holder that never filled the cache, then loaded
    /// without the lock.
    GaveUpWaiting,
    /// XFetch: the value was still cached, but this reader drew an early recompute.
    EarlyRecompute,
    /// Stale-while-revalidate: a value past its freshness, served at once.
    Stale { stale_ms: u64 },
    /// No cache in front: straight from Postgres.
    Database,
    /// Redis failed; the reader went to Postgres instead (fail open).
    FellBack,
}

/// A value and how it was served.
#[derive(Debug, Clone)]
pub struct Read<T> {
    pub value: T,
    pub served: Served,
    /// Set when the value was computed but could not be stored (e.g. `OOM` under
    /// `noeviction`). The read itself still succeeded.
    pub write_error: Option<String>,
}

impl<T> Read<T> {
    pub fn new(value: T, served: Served) -> Self {
        Self {
            value,
            served,
            write_error: None,
        }
    }
}
