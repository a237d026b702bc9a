//! Eviction: a Redis with a small `maxmemory`, more account rows than fit, Zipf-popular
//! reads through naive cache-aside, one dedicated Redis per eviction policy.
//!
//! `maxmemory` is set to the empty server's own footprint plus a data budget, so the budget
//! means the same thing on every Redis version. Hit rate, `evicted_keys` and the OOM
//! error count come from the server's `INFO`, reset after a warm-up phase.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use labkit::LabCtx;
use labkit::backend::local::{LocalBins, LocalRedis, RedisOptions};
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

pub async fn run(
    ctx: &LabCtx,
    bins: &LocalBins,
    plan: EvictionPlan,
    policy: &'static str,
    keys_have_ttl: bool,
) -> anyhow::Result<EvictionResult> {
    let server = LocalRedis::start(
        bins,
        &RedisOptions {
            maxmemory: None,
            maxmemory_policy: Some(policy.to_string()),
        },
    )
    .await?;
    let result = measure(ctx, &server, plan, policy, keys_have_ttl).await;
    // Stopping waits for the process; keep that off the async workers.
    tokio::task::spawn_blocking(move || drop(server)).await?;
    result
}

async fn measure(
    ctx: &LabCtx,
    server: &LocalRedis,
    plan: EvictionPlan,
    policy: &'static str,
    keys_have_ttl: bool,
) -> anyhow::Result<EvictionResult> {
    let mut conn = ConnectionManager::new(redis::Client::open(server.url())?).await?;
    let baseline = info_field(&info(&mut conn, "memory").await?, "used_memory").unwrap_or(0);
    let maxmemory = baseline + plan.budget_bytes;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(maxmemory)
        .query_async::<()>(&mut conn)
        .await?;

    let ttl = keys_have_ttl.then_some(plan.ttl);
    let counters = Arc::new(Counters::default());
    phase(
        ctx,
        &conn,
        plan,
        plan.warm_reads,
        ttl,
        ctx.seed,
        counters.clone(),
    )
    .await;
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(&mut conn)
        .await?;
    let counters = Arc::new(Counters::default());
    phase(
        ctx,
        &conn,
        plan,
        plan.measured_reads,
        ttl,
        ctx.seed + 1,
        counters.clone(),
    )
    .await;

    let stats = info(&mut conn, "stats").await?;
    let errorstats = info(&mut conn, "errorstats").await.unwrap_or_default();
    let hits = info_field(&stats, "keyspace_hits").unwrap_or(0);
    let misses = info_field(&stats, "keyspace_misses").unwrap_or(0);
    let keys_at_end: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await?;
    Ok(EvictionResult {
        policy,
        keys_have_ttl,
        hit_rate: hits as f64 / (hits + misses).max(1) as f64,
        evicted_keys: info_field(&stats, "evicted_keys").unwrap_or(0),
        oom_write_errors: counters.oom.load(Ordering::Relaxed),
        // `errorstat_OOM:count=N` (Redis 6.2+).
        oom_errors_in_info: errorstats
            .lines()
            .find_map(|l| l.strip_prefix("errorstat_OOM:count="))
            .and_then(|v| v.split(',').next()?.trim().parse().ok())
            .unwrap_or(0),
        read_errors: counters.failed.load(Ordering::Relaxed),
        keys_at_end,
        maxmemory,
    })
}

#[derive(Debug, Default)]
struct Counters {
    oom: AtomicU64,
    failed: AtomicU64,
}

/// `reads` Zipf-distributed account reads from `plan.workers` concurrent workers.
async fn phase(
    ctx: &LabCtx,
    conn: &ConnectionManager,
    plan: EvictionPlan,
    reads: u64,
    ttl: Option<Duration>,
    seed: u64,
    counters: Arc<Counters>,
) {
    let zipf = Zipf::new(plan.accounts as f64, plan.zipf_s).expect("valid zipf");
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..plan.workers {
        let mut conn = conn.clone();
        let pool = ctx.pg.clone();
        let issued = issued.clone();
        let counters = counters.clone();
        let prefix = ctx.key("account:");
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003) + w as u64);
        tasks.spawn(async move {
            while issued.fetch_add(1, Ordering::Relaxed) < reads {
                let id = rng.sample(zipf) as i32;
                let key = format!("{prefix}{id}");
                let pool = pool.clone();
                match cache_aside::read(&mut conn, &key, ttl, || async move {
                    load_account(&pool, id).await
                })
                .await
                {
                    Ok(r) => {
                        if r.write_error.is_some_and(|e| e.contains("OOM")) {
                            counters.oom.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        tracing::debug!("eviction read failed: {e}");
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn info(conn: &mut ConnectionManager, section: &str) -> redis::RedisResult<String> {
    redis::cmd("INFO").arg(section).query_async(conn).await
}

/// `name:value` from an `INFO` reply.
pub fn info_field(info: &str, name: &str) -> Option<u64> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}
