//! Redis goes down mid-run. The instances fail open (`app.rs`): every read that cannot
//! reach Redis is served from Postgres and the error is counted. Nothing panics, nothing
//! returns an error to the reader — and the database takes the whole read load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use labkit::LabCtx;
use labkit::backend::local::{LocalBins, LocalRedis, RedisOptions};

use crate::app::{Instance, Settings, Strategy};
use crate::entry::Served;
use crate::ledger::LoadStats;
use crate::readers::{self, Crowd, Sample};

#[derive(Debug, Clone, Copy)]
pub struct RedisDownPlan {
    pub readers: usize,
    pub instances: usize,
    pub ttl: Duration,
    pub think: Duration,
    /// Redis is stopped this long into the run...
    pub up_for: Duration,
    /// ...and the readers go on this long after.
    pub down_for: Duration,
}

#[derive(Debug, Clone)]
pub struct RedisDownResult {
    pub fallback_reads: u64,
    pub redis_errors: u64,
    pub failed_reads: u64,
    pub db_loads_per_s_before: f64,
    pub db_loads_per_s_after: f64,
    pub p99_ms_before: f64,
    pub p99_ms_after: f64,
}

pub async fn run(
    ctx: &LabCtx,
    bins: &LocalBins,
    plan: RedisDownPlan,
) -> anyhow::Result<RedisDownResult> {
    let mut server = LocalRedis::start(bins, &RedisOptions::default()).await?;
    let stats = Arc::new(LoadStats::default());
    let mut instances = Vec::new();
    for id in 0..plan.instances {
        let pool = ctx.new_pool(8).await?;
        let client = redis::Client::open(server.url())?;
        instances.push(Instance::new(
            id,
            Strategy::Naive,
            Settings::with_ttl(plan.ttl),
            pool,
            client,
            stats.clone(),
        )?);
    }
    let instances = Arc::new(instances);
    let key = ctx.key("report:month-end:redis-down");
    instances[0].read(&key).await?;
    stats.reset();

    let start = Instant::now();
    let crowd = Crowd {
        readers: plan.readers,
        duration: plan.up_for + plan.down_for,
        think: plan.think,
        seed: ctx.seed,
    };
    let (reader_instances, read_key) = (instances.clone(), key.clone());
    let crowd_run = readers::run(crowd, start, move |reader| {
        let (instances, key) = (reader_instances.clone(), read_key.clone());
        async move {
            let i = &instances[reader % instances.len()];
            i.read(&key).await.map(|r| r.served)
        }
    });
    let outage = async move {
        tokio::time::sleep_until((start + plan.up_for).into()).await;
        // `stop` waits for the process to exit (blocking); it must not stall the readers.
        let stopped_at = start.elapsed();
        tokio::task::spawn_blocking(move || {
            server.stop();
            server
        })
        .await
        .map(|server| (stopped_at, server))
    };
    let (samples, outage) = tokio::join!(crowd_run, outage);
    let (stopped_at, server) = outage?;
    tokio::task::spawn_blocking(move || drop(server)).await?;

    let starts: Vec<Duration> = stats
        .starts()
        .iter()
        .map(|s| s.saturating_duration_since(start))
        .collect();
    let end = plan.up_for + plan.down_for;
    let loads_per_s = |from: Duration, to: Duration| {
        starts.iter().filter(|s| **s >= from && **s < to).count() as f64 / (to - from).as_secs_f64()
    };
    let before = |s: &Sample<Served>| s.at < stopped_at;
    let after = |s: &Sample<Served>| s.at >= stopped_at;
    let result = RedisDownResult {
        fallback_reads: samples
            .iter()
            .filter(|s| s.out == Some(Served::FellBack))
            .count() as u64,
        redis_errors: instances.iter().map(|i| i.redis_errors()).sum(),
        failed_reads: samples.iter().filter(|s| s.out.is_none()).count() as u64,
        db_loads_per_s_before: loads_per_s(Duration::ZERO, stopped_at),
        db_loads_per_s_after: loads_per_s(stopped_at, end),
        p99_ms_before: readers::summary(&samples, before).p99_ms,
        p99_ms_after: readers::summary(&samples, after).p99_ms,
    };
    for i in instances.iter() {
        i.loader().pool().close().await;
    }
    Ok(result)
}
