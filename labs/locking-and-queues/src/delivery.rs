//! When workers fail: leases, re-delivery, a dead-letter table, and an idempotent consumer.
//!
//! Here the claim does not hold a transaction open while the job runs. It *leases* the job:
//! one short statement pushes `visible_at` out by the lease and counts the attempt (SQS's
//! visibility timeout, in SQL). The worker then works and acknowledges (deletes) the job. If
//! it dies first, nobody has to notice: the lease runs out and the next claim picks the job
//! up again. That makes delivery **at least once** — a worker that applied the side effect
//! and died before the ack, or one that was still working when its lease ran out, means the
//! job runs twice. After `max_attempts` failed attempts the job moves to `dead_letter` with
//! its last error, instead of crash-looping forever.
//!
//! Two consumers of the same deliveries:
//!
//! - **naive**: side effect (a `ledger` row) and ack are separate statements. Every
//!   re-delivery of a job whose effect already landed lands it again.
//! - **idempotent**: `INSERT INTO processed_keys (job_key) … ON CONFLICT DO NOTHING`, the side
//!   effect and the ack in *one* transaction. A second delivery finds the key and does
//!   nothing; a crash before COMMIT rolls back key and effect together. Zero duplicates, with
//!   the same at-least-once queue underneath.
//!
//! Faults are planned per job from the seed (a crash before the effect, a crash after it, a
//! job slower than its lease, a transient error, a poison payload), so both consumers see
//! exactly the same failures.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres};

use crate::interleave::{Gate, NoPause, Point};

pub mod sql {
    /// Lease the oldest visible job: invisible for `$2` seconds, attempt counted. SKIP LOCKED
    /// so two claimers never wait for (or get) the same row.
    pub const CLAIM: &str = "UPDATE jobs \
        SET visible_at = now() + make_interval(secs => $2), attempts = attempts + 1 \
        WHERE id = (SELECT id FROM jobs \
                    WHERE queue = $1 AND visible_at <= now() \
                    ORDER BY visible_at, id LIMIT 1 \
                    FOR UPDATE SKIP LOCKED) \
        RETURNING id, key, payload, attempts, max_attempts, last_error";
    /// A failed attempt: visible again after a backoff, with its error. Fenced by the attempt
    /// number, so a worker whose lease already ran out cannot touch the next delivery.
    pub const RETRY_LATER: &str = "UPDATE jobs \
        SET visible_at = now() + make_interval(secs => $3), last_error = $4 \
        WHERE id = $1 AND attempts = $2";
    /// Out of attempts: move the job to the dead-letter table, with its last error.
    pub const DEAD_LETTER: &str = "WITH dead AS ( \
            DELETE FROM jobs WHERE id = $1 AND attempts = $2 \
            RETURNING id, queue, key, payload, attempts) \
        INSERT INTO dead_letter (job_id, queue, key, payload, attempts, last_error) \
        SELECT id, queue, key, payload, attempts, $3 FROM dead";
    pub const ACK: &str = "DELETE FROM jobs WHERE id = $1";
    pub const EFFECT: &str = "INSERT INTO ledger (job_key, worker, consumer) VALUES ($1, $2, $3)";
    /// The idempotent consumer's dedup key, written in the side effect's transaction.
    pub const REMEMBER: &str =
        "INSERT INTO processed_keys (job_key) VALUES ($1) ON CONFLICT (job_key) DO NOTHING";
}

/// A leased job.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Leased {
    pub id: i64,
    pub key: String,
    pub payload: String,
    /// This delivery's attempt number (1 = first delivery).
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
}

/// Lease the next visible job of `queue` for `lease`.
pub async fn claim(
    conn: &mut PgConnection,
    queue: &str,
    lease: Duration,
) -> Result<Option<Leased>, sqlx::Error> {
    sqlx::query_as(sql::CLAIM)
        .bind(queue)
        .bind(lease.as_secs_f64())
        .fetch_optional(conn)
        .await
}

/// What became of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Visible again after the backoff.
    RetryLater,
    /// Out of attempts: now in `dead_letter`.
    DeadLettered,
    /// The lease had already run out and someone else has the job (the fence held).
    LeaseLost,
}

/// Record a failed attempt: retry after `backoff`, or dead-letter the job when this was its
/// last attempt.
pub async fn fail(
    conn: &mut PgConnection,
    job: &Leased,
    error: &str,
    backoff: Duration,
) -> Result<Failed, sqlx::Error> {
    let (sql, outcome) = if job.attempts >= job.max_attempts {
        (sql::DEAD_LETTER, Failed::DeadLettered)
    } else {
        (sql::RETRY_LATER, Failed::RetryLater)
    };
    let q = sqlx::query(sql).bind(job.id).bind(job.attempts);
    let q = if outcome == Failed::DeadLettered {
        q.bind(error)
    } else {
        q.bind(backoff.as_secs_f64()).bind(error)
    };
    let done = q.execute(conn).await?;
    Ok(if done.rows_affected() == 1 {
        outcome
    } else {
        Failed::LeaseLost
    })
}

/// Which consumer applies the side effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    Naive,
    Idempotent,
}

impl Consumer {
    pub fn key(self) -> &'static str {
        match self {
            Self::Naive => "naive",
            Self::Idempotent => "idempotent",
        }
    }
}

/// What a completion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    /// The side effect was applied (and the job acknowledged).
    Applied,
    /// The idempotent consumer had already applied this job: nothing done but the ack.
    AlreadyApplied,
}

/// Apply the job's side effect and acknowledge it. `gate` is called between the effect and
/// the ack: a test pauses there; [`run`]'s "crash after the effect" leaves there for good.
pub async fn complete(
    conn: &mut PgConnection,
    consumer: Consumer,
    job: &Leased,
    worker: i32,
    gate: &impl Gate,
) -> Result<Completed, sqlx::Error> {
    match consumer {
        Consumer::Naive => {
            sqlx::query(sql::EFFECT)
                .bind(&job.key)
                .bind(worker)
                .bind(consumer.key())
                .execute(&mut *conn)
                .await?;
            gate.at(Point::Applied).await;
            sqlx::query(sql::ACK)
                .bind(job.id)
                .execute(&mut *conn)
                .await?;
            Ok(Completed::Applied)
        }
        Consumer::Idempotent => {
            let mut tx = conn.begin().await?;
            // If another delivery of this job is mid-transaction, this INSERT waits for it:
            // its COMMIT makes ours a no-op, its ROLLBACK lets ours through.
            let fresh = sqlx::query(sql::REMEMBER)
                .bind(&job.key)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if fresh {
                sqlx::query(sql::EFFECT)
                    .bind(&job.key)
                    .bind(worker)
                    .bind(consumer.key())
                    .execute(&mut *tx)
                    .await?;
            }
            gate.at(Point::Applied).await;
            sqlx::query(sql::ACK).bind(job.id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(if fresh {
                Completed::Applied
            } else {
                Completed::AlreadyApplied
            })
        }
    }
}

/// Side-effect rows beyond one per job, for `consumer`.
pub async fn duplicate_effects(pool: &PgPool, consumer: Consumer) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) - count(DISTINCT job_key) FROM ledger WHERE consumer = $1")
        .bind(consumer.key())
        .fetch_one(pool)
        .await
}

/// What goes wrong with a job, decided per job from the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Attempt 1: the worker dies before doing anything (OOM-killed, deploy).
    CrashBeforeEffect,
    /// Attempt 1: the worker dies after the side effect, before the ack.
    CrashAfterEffect,
    /// Attempt 1 takes longer than the lease; the job is re-delivered while it still runs.
    SlowerThanLease,
    /// Attempt 1 fails with a retryable error.
    Transient,
    /// Every attempt fails: the payload is bad.
    Poison,
}

impl Fault {
    /// The plan: 5 % poison, 8 % crash before, 8 % crash after, 2 % slow, 5 % transient.
    pub fn for_job(payload: &str, seed: u64) -> Fault {
        let n: u64 = payload
            .rsplit('-')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let u: f64 =
            StdRng::seed_from_u64(seed ^ n.wrapping_mul(0xA076_1D64_78BD_642F)).random::<f64>();
        match u {
            u if u < 0.05 => Fault::Poison,
            u if u < 0.13 => Fault::CrashBeforeEffect,
            u if u < 0.21 => Fault::CrashAfterEffect,
            u if u < 0.23 => Fault::SlowerThanLease,
            u if u < 0.28 => Fault::Transient,
            _ => Fault::None,
        }
    }
}

/// Settings of a delivery run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub jobs: i64,
    /// Jobs arrive at this rate (a steady trickle keeps the queue short, so an expired lease
    /// is re-delivered soon after it expires instead of behind a long backlog).
    pub rate_per_s: f64,
    pub workers: usize,
    /// Compressed from production's 30 s–5 min; the mechanism only needs lease ≫ job time.
    pub lease: Duration,
    pub backoff: Duration,
    pub seed: u64,
}

/// What a delivery run produced.
#[derive(Debug, Clone, Default)]
pub struct DeliveryRun {
    pub jobs: i64,
    pub crashes: u64,
    /// Jobs whose worker died holding them and that a later claim delivered again.
    pub redelivered_after_crash: u64,
    /// Deliveries of a job whose earlier delivery was still running (lease ran out).
    pub redelivered_while_running: u64,
    pub dead_lettered: i64,
    pub duplicate_effects: i64,
    /// Jobs with no side effect and no dead letter: lost (must be 0).
    pub lost: i64,
    pub retries: u64,
    pub elapsed: Duration,
}

#[derive(Debug, Default)]
struct Log {
    /// key → attempts claimed
    claims: HashMap<String, Vec<i32>>,
    /// key → attempt the worker died on
    crashed: HashMap<String, i32>,
    slow: HashSet<String>,
    retries: u64,
}

/// Enqueue `plan.jobs` jobs on `queue` and run `plan.workers` workers with `consumer` until
/// every job is done or dead; then count.
pub async fn run(
    admin: &PgPool,
    workers_pool: &PgPool,
    consumer: Consumer,
    queue: &str,
    plan: Plan,
) -> Result<DeliveryRun, sqlx::Error> {
    let started = std::time::Instant::now();
    let log = Arc::new(Mutex::new(Log::default()));
    let producing = Arc::new(AtomicBool::new(true));
    // A JoinSet: dropping the run (Ctrl-C) aborts the workers with it.
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..plan.workers {
        let (pool, log, queue) = (workers_pool.clone(), log.clone(), queue.to_string());
        let producing = producing.clone();
        tasks.spawn(async move {
            work_loop(pool, consumer, &queue, worker as i32, plan, log, producing).await
        });
    }
    // The producer: jobs arrive in 10 ms batches at the plan's rate.
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (plan.rate_per_s / 100.0).max(1.0);
    let mut sent = 0_i64;
    let mut owed = 0.0;
    while sent < plan.jobs {
        tick.tick().await;
        owed += per_tick;
        let n = (owed.floor() as i64).min(plan.jobs - sent);
        owed -= n as f64;
        if n > 0 {
            crate::schema::enqueue_range(admin, queue, sent + 1, sent + n).await?;
            sent += n;
        }
    }
    producing.store(false, Ordering::SeqCst);
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| sqlx::Error::Protocol(format!("worker panicked: {e}")))??;
    }
    let elapsed = started.elapsed();
    let log = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
    let redelivered_after_crash = log
        .crashed
        .iter()
        .filter(|(key, at)| {
            log.claims
                .get(*key)
                .is_some_and(|c| c.iter().any(|a| a > at))
        })
        .count() as u64;
    let redelivered_while_running = log
        .slow
        .iter()
        .filter(|key| log.claims.get(*key).is_some_and(|c| c.len() > 1))
        .count() as u64;
    let dead_lettered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dead_letter WHERE queue = $1")
            .bind(queue)
            .fetch_one(admin)
            .await?;
    let applied: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT job_key) FROM ledger WHERE consumer = $1")
            .bind(consumer.key())
            .fetch_one(admin)
            .await?;
    Ok(DeliveryRun {
        jobs: plan.jobs,
        crashes: log.crashed.len() as u64,
        redelivered_after_crash,
        redelivered_while_running,
        dead_lettered,
        duplicate_effects: duplicate_effects(admin, consumer).await?,
        lost: plan.jobs - applied - dead_lettered,
        retries: log.retries,
        elapsed,
    })
}

/// A worker that "dies": its connection is closed without a goodbye, as a killed process's
/// would be; an open transaction is rolled back by the server.
fn die(conn: PoolConnection<Postgres>) {
    drop(conn.detach());
}

async fn work_loop(
    pool: PgPool,
    consumer: Consumer,
    queue: &str,
    worker: i32,
    plan: Plan,
    log: Arc<Mutex<Log>>,
    producing: Arc<AtomicBool>,
) -> Result<(), sqlx::Error> {
    let note = |f: &dyn Fn(&mut Log)| f(&mut log.lock().unwrap_or_else(|e| e.into_inner()));
    let mut conn = pool.acquire().await?;
    loop {
        // Read before claiming: once the producer is done, an empty queue stays empty.
        let more_coming = producing.load(Ordering::SeqCst);
        let Some(job) = claim(&mut conn, queue, plan.lease).await? else {
            // Nothing visible. Done if nothing is left at all; otherwise jobs are leased or
            // backing off (or on their way): poll again shortly.
            let left: bool = more_coming
                || sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM jobs WHERE queue = $1)")
                    .bind(queue)
                    .fetch_one(&mut *conn)
                    .await?;
            if !left {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        note(&|l| {
            l.claims
                .entry(job.key.clone())
                .or_default()
                .push(job.attempts)
        });
        if job.attempts > job.max_attempts {
            // Claimed max_attempts times and never acknowledged: its workers keep dying.
            let error = job.last_error.clone().unwrap_or_else(|| {
                format!("lease expired {} times: worker lost", job.max_attempts)
            });
            fail(&mut conn, &job, &error, plan.backoff).await?;
            continue;
        }
        let fault = match Fault::for_job(&job.payload, plan.seed) {
            Fault::Poison => Fault::Poison,
            f if job.attempts == 1 => f,
            _ => Fault::None,
        };
        match fault {
            Fault::CrashBeforeEffect => {
                note(&|l| {
                    l.crashed.insert(job.key.clone(), job.attempts);
                });
                die(conn);
                conn = pool.acquire().await?;
            }
            Fault::CrashAfterEffect => {
                note(&|l| {
                    l.crashed.insert(job.key.clone(), job.attempts);
                });
                // Apply the effect, then die at the gate instead of acknowledging.
                let (gate, mut ctl) = crate::interleave::pause(&[Point::Applied]);
                {
                    let completing = complete(&mut conn, consumer, &job, worker, &gate);
                    tokio::pin!(completing);
                    tokio::select! {
                        done = &mut completing => { done?; }
                        _ = ctl.arrived() => {}
                    }
                }
                die(conn);
                conn = pool.acquire().await?;
            }
            Fault::Poison | Fault::Transient => {
                let error = if fault == Fault::Poison {
                    format!("payload rejected: {} is not a valid order", job.payload)
                } else {
                    "downstream answered 503".to_string()
                };
                fail(&mut conn, &job, &error, plan.backoff).await?;
                note(&|l| l.retries += 1);
            }
            Fault::SlowerThanLease => {
                note(&|l| {
                    l.slow.insert(job.key.clone());
                });
                tokio::time::sleep(plan.lease * 3).await;
                complete(&mut conn, consumer, &job, worker, &NoPause).await?;
            }
            Fault::None => {
                tokio::time::sleep(crate::queue::DOWNSTREAM_CALL).await;
                complete(&mut conn, consumer, &job, worker, &NoPause).await?;
            }
        }
    }
}
