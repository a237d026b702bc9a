//! Scenario 1: replication lag under a write rate stepped up, measured the way monitoring
//! measures it, every `sample_every`:
//!
//! - **bytes**: `pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)` from the primary's
//!   `pg_stat_replication` (WAL the primary has that the standby has not replayed);
//! - **time, primary's view**: `write_lag`, `flush_lag`, `replay_lag` there — how long recent
//!   WAL took to be written, flushed and replayed on the standby, from the standby's replies;
//! - **time, standby's view**: `now() - pg_last_xact_replay_timestamp()` on the standby — the
//!   age of the last commit it replayed. Meaningful while the primary commits; on an idle
//!   primary it grows without any lag, which is why alerts on it misfire at night.
//!
//! The writes are an open loop (labkit's driver: requests due at a fixed rate whether or not
//! earlier ones finished), each one transaction inserting `rows_per_write` rows of ~260 bytes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use labkit::{LatencySummary, OpenLoop, open_loop};
use sqlx::PgPool;

use crate::standby::Standby;

/// How the write rate steps up.
#[derive(Debug, Clone)]
pub struct StepPlan {
    /// Writes per second, one step each, in order.
    pub rates: Vec<f64>,
    pub step: Duration,
    /// The open loop's cap on writes in flight.
    pub in_flight: usize,
    pub rows_per_write: i32,
    pub sample_every: Duration,
}

/// One reading of one standby's lag.
#[derive(Debug, Clone, Copy, Default)]
pub struct LagSample {
    /// Seconds since the stepped load began.
    pub at_s: f64,
    pub bytes: Option<f64>,
    pub write_ms: Option<f64>,
    pub flush_ms: Option<f64>,
    pub replay_ms: Option<f64>,
    /// `now() - pg_last_xact_replay_timestamp()` on the standby.
    pub since_replayed_commit_ms: Option<f64>,
}

/// Every reading of one standby.
#[derive(Debug, Clone)]
pub struct StandbyLag {
    pub label: String,
    pub apply_delay: Duration,
    pub samples: Vec<LagSample>,
}

impl StandbyLag {
    /// The samples taken during `step`.
    pub fn during<'a>(&'a self, step: &'a Step) -> impl Iterator<Item = &'a LagSample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.at_s >= step.from_s && s.at_s < step.to_s)
    }
}

/// One write-rate step.
#[derive(Debug, Clone)]
pub struct Step {
    pub target_rate: f64,
    pub from_s: f64,
    pub to_s: f64,
    pub writes: LatencySummary,
    /// WAL the primary wrote during the step.
    pub wal_bytes: f64,
    /// When the open loop could not keep its rate.
    pub warning: Option<String>,
}

/// The whole stepped run.
#[derive(Debug, Clone)]
pub struct LagRun {
    pub steps: Vec<Step>,
    pub standbys: Vec<StandbyLag>,
}

/// Step the write rate up on `primary` while sampling every standby's lag.
pub async fn stepped_writes(
    primary: &PgPool,
    standbys: &[&Standby],
    plan: &StepPlan,
) -> anyhow::Result<LagRun> {
    let origin = Instant::now();
    let done = AtomicBool::new(false);
    let writes = async {
        let result = write_steps(primary, plan, origin).await;
        // Half a step of quiet at the end, so the chart shows the lag draining.
        tokio::time::sleep(plan.step / 2).await;
        done.store(true, Ordering::Relaxed);
        result
    };
    let sampling = sample_until(&done, primary, standbys, origin, plan.sample_every);
    let (steps, samples) = tokio::join!(writes, sampling);
    let samples = samples?;
    Ok(LagRun {
        steps: steps?,
        standbys: standbys
            .iter()
            .zip(samples)
            .map(|(s, samples)| StandbyLag {
                label: s.label.clone(),
                apply_delay: s.apply_delay,
                samples,
            })
            .collect(),
    })
}

async fn write_steps(
    primary: &PgPool,
    plan: &StepPlan,
    origin: Instant,
) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    for &rate in &plan.rates {
        let wal_before = wal_position(primary).await?;
        let from_s = origin.elapsed().as_secs_f64();
        let pool = primary.clone();
        let rows = plan.rows_per_write;
        let label = format!("writes at {rate:.0}/s");
        let result = open_loop(
            OpenLoop::new(rate, plan.step)
                .max_in_flight(plan.in_flight)
                .label(&label),
            move |_| {
                let pool = pool.clone();
                async move {
                    sqlx::query(
                        "INSERT INTO write_load (payload) \
                         SELECT repeat(md5(g::text), 8) FROM generate_series(1, $1) g",
                    )
                    .bind(rows)
                    .execute(&pool)
                    .await
                    .map(|_| ())
                }
            },
        )
        .await;
        if result.summary.count == 0 {
            anyhow::bail!(
                "{label}: no write succeeded: {}",
                result.first_error.unwrap_or_default()
            );
        }
        let wal_after = wal_position(primary).await?;
        steps.push(Step {
            target_rate: rate,
            from_s,
            to_s: origin.elapsed().as_secs_f64(),
            writes: result.summary,
            wal_bytes: wal_after - wal_before,
            // Lateness is noted by labkit itself; a rate not kept is the part to add.
            warning: result
                .schedule
                .filter(|s| s.achieved_rate_per_s < 0.98 * s.target_rate_per_s)
                .and_then(|s| s.warning(&label)),
        });
    }
    Ok(steps)
}

/// Bytes of WAL since the start of the cluster's WAL (differences are WAL written).
async fn wal_position(primary: &PgPool) -> Result<f64, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8")
        .fetch_one(primary)
        .await
}

type ReplicationRow = (
    Option<String>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
);

/// Sample every standby until `done`, on connections of their own (so the load's pool
/// queueing never delays a sample).
async fn sample_until(
    done: &AtomicBool,
    primary: &PgPool,
    standbys: &[&Standby],
    origin: Instant,
    every: Duration,
) -> anyhow::Result<Vec<Vec<LagSample>>> {
    let mut on_primary = primary.acquire().await?;
    let mut on_standby = Vec::new();
    for s in standbys {
        on_standby.push(s.pool.acquire().await?);
    }
    let mut samples = vec![Vec::new(); standbys.len()];
    while !done.load(Ordering::Relaxed) {
        let at_s = origin.elapsed().as_secs_f64();
        let rows: Vec<ReplicationRow> = sqlx::query_as(
            "SELECT application_name::text, \
                    pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8, \
                    (extract(epoch FROM write_lag) * 1000)::float8, \
                    (extract(epoch FROM flush_lag) * 1000)::float8, \
                    (extract(epoch FROM replay_lag) * 1000)::float8 \
             FROM pg_stat_replication ORDER BY application_name",
        )
        .fetch_all(&mut *on_primary)
        .await?;
        for (i, s) in standbys.iter().enumerate() {
            let since: Option<f64> = sqlx::query_scalar(
                "SELECT (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::float8",
            )
            .fetch_one(&mut *on_standby[i])
            .await?;
            // A REPLICA_URL standby has no name we gave it: the primary's only row is it.
            let row = match &s.application_name {
                Some(name) => rows.iter().find(|r| r.0.as_deref() == Some(name.as_str())),
                None if rows.len() == 1 => rows.first(),
                None => None,
            };
            let mut sample = LagSample {
                at_s,
                since_replayed_commit_ms: since,
                ..LagSample::default()
            };
            if let Some(&(_, bytes, write_ms, flush_ms, replay_ms)) = row {
                sample.bytes = bytes;
                sample.write_ms = write_ms;
                sample.flush_ms = flush_ms;
                sample.replay_ms = replay_ms;
            }
            samples[i].push(sample);
        }
        tokio::time::sleep(every).await;
    }
    Ok(samples)
}
