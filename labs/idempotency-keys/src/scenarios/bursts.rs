//! Steps 2 and 3: bursts of concurrent identical requests under one key, released together
//! by a barrier — first against check-then-insert, then against the key record.

use std::time::Duration;

use super::Stage;
use crate::client::{BurstOutcome, burst, classify, payment_body, post_payment};

/// Duplicates per burst in the repeated bursts.
pub const BURST: usize = 50;
/// The provider's latency in the key-record bursts: duplicates arrive while the first request
/// is in flight (and get 409). The naive bursts run at 0 ms: the race shows anyway.
pub const GUARDED_PROVIDER_LATENCY: Duration = Duration::from_millis(20);

pub struct NaiveRace {
    pub burst: usize,
    /// At least this many bursts, more (up to 10×) until a double charge shows.
    pub min_rounds: usize,
    pub rounds: usize,
    pub rounds_with_duplicates: usize,
    pub min_charges: usize,
    pub max_charges: usize,
}

/// Check-then-insert: repeat bursts of [`BURST`] until the race shows.
pub async fn check_then_insert(stage: &Stage<'_>) -> anyhow::Result<NaiveRace> {
    let min_rounds = stage.ctx.scale.pick(5, 20, 100);
    let url = stage.url("/lab/naive/payments");
    let (mut rounds, mut dup_rounds, mut min, mut max) = (0, 0, usize::MAX, 0);
    while rounds < min_rounds || (dup_rounds == 0 && rounds < min_rounds * 10) {
        let token = format!("naive-{rounds}");
        burst(&stage.http, &url, &token, "order-1", BURST).await;
        stage.app.provider.settle().await;
        let charges = stage.charges(&token);
        rounds += 1;
        dup_rounds += usize::from(charges > 1);
        min = min.min(charges);
        max = max.max(charges);
    }
    Ok(NaiveRace {
        burst: BURST,
        min_rounds,
        rounds,
        rounds_with_duplicates: dup_rounds,
        min_charges: min,
        max_charges: max,
    })
}

pub struct GuardedRow {
    pub size: usize,
    pub bursts: usize,
    pub bursts_over_one: usize,
    pub min_charges: usize,
    pub max_charges: usize,
    pub outcome: BurstOutcome,
}

pub struct Guarded {
    pub rows: Vec<GuardedRow>,
    pub max_charges: usize,
    pub largest: usize,
    pub non_conforming: usize,
}

/// The key record: repeated bursts of [`BURST`], then one big burst; each burst ends with one
/// more retry after it settles, which must be a byte-identical replay.
pub async fn key_record(stage: &Stage<'_>) -> anyhow::Result<Guarded> {
    let provider = &stage.app.provider;
    provider.set_latency(GUARDED_PROVIDER_LATENCY);
    let url = stage.url("/v1/payments");
    let largest = stage.ctx.scale.pick(100, 500, 1000);
    let plan = [(BURST, stage.ctx.scale.pick(5, 20, 50)), (largest, 1)];
    let mut rows = Vec::new();
    for (size, bursts) in plan {
        let mut row = GuardedRow {
            size,
            bursts,
            bursts_over_one: 0,
            min_charges: usize::MAX,
            max_charges: 0,
            outcome: BurstOutcome::default(),
        };
        for b in 0..bursts {
            let token = format!("guarded-{size}-{b}");
            let mut replies = burst(&stage.http, &url, &token, "order-1", size).await;
            provider.settle().await;
            let body = payment_body(1299);
            replies.push(post_payment(&stage.http, &url, &token, Some("order-1"), &body).await);
            let charges = stage.charges(&token);
            row.bursts_over_one += usize::from(charges > 1);
            row.min_charges = row.min_charges.min(charges);
            row.max_charges = row.max_charges.max(charges);
            row.outcome.add(classify(&replies));
        }
        rows.push(row);
    }
    provider.set_latency(Duration::ZERO);
    Ok(Guarded {
        max_charges: rows.iter().map(|r| r.max_charges).max().unwrap_or(0),
        non_conforming: rows.iter().map(|r| r.outcome.non_conforming).sum(),
        largest,
        rows,
    })
}
