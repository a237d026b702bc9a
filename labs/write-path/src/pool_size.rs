//! Pool size at a fixed offered write load: where more connections stop helping.
//!
//! The same open-loop stream of single-row inserts (a fixed arrival rate, latency measured
//! from each request's intended start) meets pools of 2 … 128 connections. Little's law,
//! L = λ·W, ties the numbers together: at a steady λ rows/s with mean latency W, L requests
//! are in the system on average. A pool smaller than the L the database needs to keep up
//! queues the rest in the application (cheap, and visible); a pool much larger lets every
//! one of them into Postgres, where 2 cores time-slice between runnable backends and the
//! backends queue on the WAL insertion and flush locks instead — the same work, more
//! context switches and lock hand-offs, and a longer tail. The knee sits near a small
//! multiple of the cores: HikariCP's "About Pool Sizing" formula is
//! `cores × 2 + effective spindles` (here 2 × 2 + 1 = 5).
//!
//! While each phase runs, a sampler reads `pg_stat_activity` every 20 ms: how many backends
//! are active and what they wait on (no wait event = on a CPU or waiting for one).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use labkit::{Bound, ClosedLoop, LoadResult, OpenLoop, closed_loop, open_loop};
use sqlx::Connection;

use crate::schema::{self, EventStream};
use crate::target::Target;

/// The pool sizes of the sweep (the smoke scale uses a prefix).
pub const SIZES: [u32; 7] = [2, 4, 8, 16, 32, 64, 128];

/// One pool size's phase.
#[derive(Debug, Clone)]
pub struct PoolPoint {
    pub size: u32,
    pub result: LoadResult,
    pub waits: Waits,
}

impl PoolPoint {
    pub fn rows_per_s(&self) -> f64 {
        self.result.summary.throughput_per_s
    }

    /// L = λ·W: requests in the system (pool queue + Postgres) on average.
    pub fn in_system(&self) -> f64 {
        self.result.summary.throughput_per_s * self.result.summary.mean_ms / 1000.0
    }
}

/// What `pg_stat_activity` showed while a phase ran.
#[derive(Debug, Clone, Default)]
pub struct Waits {
    pub samples: u64,
    /// Active backends summed over the samples.
    pub active: u64,
    /// Active backends by wait event (`CPU` when there is none), summed over the samples.
    pub by_event: BTreeMap<String, u64>,
}

impl Waits {
    pub fn avg_active(&self) -> f64 {
        self.active as f64 / self.samples.max(1) as f64
    }

    /// The most common wait events with their share of active backends, most common first.
    pub fn top(&self, n: usize) -> Vec<(String, f64)> {
        let mut v: Vec<_> = self
            .by_event
            .iter()
            .map(|(k, c)| (k.clone(), *c as f64 / self.active.max(1) as f64))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v.truncate(n);
        v
    }
}

fn insert_op(
    pool: sqlx::PgPool,
    events: EventStream,
) -> impl Fn(labkit::measure::Call) -> futures::future::BoxFuture<'static, Result<(), sqlx::Error>>
+ Send
+ Sync
+ 'static {
    move |_| {
        let (pool, e) = (pool.clone(), events.next_event());
        Box::pin(async move { schema::insert_one(&pool, &e).await })
    }
}

/// Rows/s that `writers` closed-loop clients reach: the capacity the offered rate is set from.
pub async fn capacity(
    target: &Target,
    writers: u32,
    duration: Duration,
    events: &EventStream,
) -> anyhow::Result<f64> {
    let pool = target.pool(writers, target.connect_options()).await?;
    let r = closed_loop(
        ClosedLoop::new(writers as usize, Bound::Duration(duration))
            .label(format!("pool sizes: capacity with {writers} writers")),
        insert_op(pool.clone(), events.clone()),
    )
    .await;
    target.close_pool(pool).await?;
    Ok(r.summary.throughput_per_s)
}

/// Offer `rate` single-row inserts per second for `duration` to a pool of `size`.
pub async fn at_size(
    target: &Target,
    size: u32,
    rate: f64,
    duration: Duration,
    events: &EventStream,
) -> anyhow::Result<PoolPoint> {
    let pool = target.pool(size, target.connect_options()).await?;
    let done = AtomicBool::new(false);
    let load = async {
        let r = open_loop(
            OpenLoop::new(rate, duration).label(format!("pool of {size} at {rate:.0} rows/s")),
            insert_op(pool.clone(), events.clone()),
        )
        .await;
        done.store(true, Ordering::SeqCst);
        r
    };
    let (result, waits) = tokio::join!(load, sample_waits(target, &done));
    target.close_pool(pool).await?;
    Ok(PoolPoint {
        size,
        result,
        waits: waits?,
    })
}

/// Poll `pg_stat_activity` every 20 ms until `done`.
async fn sample_waits(target: &Target, done: &AtomicBool) -> Result<Waits, sqlx::Error> {
    let mut conn = target.connect().await?;
    let mut waits = Waits::default();
    while !done.load(Ordering::SeqCst) {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*)
             FROM pg_stat_activity
             WHERE datname = current_database() AND backend_type = 'client backend'
               AND state = 'active' AND pid <> pg_backend_pid()
             GROUP BY 1",
        )
        .fetch_all(&mut conn)
        .await?;
        waits.samples += 1;
        for (event, n) in rows {
            waits.active += n as u64;
            *waits.by_event.entry(event).or_default() += n as u64;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = conn.close().await;
    Ok(waits)
}

/// The pool to recommend: among the sizes within 2 % of the best throughput, the one with
/// the lowest p99.
pub fn best(points: &[PoolPoint]) -> Option<&PoolPoint> {
    let top = points.iter().map(|p| p.rows_per_s()).fold(0.0, f64::max);
    points
        .iter()
        .filter(|p| p.rows_per_s() >= 0.98 * top)
        .min_by(|a, b| a.result.summary.p99_ms.total_cmp(&b.result.summary.p99_ms))
}
