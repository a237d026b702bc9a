//! Invalidation: finance posts a correcting entry while readers watch the report. How long
//! do readers keep seeing the old numbers — with the TTL alone, and with delete-on-write?
//!
//! Each write commits, then (delete-on-write) deletes the key. A read that *started* after
//! the commit and still returned the old entry count was stale; the staleness of a write is
//! how long after its commit such a read was still being served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use labkit::LabCtx;

use crate::app::{Instance, Settings, Strategy};
use crate::ledger::LoadStats;
use crate::readers::{self, Crowd};

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

    let start = Instant::now();
    let crowd = Crowd {
        readers: plan.readers,
        duration: plan.first_write + plan.spacing * plan.writes,
        think: plan.think,
        seed: ctx.seed,
    };
    let reader_instances = instances.clone();
    let read_key = key.clone();
    let crowd_run = readers::run(crowd, start, move |reader| {
        let instances = reader_instances.clone();
        let key = read_key.clone();
        async move {
            let i = &instances[reader % instances.len()];
            i.read(&key).await.map(|r| r.value.entries)
        }
    });
    let writer = async {
        let mut commits = Vec::new();
        for k in 0..plan.writes {
            tokio::time::sleep_until((start + plan.first_write + plan.spacing * k).into()).await;
            instances[0].loader().post_correction(-1_250).await?;
            let committed_at = start.elapsed();
            if policy == WritePolicy::DeleteOnWrite {
                instances[0].invalidate(&key).await?;
            }
            commits.push((committed_at, base + i64::from(k) + 1));
        }
        anyhow::Ok(commits)
    };
    let (samples, commits) = tokio::join!(crowd_run, writer);
    let commits = commits?;

    let mut trials = Vec::new();
    for (k, (committed_at, expected)) in commits.iter().enumerate() {
        let until = commits.get(k + 1).map_or(Duration::MAX, |c| c.0);
        let stale: Vec<_> = samples
            .iter()
            .filter(|s| s.at >= *committed_at && s.at < until)
            .filter(|s| s.out.is_some_and(|entries| entries < *expected))
            .collect();
        trials.push(WriteTrial {
            committed_at: *committed_at,
            staleness: stale
                .iter()
                .map(|s| s.end().saturating_sub(*committed_at))
                .max()
                .unwrap_or_default(),
            stale_reads: stale.len() as u64,
        });
    }
    for i in instances.iter() {
        i.loader().pool().close().await;
    }
    Ok(InvalidationResult {
        policy,
        trials,
        recomputes: stats.count(),
    })
}
