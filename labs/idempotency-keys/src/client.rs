//! The client side, as an outside caller sees the service: one payment request, a burst of
//! duplicates released together, and how a burst's responses split against the contract.
//! Used by the lab run, the tests and the bench.
//!
//! Bursts go through reqwest, one task and one connection per request, held at a tokio
//! [`Barrier`] and released together, the way an outside client's retries pile up. The cost
//! phases (many requests in a loop) use labkit's lean keep-alive connections instead
//! ([`pay_on`]), so the driver does not become what it measures.

use std::future::Future;
use std::sync::Arc;

use axum::http::Method;
use labkit::http::{Conn, ConnError};
use tokio::sync::Barrier;

use crate::payments::REPLAYED_HEADER;

/// One response, as a client saw it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub replayed: bool,
    pub body: bytes::Bytes,
}

impl Reply {
    /// `201`, or `201 (replay)`.
    pub fn label(&self) -> String {
        if self.replayed {
            format!("{} (replay)", self.status)
        } else {
            self.status.to_string()
        }
    }
}

/// The default payment every scenario sends.
pub fn payment_body(amount_cents: i64) -> serde_json::Value {
    serde_json::json!({ "amount_cents": amount_cents, "currency": "usd", "source": "tok_visa" })
}

/// `POST url` with a bearer token and optionally an `Idempotency-Key`.
pub async fn post_payment(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    key: Option<&str>,
    body: &serde_json::Value,
) -> reqwest::Result<Reply> {
    let mut req = http.post(url).bearer_auth(token).json(body);
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let replayed = resp.headers().get(REPLAYED_HEADER).is_some();
    let body = resp.bytes().await?;
    Ok(Reply {
        status,
        replayed,
        body,
    })
}

/// The same payment on a load worker's keep-alive connection: `POST path`.
pub async fn pay_on(
    conn: &mut Conn,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: bytes::Bytes,
) -> Result<Reply, ConnError> {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(k) = key {
        headers.push(("idempotency-key", k));
    }
    let r = conn.send(Method::POST, path, &headers, Some(body)).await?;
    Ok(Reply {
        status: r.status.as_u16(),
        replayed: r.headers.contains_key(REPLAYED_HEADER),
        body: r.body,
    })
}

/// `n` copies of one request, each in its own task, held at a barrier and released
/// together — as a pile of retries arrives.
pub async fn released_together<F, Fut, T>(n: usize, send: F) -> Vec<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (barrier, request) = (barrier.clone(), send());
        tasks.spawn(async move {
            barrier.wait().await;
            request.await
        });
    }
    tasks.join_all().await
}

/// `n` identical payments under one key, released together.
pub async fn burst(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    key: &str,
    n: usize,
) -> Vec<reqwest::Result<Reply>> {
    let body = payment_body(1299);
    released_together(n, || {
        let (http, url, token, key, body) = (
            http.clone(),
            url.to_string(),
            token.to_string(),
            key.to_string(),
            body.clone(),
        );
        async move { post_payment(&http, &url, &token, Some(&key), &body).await }
    })
    .await
}

/// How a burst's responses split, judged against the idempotency contract.
#[derive(Debug, Default, Clone, Copy)]
pub struct BurstOutcome {
    pub fresh: usize,
    pub in_flight_409: usize,
    pub identical_replays: usize,
    /// Anything else: a second fresh 201, a replay that differs, a 5xx, a transport error.
    pub non_conforming: usize,
}

impl BurstOutcome {
    pub fn add(&mut self, o: BurstOutcome) {
        self.fresh += o.fresh;
        self.in_flight_409 += o.in_flight_409;
        self.identical_replays += o.identical_replays;
        self.non_conforming += o.non_conforming;
    }
}

pub fn classify(replies: &[reqwest::Result<Reply>]) -> BurstOutcome {
    let mut out = BurstOutcome::default();
    let fresh_body = replies
        .iter()
        .flatten()
        .find(|r| r.status == 201 && !r.replayed)
        .map(|r| r.body.clone());
    for r in replies {
        match r {
            Ok(r) if r.status == 201 && !r.replayed => out.fresh += 1,
            Ok(r) if r.status == 409 => out.in_flight_409 += 1,
            Ok(r) if r.replayed && Some(&r.body) == fresh_body.as_ref() => {
                out.identical_replays += 1
            }
            _ => out.non_conforming += 1,
        }
    }
    if out.fresh > 1 {
        out.non_conforming += out.fresh - 1;
        out.fresh = 1;
    }
    out
}
