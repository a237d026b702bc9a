//! The payments service's HTTP surface: state, router, request parsing and the error enum.
//! Every error is `{"error": {"code": "...", "message": "..."}}`; bad input is a 4xx.

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Json, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;

use crate::faults::{FaultPoint, Faults};
use crate::key::KeyError;
use crate::policy::{Clock, Policy};
use crate::provider::ProviderClient;

/// Everything a handler needs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub provider: ProviderClient,
    pub policy: Policy,
    pub clock: Clock,
    pub faults: Faults,
}

impl AppState {
    pub fn new(pool: PgPool, provider_base_url: &str, policy: Policy, clock: Clock) -> Self {
        Self {
            provider: ProviderClient::new(provider_base_url, policy.provider_timeout),
            pool,
            policy,
            clock,
            faults: Faults::default(),
        }
    }
}

/// The service. `/lab/*` routes are the implementations not to ship, kept for comparison.
pub fn router(state: AppState) -> Router {
    let limit = state.policy.max_body_bytes;
    Router::new()
        .route("/v1/payments", post(crate::payments::create_payment))
        .route("/v1/webhooks/provider", post(crate::webhooks::receive))
        .route(
            "/lab/no-key/payments",
            post(crate::naive::create_payment_without_key),
        )
        .route(
            "/lab/naive/payments",
            post(crate::naive::create_payment_check_then_insert),
        )
        .route("/lab/faults", post(arm_fault))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// What a caller can get wrong, and what can go wrong for us.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("send `Authorization: Bearer <token>`")]
    Unauthorized,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("the request body could not be read")]
    UnreadableBody,
    #[error("this Idempotency-Key was already used with a different request")]
    KeyReused,
    #[error("a request with this Idempotency-Key is still in progress; retry later")]
    InFlight,
    #[error("the payment provider did not answer; retry with the same Idempotency-Key")]
    ProviderUnavailable,
    #[error("simulated crash {}", .0.as_str())]
    SimulatedCrash(FaultPoint),
    #[error("internal error")]
    Internal(#[from] sqlx::Error),
    #[error("internal error")]
    TaskFailed,
    #[error("no such route")]
    NotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Key(KeyError::Missing) => (StatusCode::BAD_REQUEST, "idempotency_key_missing"),
            Key(_) => (StatusCode::BAD_REQUEST, "idempotency_key_invalid"),
            MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            InvalidRequest(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            UnreadableBody => (StatusCode::BAD_REQUEST, "unreadable_body"),
            KeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            InFlight => (StatusCode::CONFLICT, "request_in_progress"),
            ProviderUnavailable => (StatusCode::BAD_GATEWAY, "provider_unavailable"),
            SimulatedCrash(_) => (StatusCode::INTERNAL_SERVER_ERROR, "simulated_crash"),
            Internal(_) | TaskFailed => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            NotFound => (StatusCode::NOT_FOUND, "not_found"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        }
    }

    /// The JSON error body, as bytes (also what a stored error response replays).
    pub fn body(code: &str, message: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "error": { "code": code, "message": message } }))
            .expect("json serialises")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(e) = &self {
            // The detail goes to the log, never to the client (it may contain SQL).
            tracing::error!(error = %e, "internal error");
        }
        let mut resp =
            (status, json_bytes(ApiError::body(code, &self.to_string()))).into_response();
        let h = resp.headers_mut();
        match self {
            ApiError::InFlight => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Unauthorized => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        resp
    }
}

/// A body already serialised to JSON bytes, with its content type.
pub fn json_bytes(body: Vec<u8>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// Read a JSON body into `T`. Syntax errors are 400, wrong types and missing fields 422,
/// oversized bodies 413, a non-JSON content type 415 — the caller's mistake in every case.
pub fn parse_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge(limit)
        } else {
            ApiError::UnreadableBody
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::InvalidRequest(e.to_string()),
        _ => ApiError::MalformedJson(e.to_string()),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArmFault {
    crash_at: FaultPoint,
}

/// `POST /lab/faults {"crash_at": "after_provider_charge"}`: the next payment crashes there.
async fn arm_fault(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ArmFault { crash_at } = parse_json(&headers, body, state.policy.max_body_bytes)?;
    state.faults.arm(crash_at);
    Ok(Json(serde_json::json!({ "armed": crash_at })))
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
