//! Counting: what `meta.total` costs on every offset response, and what the keyset
//! response's `meta.total_estimate` costs instead — and how far off the estimate is.

use labkit::measure::sequential;
use labkit::report::{Report, Table};
use labkit::{LatencySummary, Scale};
use sqlx::PgPool;

use crate::count;
use crate::filter::{Filter, Status};

#[derive(Debug)]
pub struct CountRow {
    pub filter: Filter,
    pub exact: i64,
    pub exact_lat: LatencySummary,
    pub estimate: i64,
    pub estimate_lat: LatencySummary,
}

impl CountRow {
    pub fn error_pct(&self) -> f64 {
        100.0 * (self.estimate - self.exact).abs() as f64 / (self.exact.max(1) as f64)
    }
}

/// All orders, one status, the biggest tenant (the skew puts it at id 1) and a tail tenant.
pub fn filters() -> [Filter; 4] {
    [
        Filter::ALL,
        Filter::status(Status::Refunded),
        Filter::tenant(1),
        Filter::tenant(2500),
    ]
}

pub async fn run(pool: &PgPool, scale: Scale) -> anyhow::Result<Vec<CountRow>> {
    let mut out = Vec::new();
    for filter in filters() {
        let exact = count::exact(pool, filter).await?;
        let estimate = count::estimate(pool, filter).await?;
        let exact_lat = sequential(scale.pick(3, 7, 5), |_| count::exact(pool, filter)).await;
        let estimate_lat = sequential(50, |_| count::estimate(pool, filter)).await;
        out.push(CountRow {
            filter,
            exact,
            exact_lat,
            estimate,
            estimate_lat,
        });
    }
    Ok(out)
}

pub fn report(r: &mut Report, rows: &[CountRow]) {
    let all = &rows[0];
    r.finding(
        "count_exact_ms",
        "COUNT(*) of all orders, p50",
        all.exact_lat.p50_ms,
        "ms",
    )
    .finding(
        "count_estimate_ms",
        "Planner estimate of the same (EXPLAIN), p50",
        all.estimate_lat.p50_ms,
        "ms",
    )
    .finding(
        "count_estimate_error_pct",
        "Planner estimate vs exact count, error",
        all.error_pct(),
        "%",
    );
    let mut t = Table::new(
        "Counting: exact COUNT(*) vs the planner's estimate (p50 of sequential runs)",
        &[
            "filter",
            "exact rows",
            "COUNT(*) ms",
            "estimate",
            "estimate ms",
            "error",
        ],
    );
    for c in rows {
        t.row([
            c.filter.to_string(),
            c.exact.to_string(),
            format!("{:.2}", c.exact_lat.p50_ms),
            c.estimate.to_string(),
            format!("{:.3}", c.estimate_lat.p50_ms),
            format!("{:.1} %", c.error_pct()),
        ]);
    }
    r.table(t);
}
