//! zero-downtime-migrations: one `ALTER TABLE … ADD COLUMN` on a 200,000-row copy of
//! `items` (with its primary key), with a constant default (metadata only since PostgreSQL
//! 11) vs a volatile one (`clock_timestamp()`: every row rewritten, indexes rebuilt, under
//! ACCESS EXCLUSIVE). Every iteration gets a fresh copy, made outside the timed part, so each
//! one measures the same ALTER on the same table.
//!
//! Run with `cargo bench -p benches --bench zero-downtime-migrations`. What the app sees
//! while it runs (the write stall, the errors) comes from `lab run zero-downtime-migrations`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use lab_zero_downtime_migrations::schema::{self, Dataset};
use labkit::{Recorder, Scale};
use sqlx::PgPool;

const ROWS: u64 = 200_000;

const VARIANTS: [(&str, &str); 2] = [
    (
        "constant-default",
        "ALTER TABLE bench_items ADD COLUMN region text NOT NULL DEFAULT 'eu'",
    ),
    (
        "volatile-default",
        "ALTER TABLE bench_items ADD COLUMN touched_at timestamptz NOT NULL DEFAULT clock_timestamp()",
    ),
];

/// A fresh, compact copy of `items` with its primary key: the table every iteration alters.
async fn fresh_copy(pool: &PgPool) {
    // Separate statements: VACUUM cannot run in the implicit transaction of a multi-statement
    // string.
    for sql in [
        "DROP TABLE IF EXISTS bench_items",
        "CREATE TABLE bench_items AS SELECT * FROM items",
        "ALTER TABLE bench_items ADD PRIMARY KEY (id)",
        "VACUUM ANALYZE bench_items",
    ] {
        sqlx::raw_sql(sql)
            .execute(pool)
            .await
            .expect("fresh copy of items");
    }
}

fn bench(c: &mut Criterion) {
    let rt = benches::runtime();
    let t = benches::ctx(&rt, "zero-downtime-migrations", Scale::Smoke);
    let pool = t.ctx.pg.clone();
    rt.block_on(async {
        let data = Dataset {
            items: ROWS,
            customers: 2_000,
        };
        schema::create(&pool, data, t.ctx.seed)
            .await
            .expect("seed items");
    });

    let mut group = c.benchmark_group("zero-downtime-migrations/add-column-200k-rows");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_millis(200));
    let mut timings = Vec::new();
    for (name, ddl) in VARIANTS {
        let seen = Arc::new(Mutex::new(Recorder::new()));
        timings.push((name, seen.clone()));
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (pool, seen) = (pool.clone(), seen.clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        fresh_copy(&pool).await;
                        let t0 = Instant::now();
                        sqlx::raw_sql(ddl).execute(&pool).await.expect("ALTER");
                        let took = t0.elapsed();
                        seen.lock().unwrap().record(took);
                        total += took;
                    }
                    total
                }
            })
        });
    }
    group.finish();

    // The ratio a reader would quote, over every iteration criterion ran.
    let p50 = |r: &Arc<Mutex<Recorder>>| r.lock().unwrap().summary(Duration::ZERO);
    let (constant, volatile) = (p50(&timings[0].1), p50(&timings[1].1));
    println!(
        "zero-downtime-migrations: ADD COLUMN on {ROWS} rows: constant default p50 {:.2} ms (n={}), volatile default p50 {:.1} ms (n={})",
        constant.p50_ms, constant.count, volatile.p50_ms, volatile.count
    );
    println!(
        "zero-downtime-migrations: the volatile default is {:.0}x slower — it rewrites the table under ACCESS EXCLUSIVE; the constant one is a catalog change",
        volatile.p50_ms / constant.p50_ms.max(1e-9)
    );

    rt.block_on(async {
        let _ = sqlx::raw_sql("DROP TABLE IF EXISTS bench_items")
            .execute(&pool)
            .await;
        pool.close().await;
        t.finish().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
