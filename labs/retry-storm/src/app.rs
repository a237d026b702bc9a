//! The service in front of the dependency: one router ([`router`]) for every layer of the
//! chain, `lab serve`, the tests and the bench.
//!
//! `GET /work` calls the next hop (another layer's `/work`, or the dependency's `/call`)
//! through the resilience stack its [`Resilience`] asks for; `GET /unrelated` answers from
//! memory and never touches the dependency. Both share the service's own request workers
//! (a thread pool's worth of concurrency, `workers`), which is how a slow dependency takes
//! down an endpoint that does not use it.
//!
//! The stack around one `/work` request, outside in — whose code is whose:
//!
//! | piece | what it does | code |
//! |---|---|---|
//! | workers | at most `workers` requests in the service at once, the rest wait | tower `GlobalConcurrencyLimitLayer` |
//! | circuit breaker | refuse fast while the dependency is known to be failing | [`crate::breaker`] (hand-written: the lesson) |
//! | retry | up to `attempts` tries, within a retry budget if set | tower `Retry` + `TpsBudget`, policy in [`crate::retry`] |
//! | timeout | per attempt | tower `Timeout` |
//! | bulkhead | at most `bulkhead` calls to the dependency at once; beyond that, refuse at once | tower `LoadShed` + `ConcurrencyLimit` |
//! | fallback | a degraded 200 instead of an error | here |
//!
//! The breaker wraps the call with its retries (one outcome per request). resilience4j's
//! `Decorators` put Retry outside the breaker instead; with one attempt, as in the breaker
//! scenario, the two orders are the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use labkit::http::error_response;
use serde::Serialize;
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::timeout::TimeoutLayer;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt};

use crate::breaker::{Breaker, BreakerConfig, BreakerStats, CallNotPermitted};
use crate::clock::Clock;
use crate::dependency::Dependency;
use crate::retry::{Attempts, RetryBudget, sre_budget};

/// How one service instance calls its downstream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Resilience {
    /// Tries per request, the first included (1 = no retry).
    pub attempts: u32,
    /// Per-attempt timeout; `None` waits as long as the downstream takes.
    #[serde(
        rename = "attempt_timeout_ms",
        serialize_with = "crate::clock::as_ms_opt"
    )]
    pub attempt_timeout: Option<Duration>,
    /// Cap retries at 10 % of requests (tower `TpsBudget`).
    pub retry_budget: bool,
    /// At most this many downstream calls in flight; more are refused at once.
    pub bulkhead: Option<usize>,
    pub breaker: Option<BreakerConfig>,
    /// Answer a degraded 200 when the call fails or the breaker refuses.
    pub fallback: bool,
    /// Requests the service handles at once (its worker pool); the rest queue.
    pub workers: usize,
}

impl Resilience {
    /// Pass the call through once, with a timeout: a layer that does not retry.
    pub fn pass_through(timeout: Duration) -> Self {
        Self {
            attempts: 1,
            attempt_timeout: Some(timeout),
            retry_budget: false,
            bulkhead: None,
            breaker: None,
            fallback: false,
            workers: 1024,
        }
    }

    /// `attempts` immediate tries, each with `timeout`: the war story's layer.
    pub fn retrying(attempts: u32, timeout: Duration) -> Self {
        Self {
            attempts,
            ..Self::pass_through(timeout)
        }
    }

    pub fn with_budget(mut self) -> Self {
        self.retry_budget = true;
        self
    }

    /// What `lab serve` runs: 3 attempts within a 10 % budget, 100 ms per attempt, a
    /// bulkhead of 16, resilience4j's breaker (wait in open 10 s) and a fallback.
    pub fn everything() -> Self {
        Self {
            attempts: 3,
            attempt_timeout: Some(Duration::from_millis(100)),
            retry_budget: true,
            bulkhead: Some(16),
            breaker: Some(BreakerConfig::RESILIENCE4J.wait(Duration::from_secs(10))),
            fallback: true,
            workers: 64,
        }
    }
}

/// Why a downstream attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum HopError {
    #[error("downstream answered {0}")]
    Status(StatusCode),
    #[error("downstream unreachable: {0}")]
    Transport(String),
}

/// One downstream call, as the tower stack sees it: the user request's id travels along.
pub type Hop = BoxCloneSyncService<Downstream, (), BoxError>;

/// The request a layer sends downstream.
#[derive(Debug, Clone, Default)]
pub struct Downstream {
    /// The `x-request-id` the layer received, passed on.
    pub request_id: Option<HeaderValue>,
}

/// What one service instance has done (`GET /stats`).
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    /// Attempts sent downstream (retries included).
    pub downstream_calls: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub fallbacks: AtomicU64,
    /// Refused by the open (or fully probing) breaker.
    pub rejected_by_breaker: AtomicU64,
    /// Refused by the bulkhead.
    pub shed: AtomicU64,
}

/// One service instance.
pub struct App {
    pub name: String,
    pub cfg: Resilience,
    pub downstream: String,
    pub breaker: Option<Arc<Breaker>>,
    pub counters: Arc<Counters>,
    pub budget: Option<RetryBudget>,
    stack: Hop,
    workers: Arc<Semaphore>,
    /// `lab serve` mounts the dependency's fault controls under `/dependency`.
    dependency_admin: Option<Arc<Dependency>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("cfg", &self.cfg)
            .field("downstream", &self.downstream)
            .finish()
    }
}

impl App {
    /// A service that calls `downstream` (a full URL) as `cfg` says; the breaker, if any,
    /// reads `clock`.
    pub fn new(name: &str, cfg: Resilience, downstream: String, clock: Clock) -> Self {
        let counters = Arc::new(Counters::default());
        let budget = cfg.retry_budget.then(sre_budget);
        let stack = build_stack(&cfg, downstream.clone(), counters.clone(), budget.clone());
        Self {
            name: name.to_string(),
            breaker: cfg.breaker.map(|b| Arc::new(Breaker::new(b, clock))),
            workers: Arc::new(Semaphore::new(cfg.workers.max(1))),
            cfg,
            downstream,
            counters,
            budget,
            stack,
            dependency_admin: None,
        }
    }

    /// Mount `dep`'s `/fault` and `/stats` under `/dependency` (for curl, in `lab serve`).
    pub fn with_dependency_admin(mut self, dep: Arc<Dependency>) -> Self {
        self.dependency_admin = Some(dep);
        self
    }

    /// Call downstream once through the stack (what `/work` does, minus breaker and
    /// fallback) — the bench's unit of work.
    pub async fn call_downstream(&self, req: Downstream) -> Result<(), BoxError> {
        self.stack.clone().oneshot(req).await
    }

    fn degrade(&self, why: Degraded) -> Response {
        if self.cfg.fallback {
            self.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
            let reason = why.code();
            let mut res = Json(serde_json::json!({
                "source": "fallback",
                "reason": reason,
                "layer": self.name,
                "value": null,
            }))
            .into_response();
            res.headers_mut()
                .insert("x-source", HeaderValue::from_static("fallback"));
            res.headers_mut()
                .insert("x-fallback-reason", HeaderValue::from_static(reason));
            return res;
        }
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        let status = match &why {
            Degraded::Failed(e) if e.is::<tower::timeout::error::Elapsed>() => {
                StatusCode::GATEWAY_TIMEOUT
            }
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        error_response(status, why.code(), why.message())
    }
}

enum Degraded {
    CircuitOpen(CallNotPermitted),
    Failed(BoxError),
}

impl Degraded {
    fn code(&self) -> &'static str {
        match self {
            Self::CircuitOpen(_) => "circuit_open",
            Self::Failed(e) if e.is::<tower::timeout::error::Elapsed>() => "upstream_timeout",
            Self::Failed(e) if e.is::<tower::load_shed::error::Overloaded>() => "bulkhead_full",
            Self::Failed(_) => "upstream_failed",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::CircuitOpen(e) => e.to_string(),
            Self::Failed(e) if e.is::<tower::timeout::error::Elapsed>() => {
                "the downstream call timed out".into()
            }
            Self::Failed(e) if e.is::<tower::load_shed::error::Overloaded>() => {
                "too many calls to the downstream in flight (bulkhead full)".into()
            }
            Self::Failed(e) => e.to_string(),
        }
    }
}

/// retry → timeout → bulkhead → one HTTP GET, all tower but the policy.
fn build_stack(
    cfg: &Resilience,
    url: String,
    counters: Arc<Counters>,
    budget: Option<RetryBudget>,
) -> Hop {
    let client = labkit::http::client();
    let http = tower::service_fn(move |req: Downstream| {
        let (client, url, counters) = (client.clone(), url.clone(), counters.clone());
        async move {
            counters.downstream_calls.fetch_add(1, Ordering::Relaxed);
            let mut get = client.get(&url);
            if let Some(id) = req.request_id {
                get = get.header(crate::client::REQUEST_ID, id);
            }
            let res = get
                .send()
                .await
                .map_err(|e| HopError::Transport(e.to_string()))?;
            let status = res.status();
            // Read the body so the connection goes back to the pool.
            let _ = res.bytes().await;
            if status.is_success() {
                Ok::<(), BoxError>(())
            } else {
                Err(HopError::Status(status).into())
            }
        }
    });
    let bulkhead = cfg.bulkhead.map(|n| {
        ServiceBuilder::new()
            .load_shed()
            .concurrency_limit(n)
            .into_inner()
    });
    let svc = ServiceBuilder::new()
        .retry(Attempts::new(cfg.attempts, budget))
        .option_layer(cfg.attempt_timeout.map(TimeoutLayer::new))
        .option_layer(bulkhead)
        .service(http);
    BoxCloneSyncService::new(svc)
}

/// The service's routes. `/work` and `/unrelated` share the worker pool; `/breaker`,
/// `/stats` and `/dependency/*` stay reachable when it is full (an operator's curl must not
/// queue behind the outage it is looking at).
pub fn router(app: Arc<App>) -> Router {
    let served = Router::new()
        .route("/work", get(work))
        .route("/unrelated", get(unrelated))
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(
            app.workers.clone(),
        ));
    let mut router = Router::new()
        .merge(served)
        .route("/breaker", get(breaker))
        .route("/stats", get(stats))
        .with_state(app.clone());
    if let Some(dep) = &app.dependency_admin {
        router = router.nest("/dependency", crate::dependency::admin_router(dep.clone()));
    }
    let router = router
        .fallback(labkit::http::not_found)
        .method_not_allowed_fallback(labkit::http::method_not_allowed);
    // A 413 with a JSON body for oversized bodies, without a connection reset in its place.
    labkit::http::body_limit(router, 64 * 1024)
}

async fn work(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    app.counters.requests.fetch_add(1, Ordering::Relaxed);
    let permit = match app.breaker.as_deref().map(Breaker::try_acquire) {
        None => None,
        Some(Ok(permit)) => Some(permit),
        Some(Err(refused)) => {
            app.counters
                .rejected_by_breaker
                .fetch_add(1, Ordering::Relaxed);
            return app.degrade(Degraded::CircuitOpen(refused));
        }
    };
    let req = Downstream {
        request_id: headers.get(crate::client::REQUEST_ID).cloned(),
    };
    match app.call_downstream(req).await {
        Ok(()) => {
            if let Some(p) = permit {
                p.success();
            }
            app.counters.ok.fetch_add(1, Ordering::Relaxed);
            let mut res = Json(serde_json::json!({
                "source": "dependency",
                "layer": app.name,
                "value": 42,
            }))
            .into_response();
            res.headers_mut()
                .insert("x-source", HeaderValue::from_static("dependency"));
            res
        }
        Err(e) => {
            if let Some(p) = permit {
                p.failure();
            }
            if e.is::<tower::load_shed::error::Overloaded>() {
                app.counters.shed.fetch_add(1, Ordering::Relaxed);
            }
            app.degrade(Degraded::Failed(e))
        }
    }
}

async fn unrelated(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "ok": true, "layer": app.name }))
}

#[derive(Serialize)]
struct BreakerView {
    state: &'static str,
    config: BreakerConfig,
    permitted: u64,
    rejected: u64,
    transitions: usize,
}

async fn breaker(State(app): State<Arc<App>>) -> Response {
    match &app.breaker {
        Some(b) => {
            let BreakerStats {
                state,
                transitions,
                permitted,
                rejected,
            } = b.stats();
            Json(BreakerView {
                state: state.as_str(),
                config: *b.config(),
                permitted,
                rejected,
                transitions: transitions.len() - 1,
            })
            .into_response()
        }
        None => error_response(
            StatusCode::NOT_FOUND,
            "no_breaker",
            "this service instance runs without a circuit breaker",
        ),
    }
}

async fn stats(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    let c = &app.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Json(serde_json::json!({
        "layer": app.name,
        "resilience": app.cfg,
        "requests": get(&c.requests),
        "downstream_calls": get(&c.downstream_calls),
        "ok": get(&c.ok),
        "failed": get(&c.failed),
        "fallbacks": get(&c.fallbacks),
        "rejected_by_breaker": get(&c.rejected_by_breaker),
        "shed": get(&c.shed),
        "workers_free": app.workers.available_permits(),
    }))
}
