//! Eviction: a Redis with a small `maxmemory`, more account rows than fit, Zipf-popular
//! reads through naive cache-aside, one dedicated Redis per eviction policy.
//!
//! `maxmemory` is set to the empty server's own footprint plus a data budget, so the budget
//! means the same thing on every Redis version. Hit rate, `evicted_keys` and the OOM
//! error count come from the server's `INFO`, reset after a warm-up phase.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use labkit::backend::RedisOptions;
use labkit::ctx::DedicatedRedis;
use labkit::redis_info;
use labkit::{Bound, ClosedLoop, ExtraError, LabCtx};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::Zipf;
use redis::aio::ConnectionManager;

use crate::cache_aside;
use crate::ledger::load_account;

#[derive(Debug, Clone, Copy)]
pub struct EvictionPlan {
    pub accounts: u64,
    /// Bytes of data allowed above the empty server's `used_memory`.
    pub budget_bytes: u64,
    pub warm_reads: u64,
    pub measured_reads: u64,
    pub workers: usize,
    /// Zipf exponent of account popularity.
    pub zipf_s: f64,
    pub ttl: Duration,
}

/// The policies compared, and whether their keys carry a TTL.
pub const POLICIES: [(&str, bool); 5] = [
    ("allkeys-lru", true),
    ("allkeys-lfu", true),
    ("volatile-ttl", true),
    ("noeviction", true),
    // The trap: volatile-* policies only evict keys with a TTL. Keys written without one
    // leave it nothing to evict, and it behaves like noeviction.
    ("volatile-lru", false),
];

#[derive(Debug, Clone)]
pub struct EvictionResult {
    pub policy: &'static str,
    pub keys_have_ttl: bool,
    pub hit_rate: f64,
    pub evicted_keys: u64,
    /// `SET`s refused with Redis's OOM error (the reads themselves still succeeded).
    pub oom_write_errors: u64,
    pub oom_errors_in_info: u64,
    pub read_errors: u64,
    pub keys_at_end: u64,
    pub maxmemory: u64,
}

/// One policy on a Redis of its own; `Ok(Err(why))` when this backend cannot give one.
pub async fn run(
    ctx: &LabCtx,
    plan: EvictionPlan,
    policy: &'static str,
    keys_have_ttl: bool,
) -> anyhow::Result<Result<EvictionResult, String>> {
    let opts = RedisOptions {
        maxmemory: None,
        maxmemory_policy: Some(policy.to_string()),
    };
    let server = match ctx.dedicated_redis(&opts).await {
        Ok(s) => s,
        Err(ExtraError::Unavailable(why)) => return Ok(Err(why)),
        Err(e) => return Err(e.into()),
    };
    let result = measure(ctx, &server, plan, policy, keys_have_ttl).await;
    // Stopping waits for the process; keep that off the async workers.
    tokio::task::spawn_blocking(move || drop(server)).await?;
    result.map(Ok)
}

async fn measure(
    ctx: &LabCtx,
    server: &DedicatedRedis,
    plan: EvictionPlan,
    policy: &'static str,
    keys_have_ttl: bool,
) -> anyhow::Result<EvictionResult> {
    let mut conn = ConnectionManager::new(server.client()).await?;
    let baseline = redis_info::number(&mut conn, "memory", "used_memory").await? as u64;
    let maxmemory = baseline + plan.budget_bytes;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(maxmemory)
        .query_async::<()>(&mut conn)
        .await?;

    let ttl = keys_have_ttl.then_some(plan.ttl);
    let label = |what: &str| {
        format!(
            "eviction: {policy}{} ({what})",
            if keys_have_ttl {
                ""
            } else {
                ", keys without TTL"
            }
        )
    };
    phase(
        ctx,
        &conn,
        plan,
        plan.warm_reads,
        ttl,
        ctx.seed,
        label("warm-up"),
    )
    .await;
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(&mut conn)
        .await?;
    let counts = phase(
        ctx,
        &conn,
        plan,
        plan.measured_reads,
        ttl,
        ctx.seed + 1,
        label("measured"),
    )
    .await;

    let stats = redis_info::info(&mut conn, "stats").await?;
    let field = |name: &str| {
        stats
            .get(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (hits, misses) = (field("keyspace_hits"), field("keyspace_misses"));
    // `errorstat_OOM:count=N,…` (Redis 6.2+).
    let errorstats = redis_info::info(&mut conn, "errorstats")
        .await
        .unwrap_or_default();
    let oom_in_info = errorstats
        .get("errorstat_OOM")
        .and_then(|v| v.strip_prefix("count=")?.split(',').next()?.parse().ok())
        .unwrap_or(0);
    let keys_at_end: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await?;
    Ok(EvictionResult {
        policy,
        keys_have_ttl,
        hit_rate: hits as f64 / (hits + misses).max(1) as f64,
        evicted_keys: field("evicted_keys"),
        oom_write_errors: counts.oom,
        oom_errors_in_info: oom_in_info,
        read_errors: counts.failed,
        keys_at_end,
        maxmemory,
    })
}

/// What one phase of reads saw.
#[derive(Debug, Default)]
struct Counts {
    oom: u64,
    failed: u64,
}

/// `reads` Zipf-distributed account reads from `plan.workers` concurrent workers.
async fn phase(
    ctx: &LabCtx,
    conn: &ConnectionManager,
    plan: EvictionPlan,
    reads: u64,
    ttl: Option<Duration>,
    seed: u64,
    label: String,
) -> Counts {
    let zipf = Zipf::new(plan.accounts as f64, plan.zipf_s).expect("valid zipf");
    let rngs: Arc<Vec<Mutex<StdRng>>> = Arc::new(
        (0..plan.workers)
            .map(|w| {
                Mutex::new(StdRng::seed_from_u64(
                    seed.wrapping_mul(1_000_003) + w as u64,
                ))
            })
            .collect(),
    );
    let (pool, conn, prefix) = (ctx.pg.clone(), conn.clone(), ctx.key("account:"));
    let read = move |c: labkit::measure::Call| {
        let id = rngs[c.worker].lock().expect("rng").sample(zipf) as i32;
        let key = format!("{prefix}{id}");
        let (pool, mut conn) = (pool.clone(), conn.clone());
        async move {
            let load = || async move { load_account(&pool, id).await };
            let read = cache_aside::read(&mut conn, &key, ttl, load).await?;
            // The read succeeded; only its SET may have been refused.
            anyhow::Ok(read.write_error.is_some_and(|e| e.contains("OOM")))
        }
    };
    let cfg = ClosedLoop::new(plan.workers, Bound::Count(reads))
        .label(label)
        .with_timeline();
    let load = labkit::closed_loop(cfg, read).await;
    if let Some(e) = &load.first_error {
        tracing::debug!("eviction read failed: {e}");
    }
    Counts {
        oom: load.timeline.iter().filter(|s| s.out == Some(true)).count() as u64,
        failed: load.summary.errors,
    }
}
