//! write-path: the same 1,000 rows into an empty `events` table, once per insert method, one
//! connection, on the lab's own Postgres with `fsync = on` (where the backend can start one;
//! otherwise the run's Postgres with its own settings, printed below).
//!
//! Every iteration starts from an empty table (the TRUNCATE is outside the timing), so each
//! measures the same thing. Run with `cargo bench -p benches --bench write-path`. The
//! load-shaped numbers (commit cost under concurrency, pool sizes, the queue) come from
//! `lab run write-path`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::Bench;
use criterion::Criterion;
use lab_write_path::insert_methods::{self, Method};
use lab_write_path::schema;
use lab_write_path::target::Target;
use labkit::Scale;

const ROWS: u64 = 1_000;
const GROUP: &str = "write-path/insert-1000-rows";

fn bench(c: &mut Criterion) {
    let b = Bench::throwaway("write-path", Scale::Smoke);
    let (target, conn) = b.block_on(async {
        let target = Target::open(b.ctx()).await.expect("the lab's Postgres");
        let conn = target.connect().await.expect("connect");
        (target, Arc::new(tokio::sync::Mutex::new(conn)))
    });
    eprintln!(
        "write-path bench: {} rows per iteration, {}",
        ROWS,
        target.settings_line()
    );
    let rows = Arc::new(schema::generate(b.ctx().seed, 0..ROWS));

    let mut group = c.benchmark_group(GROUP);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    for method in Method::ALL {
        group.bench_function(method.key(), |bench| {
            bench.to_async(&b.rt).iter_custom(|iters| {
                let (conn, rows) = (conn.clone(), rows.clone());
                async move {
                    let mut conn = conn.lock().await;
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        schema::reset(&mut *conn).await.expect("truncate");
                        let t0 = Instant::now();
                        insert_methods::insert(&mut conn, method, &rows)
                            .await
                            .expect("insert");
                        total += t0.elapsed();
                    }
                    total
                }
            })
        });
    }
    group.finish();

    let mut s = b.summary(
        GROUP,
        format!(
            "{ROWS} rows into an empty table, one connection; {}",
            target.settings_line()
        ),
    );
    for m in Method::ALL {
        s = s.label(m.key(), m.label());
    }
    s.faster(
        "COPY binary vs one INSERT per commit",
        "per 1,000 rows",
        "copy_binary",
        "single_row",
    )
    .faster(
        "one COMMIT per 1,000 rows vs one per row — the same INSERTs",
        "per 1,000 rows",
        "tx_1000",
        "single_row",
    )
    .when(&["unnest", "multi_values"], |e| {
        format!(
            "1,000 rows in one statement: UNNEST {} vs multi-row VALUES {} ({:.2}×)",
            e[0],
            e[1],
            e[1].ns / e[0].ns
        )
    })
    .finish();

    drop(conn);
    drop(target);
    b.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
