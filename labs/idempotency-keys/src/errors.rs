//! What a caller can get wrong, and what can go wrong for us: the error enum → status codes.
//!
//! Every error is `{"error": {"code": "...", "message": "..."}}` (labkit's
//! [`error_body`](labkit::http::error_body)); bad input is always a 4xx. Bodies are refused
//! at the edge by [`labkit::http::JsonBody`] — 415 without a JSON content type, 413 over
//! [`Policy::max_body_bytes`](crate::Policy), 400 for malformed JSON *or a NUL character in
//! any string* (Postgres `text` and `jsonb` cannot store `\u0000`: without that check the
//! INSERT fails and the client sees a 500), 422 for the wrong shape — and that response is
//! passed through as [`ApiError::Body`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::faults::FaultPoint;
use crate::key::KeyError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("send `Authorization: Bearer <token>`")]
    Unauthorized,
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Refused by [`labkit::http::JsonBody`]; already a JSON error response.
    #[error("the request body was refused")]
    Body(Box<Response>),
    /// Parsed, but not a valid request (business rules: amount range, currency code, ...).
    #[error("{0}")]
    InvalidRequest(String),
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
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Key(KeyError::Missing) => (StatusCode::BAD_REQUEST, "idempotency_key_missing"),
            Key(_) => (StatusCode::BAD_REQUEST, "idempotency_key_invalid"),
            Body(resp) => (resp.status(), "invalid_body"),
            InvalidRequest(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            KeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            InFlight => (StatusCode::CONFLICT, "request_in_progress"),
            ProviderUnavailable => (StatusCode::BAD_GATEWAY, "provider_unavailable"),
            SimulatedCrash(_) => (StatusCode::INTERNAL_SERVER_ERROR, "simulated_crash"),
            Internal(_) | TaskFailed => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The JSON error body, as bytes (also what a stored error response replays).
    pub fn body(code: &str, message: &str) -> Vec<u8> {
        labkit::http::error_body(code, message)
            .to_string()
            .into_bytes()
    }
}

impl From<Response> for ApiError {
    fn from(rejection: Response) -> Self {
        ApiError::Body(Box::new(rejection))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = self.to_string();
        let header = match self {
            ApiError::Body(resp) => return *resp,
            ApiError::Internal(e) => {
                // The detail goes to the log, never to the client (it may contain SQL).
                tracing::error!(error = %e, "internal error");
                None
            }
            ApiError::InFlight => Some((header::RETRY_AFTER, "1")),
            ApiError::Unauthorized => Some((header::WWW_AUTHENTICATE, "Bearer")),
            _ => None,
        };
        let mut resp = (status, json_bytes(ApiError::body(code, &message))).into_response();
        if let Some((name, value)) = header {
            resp.headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        resp
    }
}

/// A body already serialised to JSON bytes, with its content type.
pub fn json_bytes(body: Vec<u8>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}
