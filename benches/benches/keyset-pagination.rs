//! keyset-pagination: one page of 50 orders at depth d, OFFSET vs keyset, one client.
//!
//! Data: the lab's default scale (2,000,000 orders, vacuumed and analysed, as the lab seeds
//! them), seeded once into the bench database and copied per run. Pages 1, 1,000 and the
//! last (40,000): OFFSET reads and throws away every row before the page, keyset seeks to
//! the cursor (the key of the previous page's last row). Reads only, so every iteration
//! measures the same thing.
//!
//! Run with `cargo bench -p benches --bench keyset-pagination`. The walk, drift, ties and
//! the API under load come from `lab run keyset-pagination`.

use std::hint::black_box;
use std::time::Duration;

use benches::Bench;
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use lab_keyset_pagination::filter::Filter;
use lab_keyset_pagination::schema::{self, Dataset};
use lab_keyset_pagination::{PAGE_SIZE, keyset, offset};
use labkit::{LabCtx, Scale};

/// Bump when the seed below (or the lab's `schema::seed`) changes: the bench database is
/// rebuilt.
const DATA_VERSION: u32 = 1;
const GROUP: &str = "keyset-pagination/page-at-depth";

fn page_at_depth(c: &mut Criterion) {
    let scale = benches::scale(Scale::Default);
    let data = Dataset::for_scale(scale);
    let b = Bench::cached(
        "keyset-pagination",
        scale,
        DATA_VERSION,
        async |ctx: &LabCtx| {
            schema::seed(&ctx.pg, data, ctx.seed).await?;
            Ok(())
        },
    );
    let pool = b.ctx().pg.clone();
    let rows = data.rows as i64;
    let last = (rows + PAGE_SIZE - 1) / PAGE_SIZE;
    let pages: Vec<i64> = [1, 1_000]
        .into_iter()
        .filter(|&p| p < last)
        .chain([last])
        .collect();

    let mut group = c.benchmark_group(GROUP);
    for &page in &pages {
        let skip = (page - 1) * PAGE_SIZE;
        // The cursor a client holds at this depth: the key of the previous page's last row.
        let after = if page == 1 {
            None
        } else {
            b.block_on(keyset::key_at(&pool, skip - 1)).expect("key")
        };
        // A deep OFFSET reads the table up to the page: ten flat samples.
        let slow = page == last && scale != Scale::Smoke;
        group
            .sampling_mode(if slow {
                SamplingMode::Flat
            } else {
                SamplingMode::Auto
            })
            .sample_size(if slow { 10 } else { 20 })
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(if slow { 6 } else { 3 }));
        group.bench_with_input(BenchmarkId::new("offset", page), &skip, |bench, &skip| {
            bench.to_async(&b.rt).iter(|| async {
                black_box(
                    offset::page(&pool, Filter::ALL, PAGE_SIZE, skip)
                        .await
                        .expect("offset page"),
                )
            })
        });
        group
            .sampling_mode(SamplingMode::Auto)
            .sample_size(20)
            .measurement_time(Duration::from_secs(3));
        group.bench_with_input(BenchmarkId::new("keyset", page), &after, |bench, &after| {
            bench.to_async(&b.rt).iter(|| async {
                black_box(
                    keyset::page(&pool, Filter::ALL, after, PAGE_SIZE)
                        .await
                        .expect("keyset page"),
                )
            })
        });
    }
    group.finish();

    let mut s = b.summary(
        GROUP,
        format!("{rows} orders ({scale} scale), pages of {PAGE_SIZE}, the last is page {last}"),
    );
    for &page in &pages {
        s = s
            .label(&format!("offset/{page}"), &format!("OFFSET, page {page}"))
            .label(
                &format!("keyset/{page}"),
                &format!("keyset (seek), page {page}"),
            );
    }
    let (first, deep) = (format!("offset/{}", pages[0]), format!("offset/{last}"));
    let (k_first, k_deep) = (format!("keyset/{}", pages[0]), format!("keyset/{last}"));
    s.faster(
        &format!("keyset vs OFFSET on the last page ({last})"),
        "per page",
        &k_deep,
        &deep,
    )
    .when(&[&deep, &first], |e| {
        format!(
            "OFFSET grows with depth: the last page costs {} vs {} for page 1 ({:.0}×)",
            e[0],
            e[1],
            e[0].ns / e[1].ns
        )
    })
    .when(&[&k_deep, &k_first], |e| {
        format!(
            "keyset stays flat: the last page costs {} vs {} for page 1 ({:.2}×)",
            e[0],
            e[1],
            e[0].ns / e[1].ns
        )
    })
    .finish();

    drop(pool);
    b.finish();
}

criterion_group!(benches, page_at_depth);
criterion_main!(benches);
