//! Serving a lab's axum router on a real socket, the same way for `lab serve` and tests.
//!
//! Tests call [`spawn`] (binds `127.0.0.1:0`, like zero2prod's `spawn_app`) and talk real
//! HTTP to [`TestServer::url`] with [`client`].

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Serve `router` on `listener` until `shutdown` completes (graceful: in-flight requests
/// finish). The one serving path for binaries and tests.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// A server on an ephemeral loopback port, stopped when dropped.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// `http://127.0.0.1:PORT` + `path`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop gracefully and wait for the server task to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Bind `127.0.0.1:0` and serve `router` in a background task.
pub async fn spawn(router: axum::Router) -> std::io::Result<TestServer> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, router, async move {
        let _ = rx.await;
    }));
    Ok(TestServer {
        addr,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// An HTTP client for loopback servers: no proxy (a `HTTP_PROXY` in the environment must
/// not reroute loopback traffic), connection reuse on.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()
        .expect("reqwest client builds")
}

// ---------------------------------------------------------------------------------------
// Errors: every 4xx/5xx a lab's server sends is `{"error": {"code": "...", "message": "..."}}`.
// ---------------------------------------------------------------------------------------

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The JSON error body every lab's server uses: `{"error": {"code", "message"}}`.
pub fn error_body(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "error": { "code": code, "message": message } })
}

/// A response with `status` and the JSON error body.
pub fn error_response(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(error_body(code, &message.to_string()))).into_response()
}

/// `Router::fallback` for unknown paths: 404 with a JSON body.
pub async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// `Router::method_not_allowed_fallback`: 405 with a JSON body.
pub async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// The first string in `v` (keys included) holding a NUL character, as a JSON path like
/// `data.charge_id`. Postgres `text` cannot store NUL: a body that holds one must be
/// rejected at the edge with a 4xx, or the INSERT fails and the client sees a 500.
pub fn find_nul(v: &serde_json::Value) -> Option<String> {
    fn walk(v: &serde_json::Value, path: &str) -> Option<String> {
        let here = |p: &str| {
            if p.is_empty() {
                "(body)".to_string()
            } else {
                p.to_string()
            }
        };
        match v {
            serde_json::Value::String(s) if s.contains('\0') => Some(here(path)),
            serde_json::Value::Array(a) => a
                .iter()
                .enumerate()
                .find_map(|(i, x)| walk(x, &format!("{path}[{i}]"))),
            serde_json::Value::Object(o) => o.iter().find_map(|(k, x)| {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if k.contains('\0') {
                    Some(here(&p))
                } else {
                    walk(x, &p)
                }
            }),
            _ => None,
        }
    }
    walk(v, "")
}

/// A JSON body extractor whose rejections are 4xx with the JSON error body:
/// 415 without a JSON `Content-Type`, 413 over the body limit, 400 for malformed JSON or a
/// NUL character in any string, 422 when the JSON does not have the expected shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if !is_json {
            return Err(error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                let status = e.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "body_too_large"
                } else {
                    "bad_body"
                };
                error_response(status, code, e.body_text())
            })?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            error_response(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("malformed JSON: {e}"),
            )
        })?;
        if let Some(path) = find_nul(&value) {
            return Err(error_response(
                StatusCode::BAD_REQUEST,
                "invalid_text",
                format!("{path}: text must not contain a NUL character (\\u0000)"),
            ));
        }
        serde_json::from_value(value).map(JsonBody).map_err(|e| {
            error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                e.to_string(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_nul_names_the_path() {
        let v = serde_json::json!({"id": "ok", "data": {"charge_id": "ch\u{0}x"}});
        assert_eq!(find_nul(&v).as_deref(), Some("data.charge_id"));
        let v = serde_json::json!(["a", "b\u{0}"]);
        assert_eq!(find_nul(&v).as_deref(), Some("[1]"));
        assert_eq!(find_nul(&serde_json::json!({"a": [1, "x"]})), None);
    }
}
