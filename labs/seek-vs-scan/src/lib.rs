//! Composite index seek vs scan: column order, INCLUDE and VACUUM.
//!
//! The war story: the invoices page — "invoices for one tenant, last 7 days", `WHERE
//! tenant_id = $1 AND created_at >= now() - interval '7 days' ORDER BY created_at DESC` —
//! got slow as the table grew. Someone added an index on `(created_at, tenant_id)` and it
//! helped a little; someone else added `(tenant_id)` and the biggest customer's page got
//! *slower*. The fix is one index with the columns in the right order: equality first
//! (`tenant_id`), range second (`created_at DESC`), so the scan starts at (tenant, newest)
//! and stops at the edge of the window, already sorted. `INCLUDE (id, amount_cents)` lets it
//! answer from the index alone — but only once VACUUM has marked the pages all-visible;
//! right after a load every row is still checked in the heap.
//!
//! The lab seeds a skewed, time-ordered `invoices` table, then measures each index variant
//! alone on the same query: the plan node, buffers, rows examined vs returned for the
//! biggest tenant and a typical long-tail one, and p50/p95/p99 under a closed-loop load
//! whose tenants are drawn like the data. It also shows the planner ignoring a `status`
//! index for the common value (and why that is right), and what 0, 1, 3 and 6 indexes cost
//! on inserts.
//!
//! | module | what it holds |
//! |---|---|
//! | [`schema`] | the `invoices` table, the seed, the big and the long-tail tenant |
//! | [`query`] | the story's query, the app pool, EXPLAIN of it |
//! | [`variants`] | the index variants, one at a time; VACUUM for the last |
//! | [`load`] | tenants drawn like the data, the load shape (knobs), the closed-loop load |
//! | [`status_index`] | the low-selectivity index the planner rightly ignores |
//! | [`write_cost`] | insert rows/s with 0, 1, 3 and 6 indexes |
//! | [`report`] | findings, tables, notes and the sentence, from what the run measured |
//! | this file | the run, step by step |

pub mod load;
pub mod query;
pub mod report;
pub mod schema;
pub mod status_index;
pub mod variants;
pub mod write_cost;

use std::sync::Arc;

use labkit::explain::Plan;
use labkit::{Knob, LabCtx, LatencySummary, Report};

use crate::load::LoadShape;
use crate::schema::{Dataset, Tenants};
use crate::variants::Variant;

/// Every finding key a run reports (users' scripts parse them).
pub const FINDING_KEYS: &[&str] = &[
    "seed_rows_per_s",
    "rows",
    "tenants",
    "big_tenant_rows",
    "seq_scan_p95_ms",
    "wrong_order_p95_ms",
    "tenant_only_p95_ms",
    "composite_p95_ms",
    "covering_before_vacuum_p95_ms",
    "covering_p95_ms",
    "covering_p50_ms",
    "covering_p99_ms",
    "speedup_covering_vs_seq_p95",
    "speedup_composite_vs_wrong_order_p95",
    "buffers_seq_scan",
    "buffers_wrong_order",
    "buffers_tenant_only",
    "buffers_composite",
    "buffers_covering_before_vacuum",
    "buffers_covering",
    "covering_heap_fetches_before_vacuum",
    "covering_heap_fetches_after_vacuum",
    "covering_big_tenant_index_only_before_vacuum",
    "status_index_chosen_for_common_value",
    "status_index_chosen_for_rare_value",
    "status_common_planner_ms",
    "status_common_forced_index_ms",
    "insert_rows_per_s_0_idx",
    "insert_rows_per_s_1_idx",
    "insert_rows_per_s_3_idx",
    "insert_rows_per_s_6_idx",
    "insert_slowdown_6_vs_0_idx",
];

/// Rounds of the write-cost measurement; each index count reports its median round.
pub const WRITE_ROUNDS: usize = 3;

/// The `seek-vs-scan` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeekVsScan;

/// One variant, measured: its plans for both tenants and its latency under load.
#[derive(Debug, Clone)]
pub struct Measured {
    pub variant: Variant,
    pub big: Plan,
    pub long_tail: Plan,
    pub load: LatencySummary,
    pub setup: variants::Applied,
}

#[labkit::async_trait]
impl labkit::Lab for SeekVsScan {
    fn id(&self) -> &'static str {
        "seek-vs-scan"
    }

    fn title(&self) -> &'static str {
        "Composite index seek vs scan: column order, INCLUDE and VACUUM"
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
            "each variant's latency is measured at a fixed concurrency (closed loop, \
             --clients); an arrival rate that suits the covering index would bury the seq scan",
        );
        let data = Dataset::for_scale(ctx.scale);
        let shape = LoadShape::from_ctx(ctx);

        // 1. The table, loaded the way a bulk load is: rows, then primary key, then ANALYZE.
        let loaded = schema::load(&ctx.pg, data, ctx.seed).await?;
        let tenants = schema::pick_tenants(&ctx.pg).await?;

        // 2. The app's pool (one connection per client) and the traffic mix.
        let app = query::app_pool(ctx, shape.clients as u32).await?;
        let mix = load::tenant_mix(&app, shape.mix, ctx.seed, data.rows).await?;
        anyhow::ensure!(!mix.is_empty(), "the tenant mix came back empty");
        let mix = Arc::new(mix);

        // 3. Each index variant alone, in order (VACUUM comes last).
        let mut measured = Vec::new();
        for variant in Variant::ALL {
            measured.push(measure_variant(ctx, &app, variant, &tenants, mix.clone(), shape).await?);
        }
        variants::apply(&ctx.pg, Variant::NoIndex).await?;
        app.close().await;

        // 4. The status index the planner should ignore for `paid`.
        let status = status_index::measure(&ctx.pg).await?;
        status_index::drop_index(&ctx.pg).await?;

        // 5. The write cost of indexes.
        let write_rows = ctx.scale.pick(5_000, 50_000, 500_000);
        let inserts =
            write_cost::measure(&ctx.pg, data, write_rows, WRITE_ROUNDS, ctx.seed).await?;

        let mut report = ctx.report(self.title());
        report::write(
            &mut report,
            &report::Facts {
                data,
                loaded,
                tenants,
                shape,
                measured,
                status,
                inserts,
                write_rows,
            },
        );
        Ok(report)
    }
}

/// Set up one variant, warm it, EXPLAIN it for both tenants and put it under load (the
/// phase is named by the variant's key).
pub async fn measure_variant(
    ctx: &LabCtx,
    app: &sqlx::PgPool,
    variant: Variant,
    tenants: &Tenants,
    mix: Arc<Vec<i64>>,
    shape: LoadShape,
) -> anyhow::Result<Measured> {
    let setup = variants::apply(&ctx.pg, variant).await?;
    // One run per tenant first: the EXPLAIN shows the warm state the load then runs in.
    query::recent_invoices(app, tenants.big.tenant_id).await?;
    query::recent_invoices(app, tenants.long_tail.tenant_id).await?;
    let big = query::explain_recent(app, tenants.big.tenant_id).await?;
    let long_tail = query::explain_recent(app, tenants.long_tail.tenant_id).await?;
    let load = load::phase(app, mix, shape, variant.key()).await;
    if let Some(e) = load.first_error {
        anyhow::bail!("the load on {} failed: {e}", variant.label());
    }
    Ok(Measured {
        variant,
        big,
        long_tail,
        load: load.summary,
        setup,
    })
}
