//! The measurements: each scenario sets up its own instances and keys, drives readers with
//! labkit's drivers (`closed_loop` with think time, `open_loop` where a stall is the
//! story), and returns numbers; `report.rs` turns them into the report.

pub mod eviction;
pub mod hot_key;
pub mod invalidation;
pub mod prefix_change;
pub mod redis_down;

use std::time::Duration;

use labkit::{LatencySummary, Recorder, Sample};

/// Latency summary of the samples that pass `keep` (failed reads count as errors): p99 of
/// the reads in expiry windows, before and after Redis died.
pub fn summary_where<T>(
    samples: &[Sample<T>],
    keep: impl Fn(&Sample<T>) -> bool,
) -> LatencySummary {
    let mut rec = Recorder::new();
    let (mut first, mut last) = (None::<Duration>, Duration::ZERO);
    for s in samples.iter().filter(|s| keep(s)) {
        match s.out {
            Some(_) => rec.record(s.latency),
            None => rec.record_error(),
        }
        first = Some(first.map_or(s.at, |f| f.min(s.at)));
        last = last.max(s.end());
    }
    rec.summary(last.saturating_sub(first.unwrap_or_default()))
}
