//! Keyset (cursor) pagination: "the 50 rows after the last one you saw".
//!
//! The position is a row's sort key, not a row count: `WHERE (created_at, id) < ($1, $2)`
//! on an index ordered `(created_at DESC, id DESC)` is one descent of the B-tree to that key
//! and a read of the next 50 entries, at page 1 or page 40,000 alike. Rows inserted at the
//! head are newer than the key, so they never shift a page; a deleted row simply is not
//! there. What it gives up: jumping to page N, and an exact total for free.
//!
//! The key must be unique. [`naive_page`] keys on `created_at` alone, and every page
//! boundary that falls inside a group of orders sharing a second loses the rest of the group.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::filter::{Filter, PerFilter, bind_filter};
use crate::schema::Order;

/// A position in the `(created_at DESC, id DESC)` order. `id` breaks ties, so the order is
/// total and a key names exactly one slot. `Ord` compares `created_at`, then `id` — the
/// same comparison as SQL's `(created_at, id) < ($1, $2)`; the API lists keys descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::FromRow)]
pub struct SortKey {
    pub created_at: DateTime<Utc>,
    pub id: i64,
}

impl Order {
    pub fn sort_key(&self) -> SortKey {
        SortKey {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// `$1, $2` the last key served, `$3` limit, then the filter's values (tenant, status).
/// The row comparison `(created_at, id) < ($1, $2)` is one B-tree bound; spelled out as
/// `created_at < $1 OR (created_at = $1 AND id < $2)` Postgres cannot use it to seek.
const AFTER: PerFilter = PerFilter {
    all: "SELECT id, tenant_id, status, created_at, total_cents, sku
          FROM orders
          WHERE (created_at, id) < ($1, $2)
          ORDER BY created_at DESC, id DESC
          LIMIT $3",
    by_status: "SELECT id, tenant_id, status, created_at, total_cents, sku
                FROM orders
                WHERE status = $4 AND (created_at, id) < ($1, $2)
                ORDER BY created_at DESC, id DESC
                LIMIT $3",
    by_tenant: "SELECT id, tenant_id, status, created_at, total_cents, sku
                FROM orders
                WHERE tenant_id = $4 AND (created_at, id) < ($1, $2)
                ORDER BY created_at DESC, id DESC
                LIMIT $3",
    by_tenant_status: "SELECT id, tenant_id, status, created_at, total_cents, sku
                       FROM orders
                       WHERE tenant_id = $4 AND status = $5 AND (created_at, id) < ($1, $2)
                       ORDER BY created_at DESC, id DESC
                       LIMIT $3",
};

/// The `limit` rows of `filter`'s listing after `after` (from the top when `None`: the
/// first page is the same statement as offset page 1).
pub async fn page(
    pool: &PgPool,
    filter: Filter,
    after: Option<SortKey>,
    limit: i64,
) -> Result<Vec<Order>, sqlx::Error> {
    let Some(after) = after else {
        return crate::offset::page(pool, filter, limit, 0).await;
    };
    let q = sqlx::query_as::<_, Order>(filter.sql(&AFTER))
        .bind(after.created_at)
        .bind(after.id)
        .bind(limit);
    bind_filter!(q, filter).fetch_all(pool).await
}

/// The SQL `page` runs after a key, for `filter` (for EXPLAIN in the lab and the tests).
pub fn sql(filter: Filter) -> &'static str {
    filter.sql(&AFTER)
}

/// The naive cursor: `created_at` alone. Kept to show what it loses; the API never uses it.
/// `created_at < $1` skips the rest of a tie group cut by the page boundary; `<=` would
/// repeat the served part instead, and loop forever once a group is larger than a page.
pub const NAIVE_AFTER: &str = "SELECT id, tenant_id, status, created_at, total_cents, sku
                               FROM orders
                               WHERE created_at < $1
                               ORDER BY created_at DESC
                               LIMIT $2";

/// One page of the naive `created_at`-only keyset walk.
pub async fn naive_page(
    pool: &PgPool,
    after: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Vec<Order>, sqlx::Error> {
    match after {
        None => crate::offset::page(pool, Filter::ALL, limit, 0).await,
        Some(t) => {
            sqlx::query_as::<_, Order>(NAIVE_AFTER)
                .bind(t)
                .bind(limit)
                .fetch_all(pool)
                .await
        }
    }
}

/// The key of the row at 0-based `position` of the unfiltered listing: the cursor a client
/// would hold after `position + 1` rows. Computed once with OFFSET (slow, on purpose only in
/// setup) so the lab can start a keyset read at any depth without walking there.
pub async fn key_at(pool: &PgPool, position: i64) -> Result<Option<SortKey>, sqlx::Error> {
    sqlx::query_as::<_, SortKey>(
        "SELECT created_at, id FROM orders
         ORDER BY created_at DESC, id DESC
         OFFSET $1 LIMIT 1",
    )
    .bind(position)
    .fetch_optional(pool)
    .await
}
