//! The run: the story in seven steps, each a call into a scenario; the numbers go to
//! [`crate::report`].

use std::time::Duration;

use labkit::{LabCtx, LatencySummary, Report};

use crate::app::Strategy;
use crate::ledger::{self, ReportLoader};
use crate::plan::Plan;
use crate::scenario::eviction::{self, EvictionResult};
use crate::scenario::hot_key::{self, Driver, HotKeyResult};
use crate::scenario::invalidation::{self, InvalidationResult, WritePolicy};
use crate::scenario::prefix_change::{self, PrefixResult};
use crate::scenario::redis_down::{self, RedisDownResult};

/// Everything the run measured, for [`crate::report::build`].
#[derive(Debug)]
pub struct Outcome {
    pub plan: Plan,
    /// The report query alone on an idle database: what one recompute costs.
    pub report_alone: LatencySummary,
    /// Every hot-key phase, in the order it ran.
    pub hot: Vec<HotKeyResult>,
    pub invalidation: [InvalidationResult; 2],
    /// `Err(why)` when the backend cannot give the scenario a Redis of its own.
    pub eviction: Result<Vec<EvictionResult>, String>,
    pub prefix: PrefixResult,
    pub redis_down: Result<RedisDownResult, String>,
}

impl Outcome {
    /// The hot-key phase with this slug.
    pub fn hot(&self, slug: &str) -> Option<&HotKeyResult> {
        self.hot.iter().find(|r| r.phase.slug == slug)
    }
}

pub async fn run(ctx: &LabCtx, title: &str) -> anyhow::Result<Report> {
    let plan = Plan::for_ctx(ctx);

    // 1. The ledger, and what one month-end report costs an idle database.
    ledger::seed(&ctx.pg, ctx.scale, ctx.seed).await?;
    let loader = ReportLoader::new(ctx.pg.clone(), Default::default());
    loader.load().await?; // warm the buffer cache
    let report_alone = labkit::measure::sequential(5, |_| loader.load()).await;

    // 2. The hot key expires under the crowd, once per mechanism. Naive and the Redis lock
    //    run twice: closed loop (readers wait, so a stall hides) and open loop (reads keep
    //    coming, so a stall shows as the queue it causes).
    let open = Driver::Open {
        rate_per_s: plan.open_rate_per_s,
    };
    let phases = [
        plan.phase("no-cache", Strategy::NoCache, Driver::Closed),
        plan.phase("naive", Strategy::Naive, Driver::Closed),
        plan.phase("naive-open", Strategy::Naive, open),
        plan.phase("single-flight", Strategy::SingleFlight, Driver::Closed),
        plan.phase("redis-lock", Strategy::RedisLock, Driver::Closed),
        plan.phase("redis-lock-open", Strategy::RedisLock, open),
        plan.phase("swr", Strategy::StaleWhileRevalidate, Driver::Closed),
    ];
    let mut hot = Vec::new();
    for phase in phases {
        hot.push(hot_key::run(ctx, plan.hot_key, phase).await?);
    }

    // 3. XFetch where it is XFetch: a TTL about ten times its early window, with delta and
    //    the read rate measured under this crowd (the lock phase ran one report at a time).
    let lock = hot.iter().find(|r| r.phase.slug == "redis-lock");
    let lock = lock.expect("the lock phase ran");
    let delta = Duration::from_secs_f64(lock.mean_query_ms() / 1e3);
    let faithful = plan.xfetch_faithful(delta, lock.reads_per_s());
    let faithful = hot_key::run(ctx, plan.hot_key, faithful).await?;
    // 4. ... and the pitfall: the same XFetch with the TTL cut to its early window.
    let delta = Duration::from_secs_f64(faithful.mean_query_ms() / 1e3);
    let short = plan.xfetch_short_ttl(delta, faithful.reads_per_s());
    hot.push(faithful);
    hot.push(hot_key::run(ctx, plan.hot_key, short).await?);

    // 5. Finance posts a correction while readers watch: TTL only vs delete-on-write, at once
    //    on separate keys (staleness is set by the TTL and one DEL, not by the other's loads).
    let (ttl_only, on_write) = tokio::join!(
        invalidation::run(ctx, plan.invalidation, WritePolicy::TtlOnly),
        invalidation::run(ctx, plan.invalidation, WritePolicy::DeleteOnWrite),
    );
    let invalidation = [ttl_only?, on_write?];

    // 6. Memory pressure: one small Redis per eviction policy, all at once (hit rates depend
    //    on the order of reads, not their speed).
    let runs =
        eviction::POLICIES.map(|(policy, ttl)| eviction::run(ctx, plan.eviction, policy, ttl));
    let eviction = futures::future::join_all(runs)
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .collect::<Result<Vec<_>, String>>();

    // 7. The deploy that bumped the key prefix, then Redis going down under fail-open apps.
    let prefix = prefix_change::run(ctx, plan.prefix).await?;
    let redis_down = redis_down::run(ctx, plan.redis_down).await?;

    let out = Outcome {
        plan,
        report_alone,
        hot,
        invalidation,
        eviction,
        prefix,
        redis_down,
    };
    Ok(crate::report::build(ctx, title, &out))
}
