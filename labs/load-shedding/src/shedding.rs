//! Admission control with the production tower layers: a concurrency limit, and load
//! shedding in front of it. Nothing here is hand-written except the 503 it answers with.
//!
//! - `GlobalConcurrencyLimitLayer` (tower): at most N requests inside the handlers. The
//!   "global" variant shares one semaphore across every route it wraps — axum applies
//!   `Router::layer` to each route separately, so the plain `ConcurrencyLimitLayer` would
//!   give each route its own N. **Alone it queues:** a request that finds N in flight waits
//!   in `poll_ready` for a permit, exactly like a waiter in the connection pool, so under a
//!   spike the queue (and the latency) grows without bound. The limit moved the queue; it
//!   did not remove it.
//! - `LoadShedLayer` (tower): calls the inner service's `poll_ready` once and, if it is not
//!   ready (no permit), fails the request at once with `Overloaded` instead of waiting.
//! - `HandleErrorLayer` (axum) turns `Overloaded` into `503 Service Unavailable` with
//!   `Retry-After: 1` and the JSON error body — an answer in microseconds, no SQL, so the
//!   client can back off or try another replica while the admitted requests run at
//!   unloaded speed.

use std::sync::Arc;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::load_shed::error::Overloaded;
use tower::{BoxError, ServiceBuilder};

use crate::ledger::REJECTED_BY;

/// Seconds a shed client is told to wait before retrying.
pub const RETRY_AFTER_S: u32 = 1;

/// A concurrency budget of `permits`, shared by every route of `router`; with `shed`, a
/// request that finds it full is answered 503 at once, otherwise it waits for a permit.
pub fn budget<S>(router: Router<S>, permits: usize, shed: bool) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let semaphore = Arc::new(Semaphore::new(permits.max(1)));
    let limit = GlobalConcurrencyLimitLayer::with_semaphore(semaphore);
    if shed {
        router.layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .layer(LoadShedLayer::new())
                .layer(limit),
        )
    } else {
        router.layer(limit)
    }
}

/// `503` + `Retry-After` for a shed request.
async fn overloaded(err: BoxError) -> Response {
    if err.is::<Overloaded>() {
        unavailable(
            "overloaded",
            "the service is at its concurrency limit; retry after the Retry-After delay",
            "limit",
        )
    } else {
        labkit::http::error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the admission layer failed",
        )
    }
}

/// A 503 with `Retry-After` and the JSON error body; `by` names the mechanism (for the
/// ledger and the curious).
pub fn unavailable(code: &str, message: &str, by: &'static str) -> Response {
    let mut resp =
        labkit::http::error_response(StatusCode::SERVICE_UNAVAILABLE, code, message.to_string());
    let headers = resp.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    headers.insert(REJECTED_BY, HeaderValue::from_static(by));
    resp
}
