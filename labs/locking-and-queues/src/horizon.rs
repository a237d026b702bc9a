//! The long-transaction death spiral: one open snapshot, and the queue slows by the minute.
//!
//! A queue table churns: every finished job is a DELETE, i.e. a dead row version plus a dead
//! entry in `jobs_claim`. Normally the first index scan that meets such an entry sees the row
//! is dead to *everyone*, marks the entry (an LP_DEAD hint) and later scans step over it;
//! VACUUM reclaims the rest. One session that sits in a transaction with an old snapshot —
//! an analytics report at repeatable read, a `BEGIN` someone forgot in psql — holds back the
//! xmin horizon: rows deleted after its snapshot might still be visible *to it*, so no entry
//! can be marked dead and VACUUM may remove none of them. Every claim walks the index from the
//! oldest end, through every job finished since the snapshot, visiting the heap for each. The
//! claim gets slower with every job done — Brandur Leach's "Postgres Job Queues & Failure By
//! MVCC", reproduced in seconds instead of an hour by churning faster.
//!
//! The run: a producer enqueues at a fixed rate, workers claim with SKIP LOCKED, a sampler
//! reads `n_dead_tup` and the backlog. Stages: baseline → the long transaction opens →
//! it ends (no VACUUM yet) → `VACUUM`. At each stage's end the claim is run once under
//! `EXPLAIN (ANALYZE, BUFFERS)`: the buffers it touched are the mechanism, counted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use labkit::explain::{self, Plan};
use labkit::measure::Call;
use labkit::{Bound, ClosedLoop, LatencySummary, Recorder};
use sqlx::{Connection, PgConnection, PgPool};

use crate::queue::sql;

/// The queue this scenario churns.
pub const QUEUE: &str = "churn";

/// A session sitting in a transaction with an old snapshot: the report someone left open.
#[derive(Debug)]
pub struct LongTransaction {
    conn: PgConnection,
    pub pid: i32,
}

impl LongTransaction {
    /// `BEGIN ISOLATION LEVEL REPEATABLE READ` and one query: from here on the snapshot, and
    /// with it the xmin horizon, stays where it is until [`end`](Self::end).
    pub async fn open(url: &str) -> Result<Self, sqlx::Error> {
        let mut conn = PgConnection::connect(url).await?;
        let pid = crate::interleave::backend_pid(&mut conn).await?;
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM jobs")
            .execute(&mut conn)
            .await?;
        Ok(Self { conn, pid })
    }

    /// The xmin this session holds back (`pg_stat_activity.backend_xmin`).
    pub async fn backend_xmin(&self, monitor: &PgPool) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT backend_xmin::text FROM pg_stat_activity WHERE pid = $1")
            .bind(self.pid)
            .fetch_one(monitor)
            .await
    }

    /// COMMIT and disconnect: the horizon moves on.
    pub async fn end(mut self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql("COMMIT").execute(&mut self.conn).await?;
        self.conn.close().await
    }
}

/// `VACUUM jobs`, then the dead row versions it had to leave behind (`n_dead_tup`, which
/// VACUUM sets to what it found dead but not yet removable).
pub async fn vacuum_and_count_dead(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query("VACUUM jobs").execute(pool).await?;
    dead_tuples(pool).await
}

/// `n_dead_tup` of `jobs` as the statistics system has it now. Statistics are asynchronous:
/// busy sessions flush their counts about once a second, so this trails by up to a second.
pub async fn dead_tuples(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'jobs'")
        .fetch_one(pool)
        .await
}

/// The claim, once, under `EXPLAIN (ANALYZE, BUFFERS)`, rolled back (it locks a row).
pub async fn explain_claim(pool: &PgPool) -> Result<Plan, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let plan = explain::analyze(&mut *tx, sql::CLAIM_SKIP_LOCKED, |q| q.bind(QUEUE)).await?;
    tx.rollback().await?;
    Ok(plan)
}

/// The stages of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Baseline,
    Held,
    Ended,
    Vacuumed,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Self::Baseline, Self::Held, Self::Ended, Self::Vacuumed];

    pub fn label(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Held => "long transaction open",
            Self::Ended => "ended, not vacuumed",
            Self::Vacuumed => "after VACUUM",
        }
    }
}

/// Settings of the run (time compressed: a fast churn instead of an hour).
#[derive(Debug, Clone, Copy)]
pub struct Spiral {
    /// Jobs waiting when the run starts.
    pub backlog: i64,
    /// Producer's enqueue rate, jobs/s.
    pub rate_per_s: f64,
    pub workers: usize,
    /// How long each stage lasts: baseline, held, ended-not-vacuumed, vacuumed.
    pub stages: [Duration; 4],
    /// Width of a chart bucket (claim p95 and dead tuples per bucket).
    pub bucket: Duration,
}

/// One chart bucket.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    pub at_s: f64,
    pub stage: Stage,
    pub claim_p95_ms: f64,
    pub claims: u64,
    pub dead_tuples: i64,
    pub backlog: i64,
    /// Buffers one claim touched (the bucket's last EXPLAIN sample).
    pub claim_buffers: u64,
}

/// One stage, summed up.
#[derive(Debug, Clone)]
pub struct StageStats {
    pub stage: Stage,
    pub claims: LatencySummary,
    /// Buffers the claim touched, run once under EXPLAIN at the stage's end.
    pub claim_buffers: u64,
    pub claim_ms: f64,
    /// The claim's execution time inside the server (EXPLAIN ANALYZE, sampled through the
    /// stage): the mechanism without the client's scheduling noise.
    pub claim_server: LatencySummary,
    /// Claims finished per second in this stage.
    pub claims_per_s: f64,
    pub dead_tuples_end: i64,
    pub backlog_end: i64,
}

#[derive(Debug, Clone)]
pub struct SpiralRun {
    pub stages: Vec<StageStats>,
    pub ticks: Vec<Tick>,
    pub dead_tuples_peak: i64,
    /// Most visible jobs waiting while the transaction was open.
    pub backlog_peak: i64,
    /// `VACUUM` run while the transaction was still open: what it had to leave.
    pub unremovable_while_held: i64,
    /// `pg_stat_activity.backend_xmin` of the long transaction (proof it held the horizon).
    pub held_xmin: Option<String>,
    pub jobs_done: u64,
}

impl SpiralRun {
    pub fn stage(&self, s: Stage) -> &StageStats {
        self.stages
            .iter()
            .find(|x| x.stage == s)
            .expect("every stage ran")
    }
}

/// Claim (timed), work, delete, commit. The claim's own latency, or `None` when the queue
/// was empty.
async fn claim_work_ack(
    conn: &mut PgConnection,
    worker: i32,
) -> Result<Option<Duration>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let t0 = Instant::now();
    let job: Option<(i64, String)> = sqlx::query_as(sql::CLAIM_SKIP_LOCKED)
        .bind(QUEUE)
        .fetch_optional(&mut *tx)
        .await?;
    let claim = t0.elapsed();
    let Some((id, payload)) = job else {
        tx.commit().await?;
        return Ok(None);
    };
    sqlx::query(sql::WORK)
        .bind(id)
        .bind(worker)
        .bind(&payload)
        .execute(&mut *tx)
        .await?;
    // No downstream wait here: the churn is the point, and a faster churn compresses the
    // article's hour into seconds.
    sqlx::query(sql::ACK).bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(Some(claim))
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    dead: i64,
    backlog: i64,
    claim_buffers: u64,
    claim_ms: f64,
}

/// Run the four stages on `QUEUE`. `url` is the scratch database's (the long transaction
/// gets its own connection).
pub async fn run(
    admin: &PgPool,
    workers_pool: &PgPool,
    url: &str,
    s: Spiral,
) -> Result<SpiralRun, sqlx::Error> {
    crate::schema::reset_queues(admin).await?;
    crate::schema::enqueue(admin, QUEUE, s.backlog).await?;
    sqlx::query("VACUUM ANALYZE jobs").execute(admin).await?;
    let total: Duration = s.stages.iter().sum();
    let start = Instant::now();
    let stop = Stop::default();

    // The producer: enqueue at a fixed rate, in 10 ms batches.
    let producer = {
        let (pool, stop) = (admin.clone(), stop.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut owed = 0.0;
            while !stop.is_stopped() {
                tick.tick().await;
                owed += s.rate_per_s / 100.0;
                let n = owed.floor() as i64;
                owed -= n as f64;
                if n > 0 {
                    crate::schema::enqueue(&pool, QUEUE, n).await?;
                }
            }
            Ok::<_, sqlx::Error>(())
        }
    };

    // The sampler, four times a bucket: dead tuples, backlog, and one claim under EXPLAIN.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let sampler = {
        let (pool, stop, samples) = (admin.clone(), stop.clone(), samples.clone());
        async move {
            while !stop.is_stopped() {
                let dead = dead_tuples(&pool).await?;
                let backlog: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM jobs WHERE queue = $1 AND visible_at <= now()",
                )
                .bind(QUEUE)
                .fetch_one(&pool)
                .await?;
                let plan = explain_claim(&pool).await?;
                samples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Sample {
                        at: start.elapsed(),
                        dead,
                        backlog,
                        claim_buffers: plan.buffers(),
                        claim_ms: plan.execution_ms,
                    });
                tokio::time::sleep(s.bucket / 4).await;
            }
            Ok::<_, sqlx::Error>(())
        }
    };

    // The workers: SKIP LOCKED claims for the whole run; each sample keeps the claim time.
    let workers = {
        let pool = workers_pool.clone();
        let cfg = ClosedLoop::new(s.workers, Bound::Duration(total))
            .with_timeline()
            .label("long-transaction death spiral: workers");
        labkit::closed_loop(cfg, move |call: Call| {
            let pool = pool.clone();
            async move {
                let mut conn = pool.acquire().await?;
                let claimed = claim_work_ack(&mut conn, call.worker as i32).await?;
                if claimed.is_none() {
                    // An empty queue: a real worker would poll again shortly.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Ok::<_, sqlx::Error>(claimed)
            }
        })
    };

    // The story's script: the stages, with the claim EXPLAINed at each stage's end.
    let script = {
        let (pool, stop) = (admin.clone(), stop.clone());
        async move {
            let mut at = start;
            let mut plans = Vec::new();
            let mut unremovable = 0;
            let mut held_xmin = None;
            let mut long_tx = None;
            for (i, stage) in Stage::ALL.into_iter().enumerate() {
                match stage {
                    Stage::Baseline => {}
                    Stage::Held => {
                        let tx = LongTransaction::open(url).await?;
                        held_xmin = tx.backend_xmin(&pool).await?;
                        long_tx = Some(tx);
                    }
                    Stage::Ended => {
                        if let Some(tx) = long_tx.take() {
                            tx.end().await?;
                        }
                    }
                    Stage::Vacuumed => {
                        sqlx::query("VACUUM jobs").execute(&pool).await?;
                    }
                }
                at += s.stages[i];
                tokio::time::sleep_until(at.into()).await;
                if stage == Stage::Held {
                    // Still open: VACUUM now, and see what it may not remove.
                    unremovable = vacuum_and_count_dead(&pool).await?;
                }
                plans.push(explain_claim(&pool).await?);
            }
            stop.stop();
            Ok::<_, sqlx::Error>((plans, unremovable, held_xmin))
        }
    };

    let (load, produced, sampled, scripted) = tokio::join!(workers, producer, sampler, script);
    produced?;
    sampled?;
    let (plans, unremovable_while_held, held_xmin) = scripted?;
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner()));

    // Stage boundaries on the run's clock.
    let bounds: Vec<Duration> = s
        .stages
        .iter()
        .scan(Duration::ZERO, |acc, d| {
            *acc += *d;
            Some(*acc)
        })
        .collect();
    let stage_at = |t: Duration| {
        Stage::ALL[bounds
            .iter()
            .position(|b| t < *b)
            .unwrap_or(Stage::ALL.len() - 1)]
    };
    let claims: Vec<(Duration, Duration)> = load
        .timeline
        .iter()
        .filter_map(|x| x.out.flatten().map(|c| (x.at, c)))
        .collect();

    let mut stages = Vec::new();
    for (i, stage) in Stage::ALL.into_iter().enumerate() {
        let mut rec = Recorder::new();
        claims
            .iter()
            .filter(|(at, _)| stage_at(*at) == stage)
            .for_each(|(_, c)| rec.record(*c));
        let last = samples.iter().rev().find(|x| stage_at(x.at) == stage);
        let mut server = Recorder::new();
        samples
            .iter()
            .filter(|x| stage_at(x.at) == stage)
            .for_each(|x| server.record(Duration::from_secs_f64(x.claim_ms / 1000.0)));
        let claims = rec.summary(s.stages[i]);
        stages.push(StageStats {
            stage,
            claims_per_s: claims.throughput_per_s,
            claims,
            claim_server: server.summary(s.stages[i]),
            claim_buffers: plans[i].buffers(),
            claim_ms: plans[i].execution_ms,
            dead_tuples_end: last.map_or(0, |x| x.dead),
            backlog_end: last.map_or(0, |x| x.backlog),
        });
    }

    let buckets = (total.as_secs_f64() / s.bucket.as_secs_f64()).ceil() as usize;
    let ticks = (0..buckets)
        .map(|b| {
            let lo = s.bucket * b as u32;
            let hi = lo + s.bucket;
            let mut rec = Recorder::new();
            claims
                .iter()
                .filter(|(at, _)| *at >= lo && *at < hi)
                .for_each(|(_, c)| rec.record(*c));
            let sum = rec.summary(s.bucket);
            let last = samples.iter().rev().find(|x| x.at < hi);
            Tick {
                at_s: hi.as_secs_f64(),
                stage: stage_at(lo),
                claim_p95_ms: sum.p95_ms,
                claims: sum.count,
                dead_tuples: last.map_or(0, |x| x.dead),
                backlog: last.map_or(0, |x| x.backlog),
                claim_buffers: last.map_or(0, |x| x.claim_buffers),
            }
        })
        .collect();

    Ok(SpiralRun {
        stages,
        ticks,
        dead_tuples_peak: samples.iter().map(|x| x.dead).max().unwrap_or(0),
        backlog_peak: samples
            .iter()
            .filter(|x| stage_at(x.at) == Stage::Held)
            .map(|x| x.backlog)
            .max()
            .unwrap_or(0),
        unremovable_while_held,
        held_xmin,
        jobs_done: claims.len() as u64,
    })
}

/// A stop flag the run's tasks poll.
#[derive(Debug, Clone, Default)]
struct Stop(Arc<std::sync::atomic::AtomicBool>);

impl Stop {
    fn stop(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    fn is_stopped(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}
