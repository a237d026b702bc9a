//! Accuracy: does each algorithm keep its promise, and does `Retry-After` tell the truth?
//!
//! Time is simulated (a scripted list of request times, passed as `now`), so minutes of
//! traffic replay in well under a second and every run is identical. Two workloads:
//!
//! - **Burst, then too fast.** At t = 0 a client sends 2 × quota requests at once, then keeps
//!   sending at 3 × the allowed rate for several periods. t = 0 falls at 95 % of a clock-aligned
//!   window — the war story's edge: the fixed window admits a full quota just before its
//!   boundary and another right after it. We report the most admitted inside any window of one
//!   period, against the algorithm's promise.
//! - **Obedient clients.** Clients send until refused, wait exactly the advertised retry time,
//!   and retry once. A truthful limiter admits every such retry.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::limiter::{self, Algorithm, Decision, Limiter, LimiterError, RedisStore};
use crate::policy::Policy;

/// A fixed simulated epoch (2023-11-14), so window alignment is the same on every run.
pub const EPOCH_MS: u64 = 1_700_000_000_000;

/// The first window boundary after [`EPOCH_MS`], minus `before_ms`.
pub fn just_before_window_edge(policy: &Policy, before_ms: u64) -> u64 {
    let p = policy.period_ms();
    (EPOCH_MS / p + 1) * p - before_ms
}

/// Request times (ms from the client's t = 0): a burst of 2 × quota at t = 0, then
/// `rate_multiple` × the allowed rate for `periods` periods.
pub fn burst_then_too_fast(policy: &Policy, periods: u64, rate_multiple: u64) -> Vec<u64> {
    let quota = policy.quota() as u64;
    let mut times = vec![0; 2 * quota as usize];
    let step = (policy.period_ms() / (rate_multiple * quota)).max(1);
    let mut t = step;
    while t < periods * policy.period_ms() {
        times.push(t);
        t += step;
    }
    times
}

/// Send one request per entry of `times` (relative to `start_ms`) for `key`, in order.
pub async fn replay(
    limiter: &dyn Limiter,
    key: &str,
    start_ms: u64,
    times: &[u64],
) -> Result<Vec<(u64, Decision)>, LimiterError> {
    let mut out = Vec::with_capacity(times.len());
    for &t in times {
        out.push((t, limiter.check(key, start_ms + t).await?));
    }
    Ok(out)
}

/// The most timestamps inside any half-open window `[t, t + window)`. `times` must be sorted.
/// Checking windows that start at an admitted request is enough: sliding a window's start
/// forward to its first request never drops anything.
pub fn max_in_any_window(times: &[u64], window: u64) -> usize {
    let mut best = 0;
    let mut end = 0;
    for (start, &t0) in times.iter().enumerate() {
        while end < times.len() && times[end] < t0 + window {
            end += 1;
        }
        best = best.max(end - start);
    }
    best
}

/// One algorithm's result on the burst-then-too-fast workload.
#[derive(Debug, Clone, Copy)]
pub struct AccuracyRow {
    pub algorithm: Algorithm,
    pub sent: usize,
    pub admitted: usize,
    pub max_in_any_window: usize,
    pub promised_max: u32,
}

impl AccuracyRow {
    pub fn kept_promise(&self) -> bool {
        self.max_in_any_window <= self.promised_max as usize
    }
}

/// Run the burst-then-too-fast workload for one limiter, starting at `start_ms`.
pub async fn burst_accuracy(
    limiter: &dyn Limiter,
    key: &str,
    start_ms: u64,
    periods: u64,
) -> Result<AccuracyRow, LimiterError> {
    let policy = *limiter.policy();
    let times = burst_then_too_fast(&policy, periods, 3);
    let decisions = replay(limiter, key, start_ms, &times).await?;
    let admitted: Vec<u64> = decisions
        .iter()
        .filter(|(_, d)| d.allowed)
        .map(|(t, _)| *t)
        .collect();
    Ok(AccuracyRow {
        algorithm: limiter.algorithm(),
        sent: times.len(),
        admitted: admitted.len(),
        max_in_any_window: max_in_any_window(&admitted, policy.period_ms()),
        promised_max: limiter.algorithm().promised_max(&policy),
    })
}

/// What obedient clients saw: retries made at exactly the advertised time, and how many of
/// them were admitted.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryTruth {
    pub retries: u64,
    pub admitted: u64,
    /// The longest advertised wait, for the report.
    pub longest_wait: Duration,
}

impl RetryTruth {
    pub fn ratio(&self) -> f64 {
        if self.retries == 0 {
            f64::NAN
        } else {
            self.admitted as f64 / self.retries as f64
        }
    }
}

/// `clients` obedient clients, `rounds` each: send (a few ms apart) until refused, wait exactly
/// the advertised `retry_after`, retry once, then go quiet for a random while. Seeded, so the
/// same seed replays the same traffic.
pub async fn obedient_clients(
    limiter: &dyn Limiter,
    key_prefix: &str,
    clients: u32,
    rounds: u32,
    seed: u64,
) -> Result<RetryTruth, LimiterError> {
    let policy = *limiter.policy();
    let period = policy.period_ms();
    let gap_max = (period / policy.quota() as u64).max(2);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut truth = RetryTruth::default();
    // Enough requests to exhaust any of the algorithms from full.
    let cap = (policy.quota() + policy.burst()) as usize * 2 + 2;
    // One timeline for all clients, client after client: time only moves forward, which
    // governor's clock requires.
    let mut now = EPOCH_MS;
    for c in 0..clients {
        let key = format!("{key_prefix}-{c}");
        now += rng.random_range(0..period);
        for _ in 0..rounds {
            let mut refused = None;
            for _ in 0..cap {
                let d = limiter.check(&key, now).await?;
                if !d.allowed {
                    refused = Some(d);
                    break;
                }
                now += rng.random_range(0..gap_max);
            }
            let Some(d) = refused else { continue };
            truth.longest_wait = truth.longest_wait.max(d.retry_after);
            now += d.retry_after.as_millis() as u64;
            truth.retries += 1;
            if limiter.check(&key, now).await?.allowed {
                truth.admitted += 1;
            }
            now += rng.random_range(0..2 * period);
        }
    }
    Ok(truth)
}

/// One algorithm's three accuracy workloads.
#[derive(Debug, Clone, Copy)]
pub struct AlgorithmAccuracy {
    /// The burst at 95 % of a window: the war story's edge.
    pub edge: AccuracyRow,
    /// The same burst on a window boundary, where every algorithm looks right.
    pub window_start: AccuracyRow,
    pub retries: RetryTruth,
}

/// Every algorithm through the three workloads, each on a fresh limiter (governor's clock
/// only moves forward, so a workload cannot start before the previous one ended).
pub async fn every_algorithm(
    store: &RedisStore,
    policy: Policy,
    periods: u64,
    obedient: (u32, u32),
    seed: u64,
) -> Result<Vec<AlgorithmAccuracy>, LimiterError> {
    let edge_start = just_before_window_edge(&policy, policy.period_ms() / 20);
    let window_start = just_before_window_edge(&policy, 0);
    let mut rows = Vec::new();
    for algorithm in Algorithm::ALL {
        let fresh = || limiter::build(algorithm, policy, store);
        rows.push(AlgorithmAccuracy {
            edge: burst_accuracy(&*fresh(), "accuracy-edge", edge_start, periods).await?,
            window_start: burst_accuracy(&*fresh(), "accuracy-window-start", window_start, periods)
                .await?,
            retries: obedient_clients(&*fresh(), "obedient", obedient.0, obedient.1, seed).await?,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_in_any_window_counts_half_open_windows() {
        // [0, 10) holds 0, 5, 9; 10 starts the next window.
        assert_eq!(max_in_any_window(&[0, 5, 9, 10], 10), 3);
        assert_eq!(max_in_any_window(&[0, 0, 0, 10, 10], 10), 3);
        assert_eq!(max_in_any_window(&[0, 9, 10, 11, 18], 10), 4);
        assert_eq!(max_in_any_window(&[], 10), 0);
    }
}
