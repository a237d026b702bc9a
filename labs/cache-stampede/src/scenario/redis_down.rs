//! Redis goes down mid-run. The instances fail open (`app.rs`): every read that cannot
//! reach Redis is served from Postgres and the error is counted. Nothing panics, nothing
//! returns an error to the reader — and the database takes the whole read load.
//!
//! The Redis is the scenario's own (`LabCtx::dedicated_redis`): the lab stops it, which it
//! must never do to the run's shared Redis. Backends that cannot give one skip the scenario.

use std::sync::Arc;
use std::time::{Duration, Instant};

use labkit::backend::RedisOptions;
use labkit::ctx::DedicatedRedis;
use labkit::{Bound, ClosedLoop, LabCtx, LatencySummary, Sample};

use crate::app::{Instance, Settings, Strategy};
use crate::entry::Served;
use crate::ledger::LoadStats;
use crate::scenario::summary_where;

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
    pub before: LatencySummary,
    pub after: LatencySummary,
}

/// Start the scenario's Redis (or say why this backend cannot), then run.
pub async fn run(
    ctx: &LabCtx,
    plan: RedisDownPlan,
) -> anyhow::Result<Result<RedisDownResult, String>> {
    let server = match ctx.dedicated_redis(&RedisOptions::default()).await {
        Ok(s) => s,
        Err(labkit::ExtraError::Unavailable(why)) => return Ok(Err(why)),
        Err(e) => return Err(e.into()),
    };
    Ok(Ok(outage(ctx, plan, server).await?))
}

async fn outage(
    ctx: &LabCtx,
    plan: RedisDownPlan,
    server: DedicatedRedis,
) -> anyhow::Result<RedisDownResult> {
    let stats = Arc::new(LoadStats::default());
    let mut instances = Vec::new();
    for id in 0..plan.instances {
        let pool = ctx.new_pool(8).await?;
        let settings = Settings::with_ttl(plan.ttl);
        let app = Instance::new(
            id,
            Strategy::Naive,
            settings,
            pool,
            server.client(),
            stats.clone(),
        );
        instances.push(app?);
    }
    let instances = Arc::new(instances);
    let key = ctx.key("report:month-end:redis-down");
    instances[0].read(&key).await?;
    stats.reset();

    let crowd = ClosedLoop::new(plan.readers, Bound::Duration(plan.up_for + plan.down_for))
        .think(plan.think, ctx.seed)
        .label("redis down: readers while Redis stops")
        .with_timeline();
    let read = {
        let (instances, key) = (instances.clone(), key.clone());
        move |c: labkit::measure::Call| {
            let (instances, key) = (instances.clone(), key.clone());
            async move {
                let i = &instances[c.worker % instances.len()];
                i.read(&key).await.map(|r| r.served)
            }
        }
    };
    let start = Instant::now();
    let stop = async move {
        tokio::time::sleep_until((start + plan.up_for).into()).await;
        let stopped_at = start.elapsed();
        // Stopping a local server waits for the process (blocking): keep that off the
        // runtime's workers, or the readers would stall with it.
        let rt = tokio::runtime::Handle::current();
        let server = tokio::task::spawn_blocking(move || {
            let mut server = server;
            rt.block_on(server.stop());
            server
        })
        .await?;
        anyhow::Ok((stopped_at, server))
    };
    let (load, stopped) = tokio::join!(labkit::closed_loop(crowd, read), stop);
    let (stopped_at, server) = stopped?;
    tokio::task::spawn_blocking(move || drop(server)).await?;
    let samples = load.timeline;

    let starts: Vec<Duration> = stats
        .starts()
        .iter()
        .map(|s| s.saturating_duration_since(start))
        .collect();
    let end = plan.up_for + plan.down_for;
    let loads_per_s = |from: Duration, to: Duration| {
        let n = starts.iter().filter(|s| **s >= from && **s < to).count();
        n as f64 / (to - from).as_secs_f64()
    };
    let result = RedisDownResult {
        fallback_reads: samples
            .iter()
            .filter(|s| s.out == Some(Served::FellBack))
            .count() as u64,
        redis_errors: instances.iter().map(|i| i.redis_errors()).sum(),
        failed_reads: load.summary.errors,
        db_loads_per_s_before: loads_per_s(Duration::ZERO, stopped_at),
        db_loads_per_s_after: loads_per_s(stopped_at, end),
        before: summary_where(&samples, |s: &Sample<Served>| s.at < stopped_at),
        after: summary_where(&samples, |s: &Sample<Served>| s.at >= stopped_at),
    };
    for i in instances.iter() {
        i.loader().pool().close().await;
    }
    Ok(result)
}
