//! The one query of the story — "invoices for one tenant, last 7 days" — and how the app
//! runs and EXPLAINs it.

use chrono::{DateTime, Utc};
use labkit::LabCtx;
use labkit::explain::Plan;
use sqlx::PgPool;

use crate::schema::reference_now;

/// In production this reads `created_at >= now() - interval '7 days'`; here `$2` is the
/// fixed [`reference_now`] so the window is the same on every run. The select list is
/// what a list page shows (id, date, amount): exactly what the covering index carries.
pub const RECENT_INVOICES: &str = "\
SELECT id, created_at, amount_cents
FROM invoices
WHERE tenant_id = $1
  AND created_at >= $2::timestamptz - interval '7 days'
ORDER BY created_at DESC";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecentInvoice {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub amount_cents: i64,
}

/// Run the query the way the app does: fetch and decode every row.
pub async fn recent_invoices(
    pool: &PgPool,
    tenant_id: i64,
) -> Result<Vec<RecentInvoice>, sqlx::Error> {
    sqlx::query_as(RECENT_INVOICES)
        .bind(tenant_id)
        .bind(reference_now())
        .fetch_all(pool)
        .await
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of the same query for one tenant.
pub async fn explain_recent(pool: &PgPool, tenant_id: i64) -> Result<Plan, sqlx::Error> {
    labkit::explain::analyze(pool, RECENT_INVOICES, |q| {
        q.bind(tenant_id).bind(reference_now())
    })
    .await
}

/// The pool the app (and the load) uses: `connections` open from the start, so the first
/// requests of a phase do not pay for connecting.
///
/// `plan_cache_mode = force_custom_plan`: sqlx prepares every statement, and after five
/// executions Postgres may switch a prepared statement to one *generic* plan for all
/// tenants — a real effect with its own war story, but here it would make the load
/// measure a different plan from the one the EXPLAIN row shows. Turned down: turning off
/// sqlx's statement cache, which would also re-parse every query.
///
/// `labkit::pool_options` also turns off sqlx's `test_before_acquire`: a ping before every
/// query, which on a 0.2 ms index-only scan made the lab's p50 1.4–1.5× pgbench's on the
/// same query — the harness measuring itself.
pub async fn app_pool(ctx: &LabCtx, connections: u32) -> Result<PgPool, sqlx::Error> {
    ctx.new_pool_with(
        labkit::pool_options(connections).min_connections(connections),
        ctx.connect_options()
            .options([("plan_cache_mode", "force_custom_plan")]),
    )
    .await
}
