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
///
/// Requests the HTTP parser rejects before the router ever sees them (a NUL byte in a
/// header, headers too large: 431, a URI too long: 414) get the same JSON error body as
/// every other error: see [`JsonErrors`].
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Each connection's router carries the peer address as `ConnectInfo<SocketAddr>` (what
    // `into_make_service_with_connect_info` does for axum's own listener): labs key
    // per-client state by it, e.g. rate-limiter's anonymous clients.
    let per_connection = tower::service_fn(
        move |conn: axum::serve::IncomingStream<'_, JsonErrorListener>| {
            let peer = axum::extract::ConnectInfo(*conn.remote_addr());
            let app = tower::Layer::layer(&axum::Extension(peer), router.clone());
            std::future::ready(Ok::<_, std::convert::Infallible>(app))
        },
    );
    axum::serve(JsonErrorListener(listener), per_connection)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A TCP listener whose connections are wrapped in [`JsonErrors`].
struct JsonErrorListener(TcpListener);

impl axum::serve::Listener for JsonErrorListener {
    type Io = JsonErrors<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (JsonErrors::new(stream), addr);
                }
                // Out of file descriptors and the like: back off instead of spinning (what
                // axum's own TcpListener does).
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection wrapper that gives hyper's own error responses a JSON body.
///
/// When hyper cannot parse a request (a NUL byte in a header, too many or too large
/// headers, a URI over its limit) it answers 400/431/414 itself with an empty body and
/// closes the connection; the router never runs, so no handler can shape that answer. This
/// wrapper recognises exactly those responses on the way out — a 4xx head carrying
/// `content-length: 0` and no `content-type`, which no lab handler sends (every error of
/// ours has a JSON body) — and rewrites them to carry `{"error":{"code","message"}}`.
pub struct JsonErrors<IO> {
    inner: IO,
    /// Rewritten bytes still to write before anything else.
    pending: Vec<u8>,
}

impl<IO> JsonErrors<IO> {
    pub fn new(inner: IO) -> Self {
        Self {
            inner,
            pending: Vec::new(),
        }
    }
}

/// hyper's bodiless error head, rewritten with a JSON body; `None` for any other bytes.
fn rewrite_bodiless_error(buf: &[u8]) -> Option<Vec<u8>> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status: u16 = head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let lower = head.to_ascii_lowercase();
    if !(400..500).contains(&status)
        || !lower.contains("\r\ncontent-length: 0\r\n")
        || lower.contains("\r\ncontent-type:")
    {
        return None;
    }
    let (code, message) = match status {
        431 => (
            "headers_too_large",
            "the request's headers are too many or too large",
        ),
        414 => ("uri_too_long", "the request URI is too long"),
        _ => (
            "bad_request",
            "the HTTP request could not be parsed (e.g. a NUL or control character in a header)",
        ),
    };
    let body = error_body(code, message).to_string();
    let mut out = Vec::with_capacity(head_end + body.len() + 64);
    let mut lines = head[..head_end - 4].split("\r\n");
    out.extend_from_slice(lines.next()?.as_bytes());
    for line in lines {
        out.extend_from_slice(b"\r\n");
        if line.eq_ignore_ascii_case("content-length: 0") {
            out.extend_from_slice(b"content-type: application/json\r\n");
            out.extend_from_slice(format!("content-length: {}", body.len()).as_bytes());
        } else {
            out.extend_from_slice(line.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    out.extend_from_slice(&buf[head_end..]);
    Some(out)
}

impl<IO: tokio::io::AsyncWrite + Unpin> JsonErrors<IO> {
    fn poll_drain(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while !self.pending.is_empty() {
            match std::pin::Pin::new(&mut self.inner).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.pending.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for JsonErrors<IO> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for JsonErrors<IO> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        if self.poll_drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        if buf.starts_with(b"HTTP/1.1 4")
            && let Some(rewritten) = rewrite_bodiless_error(buf)
        {
            // Accept the whole of hyper's buffer; write our version of it.
            self.pending = rewritten;
            let _ = self.poll_drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.poll_drain(cx)?.is_pending() {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.poll_drain(cx)?.is_pending() {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
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
// Load: a lean client for load phases.
// ---------------------------------------------------------------------------------------

/// One keep-alive HTTP/1.1 connection, as one wrk connection: requests go out one at a time,
/// with no pool lookup, redirect, proxy or cookie handling on the way. A load phase gives
/// each worker its own ([`Connections`]), so the driver costs a few microseconds of CPU per
/// request instead of reqwest's tens, and does not become what it measures. Use
/// [`client`] (reqwest) for everything that is not a hot load loop.
pub struct Conn {
    addr: SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("addr", &self.addr).finish()
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: axum::http::StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// A connection-level failure (refused, reset, malformed response).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnError(String);

impl Conn {
    /// A connection to `addr`, opened on first use (and reopened if the server closed it).
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    async fn sender(
        &mut self,
    ) -> Result<
        &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
        ConnError,
    > {
        let reuse = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        if !reuse {
            let stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|e| ConnError(format!("connect {}: {e}", self.addr)))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| ConnError(format!("handshake: {e}")))?;
            // The connection task ends when the sender drops or the server closes.
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("just set"))
    }

    /// Send `method path` with an optional JSON body and extra headers; read the whole reply.
    pub async fn send(
        &mut self,
        method: axum::http::Method,
        path: &str,
        headers: &[(&str, &str)],
        json_body: Option<bytes::Bytes>,
    ) -> Result<Reply, ConnError> {
        use http_body_util::BodyExt;
        let host = self.addr.to_string();
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(axum::http::header::HOST, host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match json_body {
            Some(b) => {
                req = req.header(axum::http::header::CONTENT_TYPE, "application/json");
                b
            }
            None => bytes::Bytes::new(),
        };
        let req = req
            .body(http_body_util::Full::new(body))
            .map_err(|e| ConnError(format!("bad request: {e}")))?;
        let sender = self.sender().await?;
        sender
            .ready()
            .await
            .map_err(|e| ConnError(format!("connection: {e}")))?;
        let res = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(ConnError(format!("request: {e}")));
            }
        };
        let (parts, body) = res.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| ConnError(format!("body: {e}")))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<Reply, ConnError> {
        self.send(axum::http::Method::GET, path, &[], None).await
    }
}

/// One [`Conn`] per load worker: `conns.get(call.worker)` in a closed-loop operation. Each
/// worker only ever locks its own, so the lock is never contended.
#[derive(Debug)]
pub struct Connections {
    conns: Vec<tokio::sync::Mutex<Conn>>,
}

impl Connections {
    pub fn new(addr: SocketAddr, workers: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            conns: (0..workers.max(1))
                .map(|_| tokio::sync::Mutex::new(Conn::new(addr)))
                .collect(),
        })
    }

    /// The connection of `worker` (wraps around if there are more workers than connections).
    pub async fn get(&self, worker: usize) -> tokio::sync::MutexGuard<'_, Conn> {
        self.conns[worker % self.conns.len()].lock().await
    }
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

/// Read and discard at most this much of an oversized body before answering 413.
const DRAIN_AT_MOST: u64 = 64 * 1024 * 1024;

/// Limit request bodies to `limit` bytes on `router`, answering `413 body_too_large` with
/// the JSON error body — and without a connection reset in its place.
///
/// `DefaultBodyLimit` alone (and so [`JsonBody`]) answers 413 after reading `limit` bytes;
/// the server then closes the connection with the rest of the client's body unread, the
/// kernel resets it, and a client still writing (reqwest, most SDKs) often loses the 413
/// (found by the idempotency-keys lab's bad-input corpus: 2 of 7 routes with reqwest, 100
/// of 100 with a Python client). So a body whose `Content-Length` is over the limit is
/// refused before any handler runs: a client that asked `Expect: 100-continue` (curl does
/// for big bodies) gets the 413 at once and never sends the body; any other client's body
/// is read and thrown away first (up to 64 MiB or 5 s — beyond that the reset is the lesser
/// evil), the lingering close nginx does.
pub fn body_limit(router: axum::Router, limit: usize) -> axum::Router {
    router
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            limit,
            refuse_oversized_bodies,
        ))
}

async fn refuse_oversized_bodies(
    axum::extract::State(limit): axum::extract::State<usize>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    use futures::StreamExt;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_none_or(|n| n <= limit as u64) {
        return next.run(req).await;
    }
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects_continue {
        let mut body = req.into_body().into_data_stream();
        let drain = async {
            let mut seen = 0u64;
            while let Some(Ok(chunk)) = body.next().await {
                seen += chunk.len() as u64;
                if seen > DRAIN_AT_MOST {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
    }
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is larger than {limit} bytes"),
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
    fn hypers_bodiless_errors_get_a_json_body_and_nothing_else_changes() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite_bodiless_error(hyper).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "));
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "headers_too_large");
        // Our own JSON errors, and successes, are left alone.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert!(rewrite_bodiless_error(ours).is_none());
        let ok = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        assert!(rewrite_bodiless_error(ok).is_none());
    }

    #[test]
    fn find_nul_names_the_path() {
        let v = serde_json::json!({"id": "ok", "data": {"charge_id": "ch\u{0}x"}});
        assert_eq!(find_nul(&v).as_deref(), Some("data.charge_id"));
        let v = serde_json::json!(["a", "b\u{0}"]);
        assert_eq!(find_nul(&v).as_deref(), Some("[1]"));
        assert_eq!(find_nul(&serde_json::json!({"a": [1, "x"]})), None);
    }
}
