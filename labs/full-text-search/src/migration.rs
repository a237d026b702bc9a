//! Scenario 4: the migration from `ILIKE` to a tsvector column, executed while orders keep
//! being written, with the writers' latency measured in every step.
//!
//! | step | what runs | lock it takes |
//! |---|---|---|
//! | baseline | writers alone | – |
//! | the one-statement way, tried and undone | `ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('english', description)) STORED`, then `DROP COLUMN` | `ACCESS EXCLUSIVE` for the whole table rewrite: every write waits |
//! | add column + trigger | `ADD COLUMN search tsvector` (no default: catalog only) and a `BEFORE INSERT OR UPDATE OF description` trigger | `ACCESS EXCLUSIVE` for a moment, behind a `lock_timeout` |
//! | backfill in batches | `UPDATE … SET search = to_tsvector(…) WHERE id BETWEEN … AND search IS NULL`, one short transaction per batch | row locks of one batch |
//! | `CREATE INDEX CONCURRENTLY` | the GIN index on `search`, two table scans, no write lock | `SHARE UPDATE EXCLUSIVE` |
//! | dual read | the flag at `dual`: serve `ILIKE`, compare with full-text search ([`crate::dual_read`]) | – |
//! | switch | the flag at `fts`, only if no compared row was stale | – |
//!
//! The trigger path ends with the same column the generated one would give (the test checks
//! `search = to_tsvector('english', description)` for every row); it trades one long lock
//! for a trigger the team now owns.

use std::time::{Duration, Instant};

use labkit::{Bound, ClosedLoop, LabCtx, LatencySummary};
use sqlx::PgPool;

use crate::dual_read::{self, Flag, SearchMode, Tally};
use crate::orders::{self, Built};
use crate::search::{Term, TermKind};
use crate::writers::{WriterSteps, Writers};

/// A step of the migration: its name (phase labels, tables) and its finding-key part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    pub key: &'static str,
}

pub const BASELINE: Step = Step {
    name: "baseline: writers alone",
    key: "baseline",
};
pub const GENERATED: Step = Step {
    name: "ADD COLUMN … GENERATED … STORED (tried, then dropped)",
    key: "generated_column",
};
pub const ADD_COLUMN: Step = Step {
    name: "ADD COLUMN search tsvector + trigger",
    key: "add_column",
};
pub const BACKFILL: Step = Step {
    name: "backfill in batches",
    key: "backfill",
};
pub const BUILD_INDEX: Step = Step {
    name: "CREATE INDEX CONCURRENTLY",
    key: "create_index",
};
pub const DUAL_READ: Step = Step {
    name: "dual read (flag = dual)",
    key: "dual_read",
};
pub const SWITCH: Step = Step {
    name: "switch (flag = fts)",
    key: "switch",
};

/// Every step, in order.
pub const STEPS: [Step; 7] = [
    BASELINE,
    GENERATED,
    ADD_COLUMN,
    BACKFILL,
    BUILD_INDEX,
    DUAL_READ,
    SWITCH,
];

/// The steps of the zero-downtime path (the generated column is the road not taken).
pub const ZERO_DOWNTIME: [Step; 5] = [ADD_COLUMN, BACKFILL, BUILD_INDEX, DUAL_READ, SWITCH];

/// The index the migration builds.
pub const INDEX: &str = "orders_search_idx";

/// The searches readers send while the flag moves.
pub const READER_TERMS: [&str; 9] = [
    "black",
    "quinira",
    "cat",
    "running",
    "xl",
    "headphones",
    "cotton",
    "espresso",
    "gift",
];

/// The migration's shape, by scale.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub writers: usize,
    /// Each step stays open at least this long (see [`Writers::hold`]).
    pub min_step: Duration,
    pub baseline: Duration,
    pub batch: i64,
    pub dual_read: Duration,
    pub after_switch: Duration,
}

/// One step of the one-statement alternative: the trigger path does it in three.
const GENERATED_SQL: &str = "ALTER TABLE orders ADD COLUMN search tsvector \
     GENERATED ALWAYS AS (to_tsvector('english', description)) STORED";

/// The column, the function and the trigger, in one transaction. `lock_timeout`: the
/// `ALTER` needs `ACCESS EXCLUSIVE` for a moment, and a queued `ACCESS EXCLUSIVE` blocks
/// every write behind it; better to fail fast and retry than to stall the table.
const ADD_COLUMN_SQL: &str = r#"
BEGIN;
SET LOCAL lock_timeout = '5s';
ALTER TABLE orders ADD COLUMN search tsvector;
CREATE FUNCTION orders_search_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.search := to_tsvector('english', NEW.description);
  RETURN NEW;
END
$$;
CREATE TRIGGER orders_search_fill BEFORE INSERT OR UPDATE OF description ON orders
  FOR EACH ROW EXECUTE FUNCTION orders_search_fill();
COMMIT;
"#;

/// One batch. `search IS NULL`: a row the trigger already filled (a concurrent note edit)
/// is skipped, and a rerun after a crash does only what is left.
const BACKFILL_SQL: &str = "UPDATE orders SET search = to_tsvector('english', description) \
     WHERE id BETWEEN $1 AND $2 AND search IS NULL";

const BUILD_INDEX_SQL: &str =
    "CREATE INDEX CONCURRENTLY orders_search_idx ON orders USING gin (search)";

/// What the backfill did.
#[derive(Debug, Clone, Copy)]
pub struct Backfill {
    pub batches: u64,
    pub rows: u64,
    pub elapsed: Duration,
}

/// The table after the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub rows: i64,
    /// Rows whose `search` is NULL.
    pub unfilled: i64,
    /// Rows whose `search` is not `to_tsvector('english', description)`.
    pub stale: i64,
    /// `pg_index.indisvalid` of the new index (a failed `CONCURRENTLY` leaves it invalid).
    pub index_valid: bool,
}

/// Everything the migration measured.
#[derive(Debug, Clone)]
pub struct Migration {
    pub writers: WriterSteps,
    pub generated_rewrite: Duration,
    /// `ADD COLUMN` + function + trigger, lock wait included.
    pub add_column: Duration,
    pub backfill: Backfill,
    pub index: Built,
    pub dual: Tally,
    pub dual_searches: LatencySummary,
    pub switched: bool,
    pub after_searches: LatencySummary,
    pub check: Check,
}

/// Run the migration under writers (and, once the flag moves, readers).
/// `seeded_max`: the writers re-order seeded orders, ids up to `seeded_max`.
pub async fn run(
    ctx: &LabCtx,
    app: &PgPool,
    shape: Shape,
    seeded_max: i64,
) -> anyhow::Result<Migration> {
    let writes = ctx.new_pool(shape.writers as u32).await?;
    let pg = &ctx.pg;
    let mut writers = Writers::start(
        &writes,
        shape.writers,
        orders::RESERVED_IDS + 1..=seeded_max,
        ctx.seed,
        BASELINE.name,
    );
    step_pause(BASELINE.name, shape.baseline).await;

    writers.step(GENERATED.name);
    let t0 = Instant::now();
    labkit::seed::step(pg, GENERATED.name, GENERATED_SQL).await?;
    let generated_rewrite = t0.elapsed();
    sqlx::query("ALTER TABLE orders DROP COLUMN search")
        .execute(pg)
        .await?;

    writers.hold(shape.min_step).await;
    writers.step(ADD_COLUMN.name);
    let t0 = Instant::now();
    let last_unfilled = add_column(pg).await?;
    let add_column = t0.elapsed();

    writers.hold(shape.min_step).await;
    writers.step(BACKFILL.name);
    let backfill = backfill(pg, last_unfilled, shape.batch).await?;

    writers.hold(shape.min_step).await;
    writers.step(BUILD_INDEX.name);
    let index = build_index(pg).await?;

    writers.hold(shape.min_step).await;
    writers.step(DUAL_READ.name);
    let flag = std::sync::Arc::new(Flag::new(SearchMode::DualRead));
    let (dual_searches, outcomes) = readers(app, &flag, DUAL_READ.name, shape.dual_read).await?;
    let mut dual = Tally::default();
    for c in outcomes.iter().flatten() {
        dual.add(c);
    }
    // The gate: switch only if no compared row had a stale search column.
    let switched = dual.stale_rows == 0;
    if switched {
        flag.set(SearchMode::FullText);
    }

    writers.hold(shape.min_step).await;
    writers.step(SWITCH.name);
    let (after_searches, _) = readers(app, &flag, SWITCH.name, shape.after_switch).await?;
    writers.hold(shape.min_step).await;
    let writers = writers.stop().await;
    writes.close().await;
    if let Some(e) = &writers.first_error {
        anyhow::bail!("a writer failed during the migration: {e}");
    }
    Ok(Migration {
        writers,
        generated_rewrite,
        add_column,
        backfill,
        index,
        dual,
        dual_searches,
        switched,
        after_searches,
        check: check(pg).await?,
    })
}

/// Add the column and its trigger. Returns the highest id then: every row written later is
/// filled by the trigger, the backfill covers the rest.
pub async fn add_column(pool: &PgPool) -> Result<i64, sqlx::Error> {
    labkit::seed::step(pool, ADD_COLUMN.name, ADD_COLUMN_SQL).await?;
    orders::max_id(pool).await
}

/// `CREATE INDEX CONCURRENTLY` on `search`, then `ANALYZE`.
pub async fn build_index(pool: &PgPool) -> Result<Built, sqlx::Error> {
    let t0 = Instant::now();
    labkit::seed::step(pool, BUILD_INDEX.name, BUILD_INDEX_SQL).await?;
    let elapsed = t0.elapsed();
    sqlx::query("ANALYZE orders").execute(pool).await?;
    Ok(Built {
        elapsed,
        bytes: orders::relation_bytes(pool, INDEX).await?,
    })
}

/// Let the writers run alone for a while.
async fn step_pause(label: &str, d: Duration) {
    let sp = labkit::seed::spinner(label);
    tokio::time::sleep(d).await;
    sp.finish_and_clear();
}

/// Fill `search` for ids `1..=last`, `batch` rows per transaction.
pub async fn backfill(pool: &PgPool, last: i64, batch: i64) -> Result<Backfill, sqlx::Error> {
    let bar = labkit::seed::progress(last.max(0) as u64, BACKFILL.name);
    let t0 = Instant::now();
    let (mut batches, mut rows) = (0, 0);
    let mut lo = 1;
    while lo <= last {
        let hi = (lo + batch - 1).min(last);
        let done = sqlx::query(BACKFILL_SQL)
            .bind(lo)
            .bind(hi)
            .execute(pool)
            .await?;
        batches += 1;
        rows += done.rows_affected();
        bar.inc((hi - lo + 1) as u64);
        lo = hi + 1;
    }
    bar.finish_and_clear();
    Ok(Backfill {
        batches,
        rows,
        elapsed: t0.elapsed(),
    })
}

/// One reader searching through [`READER_TERMS`] the way the flag says, for `d`.
async fn readers(
    app: &PgPool,
    flag: &std::sync::Arc<Flag>,
    label: &str,
    d: Duration,
) -> anyhow::Result<(LatencySummary, Vec<Option<dual_read::Comparison>>)> {
    let (pool, flag) = (app.clone(), flag.clone());
    let cfg = ClosedLoop::new(1, Bound::Duration(d))
        .label(format!("migration: {label}"))
        .with_timeline();
    let r = labkit::closed_loop(cfg, move |call| {
        let (pool, flag) = (pool.clone(), flag.clone());
        let term = Term {
            kind: TermKind::Common,
            text: READER_TERMS[call.seq as usize % READER_TERMS.len()],
        };
        async move { dual_read::serve(&pool, &flag, term).await.map(|s| s.shadow) }
    })
    .await;
    if let Some(e) = r.first_error {
        anyhow::bail!("a search failed in {label}: {e}");
    }
    let outcomes = r.timeline.into_iter().filter_map(|s| s.out).collect();
    Ok((r.summary, outcomes))
}

/// Every row filled, every row current, the index valid.
pub async fn check(pool: &PgPool) -> Result<Check, sqlx::Error> {
    let (rows, unfilled, stale): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE search IS NULL), \
                count(*) FILTER (WHERE search IS DISTINCT FROM to_tsvector('english', description)) \
         FROM orders",
    )
    .fetch_one(pool)
    .await?;
    let index_valid: bool = sqlx::query_scalar(
        "SELECT coalesce((SELECT indisvalid FROM pg_index \
                          WHERE indexrelid = to_regclass('orders_search_idx')), false)",
    )
    .fetch_one(pool)
    .await?;
    Ok(Check {
        rows,
        unfilled,
        stale,
        index_valid,
    })
}

/// Lab hygiene, not part of the migration: delete the writers' orders (ids above
/// `seeded_max`) and `VACUUM FULL ANALYZE` (the backfill left a dead version of every row),
/// so every search is measured on the seeded rows, compact, the same for the same seed.
pub async fn tidy(pool: &PgPool, seeded_max: i64) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM orders WHERE id > $1")
        .bind(seeded_max)
        .execute(pool)
        .await?
        .rows_affected();
    labkit::seed::step(
        pool,
        "orders: VACUUM FULL ANALYZE after the migration",
        "VACUUM FULL ANALYZE orders",
    )
    .await?;
    Ok(deleted)
}
