//! The REST side's errors: one enum, one status code each, one JSON shape
//! `{"error": {"code": "...", "message": "..."}}`. Database errors are logged and answered
//! with a generic 500: SQL text and driver messages never reach a client.
//!
//! (The GraphQL endpoint answers in GraphQL's own `{"errors": [...]}` shape instead; see
//! `graphql_http.rs`.)

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{resource} {id} does not exist")]
    NotFound { resource: &'static str, id: i64 },
    #[error("`{value}` is not a valid {what} id")]
    BadId { what: &'static str, value: String },
    #[error("{0}")]
    BadQuery(String),
    #[error("no route for {0}")]
    NoRoute(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("internal error")]
    Db(#[from] sqlx::Error),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Self::BadId { .. } => (StatusCode::BAD_REQUEST, "invalid_id"),
            Self::BadQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query_parameter"),
            Self::NoRoute(_) => (StatusCode::NOT_FOUND, "no_route"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Db(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Db(e) = &self {
            tracing::error!(error = %e, "database error in a REST handler");
        }
        let body = serde_json::json!({ "error": { "code": code, "message": self.to_string() } });
        (status, Json(body)).into_response()
    }
}

/// Parse a path segment as an id: `/v1/users/abc` is a 400 with our JSON body, not axum's
/// plain-text rejection.
pub fn parse_id(what: &'static str, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::BadId {
            what,
            value: raw.chars().take(40).collect(),
        })
}
