//! Full-text search: replacing `LIKE '%…%'` scans with trigram and tsvector indexes, and the
//! migration that gets you there.
//!
//! The war story: "we need full-text style search over orders; the current queries use heavy
//! LIKE scans — what is your migration and indexing plan?" The orders search box sends
//! `WHERE description ILIKE '%' || $1 || '%'`. A B-tree cannot serve a pattern with a
//! leading wildcard, so every keystroke reads the whole table. Two indexes can help, and they
//! answer different questions. A pg_trgm GIN index serves the *same* `ILIKE` (and forgives
//! typos through similarity), but not a pattern shorter than three letters, and it keeps
//! substring semantics: "cat" still matches "certificate". Full-text search (`tsvector @@
//! websearch_to_tsquery`, a GIN index, `ts_rank`) matches words and stems — "running" finds
//! "runs" — ranks them, and forgives no typo. Moving from one meaning to the other is a
//! migration: a `search` column filled by a trigger, a batched backfill, `CREATE INDEX
//! CONCURRENTLY`, dual reads behind a flag that count where old and new disagree, then the
//! switch. The lab runs each step while orders keep being written and reports the writers' p99
//! per step — next to the one-statement alternative (`ADD COLUMN … GENERATED … STORED`), which
//! rewrites the table while every write waits.
//!
//! | module | what it holds |
//! |---|---|
//! | [`vocabulary`] | the words order descriptions are made of, most frequent first |
//! | [`orders`] | the table, the server-side Zipf-and-typos seed, the hand-written examples |
//! | [`search`] | the three approaches' queries, the four search terms, the app pool |
//! | [`trigram`] | pg_trgm availability and the trigram GIN index |
//! | [`latency`] | scenario 1: plan, buffers and p50/p95 per approach and term |
//! | [`migration`] | scenario 4: column + trigger, backfill, `CREATE INDEX CONCURRENTLY`, dual read, switch |
//! | [`writers`] | the order traffic during the migration, one histogram per step |
//! | [`dual_read`] | the flag, the shadow comparison, the switch gate |
//! | [`finds`] | scenario 2: what each approach finds (substrings, stems, typos) |
//! | [`expression_rule`] | scenario 3b: which `to_tsvector` expression an index serves |
//! | [`insert_cost`] | scenario 3a: insert rows/s per search index, GIN `fastupdate` on and off |
//! | [`report`] | findings, tables, notes and the sentence |
//! | this file | the run, step by step |

pub mod dual_read;
pub mod expression_rule;
pub mod finds;
pub mod insert_cost;
pub mod latency;
pub mod migration;
pub mod orders;
pub mod report;
pub mod search;
pub mod trigram;
pub mod vocabulary;
pub mod writers;

use std::time::Duration;

use labkit::{Knob, LabCtx, Report};

use crate::search::{Approach, TERMS};

pub use report::FINDING_KEYS;

/// The `full-text-search` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct FullTextSearch;

/// Sizes and load shapes, by scale and knobs.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Seeded orders (the examples come on top).
    pub rows: u64,
    pub search: latency::Shape,
    pub inserts: insert_cost::Shape,
    pub migration: migration::Shape,
    /// Orders copied into the expression-rule table.
    pub rule_rows: i64,
}

impl Shape {
    pub fn new(ctx: &LabCtx) -> Self {
        let s = ctx.scale;
        let clients = ctx.clients(4);
        let duration = ctx.duration(s.pick(
            Duration::from_millis(300),
            Duration::from_secs(1),
            Duration::from_secs(3),
        ));
        let warmup = ctx.warmup(s.pick(
            Duration::from_millis(50),
            Duration::from_millis(200),
            Duration::from_millis(500),
        ));
        Self {
            rows: orders::rows_for(s),
            search: latency::Shape {
                clients,
                duration,
                warmup,
            },
            inserts: insert_cost::Shape {
                bulk_rows: s.pick(1_000, 5_000, 20_000),
                clients,
                duration,
                warmup,
            },
            migration: migration::Shape {
                writers: clients,
                min_step: (duration / 4).max(Duration::from_millis(100)),
                baseline: duration,
                batch: s.pick(2_000, 10_000, 20_000),
                dual_read: duration.mul_f64(1.5),
                after_switch: duration,
            },
            rule_rows: s.pick(5_000, 20_000, 100_000),
        }
    }
}

#[labkit::async_trait]
impl labkit::Lab for FullTextSearch {
    fn id(&self) -> &'static str {
        "full-text-search"
    }

    fn title(&self) -> &'static str {
        "Full-text search: replacing LIKE '%…%' with trigram and tsvector indexes"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(include_str!("../baseline.json"))
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        ctx.ignores(
            Knob::Rate,
            "every load here is a closed loop: searches and inserts measure capacity at \
             --clients, and the migration's writers pace themselves with think time",
        );
        let shape = Shape::new(ctx);

        // 0. pg_trgm where the server has it; without it the trigram parts are skipped.
        let trigram_missing = trigram::install(&ctx.pg).await?.err();

        // 1. The table the search box reads: orders with realistic, skewed descriptions.
        let loaded = orders::load(&ctx.pg, shape.rows, ctx.seed).await?;
        let seeded_max = orders::RESERVED_IDS + shape.rows as i64;
        let heap_before = orders::relation_bytes(&ctx.pg, "orders").await?;
        let app = search::app_pool(ctx, shape.search.clients as u32 + 1).await?;

        // 2. The plan: a tsvector column, migrated while orders keep being written. Then the
        //    writers' orders go and VACUUM FULL compacts the table, so the three approaches
        //    below are measured on the same rows and the same pages.
        let migration = migration::run(ctx, &app, shape.migration, seeded_max).await?;
        let writer_rows_deleted = migration::tidy(&ctx.pg, seeded_max).await?;

        // 3. Today's search: ILIKE '%…%', no index that can serve it.
        let mut searches = latency::measure(&app, Approach::Like, &TERMS, shape.search).await?;

        // 4. Full-text search on the new column.
        searches.extend(latency::measure(&app, Approach::FullText, &TERMS, shape.search).await?);

        // 5. The other candidate: a trigram index serves the very same ILIKE. Built after the
        //    migration so the migration's writers and backfill do not maintain it too.
        let (trigram_index, short_forced) = match trigram_missing {
            None => {
                let built = trigram::build_index(&ctx.pg).await?;
                searches
                    .extend(latency::measure(&app, Approach::Trigram, &TERMS, shape.search).await?);
                // Why the planner skips it for two letters: forced, it scans the whole index.
                let forced = trigram::explain_short_pattern_forced(&ctx.pg).await?;
                (Some(built), Some(forced))
            }
            Some(_) => (None, None),
        };
        app.close().await;
        searches.sort_by_key(|m| (m.approach, m.term.kind));

        // 6. What each one finds: substrings, stems, typos.
        let finds = finds::measure(&ctx.pg, trigram_missing.is_none()).await?;

        // 7. The expression-index rule: which to_tsvector an index serves.
        let rule = expression_rule::measure(&ctx.pg, shape.rule_rows).await?;

        // 8. What each search index costs on inserts.
        let variants: Vec<insert_cost::Variant> = insert_cost::Variant::ALL
            .into_iter()
            .filter(|v| trigram_missing.is_none() || !v.needs_trigram())
            .collect();
        let inserts =
            insert_cost::measure(&ctx.pg, &variants, shape.rows, ctx.seed, shape.inserts).await?;

        let heap_after = orders::relation_bytes(&ctx.pg, "orders").await?;
        let mut report = ctx.report(self.title());
        report::build(
            &mut report,
            &report::Facts {
                shape,
                loaded,
                trigram_missing,
                searches,
                trigram_index,
                short_forced,
                migration,
                writer_rows_deleted,
                finds,
                rule,
                inserts,
                heap_bytes: (heap_before, heap_after),
            },
        );
        Ok(report)
    }
}
