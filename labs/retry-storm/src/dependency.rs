//! The flaky dependency: a real HTTP server whose capacity, latency and error rate change
//! at run time (`POST /fault`, or [`Dependency::set`] from the lab).
//!
//! It is built like most servers are: an accept queue in front of a fixed pool of workers.
//! `GET /call` queues a job and waits for its answer; `capacity` workers take jobs in arrival
//! order, each holding its worker for `latency` and then answering 200, or 503 with
//! probability `error_rate` (a failing call is not free: it holds a worker as long as a good
//! one — a database that does the work and then fails the commit).
//!
//! The detail that turns retries into a storm: **a job whose caller has given up is still
//! served** (a servlet pool, a query already sent to the database: nobody tells the worker).
//! Once the queue is longer than the callers' timeout, every job the dependency finishes is
//! wasted, every caller times out and retries, and the queue never drains — the outage
//! outlives its cause. The `wasted` counter shows it.
//!
//! Every arrival is timestamped, so the lab can say how many calls reached the dependency
//! in any window (during a fault, while a breaker was open) and draw its load over time.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use labkit::http::{JsonBody, error_response};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

/// What the dependency is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    /// Workers: jobs served at the same time; the rest wait in the queue.
    pub capacity: usize,
    /// How long each job holds its worker.
    pub latency_ms: u64,
    /// Share of jobs that answer 503 after doing their work, 0.0 ..= 1.0.
    pub error_rate: f64,
}

impl Default for Faults {
    /// Healthy: 4 workers × 20 ms = 200 calls/s of capacity.
    fn default() -> Self {
        Self {
            capacity: 4,
            latency_ms: 20,
            error_rate: 0.0,
        }
    }
}

impl Faults {
    /// Calls per second the dependency can finish.
    pub fn capacity_per_s(&self) -> f64 {
        self.capacity as f64 * 1000.0 / self.latency_ms.max(1) as f64
    }
}

/// A partial update for `POST /fault`; absent fields stay as they are.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPatch {
    pub capacity: Option<usize>,
    pub latency_ms: Option<u64>,
    pub error_rate: Option<f64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultError {
    #[error("capacity must be between 1 and 10000 workers")]
    Capacity,
    #[error("latency_ms must be at most 600000 (10 minutes)")]
    Latency,
    #[error("error_rate must be between 0.0 and 1.0")]
    ErrorRate,
}

impl FaultPatch {
    fn apply(self, to: Faults) -> Result<Faults, FaultError> {
        let f = Faults {
            capacity: self.capacity.unwrap_or(to.capacity),
            latency_ms: self.latency_ms.unwrap_or(to.latency_ms),
            error_rate: self.error_rate.unwrap_or(to.error_rate),
        };
        if !(1..=10_000).contains(&f.capacity) {
            return Err(FaultError::Capacity);
        }
        if f.latency_ms > 600_000 {
            return Err(FaultError::Latency);
        }
        if !(0.0..=1.0).contains(&f.error_rate) {
            return Err(FaultError::ErrorRate);
        }
        Ok(f)
    }
}

/// Counters, as `GET /stats` shows them.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Stats {
    /// Calls that reached the dependency.
    pub arrivals: u64,
    pub ok: u64,
    pub errors: u64,
    /// Jobs finished after their caller had gone: work nobody received.
    pub wasted: u64,
    /// Waiting for a worker right now.
    pub queued: u64,
    /// Holding a worker right now.
    pub in_flight: u64,
}

/// One call that reached the dependency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    pub at: Instant,
    /// The user request it was made for (`x-request-id`, passed on by every layer).
    pub request_id: Option<u64>,
}

/// Counters shared with the worker pool.
#[derive(Debug, Default)]
struct Counters {
    ok: AtomicU64,
    errors: AtomicU64,
    wasted: AtomicU64,
    queued: AtomicU64,
}

struct Job {
    reply: oneshot::Sender<bool>,
}

/// The dependency's state, shared by its router (and by `lab serve`'s `/dependency/*`).
pub struct Dependency {
    faults: watch::Sender<Faults>,
    /// Workers to retire when capacity shrinks (taken from the pool as they free up).
    retire: Arc<AtomicUsize>,
    workers: Arc<Semaphore>,
    queue: mpsc::UnboundedSender<Job>,
    arrivals: Mutex<Vec<Arrival>>,
    counters: Arc<Counters>,
    in_flight: watch::Receiver<u64>,
    pool: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependency")
            .field("faults", &self.faults())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Drop for Dependency {
    fn drop(&mut self) {
        // The pool owns the workers' tasks; aborting it ends them (no task outlives the lab).
        self.pool.abort();
    }
}

impl Dependency {
    /// A dependency with these faults; its worker pool runs on the current runtime. `seed`
    /// decides which jobs fail at a fractional error rate.
    pub fn new(faults: Faults, seed: u64) -> Arc<Self> {
        let (faults_tx, faults_rx) = watch::channel(faults);
        let (queue, jobs) = mpsc::unbounded_channel();
        let workers = Arc::new(Semaphore::new(faults.capacity));
        let retire = Arc::new(AtomicUsize::new(0));
        let counters = Arc::new(Counters::default());
        let (in_flight_tx, in_flight) = watch::channel(0u64);
        let pool = tokio::spawn(worker_pool(
            jobs,
            workers.clone(),
            retire.clone(),
            faults_rx,
            counters.clone(),
            in_flight_tx,
            StdRng::seed_from_u64(seed),
        ));
        Arc::new(Self {
            faults: faults_tx,
            retire,
            workers,
            queue,
            arrivals: Mutex::new(Vec::new()),
            counters,
            in_flight,
            pool,
        })
    }

    pub fn faults(&self) -> Faults {
        *self.faults.borrow()
    }

    /// Change the faults now. Growing capacity adds workers at once; shrinking retires
    /// workers as they finish their current job.
    pub fn set(&self, patch: FaultPatch) -> Result<Faults, FaultError> {
        let mut result = Ok(self.faults());
        self.faults.send_modify(|f| match patch.apply(*f) {
            Ok(next) => {
                if next.capacity > f.capacity {
                    let mut grow = next.capacity - f.capacity;
                    // Cancel pending retirements first.
                    while grow > 0
                        && self
                            .retire
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1))
                            .is_ok()
                    {
                        grow -= 1;
                    }
                    self.workers.add_permits(grow);
                } else {
                    self.retire
                        .fetch_add(f.capacity - next.capacity, Ordering::SeqCst);
                }
                *f = next;
                result = Ok(next);
            }
            Err(e) => result = Err(e),
        });
        result
    }

    /// Stop failing calls (capacity and latency stay as they are).
    pub fn heal(&self) {
        let _ = self.set(FaultPatch {
            error_rate: Some(0.0),
            ..FaultPatch::default()
        });
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            arrivals: self
                .arrivals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len() as u64,
            ok: c.ok.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            wasted: c.wasted.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
            in_flight: *self.in_flight.borrow(),
        }
    }

    /// Every call that arrived, in order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Calls made for user requests `ids` (by their `x-request-id`).
    pub fn calls_for(&self, ids: std::ops::Range<u64>) -> u64 {
        let a = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        a.iter()
            .filter(|x| x.request_id.is_some_and(|id| ids.contains(&id)))
            .count() as u64
    }

    /// Wait until exactly `n` jobs hold a worker (a gate for tests: no sleeps).
    pub async fn wait_in_flight(&self, n: u64) {
        let mut rx = self.in_flight.clone();
        let _ = rx.wait_for(|v| *v == n).await;
    }

    /// Serve one call: queue a job and wait for a worker to finish it. `true` = 200.
    async fn call(&self, request_id: Option<u64>) -> Option<bool> {
        // Stamped under the lock so the vector stays sorted by time.
        {
            let mut a = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
            a.push(Arrival {
                at: Instant::now(),
                request_id,
            });
        }
        let (reply, answer) = oneshot::channel();
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        self.queue.send(Job { reply }).ok()?;
        answer.await.ok()
    }
}

/// The accept queue and the workers: take jobs in order, one worker each.
async fn worker_pool(
    mut jobs: mpsc::UnboundedReceiver<Job>,
    workers: Arc<Semaphore>,
    retire: Arc<AtomicUsize>,
    faults: watch::Receiver<Faults>,
    counters: Arc<Counters>,
    in_flight: watch::Sender<u64>,
    mut rng: StdRng,
) {
    let mut running = tokio::task::JoinSet::new();
    while let Some(job) = jobs.recv().await {
        let permit = loop {
            let Ok(permit) = workers.clone().acquire_owned().await else {
                return;
            };
            // Capacity shrank: this worker retires instead of taking the job.
            if retire
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1))
                .is_ok()
            {
                permit.forget();
                continue;
            }
            break permit;
        };
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        let f = *faults.borrow();
        let fails = f.error_rate > 0.0 && rng.random::<f64>() < f.error_rate;
        let counters = counters.clone();
        let in_flight = in_flight.clone();
        in_flight.send_modify(|n| *n += 1);
        running.spawn(async move {
            if f.latency_ms > 0 {
                tokio::time::sleep(Duration::from_millis(f.latency_ms)).await;
            }
            if fails {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            } else {
                counters.ok.fetch_add(1, Ordering::Relaxed);
            }
            if job.reply.send(!fails).is_err() {
                // The caller timed out and left: the work was done for nobody.
                counters.wasted.fetch_add(1, Ordering::Relaxed);
            }
            in_flight.send_modify(|n| *n -= 1);
            drop(permit);
        });
        while running.try_join_next().is_some() {}
    }
}

/// The dependency's own server: `GET /call` plus the fault controls.
pub fn router(dep: Arc<Dependency>) -> Router {
    Router::new()
        .route("/call", get(call))
        .with_state(dep.clone())
        .merge(admin_router(dep))
        .fallback(labkit::http::not_found)
        .method_not_allowed_fallback(labkit::http::method_not_allowed)
}

/// `GET|POST /fault` and `GET /stats` — also mounted under `/dependency` by `lab serve`.
pub fn admin_router(dep: Arc<Dependency>) -> Router {
    Router::new()
        .route("/fault", get(show_faults).post(set_faults))
        .route("/stats", get(stats))
        .with_state(dep)
}

async fn call(State(dep): State<Arc<Dependency>>, headers: HeaderMap) -> Response {
    let request_id = headers
        .get(crate::client::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    match dep.call(request_id).await {
        Some(true) => Json(serde_json::json!({ "value": 42 })).into_response(),
        Some(false) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency_failed",
            "the dependency failed this call (injected fault)",
        ),
        None => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency_stopped",
            "the dependency is shutting down",
        ),
    }
}

async fn show_faults(State(dep): State<Arc<Dependency>>) -> Json<Faults> {
    Json(dep.faults())
}

async fn set_faults(
    State(dep): State<Arc<Dependency>>,
    JsonBody(patch): JsonBody<FaultPatch>,
) -> Response {
    match dep.set(patch) {
        Ok(f) => Json(f).into_response(),
        Err(e) => error_response(StatusCode::UNPROCESSABLE_ENTITY, "invalid_fault", e),
    }
}

async fn stats(State(dep): State<Arc<Dependency>>) -> Json<Stats> {
    Json(dep.stats())
}

/// A dependency on its own loopback port. Dropping it stops the server and the workers.
#[derive(Debug)]
pub struct RunningDependency {
    pub dep: Arc<Dependency>,
    pub server: labkit::http::TestServer,
}

impl RunningDependency {
    pub async fn spawn(faults: Faults, seed: u64) -> std::io::Result<Self> {
        let dep = Dependency::new(faults, seed);
        let server = labkit::http::spawn(router(dep.clone())).await?;
        Ok(Self { dep, server })
    }

    /// `http://127.0.0.1:PORT/call`
    pub fn call_url(&self) -> String {
        self.server.url("/call")
    }
}
