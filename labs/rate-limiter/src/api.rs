//! The demo API behind the limiter, and its errors.
//!
//! | route | limited | who |
//! |---|---|---|
//! | `GET /v1/quote` | yes | per API key, else per client IP |
//! | `GET /v1/account` | yes | needs an API key (401 without) |
//! | `GET /healthz` | no | the limiter's counters, for operators and the lab |
//!
//! Every error is JSON, `{"error": {"code": "...", "message": "..."}}`.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
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

/// The router, shared by `lab serve`, the lab's scenarios and the tests.
pub fn router(state: AppState) -> Router {
    let mut v1 = Router::new()
        .route("/v1/quote", get(quote))
        .route("/v1/account", get(account));
    if let Some(limits) = &state.limits {
        v1 = v1.route_layer(layer::from_fn_with_state(limits.clone(), rate_limit));
    }
    // Added last = runs first: identify the caller, then limit.
    v1 = v1.route_layer(layer::from_fn(identify));
    Router::new()
        .route("/healthz", get(health))
        .merge(v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
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

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
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
    #[error("no such route")]
    NotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
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
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = Json(json!({ "error": { "code": code, "message": self.to_string() } }));
        let mut response = (status, body).into_response();
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
