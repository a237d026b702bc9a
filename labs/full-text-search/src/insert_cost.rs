//! Scenario 3a: what each search index costs on the write path — insert rows/s and p99 with
//! no search index, the trigram index and the tsvector column + index, each with GIN's
//! `fastupdate` on (the default) and off.
//!
//! A GIN index turns one row into many index entries (a trigram index: one per distinct
//! trigram, ~40 for a 45-character description; a tsvector index: one per lexeme, ~6). With
//! `fastupdate = on` an insert appends its entries to the index's *pending list* and returns;
//! when the list passes `gin_pending_list_limit`, the insert that crossed it merges the whole
//! list into the index — cheap on average, one slow insert now and then (and searches must
//! scan the unsorted list until it is merged). With `fastupdate = off` every insert pays its
//! own entries at once: steadier, slower on average.
//!
//! Each variant gets its own empty table (`insert_target`, recreated) and two measurements,
//! descriptions copied from `orders`: one `INSERT … SELECT` of many rows, timed on the server
//! side of the wire — rows/s that is the index maintenance alone, steady enough to compare on
//! a busy machine — then single-row `INSERT`s from several clients for a while, as the app
//! writes: their p99 and max show the insert that had to merge the pending list. The
//! pending-list limit is 256 kB instead of the 4 MB default so that the merge happens several
//! times inside a one-second phase; on a real table it is rarer and each merge bigger.

use std::time::{Duration, Instant};

use labkit::{Bound, ClosedLoop, LatencySummary};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sqlx::PgPool;

use crate::orders::RESERVED_IDS;

/// The search index on the insert target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    NoSearchIndex,
    Trigram,
    TrigramNoFastupdate,
    FullText,
    FullTextNoFastupdate,
}

impl Variant {
    pub const ALL: [Variant; 5] = [
        Variant::NoSearchIndex,
        Variant::Trigram,
        Variant::TrigramNoFastupdate,
        Variant::FullText,
        Variant::FullTextNoFastupdate,
    ];

    /// Finding-key suffix: `insert_rows_per_s_<key>`.
    pub fn key(self) -> &'static str {
        match self {
            Self::NoSearchIndex => "no_search_index",
            Self::Trigram => "trgm",
            Self::TrigramNoFastupdate => "trgm_no_fastupdate",
            Self::FullText => "fts",
            Self::FullTextNoFastupdate => "fts_no_fastupdate",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::NoSearchIndex => "no search index (primary key only)",
            Self::Trigram => "trigram GIN, fastupdate on",
            Self::TrigramNoFastupdate => "trigram GIN, fastupdate off",
            Self::FullText => "tsvector column + GIN, fastupdate on",
            Self::FullTextNoFastupdate => "tsvector column + GIN, fastupdate off",
        }
    }

    pub fn needs_trigram(self) -> bool {
        matches!(self, Self::Trigram | Self::TrigramNoFastupdate)
    }

    fn setup(self) -> &'static str {
        match self {
            Self::NoSearchIndex => {
                "CREATE TABLE insert_target (
                   id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                   description text NOT NULL)"
            }
            Self::Trigram => {
                "CREATE TABLE insert_target (
                   id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                   description text NOT NULL);
                 CREATE INDEX ON insert_target USING gin (description gin_trgm_ops)
                   WITH (fastupdate = on, gin_pending_list_limit = 256)"
            }
            Self::TrigramNoFastupdate => {
                "CREATE TABLE insert_target (
                   id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                   description text NOT NULL);
                 CREATE INDEX ON insert_target USING gin (description gin_trgm_ops)
                   WITH (fastupdate = off)"
            }
            Self::FullText => {
                "CREATE TABLE insert_target (
                   id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                   description text NOT NULL,
                   search tsvector GENERATED ALWAYS AS (to_tsvector('english', description)) STORED);
                 CREATE INDEX ON insert_target USING gin (search)
                   WITH (fastupdate = on, gin_pending_list_limit = 256)"
            }
            Self::FullTextNoFastupdate => {
                "CREATE TABLE insert_target (
                   id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                   description text NOT NULL,
                   search tsvector GENERATED ALWAYS AS (to_tsvector('english', description)) STORED);
                 CREATE INDEX ON insert_target USING gin (search) WITH (fastupdate = off)"
            }
        }
    }
}

/// One variant under insert load.
#[derive(Debug, Clone)]
pub struct Inserts {
    pub variant: Variant,
    /// One `INSERT … SELECT` of `bulk_rows` orders: the index maintenance cost alone.
    pub bulk_rows: u64,
    pub bulk: Duration,
    /// Single-row `INSERT`s from several clients afterwards, as the app writes.
    pub load: LatencySummary,
}

impl Inserts {
    pub fn bulk_rows_per_s(&self) -> f64 {
        self.bulk_rows as f64 / self.bulk.as_secs_f64().max(1e-9)
    }
}

/// How the inserts are driven.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Rows of the one-statement insert.
    pub bulk_rows: u64,
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
}

const BULK: &str = "INSERT INTO insert_target (description) \
     SELECT description FROM orders WHERE id BETWEEN $1 AND $2";

const INSERT: &str =
    "INSERT INTO insert_target (description) SELECT description FROM orders WHERE id = $1";

/// Measure each of `variants` in turn; `seeded` is how many seeded orders to copy from.
pub async fn measure(
    pool: &PgPool,
    variants: &[Variant],
    seeded: u64,
    seed: u64,
    shape: Shape,
) -> anyhow::Result<Vec<Inserts>> {
    let mut out = Vec::new();
    for &variant in variants {
        sqlx::raw_sql("DROP TABLE IF EXISTS insert_target")
            .execute(pool)
            .await?;
        sqlx::raw_sql(variant.setup()).execute(pool).await?;
        let t0 = Instant::now();
        sqlx::query(BULK)
            .bind(RESERVED_IDS + 1)
            .bind(RESERVED_IDS + shape.bulk_rows as i64)
            .execute(pool)
            .await?;
        let bulk = t0.elapsed();
        let p = pool.clone();
        let cfg = ClosedLoop::new(shape.clients, Bound::Duration(shape.duration))
            .warmup(shape.warmup)
            .label(format!("insert: {}", variant.label()));
        let r = labkit::closed_loop(cfg, move |call| {
            let p = p.clone();
            let id = RESERVED_IDS
                + 1
                + StdRng::seed_from_u64(seed ^ call.seq).random_range(0..seeded.max(1)) as i64;
            async move { sqlx::query(INSERT).bind(id).execute(&p).await.map(|_| ()) }
        })
        .await;
        if let Some(e) = r.first_error {
            anyhow::bail!("inserts with {} failed: {e}", variant.label());
        }
        out.push(Inserts {
            variant,
            bulk_rows: shape.bulk_rows,
            bulk,
            load: r.summary,
        });
    }
    sqlx::raw_sql("DROP TABLE IF EXISTS insert_target")
        .execute(pool)
        .await?;
    Ok(out)
}
