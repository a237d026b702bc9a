//! One page of 50 orders at depth d, OFFSET vs keyset, on the smoke-scale table (50,000
//! orders; page 1,000 is the last). The lab run has the default-scale (2,000,000 rows)
//! numbers; this is the single-query comparison under criterion's statistics.
//!
//! `cargo bench -p benches --bench keyset-pagination`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lab_keyset_pagination::filter::Filter;
use lab_keyset_pagination::schema::{self, Dataset};
use lab_keyset_pagination::{PAGE_SIZE, keyset, offset};
use labkit::Scale;

fn page_at_depth(c: &mut Criterion) {
    let rt = benches::runtime();
    let t = benches::ctx(&rt, "keyset-pagination", Scale::Smoke);
    let pool = t.ctx.pg.clone();
    rt.block_on(schema::seed(
        &pool,
        Dataset::for_scale(Scale::Smoke),
        t.ctx.seed,
    ))
    .expect("seed orders");

    let mut group = c.benchmark_group("keyset-pagination/page_at_depth");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for page in [1_i64, 100, 1_000] {
        let skip = (page - 1) * PAGE_SIZE;
        // The cursor a client holds at this depth: the key of the previous page's last row.
        let after = if page == 1 {
            None
        } else {
            rt.block_on(keyset::key_at(&pool, skip - 1)).expect("key")
        };
        group.bench_with_input(BenchmarkId::new("offset", page), &skip, |b, &skip| {
            b.to_async(&rt).iter(|| async {
                black_box(
                    offset::page(&pool, Filter::ALL, PAGE_SIZE, skip)
                        .await
                        .unwrap(),
                )
            })
        });
        group.bench_with_input(BenchmarkId::new("keyset", page), &after, |b, &after| {
            b.to_async(&rt).iter(|| async {
                black_box(
                    keyset::page(&pool, Filter::ALL, after, PAGE_SIZE)
                        .await
                        .unwrap(),
                )
            })
        });
    }
    group.finish();
    drop(pool);
    rt.block_on(t.finish());
}

criterion_group!(benches, page_at_depth);
criterion_main!(benches);
