//! An index on a low-selectivity column, and why the planner is right to ignore it.
//!
//! `status` has five values and `paid` is ~90 % of the rows. For `status = 'paid'` an index
//! would lead to nearly every heap page anyway, in random order, plus the index pages on
//! top: a sequential read of the table is cheaper, and the planner knows it from the
//! column's statistics. For the rare `disputed` (~0.1 %) the same index is the right path.
//! The lab proves "rightly" by forcing the index for the common value and measuring it.

use labkit::explain::Plan;
use sqlx::PgPool;

pub const INDEX_NAME: &str = "invoices_status_idx";
/// ~90 % of rows.
pub const COMMON: &str = "paid";
/// ~0.1 % of rows.
pub const RARE: &str = "disputed";

/// A finance dashboard's question: how much money is in this status?
pub const TOTAL_BY_STATUS: &str = "\
SELECT count(*), sum(amount_cents)
FROM invoices
WHERE status = $1";

/// Runs kept of each plan (after one unkept warm-up run); the plan reported is the one with
/// the median execution time, so one burst of noise does not decide "the planner was right".
pub const RUNS: u64 = 3;

/// What the planner chose for each value, and what the index would have cost.
#[derive(Debug, Clone)]
pub struct StatusPlans {
    pub common: Plan,
    pub rare: Plan,
    /// The common value with `enable_seqscan = off`: the path the planner turned down.
    pub common_forced_index: Plan,
    /// Runs each plan's time rests on ([`RUNS`]).
    pub runs: u64,
}

impl StatusPlans {
    pub fn index_chosen_for_common(&self) -> bool {
        self.common.index_used() == Some(INDEX_NAME)
    }

    pub fn index_chosen_for_rare(&self) -> bool {
        self.rare.index_used() == Some(INDEX_NAME)
    }
}

pub async fn create_index(pool: &PgPool) -> Result<(), sqlx::Error> {
    labkit::seed::step(
        pool,
        "status index",
        "CREATE INDEX IF NOT EXISTS invoices_status_idx ON invoices (status)",
    )
    .await?;
    Ok(())
}

pub async fn drop_index(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("DROP INDEX IF EXISTS invoices_status_idx")
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn explain_total(pool: &PgPool, status: &'static str) -> Result<Plan, sqlx::Error> {
    labkit::explain::analyze(pool, TOTAL_BY_STATUS, |q| q.bind(status)).await
}

/// The same EXPLAIN with sequential scans priced out of reach, in a transaction so the
/// setting dies with it (`SET LOCAL`) and never leaks into a pooled connection.
pub async fn explain_total_forcing_index(
    pool: &PgPool,
    status: &'static str,
) -> Result<Plan, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await?;
    let plan = labkit::explain::analyze(&mut *tx, TOTAL_BY_STATUS, |q| q.bind(status)).await?;
    tx.rollback().await?;
    Ok(plan)
}

/// Build the status index, EXPLAIN the common and the rare value, then force the index for
/// the common value. Each plan is warmed by one run, then kept as the median of [`RUNS`].
pub async fn measure(pool: &PgPool) -> Result<StatusPlans, sqlx::Error> {
    create_index(pool).await?;
    Ok(StatusPlans {
        common: median(|| explain_total(pool, COMMON)).await?,
        rare: median(|| explain_total(pool, RARE)).await?,
        common_forced_index: median(|| explain_total_forcing_index(pool, COMMON)).await?,
        runs: RUNS,
    })
}

/// One warm-up run, then the median by execution time of [`RUNS`] runs.
async fn median<F, Fut>(explain: F) -> Result<Plan, sqlx::Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Plan, sqlx::Error>>,
{
    explain().await?;
    let mut plans = Vec::new();
    for _ in 0..RUNS {
        plans.push(explain().await?);
    }
    plans.sort_by(|a, b| a.execution_ms.total_cmp(&b.execution_ms));
    Ok(plans.swap_remove(plans.len() / 2))
}
