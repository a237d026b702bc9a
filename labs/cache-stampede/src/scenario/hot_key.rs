//! Hot key: C readers on N instances read one report key across several expiries, once per
//! mechanism, each mechanism on its own key and its own fresh instances.

use std::sync::Arc;
use std::time::{Duration, Instant};

use labkit::{LabCtx, LatencySummary};

use crate::app::{Instance, Settings, Strategy};
use crate::entry::Served;
use crate::ledger::LoadStats;
use crate::readers::{self, Crowd, Sample};

/// The shape of the hot-key runs.
#[derive(Debug, Clone, Copy)]
pub struct HotKeyPlan {
    pub readers: usize,
    pub instances: usize,
    pub pool_per_instance: u32,
    pub ttl: Duration,
    /// How long each cached mechanism is read (several TTLs).
    pub duration: Duration,
    /// How long the no-cache baseline is read (it is slow to drain).
    pub no_cache_duration: Duration,
    pub think: Duration,
    /// After each expiry, how long counts as "the expiry window".
    pub window: Duration,
}

/// What one mechanism did.
#[derive(Debug, Clone)]
pub struct HotKeyResult {
    pub strategy: Strategy,
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
    pub gave_up_waiting: u64,
    pub errors: u64,
    /// p99 per 100 ms, for the chart.
    pub p99_series: Vec<(f64, f64)>,
}

impl HotKeyResult {
    /// Mean execution time of the report query during the run (contention shows here).
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
}

pub async fn run(
    ctx: &LabCtx,
    plan: HotKeyPlan,
    strategy: Strategy,
) -> anyhow::Result<HotKeyResult> {
    let key = ctx.key(&format!("report:month-end:{}", strategy.key()));
    let stats = Arc::new(LoadStats::default());
    let settings = Settings::with_ttl(plan.ttl);
    let mut instances = Vec::new();
    for id in 0..plan.instances {
        let pool = ctx.new_pool(plan.pool_per_instance).await?;
        instances.push(Instance::new(
            id,
            strategy,
            settings,
            pool,
            ctx.redis_client(),
            stats.clone(),
        )?);
    }
    let instances = Arc::new(instances);

    // Warm the key first: the story starts with a cached report, not a cold cache.
    let mut duration = plan.duration;
    let mut expiries_from = Vec::new();
    if strategy == Strategy::NoCache {
        duration = plan.no_cache_duration;
    } else {
        instances[0].read(&key).await?;
        expiries_from.push(Instant::now());
    }
    stats.reset();

    let start = Instant::now();
    let crowd = Crowd {
        readers: plan.readers,
        duration,
        think: plan.think,
        seed: ctx.seed,
    };
    let readers_instances = instances.clone();
    let read_key = key.clone();
    let samples: Vec<Sample<Served>> = readers::run(crowd, start, move |reader| {
        let instances = readers_instances.clone();
        let key = read_key.clone();
        async move {
            let instance = &instances[reader % instances.len()];
            instance.read(&key).await.map(|r| r.served)
        }
    })
    .await;
    for i in instances.iter() {
        i.shutdown().await;
    }

    // Each recompute finished shortly before it was stored; its value expired `ttl` later.
    // Recompute start times are what we have exactly; add the measured mean load time.
    let starts = stats.starts();
    let recomputes = stats.count();
    let mean_load = if recomputes > 0 {
        stats.busy() / recomputes as u32
    } else {
        Duration::ZERO
    };
    expiries_from.extend(starts.iter().map(|s| *s + mean_load));
    let windows: Vec<(Duration, Duration)> = expiries_from
        .iter()
        .map(|stored| {
            let e = (*stored + plan.ttl).saturating_duration_since(start);
            (e, e + plan.window)
        })
        .collect();
    let in_window = |s: &Sample<Served>| windows.iter().any(|(a, b)| s.at >= *a && s.at < *b);

    let count =
        |f: &dyn Fn(Served) -> bool| samples.iter().filter(|s| s.out.is_some_and(f)).count() as u64;
    let max_stale_ms = samples
        .iter()
        .filter_map(|s| match s.out {
            Some(Served::Stale { stale_ms }) => Some(stale_ms),
            _ => None,
        })
        .max()
        .unwrap_or(0);

    for i in instances.iter() {
        i.loader().pool().close().await;
    }
    Ok(HotKeyResult {
        strategy,
        reads: samples.len() as u64,
        recomputes,
        episodes: if strategy == Strategy::NoCache {
            0
        } else {
            episodes(&starts, plan.ttl / 2)
        },
        overall: readers::summary(&samples, |_| true),
        in_windows: readers::summary(&samples, in_window),
        db_busy: stats.busy(),
        stale_reads: count(&|s| matches!(s, Served::Stale { .. })),
        max_stale_ms,
        shared_reads: count(&|s| s == Served::Shared),
        early_recomputes: count(&|s| s == Served::EarlyRecompute),
        gave_up_waiting: count(&|s| s == Served::GaveUpWaiting),
        errors: samples.iter().filter(|s| s.out.is_none()).count() as u64,
        p99_series: readers::p99_over_time(&samples, Duration::from_millis(100)),
    })
}

/// Group recompute start times into bursts separated by more than `gap`.
pub fn episodes(starts: &[Instant], gap: Duration) -> u64 {
    let mut sorted = starts.to_vec();
    sorted.sort();
    let mut n = 0;
    let mut last: Option<Instant> = None;
    for s in sorted {
        if last.is_none_or(|l| s.duration_since(l) > gap) {
            n += 1;
        }
        last = Some(s);
    }
    n
}
