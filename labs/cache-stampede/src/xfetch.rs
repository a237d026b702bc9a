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
//!
//! Two numbers say what to expect, and the lab prints both next to what it measured:
//!
//! - **How early.** With `r` reads per second the first reader fires about
//!   `delta * beta * ln(beta * r * delta)` before expiry ([`expected_early_window`]). XFetch is only
//!   XFetch while that window is a small fraction of the TTL (5 minutes against a 20 ms
//!   report: 0.03 %). When the TTL shrinks to about the window, a value is already "due" when
//!   it is stored and readers recompute continuously: the compressed-clock pitfall.
//! - **How many.** The first reader's recompute takes `delta`, and for that long everyone
//!   else still reads the old value while the gate keeps opening: the expected recomputes
//!   per refresh are `e^(1/beta)` ([`expected_recomputes`]) — about 2.7 at `beta = 1`, 1.6
//!   at `beta = 2` — independent of the read rate. "About one" counts only the first.

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

/// How long before expiry the first early recompute comes, with `reads_per_s` reads of the
/// key per second: `delta * beta * ln(beta * reads per delta)` — at `beta = 1` the familiar
/// `delta * ln(reads per delta)`. (The mean lead is longer by about `0.58 * beta * delta`,
/// Euler's constant: the first firing is itself random.) Zero when fewer than one read
/// arrives per `beta * delta`: then the first read at or after expiry recomputes.
pub fn expected_early_window(delta: Duration, beta: f64, reads_per_s: f64) -> Duration {
    let reads = beta * reads_per_s * delta.as_secs_f64();
    if reads <= 1.0 {
        return Duration::ZERO;
    }
    delta.mul_f64(beta * reads.ln())
}

/// Expected recomputes per refresh when a recompute takes as long as the stored `delta`:
/// the first one, plus `e^(1/beta) - 1` more drawn while it runs.
///
/// The gate's firing rate at lead `t` is `r * e^(-t / (beta * delta))`; whoever fires
/// first does so when the accumulated rate reaches an Exp(1) draw `X`; over the next
/// `delta` the rate grows by `e^(1/beta)`, so the others fire `X * (e^(1/beta) - 1)` times
/// on average. `E[X] = 1`.
pub fn expected_recomputes(beta: f64) -> f64 {
    (1.0 / beta).exp()
}
