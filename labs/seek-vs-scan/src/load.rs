//! The load: several clients asking for "last 7 days" for tenants drawn like real traffic.
//!
//! Traffic follows the data: a tenant with 6 % of the invoices makes roughly 6 % of the
//! requests. Sampling random *rows* and taking their tenant gives exactly that weighting,
//! so the mix is drawn once up front from random invoice ids (deterministic per seed).
//! The driver is labkit's closed loop; its shape comes from the run's knobs.

use std::sync::Arc;
use std::time::Duration;

use labkit::{Bound, ClosedLoop, LabCtx, LatencySummary, LoadResult};
use sqlx::PgPool;

use crate::query::recent_invoices;

/// How hard each variant's load phase pushes: `--clients`, `--duration`, `--warmup`, or the
/// scale's defaults (4 clients; 0.3 / 2.5 / 5 s; warm-up 0.1 / 0.5 / 1 s).
#[derive(Debug, Clone, Copy)]
pub struct LoadShape {
    pub clients: usize,
    pub per_variant: Duration,
    /// Unmeasured, before each variant's measured phase: the pool's connections and the
    /// index's pages are hot when the clock starts.
    pub warmup: Duration,
    /// How many tenants the mix holds (drawn like the data, cycled through).
    pub mix: u32,
}

impl LoadShape {
    pub fn from_ctx(ctx: &LabCtx) -> Self {
        let pick = |smoke, default, large| ctx.scale.pick(smoke, default, large);
        Self {
            clients: ctx.clients(4),
            per_variant: ctx.duration(pick(
                Duration::from_millis(300),
                Duration::from_millis(2500),
                Duration::from_secs(5),
            )),
            warmup: ctx.warmup(pick(
                Duration::from_millis(100),
                Duration::from_millis(500),
                Duration::from_secs(1),
            )),
            mix: 1000,
        }
    }
}

const TENANT_MIX: &str = r#"
SELECT i.tenant_id
FROM generate_series(1, $1::int) AS g
JOIN invoices AS i ON i.id = 1 + floor(labkit_uniform(g, $2, 7) * $3::bigint)::bigint
ORDER BY g
"#;

/// `samples` tenant ids, each the tenant of a random invoice.
pub async fn tenant_mix(
    pool: &PgPool,
    samples: u32,
    seed: u64,
    total_rows: u64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(TENANT_MIX)
        .bind(samples as i32)
        .bind(seed as i64)
        .bind(total_rows as i64)
        .fetch_all(pool)
        .await
}

/// One variant's phase: `shape.clients` clients, `shape.warmup` unmeasured, then
/// `shape.per_variant` measured, each request for the next tenant of the mix. The phase is
/// named `label` on stderr and in the report's `phases`.
pub async fn phase(
    pool: &PgPool,
    mix: Arc<Vec<i64>>,
    shape: LoadShape,
    label: &str,
) -> LoadResult<()> {
    let cfg = ClosedLoop::new(shape.clients, Bound::Duration(shape.per_variant))
        .warmup(shape.warmup)
        .label(label);
    drive(pool, mix, cfg).await
}

/// `workers` clients in a closed loop for `duration`, no warm-up, no label (the pgbench
/// comparison, `crates/lab/examples/vs_pgbench.rs`, calls this).
pub async fn run(
    pool: &PgPool,
    mix: Arc<Vec<i64>>,
    workers: usize,
    duration: Duration,
) -> LatencySummary {
    drive(
        pool,
        mix,
        ClosedLoop::new(workers, Bound::Duration(duration)),
    )
    .await
    .summary
}

/// Every request fetches and decodes its rows, like the app would.
async fn drive(pool: &PgPool, mix: Arc<Vec<i64>>, cfg: ClosedLoop) -> LoadResult<()> {
    let pool = pool.clone();
    labkit::closed_loop(cfg, move |call| {
        let pool = pool.clone();
        let tenant = mix[call.seq as usize % mix.len()];
        async move { recent_invoices(&pool, tenant).await.map(drop) }
    })
    .await
}
