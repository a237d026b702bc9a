//! cache-stampede: one read of the month-end report three ways, one client — a cache hit
//! (one Redis GET and a JSON decode), a cache miss (GET, the report query, SET), and straight
//! to Postgres (the query alone).
//!
//! Data: the lab's default scale (500,000 ledger entries, 5,000 accounts, vacuumed), seeded
//! once into the bench database and copied per run. The report sums a month of it: no index
//! helps, which is what makes a stampede of misses hurt. Every hit reads the same key,
//! warmed once; every miss DELs it first, outside the timing, so each iteration recomputes.
//!
//! Run with `cargo bench -p benches --bench cache-stampede`. What a stampede does to
//! Postgres (recomputes per expiry, p99 under load) comes from `lab run cache-stampede`.

use std::sync::Arc;
use std::time::Duration;

use benches::Bench;
use benches::iters::each_after;
use criterion::{Criterion, criterion_group, criterion_main};
use lab_cache_stampede::cache_aside;
use lab_cache_stampede::ledger::{self, LoadStats, ReportLoader};
use labkit::{LabCtx, Scale};

/// Bump when the seed below (or the lab's `ledger::seed`) changes: the bench database is
/// rebuilt.
const DATA_VERSION: u32 = 1;
const GROUP: &str = "cache-stampede/read-report";

fn bench(c: &mut Criterion) {
    let scale = benches::scale(Scale::Default);
    let b = Bench::cached(
        "cache-stampede",
        scale,
        DATA_VERSION,
        async |ctx: &LabCtx| {
            ledger::seed(&ctx.pg, scale, ctx.seed).await?;
            Ok(())
        },
    );
    let loader = ReportLoader::new(b.ctx().pg.clone(), Arc::new(LoadStats::default()));
    let key = b.ctx().key("bench:report");
    let ttl = Some(Duration::from_secs(600));
    let redis = b.ctx().redis.clone();

    let mut g = c.benchmark_group(GROUP);
    g.sample_size(20).measurement_time(Duration::from_secs(3));

    g.bench_function("postgres", |bench| {
        bench
            .to_async(&b.rt)
            .iter(|| async { loader.load().await.expect("report") })
    });

    // Warm the key once; every iteration is then a hit.
    b.block_on(cache_aside::read(&mut redis.clone(), &key, ttl, || {
        loader.load()
    }))
    .expect("warm");
    g.bench_function("hit", |bench| {
        bench.to_async(&b.rt).iter(|| async {
            let mut redis = redis.clone();
            cache_aside::read(&mut redis, &key, ttl, || loader.load())
                .await
                .expect("hit")
        })
    });

    // DEL before each iteration, untimed, so every one misses: GET, the query, SET.
    g.bench_function("miss", |bench| {
        bench.to_async(&b.rt).iter_custom(|iters| {
            let (redis, key, loader) = (&redis, &key, &loader);
            let del = async move |_| {
                cache_aside::invalidate(&mut redis.clone(), key)
                    .await
                    .expect("DEL");
            };
            let miss = async move |_| {
                cache_aside::read(&mut redis.clone(), key, ttl, || loader.load())
                    .await
                    .expect("miss");
            };
            async move { each_after(iters, &del, &miss).await }
        })
    });
    g.finish();

    let (rows, accounts) = ledger::sizes(scale);
    b.summary(
        GROUP,
        format!("{rows} ledger entries, {accounts} accounts ({scale} scale), the month-end report"),
    )
    .label("postgres", "the report query, no cache")
    .label("hit", "cache hit: GET + JSON decode")
    .label("miss", "cache miss: GET, the report query, SET")
    .faster(
        "a cache hit vs the report from Postgres",
        "per read",
        "hit",
        "postgres",
    )
    .when(&["miss", "postgres"], |e| {
        format!(
            "a miss costs {} = {:.2}× the bare query ({}): every reader that misses at once \
             runs the whole report — the stampede",
            e[0],
            e[0].ns / e[1].ns,
            e[1]
        )
    })
    .finish();

    b.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
