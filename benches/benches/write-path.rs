//! write-path: the same 1,000 rows into an empty `events` table, once per insert method, one
//! connection, on the lab's own Postgres with `fsync = on` (where the backend can start one;
//! otherwise the run's Postgres with its own settings, printed below).
//!
//! Every iteration starts from an empty table (the TRUNCATE is outside the timing), so each
//! measures the same thing. Run with `cargo bench -p benches --bench write-path`. The
//! load-shaped numbers (commit cost under concurrency, pool sizes, the queue) come from
//! `lab run write-path`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::Criterion;
use lab_write_path::insert_methods::{self, Method};
use lab_write_path::schema;
use lab_write_path::target::Target;
use labkit::Scale;

const ROWS: u64 = 1_000;

fn bench(c: &mut Criterion) {
    let rt = benches::runtime();
    let t = benches::ctx(&rt, "write-path", Scale::Smoke);
    let (target, conn) = rt.block_on(async {
        let target = Target::open(&t.ctx).await.expect("the lab's Postgres");
        let conn = target.connect().await.expect("connect");
        (target, Arc::new(tokio::sync::Mutex::new(conn)))
    });
    eprintln!(
        "write-path bench: {} rows per iteration, {}",
        ROWS,
        target.settings_line()
    );
    let rows = Arc::new(schema::generate(t.ctx.seed, 0..ROWS));
    // Every timed iteration, per method, for the summary below.
    let times: Arc<Mutex<BTreeMap<&'static str, Vec<Duration>>>> = Arc::default();

    let mut group = c.benchmark_group("write-path/insert-1000-rows");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    for method in Method::ALL {
        group.bench_function(method.key(), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (conn, rows, times) = (conn.clone(), rows.clone(), times.clone());
                async move {
                    let mut conn = conn.lock().await;
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        schema::reset(&mut *conn).await.expect("truncate");
                        let t0 = Instant::now();
                        insert_methods::insert(&mut conn, method, &rows)
                            .await
                            .expect("insert");
                        let took = t0.elapsed();
                        total += took;
                        times
                            .lock()
                            .unwrap()
                            .entry(method.key())
                            .or_default()
                            .push(took);
                    }
                    total
                }
            })
        });
    }
    group.finish();

    let median = |key: &str| {
        let mut v = times.lock().unwrap().get(key).cloned().unwrap_or_default();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let (single, copy, unnest, values) = (
        median("single_row"),
        median("copy_binary"),
        median("unnest"),
        median("multi_values"),
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "write-path: 1,000 rows — one INSERT per commit {:.1} ms, COPY binary {:.2} ms: {:.0}x faster",
        ms(single),
        ms(copy),
        single.as_secs_f64() / copy.as_secs_f64().max(1e-9)
    );
    println!(
        "write-path: 1,000 rows in one statement — UNNEST {:.2} ms, multi-row VALUES {:.2} ms ({})",
        ms(unnest),
        ms(values),
        target.settings_line()
    );

    rt.block_on(async {
        drop(conn);
        drop(target);
        t.finish().await;
    });
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
