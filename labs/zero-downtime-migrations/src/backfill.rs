//! Scenario 5 — backfilling a new column: one `UPDATE` of every row vs keyset batches.
//!
//! One `UPDATE items SET amount_eur_cents = …` is one transaction: every row it has
//! updated stays row-locked until it commits, so an app UPDATE of any of those rows waits
//! (on the backfill's transaction id) until the very end — seconds, for a big table —
//! and the dead row versions cannot be cleaned up until then either: the table doubles.
//!
//! Batched: `WHERE id > $last ORDER BY id LIMIT n`, one short transaction per batch, a
//! pause between batches (room for the app, for replicas to catch up on the WAL), and a
//! plain `VACUUM` every quarter of the table (this lab turns autovacuum off on `items`;
//! in production autovacuum does it), so the space of dead versions is reused and the
//! table grows far less. An app write waits for one batch at most.
//!
//! Both start from the same state — a freshly compacted table (`VACUUM FULL`, outside the
//! measured phase) with a new, empty `amount_eur_cents` — so only the method differs.

use std::time::{Duration, Instant};

use sqlx::PgConnection;

use crate::migration::{Migrator, Step};
use crate::observed::{Observed, Stage, during_traffic};

pub const SINGLE_UPDATE: Step = Step::new(
    "UPDATE items SET amount_eur_cents = … (every row, one statement)",
    "items",
    "UPDATE items SET amount_eur_cents = amount_cents * 92 / 100",
);

/// A batch: the last id of the next `$2` ids after `$1` (an index-only walk of the
/// primary key), then one UPDATE of that id range. Two statements, because the one-statement
/// form (`UPDATE … FROM (SELECT id … LIMIT n)`) was planned as a hash join over the whole
/// table — every batch scanned all of it.
const ITEMS_BOUND: &str =
    "SELECT max(id) FROM (SELECT id FROM items WHERE id > $1 ORDER BY id LIMIT $2) AS b";
const BATCH: &str = "UPDATE items SET amount_eur_cents = amount_cents * 92 / 100 \
     WHERE id > $1 AND id <= $2";

const PREPARE: &str = "ALTER TABLE items ADD COLUMN amount_eur_cents bigint";
const UNDO: &str = "ALTER TABLE items DROP COLUMN amount_eur_cents";

/// The backfill starts this far into the phase.
pub const BACKFILL_STARTS: f64 = 0.1;

/// How a batched backfill paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub rows_per_batch: i64,
    pub pause: Duration,
    /// A plain VACUUM after this many batches.
    pub vacuum_every: u32,
}

/// What a backfill did to the table.
#[derive(Debug, Clone, Copy, Default)]
pub struct Backfill {
    pub started: Duration,
    pub took: Duration,
    pub rows: i64,
    pub batches: u32,
    pub vacuums: u32,
    /// WAL written while it ran (the app's own writes in that time included — a few
    /// hundred rows per second, small next to a backfill's).
    pub wal_bytes: i64,
    /// `n_dead_tup` of `items` right after it.
    pub dead_tuples: i64,
    /// Heap growth while it ran.
    pub table_growth_bytes: i64,
}

/// Backfill `amount_eur_cents` while the app serves traffic: in one statement
/// (`batching = None`) or in batches.
pub async fn run(
    stage: &Stage<'_>,
    label: &str,
    planned: Duration,
    batching: Option<Batching>,
) -> anyhow::Result<Observed<Backfill>> {
    let pool = &stage.ctx.pg;
    sqlx::raw_sql(PREPARE).execute(pool).await?;
    // Not measured: compact the table so both methods start from the same heap.
    labkit::seed::step(
        pool,
        "VACUUM FULL items (reset)",
        "VACUUM FULL ANALYZE items",
    )
    .await?;
    let mut mig = Migrator::connect(stage.ctx).await?;
    let observed = during_traffic(stage, label, planned, |clock| async move {
        clock.until(BACKFILL_STARTS).await;
        let conn = mig.conn();
        let (wal0, size0) = wal_and_size(conn).await?;
        let started = clock.now();
        let t = Instant::now();
        let mut b = Backfill::default();
        match batching {
            None => {
                let r = sqlx::raw_sql(SINGLE_UPDATE.sql).execute(&mut *conn).await?;
                b.rows = r.rows_affected() as i64;
                b.batches = 1;
            }
            Some(p) => {
                let mut last = 0_i64;
                while let Some((n, next)) =
                    keyset_batch(conn, ITEMS_BOUND, BATCH, last, p.rows_per_batch).await?
                {
                    b.rows += n;
                    b.batches += 1;
                    last = next;
                    if b.batches % p.vacuum_every == 0 {
                        sqlx::raw_sql("VACUUM items").execute(&mut *conn).await?;
                        b.vacuums += 1;
                    }
                    tokio::time::sleep(p.pause).await;
                }
            }
        }
        b.took = t.elapsed();
        b.started = started;
        let (wal1, size1) = wal_and_size(conn).await?;
        b.wal_bytes = wal1 - wal0;
        b.table_growth_bytes = size1 - size0;
        b.dead_tuples = dead_tuples(conn).await?;
        Ok(b)
    })
    .await?;
    sqlx::raw_sql(UNDO).execute(pool).await?;
    Ok(observed)
}

/// One keyset batch: `bound` finds the last id of the next `n` after `last`, `update`
/// updates `(last, that id]`. Returns (rows updated, the new `last`), or `None` at the end.
/// Each batch is its own transaction: its row locks last one batch.
pub async fn keyset_batch(
    conn: &mut PgConnection,
    bound: &'static str,
    update: &'static str,
    last: i64,
    n: i64,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let next: Option<i64> = sqlx::query_scalar(bound)
        .bind(last)
        .bind(n)
        .fetch_one(&mut *conn)
        .await?;
    let Some(next) = next else { return Ok(None) };
    let rows = sqlx::query(update)
        .bind(last)
        .bind(next)
        .execute(&mut *conn)
        .await?
        .rows_affected() as i64;
    Ok(Some((rows, next)))
}

async fn wal_and_size(conn: &mut PgConnection) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, \
                pg_relation_size('items')",
    )
    .fetch_one(conn)
    .await
}

/// `n_dead_tup` after this backend's pending statistics are flushed (PostgreSQL 15:
/// `pg_stat_force_next_flush`, applied when the session next goes idle).
async fn dead_tuples(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::raw_sql("SELECT pg_stat_force_next_flush()")
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'items'::regclass")
        .fetch_one(conn)
        .await
}
