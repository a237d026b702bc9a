//! The four scenarios, each measured end to end; `crate::report` turns their results into
//! findings, tables and charts.

pub mod amplification;
pub mod backoff;
pub mod breaker;
pub mod bulkhead;

use std::time::{Duration, Instant};

use crate::dependency::Arrival;

/// Calls per second in `bucket`-wide buckets over `[0, span)`, from arrival times relative
/// to the phase start: `(bucket start in s, calls/s)`.
pub fn rate_series(arrivals: &[Duration], span: Duration, bucket: Duration) -> Vec<(f64, f64)> {
    let n = (span.as_secs_f64() / bucket.as_secs_f64()).ceil() as usize;
    let mut counts = vec![0u64; n.max(1)];
    for a in arrivals {
        let i = (a.as_secs_f64() / bucket.as_secs_f64()) as usize;
        if i < counts.len() {
            counts[i] += 1;
        }
    }
    counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                i as f64 * bucket.as_secs_f64(),
                *c as f64 / bucket.as_secs_f64(),
            )
        })
        .collect()
}

/// Arrival times relative to `t0` (arrivals before it are dropped).
pub fn since(t0: Instant, arrivals: &[Arrival]) -> Vec<Duration> {
    arrivals
        .iter()
        .filter_map(|a| a.at.checked_duration_since(t0))
        .collect()
}

/// The open loop sends request `k` at `k / rate`: the ids of those due in `[from, to)`.
pub fn ids_due(rate: f64, from: Duration, to: Duration) -> std::ops::Range<u64> {
    let id = |t: Duration| (t.as_secs_f64() * rate).ceil() as u64;
    id(from)..id(to)
}

/// How many of `times` fall in `[from, to)`.
pub fn count_between(times: &[Duration], from: Duration, to: Duration) -> u64 {
    times.iter().filter(|t| **t >= from && **t < to).count() as u64
}
