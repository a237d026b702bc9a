//! A queue that drops work nobody is waiting for — hand-written, because it is the lesson.
//!
//! Every request carries a deadline: the earlier of what the client said it will wait
//! (`Request-Timeout-Ms`, the way gRPC propagates `grpc-timeout`) and the server's own queue
//! timeout. Requests wait FIFO for one of `slots` places (as many as the pool has
//! connections, so a request holding a slot never waits for a connection). When a request
//! reaches the front, its deadline is checked *before* any SQL: if it has passed, the
//! request is answered `503 deadline_exceeded` at once and the slot goes to the next one.
//! Expired work leaves the queue at the cost of a comparison instead of a query — which is
//! how a backlog of abandoned requests drains in milliseconds instead of seconds.
//!
//! This is a plain queue timeout checked at dequeue; CoDel (a target queue delay that
//! adapts to how long the queue has stayed above it) and adaptive LIFO (serve the newest
//! first while overloaded) are refinements left out (see the README).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

/// The time deadlines are measured on: the system clock, or a manual one tests move.
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    Manual {
        start: Instant,
        offset_us: Arc<AtomicU64>,
    },
}

impl Clock {
    pub fn system() -> Self {
        Self::System
    }

    /// A clock that only moves when [`advance`](Self::advance) is called.
    pub fn manual() -> Self {
        Self::Manual {
            start: Instant::now(),
            offset_us: Arc::default(),
        }
    }

    pub fn now(&self) -> Instant {
        match self {
            Self::System => Instant::now(),
            Self::Manual { start, offset_us } => {
                *start + Duration::from_micros(offset_us.load(Ordering::SeqCst))
            }
        }
    }

    /// Move a manual clock forward (no effect on the system clock).
    pub fn advance(&self, by: Duration) {
        if let Self::Manual { offset_us, .. } = self {
            offset_us.fetch_add(by.as_micros() as u64, Ordering::SeqCst);
        }
    }
}

/// The request's deadline passed while it waited; it ran no SQL.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("deadline passed {late_ms:.1} ms before the request reached the front of the queue")]
pub struct Expired {
    pub late_ms: f64,
}

/// FIFO slots in front of the pool, with a deadline check at the front.
#[derive(Debug, Clone)]
pub struct DeadlineQueue {
    slots: Arc<Semaphore>,
    timeout: Duration,
    clock: Clock,
    waiting: Arc<watch::Sender<usize>>,
}

impl DeadlineQueue {
    pub fn new(slots: usize, timeout: Duration, clock: Clock) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            timeout,
            clock,
            waiting: Arc::new(watch::channel(0).0),
        }
    }

    /// The deadline of a request that arrived at `arrival`, given what its client said it
    /// will wait.
    pub fn deadline(&self, arrival: Instant, client_timeout: Option<Duration>) -> Instant {
        let budget = client_timeout.map_or(self.timeout, |t| t.min(self.timeout));
        arrival + budget
    }

    /// Wait for a slot (FIFO: tokio's semaphore is fair); at the front, drop the request if
    /// its deadline has passed. The slot is held until the returned permit is dropped.
    pub async fn admit(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, Expired> {
        let in_line = InLine::join(&self.waiting);
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the queue's semaphore is never closed");
        drop(in_line);
        let now = self.clock.now();
        if now >= deadline {
            // Nobody is waiting for this answer any more: the slot goes straight to the next.
            drop(permit);
            return Err(Expired {
                late_ms: (now - deadline).as_secs_f64() * 1000.0,
            });
        }
        Ok(permit)
    }

    /// Requests waiting for a slot now.
    pub fn waiting(&self) -> usize {
        *self.waiting.borrow()
    }

    /// Resolve once at least `n` requests wait (tests observe the queue instead of sleeping).
    pub async fn until_waiting(&self, n: usize) {
        let mut rx = self.waiting.subscribe();
        let _ = rx.wait_for(|w| *w >= n).await;
    }
}

/// Counts a request as waiting until dropped (also when its future is cancelled).
struct InLine<'a>(&'a watch::Sender<usize>);

impl<'a> InLine<'a> {
    fn join(waiting: &'a watch::Sender<usize>) -> Self {
        waiting.send_modify(|n| *n += 1);
        Self(waiting)
    }
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}
