//! Scenario 2 — `CREATE INDEX` vs `CREATE INDEX CONCURRENTLY`, and the concurrent build
//! that fails.
//!
//! `CREATE INDEX` takes SHARE on the table for the whole build: reads go on, every INSERT,
//! UPDATE and DELETE waits until the index is done. `CONCURRENTLY` takes SHARE UPDATE
//! EXCLUSIVE, which no app statement conflicts with, and pays for it: two table scans and
//! waits for every transaction that could see the table, so it takes longer.
//!
//! A concurrent build can fail halfway — a duplicate arrives during a unique build, a
//! deadlock, a cancel — and then it leaves its index behind, marked INVALID
//! (`pg_index.indisvalid = false`): not used by queries, possibly still maintained on
//! every write. Find it, `DROP INDEX CONCURRENTLY`, fix the cause, build again.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

use crate::lock_watch::{APP_PREFIX, wait_until_blocked_by};
use crate::migration::{Migrator, Step, StepOutcome, connect_as};
use crate::observed::{Observed, Stage, during_traffic};

pub const CREATE_INDEX: Step = Step::new(
    "CREATE INDEX",
    "items",
    "CREATE INDEX items_created_at_idx ON items (created_at)",
);
pub const CREATE_INDEX_CONCURRENTLY: Step = Step::new(
    "CREATE INDEX CONCURRENTLY",
    "items",
    "CREATE INDEX CONCURRENTLY items_created_at_idx ON items (created_at)",
);
const DROP_CREATED_AT: &str = "DROP INDEX items_created_at_idx";

pub const UNIQUE_CONCURRENTLY: Step = Step::new(
    "CREATE UNIQUE INDEX CONCURRENTLY",
    "items",
    "CREATE UNIQUE INDEX CONCURRENTLY items_ref_key ON items (ref)",
);
pub const DROP_CONCURRENTLY: Step = Step::new(
    "DROP INDEX CONCURRENTLY",
    "items",
    "DROP INDEX CONCURRENTLY items_ref_key",
);

/// The build starts this far into the phase.
pub const BUILD_STARTS: f64 = 0.15;

/// Build `step` (one of the two `items_created_at_idx` builds) while the app writes.
pub async fn build(
    stage: &Stage<'_>,
    label: &str,
    planned: Duration,
    step: Step,
) -> anyhow::Result<Observed<StepOutcome>> {
    let concurrently = step.sql.contains("CONCURRENTLY");
    let mut mig = Migrator::connect(stage.ctx).await?;
    let mut observed = during_traffic(stage, label, planned, |clock| async move {
        clock.until(BUILD_STARTS).await;
        if concurrently {
            let o = mig.run_outside_transaction(step, &clock).await;
            match &o.error {
                Some(e) => anyhow::bail!("{}: {e}", step.name),
                None => Ok(o),
            }
        } else {
            Ok(mig.run(step, &clock).await?)
        }
    })
    .await?;
    if observed.out.held.is_empty() {
        // Outside a transaction the step cannot read its own locks; the watcher saw them.
        observed.out.held = observed.locks.migration_held.clone();
    }
    sqlx::raw_sql(DROP_CREATED_AT)
        .execute(&stage.ctx.pg)
        .await?;
    Ok(observed)
}

/// The failed unique build and its repair.
#[derive(Debug, Clone)]
pub struct FailedBuild {
    /// `pg_blocking_pids` of the build while it waited for the writer's transaction.
    pub build_waited_for: Vec<i32>,
    pub writer_pid: i32,
    pub build: StepOutcome,
    /// Indexes on `items` with `indisvalid = false` right after the failure.
    pub invalid_found: Vec<String>,
    pub drop: StepOutcome,
    pub rebuild: StepOutcome,
    pub rebuilt_valid: bool,
}

/// A duplicate `ref` arrives while `CREATE UNIQUE INDEX CONCURRENTLY` is under way, the
/// build fails and leaves an INVALID index; detect it, drop it concurrently, fix the data,
/// rebuild. Deterministic: the duplicate is inserted by an app transaction that the build
/// has to wait for (observed in `pg_blocking_pids`), and commits while it waits.
pub async fn failed_unique_build(
    stage: &Stage<'_>,
    label: &str,
    planned: Duration,
) -> anyhow::Result<Observed<FailedBuild>> {
    let mut mig = Migrator::connect(stage.ctx).await?;
    let mut writer = connect_as(stage.ctx, APP_PREFIX).await?;
    let mut observed = during_traffic(stage, label, planned, |clock| async move {
        clock.until(BUILD_STARTS).await;
        // app: BEGIN; INSERT … ref = 1 — a duplicate of row 1's ref, not committed yet.
        let writer_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut writer)
            .await?;
        let mut tx = writer.begin().await?;
        let dup_id: i64 = sqlx::query_scalar(
            "INSERT INTO items (customer_id, ref, amount_cents, status) \
             VALUES (1, 1, 0, 'open') RETURNING id",
        )
        .fetch_one(&mut *tx)
        .await?;
        let mig_pid = mig.pid;
        // migration: CREATE UNIQUE INDEX CONCURRENTLY — waits for the app's transaction.
        // app: sees the build waiting for it (pg_blocking_pids), COMMITs the duplicate.
        let (build, waited) = tokio::join!(
            mig.run_outside_transaction(UNIQUE_CONCURRENTLY, &clock),
            async {
                let pids = wait_until_blocked_by(&mut tx, mig_pid, writer_pid).await?;
                tx.commit().await?;
                Ok::<_, anyhow::Error>(pids)
            }
        );
        let build_waited_for = waited?;
        let invalid_found = invalid_indexes(mig.conn(), "items").await?;
        let drop = mig.run_outside_transaction(DROP_CONCURRENTLY, &clock).await;
        // The fix for the data: the newer row gets a fresh ref.
        sqlx::query("UPDATE items SET ref = nextval('items_ref_seq') WHERE id = $1")
            .bind(dup_id)
            .execute(mig.conn())
            .await?;
        let rebuild = mig
            .run_outside_transaction(UNIQUE_CONCURRENTLY, &clock)
            .await;
        let rebuilt_valid: bool = sqlx::query_scalar(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_ref_key'::regclass",
        )
        .fetch_one(mig.conn())
        .await?;
        Ok(FailedBuild {
            build_waited_for,
            writer_pid,
            build,
            invalid_found,
            drop,
            rebuild,
            rebuilt_valid,
        })
    })
    .await?;
    // Outside a transaction the steps cannot read their own locks; the watcher saw them.
    let held = observed.locks.migration_held.clone();
    for s in [
        &mut observed.out.build,
        &mut observed.out.drop,
        &mut observed.out.rebuild,
    ] {
        s.held = held.clone();
    }
    // Later scenarios rewrite and update the whole table; an extra index would only make
    // them slower without changing what they show.
    sqlx::raw_sql("DROP INDEX IF EXISTS items_ref_key")
        .execute(&stage.ctx.pg)
        .await?;
    Ok(observed)
}

/// The check to run after any concurrent build (and in every deploy's health check).
pub async fn invalid_indexes(
    conn: &mut PgConnection,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT i.indexrelid::regclass::text FROM pg_index i \
         WHERE i.indrelid = $1::regclass AND NOT i.indisvalid ORDER BY 1",
    )
    .bind(table)
    .fetch_all(conn)
    .await
}
