//! Offset pagination: `LIMIT 50 OFFSET (page - 1) * 50`.
//!
//! Simple, and it lets a client jump to page N. The cost is in the word OFFSET: Postgres
//! cannot jump to row 500,000 of an ordering, it produces the first 500,000 rows (walking
//! the index and the heap behind it) and throws them away. Page N costs O(N). And a page
//! number is a position in a moving list: one row inserted at the head pushes every later
//! row one slot down, so the next page repeats a row (a delete skips one).

use sqlx::PgPool;

use crate::filter::{Filter, PerFilter, bind_filter};
use crate::schema::Order;

/// `$1` limit, `$2` offset, then the filter's values (tenant first, then status).
const PAGE: PerFilter = PerFilter {
    all: "SELECT id, tenant_id, status, created_at, total_cents, sku
          FROM orders
          ORDER BY created_at DESC, id DESC
          LIMIT $1 OFFSET $2",
    by_status: "SELECT id, tenant_id, status, created_at, total_cents, sku
                FROM orders
                WHERE status = $3
                ORDER BY created_at DESC, id DESC
                LIMIT $1 OFFSET $2",
    by_tenant: "SELECT id, tenant_id, status, created_at, total_cents, sku
                FROM orders
                WHERE tenant_id = $3
                ORDER BY created_at DESC, id DESC
                LIMIT $1 OFFSET $2",
    by_tenant_status: "SELECT id, tenant_id, status, created_at, total_cents, sku
                       FROM orders
                       WHERE tenant_id = $3 AND status = $4
                       ORDER BY created_at DESC, id DESC
                       LIMIT $1 OFFSET $2",
};

/// Rows `offset + 1 ..= offset + limit` of `filter`'s listing.
pub async fn page(
    pool: &PgPool,
    filter: Filter,
    limit: i64,
    offset: i64,
) -> Result<Vec<Order>, sqlx::Error> {
    let q = sqlx::query_as::<_, Order>(filter.sql(&PAGE))
        .bind(limit)
        .bind(offset);
    bind_filter!(q, filter).fetch_all(pool).await
}

/// The SQL `page` runs for `filter` (for EXPLAIN in the lab and the tests).
pub fn sql(filter: Filter) -> &'static str {
    filter.sql(&PAGE)
}
