//! zero-downtime-migrations: one `ALTER TABLE … ADD COLUMN` on a 200,000-row copy of
//! `items` (with its primary key), with a constant default (metadata only since PostgreSQL
//! 11) vs a volatile one (`clock_timestamp()`: every row rewritten, indexes rebuilt, under
//! ACCESS EXCLUSIVE). Every iteration gets a fresh copy, made outside the timed part, so each
//! one measures the same ALTER on the same table.
//!
//! Run with `cargo bench -p benches --bench zero-downtime-migrations`. What the app sees
//! while it runs (the write stall, the errors) comes from `lab run zero-downtime-migrations`.

use std::time::Duration;

use benches::Bench;
use benches::iters::each_after;
use criterion::{Criterion, criterion_group, criterion_main};
use lab_zero_downtime_migrations::schema::{self, Dataset};
use labkit::Scale;
use sqlx::PgPool;

/// A fifth of the lab's default `items` (1,000,000), to keep the per-iteration copy short:
/// the same two operations (a catalog change vs a full rewrite). The rewrite grows with the
/// table and the catalog change does not, so at the lab's size the ratio is larger still.
const ROWS: u64 = 200_000;
const GROUP: &str = "zero-downtime-migrations/add-column-200k-rows";

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
    let b = Bench::throwaway("zero-downtime-migrations", Scale::Smoke);
    let pool = b.ctx().pg.clone();
    b.block_on(async {
        let data = Dataset {
            items: ROWS,
            customers: 2_000,
        };
        schema::create(&pool, data, b.ctx().seed)
            .await
            .expect("seed items");
    });

    let mut group = c.benchmark_group(GROUP);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_millis(200));
    for (name, ddl) in VARIANTS {
        group.bench_function(name, |bench| {
            bench.to_async(&b.rt).iter_custom(|iters| {
                let pool = &pool;
                let copy = async move |_| fresh_copy(pool).await;
                let alter = async move |_| {
                    sqlx::raw_sql(ddl).execute(pool).await.expect("ALTER");
                };
                async move { each_after(iters, &copy, &alter).await }
            })
        });
    }
    group.finish();

    b.summary(
        GROUP,
        format!("a fresh, vacuumed {ROWS}-row copy of items with its primary key per iteration"),
    )
    .label(
        "constant-default",
        "ADD COLUMN … DEFAULT 'eu' (catalog only since PostgreSQL 11)",
    )
    .label(
        "volatile-default",
        "ADD COLUMN … DEFAULT clock_timestamp() (rewrites every row)",
    )
    .when(&["volatile-default", "constant-default"], |e| {
        format!(
            "the volatile default takes {} vs {} for the constant one: {:.0}× slower — it \
             rewrites the table under ACCESS EXCLUSIVE, the constant one is a catalog change",
            e[0],
            e[1],
            e[0].ns / e[1].ns
        )
    })
    .finish();

    b.block_on(async {
        let _ = sqlx::raw_sql("DROP TABLE IF EXISTS bench_items")
            .execute(&pool)
            .await;
        pool.close().await;
    });
    b.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
