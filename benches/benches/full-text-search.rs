//! full-text-search: one search-box query for the rare term ('quinira', a few dozen of
//! 200,000 orders), first page, one client — per approach: `@@ websearch_to_tsquery` on the
//! tsvector column's GIN index (ranked), the app's `ILIKE '%…%'` on a pg_trgm GIN index, and
//! the same `ILIKE` with no index.
//!
//! Data: the lab's default scale (200,000 orders) after its migration — `search` column
//! added, backfilled and indexed, the table compacted — plus the trigram index, seeded once
//! into the bench database and copied per run. The `ILIKE` with no index is timed last,
//! after dropping the trigram index in this run's copy (once it exists, the planner uses it
//! for the `ILIKE`). Searches only read, so every iteration measures the same thing.
//!
//! Run with `cargo bench -p benches --bench full-text-search`. The load-shaped numbers (p95
//! under several clients, every term, the migration) come from `lab run full-text-search`.

use std::time::Duration;

use benches::Bench;
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use lab_full_text_search::search::{self, Approach};
use lab_full_text_search::{migration, orders, trigram};
use labkit::{LabCtx, Scale};

/// Bump when the seed below changes: the bench database is rebuilt.
const DATA_VERSION: u32 = 1;
const GROUP: &str = "full-text-search/rare-term-first-page";

fn bench(c: &mut Criterion) {
    let scale = benches::scale(Scale::Default);
    let rows = orders::rows_for(scale);
    let b = Bench::cached(
        "full-text-search",
        scale,
        DATA_VERSION,
        async |ctx: &LabCtx| {
            if let Err(why) = trigram::install(&ctx.pg).await? {
                anyhow::bail!("this bench needs pg_trgm: {why}");
            }
            orders::load(&ctx.pg, rows, ctx.seed).await?;
            let last = migration::add_column(&ctx.pg).await?;
            migration::backfill(&ctx.pg, last, 10_000).await?;
            migration::build_index(&ctx.pg).await?;
            migration::tidy(&ctx.pg, orders::RESERVED_IDS + rows as i64).await?;
            trigram::build_index(&ctx.pg).await?;
            Ok(())
        },
    );
    let app = b.block_on(search::app_pool(b.ctx(), 1)).expect("app pool");

    let mut group = c.benchmark_group(GROUP);
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for approach in [Approach::FullText, Approach::Trigram, Approach::Like] {
        if approach == Approach::Like {
            b.block_on(sqlx::query("DROP INDEX orders_description_trgm_idx").execute(&b.ctx().pg))
                .expect("drop the trigram index");
            // A sequential scan per iteration: flat sampling keeps the run short.
            group.sampling_mode(SamplingMode::Flat);
        }
        group.bench_function(approach.key(), |bench| {
            bench.to_async(&b.rt).iter(|| async {
                search::search(&app, approach, search::RARE)
                    .await
                    .expect("search")
            })
        });
    }
    group.finish();

    let mut s = b.summary(
        GROUP,
        format!(
            "{rows} orders ({scale} scale), the rare term '{}', first page of 20",
            search::RARE.text
        ),
    );
    for a in Approach::ALL {
        s = s.label(a.key(), a.label());
    }
    s.faster(
        "full-text (tsvector GIN) vs ILIKE with no index",
        "per search",
        "fts",
        "like",
    )
    .faster(
        "trigram GIN vs ILIKE with no index — the same query, no code change",
        "per search",
        "trgm",
        "like",
    )
    .when(&["fts", "trgm"], |e| {
        format!(
            "both indexes turn a scan of every row into a lookup: full-text {}, trigram {}",
            e[0], e[1]
        )
    })
    .finish();

    b.block_on(app.close());
    b.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
