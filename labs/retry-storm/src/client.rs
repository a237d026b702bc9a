//! The users: one HTTP GET per request to the front layer, classified.

use std::time::Duration;

use axum::http::StatusCode;

/// What a user got back with a 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The real answer, from the dependency.
    Dependency,
    /// The breaker refused the call and the service answered its fallback, fast.
    FallbackCircuitOpen,
    /// The call failed and the service answered its fallback.
    FallbackFailed,
}

/// A user-visible failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UserError {
    #[error("the service answered {0}")]
    Status(StatusCode),
    #[error("no answer within the user's timeout")]
    Timeout,
    #[error("transport error: {0}")]
    Transport(String),
}

/// The header every layer passes on, so the dependency can say which user request each
/// call it received belongs to.
pub const REQUEST_ID: &str = "x-request-id";

/// `GET url` as user request number `id`, with a per-request timeout (a user who gives up).
pub async fn get(
    client: &reqwest::Client,
    url: &str,
    id: u64,
    timeout: Duration,
) -> Result<Served, UserError> {
    let res = client
        .get(url)
        .header(REQUEST_ID, id)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                UserError::Timeout
            } else {
                UserError::Transport(e.to_string())
            }
        })?;
    let status = res.status();
    let served = match (
        res.headers().get("x-source").map(|v| v.as_bytes()),
        res.headers().get("x-fallback-reason").map(|v| v.as_bytes()),
    ) {
        (Some(b"fallback"), Some(b"circuit_open")) => Served::FallbackCircuitOpen,
        (Some(b"fallback"), _) => Served::FallbackFailed,
        _ => Served::Dependency,
    };
    let _ = res.bytes().await;
    if status.is_success() {
        Ok(served)
    } else {
        Err(UserError::Status(status))
    }
}
