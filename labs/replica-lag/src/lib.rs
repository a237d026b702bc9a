//! Replica lag: a real streaming replica, read-your-writes anomalies, and what each fix costs.
//!
//! The war story: reads moved to a read replica to offload the primary. A user saves their
//! profile, the redirect loads the page from the replica, and the replica has not replayed the
//! save yet: the old name comes back, and support tickets say "my change was lost". Later a
//! long report on the replica dies with "canceling statement due to conflict with recovery".
//!
//! The mechanism: streaming replication is asynchronous by default. COMMIT returns once the
//! primary has the WAL; the standby receives, flushes and *replays* it afterwards, so a read
//! there right after a commit can miss it. Three fixes, each with a price: read from the
//! primary for a while after the user's write (stale only if the lag outlives the window; the
//! primary takes those reads back), read the replica only once it has replayed the write's
//! LSN (exact; an extra round trip, and a bounded wait or a fall back to the primary), or make
//! COMMIT wait until the standby has applied it (`synchronous_commit = remote_apply`: exact;
//! every write pays). And the conflict: VACUUM on the primary removes row versions a standby
//! query may still need; the standby waits `max_standby_streaming_delay`, then cancels the
//! query, unless `hot_standby_feedback` made the primary keep them (as bloat).
//!
//! | module | what it holds |
//! |---|---|
//! | [`schema`] | `profiles` (the story), `write_load`, `report_rows`; the seed |
//! | [`standby`] | the streaming replicas from labkit: one as it comes, one delayed on purpose |
//! | [`lag`] | stepped write load; lag in bytes and time, sampled from both ends |
//! | [`read_routing`] | the mechanism: replica, primary-after-write, LSN wait |
//! | [`read_your_writes`] | users who save and read, under one policy; stale reads counted |
//! | [`remote_apply`] | a primary with a synchronous standby of the lab's own |
//! | [`recovery_conflict`] | a report on the replica vs VACUUM on the primary, with and without feedback |
//! | [`report`] | findings, tables, charts, notes and the sentence |
//! | this file | the plan by scale and the run, step by step |

pub mod lag;
pub mod read_routing;
pub mod read_your_writes;
pub mod recovery_conflict;
pub mod remote_apply;
pub mod report;
pub mod schema;
pub mod standby;

use std::time::Duration;

use labkit::{LabCtx, Report};

use crate::read_routing::{Db, ReadPolicy};
use crate::read_your_writes::Workload;
use crate::remote_apply::SyncPair;
use crate::standby::{Standby, StandbyError};

/// The finding keys this lab promises (on a backend that can give it a replica).
pub const FINDING_KEYS: &[&str] = &[
    "replica_replay_lag_p99_ms",
    "replica_lag_bytes_max",
    "delayed_replica_replay_lag_p50_ms",
    "stale_read_ratio_no_fix",
    "stale_read_ratio_no_fix_undelayed",
    "stale_read_max_ms",
    "stale_read_ratio_primary_after_write",
    "primary_read_share_after_write",
    "stale_read_ratio_lsn_wait",
    "lsn_wait_fallback_share",
    "lsn_wait_read_p95_ms",
    "replica_read_p95_ms",
    "remote_apply_write_p95_ms",
    "local_commit_write_p95_ms",
    "stale_read_ratio_remote_apply",
    "replica_query_cancellations",
    "hot_standby_feedback_cancellations",
    "hot_standby_feedback_primary_dead_tuples",
    "primary_dead_tuples_without_feedback",
];

/// Everything the run does, sized by scale and the load knobs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub sizes: schema::Sizes,
    /// `recovery_min_apply_delay` of the delayed replica.
    pub apply_delay: Duration,
    pub steps: lag::StepPlan,
    pub workload: Workload,
    /// Fix (a): how long a user reads the primary after a write (twice the delay here).
    pub sticky_window: Duration,
    /// Fix (b): the longest a read waits for the replica before it reads the primary.
    pub lsn_max_wait: Duration,
    pub conflict: recovery_conflict::Plan,
}

impl Plan {
    pub fn for_ctx(ctx: &LabCtx) -> Self {
        let s = ctx.scale;
        let clients = ctx.clients(s.pick(8, 16, 16));
        let phase = ctx.duration(s.pick(
            Duration::from_millis(600),
            Duration::from_millis(2500),
            Duration::from_secs(10),
        ));
        let top_rate = ctx.rate(s.pick(400.0, 2000.0, 4000.0));
        let apply_delay = Duration::from_millis(100);
        Self {
            sizes: schema::Sizes {
                profiles: s.pick(10_000, 100_000, 1_000_000).max(clients as u64),
                report_rows: s.pick(20_000, 200_000, 2_000_000),
            },
            apply_delay,
            steps: lag::StepPlan {
                rates: [0.125, 0.25, 0.5, 1.0].map(|f| top_rate * f).to_vec(),
                step: phase,
                in_flight: clients,
                rows_per_write: 10,
                sample_every: Duration::from_millis(50),
            },
            workload: Workload {
                users: clients,
                duration: phase,
                warmup: ctx.warmup(s.pick(
                    Duration::ZERO,
                    Duration::from_millis(250),
                    Duration::from_secs(1),
                )),
                think: Duration::from_millis(20),
                save_every: 25,
                seed: ctx.seed,
            },
            sticky_window: apply_delay * 2,
            lsn_max_wait: Duration::from_millis(20),
            conflict: recovery_conflict::Plan {
                rounds: s.pick(1, 3, 5),
                max_standby_streaming_delay: Duration::from_millis(100),
            },
        }
    }

    pub fn primary_after_write(&self) -> ReadPolicy {
        ReadPolicy::PrimaryAfterWrite {
            window: self.sticky_window,
        }
    }

    pub fn lsn_wait(&self) -> ReadPolicy {
        ReadPolicy::LsnWait {
            max_wait: self.lsn_max_wait,
            poll: Duration::from_millis(2),
        }
    }
}

/// The read-your-writes phases, by role.
#[derive(Debug, Clone)]
pub struct ReadYourWrites {
    pub natural_no_fix: read_your_writes::Outcome,
    pub natural_lsn_wait: read_your_writes::Outcome,
    /// No fix, primary-after-write, LSN wait — on the delayed replica.
    pub delayed: Option<[read_your_writes::Outcome; 3]>,
    /// Local commit, remote_apply — on the synchronous pair; and where the pair came from.
    pub sync: Option<([read_your_writes::Outcome; 2], String)>,
}

/// The `replica-lag` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicaLag;

#[labkit::async_trait]
impl labkit::Lab for ReplicaLag {
    fn id(&self) -> &'static str {
        "replica-lag"
    }

    fn title(&self) -> &'static str {
        "Replica lag: a real streaming replica, read-your-writes, and what each fix costs"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(include_str!("../baseline.json"))
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        let plan = Plan::for_ctx(ctx);
        let mut report = ctx.report(self.title());

        // 1. A streaming replica of the run's primary — or say what the lab needs, and stop.
        let mut natural = match Standby::natural(ctx).await {
            Ok(s) => s,
            Err(StandbyError::Unavailable(why)) => {
                report::needs_a_replica(&mut report, &why);
                return Ok(report);
            }
            Err(StandbyError::Failed(e)) => return Err(e),
        };

        // 2. The tables, then a second replica that applies every commit 100 ms late.
        schema::load(ctx, plan.sizes).await?;
        let delayed = or_skip(
            &mut report,
            "replica delayed on purpose",
            Standby::delayed(ctx, plan.apply_delay).await,
        )?;
        let standbys: Vec<&Standby> = [Some(&natural), delayed.as_ref()]
            .into_iter()
            .flatten()
            .collect();
        for s in &standbys {
            s.catch_up(&ctx.pg).await?;
        }
        let servers: Vec<_> = standbys
            .iter()
            .map(|s| (s.label.clone(), s.ready_in, s.started_here))
            .collect();

        // 3. Lag, in bytes and time, while the write rate steps up.
        let lag = lag::stepped_writes(&ctx.pg, &standbys, &plan.steps).await?;

        // 4. Save, then read at once: on the replica as it comes, then with the routing fixes.
        let w = &plan.workload;
        let on_natural = Db::new("streaming replica", &ctx.pg, &natural.pool);
        let natural_no_fix = w.run(&on_natural, ReadPolicy::Replica).await;
        let natural_lsn_wait = w.run(&on_natural, plan.lsn_wait()).await;
        let mut on_delayed = None;
        if let Some(d) = &delayed {
            d.catch_up(&ctx.pg).await?;
            let db = Db::new("delayed replica", &ctx.pg, &d.pool);
            on_delayed = Some([
                w.run(&db, ReadPolicy::Replica).await,
                w.run(&db, plan.primary_after_write()).await,
                w.run(&db, plan.lsn_wait()).await,
            ]);
        }
        drop(delayed);

        // 5. remote_apply on a primary of the lab's own: local commit vs waiting for the apply.
        let pair = SyncPair::start(ctx, Some(&natural), w.users as u64, Duration::ZERO).await;
        let mut on_sync_pair = None;
        if let Some(p) = or_skip(&mut report, "remote_apply", pair)? {
            let runs = [
                w.run(&p.local, ReadPolicy::Replica).await,
                w.run(&p.remote_apply, ReadPolicy::Replica).await,
            ];
            on_sync_pair = Some((runs, p.origin.clone()));
        }
        let rw = ReadYourWrites {
            natural_no_fix,
            natural_lsn_wait,
            delayed: on_delayed,
            sync: on_sync_pair,
        };

        // 6. A long report on the replica vs VACUUM on the primary, without and with feedback.
        let conflicts = or_skip(
            &mut report,
            "conflict with recovery",
            recovery_conflict::run(&ctx.pg, &mut natural, &plan.conflict).await,
        )?;

        report::build(
            &mut report,
            &report::Facts {
                plan: &plan,
                servers: &servers,
                lag: &lag,
                rw: &rw,
                conflicts: conflicts.as_ref(),
            },
        );
        Ok(report)
    }
}

/// A scenario's extra server, or `None` after recording why this backend cannot give it.
fn or_skip<T>(
    report: &mut Report,
    scenario: &str,
    got: Result<T, StandbyError>,
) -> anyhow::Result<Option<T>> {
    match got {
        Ok(v) => Ok(Some(v)),
        Err(StandbyError::Unavailable(why)) => {
            report.skipped(scenario, why);
            Ok(None)
        }
        Err(StandbyError::Failed(e)) => Err(e),
    }
}
