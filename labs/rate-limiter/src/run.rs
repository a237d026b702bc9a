//! The lab run, as story → steps: the three war stories (the edge burst, the in-memory
//! limiter behind a load balancer, Redis going away), then what a decision costs. Each step
//! is a call into a scenario module; [`crate::report`] turns the results into findings.

use labkit::{Knob, LabCtx, Report};

use crate::limiter::RedisStore;
use crate::policy::Policy;
use crate::report::{self, Measured};
use crate::scenario::cost::{self, LatencyShape};
use crate::scenario::{MEASUREMENT_DEADLINE, Params, accuracy, instances, outage};

pub const TITLE: &str = "Rate limiter: token bucket, sliding window and GCRA on shared Redis";

pub async fn run(ctx: &LabCtx) -> anyhow::Result<Report> {
    ctx.ignores(
        Knob::Rate,
        "the latency phase is a closed loop (it measures what one decision costs, not the \
         limiter's capacity), and the accuracy, instances and outage scenarios replay scripted \
         traffic on a manual clock, where the rate is part of the script (3× and 6× the policy)",
    );
    let params = Params::for_scale(ctx.scale);
    let policy = params.policy;
    let (client, prefix) = (ctx.redis_client(), ctx.redis_prefix());
    // Scenarios measure, they do not serve: a decision slowed down by a busy machine is a
    // latency, not a fail-closed 503.
    let store =
        RedisStore::connect_with_deadline(client.clone(), prefix, MEASUREMENT_DEADLINE).await?;

    // 1. The edge burst. Each algorithm takes a burst of 2 × quota just before a window
    //    boundary, then 3× its rate for a few periods; we count the most it admitted inside
    //    any window of one period, against its promise. The same burst on a boundary shows
    //    why the bug survives review. Obedient clients then retry at exactly the advertised
    //    Retry-After: a truthful limiter admits every retry. Simulated time: exact, instant.
    let accuracy = accuracy::every_algorithm(
        &store,
        policy,
        params.accuracy_periods,
        (params.obedient_clients, params.obedient_rounds),
        ctx.seed,
    )
    .await?;

    // 2. The load balancer. One client at 6× its rate, round-robin over 1 and then 4 real
    //    HTTP app instances: the shared algorithms admit the same, governor's in-memory
    //    GCRA hands out one allowance per instance.
    let instances =
        instances::every_algorithm(policy, &client, prefix, params.instance_periods).await?;

    // 3. The cost of a decision: HTTP latency with and without the layer (the one load
    //    phase; --clients, --duration and --warmup shape it), Redis commands per decision
    //    (INFO commandstats), and memory per client at the policy's quota and at 10×.
    let latency_shape = LatencyShape {
        workers: ctx.clients(params.cost_workers),
        per_variant: ctx.duration(params.cost_duration),
        rounds: params.cost_rounds,
        warmup: ctx.warmup(params.cost_warmup),
        keys: params.cost_keys,
    };
    let latency = cost::latency(&client, prefix, latency_shape).await?;
    let ops = cost::redis_ops(&client, prefix, policy, params.ops_decisions).await?;
    let tenfold = Policy::new(
        policy.quota() as i64 * 10,
        policy.period(),
        policy.burst() as i64 * 10,
    )?;
    let mut memory = cost::memory_per_client(&client, prefix, policy).await?;
    memory.extend(cost::memory_per_client(&client, prefix, tenfold).await?);

    // 4. Redis goes away. Two GCRA instances, one failing open and one failing closed, on a
    //    Redis of the scenario's own; the same traffic to both, and halfway through the Redis
    //    is stopped. Skipped (with the reason in the report) where the backend cannot give
    //    the lab a Redis it may stop.
    let outage = outage::run(ctx, policy, params.outage_per_phase, params.outage_clients).await?;

    Ok(report::build(
        ctx,
        TITLE,
        &Measured {
            params,
            latency_shape,
            accuracy,
            instances,
            latency,
            ops,
            memory,
            outage,
        },
    ))
}
