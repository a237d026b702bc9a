//! "Page 3 of 41,213": the exact total an offset UI shows, and the estimate a keyset API
//! offers instead.
//!
//! `COUNT(*)` under MVCC has no shortcut: every row's visibility is checked, so it reads the
//! whole table (or a whole index) on every request. The planner already keeps an estimate
//! (`reltuples`, scaled to the table's current size, times the filter's selectivity from
//! `pg_statistic`); `EXPLAIN` reads it in well under a millisecond. It is as fresh as the
//! last ANALYZE, which is fine for "about 2 million orders".

use sqlx::PgPool;

use crate::filter::{Filter, PerFilter, bind_filter};

/// Filter values are `$1` (tenant) and `$2` (status), as in every [`PerFilter`] statement.
const EXACT: PerFilter = PerFilter {
    all: "SELECT count(*) FROM orders",
    by_status: "SELECT count(*) FROM orders WHERE status = $1",
    by_tenant: "SELECT count(*) FROM orders WHERE tenant_id = $1",
    by_tenant_status: "SELECT count(*) FROM orders WHERE tenant_id = $1 AND status = $2",
};

const ESTIMATE: PerFilter = PerFilter {
    all: "EXPLAIN (FORMAT JSON) SELECT 1 FROM orders",
    by_status: "EXPLAIN (FORMAT JSON) SELECT 1 FROM orders WHERE status = $1",
    by_tenant: "EXPLAIN (FORMAT JSON) SELECT 1 FROM orders WHERE tenant_id = $1",
    by_tenant_status: "EXPLAIN (FORMAT JSON) SELECT 1 FROM orders WHERE tenant_id = $1 AND status = $2",
};

/// The exact number of rows `filter` matches.
pub async fn exact(pool: &PgPool, filter: Filter) -> Result<i64, sqlx::Error> {
    let q = sqlx::query_scalar::<_, i64>(filter.sql(&EXACT));
    bind_filter!(q, filter).fetch_one(pool).await
}

/// The planner's estimate of the same number ("Plan Rows" of the top plan node).
pub async fn estimate(pool: &PgPool, filter: Filter) -> Result<i64, sqlx::Error> {
    let q = sqlx::query_scalar::<_, serde_json::Value>(filter.sql(&ESTIMATE));
    let plan = bind_filter!(q, filter).fetch_one(pool).await?;
    plan.get(0)
        .and_then(|p| p.get("Plan"))
        .and_then(|p| p.get("Plan Rows"))
        .and_then(serde_json::Value::as_f64)
        .map(|rows| rows.round() as i64)
        .ok_or_else(|| sqlx::Error::Protocol("EXPLAIN returned no Plan Rows".into()))
}
