//! The REST side's errors: one enum, one status code each, one JSON shape
//! `{"error": {"code": "...", "message": "..."}}` (labkit's). Database errors are logged and
//! answered with a generic 500: SQL text and driver messages never reach a client.
//!
//! (A GraphQL request answers in GraphQL's own `{"errors": [...]}` shape instead; see
//! `graphql_http.rs`.)
//!
//! Cancelled work is not an error. When a run is interrupted (Ctrl-C drops it) or a server
//! stops, requests still in flight lose their database: the pool is closed, or Postgres ends
//! the session while the scratch database is dropped. Those failures are logged at `debug`;
//! every other database error at `error`.

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
            Self::Db(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Db(e) = &self {
            log_db_error(e, "a REST handler");
        }
        labkit::http::error_response(status, code, self)
    }
}

/// Is this what a request sees when the run or the server is being shut down under it?
/// The pool closed, or Postgres ending the session (`admin_shutdown`, `crash_shutdown`,
/// `cannot_connect_now`, `query_canceled`, or the database being dropped), or the socket
/// closed on it.
pub fn is_shutdown(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            Some("57P01" | "57P02" | "57P03" | "57014" | "3D000")
        ),
        sqlx::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// Log a database error from `place` (`"a resolver"`): `debug` when it is shutdown, `error`
/// otherwise.
pub fn log_db_error(e: &sqlx::Error, place: &str) {
    if is_shutdown(e) {
        tracing::debug!(error = %e, "database gone while {place} ran: shutting down");
    } else {
        tracing::error!(error = %e, "database error in {place}");
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
