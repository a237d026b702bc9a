//! The war story's guarantees, on real Postgres and Redis. Each test gets its own servers.
//! No timing assertions: every test asserts counts, outcomes and Redis state.

use std::sync::Arc;
use std::time::Duration;

use lab_cache_stampede::app::{Instance, Settings, Strategy};
use lab_cache_stampede::entry::{self, CacheError, Entry, Served, now_ms};
use lab_cache_stampede::ledger::{self, LoadStats, MonthEnd};
use lab_cache_stampede::redis_lock::{self, LockSettings};
use lab_cache_stampede::{CacheStampede, FINDING_KEYS, cache_aside, xfetch};
use labkit::backend::RedisOptions;
use labkit::ctx::DedicatedRedis;
use labkit::testing::{TestCtx, require, smoke_run_keeps_its_contract};
use labkit::{Lab, LabCtx, Scale, redis_info};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::Barrier;

const LAB: &str = "cache-stampede";

/// Settings whose lock never expires or gives up during a test, however busy the machine.
fn patient(ttl: Duration) -> Settings {
    Settings {
        lock: LockSettings {
            px: Duration::from_secs(60),
            max_wait: Duration::from_secs(60),
            ..LockSettings::default()
        },
        ..Settings::with_ttl(ttl)
    }
}

/// `n` app instances, each with its own pool and Redis connection, sharing the counters.
async fn fleet(
    ctx: &LabCtx,
    n: usize,
    strategy: Strategy,
    settings: Settings,
    stats: &Arc<LoadStats>,
) -> Arc<Vec<Instance>> {
    let mut v = Vec::new();
    for id in 0..n {
        let pool = ctx.new_pool(4).await.unwrap();
        v.push(
            Instance::new(
                id,
                strategy,
                settings,
                pool,
                ctx.redis_client(),
                stats.clone(),
            )
            .unwrap(),
        );
    }
    Arc::new(v)
}

/// Close the instances' pools before the scratch database is dropped.
async fn close(instances: &[Instance]) {
    for i in instances {
        i.shutdown().await;
        i.loader().pool().close().await;
    }
}

/// 100 readers on `instances`, released together by a barrier onto a cold key. Returns how
/// each read was served.
async fn hundred_misses_at_once(instances: Arc<Vec<Instance>>, key: String) -> Vec<Served> {
    let barrier = Arc::new(Barrier::new(100));
    let mut tasks = tokio::task::JoinSet::new();
    for reader in 0..100 {
        let (barrier, instances, key) = (barrier.clone(), instances.clone(), key.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            instances[reader % instances.len()]
                .read(&key)
                .await
                .unwrap()
                .served
        });
    }
    tasks.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_misses_stampede_naive_but_load_once_behind_a_guard() {
    let t = labkit::testing::ctx(LAB).await;
    ledger::seed(&t.ctx.pg, Scale::Smoke, 42).await.unwrap();
    let ttl = Duration::from_secs(60);

    // Naive cache-aside, 4 instances: every reader that GETs before the first SET lands
    // runs the query itself.
    let stats = Arc::new(LoadStats::default());
    let naive = fleet(&t.ctx, 4, Strategy::Naive, patient(ttl), &stats).await;
    let served = hundred_misses_at_once(naive.clone(), t.ctx.key("report:naive")).await;
    let naive_loads = stats.count();
    assert!(naive_loads > 1, "naive recomputed {naive_loads} times");
    assert_eq!(
        served.iter().filter(|s| **s == Served::Loaded).count() as u64,
        naive_loads
    );

    // Single-flight in one instance: one leader loads, 99 share its result.
    let stats = Arc::new(LoadStats::default());
    let one = fleet(&t.ctx, 1, Strategy::SingleFlight, patient(ttl), &stats).await;
    hundred_misses_at_once(one.clone(), t.ctx.key("report:single-flight")).await;
    assert_eq!(stats.count(), 1, "single-flight in one instance loads once");

    // Single-flight over 4 instances: the flights live in each instance's memory, so at
    // most one load per instance gets through.
    let stats = Arc::new(LoadStats::default());
    let four = fleet(&t.ctx, 4, Strategy::SingleFlight, patient(ttl), &stats).await;
    hundred_misses_at_once(four.clone(), t.ctx.key("report:single-flight-4")).await;
    assert!((1..=4).contains(&stats.count()), "{} loads", stats.count());

    // The Redis lock over 4 instances: one load for the whole fleet; nobody gave up waiting.
    let stats = Arc::new(LoadStats::default());
    let locked = fleet(&t.ctx, 4, Strategy::RedisLock, patient(ttl), &stats).await;
    let served = hundred_misses_at_once(locked.clone(), t.ctx.key("report:lock")).await;
    assert_eq!(
        stats.count(),
        1,
        "the Redis lock loads once across 4 instances"
    );
    assert_eq!(served.iter().filter(|s| **s == Served::Loaded).count(), 1);
    assert!(!served.contains(&Served::GaveUpWaiting));
    for f in [naive, one, four, locked] {
        close(&f).await;
    }
    t.finish().await;
}

#[test]
fn the_xfetch_gate_fires_early_with_probability_e_to_the_minus_lead_over_delta() {
    // P(recompute) when `lead` ms before expiry = P(-delta * beta * ln(u) >= lead)
    // = e^(-lead / (delta * beta)). A seeded RNG makes the shares reproducible.
    let mut rng = StdRng::seed_from_u64(42);
    let (delta, beta, expiry) = (120.0, 1.0, 1_000_000.0);
    let trials = 200_000;
    let mut share = |lead: f64| {
        let fired = (0..trials)
            .filter(|_| {
                let u = 1.0 - rng.random::<f64>();
                xfetch::should_recompute_early(expiry - lead, delta, beta, expiry, u)
            })
            .count();
        fired as f64 / trials as f64
    };
    let at_delta = share(delta);
    let at_two_delta = share(2.0 * delta);
    assert!(
        (at_delta - (-1.0f64).exp()).abs() < 0.01,
        "at delta: {at_delta}"
    );
    assert!(
        (at_two_delta - (-2.0f64).exp()).abs() < 0.01,
        "at 2*delta: {at_two_delta}"
    );
    // At expiry it always fires; far from it, (almost) never.
    assert_eq!(share(0.0), 1.0);
    assert!(share(20.0 * delta) < 1e-4);
}

#[test]
fn xfetch_recomputes_about_e_to_the_one_over_beta_times_per_refresh_not_once() {
    // Reads arrive at random (Poisson, 4,000/s) on a key that expires at t = 0; each runs
    // the gate. The first reader that fires recomputes for delta, and until its value lands
    // every other reader still sees the old one and rolls the die again. Counted over 1,000
    // seeded refreshes: e^(1/beta) recomputes each (2.72 at beta = 1, 1.65 at beta = 2), and
    // the first one about delta·beta·ln(reads per delta) ahead of expiry.
    let (rate, delta_ms) = (4_000.0, 25.0);
    let mut rng = StdRng::seed_from_u64(7);
    for beta in [1.0, 2.0] {
        let (mut recomputes, mut lead_sum, refreshes) = (0u64, 0.0, 1_000);
        for _ in 0..refreshes {
            // Start far enough back that nobody would have fired earlier.
            let mut now = -15.0 * delta_ms * beta;
            let mut landed_at = None;
            loop {
                now += -(1.0 - rng.random::<f64>()).ln() / rate * 1e3;
                if landed_at.is_some_and(|t| now >= t) {
                    break;
                }
                let u = 1.0 - rng.random::<f64>();
                if xfetch::should_recompute_early(now, delta_ms, beta, 0.0, u) {
                    recomputes += 1;
                    if landed_at.is_none() {
                        landed_at = Some(now + delta_ms);
                        lead_sum += -now;
                    }
                }
            }
        }
        let per_refresh = recomputes as f64 / refreshes as f64;
        let expected = xfetch::expected_recomputes(beta);
        assert!(
            (per_refresh - expected).abs() < 0.1 * expected,
            "beta {beta}: {per_refresh} per refresh, expected {expected}"
        );
        let window =
            xfetch::expected_early_window(Duration::from_secs_f64(delta_ms / 1e3), beta, rate);
        let lead = lead_sum / refreshes as f64;
        let window_ms = window.as_secs_f64() * 1e3;
        assert!(
            (lead - window_ms).abs() < delta_ms * beta,
            "beta {beta}: first recompute {lead} ms ahead, window {window_ms} ms"
        );
    }
}

/// A Redis of the test's own with a 2 MB `maxmemory` under `policy`: the backend's dedicated
/// Redis (skipped locally, a failure under CI, where the backend cannot give one).
async fn small_redis(t: &TestCtx, policy: &str) -> Option<DedicatedRedis> {
    let opts = RedisOptions {
        maxmemory: Some("2mb".into()),
        maxmemory_policy: Some(policy.into()),
    };
    require(
        "a Redis of its own with a small maxmemory",
        t.ctx.dedicated_redis(&opts).await,
        None,
    )
}

async fn evicted_keys(conn: &mut redis::aio::ConnectionManager) -> f64 {
    redis_info::number(conn, "stats", "evicted_keys")
        .await
        .unwrap()
}

/// Write ~1 KB keys (`ttl`: with or without expiry) until Redis refuses one or 10 000 went in.
async fn fill(
    conn: &mut redis::aio::ConnectionManager,
    ttl: Option<Duration>,
) -> Option<redis::RedisError> {
    let blob = "x".repeat(1024);
    for i in 0..10_000 {
        match entry::set(
            conn,
            &format!("lab:cache-stampede:test:fill:{i}"),
            &Entry::new(blob.clone(), Duration::ZERO, Duration::from_secs(600)),
            ttl,
        )
        .await
        {
            Ok(()) => {}
            Err(CacheError::Redis(e)) => return Some(e),
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    None
}

#[tokio::test]
async fn noeviction_past_maxmemory_refuses_writes_but_cache_aside_still_serves_reads() {
    let t = labkit::testing::ctx(LAB).await;
    let Some(server) = small_redis(&t, "noeviction").await else {
        return;
    };
    let mut conn = redis::aio::ConnectionManager::new(server.client())
        .await
        .unwrap();

    // t1 fills the cache past 2 MB: Redis answers the next SET with its OOM error.
    let refused = fill(&mut conn, Some(Duration::from_secs(600)))
        .await
        .expect("a write is refused");
    assert_eq!(refused.code(), Some("OOM"), "{refused}");

    // t2 misses on a new key: the value is computed and returned; only the SET failed.
    let read = cache_aside::read(
        &mut conn,
        "lab:cache-stampede:test:new",
        Some(Duration::from_secs(60)),
        || async { Ok::<_, sqlx::Error>("fresh".to_string()) },
    )
    .await
    .unwrap();
    assert_eq!(read.value, "fresh");
    assert_eq!(read.served, Served::Loaded);
    assert!(read.write_error.is_some_and(|e| e.contains("OOM")));
    assert_eq!(evicted_keys(&mut conn).await, 0.0);
    drop(server);
    t.finish().await;
}

#[tokio::test]
async fn volatile_lru_with_keys_that_have_no_ttl_evicts_nothing_and_refuses_writes() {
    let t = labkit::testing::ctx(LAB).await;
    let Some(server) = small_redis(&t, "volatile-lru").await else {
        return;
    };
    let mut conn = redis::aio::ConnectionManager::new(server.client())
        .await
        .unwrap();

    // Keys written without a TTL are invisible to volatile-* policies: nothing to evict.
    let refused = fill(&mut conn, None).await.expect("a write is refused");
    assert_eq!(refused.code(), Some("OOM"), "{refused}");
    assert_eq!(evicted_keys(&mut conn).await, 0.0);

    // Control: the same policy with TTL'd keys evicts and keeps accepting writes.
    let Some(control) = small_redis(&t, "volatile-lru").await else {
        return;
    };
    let mut conn = redis::aio::ConnectionManager::new(control.client())
        .await
        .unwrap();
    assert!(
        fill(&mut conn, Some(Duration::from_secs(600)))
            .await
            .is_none()
    );
    assert!(evicted_keys(&mut conn).await > 0.0);
    drop((server, control));
    t.finish().await;
}

/// A Redis URL nobody listens on.
fn dead_redis() -> redis::Client {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap()
}

#[tokio::test]
async fn with_redis_unreachable_reads_fall_back_to_postgres_and_errors_are_counted() {
    let t = labkit::testing::ctx(LAB).await;
    ledger::seed(&t.ctx.pg, Scale::Smoke, 42).await.unwrap();
    let key = t.ctx.key("report:redis-down");
    let stats = Arc::new(LoadStats::default());
    let pool = t.ctx.new_pool(2).await.unwrap();
    let app = Instance::new(
        0,
        Strategy::Naive,
        Settings::with_ttl(Duration::from_secs(60)),
        pool,
        dead_redis(),
        stats.clone(),
    )
    .unwrap();

    // Fail open: each read reaches Postgres, gets the real report, and counts one error.
    let expected: MonthEnd = app.loader().load().await.unwrap();
    stats.reset();
    for n in 1..=3 {
        let read = app.read(&key).await.unwrap();
        assert_eq!(read.served, Served::FellBack);
        assert_eq!(read.value, expected);
        assert_eq!(app.redis_errors(), n);
    }
    assert_eq!(stats.count(), 3, "every read went to Postgres");
    app.loader().pool().close().await;

    // Fail closed, for contrast: the Redis error reaches the caller.
    let pool = t.ctx.new_pool(2).await.unwrap();
    let closed = Settings {
        fail_open: false,
        ..Settings::with_ttl(Duration::from_secs(60))
    };
    let app = Instance::new(
        1,
        Strategy::Naive,
        closed,
        pool,
        dead_redis(),
        stats.clone(),
    )
    .unwrap();
    assert!(matches!(app.read(&key).await, Err(CacheError::Redis(_))));
    app.loader().pool().close().await;
    t.finish().await;
}

#[tokio::test]
async fn a_lock_holder_that_dies_does_not_block_others_past_the_lock_px() {
    let t = labkit::testing::ctx(LAB).await;
    ledger::seed(&t.ctx.pg, Scale::Smoke, 42).await.unwrap();
    let key = t.ctx.key("report:dead-holder");
    let lock_key = format!("{key}:lock");
    let mut redis = t.ctx.redis.clone();

    // t1 takes the lock with a short PX and dies: it never loads and never releases.
    let t1 = redis_lock::try_acquire(&mut redis, &lock_key, Duration::from_millis(300))
        .await
        .unwrap()
        .expect("t1 gets the lock");

    // t2 misses and finds the lock taken; it backs off and re-reads. When Redis expires
    // t1's lock, t2 takes it and loads — it did not have to give up waiting.
    let stats = Arc::new(LoadStats::default());
    let t2 = fleet(
        &t.ctx,
        1,
        Strategy::RedisLock,
        patient(Duration::from_secs(60)),
        &stats,
    )
    .await;
    let read = t2[0].read(&key).await.unwrap();
    assert_eq!(read.served, Served::Loaded);
    assert_eq!(stats.count(), 1);

    // t3 now holds the lock. t1 comes back from the dead and releases with its old token:
    // compare-and-delete refuses, and t3's lock survives.
    let t3 = redis_lock::try_acquire(&mut redis, &lock_key, Duration::from_secs(60))
        .await
        .unwrap()
        .expect("t3 gets the lock");
    assert!(
        !redis_lock::release(&mut redis, &t1).await.unwrap(),
        "t1's release deletes nothing"
    );
    let holder: Option<String> = redis::cmd("GET")
        .arg(&lock_key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(holder.as_deref(), Some(t3.token.as_str()));
    assert!(redis_lock::release(&mut redis, &t3).await.unwrap());
    close(&t2).await;
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_while_revalidate_serves_the_stale_report_at_once_and_refreshes_it_once() {
    let t = labkit::testing::ctx(LAB).await;
    ledger::seed(&t.ctx.pg, Scale::Smoke, 42).await.unwrap();
    let key = t.ctx.key("report:swr");
    let ttl = Duration::from_secs(60);
    let stats = Arc::new(LoadStats::default());
    let fleet = fleet(
        &t.ctx,
        4,
        Strategy::StaleWhileRevalidate,
        patient(ttl),
        &stats,
    )
    .await;

    // The cached report went stale a second ago (it is still in Redis).
    let report = fleet[0].loader().load().await.unwrap();
    stats.reset();
    let mut stale = Entry::new(report, Duration::from_millis(10), ttl);
    stale.fresh_until_ms = now_ms() - 1_000;
    entry::set(&mut t.ctx.redis.clone(), &key, &stale, Some(ttl))
        .await
        .unwrap();

    // 100 readers on 4 instances, released together: nobody waits for Postgres — each read
    // is the stale copy, or the fresh one once the refresh landed.
    let served = hundred_misses_at_once(fleet.clone(), key.clone()).await;
    assert!(
        served
            .iter()
            .all(|s| matches!(s, Served::Stale { .. } | Served::Hit)),
        "{served:?}"
    );
    assert!(served.iter().any(|s| matches!(s, Served::Stale { .. })));
    close(&fleet).await;
    // One background refresh for the whole fleet, and the key is fresh again.
    assert_eq!(stats.count(), 1);
    let now: Entry<MonthEnd> = entry::get(&mut t.ctx.redis.clone(), &key)
        .await
        .unwrap()
        .unwrap();
    assert!(now.fresh_until_ms > now_ms());
    t.finish().await;
}

#[tokio::test]
async fn delete_on_write_shows_a_correction_at_once_while_ttl_only_keeps_the_old_report() {
    let t = labkit::testing::ctx(LAB).await;
    ledger::seed(&t.ctx.pg, Scale::Smoke, 42).await.unwrap();
    let key = t.ctx.key("report:invalidation");
    let stats = Arc::new(LoadStats::default());
    let one = fleet(
        &t.ctx,
        1,
        Strategy::Naive,
        patient(Duration::from_secs(60)),
        &stats,
    )
    .await;
    let app = &one[0];

    // t1 reads: miss, the report is cached for 60 s.
    let before = app.read(&key).await.unwrap();
    assert_eq!(before.served, Served::Loaded);

    // finance posts a correction (committed). TTL only: readers still get the old report.
    app.loader().post_correction(-1_250).await.unwrap();
    let ttl_only = app.read(&key).await.unwrap();
    assert_eq!(ttl_only.served, Served::Hit);
    assert_eq!(ttl_only.value.entries, before.value.entries);

    // Delete-on-write: the next read misses and sees the correction.
    app.invalidate(&key).await.unwrap();
    let after = app.read(&key).await.unwrap();
    assert_eq!(after.served, Served::Loaded);
    assert_eq!(after.value.entries, before.value.entries + 1);
    assert_eq!(after.value.net_cents, before.value.net_cents - 1_250);
    close(&one).await;
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_run_keeps_the_contract_and_the_guards_hold() {
    let t = labkit::testing::ctx(LAB).await;
    // The eviction and Redis-down scenarios need Redis servers of their own.
    let Some(probe) = require(
        "a dedicated Redis",
        t.ctx.dedicated_redis(&RedisOptions::default()).await,
        None,
    ) else {
        return;
    };
    drop(probe);
    // Every promised key with a finite value, every latency with its samples (labkit's
    // contract check), nothing reported that is not promised, nothing skipped.
    let report = smoke_run_keeps_its_contract(&CacheStampede, &t).await;
    assert_eq!(CacheStampede.finding_keys(), FINDING_KEYS);
    for f in &report.findings {
        assert!(
            FINDING_KEYS.contains(&f.key.as_str()),
            "unpromised {}",
            f.key
        );
    }
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    // The guards hold whatever the timings were: one load per expiry for the whole fleet,
    // nobody reads an error, delete-on-write is never stale.
    assert_eq!(report.get("redis_lock_recomputes_per_expiry"), Some(1.0));
    assert_eq!(report.get("swr_recomputes_per_expiry"), Some(1.0));
    assert_eq!(report.get("redis_down_failed_reads"), Some(0.0));
    assert_eq!(report.get("invalidate_on_write_staleness_ms"), Some(0.0));
    assert!(report.get("naive_recomputes_per_expiry").unwrap() > 1.0);
    // Every load phase ran through labkit's drivers and is on the record.
    for phase in [
        "hot key: naive cache-aside",
        "hot key: Redis lock (fleet-wide), open loop",
    ] {
        assert!(
            report.phases.iter().any(|p| p.name.starts_with(phase)),
            "no phase {phase}: {:?}",
            report.phases.iter().map(|p| &p.name).collect::<Vec<_>>()
        );
    }
    t.finish().await;
}
