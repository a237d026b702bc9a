//! Scenario 1: each approach's plan and its latency under concurrent searches, per term.
//!
//! For every term: one search to warm the cache, `EXPLAIN (ANALYZE, BUFFERS)` of the next
//! (the plan node, the index, buffers), then a closed loop of several clients sending the
//! same search for a fixed time ([`labkit::closed_loop`], HDR histograms). One term at a time,
//! so each p95 belongs to one plan.

use std::time::Duration;

use labkit::explain::Plan;
use labkit::{Bound, ClosedLoop, LatencySummary};
use sqlx::PgPool;

use crate::search::{self, Approach, Term};

/// How hard and how long each search is loaded.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
}

/// One (approach, term): its plan, its load and what the first page held.
#[derive(Debug, Clone)]
pub struct Measured {
    pub approach: Approach,
    pub term: Term,
    pub plan: Plan,
    pub load: LatencySummary,
    pub first_page: usize,
}

/// Measure `approach` for each of `terms`.
pub async fn measure(
    app: &PgPool,
    approach: Approach,
    terms: &[Term],
    shape: Shape,
) -> anyhow::Result<Vec<Measured>> {
    let mut out = Vec::new();
    for &term in terms {
        let first_page = search::search(app, approach, term).await?.len();
        let plan = search::explain(app, approach, term).await?;
        let pool = app.clone();
        let cfg = ClosedLoop::new(shape.clients, Bound::Duration(shape.duration))
            .warmup(shape.warmup)
            .label(format!("{}: {}", approach.key(), term.label()));
        let load = labkit::closed_loop(cfg, move |_| {
            let pool = pool.clone();
            async move { search::search(&pool, approach, term).await.map(|_| ()) }
        })
        .await;
        if let Some(e) = load.first_error {
            anyhow::bail!(
                "{} search for {} failed under load: {e}",
                approach.key(),
                term.label()
            );
        }
        out.push(Measured {
            approach,
            term,
            plan,
            load: load.summary,
            first_page,
        });
    }
    Ok(out)
}
