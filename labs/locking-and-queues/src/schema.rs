//! The tables: inventory rows for the lost update, one `jobs` table for every queue scenario,
//! the side-effect tables that make double processing countable, and the dead-letter table.

use sqlx::PgPool;

/// Every table the lab uses. One `jobs` table serves all queue scenarios (a `queue` column
/// keeps their jobs apart), the way one table serves many job kinds in production.
pub const DDL: &str = r#"
CREATE TABLE inventory (
    id      bigint PRIMARY KEY,
    qty     int    NOT NULL,
    version bigint NOT NULL DEFAULT 0     -- the optimistic strategy's version column
);

CREATE TABLE jobs (
    id           bigserial   PRIMARY KEY,
    queue        text        NOT NULL,
    key          text        NOT NULL UNIQUE DEFAULT gen_random_uuid()::text, -- the dedup key
    payload      text        NOT NULL,
    attempts     int         NOT NULL DEFAULT 0,
    max_attempts int         NOT NULL DEFAULT 3,
    -- Claimable once visible_at has passed. A leased claim pushes it out by the lease (SQS's
    -- visibility timeout); a worker that dies simply never acks, and the job comes back.
    visible_at   timestamptz NOT NULL DEFAULT now(),
    enqueued_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_error   text
);
-- The claim query walks this index from the left: oldest visible job first.
CREATE INDEX jobs_claim ON jobs (queue, visible_at, id);

-- What a job "does" in the throughput scenario: no unique key, so a job processed twice
-- leaves two rows and double processing is a COUNT, not a guess.
CREATE TABLE job_effects (
    job_id bigint NOT NULL,
    worker int    NOT NULL,
    digest text   NOT NULL
);

-- The side effect of the delivery scenario (think: a ledger credit per order).
CREATE TABLE ledger (
    job_key  text NOT NULL,
    worker   int  NOT NULL,
    consumer text NOT NULL
);

-- The idempotent consumer's memory: a key is recorded in the same transaction as the side
-- effect, so "applied" and "remembered as applied" commit or roll back together.
CREATE TABLE processed_keys (
    job_key      text PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Jobs that failed max_attempts times, with the last error, for a human to look at.
CREATE TABLE dead_letter (
    job_id     bigint      PRIMARY KEY,
    queue      text        NOT NULL,
    key        text        NOT NULL,
    payload    text        NOT NULL,
    attempts   int         NOT NULL,
    last_error text        NOT NULL,
    dead_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
"#;

/// Create the tables (once per run).
pub async fn create(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(DDL).execute(pool).await?;
    Ok(())
}

/// `rows` inventory rows, ids `1..=rows`, each with `stock` units, version 0.
pub async fn reset_inventory(pool: &PgPool, rows: i64, stock: i32) -> Result<(), sqlx::Error> {
    sqlx::query("TRUNCATE inventory").execute(pool).await?;
    sqlx::query(
        "INSERT INTO inventory (id, qty) SELECT g, $2 FROM generate_series(1, $1::bigint) g",
    )
    .bind(rows)
    .bind(stock)
    .execute(pool)
    .await?;
    Ok(())
}

/// Empty every queue table (jobs, side effects, dedup keys, dead letters).
pub async fn reset_queues(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("TRUNCATE jobs, job_effects, ledger, processed_keys, dead_letter RESTART IDENTITY")
        .execute(pool)
        .await?;
    Ok(())
}

/// Enqueue `n` jobs on `queue` in one statement (payloads `order-1` … `order-n`).
pub async fn enqueue(pool: &PgPool, queue: &str, n: i64) -> Result<(), sqlx::Error> {
    enqueue_range(pool, queue, 1, n).await
}

/// Enqueue jobs `order-first` … `order-last` on `queue` in one statement.
pub async fn enqueue_range(
    pool: &PgPool,
    queue: &str,
    first: i64,
    last: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO jobs (queue, payload) \
         SELECT $1, 'order-' || g FROM generate_series($2::bigint, $3::bigint) g",
    )
    .bind(queue)
    .bind(first)
    .bind(last)
    .execute(pool)
    .await?;
    Ok(())
}
