//! The demo API behind the limiter, and its errors.
//!
//! | route | limited | who |
//! |---|---|---|
//! | `GET /v1/quote` | yes | per API key, else per client IP |
//! | `GET /v1/account` | yes | needs an API key (401 without) |
//! | `GET /healthz` | no | the limiter's counters, for operators and the lab |
//!
//! Every error is JSON, `{"error": {"code": "...", "message": "..."}}` (labkit's
//! `error_response`), and bad input is always a 4xx: a malformed key 400, a request body on
//! these bodiless routes 413 (`labkit::http::body_limit` reads a declared body away first, so
//! even a 10 MB upload gets its 413 rather than a connection reset), unknown routes 404,
//! other methods 405; what the HTTP parser refuses itself (a NUL byte in a header, 431, 414)
//! gets the same body from `labkit::http`.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router, middleware as layer};
use serde_json::json;

use crate::limiter::Decision;
use crate::middleware::{ClientId, Limits, identify, rate_limit, ratelimit_headers, secs_ceil};
use crate::policy::Policy;

/// The app's state: which instance this is (the lab runs several), and its rate limits.
#[derive(Clone)]
pub struct AppState {
    pub instance: String,
    /// `None` serves the same routes without the rate-limit layer: the baseline the lab's
    /// cost scenario subtracts.
    pub limits: Option<Limits>,
}

/// The largest request body any route takes: none of them takes one.
pub const MAX_BODY: usize = 0;

/// The router: the one place the app is assembled, used by `lab serve`, the lab's scenarios
/// and the tests.
pub fn router(state: AppState) -> Router {
    let mut v1 = Router::new()
        .route("/v1/quote", get(quote))
        .route("/v1/account", get(account));
    if let Some(limits) = &state.limits {
        v1 = v1.route_layer(layer::from_fn_with_state(limits.clone(), rate_limit));
    }
    // Added last = runs first: identify the caller, then limit.
    v1 = v1.route_layer(layer::from_fn(identify));
    let app = Router::new()
        .route("/healthz", get(health))
        .merge(v1)
        .route_layer(layer::from_fn(no_body))
        .fallback(labkit::http::not_found)
        .method_not_allowed_fallback(labkit::http::method_not_allowed)
        .with_state(state);
    // Outermost: a body with a Content-Length over the limit (here: any body) is read away
    // and answered 413 before routing, on every path and method; identity and the limiter
    // never run, so an upload never spends anyone's quota.
    labkit::http::body_limit(app, MAX_BODY)
}

/// Every route here is a GET without a body. A chunked body (no Content-Length, so
/// [`labkit::http::body_limit`] lets it through) is refused too, rather than silently ignored.
async fn no_body(req: Request, next: Next) -> Response {
    if req.headers().contains_key(header::TRANSFER_ENCODING) {
        return ApiError::BodyNotAccepted.into_response();
    }
    next.run(req).await
}

async fn quote(
    State(state): State<AppState>,
    Extension(client): Extension<ClientId>,
) -> Json<serde_json::Value> {
    Json(json!({
        "instance": state.instance,
        "client": client.to_string(),
        "quote": "Be conservative in what you send, liberal in what you accept.",
    }))
}

async fn account(
    State(state): State<AppState>,
    Extension(client): Extension<ClientId>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match client {
        ClientId::ApiKey(key) => Ok(Json(json!({
            "instance": state.instance,
            "api_key_suffix": &key.as_str()[key.as_str().len() - 4..],
            "plan": "demo",
        }))),
        ClientId::Ip(_) => Err(ApiError::MissingApiKey),
    }
}

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    let limiter = state.limits.as_ref().map(|l| {
        json!({
            "algorithm": l.limiter.algorithm().id(),
            "policy": l.limiter.policy().to_string(),
            "fail_mode": l.fail_mode,
            "stats": l.stats.snapshot(),
        })
    });
    Json(json!({ "status": "ok", "instance": state.instance, "limiter": limiter }))
}

/// Everything the API can answer besides success. Each maps to one status and one code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed API key: {0}")]
    MalformedApiKey(&'static str),
    #[error(
        "this endpoint needs an API key: send `x-api-key: <key>` or `Authorization: Bearer <key>`"
    )]
    MissingApiKey,
    #[error("rate limit exceeded ({policy}); retry after {} s", secs_ceil(decision.retry_after).max(1))]
    RateLimited { decision: Decision, policy: Policy },
    #[error("the rate limiter is unavailable and this API fails closed; retry shortly")]
    LimiterUnavailable,
    #[error("these routes take no request body")]
    BodyNotAccepted,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::MalformedApiKey(_) => (StatusCode::BAD_REQUEST, "malformed_api_key"),
            Self::MissingApiKey => (StatusCode::UNAUTHORIZED, "missing_api_key"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::LimiterUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "rate_limiter_unavailable")
            }
            // The code `labkit::http::body_limit` answers with: one code for "no body here".
            Self::BodyNotAccepted => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut response = labkit::http::error_response(status, code, &self);
        let headers = response.headers_mut();
        match &self {
            Self::RateLimited { decision, policy } => {
                let secs = secs_ceil(decision.retry_after).max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
                for (name, value) in ratelimit_headers(policy, decision) {
                    headers.insert(name, value);
                }
            }
            Self::MissingApiKey => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // A short, fixed hint: the outage's length is unknown.
            Self::LimiterUnavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}
