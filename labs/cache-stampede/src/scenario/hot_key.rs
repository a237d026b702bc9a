//! Hot key: C readers on N instances read one report key across several expiries, once per
//! mechanism, each mechanism on its own key and its own fresh instances.
//!
//! A [`Phase`] is a mechanism with its settings (TTL, XFetch's beta) under one driver:
//! labkit's closed loop (each reader reads, thinks, reads again — a stall stops them from
//! asking, so it hides part of its own cost) or its open loop (reads due at a fixed rate
//! whatever happens — a stall queues them, and each is charged from when it was due).

use std::sync::Arc;
use std::time::{Duration, Instant};

use labkit::measure::Schedule;
use labkit::{Bound, ClosedLoop, LabCtx, LatencySummary, OpenLoop, Recorder, Sample};

use crate::app::{Instance, Settings, Strategy};
use crate::cache_aside;
use crate::entry::{self, Entry, Served};
use crate::ledger::LoadStats;
use crate::scenario::summary_where;

/// The crowd and the fleet, shared by every hot-key phase.
#[derive(Debug, Clone, Copy)]
pub struct HotKeyPlan {
    /// The crowd (each phase may take a share of it).
    pub readers: usize,
    pub instances: usize,
    pub pool_per_instance: u32,
    /// Mean pause between one reader's reads (closed loop).
    pub think: Duration,
    /// Unmeasured reads before each phase; the key is then stored afresh.
    pub warmup: Duration,
    /// After each expiry, how long counts as "the expiry window".
    pub window: Duration,
}

/// Which labkit driver asks for the reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Driver {
    Closed,
    Open { rate_per_s: f64 },
}

/// One measured run of one mechanism.
#[derive(Debug, Clone)]
pub struct Phase {
    /// Redis key suffix, unique per phase.
    pub slug: &'static str,
    /// What the report calls it.
    pub name: String,
    /// Closed loop: readers. Open loop: the fleet's request slots (most reads in flight).
    pub readers: usize,
    pub strategy: Strategy,
    pub settings: Settings,
    pub driver: Driver,
    pub duration: Duration,
    /// The `delta` the first cached value carries, when it must be the report's time under
    /// the crowd rather than on the idle database the warm read ran on. XFetch's gate trusts
    /// it: a first delta three times too short fires e^3 ≈ 20 recomputes, whose last one
    /// stores a delta ten times too long, and the next early window covers the whole TTL.
    /// In the story the cached value was computed under the month-end load; so here.
    pub initial_delta: Option<Duration>,
}

/// What one phase did.
#[derive(Debug, Clone)]
pub struct HotKeyResult {
    pub phase: Phase,
    pub reads: u64,
    pub recomputes: u64,
    /// Bursts of recomputes separated by quiet gaps: one per expiry (or early refresh).
    pub episodes: u64,
    pub overall: LatencySummary,
    /// Reads that started within `window` after a cached value's TTL ran out.
    pub in_windows: LatencySummary,
    pub db_busy: Duration,
    pub stale_reads: u64,
    pub max_stale_ms: u64,
    pub shared_reads: u64,
    pub early_recomputes: u64,
    /// Reads that found no value in Redis and loaded it themselves.
    pub misses: u64,
    pub gave_up_waiting: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Per refresh: how long before the previous value's expiry its first recompute
    /// started (negative: after it expired).
    pub leads: Vec<f64>,
    /// Recomputes in each refresh (burst), in order.
    pub per_refresh: Vec<u64>,
    /// Open loop only: how well the driver kept its schedule.
    pub schedule: Option<Schedule>,
    /// Share of reads slower than 100 ms: how many readers felt the stall.
    pub slow_share: f64,
    /// p99 per 100 ms, for the chart.
    pub p99_series: Vec<(f64, f64)>,
}

impl HotKeyResult {
    /// Mean execution time of the report query during the run (contention shows here).
    /// For XFetch this is the `delta` its gate works with.
    pub fn mean_query_ms(&self) -> f64 {
        self.db_busy.as_secs_f64() * 1e3 / self.recomputes.max(1) as f64
    }

    pub fn recomputes_per_expiry(&self) -> f64 {
        if self.episodes == 0 {
            f64::NAN
        } else {
            self.recomputes as f64 / self.episodes as f64
        }
    }

    /// Successful reads per second over the phase.
    pub fn reads_per_s(&self) -> f64 {
        self.overall.throughput_per_s
    }

    pub fn mean_lead_ms(&self) -> f64 {
        self.leads.iter().sum::<f64>() / self.leads.len().max(1) as f64
    }
}

pub async fn run(ctx: &LabCtx, plan: HotKeyPlan, phase: Phase) -> anyhow::Result<HotKeyResult> {
    let key = ctx.key(&format!("report:month-end:{}", phase.slug));
    let stats = Arc::new(LoadStats::default());
    let mut fleet = Vec::new();
    for id in 0..plan.instances {
        let pool = ctx.new_pool(plan.pool_per_instance).await?;
        let redis = ctx.redis_client();
        let (strategy, settings) = (phase.strategy, phase.settings);
        fleet.push(Instance::new(
            id,
            strategy,
            settings,
            pool,
            redis,
            stats.clone(),
        )?);
    }
    let fleet = Arc::new(fleet);
    // A round-robin balancer in front of the instances.
    let read = {
        let (fleet, key) = (fleet.clone(), key.clone());
        move |c: labkit::measure::Call| {
            let (fleet, key) = (fleet.clone(), key.clone());
            async move {
                let instance = &fleet[c.seq as usize % fleet.len()];
                instance.read(&key).await.map(|r| r.served)
            }
        }
    };
    let label = format!("hot key: {}", phase.name);
    let closed = |d: Duration| {
        ClosedLoop::new(phase.readers, Bound::Duration(d)).think(plan.think, ctx.seed)
    };
    // The story starts with a cached report, stored now: the first expiry is one TTL in.
    let store = async || -> anyhow::Result<Option<Instant>> {
        let (app, ttl) = (&fleet[0], phase.settings.ttl);
        match (phase.strategy, phase.initial_delta) {
            (Strategy::NoCache, _) => return Ok(None),
            (_, Some(delta)) => {
                let value = Entry::new(app.loader().load().await?, delta, ttl);
                entry::set(&mut app.redis(), &key, &value, Some(ttl)).await?;
            }
            (_, None) => {
                cache_aside::invalidate(&mut app.redis(), &key).await?;
                app.read(&key).await?;
            }
        }
        Ok(Some(Instant::now()))
    };
    if !plan.warmup.is_zero() {
        store().await?;
        let warm = closed(plan.warmup).label(format!("{label} (warm-up)"));
        labkit::closed_loop(warm, read.clone()).await;
        for i in fleet.iter() {
            i.shutdown().await;
        }
    }
    let stored_at = store().await?;
    stats.reset();

    let start = Instant::now();
    let load = match phase.driver {
        Driver::Closed => {
            let cfg = closed(phase.duration).label(label).with_timeline();
            labkit::closed_loop(cfg, read).await
        }
        Driver::Open { rate_per_s } => {
            let cfg = OpenLoop::new(rate_per_s, phase.duration)
                .max_in_flight(phase.readers)
                .label(label)
                .with_timeline();
            labkit::open_loop(cfg, read).await
        }
    };
    for i in fleet.iter() {
        i.shutdown().await;
        i.loader().pool().close().await;
    }
    let samples = load.timeline;
    let ttl = phase.settings.ttl;

    // Each recompute finished shortly before it was stored; its value expired `ttl` later.
    // Recompute start times are what we have exactly; add the measured mean load time.
    let starts = stats.starts();
    let recomputes = stats.count();
    let mean_load = stats.busy() / recomputes.max(1) as u32;
    let windows: Vec<(Duration, Duration)> = stored_at
        .into_iter()
        .chain(starts.iter().map(|s| *s + mean_load))
        .map(|stored| {
            let e = (stored + ttl).saturating_duration_since(start);
            (e, e + plan.window)
        })
        .collect();
    let in_window = |s: &Sample<Served>| windows.iter().any(|(a, b)| s.at >= *a && s.at < *b);
    let bursts = if phase.strategy == Strategy::NoCache {
        Vec::new()
    } else {
        bursts(&starts, ttl / 2)
    };
    // How far ahead of the expiry it replaced each refresh began.
    let mut leads = Vec::new();
    let mut stored = stored_at;
    for (first, last) in &bursts {
        if let Some(s) = stored {
            let expiry = s + ttl;
            leads.push(if expiry >= *first {
                (expiry - *first).as_secs_f64() * 1e3
            } else {
                -((*first - expiry).as_secs_f64() * 1e3)
            });
        }
        stored = Some(*last + mean_load);
    }

    let count =
        |f: fn(Served) -> bool| samples.iter().filter(|s| s.out.is_some_and(f)).count() as u64;
    let max_stale_ms = samples
        .iter()
        .filter_map(|s| match s.out {
            Some(Served::Stale { stale_ms }) => Some(stale_ms),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    Ok(HotKeyResult {
        reads: samples.len() as u64,
        recomputes,
        episodes: bursts.len() as u64,
        overall: load.summary,
        in_windows: summary_where(&samples, in_window),
        db_busy: stats.busy(),
        stale_reads: count(|s| matches!(s, Served::Stale { .. })),
        max_stale_ms,
        shared_reads: count(|s| s == Served::Shared),
        early_recomputes: count(|s| s == Served::EarlyRecompute),
        misses: count(|s| s == Served::Loaded),
        gave_up_waiting: count(|s| s == Served::GaveUpWaiting),
        errors: load.summary.errors,
        first_error: load.first_error,
        leads,
        per_refresh: burst_sizes(&starts, ttl / 2),
        schedule: load.schedule,
        slow_share: samples
            .iter()
            .filter(|s| s.latency >= Duration::from_millis(100))
            .count() as f64
            / samples.len().max(1) as f64,
        p99_series: p99_over_time(&samples, Duration::from_millis(100)),
        phase,
    })
}

/// Group recompute start times into bursts separated by more than `gap`: (first, last).
pub fn bursts(starts: &[Instant], gap: Duration) -> Vec<(Instant, Instant)> {
    let mut sorted = starts.to_vec();
    sorted.sort();
    let mut out: Vec<(Instant, Instant)> = Vec::new();
    for s in sorted {
        match out.last_mut() {
            Some((_, last)) if s.duration_since(*last) <= gap => *last = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// How many recomputes each burst holds.
pub fn burst_sizes(starts: &[Instant], gap: Duration) -> Vec<u64> {
    let mut sorted = starts.to_vec();
    sorted.sort();
    let mut out: Vec<u64> = Vec::new();
    let mut last: Option<Instant> = None;
    for s in sorted {
        match (last, out.last_mut()) {
            (Some(l), Some(n)) if s.duration_since(l) <= gap => *n += 1,
            _ => out.push(1),
        }
        last = Some(s);
    }
    out
}

/// How many bursts of recomputes: one per expiry (or early refresh).
pub fn episodes(starts: &[Instant], gap: Duration) -> u64 {
    bursts(starts, gap).len() as u64
}

/// p99 latency per time bucket (x in seconds, y in ms), for the latency-over-time chart.
fn p99_over_time<T>(samples: &[Sample<T>], bucket: Duration) -> Vec<(f64, f64)> {
    let mut buckets: Vec<Recorder> = Vec::new();
    for s in samples.iter().filter(|s| s.ok()) {
        let i = (s.at.as_secs_f64() / bucket.as_secs_f64()) as usize;
        if buckets.len() <= i {
            buckets.resize_with(i + 1, Recorder::new);
        }
        buckets[i].record(s.latency);
    }
    let mid = |i: usize| (i as f64 + 0.5) * bucket.as_secs_f64();
    buckets
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.histogram().is_empty())
        .map(|(i, r)| (mid(i), r.summary(bucket).p99_ms))
        .collect()
}
