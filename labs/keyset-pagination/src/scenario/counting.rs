//! Counting: what `meta.total` costs on every offset response, and what the keyset
//! response's `meta.total_estimate` costs instead — and how far off the estimate is.

use labkit::measure::sequential;
use labkit::{LatencySummary, Scale};
use sqlx::PgPool;

use crate::count;
use crate::filter::{Filter, Status};
use crate::schema::Dataset;

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
pub fn filters(data: Dataset) -> [Filter; 4] {
    [
        Filter::ALL,
        Filter::status(Status::Refunded),
        Filter::tenant(1),
        Filter::tenant(data.tail_tenant()),
    ]
}

pub async fn run(pool: &PgPool, data: Dataset, scale: Scale) -> anyhow::Result<Vec<CountRow>> {
    let mut out = Vec::new();
    for filter in filters(data) {
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
