//! Scenario 1's real part: N clients race to update one Postgres row with a version check,
//! and retry on conflict with one of the [`crate::jitter`] strategies.
//!
//! Optimistic concurrency, as in the AWS experiment: read the version, then
//! `UPDATE … WHERE version = $read`. Postgres serialises the writers on the row lock; a
//! writer that read a stale version finds, once the lock is its turn, that the row no
//! longer matches — zero rows updated: a conflict, so it backs off and starts over.
//!
//! Every statement crosses a simulated network hop each way ([`Wan`]): the simulator's
//! `Normal(10 ms, 2 ms)` per message, scaled down 5× to `Normal(2 ms, 0.4 ms)` so the default
//! run stays short. The hops set the *contention window* — the time between a client's read
//! and its write, when another writer can slip in — which is what backoff and jitter act on.
//! Without them the window is a loopback round trip (~0.1 ms), far below any timer, and no
//! backoff could be measured honestly. Hops and backoff sleeps run on [`Timer`], not tokio's
//! 1 ms-tick wheel, which would wake clients in lockstep on shared ticks. The database work stays real: the report
//! shows the statements' own latency next to the hops, so it is visible that contention
//! rounds, not Postgres CPU, set the time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use labkit::measure::{Bound, ClosedLoop, Recorder, closed_loop};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sqlx::PgPool;

use crate::jitter::{Backoff, Strategy};
use crate::simulator::SimParams;
use crate::timer::Timer;

/// The row everyone wants.
pub async fn setup(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS hot_row (
             id      int    PRIMARY KEY,
             version bigint NOT NULL,
             updates bigint NOT NULL
         )",
    )
    .execute(pool)
    .await?;
    reset(pool).await
}

/// Version 0, no updates.
pub async fn reset(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO hot_row (id, version, updates) VALUES (1, 0, 0)
         ON CONFLICT (id) DO UPDATE SET version = 0, updates = 0",
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn read_version(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT version FROM hot_row WHERE id = 1")
        .fetch_one(pool)
        .await
}

/// The version-checked write: `true` if this writer's read was still current.
pub async fn write_if_version(pool: &PgPool, read: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE hot_row SET version = version + 1, updates = updates + 1
         WHERE id = 1 AND version = $1",
    )
    .bind(read)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `(version, updates)` now.
pub async fn row(pool: &PgPool) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as("SELECT version, updates FROM hot_row WHERE id = 1")
        .fetch_one(pool)
        .await
}

/// The simulated network between the clients and Postgres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wan {
    pub mean: Duration,
    pub sd: Duration,
}

impl Wan {
    /// One message's trip: `|Normal(mean, sd)|`, slept on the precise [`Timer`].
    pub async fn hop(&self, timer: &Timer, rng: &mut StdRng) {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let s = (self.mean.as_secs_f64() + z * self.sd.as_secs_f64()).abs();
        timer.sleep(Duration::from_secs_f64(s)).await;
    }
}

/// The race's shape: backoff base and cap, and the network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RaceConfig {
    pub base: Duration,
    pub cap: Duration,
    pub wan: Wan,
}

impl RaceConfig {
    /// The simulator's parameters compressed 5× in time (network 10 → 2 ms, base 5 → 1 ms),
    /// and the cap 20× (2000 → 100 ms): at cap/base = 400 the no-jitter run alone would take
    /// ~7 s at 50 clients. The ported simulator, run at these parameters, checks that the
    /// orderings survive the compression.
    pub const COMPRESSED: Self = Self {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(100),
        wan: Wan {
            mean: Duration::from_millis(2),
            sd: Duration::from_micros(400),
        },
    };

    /// The same model for the simulator.
    pub fn sim_params(&self) -> SimParams {
        SimParams {
            base: self.base,
            cap: self.cap,
            net_mean_ms: self.wan.mean.as_secs_f64() * 1000.0,
            net_sd_ms: self.wan.sd.as_secs_f64() * 1000.0,
        }
    }
}

/// What one race of N clients produced.
#[derive(Debug, Clone)]
pub struct RaceOutcome {
    pub clients: usize,
    /// Version-checked writes issued (the simulator's "calls").
    pub calls: u64,
    /// From the start until the last client's write succeeded.
    pub time: Duration,
    /// Latency of the SQL statements themselves (no hops).
    pub sql: Recorder,
    /// The row afterwards: version and updates must both equal `clients`.
    pub final_version: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RaceError {
    #[error("a client gave up after {0} attempts")]
    GaveUp(u32),
    #[error("a racing client failed: {0}")]
    Client(String),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// `clients` clients start at once; each updates the row once, retrying conflicts with
/// `strategy`. The pool must hold at least `clients` connections (a pool wait would be a
/// queue the experiment does not have).
pub async fn race(
    pool: &PgPool,
    clients: usize,
    strategy: Strategy,
    cfg: RaceConfig,
    seed: u64,
) -> Result<RaceOutcome, RaceError> {
    reset(pool).await?;
    let calls = Arc::new(AtomicU64::new(0));
    let sql = Arc::new(Mutex::new(Recorder::new()));
    let timer = Arc::new(Timer::new());
    let op = {
        let (pool, calls, sql, timer) = (pool.clone(), calls.clone(), sql.clone(), timer.clone());
        move |call: labkit::measure::Call| {
            let (pool, calls, sql) = (pool.clone(), calls.clone(), sql.clone());
            let timer = timer.clone();
            let mut rng = StdRng::seed_from_u64(seed ^ (call.seq + 1).wrapping_mul(0x9E37_79B9));
            async move {
                let client = Client {
                    pool: &pool,
                    timer: &timer,
                    calls: &calls,
                    sql: &sql,
                };
                client.race(strategy, cfg, &mut rng).await
            }
        }
    };
    let phase = format!("backoff race: {}, {clients} clients", strategy.label());
    let result = closed_loop(
        ClosedLoop::new(clients, Bound::Count(clients as u64)).label(phase),
        op,
    )
    .await;
    if let Some(e) = result.first_error {
        return Err(RaceError::Client(e));
    }
    let (final_version, _) = row(pool).await?;
    let sql = sql.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(RaceOutcome {
        clients,
        calls: calls.load(Ordering::Relaxed),
        time: Duration::from_secs_f64(result.summary.elapsed_s),
        sql,
        final_version,
    })
}

/// What one racing client needs.
struct Client<'a> {
    pool: &'a PgPool,
    timer: &'a Timer,
    calls: &'a AtomicU64,
    sql: &'a Mutex<Recorder>,
}

impl Client<'_> {
    /// Read, write with the version check, back off on conflict, until the write wins.
    async fn race(
        &self,
        strategy: Strategy,
        cfg: RaceConfig,
        rng: &mut StdRng,
    ) -> Result<u32, RaceError> {
        const GIVE_UP: u32 = 10_000;
        let mut backoff = Backoff::new(strategy, cfg.base, cfg.cap);
        let timed = |d: Duration| self.sql.lock().unwrap_or_else(|e| e.into_inner()).record(d);
        for attempt in 1..=GIVE_UP {
            cfg.wan.hop(self.timer, rng).await;
            let t = std::time::Instant::now();
            let version = read_version(self.pool).await?;
            timed(t.elapsed());
            cfg.wan.hop(self.timer, rng).await;

            cfg.wan.hop(self.timer, rng).await;
            self.calls.fetch_add(1, Ordering::Relaxed);
            let t = std::time::Instant::now();
            let won = write_if_version(self.pool, version).await?;
            timed(t.elapsed());
            cfg.wan.hop(self.timer, rng).await;
            if won {
                return Ok(attempt);
            }
            self.timer.sleep(backoff.next(attempt, rng)).await;
        }
        Err(RaceError::GaveUp(GIVE_UP))
    }
}
