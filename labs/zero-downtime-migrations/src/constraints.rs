//! Scenario 4 — constraints: `NOT VALID` + `VALIDATE CONSTRAINT` vs adding them directly,
//! and `SET NOT NULL` after a validated CHECK.
//!
//! Adding a CHECK directly scans the whole table under ACCESS EXCLUSIVE; adding a FOREIGN
//! KEY directly validates every row under SHARE ROW EXCLUSIVE on *both* tables. Either way
//! the app's writes wait for the scan. Split in two: `ADD CONSTRAINT … NOT VALID` takes its
//! strong lock for milliseconds (new rows are checked from then on), and `VALIDATE
//! CONSTRAINT` scans the old rows under SHARE UPDATE EXCLUSIVE, which reads and writes do
//! not conflict with.
//!
//! `SET NOT NULL` scans the table under ACCESS EXCLUSIVE too — unless (PostgreSQL 12+) a
//! validated `CHECK (col IS NOT NULL)` already proves it, and then it skips the scan. The
//! step counts the table scans it did (`pg_stat_get_xact_numscans`): 1 directly, 0 after
//! the CHECK.
//!
//! The staged steps that take a strong lock even briefly run under [`Guard`]: that is half
//! of the recipe (the other half is the split).

use std::time::Duration;

use crate::migration::{Guard, Migrator, Step, StepOutcome};
use crate::observed::{Observed, Stage, during_traffic};

/// Adding each constraint in one statement.
pub const DIRECT: [Step; 3] = [
    Step::new(
        "ADD CONSTRAINT … CHECK (amount_cents >= 0)",
        "items",
        "ALTER TABLE items ADD CONSTRAINT amount_nonnegative CHECK (amount_cents >= 0)",
    ),
    Step::new(
        "ADD CONSTRAINT … FOREIGN KEY (customer_id)",
        "items",
        "ALTER TABLE items ADD CONSTRAINT items_customer_fk \
         FOREIGN KEY (customer_id) REFERENCES customers (id)",
    ),
    Step::new(
        "ALTER COLUMN status SET NOT NULL",
        "items",
        "ALTER TABLE items ALTER COLUMN status SET NOT NULL",
    ),
];

const UNDO_DIRECT: &str = "ALTER TABLE items \
     DROP CONSTRAINT amount_nonnegative, \
     DROP CONSTRAINT items_customer_fk, \
     ALTER COLUMN status DROP NOT NULL";

/// The same end state, staged.
pub const STAGED: [Step; 8] = [
    Step::new(
        "ADD CONSTRAINT … CHECK (amount_cents >= 0) NOT VALID",
        "items",
        "ALTER TABLE items ADD CONSTRAINT amount_nonnegative CHECK (amount_cents >= 0) NOT VALID",
    ),
    Step::new(
        "VALIDATE CONSTRAINT amount_nonnegative",
        "items",
        "ALTER TABLE items VALIDATE CONSTRAINT amount_nonnegative",
    ),
    Step::new(
        "ADD CONSTRAINT … FOREIGN KEY (customer_id) NOT VALID",
        "items",
        "ALTER TABLE items ADD CONSTRAINT items_customer_fk \
         FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID",
    ),
    Step::new(
        "VALIDATE CONSTRAINT items_customer_fk",
        "items",
        "ALTER TABLE items VALIDATE CONSTRAINT items_customer_fk",
    ),
    Step::new(
        "ADD CONSTRAINT … CHECK (status IS NOT NULL) NOT VALID",
        "items",
        "ALTER TABLE items ADD CONSTRAINT status_not_null CHECK (status IS NOT NULL) NOT VALID",
    ),
    Step::new(
        "VALIDATE CONSTRAINT status_not_null",
        "items",
        "ALTER TABLE items VALIDATE CONSTRAINT status_not_null",
    ),
    Step::new(
        "ALTER COLUMN status SET NOT NULL (proven by the CHECK)",
        "items",
        "ALTER TABLE items ALTER COLUMN status SET NOT NULL",
    ),
    Step::new(
        "DROP CONSTRAINT status_not_null",
        "items",
        "ALTER TABLE items DROP CONSTRAINT status_not_null",
    ),
];

/// The first step starts this far into the phase; steps are this far apart, so each
/// step's effect on the app can be told apart.
pub const FIRST_STEP: f64 = 0.1;
pub const GAP: f64 = 0.04;

/// Apply `steps` in order while the app serves traffic; `guard` for each step, or none.
/// With `undo`, the direct constraints are removed afterwards (the staged ones stay: the
/// run ends with the constraints in place, as a migration would).
pub async fn apply(
    stage: &Stage<'_>,
    label: &str,
    planned: Duration,
    steps: &[Step],
    guard: Option<Guard>,
    undo: bool,
) -> anyhow::Result<Observed<Vec<StepOutcome>>> {
    let mut mig = Migrator::connect(stage.ctx).await?;
    let observed = during_traffic(stage, label, planned, |clock| async move {
        clock.until(FIRST_STEP).await;
        let mut done = Vec::new();
        for step in steps {
            let o = match &guard {
                None => mig.run(*step, &clock).await?,
                Some(g) => mig.run_guarded(*step, g, &clock).await?,
            };
            done.push(o);
            tokio::time::sleep(clock.at(GAP)).await;
        }
        Ok(done)
    })
    .await?;
    if undo {
        sqlx::raw_sql(UNDO_DIRECT).execute(&stage.ctx.pg).await?;
    }
    Ok(observed)
}
