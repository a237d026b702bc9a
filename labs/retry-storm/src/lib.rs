//! Retry storms: timeouts, backoff with jitter, retry budgets and circuit breakers against a
//! flaky dependency.
//!
//! The war story: a downstream dependency slows down. Every layer in front of it retries
//! three times, immediately. The dependency now sees many times its normal load, its queue
//! grows past every caller's timeout, each answer it finishes is for a caller who has already
//! left and retried — and the outage outlives its cause. "How do you keep a service resilient
//! when a dependency is unreliable?" is answered by a handful of mechanisms, each measured
//! here against a real HTTP dependency whose capacity, latency and error rate the lab changes
//! while users keep arriving (open loop):
//!
//! 1. **Backoff with jitter** — the AWS Architecture Blog's experiment run for real: N
//!    clients race to update one Postgres row with a version check; no backoff, exponential,
//!    and full / equal / decorrelated jitter; next to the blog's own simulator, ported.
//! 2. **Retry at one layer, within a budget** — three layers × three attempts is 27 calls
//!    per request; one layer is 3; a 10 % budget (the SRE book's) is 1.1.
//! 3. **Timeouts and bulkheads** — without a timeout a slow dependency fills the service's
//!    workers and an endpoint that never calls it fails too.
//! 4. **Circuit breaker** — closed → open → half-open → closed, with resilience4j's defaults,
//!    and one mis-set breaker that never opens.
//!
//! tower provides what production code would use (timeout, retry, `TpsBudget`, concurrency
//! limits, load shedding); the jitter formulas and the breaker's state machine are written
//! out, because they are the lesson.
//!
//! Module map, in reading order:
//!
//! | module | what it holds |
//! |---|---|
//! | [`jitter`] | the five backoff formulas (hand-written) |
//! | [`occ`] | scenario 1's race: one row, a version check, a simulated network hop |
//! | [`simulator`] | the AWS blog's simulator, ported (virtual time) |
//! | [`timer`] | a sub-millisecond sleep for the race (tokio's wheel ticks per ms) |
//! | [`dependency`] | the flaky dependency: accept queue + workers, `/fault` controls |
//! | [`retry`] | tower's `Retry` and `TpsBudget`, with our attempts policy |
//! | [`breaker`] | the circuit breaker state machine (hand-written), resilience4j semantics |
//! | [`clock`] | system or manual time for the breaker |
//! | [`app`] | the service: `/work`, `/unrelated`, the resilience stack, fallback; the one router |
//! | [`topology`] | the dependency and 1–3 layers, each a real HTTP server |
//! | [`client`] | the users' requests, classified |
//! | [`scenarios`] | the four scenarios, measured |
//! | [`report`] | findings, tables, charts and the sentence |

pub mod app;
pub mod breaker;
pub mod client;
pub mod clock;
pub mod dependency;
pub mod jitter;
pub mod occ;
pub mod report;
pub mod retry;
pub mod scenarios;
pub mod simulator;
pub mod timer;
pub mod topology;

use std::sync::Arc;
use std::time::Duration;

use labkit::{Knob, LabCtx, Report, ServeApp};

use crate::scenarios::{amplification, backoff, breaker as breaker_scenario, bulkhead};

/// The finding keys this lab promises.
pub const FINDING_KEYS: &[&str] = &[
    // 1. backoff and jitter (at the largest N)
    "jitter_none_calls",
    "jitter_exponential_calls",
    "jitter_full_calls",
    "jitter_equal_calls",
    "jitter_decorrelated_calls",
    "jitter_none_ms",
    "jitter_exponential_ms",
    "jitter_full_ms",
    "jitter_equal_ms",
    "jitter_decorrelated_ms",
    "jitter_sql_p99_ms",
    "jitter_lost_updates",
    "jitter_claims_reproduced",
    // 2. amplification
    "amplification_three_layers_calls_per_request",
    "amplification_one_layer_calls_per_request",
    "amplification_budget_calls_per_request",
    "recovery_s_three_layers",
    "recovery_s_one_layer",
    "recovery_s_budget",
    "recovered_three_layers",
    "recovered_one_layer",
    "recovered_budget",
    "dependency_rps_after_fault_three_layers",
    "dependency_wasted_calls_three_layers",
    // 3. timeouts and bulkheads
    "unrelated_p99_ms_baseline",
    "unrelated_p99_ms_no_timeout",
    "unrelated_p99_ms_timeout_bulkhead",
    "work_shed_timeout_bulkhead",
    // 4. circuit breaker
    "breaker_calls_while_open",
    "breaker_fast_fail_p99_ms",
    "breaker_recovery_detected_ms",
    "fallback_responses",
    "breaker_dependency_calls_during_fault",
    "breaker_requests_during_fault",
    "misset_breaker_opened",
    "misset_breaker_dependency_calls_during_fault",
];

/// The `retry-storm` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryStorm;

#[labkit::async_trait]
impl labkit::Lab for RetryStorm {
    fn id(&self) -> &'static str {
        "retry-storm"
    }

    fn title(&self) -> &'static str {
        "Retry storms: timeouts, backoff with jitter, retry budgets and circuit breakers"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(include_str!("../baseline.json"))
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        run(ctx, self.title()).await
    }

    async fn serve(&self, ctx: &LabCtx) -> anyhow::Result<Option<ServeApp>> {
        serve(ctx).await.map(Some)
    }
}

/// The run: four scenarios, each a step.
pub async fn run(ctx: &LabCtx, title: &str) -> anyhow::Result<Report> {
    ctx.ignores(
        Knob::Warmup,
        "every phase is scripted around a fault; the healthy stretch before the fault is part \
         of what is measured",
    );

    // 1. Backoff and jitter. N clients (10 … 50 by default; --clients sets the largest N)
    //    race for one row under each strategy; the ported simulator runs the same grid.
    let max_clients = ctx.clients(ctx.scale.pick(10, 50, 100));
    let backoff = backoff::run(ctx, max_clients, ctx.scale.pick(1, 1, 5)).await?;

    // 2. Amplification. The dependency fails for a quarter of the phase; three layers that
    //    all retry, one layer that retries, one layer within a budget. 25 users/s: at 27×
    //    that is ~700 HTTP calls/s into the dependency, about what one 2-core process can
    //    push through four hops of fresh connections and still count every call.
    let storm_shape = amplification::Shape::new(
        ctx.rate(25.0),
        ctx.duration(ctx.scale.pick(
            Duration::from_millis(2500),
            Duration::from_secs(4),
            Duration::from_secs(15),
        )),
    );
    let storms = amplification::run(storm_shape, ctx.seed).await?;

    // 3. Timeouts and bulkheads. The dependency's latency spikes to 1 s; /unrelated shares
    //    the service's workers with /work. 50 users/s on each endpoint.
    let rate = ctx.rate(50.0);
    let isolation = bulkhead::run(
        rate,
        ctx.duration(ctx.scale.pick(
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(10),
        )),
        ctx.seed,
    )
    .await?;

    // 4. Circuit breaker. The dependency fails for half the phase; resilience4j's defaults
    //    (wait in open scaled to 1 s), then a breaker that can never open.
    let breaker_shape = breaker_scenario::Shape::new(
        rate,
        ctx.duration(ctx.scale.pick(
            Duration::from_secs(4),
            Duration::from_secs(5),
            Duration::from_secs(15),
        )),
    );
    let (breaker, mis_set) = breaker_scenario::run(breaker_shape, ctx.seed).await?;

    Ok(report::build(
        ctx,
        title,
        &report::Measured {
            backoff,
            storm_shape,
            storms,
            isolation,
            breaker_shape,
            breaker,
            mis_set,
        },
    ))
}

/// `lab serve retry-storm`: the service (every mechanism on) in front of a dependency on
/// its own port, whose fault controls are mounted at `/dependency/*` for curl.
pub async fn serve(ctx: &LabCtx) -> anyhow::Result<ServeApp> {
    let dependency =
        dependency::RunningDependency::spawn(dependency::Faults::default(), ctx.seed).await?;
    let service = app::App::new(
        "service",
        app::Resilience::everything(),
        dependency.call_url(),
        clock::Clock::system(),
    )
    .with_dependency_admin(dependency.dep.clone());
    Ok(ServeApp {
        router: app::router(Arc::new(service)),
        banner: include_str!("../curl.md").to_string(),
        keep_alive: vec![Box::new(dependency)],
    })
}
