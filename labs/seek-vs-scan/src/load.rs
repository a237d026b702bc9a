//! The load: several clients asking for "last 7 days" for tenants drawn like real traffic.
//!
//! Traffic follows the data: a tenant with 6 % of the invoices makes roughly 6 % of the
//! requests. Sampling random *rows* and taking their tenant gives exactly that weighting,
//! so the mix is drawn once up front from random invoice ids (deterministic per seed).

use std::sync::Arc;
use std::time::Duration;

use labkit::{Bound, ClosedLoop, LatencySummary};
use sqlx::PgPool;

use crate::query::recent_invoices;

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

/// `workers` clients in a closed loop for `duration`, each request for the next tenant of
/// the mix. Every request fetches and decodes its rows, like the app would.
pub async fn run(
    pool: &PgPool,
    mix: Arc<Vec<i64>>,
    workers: usize,
    duration: Duration,
) -> LatencySummary {
    let pool = pool.clone();
    let cfg = ClosedLoop::new(workers, Bound::Duration(duration));
    labkit::closed_loop(cfg, move |call| {
        let pool = pool.clone();
        let tenant = mix[call.seq as usize % mix.len()];
        async move { recent_invoices(&pool, tenant).await }
    })
    .await
    .summary
}
