//! Latency measurement: HDR histograms and two load drivers.
//!
//! - [`closed_loop`]: N workers, each sends its next request as soon as the last one
//!   returned. Measures capacity; a stall slows the senders down, so it *hides* part of
//!   its own cost (coordinated omission).
//! - [`open_loop`]: requests are due at a fixed rate whether or not earlier ones have
//!   finished, and latency runs from each request's *intended* start. A stall shows up in
//!   p99 as the queue it really caused.
//!
//! Percentiles come from `hdrhistogram` (microsecond resolution, 3 significant digits),
//! never from hand-rolled sorting.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency histogram plus an error count.
#[derive(Debug, Clone)]
pub struct Recorder {
    hist: Histogram<u64>,
    errors: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        // 1 µs .. 1 h, 3 significant figures; auto-resize covers anything slower.
        let mut hist = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        hist.auto(true);
        Self { hist, errors: 0 }
    }

    pub fn record(&mut self, latency: Duration) {
        let us = (latency.as_micros() as u64).max(1);
        self.hist.saturating_record(us);
    }

    pub fn record_error(&mut self) {
        self.errors += 1;
    }

    pub fn merge(&mut self, other: &Recorder) {
        self.hist
            .add(&other.hist)
            .expect("histograms with auto-resize merge");
        self.errors += other.errors;
    }

    pub fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }

    /// Summarise; `elapsed` is the wall time the samples were taken over (for throughput).
    pub fn summary(&self, elapsed: Duration) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        let count = self.hist.len();
        let empty = count == 0;
        LatencySummary {
            count,
            errors: self.errors,
            p50_ms: if empty {
                0.0
            } else {
                ms(self.hist.value_at_quantile(0.50))
            },
            p95_ms: if empty {
                0.0
            } else {
                ms(self.hist.value_at_quantile(0.95))
            },
            p99_ms: if empty {
                0.0
            } else {
                ms(self.hist.value_at_quantile(0.99))
            },
            max_ms: if empty { 0.0 } else { ms(self.hist.max()) },
            mean_ms: if empty {
                0.0
            } else {
                self.hist.mean() / 1000.0
            },
            throughput_per_s: if elapsed.is_zero() {
                0.0
            } else {
                count as f64 / elapsed.as_secs_f64()
            },
            elapsed_s: elapsed.as_secs_f64(),
        }
    }
}

/// The numbers an engineer quotes about a latency distribution.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Successful samples.
    pub count: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Successful operations per second of wall time.
    pub throughput_per_s: f64,
    pub elapsed_s: f64,
}

/// One request, for latency-over-time charts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// When the request was due (open loop) or started (closed loop), from the run's start.
    pub at: Duration,
    pub latency: Duration,
    pub ok: bool,
}

/// What a load run produced.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub summary: LatencySummary,
    pub recorder: Recorder,
    /// Every sample in start order, when the run asked for a timeline.
    pub timeline: Vec<Sample>,
}

/// When a closed-loop run stops.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// This many operations in total, shared by all workers.
    Count(u64),
    /// Until this much wall time has passed.
    Duration(Duration),
}

/// Passed to the operation: which worker, and this operation's global sequence number.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub worker: usize,
    pub seq: u64,
}

/// Closed-loop driver settings.
#[derive(Debug, Clone, Copy)]
pub struct ClosedLoop {
    pub workers: usize,
    pub bound: Bound,
    /// Keep every sample for a latency-over-time chart.
    pub timeline: bool,
}

impl ClosedLoop {
    pub fn new(workers: usize, bound: Bound) -> Self {
        Self {
            workers: workers.max(1),
            bound,
            timeline: false,
        }
    }

    pub fn with_timeline(mut self) -> Self {
        self.timeline = true;
        self
    }
}

/// Run `op` from `cfg.workers` concurrent tasks until the bound is reached. Errors are
/// counted, not recorded as latencies.
pub async fn closed_loop<F, Fut, T, E>(cfg: ClosedLoop, op: F) -> LoadResult
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let op = Arc::new(op);
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = match cfg.bound {
        Bound::Duration(d) => Some(start + d),
        Bound::Count(_) => None,
    };
    let limit = match cfg.bound {
        Bound::Count(n) => n,
        Bound::Duration(_) => u64::MAX,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..cfg.workers {
        let op = op.clone();
        let issued = issued.clone();
        tasks.spawn(async move {
            let mut rec = Recorder::new();
            let mut timeline = Vec::new();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let seq = issued.fetch_add(1, Ordering::Relaxed);
                if seq >= limit {
                    break;
                }
                let t0 = Instant::now();
                let ok = op(Call { worker, seq }).await.is_ok();
                let latency = t0.elapsed();
                if ok {
                    rec.record(latency);
                } else {
                    rec.record_error();
                }
                if cfg.timeline {
                    timeline.push(Sample {
                        at: t0 - start,
                        latency,
                        ok,
                    });
                }
            }
            (rec, timeline)
        });
    }
    collect(tasks, start).await
}

/// Open-loop driver settings.
#[derive(Debug, Clone, Copy)]
pub struct OpenLoop {
    /// Requests per second, spread evenly.
    pub rate_per_s: f64,
    pub duration: Duration,
    /// Safety valve: at most this many requests in flight. Requests beyond it wait for a
    /// slot, and that wait *is* counted in their latency (it starts at the intended time).
    pub max_in_flight: usize,
    pub timeline: bool,
}

impl OpenLoop {
    pub fn new(rate_per_s: f64, duration: Duration) -> Self {
        Self {
            rate_per_s,
            duration,
            max_in_flight: 10_000,
            timeline: false,
        }
    }

    pub fn with_timeline(mut self) -> Self {
        self.timeline = true;
        self
    }
}

/// Issue `op` at a fixed rate; latency is measured from each request's intended start.
pub async fn open_loop<F, Fut, T, E>(cfg: OpenLoop, op: F) -> LoadResult
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let op = Arc::new(op);
    let slots = Arc::new(tokio::sync::Semaphore::new(cfg.max_in_flight.max(1)));
    let interval = Duration::from_secs_f64(1.0 / cfg.rate_per_s.max(1e-9));
    let total = (cfg.duration.as_secs_f64() * cfg.rate_per_s).floor() as u64;
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for seq in 0..total {
        let intended = start + interval.mul_f64(seq as f64);
        // If we are behind schedule this returns at once: the request is late, and its
        // latency will say so.
        tokio::time::sleep_until(intended).await;
        let op = op.clone();
        let slots = slots.clone();
        tasks.spawn(async move {
            let _permit = slots.acquire_owned().await.expect("semaphore never closed");
            let ok = op(Call { worker: 0, seq }).await.is_ok();
            let latency = tokio::time::Instant::now() - intended;
            Sample {
                at: intended - start,
                latency,
                ok,
            }
        });
    }
    let mut rec = Recorder::new();
    let mut timeline = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let s = done.expect("load task panicked");
        if s.ok {
            rec.record(s.latency);
        } else {
            rec.record_error();
        }
        if cfg.timeline {
            timeline.push(s);
        }
    }
    timeline.sort_by_key(|s| s.at);
    let elapsed = start.elapsed();
    LoadResult {
        summary: rec.summary(elapsed),
        recorder: rec,
        timeline,
    }
}

async fn collect(
    mut tasks: tokio::task::JoinSet<(Recorder, Vec<Sample>)>,
    start: Instant,
) -> LoadResult {
    let mut rec = Recorder::new();
    let mut timeline = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (r, t) = done.expect("load worker panicked");
        rec.merge(&r);
        timeline.extend(t);
    }
    let elapsed = start.elapsed();
    timeline.sort_by_key(|s| s.at);
    LoadResult {
        summary: rec.summary(elapsed),
        recorder: rec,
        timeline,
    }
}

/// Time `n` sequential runs of `op` (a single client): the honest way to get p50/p95 of one
/// query without concurrency effects.
pub async fn sequential<F, Fut, T, E>(n: u64, mut op: F) -> LatencySummary
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut rec = Recorder::new();
    let start = Instant::now();
    for i in 0..n {
        let t0 = Instant::now();
        match op(i).await {
            Ok(_) => rec.record(t0.elapsed()),
            Err(_) => rec.record_error(),
        }
    }
    rec.summary(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closed_loop_stops_at_the_count_and_counts_errors() {
        let r = closed_loop(ClosedLoop::new(4, Bound::Count(100)), |c| async move {
            if c.seq % 10 == 0 { Err(()) } else { Ok(()) }
        })
        .await;
        assert_eq!(r.summary.count + r.summary.errors, 100);
        assert_eq!(r.summary.errors, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_charges_a_stall_to_the_requests_queued_behind_it() {
        // One slot, and request 0 stalls for 1 s: requests due during the stall queue behind
        // it, and their latency counts from when they were due. A closed loop would report
        // one slow request; the open loop reports the queue.
        let cfg = OpenLoop {
            max_in_flight: 1,
            ..OpenLoop::new(100.0, Duration::from_secs(2))
        };
        let r = open_loop(cfg, |c| async move {
            let d = if c.seq == 0 { 1000 } else { 1 };
            tokio::time::sleep(Duration::from_millis(d)).await;
            Ok::<_, ()>(())
        })
        .await;
        assert_eq!(r.summary.count, 200);
        assert!(
            r.summary.p50_ms > 100.0,
            "queued requests are late: {:?}",
            r.summary
        );
    }

    #[test]
    fn summary_of_known_values() {
        let mut rec = Recorder::new();
        for ms in 1..=100 {
            rec.record(Duration::from_millis(ms));
        }
        let s = rec.summary(Duration::from_secs(1));
        assert!((s.p50_ms - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p99_ms - 99.0).abs() < 0.1, "{s:?}");
        assert_eq!(s.count, 100);
    }
}
