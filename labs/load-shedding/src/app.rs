//! The service: state, the one `router` function, the two endpoints and the admin counters.
//!
//! | route | what |
//! |---|---|
//! | `POST /checkout` | the critical write ([`crate::shop::checkout`]) |
//! | `GET /recommendations?product_id=N` | the non-critical read ([`crate::shop::recommendations`]) |
//! | `GET /admin/stats` | the ledger's counters (never limited) |
//!
//! The layers, outermost first: [`ledger::track`] (own task per request, in-flight count,
//! outcome by `Request-Id`) → the tower budgets of [`shedding`] (per [`Limits`]) → the
//! handler → the [`DeadlineQueue`] when on → the pool.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use labkit::http::{JsonBody, error_response};
use serde::Deserialize;
use sqlx::PgPool;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::deadline::{Clock, DeadlineQueue};
use crate::ledger::{self, Ledger, Work};
use crate::limits::Limits;
use crate::shedding::{self, unavailable};
use crate::shop::{self, CheckoutError, CheckoutRequest};

/// The header a client states how long it will wait with (milliseconds), like gRPC's
/// `grpc-timeout`; the deadline queue uses it.
pub const REQUEST_TIMEOUT_MS: &str = "request-timeout-ms";

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub limits: Limits,
    pub clock: Clock,
    pub queue: Option<DeadlineQueue>,
    pub ledger: Arc<Ledger>,
    /// Tests only: every request that passed admission waits here before its SQL.
    pub gate: Option<Arc<Gate>>,
}

impl AppState {
    pub fn new(pool: PgPool, limits: Limits) -> Self {
        Self::with_clock(pool, limits, Clock::system())
    }

    pub fn with_clock(pool: PgPool, limits: Limits, clock: Clock) -> Self {
        let queue = limits
            .queue_timeout
            .map(|t| DeadlineQueue::new(limits.pool as usize, t, clock.clone()));
        Self {
            pool,
            limits,
            clock,
            queue,
            ledger: Arc::default(),
            gate: None,
        }
    }

    /// Hold every admitted request at `gate` before its SQL (tests force interleavings).
    pub fn gated(mut self, gate: Arc<Gate>) -> Self {
        self.gate = Some(gate);
        self
    }
}

/// A gate a test controls: requests wait at it, the test lets them through one by one.
#[derive(Debug)]
pub struct Gate {
    entered: watch::Sender<usize>,
    open: Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            entered: watch::channel(0).0,
            open: Semaphore::new(0),
        }
    }
}

impl Gate {
    async fn pass(&self) {
        self.entered.send_modify(|n| *n += 1);
        if let Ok(p) = self.open.acquire().await {
            p.forget();
        }
    }

    /// Let `n` waiting (or future) requests through.
    pub fn release(&self, n: usize) {
        self.open.add_permits(n);
    }

    /// Resolve once `n` requests have reached the gate in total.
    pub async fn until_entered(&self, n: usize) {
        let mut rx = self.entered.subscribe();
        let _ = rx.wait_for(|e| *e >= n).await;
    }

    pub fn entered(&self) -> usize {
        *self.entered.borrow()
    }
}

/// When the request reached the server (stamped by the outermost layer, on the state's
/// clock): deadlines run from here, not from when a handler got to run.
#[derive(Debug, Clone, Copy)]
struct Arrival(Instant);

/// The service, assembled from `state.limits`: used by the lab run, `lab serve`, the tests
/// and the bench.
pub fn router(state: AppState) -> Router {
    let limits = state.limits;
    let checkout = Router::new().route("/checkout", post(checkout));
    let recs = Router::new().route("/recommendations", get(recommendations));
    let endpoints = match (limits.limit, limits.recs_budget) {
        // Priorities: the non-critical read has a budget of its own, always shed when full.
        (limit, Some(recs_budget)) => {
            let checkout = match limit {
                Some(n) => shedding::budget(checkout, n, limits.shed),
                None => checkout,
            };
            checkout.merge(shedding::budget(recs, recs_budget, true))
        }
        // One budget for both endpoints: under a spike, checkout is shed like the rest.
        (Some(limit), None) => shedding::budget(checkout.merge(recs), limit, limits.shed),
        (None, None) => checkout.merge(recs),
    };
    let clock = state.clock.clone();
    let ledger = state.ledger.clone();
    let app = endpoints
        .route("/admin/stats", get(stats))
        .fallback(labkit::http::not_found)
        .method_not_allowed_fallback(labkit::http::method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn(
            move |mut req: axum::extract::Request, next: axum::middleware::Next| {
                req.extensions_mut().insert(Arrival(clock.now()));
                next.run(req)
            },
        ))
        .layer(axum::middleware::from_fn_with_state(ledger, ledger::track));
    // A checkout is a few dozen bytes: a bigger body is a JSON 413, answered without
    // resetting the connection (and before it takes a slot or a pool connection).
    labkit::http::body_limit(app, MAX_BODY_BYTES)
}

/// The largest request body accepted (a checkout with room to spare).
const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecsQuery {
    product_id: i64,
}

async fn recommendations(
    State(state): State<AppState>,
    Extension(arrival): Extension<Arrival>,
    headers: HeaderMap,
    query: Result<Query<RecsQuery>, QueryRejection>,
) -> Response {
    let product_id = match query {
        Ok(Query(q)) if q.product_id > 0 => q.product_id,
        Ok(_) => return bad_input("invalid_product_id", "product_id must be positive"),
        Err(e) => return bad_input("invalid_query", e.body_text()),
    };
    let _slot = match admit(&state, arrival, &headers).await {
        Ok(slot) => slot,
        Err(resp) => return resp,
    };
    match shop::recommendations(&state.pool, product_id).await {
        Ok(recs) => with_work(
            Json(serde_json::json!({ "product_id": product_id, "recommendations": recs })),
            shop::RECOMMENDATIONS_STATEMENTS,
        ),
        Err(e) => db_error(&e),
    }
}

async fn checkout(
    State(state): State<AppState>,
    Extension(arrival): Extension<Arrival>,
    headers: HeaderMap,
    body: Result<JsonBody<CheckoutRequest>, Response>,
) -> Response {
    let req = match body {
        Ok(JsonBody(req)) => req,
        Err(rejection) => return rejection,
    };
    if req.customer_id <= 0 || req.product_id <= 0 || !(1..=100).contains(&req.qty) {
        return error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_checkout",
            "customer_id and product_id must be positive, qty between 1 and 100",
        );
    }
    let _slot = match admit(&state, arrival, &headers).await {
        Ok(slot) => slot,
        Err(resp) => return resp,
    };
    match shop::checkout(&state.pool, req).await {
        Ok(order) => {
            let mut resp = with_work(Json(order), shop::CHECKOUT_STATEMENTS);
            *resp.status_mut() = StatusCode::CREATED;
            resp
        }
        Err(CheckoutError::Unavailable) => {
            let mut resp = error_response(
                StatusCode::CONFLICT,
                "unavailable",
                "no such product, or not enough stock",
            );
            // The UPDATE ran (and the rollback): count it.
            resp.extensions_mut().insert(Work { statements: 1 });
            resp
        }
        Err(CheckoutError::Db(e)) => db_error(&e),
    }
}

async fn stats(State(state): State<AppState>) -> Response {
    Json(state.ledger.stats()).into_response()
}

/// The deadline queue (when on), then the test gate. `Err` is the response to send.
async fn admit(
    state: &AppState,
    arrival: Arrival,
    headers: &HeaderMap,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Response> {
    let client_timeout = match headers.get(REQUEST_TIMEOUT_MS) {
        None => None,
        Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            Some(ms) => Some(Duration::from_millis(ms)),
            None => {
                return Err(bad_input(
                    "invalid_request_timeout",
                    "Request-Timeout-Ms must be a whole number of milliseconds",
                ));
            }
        },
    };
    let slot = match &state.queue {
        Some(queue) => match queue.admit(queue.deadline(arrival.0, client_timeout)).await {
            Ok(slot) => Some(slot),
            Err(expired) => {
                return Err(unavailable(
                    "deadline_exceeded",
                    &format!("{expired}; it was dropped without running"),
                    "deadline",
                ));
            }
        },
        None => None,
    };
    if let Some(gate) = &state.gate {
        gate.pass().await;
    }
    Ok(slot)
}

fn with_work(body: impl IntoResponse, statements: u64) -> Response {
    let mut resp = body.into_response();
    resp.extensions_mut().insert(Work { statements });
    resp
}

fn bad_input(code: &str, message: impl std::fmt::Display) -> Response {
    error_response(StatusCode::BAD_REQUEST, code, message)
}

/// Never SQL text to the client; the pool timing out under load is a 503.
fn db_error(e: &sqlx::Error) -> Response {
    tracing::warn!(error = %e, "database error");
    match e {
        sqlx::Error::PoolTimedOut => unavailable(
            "pool_timeout",
            "no database connection became free in time",
            "pool",
        ),
        _ => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "database_error",
            "the database could not complete the request",
        ),
    }
}
