//! `POST /v1/webhooks/provider`: the provider tells us a charge succeeded, and we fulfil the
//! order. Providers deliver at least once — on a timeout, a 5xx, or just because — so the
//! same event id arrives again, sometimes concurrently.
//!
//! The guard is a unique constraint on `event_id`, used by the insert itself
//! (`ON CONFLICT (event_id) DO NOTHING`), in the same transaction as the fulfilment: the
//! first delivery inserts and fulfils, every redelivery inserts nothing and fulfils nothing.
//! A "have we seen it?" `SELECT` first would be the same race as [`crate::naive`].
//!
//! The constraint can't be added while duplicates from before it exist;
//! [`dedupe_webhook_events`] is the migration that removes them safely.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use labkit::http::{JsonBody, error_response};
use serde::Deserialize;
use sqlx::PgPool;

use crate::app::AppState;
use crate::errors::ApiError;

/// A provider event. Only what we act on is typed; the whole body is kept as `payload`.
#[derive(Debug, Deserialize)]
pub struct ProviderEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// The inbox. The whole body is stored as `jsonb`, so [`JsonBody`] refusing a NUL character
/// in *any* string (`id`, `type`, `data.charge_id`, any nested value or key) is what keeps
/// the INSERT from failing with a 500.
pub async fn receive(
    State(state): State<AppState>,
    JsonBody(payload): JsonBody<serde_json::Value>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let event: ProviderEvent = serde_json::from_value(payload.clone()).map_err(|e| {
        ApiError::from(error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            e,
        ))
    })?;
    if event.id.is_empty() || event.id.len() > 255 || event.event_type.is_empty() {
        return Err(ApiError::InvalidRequest(
            "id must be 1 to 255 characters and type non-empty".into(),
        ));
    }
    let now = state.clock.now();
    let mut tx = state.pool.begin().await?;
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO webhook_events (event_id, event_type, payload, received_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (event_id) DO NOTHING
         RETURNING id",
    )
    .bind(&event.id)
    .bind(&event.event_type)
    .bind(&payload)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let status = if inserted.is_some() {
        if event.event_type == "charge.succeeded" {
            sqlx::query(
                "INSERT INTO fulfillments (event_id, charge_id, fulfilled_at) VALUES ($1, $2, $3)",
            )
            .bind(&event.id)
            .bind(event.data.get("charge_id").and_then(|c| c.as_str()))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        "processed"
    } else {
        "duplicate"
    };
    tx.commit().await?;
    // 200 either way: a duplicate is not an error, and anything else makes the provider retry.
    Ok(Json(
        serde_json::json!({ "event_id": event.id, "status": status }),
    ))
}

/// What the dedupe migration did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DedupeOutcome {
    /// Event ids that had more than one row.
    pub events_with_duplicates: i64,
    /// Rows moved to `webhook_events_duplicates` (all but the earliest per event id).
    pub rows_removed: u64,
    /// False when the constraint already existed (the migration had run before).
    pub constraint_added: bool,
}

/// Remove pre-existing duplicate events and add `UNIQUE (event_id)`, in one transaction.
///
/// Safe because: the table lock stops the webhook handler from inserting a fresh duplicate
/// between the delete and the constraint (it waits, then hits the constraint); the earliest
/// row per event id is kept (it is the one that was processed first); the removed rows are
/// moved to `webhook_events_duplicates`, not thrown away; and a failure anywhere rolls all of
/// it back. Running it twice is a no-op. Turned down for this size: `CREATE UNIQUE INDEX
/// CONCURRENTLY` + `ADD CONSTRAINT ... USING INDEX`, which avoids blocking writers during the
/// index build on a huge table but can't run in a transaction, so a duplicate arriving
/// mid-build fails it and leaves an invalid index to clean up.
pub async fn dedupe_webhook_events(pool: &PgPool) -> Result<DedupeOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // SHARE ROW EXCLUSIVE: readers carry on, writers wait, and two copies of this migration
    // serialise (the mode conflicts with itself).
    sqlx::query("LOCK TABLE webhook_events IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint
                        WHERE conname = 'webhook_events_event_id_key'
                          AND conrelid = 'webhook_events'::regclass)",
    )
    .fetch_one(&mut *tx)
    .await?;
    if exists {
        tx.commit().await?;
        return Ok(DedupeOutcome::default());
    }
    let events_with_duplicates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT event_id FROM webhook_events
                               GROUP BY event_id HAVING count(*) > 1) d",
    )
    .fetch_one(&mut *tx)
    .await?;
    let moved = sqlx::query(
        "WITH ranked AS (
             SELECT id, row_number() OVER (PARTITION BY event_id ORDER BY received_at, id) AS n
             FROM webhook_events
         ), gone AS (
             DELETE FROM webhook_events w USING ranked r
             WHERE w.id = r.id AND r.n > 1
             RETURNING w.id, w.event_id, w.event_type, w.payload, w.received_at
         )
         INSERT INTO webhook_events_duplicates (id, event_id, event_type, payload, received_at)
         SELECT id, event_id, event_type, payload, received_at FROM gone",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_event_id_key UNIQUE (event_id)",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(DedupeOutcome {
        events_with_duplicates,
        rows_removed: moved.rows_affected(),
        constraint_added: true,
    })
}
