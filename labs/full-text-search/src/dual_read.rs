//! Dual reads behind a flag: serve the old path, run the new one in its shadow, count where
//! they disagree — and switch only when every disagreement is one the product chose.
//!
//! The flag ([`Flag`]) has three positions: `like` (today), `dual` (serve `ILIKE`, also run
//! full-text search and compare) and `fts` (the switch; `ILIKE` leaves the hot path). The
//! comparison is what an app can afford on every search: the page it serves against the page
//! the new path would serve (newest first, like the old one), every row on either page judged
//! by both predicates — all in one `REPEATABLE READ` snapshot, since with two snapshots every
//! order the writers insert between the two queries would count as a disagreement.
//!
//! Two searches rarely agree exactly, because they mean different things: `ILIKE '%cat%'`
//! also matches "certificate" (rows only the old path finds), and full-text search matches
//! "runs" for "running" (rows only the new path finds). Those are the product change, and a
//! reviewer reads samples of them. A row whose stored `search` differs from
//! `to_tsvector('english', description)` is different: a missed backfill batch or a write
//! the trigger did not see. That count ([`Comparison::stale`]) gates the switch. (The full
//! check of every row runs once the migration is done: [`crate::migration::check`].)

use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, Ordering};

use sqlx::PgPool;

use crate::search::{self, Approach, Hit, Term};

/// Where searches go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// `ILIKE` only: before the migration.
    Like,
    /// Serve `ILIKE`, compare with full-text search in the shadow.
    DualRead,
    /// Full-text search only: after the switch.
    FullText,
}

/// The feature flag the app reads on every search.
#[derive(Debug)]
pub struct Flag(AtomicU8);

impl Flag {
    pub fn new(mode: SearchMode) -> Self {
        Self(AtomicU8::new(mode as u8))
    }

    pub fn get(&self) -> SearchMode {
        match self.0.load(Ordering::Relaxed) {
            0 => SearchMode::Like,
            1 => SearchMode::DualRead,
            _ => SearchMode::FullText,
        }
    }

    pub fn set(&self, mode: SearchMode) {
        self.0.store(mode as u8, Ordering::Relaxed);
    }
}

/// One shadow comparison: the two pages, and every row on either judged by both paths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Rows on either page.
    pub rows: u64,
    /// Rows `ILIKE` matches and full-text search does not ("cat" in "certificate").
    pub only_like: u64,
    /// Rows full-text search matches and `ILIKE` does not ("runs" for "running").
    pub only_fts: u64,
    /// Rows on either page whose stored `search` is not `to_tsvector('english',
    /// description)`: the migration's bug, not the product's choice.
    pub stale: u64,
}

impl Comparison {
    pub fn disagrees(&self) -> bool {
        self.only_like + self.only_fts > 0
    }
}

/// What a search returned: the page served, and the shadow comparison in dual mode.
#[derive(Debug, Clone)]
pub struct Served {
    pub page: Vec<Hit>,
    pub shadow: Option<Comparison>,
}

/// Answer one search the way the flag says.
pub async fn serve(pool: &PgPool, flag: &Flag, term: Term) -> Result<Served, sqlx::Error> {
    let (page, shadow) = match flag.get() {
        SearchMode::Like => (search::search(pool, Approach::Like, term).await?, None),
        SearchMode::DualRead => {
            let (page, shadow) = compare(pool, term.text).await?;
            (page, Some(shadow))
        }
        SearchMode::FullText => (search::search(pool, Approach::FullText, term).await?, None),
    };
    Ok(Served { page, shadow })
}

/// The shadow read orders full-text matches like the old path (newest first), so the two
/// pages are comparable; after the switch the page is ranked with `ts_rank` instead.
const SHADOW_PAGE: &str = "SELECT id, description FROM orders \
     WHERE search @@ websearch_to_tsquery('english', $1) ORDER BY created_at DESC LIMIT 20";

/// Every row on either page, judged by both paths: a row missing from one page may only
/// have been pushed off it by newer matches.
const JUDGE: &str = "SELECT count(*), \
        count(*) FILTER (WHERE l AND NOT f), \
        count(*) FILTER (WHERE f AND NOT l), \
        count(*) FILTER (WHERE stale) \
     FROM (SELECT description ILIKE $1 AS l, \
                  coalesce(search @@ websearch_to_tsquery('english', $2), false) AS f, \
                  search IS DISTINCT FROM to_tsvector('english', description) AS stale \
           FROM orders WHERE id = ANY($3)) AS judged";

/// Serve the `ILIKE` page and compare it with full-text search's, in one snapshot.
pub async fn compare(pool: &PgPool, term: &str) -> Result<(Vec<Hit>, Comparison), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let pattern = search::like_pattern(term);
    let served: Vec<Hit> = sqlx::query_as(search::LIKE_PAGE)
        .bind(&pattern)
        .fetch_all(&mut *tx)
        .await?;
    let shadow: Vec<Hit> = sqlx::query_as(SHADOW_PAGE)
        .bind(term)
        .fetch_all(&mut *tx)
        .await?;
    let ids: Vec<i64> = served
        .iter()
        .chain(&shadow)
        .map(|h| h.id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let (rows, only_like, only_fts, stale): (i64, i64, i64, i64) = sqlx::query_as(JUDGE)
        .bind(&pattern)
        .bind(term)
        .bind(&ids)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((
        served,
        Comparison {
            rows: rows as u64,
            only_like: only_like as u64,
            only_fts: only_fts as u64,
            stale: stale as u64,
        },
    ))
}

/// Dual-read comparisons, added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub searches: u64,
    /// Searches on whose pages some row matched one path and not the other.
    pub disagreeing: u64,
    pub rows_only_like: u64,
    pub rows_only_fts: u64,
    pub stale_rows: u64,
}

impl Tally {
    pub fn add(&mut self, c: &Comparison) {
        self.searches += 1;
        self.disagreeing += u64::from(c.disagrees());
        self.rows_only_like += c.only_like;
        self.rows_only_fts += c.only_fts;
        self.stale_rows += c.stale;
    }
}
