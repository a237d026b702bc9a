//! Probabilistic early expiration ("XFetch", Vattani, Chierichetti and Lowenstein, VLDB 2015).
//!
//! Every read of a cached value rolls a die: recompute now if
//!
//! ```text
//! now - delta * beta * ln(u) >= expiry        u uniform in (0, 1]
//! ```
//!
//! `delta` is how long the last recompute took, stored with the value. `-ln(u)` is an
//! exponential random variable, so the chance that one read fires at time `t` before
//! expiry is `e^(-t / (delta * beta))`: negligible early on, certain at expiry. With
//! hundreds of reads per second, one reader refreshes shortly before the key would
//! expire and the crowd never sees a miss. `beta > 1` refreshes earlier, `< 1` later.
//!
//! No coordination at all: no lock, no extra round trip. The price is that nothing stops
//! two readers from drawing "recompute" in the same moment; the lab counts those.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::RngExt;
use redis::aio::ConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::entry::{self, CacheError, Entry, Read, Served, now_ms};

/// The gate. `u` must be in (0, 1]; pass `1 - rng.random::<f64>()`.
pub fn should_recompute_early(
    now_ms: f64,
    delta_ms: f64,
    beta: f64,
    expiry_ms: f64,
    u: f64,
) -> bool {
    now_ms - delta_ms * beta * u.ln() >= expiry_ms
}

/// Cache-aside with probabilistic early recompute. The key's Redis TTL is the value's
/// expiry, so a key nobody reads still goes away.
pub async fn read<T, F, Fut>(
    redis: &mut ConnectionManager,
    key: &str,
    ttl: Duration,
    beta: f64,
    load: F,
) -> Result<Read<T>, CacheError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let cached = entry::get::<T>(redis, key).await?;
    let served = match cached {
        Some(hit) => {
            let u = 1.0 - rand::rng().random::<f64>();
            let early = should_recompute_early(
                now_ms() as f64,
                hit.delta_ms as f64,
                beta,
                hit.fresh_until_ms as f64,
                u,
            );
            if !early {
                return Ok(Read::new(hit.value, Served::Hit));
            }
            Served::EarlyRecompute
        }
        None => Served::Loaded,
    };
    // The reader that drew "recompute" pays for it inline, as in the paper; everyone else
    // keeps reading the old value until the new one lands.
    let t0 = Instant::now();
    let value = load().await?;
    let stored = Entry::new(value, t0.elapsed(), ttl);
    entry::set(redis, key, &stored, Some(ttl)).await?;
    Ok(Read::new(stored.value, served))
}
