//! Scenario 6 — renaming a column while two versions of the app are live.
//!
//! A deploy is not an instant: for a while the old version (v1, `customers.name`) and the
//! new one (v2, `customers.full_name`) both serve. A one-step `RENAME COLUMN` is instant
//! for the database and breaks v1 at once: every query it sends names a column that is gone
//! (42703), until the last v1 instance is drained.
//!
//! Expand/contract keeps both versions working at every moment:
//! 1. **expand** — add `full_name` (nullable: metadata only);
//! 2. **dual-write** — a trigger keeps `name` and `full_name` equal whichever one a
//!    version writes (GitLab's `rename_column_concurrently` does the same);
//! 3. **backfill** — copy `name` into `full_name` in keyset batches;
//! 4. **switch reads** — v2, which reads and writes `full_name`, rolls out while v1 still
//!    serves;
//! 5. **contract** — once the last v1 is gone, drop the trigger and the old column.
//!
//! Every step that takes a strong lock runs under [`Guard`]. v1 is retired before the
//! contract on purpose: dropping a column something still reads is the one-step rename
//! again, just later.

use std::time::Duration;

use sqlx::PgConnection;
use tokio::sync::{oneshot, watch};

use crate::app::{App, Queries};
use crate::backfill::keyset_batch;
use crate::migration::{Guard, Migrator, Step, StepOutcome};
use crate::observed::{Observed, Stage, observe};

/// v1: the code that knows `customers.name`.
pub const V1: Queries = Queries {
    table: "customers",
    read: "SELECT id, name FROM customers WHERE id = $1",
    update: "UPDATE customers SET name = 'Customer ' || $1::bigint || ' v' || $2::bigint WHERE id = $1",
    insert: "INSERT INTO customers (name) VALUES ('Customer of ' || $1::bigint || ' #' || $2::bigint)",
};

/// v2: the code that knows `customers.full_name`.
pub const V2: Queries = Queries {
    table: "customers",
    read: "SELECT id, full_name FROM customers WHERE id = $1",
    update: "UPDATE customers SET full_name = 'Customer ' || $1::bigint || ' v' || $2::bigint WHERE id = $1",
    insert: "INSERT INTO customers (full_name) VALUES ('Customer of ' || $1::bigint || ' #' || $2::bigint)",
};

pub const V1_APP: &str = "zdm-app-v1";
pub const V2_APP: &str = "zdm-app-v2";

pub const ONE_STEP: Step = Step::new(
    "RENAME COLUMN name TO full_name",
    "customers",
    "ALTER TABLE customers RENAME COLUMN name TO full_name",
);
const UNDO_ONE_STEP: &str = "ALTER TABLE customers RENAME COLUMN full_name TO name";

pub const EXPAND: Step = Step::new(
    "expand: ADD COLUMN full_name text",
    "customers",
    "ALTER TABLE customers ADD COLUMN full_name text",
);

pub const DUAL_WRITE: Step = Step::new(
    "dual-write: trigger keeps name = full_name",
    "customers",
    r#"
CREATE FUNCTION customers_sync_full_name() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.full_name := coalesce(NEW.full_name, NEW.name);
    NEW.name := coalesce(NEW.name, NEW.full_name);
  ELSIF NEW.name IS DISTINCT FROM OLD.name THEN
    NEW.full_name := NEW.name;
  ELSIF NEW.full_name IS DISTINCT FROM OLD.full_name THEN
    NEW.name := NEW.full_name;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER customers_sync_full_name BEFORE INSERT OR UPDATE ON customers
  FOR EACH ROW EXECUTE FUNCTION customers_sync_full_name();
"#,
);

pub const CONTRACT: Step = Step::new(
    "contract: DROP TRIGGER, DROP COLUMN name",
    "customers",
    "DROP TRIGGER customers_sync_full_name ON customers; \
     ALTER TABLE customers DROP COLUMN name; \
     DROP FUNCTION customers_sync_full_name();",
);

/// The backfill's batches: the last id of the next `$2` ids after `$1`, then the rows up
/// to it that still lack the new column.
const CUSTOMERS_BOUND: &str =
    "SELECT max(id) FROM (SELECT id FROM customers WHERE id > $1 ORDER BY id LIMIT $2) AS b";
const BACKFILL_BATCH: &str = "UPDATE customers SET full_name = name \
     WHERE id > $1 AND id <= $2 AND full_name IS NULL";

/// The timeline, as fractions of the phase.
pub const RENAME_AT: f64 = 0.3;
pub const EXPAND_AT: f64 = 0.1;
pub const V1_RETIRES: f64 = 0.65;

/// Two app versions, each its own instance with its own pool.
pub struct Versions {
    pub v1: App,
    pub v2: App,
}

impl Versions {
    pub async fn connect(stage: &Stage<'_>) -> Result<Self, sqlx::Error> {
        let per_version = (stage.connections / 2).max(2);
        let data = stage.data;
        Ok(Self {
            v1: App::connect(stage.ctx, V1_APP, per_version, &V1, data).await?,
            v2: App::connect(stage.ctx, V2_APP, per_version, &V2, data).await?,
        })
    }

    fn pools(&self) -> Vec<sqlx::PgPool> {
        vec![self.v1.pool.clone(), self.v2.pool.clone()]
    }
}

/// What the one-step rename did.
#[derive(Debug, Clone)]
pub struct OneStep {
    pub rename: StepOutcome,
}

/// v1 serves the whole phase; the rename runs; v2 rolls out right after it.
pub async fn one_step(
    stage: &Stage<'_>,
    label: &str,
    planned: Duration,
    guard: Guard,
) -> anyhow::Result<Observed<OneStep>> {
    let versions = Versions::connect(stage).await?;
    let (v1, v2) = (&versions.v1, &versions.v2);
    let rate = stage.rate / 2.0;
    let mut mig = Migrator::connect(stage.ctx).await?;
    let observed = observe(
        stage.ctx,
        label,
        planned,
        versions.pools(),
        |clock| async move {
            let v1_label = format!("{label}: v1 (name)");
            let v2_label = format!("{label}: v2 (full_name)");
            // v1 serves the whole phase: old instances drain at their own pace.
            let old = v1.traffic(&v1_label, rate, planned, &clock, None);
            let deploy = async {
                clock.until(RENAME_AT).await;
                let rename = mig.run_guarded(ONE_STEP, &guard, &clock).await?;
                let done = clock.now();
                let new = v2
                    .traffic(&v2_label, rate, clock.remaining(), &clock, None)
                    .await;
                Ok::<_, anyhow::Error>((rename, new, done))
            };
            let (old, deployed) = tokio::join!(old, deploy);
            let (rename, new, done) = deployed?;
            Ok((vec![old, new], OneStep { rename }, done))
        },
    )
    .await?;
    sqlx::raw_sql(UNDO_ONE_STEP).execute(&stage.ctx.pg).await?;
    Ok(observed)
}

/// What expand/contract did.
#[derive(Debug, Clone)]
pub struct ExpandContract {
    pub steps: Vec<StepOutcome>,
    pub backfilled_rows: i64,
    pub backfill_batches: u32,
    /// Rows whose `name` and `full_name` differed just before the contract (lost dual
    /// writes would show here).
    pub out_of_sync_rows: i64,
    /// When v2 started serving, and when v1 stopped.
    pub switched_at: Duration,
    pub v1_retired_at: Duration,
}

impl ExpandContract {
    /// How long both versions served at once.
    pub fn overlap(&self) -> Duration {
        self.v1_retired_at.saturating_sub(self.switched_at)
    }
}

/// The staged rename with both versions live: v1 from the start until it retires, v2
/// from the switch of reads until the end.
pub async fn expand_contract(
    stage: &Stage<'_>,
    label: &str,
    planned: Duration,
    guard: Guard,
    rows_per_batch: i64,
) -> anyhow::Result<Observed<ExpandContract>> {
    let versions = Versions::connect(stage).await?;
    let (v1, v2) = (&versions.v1, &versions.v2);
    let rate = stage.rate / 2.0;
    let mut mig = Migrator::connect(stage.ctx).await?;
    observe(
        stage.ctx,
        label,
        planned,
        versions.pools(),
        |clock| async move {
            let (v1_label, v2_label) = (
                format!("{label}: v1 (name)"),
                format!("{label}: v2 (full_name)"),
            );
            let (retired_tx, retired_rx) = oneshot::channel();
            let (switched_tx, switched_rx) = watch::channel(None);
            let (contracted_tx, contracted_rx) = watch::channel(None);
            // v1 serves until it is due to retire, and in any case until v2 has served
            // beside it for a while: a rolling deploy overlaps the versions.
            let old = async {
                let t = v1
                    .traffic(
                        &v1_label,
                        rate,
                        clock.at(V1_RETIRES),
                        &clock,
                        Some(switched_rx),
                    )
                    .await;
                let _ = retired_tx.send(clock.now());
                t
            };
            let migrate = async {
                clock.until(EXPAND_AT).await;
                let mut steps = vec![
                    mig.run_guarded(EXPAND, &guard, &clock).await?,
                    mig.run_guarded(DUAL_WRITE, &guard, &clock).await?,
                ];
                let (backfilled_rows, backfill_batches) =
                    backfill(mig.conn(), rows_per_batch).await?;
                let out_of_sync_rows = out_of_sync(mig.conn()).await?;
                let switched_at = clock.now();
                let _ = switched_tx.send(Some(switched_at));
                // v2 serves from the switch until after the contract.
                let new = v2.traffic(
                    &v2_label,
                    rate,
                    clock.remaining().max(clock.at(0.25)),
                    &clock,
                    Some(contracted_rx),
                );
                let contract = async {
                    // Only once no v1 instance is left.
                    let v1_retired_at = retired_rx.await.unwrap_or(clock.now());
                    let out_of_sync_rows = out_of_sync(mig.conn()).await?;
                    let c = mig.run_guarded(CONTRACT, &guard, &clock).await;
                    let _ = contracted_tx.send(Some(clock.now()));
                    let c = c?;
                    Ok::<_, anyhow::Error>((c, v1_retired_at, out_of_sync_rows))
                };
                let (new, contracted) = tokio::join!(new, contract);
                let (c, v1_retired_at, late_out_of_sync) = contracted?;
                steps.push(c);
                let done = steps.last().map(|s| s.ended).unwrap_or_default();
                Ok::<_, anyhow::Error>((
                    new,
                    ExpandContract {
                        steps,
                        backfilled_rows,
                        backfill_batches,
                        out_of_sync_rows: out_of_sync_rows.max(late_out_of_sync),
                        switched_at,
                        v1_retired_at,
                    },
                    done,
                ))
            };
            let (old, migrated) = tokio::join!(old, migrate);
            let (new, out, done) = migrated?;
            Ok((vec![old, new], out, done))
        },
    )
    .await
}

/// Copy `name` into `full_name` where it is still NULL, keyset batches by id.
async fn backfill(conn: &mut PgConnection, rows_per_batch: i64) -> Result<(i64, u32), sqlx::Error> {
    let (mut rows, mut batches, mut last) = (0_i64, 0_u32, 0_i64);
    while let Some((n, next)) =
        keyset_batch(conn, CUSTOMERS_BOUND, BACKFILL_BATCH, last, rows_per_batch).await?
    {
        rows += n;
        batches += 1;
        last = next;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((rows, batches))
}

async fn out_of_sync(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM customers WHERE full_name IS DISTINCT FROM name")
        .fetch_one(conn)
        .await
}
