//! A small payment provider on its own HTTP server: the "other company" whose ledger is the
//! truth about how many times a customer was charged.
//!
//! Like Stripe, it honours an `Idempotency-Key` header of its own: a second charge request
//! with a key it has seen returns the first charge instead of making another. The payments
//! service derives that key from its own key record, which is what makes a crash after the
//! provider call safe to retry. It can be told to be slow, to fail before charging (503),
//! to fail *after* charging (500 — the ambiguous failure), or to hold requests at a gate
//! until a test releases them.
//!
//! Charges are processed in a spawned task: a caller that hangs up (a client timeout) does
//! not cancel a charge already under way — real providers don't either.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use labkit::http::JsonBody;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// What the payments service asks the provider to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRequest {
    pub amount_cents: i64,
    pub currency: String,
    pub source: String,
    pub customer: String,
}

/// A charge in the provider's ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Charge {
    pub id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub customer: String,
    pub status: String,
    pub idempotency_key: Option<String>,
}

/// Source token the provider always declines (a deterministic failure worth storing).
pub const DECLINED_SOURCE: &str = "tok_declined";

/// The provider's ledger and knobs. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<Inner>,
}

struct Inner {
    // A std Mutex: held for a few map operations, never across an await.
    ledger: Mutex<Ledger>,
    latency_ms: AtomicU64,
    fail_next: AtomicU32,
    fail_after_charge_next: AtomicU32,
    requests: AtomicU64,
    gate_closed: watch::Sender<bool>,
    /// Charge requests received and not yet answered.
    in_progress: watch::Sender<usize>,
    /// Of those, how many are waiting at the closed gate.
    at_gate: watch::Sender<usize>,
}

#[derive(Default)]
struct Ledger {
    charges: Vec<Charge>,
    by_key: HashMap<String, usize>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("charges", &self.charge_count())
            .finish()
    }
}

impl Default for Provider {
    fn default() -> Self {
        Self::new()
    }
}

impl Provider {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                ledger: Mutex::new(Ledger::default()),
                latency_ms: AtomicU64::new(0),
                fail_next: AtomicU32::new(0),
                fail_after_charge_next: AtomicU32::new(0),
                requests: AtomicU64::new(0),
                gate_closed: watch::Sender::new(false),
                in_progress: watch::Sender::new(0),
                at_gate: watch::Sender::new(0),
            }),
        }
    }

    /// The provider's HTTP API.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/charges", post(create_charge).get(list_charges))
            .route("/control", post(control))
            .fallback(labkit::http::not_found)
            .method_not_allowed_fallback(labkit::http::method_not_allowed)
            .with_state(self.clone())
    }

    /// Every charge request takes this long (simulated processing time).
    pub fn set_latency(&self, latency: Duration) {
        self.inner
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// The next `n` charge requests fail with 503 without charging.
    pub fn fail_next(&self, n: u32) {
        self.inner.fail_next.store(n, Ordering::Relaxed);
    }

    /// The next `n` charge requests charge the card, then answer 500.
    pub fn fail_after_charge_next(&self, n: u32) {
        self.inner
            .fail_after_charge_next
            .store(n, Ordering::Relaxed);
    }

    /// Close the gate: charge requests wait until [`Provider::release`].
    pub fn hold(&self) {
        self.inner.gate_closed.send_replace(true);
    }

    pub fn release(&self) {
        self.inner.gate_closed.send_replace(false);
    }

    /// Wait until `n` charge requests are waiting at the closed gate.
    pub async fn wait_at_gate(&self, n: usize) {
        let mut rx = self.inner.at_gate.subscribe();
        let _ = rx.wait_for(|w| *w >= n).await;
    }

    /// Wait until no charge request is being processed (after clients hung up, say).
    pub async fn settle(&self) {
        let mut rx = self.inner.in_progress.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Charge requests received (charged, replayed or failed).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    pub fn charge_count(&self) -> usize {
        self.inner.ledger.lock().expect("ledger").charges.len()
    }

    /// Charges made to one customer: how many times that customer paid.
    pub fn charges_for(&self, customer: &str) -> usize {
        let ledger = self.inner.ledger.lock().expect("ledger");
        ledger
            .charges
            .iter()
            .filter(|c| c.customer == customer)
            .count()
    }

    pub fn charges(&self) -> Vec<Charge> {
        self.inner.ledger.lock().expect("ledger").charges.clone()
    }

    /// The charge itself, after latency, gate and failure knobs.
    async fn process(&self, key: Option<String>, req: ChargeRequest) -> Response {
        let inner = &self.inner;
        let mut gate = inner.gate_closed.subscribe();
        if *gate.borrow() {
            inner.at_gate.send_modify(|n| *n += 1);
            let _ = gate.wait_for(|closed| !closed).await;
            inner.at_gate.send_modify(|n| *n -= 1);
        }
        let latency = inner.latency_ms.load(Ordering::Relaxed);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        if take_one(&inner.fail_next) {
            return provider_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "try again");
        }
        if req.source == DECLINED_SOURCE {
            return provider_error(
                StatusCode::PAYMENT_REQUIRED,
                "card_declined",
                "the card was declined",
            );
        }
        let (charge, replayed) = {
            let mut ledger = inner.ledger.lock().expect("ledger");
            match key.as_ref().and_then(|k| ledger.by_key.get(k)).copied() {
                Some(i) => {
                    let first = ledger.charges[i].clone();
                    if (first.amount_cents, &first.currency, &first.customer)
                        != (req.amount_cents, &req.currency, &req.customer)
                    {
                        return provider_error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "idempotency_key_reused",
                            "this key was used for a different charge",
                        );
                    }
                    (first, true)
                }
                None => {
                    let charge = Charge {
                        id: format!("ch_{:08}", ledger.charges.len() + 1),
                        amount_cents: req.amount_cents,
                        currency: req.currency,
                        customer: req.customer,
                        status: "succeeded".into(),
                        idempotency_key: key.clone(),
                    };
                    if let Some(k) = key {
                        let at = ledger.charges.len();
                        ledger.by_key.insert(k, at);
                    }
                    ledger.charges.push(charge.clone());
                    (charge, false)
                }
            }
        };
        if !replayed && take_one(&inner.fail_after_charge_next) {
            return provider_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "something went wrong",
            );
        }
        let mut resp = (StatusCode::OK, Json(charge)).into_response();
        if replayed {
            resp.headers_mut().insert(
                "idempotent-replayed",
                "true".parse().expect("static header"),
            );
        }
        resp
    }
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

fn provider_error(status: StatusCode, code: &str, message: &str) -> Response {
    labkit::http::error_response(status, code, message)
}

async fn create_charge(
    State(provider): State<Provider>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ChargeRequest>,
) -> Response {
    provider.inner.requests.fetch_add(1, Ordering::Relaxed);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    provider.inner.in_progress.send_modify(|n| *n += 1);
    let p = provider.clone();
    let task = tokio::spawn(async move {
        let resp = p.process(key, req).await;
        p.inner.in_progress.send_modify(|n| *n -= 1);
        resp
    });
    task.await.unwrap_or_else(|_| {
        provider_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "charge task failed",
        )
    })
}

async fn list_charges(State(provider): State<Provider>) -> Json<Vec<Charge>> {
    Json(provider.charges())
}

/// `POST /control {"latency_ms": 200, "fail_next": 1, "fail_after_charge_next": 1}` — the
/// knobs, over HTTP, for `lab serve`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    latency_ms: Option<u64>,
    fail_next: Option<u32>,
    fail_after_charge_next: Option<u32>,
}

async fn control(State(provider): State<Provider>, JsonBody(c): JsonBody<Control>) -> Response {
    if let Some(ms) = c.latency_ms {
        provider.set_latency(Duration::from_millis(ms.min(60_000)));
    }
    if let Some(n) = c.fail_next {
        provider.fail_next(n);
    }
    if let Some(n) = c.fail_after_charge_next {
        provider.fail_after_charge_next(n);
    }
    let i = &provider.inner;
    Json(serde_json::json!({
        "latency_ms": i.latency_ms.load(Ordering::Relaxed),
        "fail_next": i.fail_next.load(Ordering::Relaxed),
        "fail_after_charge_next": i.fail_after_charge_next.load(Ordering::Relaxed),
    }))
    .into_response()
}

/// Why a charge did not go through, as the payments service sees it.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// A definite answer: the card was declined. Safe to store and replay.
    #[error("the card was declined")]
    Declined,
    /// 5xx, a timeout, a reset connection: the charge may or may not have happened. Only a
    /// retry *with the same provider key* resolves it without risking a second charge.
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
}

/// The payments service's client for the provider.
#[derive(Debug, Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
    base_url: String,
}

impl ProviderClient {
    pub fn new(base_url: impl Into<String>, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()
            .expect("reqwest client builds");
        Self {
            http,
            base_url: base_url.into(),
        }
    }

    /// Charge the card. `key` is the provider-side idempotency key; `None` is what the naive
    /// implementations send.
    pub async fn charge(
        &self,
        key: Option<&str>,
        req: &ChargeRequest,
    ) -> Result<Charge, ProviderError> {
        let mut call = self
            .http
            .post(format!("{}/v1/charges", self.base_url))
            .json(req);
        if let Some(k) = key {
            call = call.header("idempotency-key", k);
        }
        let resp = call
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        match resp.status() {
            StatusCode::OK => resp
                .json::<Charge>()
                .await
                .map_err(|e| ProviderError::Unavailable(e.to_string())),
            StatusCode::PAYMENT_REQUIRED => Err(ProviderError::Declined),
            s => Err(ProviderError::Unavailable(format!("provider answered {s}"))),
        }
    }
}

/// Start a provider on a loopback port (stopped when the server handle drops).
pub async fn spawn() -> std::io::Result<(Provider, labkit::http::TestServer)> {
    let provider = Provider::new();
    let server = labkit::http::spawn(provider.router()).await?;
    Ok((provider, server))
}
