//! One read of the month-end report three ways: a cache hit (one Redis GET + JSON decode),
//! a cache miss (the report query plus GET and SET), and straight to Postgres.
//! Smoke-scale ledger (50 000 rows). Run with `cargo bench -p benches --bench cache-stampede`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lab_cache_stampede::cache_aside;
use lab_cache_stampede::ledger::{self, LoadStats, ReportLoader};
use labkit::Scale;

fn bench(c: &mut Criterion) {
    let rt = benches::runtime();
    let t = benches::ctx(&rt, "cache-stampede", Scale::Smoke);
    rt.block_on(ledger::seed(&t.ctx.pg, Scale::Smoke, 42))
        .expect("seed");
    let loader = ReportLoader::new(t.ctx.pg.clone(), Arc::new(LoadStats::default()));
    let key = t.ctx.key("bench:report");
    let ttl = Some(Duration::from_secs(600));

    let mut g = c.benchmark_group("cache-stampede/read-report");
    g.sample_size(20).measurement_time(Duration::from_secs(3));

    g.bench_function("postgres (no cache)", |b| {
        b.to_async(&rt)
            .iter(|| async { loader.load().await.unwrap() })
    });

    // Warm the key once; every iteration is then a hit.
    rt.block_on(cache_aside::read(
        &mut t.ctx.redis.clone(),
        &key,
        ttl,
        || loader.load(),
    ))
    .expect("warm");
    g.bench_function("cache hit", |b| {
        b.to_async(&rt).iter(|| async {
            let mut redis = t.ctx.redis.clone();
            cache_aside::read(&mut redis, &key, ttl, || loader.load())
                .await
                .unwrap()
        })
    });

    // DEL first, so every iteration misses: DEL + GET + the query + SET.
    g.bench_function("cache miss (DEL, GET, query, SET)", |b| {
        b.to_async(&rt).iter(|| async {
            let mut redis = t.ctx.redis.clone();
            cache_aside::invalidate(&mut redis, &key).await.unwrap();
            cache_aside::read(&mut redis, &key, ttl, || loader.load())
                .await
                .unwrap()
        })
    });
    g.finish();
    rt.block_on(t.finish());
}

criterion_group!(benches, bench);
criterion_main!(benches);
