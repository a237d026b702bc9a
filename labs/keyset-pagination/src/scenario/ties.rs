//! Ties: walk with a `created_at`-only cursor and with the `(created_at, id)` cursor, and
//! count the rows each never served.
//!
//! The walked range ends at a horizon: everything newer than the `created_at` of the row at
//! the end of the first `pages` pages (or the whole table when it is smaller). A walk stops
//! once a page reaches the horizon.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::filter::Filter;
use crate::keyset::{self, SortKey};

#[derive(Debug)]
pub struct Ties {
    /// Rows in the walked range.
    pub expected: usize,
    pub largest_group: i64,
    /// Share of the range's rows whose `created_at` another row has too.
    pub tied_pct: f64,
    pub naive: Outcome,
    pub tiebroken: Outcome,
}

/// Which cursor a walk uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    /// `created_at` alone.
    Naive,
    /// `(created_at, id)`.
    TieBroken,
}

/// What one walk served, checked against the range.
#[derive(Debug, Default)]
pub struct Outcome {
    pub pages: usize,
    /// Pages whose last row has tie partners that sort after it (the boundary cut a group).
    pub pages_ending_in_a_tie: usize,
    pub lost: usize,
    pub duplicates: usize,
}

/// Walk from the top with `kind` until a page reaches `horizon` (`None`: the whole table).
/// Returns the ids served, in order, and the number of pages that ended inside a tie group.
pub async fn walk(
    pool: &PgPool,
    kind: CursorKind,
    limit: i64,
    horizon: Option<DateTime<Utc>>,
) -> Result<(Vec<i64>, usize, usize), sqlx::Error> {
    let (mut ids, mut pages, mut cut) = (Vec::new(), 0, 0);
    let mut after: Option<SortKey> = None;
    loop {
        let rows = match kind {
            CursorKind::Naive => {
                keyset::naive_page(pool, after.map(|k| k.created_at), limit).await?
            }
            CursorKind::TieBroken => keyset::page(pool, Filter::ALL, after, limit).await?,
        };
        pages += 1;
        ids.extend(rows.iter().map(|o| o.id));
        let Some(last) = rows.last() else { break };
        let tie_partners_after: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orders WHERE created_at = $1 AND id < $2")
                .bind(last.created_at)
                .bind(last.id)
                .fetch_one(pool)
                .await?;
        if tie_partners_after > 0 {
            cut += 1;
        }
        after = Some(last.sort_key());
        if (rows.len() as i64) < limit || horizon.is_some_and(|h| last.created_at <= h) {
            break;
        }
    }
    Ok((ids, pages, cut))
}

pub async fn run(pool: &PgPool, pages: i64, limit: i64) -> anyhow::Result<Ties> {
    // No row beyond the range: the walk covers the whole table, to its last row.
    let horizon = match keyset::key_at(pool, pages * limit).await? {
        None => None,
        Some(_) => keyset::key_at(pool, pages * limit - 1)
            .await?
            .map(|k| k.created_at),
    };
    let expected: Vec<i64> = match horizon {
        Some(h) => {
            sqlx::query_scalar("SELECT id FROM orders WHERE created_at > $1")
                .bind(h)
                .fetch_all(pool)
                .await?
        }
        None => {
            sqlx::query_scalar("SELECT id FROM orders")
                .fetch_all(pool)
                .await?
        }
    };
    let (tied_pct, largest_group): (f64, i64) = sqlx::query_as(
        "SELECT coalesce(100.0 * sum(n) FILTER (WHERE n > 1) / sum(n), 0)::float8,
                coalesce(max(n), 0)
         FROM (SELECT count(*) AS n FROM orders
               WHERE created_at > coalesce($1, '-infinity'::timestamptz)
               GROUP BY created_at) AS groups",
    )
    .bind(horizon)
    .fetch_one(pool)
    .await?;

    let outcome = async |kind| -> Result<Outcome, sqlx::Error> {
        let (ids, pages, cut) = walk(pool, kind, limit, horizon).await?;
        let seen: HashSet<i64> = ids.iter().copied().collect();
        Ok(Outcome {
            pages,
            pages_ending_in_a_tie: cut,
            lost: expected.iter().filter(|id| !seen.contains(id)).count(),
            duplicates: ids.len() - seen.len(),
        })
    };
    let naive = outcome(CursorKind::Naive).await?;
    let tiebroken = outcome(CursorKind::TieBroken).await?;
    Ok(Ties {
        expected: expected.len(),
        largest_group,
        tied_pct,
        naive,
        tiebroken,
    })
}
