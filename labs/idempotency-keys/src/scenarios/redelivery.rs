//! Step 6: webhooks. A year of v1 traffic seeded into an inbox without a unique constraint
//! (with the redeliveries v1 let in), the dedupe migration timed, then one new event
//! delivered k times at once.

use std::time::Instant;

use super::Stage;
use crate::client::released_together;
use crate::webhooks;

pub struct Hooks {
    pub legacy_rows: i64,
    pub dedupe: webhooks::DedupeOutcome,
    pub dedupe_ms: f64,
    pub duplicates_left: i64,
    pub redeliveries: usize,
    pub processed: usize,
    pub duplicates: usize,
    pub other: usize,
    pub rows: i64,
    pub fulfillments: i64,
}

/// A year of v1 traffic: one row per event, plus redeliveries v1 let in. Redelivery `g` of
/// the first pass repeats one event picked at random in block `g` of 20 events (≈5 % of
/// events twice); the second pass does the same per block of 200 (some events three times).
const SEED_EVENTS: &str = "
INSERT INTO webhook_events (event_id, event_type, payload, received_at)
SELECT 'evt_' || g, 'charge.succeeded',
       jsonb_build_object('id', 'evt_' || g, 'type', 'charge.succeeded',
                          'data', jsonb_build_object('charge_id', 'ch_' || g)),
       timestamptz '2026-01-01' + g * interval '1 second'
                                + labkit_uniform(g, $3, 0) * interval '1 second'
FROM generate_series($1::bigint, $2::bigint) g";
const SEED_REDELIVERIES_20: &str = "
INSERT INTO webhook_events (event_id, event_type, payload, received_at)
SELECT 'evt_' || e, 'charge.succeeded',
       jsonb_build_object('id', 'evt_' || e, 'type', 'charge.succeeded',
                          'data', jsonb_build_object('charge_id', 'ch_' || e)),
       timestamptz '2026-01-01' + e * interval '1 second' + interval '5 minutes'
FROM (SELECT g * 20 - floor(labkit_uniform(g, $3, 1) * 20)::bigint AS e
      FROM generate_series($1::bigint, $2::bigint) g) r";
const SEED_REDELIVERIES_200: &str = "
INSERT INTO webhook_events (event_id, event_type, payload, received_at)
SELECT 'evt_' || e, 'charge.succeeded',
       jsonb_build_object('id', 'evt_' || e, 'type', 'charge.succeeded',
                          'data', jsonb_build_object('charge_id', 'ch_' || e)),
       timestamptz '2026-01-01' + e * interval '1 second' + interval '1 hour'
FROM (SELECT g * 200 - floor(labkit_uniform(g, $3, 2) * 200)::bigint AS e
      FROM generate_series($1::bigint, $2::bigint) g) r";

pub async fn redelivered(stage: &Stage<'_>) -> anyhow::Result<Hooks> {
    let pool = stage.pool();
    let events = stage.ctx.scale.pick(2_000u64, 200_000, 2_000_000);
    let seed = stage.ctx.seed;
    labkit::seed::generate(pool, "webhooks", events, seed, SEED_EVENTS, |q| q).await?;
    labkit::seed::generate(
        pool,
        "redelivered",
        events / 20,
        seed,
        SEED_REDELIVERIES_20,
        |q| q,
    )
    .await?;
    labkit::seed::generate(
        pool,
        "redelivered",
        events / 200,
        seed,
        SEED_REDELIVERIES_200,
        |q| q,
    )
    .await?;
    sqlx::query("ANALYZE webhook_events").execute(pool).await?;
    let legacy_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
        .fetch_one(pool)
        .await?;

    let t0 = Instant::now();
    let dedupe = webhooks::dedupe_webhook_events(pool).await?;
    let dedupe_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let duplicates_left: i64 =
        sqlx::query_scalar("SELECT count(*) - count(DISTINCT event_id) FROM webhook_events")
            .fetch_one(pool)
            .await?;

    // One new event, delivered k times at once (the provider's retries piling up).
    let redeliveries = stage.ctx.scale.pick(5, 20, 100);
    let event = serde_json::json!({
        "id": "evt_redelivered", "type": "charge.succeeded", "data": { "charge_id": "ch_42" }
    });
    let url = stage.url("/v1/webhooks/provider");
    let replies = released_together(redeliveries, || {
        let request = stage.http.post(&url).json(&event).send();
        async move { request.await?.json::<serde_json::Value>().await }
    })
    .await;
    let (mut processed, mut duplicates, mut other) = (0, 0, 0);
    for r in replies {
        match r.ok().as_ref().and_then(|v| v["status"].as_str()) {
            Some("processed") => processed += 1,
            Some("duplicate") => duplicates += 1,
            _ => other += 1,
        }
    }
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_events WHERE event_id = 'evt_redelivered'",
    )
    .fetch_one(pool)
    .await?;
    let fulfillments: i64 =
        sqlx::query_scalar("SELECT count(*) FROM fulfillments WHERE event_id = 'evt_redelivered'")
            .fetch_one(pool)
            .await?;
    Ok(Hooks {
        legacy_rows,
        dedupe,
        dedupe_ms,
        duplicates_left,
        redeliveries,
        processed,
        duplicates,
        other,
        rows,
        fulfillments,
    })
}
