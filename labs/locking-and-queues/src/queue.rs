//! A job table polled by N workers: no lock, `FOR UPDATE`, `FOR UPDATE SKIP LOCKED`.
//!
//! Every worker runs the same loop — claim the oldest visible job, do its work, delete it —
//! and the three modes differ only in the claim's locking clause:
//!
//! - **no lock**: `SELECT … LIMIT 1`, then work, then `DELETE`. Nothing stops two workers from
//!   reading the same oldest job, so both do its work: double processing (counted in
//!   `job_effects`, which has no unique key on purpose).
//! - **`FOR UPDATE`**: the claim locks the row inside a transaction that lasts until the
//!   job is done. Every other worker's claim also wants the *oldest* row, so it waits for that
//!   lock: N workers, one job at a time.
//! - **`FOR UPDATE SKIP LOCKED`**: a locked row is simply not a candidate, so each worker
//!   gets the oldest job nobody holds. Workers scale until the machine does not.
//!
//! A job's work is small but real: a row written in the same transaction
//! (`INSERT INTO job_effects`) and a short downstream call (an HTTP request, an email; here a
//! timer of [`DOWNSTREAM_CALL`]). With zero-length work the claim is all there is and
//! `FOR UPDATE` looks better than any real queue would let it.

use std::collections::HashSet;
use std::time::Duration;

use labkit::measure::Call;
use labkit::{Bound, ClosedLoop, LatencySummary};
use sqlx::{Connection, PgConnection, PgPool};

use crate::interleave::{Gate, NoPause, Point};

/// What a job waits on besides the database (a downstream HTTP call, an email API). tokio's
/// timer is millisecond-grained, so this is 1–2 ms in practice.
pub const DOWNSTREAM_CALL: Duration = Duration::from_millis(1);

/// The queue the throughput sweep uses.
pub const QUEUE: &str = "orders";

pub mod sql {
    /// The oldest visible job. Every mode starts from this query; the locking clause is the
    /// whole difference.
    pub const PEEK: &str = "SELECT id, payload FROM jobs \
                            WHERE queue = $1 AND visible_at <= now() \
                            ORDER BY visible_at, id LIMIT 1";
    pub const CLAIM_FOR_UPDATE: &str = "SELECT id, payload FROM jobs \
                                        WHERE queue = $1 AND visible_at <= now() \
                                        ORDER BY visible_at, id LIMIT 1 \
                                        FOR UPDATE";
    pub const CLAIM_SKIP_LOCKED: &str = "SELECT id, payload FROM jobs \
                                         WHERE queue = $1 AND visible_at <= now() \
                                         ORDER BY visible_at, id LIMIT 1 \
                                         FOR UPDATE SKIP LOCKED";
    /// The job's effect: one row per processing, so duplicates are countable.
    pub const WORK: &str =
        "INSERT INTO job_effects (job_id, worker, digest) VALUES ($1, $2, md5($3))";
    pub const ACK: &str = "DELETE FROM jobs WHERE id = $1";
}

/// How a worker claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimMode {
    NoLock,
    ForUpdate,
    SkipLocked,
}

impl ClaimMode {
    pub const ALL: [ClaimMode; 3] = [Self::NoLock, Self::ForUpdate, Self::SkipLocked];

    pub fn key(self) -> &'static str {
        match self {
            Self::NoLock => "no_lock",
            Self::ForUpdate => "for_update",
            Self::SkipLocked => "skip_locked",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::NoLock => "no lock",
            Self::ForUpdate => "FOR UPDATE",
            Self::SkipLocked => "FOR UPDATE SKIP LOCKED",
        }
    }

    /// The claim statement.
    pub fn claim_sql(self) -> &'static str {
        match self {
            Self::NoLock => sql::PEEK,
            Self::ForUpdate => sql::CLAIM_FOR_UPDATE,
            Self::SkipLocked => sql::CLAIM_SKIP_LOCKED,
        }
    }
}

/// Claim, work and acknowledge one job of `queue` as `worker`; the job's id, or `None` when
/// nothing was claimable. `gate` is called after the claim (tests pause there).
pub async fn process_one(
    conn: &mut PgConnection,
    mode: ClaimMode,
    queue: &str,
    worker: i32,
    downstream: Duration,
    gate: &impl Gate,
) -> Result<Option<i64>, sqlx::Error> {
    if mode == ClaimMode::NoLock {
        // Autocommit statements: the read takes no lock, so between it and the DELETE any
        // number of workers can read (and work) the same job.
        let Some((id, payload)) = sqlx::query_as::<_, (i64, String)>(mode.claim_sql())
            .bind(queue)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        gate.at(Point::Claimed).await;
        work(&mut *conn, id, worker, &payload, downstream).await?;
        sqlx::query(sql::ACK).bind(id).execute(&mut *conn).await?;
        return Ok(Some(id));
    }
    // The row lock lives as long as this transaction: claim, work, delete, commit.
    let mut tx = conn.begin().await?;
    let Some((id, payload)) = sqlx::query_as::<_, (i64, String)>(mode.claim_sql())
        .bind(queue)
        .fetch_optional(&mut *tx)
        .await?
    else {
        tx.commit().await?;
        return Ok(None);
    };
    gate.at(Point::Claimed).await;
    work(&mut tx, id, worker, &payload, downstream).await?;
    sqlx::query(sql::ACK).bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(Some(id))
}

/// One claim, rolled back: `BEGIN; <claim>; ROLLBACK`. The queue is left exactly as it was,
/// so a benchmark can claim from the same state every iteration.
pub async fn claim_rolled_back(
    conn: &mut PgConnection,
    mode: ClaimMode,
    queue: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let job: Option<(i64, String)> = sqlx::query_as(mode.claim_sql())
        .bind(queue)
        .fetch_optional(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(job.map(|(id, _)| id))
}

async fn work(
    conn: &mut PgConnection,
    id: i64,
    worker: i32,
    payload: &str,
    downstream: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query(sql::WORK)
        .bind(id)
        .bind(worker)
        .bind(payload)
        .execute(&mut *conn)
        .await?;
    if !downstream.is_zero() {
        tokio::time::sleep(downstream).await;
    }
    Ok(())
}

/// Jobs processed more than once: rows in `job_effects` beyond one per job.
pub async fn double_processed(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE n > 1) FROM \
         (SELECT job_id, count(*) AS n FROM job_effects GROUP BY job_id) per_job",
    )
    .fetch_one(pool)
    .await
}

/// One mode at one worker count, measured.
#[derive(Debug, Clone)]
pub struct SweepPoint {
    pub mode: ClaimMode,
    pub workers: usize,
    /// Latency of one claim-work-ack, and its rate.
    pub summary: LatencySummary,
    /// Distinct jobs finished per second in the measured phase (a job done twice counts once).
    pub jobs_per_s: f64,
    /// Jobs whose work ran more than once (warm-up included).
    pub double_processed: i64,
    /// Polls that found the queue empty (the fill was too small if this is not 0).
    pub empty_polls: u64,
    pub first_error: Option<String>,
}

/// Settings of the sweep.
#[derive(Debug, Clone, Copy)]
pub struct Sweep {
    pub duration: Duration,
    pub warmup: Duration,
    /// Jobs enqueued before each point: more than the fastest mode can finish.
    pub fill: i64,
    pub downstream: Duration,
}

/// Fill the queue, run `workers` workers in `mode` for the sweep's duration, count.
pub async fn run_point(
    admin: &PgPool,
    workers_pool: &PgPool,
    mode: ClaimMode,
    workers: usize,
    sweep: Sweep,
) -> Result<SweepPoint, sqlx::Error> {
    crate::schema::reset_queues(admin).await?;
    crate::schema::enqueue(admin, QUEUE, sweep.fill).await?;
    let cfg = ClosedLoop::new(workers, Bound::Duration(sweep.duration))
        .warmup(sweep.warmup)
        .with_timeline()
        .label(format!("job queue: {} · {workers} workers", mode.label()));
    let pool = workers_pool.clone();
    let downstream = sweep.downstream;
    let result = labkit::closed_loop(cfg, move |call: Call| {
        let pool = pool.clone();
        async move {
            let mut conn = pool.acquire().await?;
            process_one(
                &mut conn,
                mode,
                QUEUE,
                call.worker as i32,
                downstream,
                &NoPause,
            )
            .await
        }
    })
    .await;
    let done: HashSet<i64> = result
        .timeline
        .iter()
        .filter_map(|s| s.out.flatten())
        .collect();
    let empty_polls = result
        .timeline
        .iter()
        .filter(|s| matches!(s.out, Some(None)))
        .count() as u64;
    Ok(SweepPoint {
        mode,
        workers,
        summary: result.summary,
        jobs_per_s: done.len() as f64 / result.summary.elapsed_s.max(1e-9),
        double_processed: double_processed(admin).await?,
        empty_polls,
        first_error: result.first_error,
    })
}
