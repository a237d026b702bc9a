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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::report::Phase;

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

/// One operation, for latency-over-time charts and per-sample outcomes.
#[derive(Debug, Clone, Copy)]
pub struct Sample<T = ()> {
    /// When the operation was due (open loop) or started (closed loop), from the run's start.
    pub at: Duration,
    pub latency: Duration,
    /// What the operation returned; `None` if it failed.
    pub out: Option<T>,
}

impl<T> Sample<T> {
    pub fn ok(&self) -> bool {
        self.out.is_some()
    }

    /// When it ended, from the run's start.
    pub fn end(&self) -> Duration {
        self.at + self.latency
    }
}

/// What a load run produced.
#[derive(Debug, Clone)]
pub struct LoadResult<T = ()> {
    pub summary: LatencySummary,
    pub recorder: Recorder,
    /// Every sample in start order, when the run asked for a timeline.
    pub timeline: Vec<Sample<T>>,
    /// The first error an operation returned (its `Display`), so a failing run says why.
    pub first_error: Option<String>,
    /// Open loop only: how well the driver kept its schedule.
    pub schedule: Option<Schedule>,
}

/// How well an open-loop driver kept its schedule. A driver that sends late measures
/// itself: the lateness is charged to the request's latency (it was due earlier), so a
/// report must show it next to the latencies.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Schedule {
    /// Requests the schedule called for, and requests sent.
    pub intended: u64,
    pub sent: u64,
    pub target_rate_per_s: f64,
    /// Sent requests over the time the sending took.
    pub achieved_rate_per_s: f64,
    /// How late the driver handed requests to the runtime, after their intended time.
    pub send_late_p50_ms: f64,
    pub send_late_p99_ms: f64,
    pub send_late_max_ms: f64,
}

impl Schedule {
    /// Whether the driver kept its rate: within 2 % of the target, and sending late by no
    /// more than max(one interval, 1 ms) at p99.
    pub fn kept_up(&self) -> bool {
        let interval_ms = 1000.0 / self.target_rate_per_s.max(1e-9);
        self.achieved_rate_per_s >= 0.98 * self.target_rate_per_s
            && self.send_late_p99_ms <= interval_ms.max(1.0)
    }

    /// A sentence for the report when the driver did not keep up; `None` when it did.
    pub fn warning(&self, phase: &str) -> Option<String> {
        (!self.kept_up()).then(|| {
            format!(
                "{phase}: the open-loop driver did not keep its rate — {:.0}/s sent of {:.0}/s \
                 intended, sent late by {:.2} ms at p99 (max {:.1} ms); latencies here include \
                 that lateness, so part of what they show is the driver, not the system.",
                self.achieved_rate_per_s,
                self.target_rate_per_s,
                self.send_late_p99_ms,
                self.send_late_max_ms
            )
        })
    }
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
#[derive(Debug, Clone)]
pub struct ClosedLoop {
    pub workers: usize,
    pub bound: Bound,
    /// Keep every sample (with its outcome) for timelines and per-sample questions.
    pub timeline: bool,
    /// Pause between one worker's operations (a person reading the page, a poller's
    /// interval), jittered uniformly in [0.5, 1.5] × think so workers do not move in
    /// lockstep; the first operation of each worker is staggered over one think time.
    pub think: Option<Duration>,
    /// Seed for the think-time jitter.
    pub seed: u64,
    /// Unmeasured warm-up: operations run for this long before the measured phase starts.
    pub warmup: Duration,
    /// Name of the phase: shown on stderr while it runs and recorded in the report.
    pub label: Option<String>,
    /// Stop early once this is set (traffic that runs "while the migration runs"); the
    /// bound still applies as a ceiling. See [`ClosedLoop::until`].
    pub stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl ClosedLoop {
    pub fn new(workers: usize, bound: Bound) -> Self {
        Self {
            workers: workers.max(1),
            bound,
            timeline: false,
            think: None,
            seed: 0,
            warmup: Duration::ZERO,
            label: None,
            stop: None,
        }
    }

    pub fn with_timeline(mut self) -> Self {
        self.timeline = true;
        self
    }

    /// Run until `stop` is set (each worker finishes its operation in flight), or until the
    /// bound, whichever comes first: background traffic for as long as some other step
    /// (a DDL, a backfill) takes. `stop.store(true, Ordering::SeqCst)` ends it.
    pub fn until(mut self, stop: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    pub fn think(mut self, think: Duration, seed: u64) -> Self {
        self.think = Some(think);
        self.seed = seed;
        self
    }

    pub fn warmup(mut self, warmup: Duration) -> Self {
        self.warmup = warmup;
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
}

/// Run `op` from `cfg.workers` concurrent tasks until the bound is reached. Errors are
/// counted (and the first one kept), not recorded as latencies; with `timeline`, every
/// sample keeps what `op` returned.
pub async fn closed_loop<F, Fut, T, E>(cfg: ClosedLoop, op: F) -> LoadResult<T>
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let op = Arc::new(op);
    if !cfg.warmup.is_zero() {
        let warm = ClosedLoop {
            warmup: Duration::ZERO,
            timeline: false,
            stop: None,
            label: cfg.label.as_ref().map(|l| format!("{l} (warm-up)")),
            bound: Bound::Duration(cfg.warmup),
            ..cfg.clone()
        };
        let op = op.clone();
        let _ = run_closed(warm, move |c| op(c), false).await;
    }
    run_closed(cfg, move |c| op(c), true).await
}

async fn run_closed<F, Fut, T, E>(cfg: ClosedLoop, op: F, record_phase: bool) -> LoadResult<T>
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let op = Arc::new(op);
    let issued = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let planned = match cfg.bound {
        Bound::Duration(d) => Some(d),
        Bound::Count(_) => None,
    };
    let bar = PhaseBar::start(cfg.label.as_deref(), planned);
    let start = Instant::now();
    let deadline = planned.map(|d| start + d);
    let limit = match cfg.bound {
        Bound::Count(n) => n,
        Bound::Duration(_) => u64::MAX,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..cfg.workers {
        let op = op.clone();
        let issued = issued.clone();
        let first_error = first_error.clone();
        let cfg = cfg.clone();
        tasks.spawn(async move {
            let mut rec = Recorder::new();
            let mut timeline = Vec::new();
            let mut rng = StdRng::seed_from_u64(
                cfg.seed ^ (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            if let Some(think) = cfg.think {
                tokio::time::sleep(think.mul_f64(rng.random::<f64>())).await;
            }
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d)
                    || cfg.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
                {
                    break;
                }
                let seq = issued.fetch_add(1, Ordering::Relaxed);
                if seq >= limit {
                    break;
                }
                let t0 = Instant::now();
                let result = op(Call { worker, seq }).await;
                let latency = t0.elapsed();
                let out = match result {
                    Ok(v) => {
                        rec.record(latency);
                        Some(v)
                    }
                    Err(e) => {
                        rec.record_error();
                        keep_first(&first_error, &e);
                        None
                    }
                };
                if cfg.timeline {
                    timeline.push(Sample {
                        at: t0 - start,
                        latency,
                        out,
                    });
                }
                if let Some(think) = cfg.think {
                    tokio::time::sleep(think.mul_f64(rng.random_range(0.5..1.5))).await;
                }
            }
            (rec, timeline)
        });
    }
    let mut rec = Recorder::new();
    let mut timeline = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (r, t) = done.expect("load worker panicked");
        rec.merge(&r);
        timeline.extend(t);
    }
    let elapsed = start.elapsed();
    bar.finish();
    timeline.sort_by_key(|s| s.at);
    let summary = rec.summary(elapsed);
    if record_phase {
        record(Phase {
            name: cfg.label.clone().unwrap_or_else(|| "load".into()),
            driver: "closed".into(),
            clients: cfg.workers,
            rate_per_s: None,
            planned_s: planned.map(|d| d.as_secs_f64()),
            elapsed_s: elapsed.as_secs_f64(),
            samples: summary.count,
            errors: summary.errors,
            send_late_p99_ms: None,
        });
    }
    let first_error = first_error.lock().unwrap_or_else(|e| e.into_inner()).take();
    LoadResult {
        summary,
        recorder: rec,
        timeline,
        first_error,
        schedule: None,
    }
}

fn keep_first(slot: &Mutex<Option<String>>, e: &dyn std::fmt::Display) {
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = Some(e.to_string());
    }
}

/// When an open loop stops early: called by the dispatcher before each request with the
/// time since the start; `true` ends the schedule.
pub type StopWhen = Arc<dyn Fn(Duration) -> bool + Send + Sync>;

/// Open-loop driver settings.
#[derive(Clone)]
pub struct OpenLoop {
    /// Requests per second, spread evenly.
    pub rate_per_s: f64,
    /// How long the schedule runs (with [`OpenLoop::until`]: at most this long).
    pub duration: Duration,
    /// Safety valve: at most this many requests in flight. Requests beyond it wait for a
    /// slot, and that wait *is* counted in their latency (it starts at the intended time).
    pub max_in_flight: usize,
    pub timeline: bool,
    /// Name of the phase: shown on stderr while it runs and recorded in the report.
    pub label: Option<String>,
    /// Stop the schedule early (see [`OpenLoop::until`]).
    pub stop_when: Option<StopWhen>,
}

impl std::fmt::Debug for OpenLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenLoop")
            .field("rate_per_s", &self.rate_per_s)
            .field("duration", &self.duration)
            .field("max_in_flight", &self.max_in_flight)
            .field("label", &self.label)
            .field("until", &self.stop_when.is_some())
            .finish()
    }
}

impl OpenLoop {
    pub fn new(rate_per_s: f64, duration: Duration) -> Self {
        Self {
            rate_per_s,
            duration,
            max_in_flight: 10_000,
            timeline: false,
            label: None,
            stop_when: None,
        }
    }

    /// Keep the arrival rate up until `stop(elapsed)` says so (checked before every
    /// request), with `duration` as the ceiling: traffic "for as long as the migration takes,
    /// plus a tail", recorded as one phase. Requests in flight when it stops still finish.
    pub fn until(mut self, stop: impl Fn(Duration) -> bool + Send + Sync + 'static) -> Self {
        self.stop_when = Some(Arc::new(stop));
        self
    }

    pub fn with_timeline(mut self) -> Self {
        self.timeline = true;
        self
    }

    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
}

/// Issue `op` at a fixed rate; latency is measured from each request's intended start.
///
/// The schedule is kept by a dedicated OS thread, not by tokio's timer: tokio's sleeps are
/// millisecond-grained, so above ~1,000 requests/s every request would leave up to 1 ms late
/// and that lateness would be charged as latency. The thread sleeps with a 1 µs timer slack
/// to just before each request's time, then hands the request to the runtime; how late it
/// did that is measured and returned in [`LoadResult::schedule`].
pub async fn open_loop<F, Fut, T, E>(cfg: OpenLoop, op: F) -> LoadResult<T>
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let op = Arc::new(op);
    let slots = Arc::new(tokio::sync::Semaphore::new(cfg.max_in_flight.max(1)));
    let interval = Duration::from_secs_f64(1.0 / cfg.rate_per_s.max(1e-9));
    let total = (cfg.duration.as_secs_f64() * cfg.rate_per_s).floor() as u64;
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let open_ended = cfg.stop_when.is_some();
    let bar = PhaseBar::start(cfg.label.as_deref(), (!open_ended).then_some(cfg.duration));
    let stop_when = cfg.stop_when.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Sample<T>>();
    let handle = tokio::runtime::Handle::current();
    let start = Instant::now();
    let dispatcher = {
        let first_error = first_error.clone();
        std::thread::Builder::new()
            .name("labkit-open-loop".into())
            .spawn(move || {
                precise_timer_slack();
                let mut late = Recorder::new();
                for seq in 0..total {
                    // The run was dropped (Ctrl-C, a failed lab): stop sending at once.
                    if tx.is_closed() {
                        break;
                    }
                    let intended = start + interval.mul_f64(seq as f64);
                    if stop_when
                        .as_ref()
                        .is_some_and(|stop| stop(intended - start))
                    {
                        break;
                    }
                    sleep_until_precise(intended);
                    // If we are behind schedule the request is late, and its latency says so.
                    late.record(Instant::now().saturating_duration_since(intended));
                    let (op, slots, tx) = (op.clone(), slots.clone(), tx.clone());
                    let first_error = first_error.clone();
                    handle.spawn(async move {
                        let _permit = slots.acquire_owned().await.expect("semaphore never closed");
                        let out = match op(Call { worker: 0, seq }).await {
                            Ok(v) => Some(v),
                            Err(e) => {
                                keep_first(&first_error, &e);
                                None
                            }
                        };
                        let _ = tx.send(Sample {
                            at: intended - start,
                            latency: intended.elapsed(),
                            out,
                        });
                    });
                }
                (late, start.elapsed())
            })
            .expect("spawn the open-loop dispatcher thread")
    };
    let mut rec = Recorder::new();
    let mut timeline = Vec::new();
    while let Some(s) = rx.recv().await {
        match s.out {
            Some(_) => rec.record(s.latency),
            None => rec.record_error(),
        }
        if cfg.timeline {
            timeline.push(s);
        }
    }
    let (late, sending) = tokio::task::spawn_blocking(move || dispatcher.join())
        .await
        .expect("join the dispatcher")
        .expect("the open-loop dispatcher panicked");
    let elapsed = start.elapsed();
    bar.finish();
    timeline.sort_by_key(|s| s.at);
    let late = late.summary(sending);
    // With `until`, the schedule called for as many requests as were due before it stopped.
    let intended = if open_ended { late.count } else { total };
    let schedule = Schedule {
        intended,
        sent: late.count,
        target_rate_per_s: cfg.rate_per_s,
        // n requests are sent over n-1 intervals.
        achieved_rate_per_s: if late.count > 1 {
            (late.count - 1) as f64 / sending.as_secs_f64().max(1e-9)
        } else {
            cfg.rate_per_s
        },
        send_late_p50_ms: late.p50_ms,
        send_late_p99_ms: late.p99_ms,
        send_late_max_ms: late.max_ms,
    };
    let summary = rec.summary(elapsed);
    record(Phase {
        name: cfg.label.clone().unwrap_or_else(|| "load".into()),
        driver: "open".into(),
        clients: cfg.max_in_flight,
        rate_per_s: Some(cfg.rate_per_s),
        planned_s: (!open_ended).then_some(cfg.duration.as_secs_f64()),
        elapsed_s: elapsed.as_secs_f64(),
        samples: summary.count,
        errors: summary.errors,
        send_late_p99_ms: Some(schedule.send_late_p99_ms),
    });
    let first_error = first_error.lock().unwrap_or_else(|e| e.into_inner()).take();
    LoadResult {
        summary,
        recorder: rec,
        timeline,
        first_error,
        schedule: Some(schedule),
    }
}

/// Ask the kernel to wake this thread within 1 µs of its deadline (the default slack is
/// 50 µs). Best effort: on failure the schedule is merely a little coarser, and measured.
fn precise_timer_slack() {
    let _ = nix::sys::prctl::set_timerslack(1_000);
}

/// Sleep until `t`: the kernel's sleep for all but the last 100 µs, then yield until due.
fn sleep_until_precise(t: Instant) {
    const SPIN: Duration = Duration::from_micros(100);
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > SPIN {
            std::thread::sleep(left - SPIN);
        } else {
            std::thread::yield_now();
        }
    }
}

/// A phase's progress on stderr, ticking by time.
struct PhaseBar {
    bar: Option<indicatif::ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl PhaseBar {
    fn start(label: Option<&str>, planned: Option<Duration>) -> Self {
        let Some(label) = label.filter(|_| crate::progress::enabled()) else {
            return Self {
                bar: None,
                ticker: None,
            };
        };
        let bar = crate::progress::phase(label, planned);
        let ticker = planned.map(|_| {
            let bar = bar.clone();
            let t0 = Instant::now();
            tokio::spawn(async move {
                loop {
                    bar.set_position(t0.elapsed().as_millis() as u64);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        Self {
            bar: Some(bar),
            ticker,
        }
    }

    fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

tokio::task_local! {
    /// The phases of the lab run in progress (set by [`crate::run_lab`]).
    static PHASES: Arc<Mutex<Vec<Phase>>>;
}

/// Run `fut` with a phase log: every driver that runs inside it (in the same task)
/// records its phase there.
pub(crate) async fn with_phase_log<F: Future>(log: Arc<Mutex<Vec<Phase>>>, fut: F) -> F::Output {
    PHASES.scope(log, fut).await
}

fn record(phase: Phase) {
    let _ = PHASES.try_with(|p| p.lock().unwrap_or_else(|e| e.into_inner()).push(phase));
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
    async fn closed_loop_stops_at_the_count_counts_errors_and_keeps_the_first() {
        let r = closed_loop(ClosedLoop::new(4, Bound::Count(100)), |c| async move {
            if c.seq % 10 == 0 {
                Err(format!("boom {}", c.seq))
            } else {
                Ok(c.seq)
            }
        })
        .await;
        assert_eq!(r.summary.count + r.summary.errors, 100);
        assert_eq!(r.summary.errors, 10);
        assert!(r.first_error.unwrap().starts_with("boom "));
    }

    #[tokio::test]
    async fn closed_loop_timeline_keeps_each_outcome_and_think_time_spaces_operations() {
        let cfg = ClosedLoop::new(2, Bound::Count(10))
            .with_timeline()
            .think(Duration::from_millis(4), 7);
        let r = closed_loop(cfg, |c| async move {
            if c.seq == 3 {
                Err("no")
            } else {
                Ok(c.seq * 10)
            }
        })
        .await;
        assert_eq!(r.timeline.len(), 10);
        let outs: Vec<Option<u64>> = r.timeline.iter().map(|s| s.out).collect();
        assert_eq!(outs.iter().filter(|o| o.is_none()).count(), 1);
        assert!(outs.iter().flatten().all(|v| v % 10 == 0));
        // 5 operations per worker with at least 2 ms of think time after each.
        assert!(r.summary.elapsed_s >= 0.008, "{:?}", r.summary);
    }

    #[tokio::test]
    async fn closed_loop_until_stops_when_the_flag_is_set() {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let cfg = ClosedLoop::new(2, Bound::Duration(Duration::from_secs(3600))).until(stop);
        let r = closed_loop(cfg, move |c| {
            let flag = flag.clone();
            async move {
                if c.seq == 50 {
                    flag.store(true, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
                Ok::<_, String>(())
            }
        })
        .await;
        assert!(
            r.summary.count >= 51 && r.summary.count <= 52,
            "{:?}",
            r.summary
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_until_stops_the_schedule_early() {
        let cfg = OpenLoop::new(1000.0, Duration::from_secs(3600))
            .until(|elapsed| elapsed >= Duration::from_millis(200));
        let r = open_loop(cfg, |_| async { Ok::<_, String>(()) }).await;
        assert_eq!(r.summary.count, 200, "{:?}", r.summary);
        assert_eq!(r.schedule.unwrap().intended, 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stall_shows_in_open_loop_p99_and_hides_in_closed_loop() {
        // One connection's worth of work: a cheap operation, except that one call stalls for
        // 100 ms. The closed loop waits for it and records one slow sample; the open loop
        // keeps sending at 1,000/s, so the ~100 requests due during the stall queue behind
        // it and each is charged from when it was due (coordinated omission, made visible).
        const STALL: Duration = Duration::from_millis(100);
        let op = |c: Call| async move {
            if c.seq == 200 {
                tokio::time::sleep(STALL).await;
            }
            Ok::<_, String>(())
        };
        let closed = closed_loop(ClosedLoop::new(1, Bound::Count(1000)), op).await;
        let open = open_loop(
            OpenLoop::new(1000.0, Duration::from_secs(1)).max_in_flight(1),
            op,
        )
        .await;
        let slow = |r: &LoadResult| {
            r.recorder
                .histogram()
                .iter_recorded()
                .filter(|v| v.value_iterated_to() >= 20_000)
                .map(|v| v.count_at_value())
                .sum::<u64>()
        };
        assert!(slow(&closed) <= 3, "closed loop: {:?}", closed.summary);
        assert!(slow(&open) >= 50, "open loop: {:?}", open.summary);
        assert!(
            open.summary.p99_ms >= 20.0,
            "open loop p99: {:?}",
            open.summary
        );
        assert!(
            closed.summary.p99_ms < 20.0,
            "closed loop p99: {:?}",
            closed.summary
        );
        let sched = open.schedule.unwrap();
        assert_eq!(sched.intended, 1000);
        assert_eq!(sched.sent, 1000);
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
