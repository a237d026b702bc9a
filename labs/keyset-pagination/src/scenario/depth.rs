//! Depth: the same 50-row page at page 1, 10, 100, ... and the last page, offset vs keyset.
//!
//! For keyset at page d the lab needs the cursor a client would hold there: the key of the
//! last row of page d - 1, computed once with [`keyset::key_at`] (not by walking there).
//! Both methods must return the same rows at every depth; the lab checks it before timing.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use labkit::explain::{self, Plan};
use labkit::measure::sequential;
use labkit::{LatencySummary, Scale};
use sqlx::PgPool;

use crate::filter::Filter;
use crate::keyset::{self, SortKey};
use crate::offset;

/// One depth, both methods.
#[derive(Debug)]
pub struct DepthPoint {
    pub page: i64,
    pub offset: LatencySummary,
    pub keyset: LatencySummary,
    pub offset_plan: Plan,
    pub keyset_plan: Plan,
}

#[derive(Debug)]
pub struct Depth {
    pub limit: i64,
    pub points: Vec<DepthPoint>,
}

/// Pages 1, 10, 100, 1,000, 10,000 (those that exist) and the deepest page.
pub fn pages_to_measure(rows: i64, limit: i64) -> Vec<i64> {
    let deepest = (rows + limit - 1) / limit;
    let mut pages: Vec<i64> = [1, 10, 100, 1_000, 10_000]
        .into_iter()
        .filter(|&p| p < deepest)
        .collect();
    pages.push(deepest);
    pages
}

/// Repetitions per depth and method: 20 gives a p95 that is not just the maximum. A query
/// whose warm-up took over 50 ms (deep OFFSET pages: up to a second each) gets 10, so the
/// lab stays inside its minute; the table shows the count for every row.
fn reps(scale: Scale, warm_up: Duration) -> u64 {
    if warm_up > Duration::from_millis(50) {
        scale.pick(5, 10, 5)
    } else {
        scale.pick(5, 20, 20)
    }
}

pub async fn run(pool: &PgPool, rows: i64, limit: i64, scale: Scale) -> anyhow::Result<Depth> {
    let mut points = Vec::new();
    for page in pages_to_measure(rows, limit) {
        let skip = (page - 1) * limit;
        let after: Option<SortKey> = if page == 1 {
            None
        } else {
            Some(
                keyset::key_at(pool, skip - 1)
                    .await?
                    .context("boundary row exists")?,
            )
        };

        // Same rows both ways (also warms the cache for both, so neither is measured cold).
        let t0 = Instant::now();
        let by_offset = offset::page(pool, Filter::ALL, limit, skip).await?;
        let offset_warm_up = t0.elapsed();
        let t0 = Instant::now();
        let by_keyset = keyset::page(pool, Filter::ALL, after, limit).await?;
        let keyset_warm_up = t0.elapsed();
        ensure!(
            by_offset == by_keyset,
            "page {page}: offset and keyset disagree"
        );

        let offset_lat = sequential(reps(scale, offset_warm_up), |_| {
            offset::page(pool, Filter::ALL, limit, skip)
        })
        .await;
        let keyset_lat = sequential(reps(scale, keyset_warm_up), |_| {
            keyset::page(pool, Filter::ALL, after, limit)
        })
        .await;

        let offset_plan =
            explain::analyze(pool, offset::sql(Filter::ALL), |q| q.bind(limit).bind(skip)).await?;
        let keyset_plan = match after {
            None => {
                explain::analyze(pool, offset::sql(Filter::ALL), |q| {
                    q.bind(limit).bind(0_i64)
                })
                .await?
            }
            Some(k) => {
                explain::analyze(pool, keyset::sql(Filter::ALL), |q| {
                    q.bind(k.created_at).bind(k.id).bind(limit)
                })
                .await?
            }
        };
        points.push(DepthPoint {
            page,
            offset: offset_lat,
            keyset: keyset_lat,
            offset_plan,
            keyset_plan,
        });
    }
    Ok(Depth { limit, points })
}

impl Depth {
    pub fn first(&self) -> &DepthPoint {
        &self.points[0]
    }

    pub fn deepest(&self) -> &DepthPoint {
        self.points.last().expect("at least one depth")
    }
}
