//! Invalidation: finance posts a correcting entry while readers watch the report. How long
//! do readers keep seeing the old numbers — with the TTL alone, and with delete-on-write?
//!
//! Each write commits, then (delete-on-write) deletes the key. A read that *started* after
//! the commit and still returned the old entry count was stale; the staleness of a write is
//! how long after its commit such a read was still being served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use labkit::{Bound, ClosedLoop, LabCtx};

use crate::app::{Instance, Settings, Strategy};
use crate::ledger::LoadStats;

#[derive(Debug, Clone, Copy)]
pub struct InvalidationPlan {
    pub readers: usize,
    pub instances: usize,
    pub ttl: Duration,
    pub writes: u32,
    pub first_write: Duration,
    pub spacing: Duration,
    pub think: Duration,
}

impl InvalidationPlan {
    /// The readers watch until one spacing after the last write.
    pub fn duration(&self) -> Duration {
        self.first_write + self.spacing * self.writes
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePolicy {
    TtlOnly,
    DeleteOnWrite,
}

impl WritePolicy {
    pub fn label(self) -> &'static str {
        match self {
            WritePolicy::TtlOnly => "TTL only",
            WritePolicy::DeleteOnWrite => "delete on write",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct WriteTrial {
    pub committed_at: Duration,
    pub staleness: Duration,
    pub stale_reads: u64,
}

#[derive(Debug, Clone)]
pub struct InvalidationResult {
    pub policy: WritePolicy,
    pub trials: Vec<WriteTrial>,
    pub recomputes: u64,
    /// Reads that started after the first commit: what the staleness was measured over.
    pub reads_after_commit: u64,
}

impl InvalidationResult {
    pub fn max_staleness(&self) -> Duration {
        self.trials
            .iter()
            .map(|t| t.staleness)
            .max()
            .unwrap_or_default()
    }
}

pub async fn run(
    ctx: &LabCtx,
    plan: InvalidationPlan,
    policy: WritePolicy,
) -> anyhow::Result<InvalidationResult> {
    let key = ctx.key(match policy {
        WritePolicy::TtlOnly => "report:month-end:ttl-only",
        WritePolicy::DeleteOnWrite => "report:month-end:delete-on-write",
    });
    let stats = Arc::new(LoadStats::default());
    let mut instances = Vec::new();
    for id in 0..plan.instances {
        let pool = ctx.new_pool(4).await?;
        let settings = Settings::with_ttl(plan.ttl);
        instances.push(Instance::new(
            id,
            Strategy::Naive,
            settings,
            pool,
            ctx.redis_client(),
            stats.clone(),
        )?);
    }
    let instances = Arc::new(instances);
    let base = instances[0].read(&key).await?.value.entries;
    stats.reset();

    // Each read returns when it started, so it is placed exactly against the commits.
    let crowd = ClosedLoop::new(plan.readers, Bound::Duration(plan.duration()))
        .think(plan.think, ctx.seed)
        .label(format!("invalidation: {}", policy.label()))
        .with_timeline();
    let read = {
        let (instances, key) = (instances.clone(), key.clone());
        move |c: labkit::measure::Call| {
            let (instances, key) = (instances.clone(), key.clone());
            async move {
                let started = Instant::now();
                let i = &instances[c.worker % instances.len()];
                i.read(&key).await.map(|r| (started, r.value.entries))
            }
        }
    };
    let start = Instant::now();
    let writer = async {
        let mut commits = Vec::new();
        for k in 0..plan.writes {
            tokio::time::sleep_until((start + plan.first_write + plan.spacing * k).into()).await;
            instances[0].loader().post_correction(-1_250).await?;
            let committed_at = Instant::now();
            if policy == WritePolicy::DeleteOnWrite {
                instances[0].invalidate(&key).await?;
            }
            commits.push((committed_at, base + i64::from(k) + 1));
        }
        anyhow::Ok(commits)
    };
    let (load, commits) = tokio::join!(labkit::closed_loop(crowd, read), writer);
    let commits = commits?;

    let reads: Vec<(Instant, Duration, i64)> = load
        .timeline
        .iter()
        .filter_map(|s| {
            s.out
                .map(|(started, entries)| (started, s.latency, entries))
        })
        .collect();
    let mut trials = Vec::new();
    for (k, (committed_at, expected)) in commits.iter().enumerate() {
        let until = commits.get(k + 1).map(|c| c.0);
        // A read that started after the commit and still returned the old entry count.
        let stale: Vec<_> = reads
            .iter()
            .filter(|(at, _, _)| at >= committed_at && until.is_none_or(|u| *at < u))
            .filter(|(_, _, entries)| entries < expected)
            .collect();
        trials.push(WriteTrial {
            committed_at: committed_at.saturating_duration_since(start),
            staleness: stale
                .iter()
                .map(|(at, latency, _)| (*at + *latency).saturating_duration_since(*committed_at))
                .max()
                .unwrap_or_default(),
            stale_reads: stale.len() as u64,
        });
    }
    let first_commit = commits.first().map(|c| c.0);
    let reads_after_commit = reads
        .iter()
        .filter(|(at, _, _)| first_commit.is_some_and(|c| *at >= c))
        .count() as u64;
    for i in instances.iter() {
        i.loader().pool().close().await;
    }
    Ok(InvalidationResult {
        policy,
        trials,
        recomputes: stats.count(),
        reads_after_commit,
    })
}
