//! What the server did with each request, by request id — and a server that, like most
//! behind a load balancer, never learns that a client hung up.
//!
//! Wasted work is a join: a request the *client* counted as timed out, that the *server*
//! went on to finish with a 2xx (its SQL ran, its transaction committed) for nobody.
//! [`track`] is the outermost middleware: it runs every request in its own task, so when a
//! client gives up and closes its connection the work carries on — what happens when a
//! proxy keeps its backend connection open, or a framework does not cancel handlers. (hyper
//! serving clients directly *does* drop a handler's future when its connection closes: a
//! free partial defence that disappears behind the first proxy.) It also counts requests in
//! flight, so a run can wait until the server has drained what the clients abandoned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::Instrument;

/// The header the load client numbers its requests with.
pub const REQUEST_ID: &str = "request-id";

/// Per-id records kept at most (`lab serve` under a long `wrk` run must not grow forever).
const MAX_IDS: usize = 1_000_000;

/// Attached by handlers to their response: the statements the request ran.
#[derive(Debug, Clone, Copy, Default)]
pub struct Work {
    pub statements: u64,
}

/// How a request ended at the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOutcome {
    pub status: u16,
    pub statements: u64,
    /// Dropped at the front of the deadline queue.
    pub expired: bool,
}

/// Counters since the last [`Ledger::take`] (also `GET /admin/stats`).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub in_flight: usize,
    /// 2xx responses: work done.
    pub completed: u64,
    /// 503 `overloaded`: shed at the door by the load-shed layer.
    pub shed: u64,
    /// 503 `deadline_exceeded`: dropped at the front of the deadline queue.
    pub expired: u64,
    /// Anything else (4xx for bad input, 5xx).
    pub other: u64,
    /// SQL statements the handlers ran.
    pub statements: u64,
}

/// The server's side of every request.
#[derive(Debug)]
pub struct Ledger {
    by_id: Mutex<HashMap<u64, ServerOutcome>>,
    /// The request tasks still running, so stopping the service can end them (no task
    /// outlives its service, also on Ctrl-C).
    tasks: Mutex<HashMap<u64, AbortHandle>>,
    next_task: AtomicU64,
    in_flight: watch::Sender<usize>,
    completed: AtomicU64,
    shed: AtomicU64,
    expired: AtomicU64,
    other: AtomicU64,
    statements: AtomicU64,
}

impl Default for Ledger {
    fn default() -> Self {
        Self {
            by_id: Mutex::default(),
            tasks: Mutex::default(),
            next_task: AtomicU64::new(0),
            in_flight: watch::channel(0).0,
            completed: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            other: AtomicU64::new(0),
            statements: AtomicU64::new(0),
        }
    }
}

/// A response header naming which 503 it was, so the client can tell without a body parse.
pub const REJECTED_BY: &str = "x-rejected-by";

impl Ledger {
    fn record(&self, id: Option<u64>, resp: &Response) {
        let status = resp.status();
        let statements = resp.extensions().get::<Work>().map_or(0, |w| w.statements);
        self.statements.fetch_add(statements, Ordering::Relaxed);
        let expired = status == StatusCode::SERVICE_UNAVAILABLE
            && resp
                .headers()
                .get(REJECTED_BY)
                .is_some_and(|v| v.as_bytes() == b"deadline");
        let counter = if status.is_success() {
            &self.completed
        } else if expired {
            &self.expired
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            &self.shed
        } else {
            &self.other
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(id) = id {
            let mut by_id = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
            if by_id.len() < MAX_IDS {
                by_id.insert(
                    id,
                    ServerOutcome {
                        status: status.as_u16(),
                        statements,
                        expired,
                    },
                );
            }
        }
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        Stats {
            in_flight: *self.in_flight.borrow(),
            completed: self.completed.load(Ordering::Relaxed),
            shed: self.shed.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
            statements: self.statements.load(Ordering::Relaxed),
        }
    }

    /// The counters and per-id outcomes so far, and start again from zero.
    pub fn take(&self) -> (Stats, HashMap<u64, ServerOutcome>) {
        let stats = Stats {
            in_flight: *self.in_flight.borrow(),
            completed: self.completed.swap(0, Ordering::Relaxed),
            shed: self.shed.swap(0, Ordering::Relaxed),
            expired: self.expired.swap(0, Ordering::Relaxed),
            other: self.other.swap(0, Ordering::Relaxed),
            statements: self.statements.swap(0, Ordering::Relaxed),
        };
        let ids = std::mem::take(&mut *self.by_id.lock().unwrap_or_else(|e| e.into_inner()));
        (stats, ids)
    }

    /// One request's outcome, once the server has finished it.
    pub fn outcome(&self, id: u64) -> Option<ServerOutcome> {
        self.by_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied()
    }

    /// End every request task still running (what a process exit would do to them).
    pub fn abort_all(&self) {
        for (_, task) in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            task.abort();
        }
    }

    /// Resolve when no request is in the server (the backlog has drained).
    pub async fn until_idle(&self) {
        self.until_in_flight(|n| n == 0).await;
    }

    /// Resolve when the number of requests inside the server satisfies `f`.
    pub async fn until_in_flight(&self, f: impl Fn(usize) -> bool) {
        let mut rx = self.in_flight.subscribe();
        let _ = rx.wait_for(|n| f(*n)).await;
    }
}

/// Counts a request in flight (and keeps its task's abort handle) until dropped.
struct InFlight(Arc<Ledger>, u64);

impl InFlight {
    fn enter(ledger: Arc<Ledger>) -> Self {
        ledger.in_flight.send_modify(|n| *n += 1);
        let task = ledger.next_task.fetch_add(1, Ordering::Relaxed);
        Self(ledger, task)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
        self.0.in_flight.send_modify(|n| *n -= 1);
    }
}

/// The outermost middleware: run the request in its own task (a client hanging up does not
/// cancel it), count it in flight, and record how it ended under its `Request-Id`.
pub async fn track(State(ledger): State<Arc<Ledger>>, req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let in_flight = InFlight::enter(ledger.clone());
    let task = in_flight.1;
    let tasks = ledger.clone();
    let work = tokio::spawn(
        async move {
            let _in_flight = in_flight;
            let resp = next.run(req).await;
            ledger.record(id, &resp);
            resp
        }
        // Keeps the request's tracing span, so labkit's SqlCounter sees its statements.
        .in_current_span(),
    );
    {
        // (A task that finishes in the instant between its own cleanup and this insert
        // leaves a stale handle behind; aborting a finished task is a no-op.)
        let mut running = tasks.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if !work.is_finished() {
            running.insert(task, work.abort_handle());
        }
    }
    match work.await {
        Ok(resp) => resp,
        Err(_) => labkit::http::error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request's task failed",
        )
        .into_response(),
    }
}
