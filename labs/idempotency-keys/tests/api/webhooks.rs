//! Webhook redelivery is absorbed by the unique event id; old duplicates are removed safely.

use std::sync::Arc;

use lab_idempotency_keys::{schema, webhooks::dedupe_webhook_events};
use serde_json::json;
use tokio::sync::Barrier;

use crate::helpers::TestApp;

#[tokio::test]
async fn a_webhook_redelivered_ten_times_at_once_is_processed_once() {
    let app = TestApp::spawn().await;
    let event =
        json!({ "id": "evt_1", "type": "charge.succeeded", "data": { "charge_id": "ch_1" } });
    let barrier = Arc::new(Barrier::new(10));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (http, url, event, barrier) = (
            app.http.clone(),
            app.url("/v1/webhooks/provider"),
            event.clone(),
            barrier.clone(),
        );
        tasks.spawn(async move {
            barrier.wait().await;
            let r = http.post(url).json(&event).send().await.unwrap();
            assert_eq!(
                r.status(),
                200,
                "a duplicate is not an error for the provider"
            );
            r.json::<serde_json::Value>().await.unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        });
    }
    let mut statuses = tasks.join_all().await;
    statuses.sort();
    assert_eq!(statuses.iter().filter(|s| *s == "processed").count(), 1);
    assert_eq!(statuses.iter().filter(|s| *s == "duplicate").count(), 9);
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE event_id = 'evt_1'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    let fulfilled: i64 =
        sqlx::query_scalar("SELECT count(*) FROM fulfillments WHERE event_id = 'evt_1'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!((rows, fulfilled), (1, 1));
    app.finish().await;
}

#[tokio::test]
async fn dedupe_keeps_the_earliest_row_archives_the_rest_and_adds_the_constraint() {
    let t = labkit::testing::ctx("idempotency-keys").await;
    let pool = &t.ctx.pg;
    schema::migrate(pool).await.unwrap(); // v1: no unique constraint yet
    // What v1 let in: evt_a three times, evt_b once, evt_c twice (ids not in time order).
    sqlx::raw_sql(
        "INSERT INTO webhook_events (id, event_id, event_type, payload, received_at) VALUES
           (10, 'evt_a', 'charge.succeeded', '{}', '2026-01-01 10:05'),
           (11, 'evt_a', 'charge.succeeded', '{}', '2026-01-01 10:00'),
           (12, 'evt_a', 'charge.succeeded', '{}', '2026-01-01 10:09'),
           (13, 'evt_b', 'charge.succeeded', '{}', '2026-01-01 11:00'),
           (14, 'evt_c', 'charge.succeeded', '{}', '2026-01-01 12:00'),
           (15, 'evt_c', 'charge.succeeded', '{}', '2026-01-01 12:01')",
    )
    .execute(pool)
    .await
    .unwrap();

    let outcome = dedupe_webhook_events(pool).await.unwrap();

    assert_eq!(outcome.events_with_duplicates, 2);
    assert_eq!(outcome.rows_removed, 3);
    assert!(outcome.constraint_added);
    let kept: Vec<i64> = sqlx::query_scalar("SELECT id FROM webhook_events ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(
        kept,
        [11, 13, 14],
        "the earliest delivery of each event stays"
    );
    let archived: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM webhook_events_duplicates ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(archived, [10, 12, 15], "nothing is thrown away");

    // Running it again is a no-op; the constraint now refuses a duplicate.
    assert_eq!(dedupe_webhook_events(pool).await.unwrap().rows_removed, 0);
    let dup = sqlx::query(
        "INSERT INTO webhook_events (event_id, event_type, payload, received_at)
         VALUES ('evt_a', 'charge.succeeded', '{}', now())",
    )
    .execute(pool)
    .await;
    let err = dup.unwrap_err();
    assert!(
        err.as_database_error()
            .is_some_and(|e| e.is_unique_violation()),
        "{err}"
    );
    t.finish().await;
}
