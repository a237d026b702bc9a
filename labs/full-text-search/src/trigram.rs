//! pg_trgm: the contrib extension, and the trigram GIN index that serves `ILIKE '%…%'`.
//!
//! pg_trgm splits text into three-letter pieces ("black" → `"  b"`, `" bl"`, `"bla"`, `"lac"`,
//! `"ack"`, `"ck "`); a GIN index maps each trigram to the rows holding it. For `ILIKE
//! '%black%'` the index intersects the rows of every trigram in the pattern and the heap
//! recheck removes the few that hold them in another order. A pattern shorter than three
//! characters has no trigram to look up, so the planner goes back to a sequential scan.
//!
//! The extension is a trusted contrib module since Postgres 13 (the database owner may
//! create it), shipped with the server packages (Debian/Ubuntu `postgresql-15`, the official
//! docker image). Where it is not installed the lab says so and skips the trigram parts.

use std::time::Instant;

use labkit::explain::Plan;
use sqlx::PgPool;

use crate::orders::Built;
use crate::search::{self, Approach};

/// The trigram index on `orders`.
pub const INDEX: &str = "orders_description_trgm_idx";

/// Why the trigram parts of the lab cannot run on this server.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error(
        "this Postgres server has no pg_trgm extension (pg_available_extensions does not list \
         it): install the server's contrib modules (Debian's postgresql-15 and the official \
         docker image ship them)"
    )]
    NotInstalled,
    #[error(
        "CREATE EXTENSION pg_trgm failed ({0}); pg_trgm is trusted since Postgres 13, so the \
         database owner may create it — older servers need a superuser"
    )]
    NotCreated(#[source] sqlx::Error),
}

/// Create pg_trgm in the scratch database. The inner `Err` says why it cannot be used (the
/// lab then skips the trigram parts); the outer one is a failed query.
pub async fn install(pool: &PgPool) -> Result<Result<(), Unavailable>, sqlx::Error> {
    let available: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm')",
    )
    .fetch_one(pool)
    .await?;
    if !available {
        return Ok(Err(Unavailable::NotInstalled));
    }
    Ok(sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(Unavailable::NotCreated))
}

/// Build the trigram index on `orders.description` (a plain `CREATE INDEX`: the app has not
/// shipped yet, nothing writes).
pub async fn build_index(pool: &PgPool) -> Result<Built, sqlx::Error> {
    let t0 = Instant::now();
    labkit::seed::step(
        pool,
        "orders: trigram GIN index",
        "CREATE INDEX orders_description_trgm_idx ON orders USING gin (description gin_trgm_ops)",
    )
    .await?;
    let elapsed = t0.elapsed();
    sqlx::query("ANALYZE orders").execute(pool).await?;
    let bytes = crate::orders::relation_bytes(pool, INDEX).await?;
    Ok(Built { elapsed, bytes })
}

/// The 2-letter search with sequential scans disabled, so the planner must use the trigram
/// index: `%xl%` yields no trigram, so the Bitmap Index Scan returns every row of the table
/// as a candidate and the recheck throws nearly all of them away — a full-index scan, which
/// is why the planner prefers reading the table.
pub async fn explain_short_pattern_forced(pool: &PgPool) -> Result<Plan, sqlx::Error> {
    let (sql, param) = search::statement(Approach::Trigram, search::SHORT);
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await?;
    let plan = labkit::explain::analyze(&mut *tx, sql, |q| q.bind(param)).await?;
    tx.rollback().await?;
    Ok(plan)
}

/// Rows the Bitmap Index Scan handed to the heap (its candidates).
pub fn index_candidates(plan: &Plan) -> u64 {
    plan.nodes()
        .iter()
        .filter(|n| n.node_type == "Bitmap Index Scan")
        .map(|n| (n.actual_rows * n.loops.max(1.0)) as u64)
        .sum()
}
