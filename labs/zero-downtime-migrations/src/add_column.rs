//! Scenario 3 — `ADD COLUMN … DEFAULT`: a constant is free, a volatile default rewrites
//! the table under ACCESS EXCLUSIVE.
//!
//! Since PostgreSQL 11 a non-volatile default is stored once in the catalog
//! (`pg_attribute.attmissingval`) and old rows are read as if they had it: the ALTER is
//! metadata only, whatever the table's size — even with `NOT NULL`. A *volatile* default
//! (`clock_timestamp()`, `gen_random_uuid()`, `random()`) must be evaluated per row, so
//! Postgres rewrites every row into a new file (the relfilenode changes) while holding
//! ACCESS EXCLUSIVE: no read, no write, for the whole rewrite. (`now()` is only STABLE —
//! one value per transaction — so `DEFAULT now()` is metadata only too; the tests show it.)

use std::time::Duration;

use crate::migration::{Migrator, Step, StepOutcome};
use crate::observed::{Observed, Stage, during_traffic};

pub const CONSTANT_DEFAULT: Step = Step::new(
    "ADD COLUMN region text NOT NULL DEFAULT 'eu'",
    "items",
    "ALTER TABLE items ADD COLUMN region text NOT NULL DEFAULT 'eu'",
);
pub const VOLATILE_DEFAULT: Step = Step::new(
    "ADD COLUMN touched_at timestamptz NOT NULL DEFAULT clock_timestamp()",
    "items",
    "ALTER TABLE items ADD COLUMN touched_at timestamptz NOT NULL DEFAULT clock_timestamp()",
);
const UNDO: &str =
    "ALTER TABLE items DROP COLUMN IF EXISTS region, DROP COLUMN IF EXISTS touched_at";

/// The ALTER is issued this far into the phase.
pub const ALTER_ISSUED: f64 = 0.2;

/// Add the column `step` adds while the app serves traffic; drop it again afterwards.
pub async fn add(
    stage: &Stage<'_>,
    label: &str,
    planned: Duration,
    step: Step,
) -> anyhow::Result<Observed<StepOutcome>> {
    let mut mig = Migrator::connect(stage.ctx).await?;
    let observed = during_traffic(stage, label, planned, |clock| async move {
        clock.until(ALTER_ISSUED).await;
        Ok(mig.run(step, &clock).await?)
    })
    .await?;
    // Dropping a column is metadata only: the values stay in the rows until a rewrite.
    sqlx::raw_sql(UNDO).execute(&stage.ctx.pg).await?;
    Ok(observed)
}
