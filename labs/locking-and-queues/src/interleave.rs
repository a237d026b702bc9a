//! Pause points, so tests can force an interleaving instead of hoping for one.
//!
//! The lab's workers take a [`Gate`] and call it at the moment that matters (after the read,
//! before the write; after the claim, before the work). In a load run the gate is
//! [`NoPause`] and costs nothing. A test passes a [`Pause`] and drives the worker from its
//! [`Controller`]: wait until the worker has *arrived* at the point, do something in another
//! session, then *release* it. A session stuck on a lock is observed through
//! `pg_blocking_pids` ([`wait_until_blocked`]) — never inferred from a sleep.

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc};

/// Where a worker can be paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The row was read (and, for FOR UPDATE, locked); the write has not been sent.
    Read,
    /// A job was claimed; the work has not started.
    Claimed,
    /// The side effect was applied; the job has not been acknowledged.
    Applied,
}

/// Called by a worker at each [`Point`]; returns when the worker may go on.
pub trait Gate: Sync {
    fn at(&self, point: Point) -> impl Future<Output = ()> + Send;
}

/// The gate of a load run: never pauses.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPause;

impl Gate for NoPause {
    fn at(&self, _: Point) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// A gate that stops the worker at the points it was built for until the test releases it.
#[derive(Debug)]
pub struct Pause {
    stops: Vec<Point>,
    arrived: mpsc::UnboundedSender<Point>,
    release: Mutex<mpsc::UnboundedReceiver<()>>,
}

/// The test's side of a [`Pause`].
#[derive(Debug)]
pub struct Controller {
    arrived: mpsc::UnboundedReceiver<Point>,
    release: mpsc::UnboundedSender<()>,
}

/// A gate that stops at every one of `stops` (each time the worker gets there, so a retry
/// loop stops again), and its controller.
pub fn pause(stops: &[Point]) -> (Pause, Controller) {
    let (arrived_tx, arrived_rx) = mpsc::unbounded_channel();
    let (release_tx, release_rx) = mpsc::unbounded_channel();
    (
        Pause {
            stops: stops.to_vec(),
            arrived: arrived_tx,
            release: Mutex::new(release_rx),
        },
        Controller {
            arrived: arrived_rx,
            release: release_tx,
        },
    )
}

impl Gate for Pause {
    async fn at(&self, point: Point) {
        if !self.stops.contains(&point) {
            return;
        }
        let _ = self.arrived.send(point);
        // A dropped controller releases everyone: a failing test must not hang.
        let _ = self.release.lock().await.recv().await;
    }
}

impl Controller {
    /// Wait until the worker is parked at a stop; which one.
    pub async fn arrived(&mut self) -> Point {
        self.arrived
            .recv()
            .await
            .expect("the paused worker ended before reaching its stop")
    }

    /// Let the parked worker go on.
    pub fn release(&self) {
        let _ = self.release.send(());
    }
}

/// The backend pids `pid` is waiting for (empty when it is not waiting on a lock).
pub async fn blocked_by(monitor: &PgPool, pid: i32) -> Result<Vec<i32>, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_blocking_pids($1)")
        .bind(pid)
        .fetch_one(monitor)
        .await
}

/// Wait until the session `pid` waits on a lock, and return who holds it. Polls
/// `pg_blocking_pids` (an observation of Postgres's lock table, not a guess from a timeout);
/// gives up after 30 s, which only a broken test reaches.
pub async fn wait_until_blocked(monitor: &PgPool, pid: i32) -> Result<Vec<i32>, sqlx::Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let holders = blocked_by(monitor, pid).await?;
        if !holders.is_empty() {
            return Ok(holders);
        }
        if Instant::now() > deadline {
            return Err(sqlx::Error::Protocol(format!(
                "session {pid} never waited on a lock"
            )));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// This connection's backend pid (what `pg_blocking_pids` talks about).
pub async fn backend_pid(conn: &mut sqlx::PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
}
