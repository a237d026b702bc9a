//! The ingestion API: the same event, written two ways.
//!
//! - `POST /events` inserts the row and commits before answering `201`: when the client
//!   hears back, the event is on disk. Its latency includes a WAL flush.
//! - `POST /events/queued` appends the event to a Redis stream and answers `202`: the
//!   writer ([`crate::queue`]) makes it durable a batch later.
//! - `GET /events/stats` shows rows written and the stream's backlog.
//!
//! Both paths assign the event id here, at the edge, and return it: it is what makes the
//! queue writer's batches idempotent and what a client would retry with.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use labkit::http::{JsonBody, error_response};
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::queue;
use crate::schema::{self, Event};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub pg: PgPool,
    /// The stream's Redis (a multiplexed connection: many requests share it).
    pub redis: MultiplexedConnection,
    pub stream: Arc<str>,
}

/// The one router `run`, `serve`, the tests and the bench use.
pub fn router(state: AppState) -> Router {
    let app = Router::new()
        .route("/events", post(direct))
        .route("/events/queued", post(queued))
        .route("/events/stats", get(stats))
        .fallback(labkit::http::not_found)
        .method_not_allowed_fallback(labkit::http::method_not_allowed)
        .with_state(state);
    // An event is a few hundred bytes (payload at most 4 KiB): a bigger body is a 413 with
    // the JSON error body, answered without resetting the connection.
    labkit::http::body_limit(app, MAX_BODY_BYTES)
}

/// The largest request body accepted: one event with its largest payload, and room to spare.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The request body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    pub device_id: i32,
    pub kind: String,
    pub value: f64,
    #[serde(default)]
    pub payload: String,
}

/// What a handler can fail with; each maps to a status and a JSON error body (never SQL).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(String),
    #[error("the database is unavailable")]
    Database(#[source] sqlx::Error),
    #[error("the queue is unavailable")]
    Queue(#[source] queue::QueueError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Invalid(m) => {
                error_response(StatusCode::UNPROCESSABLE_ENTITY, "invalid_event", m)
            }
            Self::Database(e) => {
                // A 503 per request says it; the log would repeat it thousands of times.
                tracing::debug!("insert failed: {e}");
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    &self,
                )
            }
            Self::Queue(e) => {
                tracing::debug!("enqueue failed: {e}");
                error_response(StatusCode::SERVICE_UNAVAILABLE, "queue_unavailable", &self)
            }
        }
    }
}

impl NewEvent {
    /// Validate once at the boundary and stamp the id and the time it was received.
    pub fn into_event(self) -> Result<Event, ApiError> {
        let kind_ok = !self.kind.is_empty()
            && self.kind.len() <= 32
            && self
                .kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !kind_ok {
            return Err(ApiError::Invalid(
                "kind must be 1-32 characters of a-z, 0-9 and _".into(),
            ));
        }
        if self.payload.len() > 4_096 {
            return Err(ApiError::Invalid(
                "payload must be at most 4096 bytes".into(),
            ));
        }
        if !self.value.is_finite() {
            return Err(ApiError::Invalid("value must be a finite number".into()));
        }
        Ok(Event {
            event_id: Uuid::new_v4(),
            device_id: self.device_id,
            kind: self.kind,
            value: self.value,
            payload: self.payload,
            created_at: chrono::Utc::now(),
        })
    }
}

/// `POST /events`: insert and commit, then `201`.
async fn direct(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<NewEvent>,
) -> Result<Response, ApiError> {
    let event = body.into_event()?;
    schema::insert_one(&s.pg, &event)
        .await
        .map_err(ApiError::Database)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"event_id": event.event_id, "durable": true})),
    )
        .into_response())
}

/// `POST /events/queued`: `XADD`, then `202`.
async fn queued(
    State(mut s): State<AppState>,
    JsonBody(body): JsonBody<NewEvent>,
) -> Result<Response, ApiError> {
    let event = body.into_event()?;
    let stream_id = queue::enqueue(&mut s.redis, &s.stream, &event)
        .await
        .map_err(ApiError::Queue)?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"event_id": event.event_id, "stream_id": stream_id, "durable": false})),
    )
        .into_response())
}

/// `GET /events/stats`: rows in `events`, entries waiting in the stream.
async fn stats(State(mut s): State<AppState>) -> Result<Response, ApiError> {
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&s.pg)
        .await
        .map_err(ApiError::Database)?;
    let backlog = queue::backlog(&mut s.redis, &s.stream)
        .await
        .map_err(ApiError::Queue)?;
    Ok(axum::Json(json!({"rows": rows, "stream_backlog": backlog})).into_response())
}

/// Client side: POST `body` to `path` on a load connection; the event id when the API
/// accepted it (201 or 202).
pub async fn post_event(
    conn: &mut labkit::http::Conn,
    path: &str,
    body: &NewEvent,
) -> Result<Uuid, String> {
    let json = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let reply = conn
        .send(axum::http::Method::POST, path, &[], Some(json.into()))
        .await
        .map_err(|e| e.to_string())?;
    if !(reply.status == StatusCode::CREATED || reply.status == StatusCode::ACCEPTED) {
        return Err(format!("HTTP {}", reply.status));
    }
    let v: serde_json::Value = reply.json().map_err(|e| e.to_string())?;
    v["event_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "no event_id in the response".to_string())
}

/// A request body like the generated events (for load and tests).
pub fn sample_body(n: u64) -> NewEvent {
    let e = Event::nth(7, n);
    NewEvent {
        device_id: e.device_id,
        kind: e.kind,
        value: e.value,
        payload: e.payload,
    }
}
