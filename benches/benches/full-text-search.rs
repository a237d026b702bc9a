//! full-text-search: one search box query for the rare term ('quinira', a few dozen of
//! 200,000 orders), first page, one client — per approach: `ILIKE '%…%'` with no index,
//! `@@ websearch_to_tsquery` on the tsvector column's GIN index (ranked), and the same `ILIKE`
//! on a pg_trgm GIN index.
//!
//! The table is seeded once per bench run at the lab's default scale, with its `search`
//! column added, backfilled and indexed (no writers), then compacted. The trigram index is
//! built last: once it exists, the planner uses it for the `ILIKE`. Searches only read, so
//! every iteration measures the same thing.
//!
//! Run with `cargo bench -p benches --bench full-text-search`. The load-shaped numbers (p95
//! under several clients, every term, the migration) come from `lab run full-text-search`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lab_full_text_search::search::{self, Approach};
use lab_full_text_search::{migration, orders, trigram};
use labkit::Scale;

fn bench(c: &mut Criterion) {
    let rt = benches::runtime();
    let t = benches::ctx(&rt, "full-text-search", Scale::Default);
    let rows = orders::rows_for(Scale::Default);
    let app = rt.block_on(async {
        if let Err(why) = trigram::install(&t.ctx.pg).await.expect("extensions") {
            panic!("this bench needs pg_trgm: {why}");
        }
        orders::load(&t.ctx.pg, rows, t.ctx.seed)
            .await
            .expect("seed");
        let last = migration::add_column(&t.ctx.pg).await.expect("column");
        migration::backfill(&t.ctx.pg, last, 10_000)
            .await
            .expect("backfill");
        migration::build_index(&t.ctx.pg).await.expect("index");
        migration::tidy(&t.ctx.pg, orders::RESERVED_IDS + rows as i64)
            .await
            .expect("vacuum");
        search::app_pool(&t.ctx, 1).await.expect("app pool")
    });

    let mut group = c.benchmark_group("full-text-search/rare-term-first-page");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    let mut p50 = Vec::new();
    for approach in [Approach::Like, Approach::FullText, Approach::Trigram] {
        if approach == Approach::Trigram {
            rt.block_on(trigram::build_index(&t.ctx.pg))
                .expect("trigram index");
        }
        group.bench_function(approach.key(), |b| {
            b.to_async(&rt).iter(|| async {
                search::search(&app, approach, search::RARE)
                    .await
                    .expect("search")
            })
        });
        // The same search, timed for the summary line (criterion keeps its numbers to itself).
        let summary = rt.block_on(labkit::measure::sequential(20, |_| {
            search::search(&app, approach, search::RARE)
        }));
        p50.push((approach, summary.p50_ms));
    }
    group.finish();

    let ms = |a: Approach| {
        p50.iter()
            .find(|(x, _)| *x == a)
            .map_or(f64::NAN, |(_, v)| *v)
    };
    println!(
        "full-text-search: '{}' on {rows} orders, one client, p50 — ILIKE no index {:.2} ms, \
         full-text {:.2} ms, trigram {:.2} ms",
        search::RARE.text,
        ms(Approach::Like),
        ms(Approach::FullText),
        ms(Approach::Trigram)
    );
    println!(
        "full-text-search: the index turns a scan into a lookup — ILIKE ÷ full-text = {:.0}×, \
         ILIKE ÷ trigram = {:.0}×",
        ms(Approach::Like) / ms(Approach::FullText),
        ms(Approach::Like) / ms(Approach::Trigram)
    );

    rt.block_on(async {
        app.close().await;
        t.finish().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
