//! Load shedding: goodput under a traffic spike, 503 + Retry-After, deadlines, priorities,
//! pool size.
//!
//! The war story: marketing sends the email blast and offered load doubles. The service has
//! no protection but its connection pool, so every request queues; latency passes the
//! clients' timeout; the clients give up on work the server then finishes anyway; goodput
//! — answers that arrive in time to be useful — collapses below what the service did before
//! the spike; and checkout dies together with the recommendations widget.
//!
//! The mechanism: a service can only do its capacity; everything above it waits somewhere.
//! The fixes decide *where* and *for how long*: admit only what can be served and answer the
//! rest at once with `503` + `Retry-After` (tower's concurrency limit + load shed); drop work
//! whose caller has already left before it costs a query (a deadline queue); give the
//! non-critical endpoint a budget of its own so it is shed first; and size the pool for the
//! database's cores, not for the traffic (Little's law: in flight = throughput × time).
//!
//! | module | what it holds |
//! |---|---|
//! | [`schema`] | products and a year of orders, seeded server-side |
//! | [`shop`] | the real database work: the checkout transaction and the recommendations read |
//! | [`limits`] | the protections as one value (`lab serve` reads them from env vars) |
//! | [`shedding`] | tower's `GlobalConcurrencyLimitLayer` + `LoadShedLayer`, 503 + Retry-After |
//! | [`deadline`] | the hand-written deadline queue: expired requests dropped at the front, no SQL |
//! | [`ledger`] | the server's outcome per request id; requests that outlive their client |
//! | [`app`] | state, the one `router` function, handlers |
//! | [`client`] | the HTTP client population: open loop with a timeout, goodput and wasted work |
//! | [`run`] | the lab run: capacity, the spike per variant, deadlines, priorities, pool size |
//! | [`report`] | findings, tables, charts, notes and the sentence |

pub mod app;
pub mod client;
pub mod deadline;
pub mod ledger;
pub mod limits;
pub mod report;
pub mod run;
pub mod schema;
pub mod shedding;
pub mod shop;

use labkit::{LabCtx, Report, ServeApp};

pub use app::{AppState, Gate, router};
pub use limits::Limits;

/// The finding keys this lab promises.
pub const FINDING_KEYS: &[&str] = &[
    "recommendations_db_p50_ms",
    "checkout_db_p50_ms",
    "capacity_rps",
    "capacity_knee_clients",
    "offered_base_rps",
    "unloaded_p99_ms",
    "unprotected_goodput_rps_at_1x",
    "unprotected_goodput_rps_at_2x",
    "shed_goodput_rps_at_2x",
    "unprotected_p99_ms_at_2x",
    "shed_admitted_p99_ms_at_2x",
    "shed_rejected_ratio_at_2x",
    "shed_503_without_retry_after",
    "unprotected_timeout_ratio_at_2x",
    "unprotected_wasted_work_ratio_at_2x",
    "unprotected_drain_s_at_2x",
    "limit_only_goodput_rps_at_2x",
    "limit_only_p99_ms_at_2x",
    "deadline_goodput_rps_at_2x",
    "deadline_admitted_p99_ms_at_2x",
    "deadline_expired_requests_without_sql",
    "deadline_statements_for_uncompleted",
    "deadline_wasted_work_ratio_at_2x",
    "checkout_success_ratio_at_3x_no_priority",
    "checkout_success_ratio_at_3x_priority",
    "checkout_p99_ms_at_3x_no_priority",
    "checkout_p99_ms_at_3x_priority",
    "pool_size_best_throughput",
    "pool_best_throughput_rps",
    "pool_largest_throughput_rps",
    "pool_size_largest_p99_ms",
    "pool_size_best_p99_ms",
    "driver_steps_behind_schedule",
];

/// The `load-shedding` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadShedding;

#[labkit::async_trait]
impl labkit::Lab for LoadShedding {
    fn id(&self) -> &'static str {
        "load-shedding"
    }

    fn title(&self) -> &'static str {
        "Load shedding: goodput under a traffic spike, 503 + Retry-After, deadlines, priorities, pool size"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(include_str!("../baseline.json"))
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        run::run(ctx, self.title()).await
    }

    /// The service with every protection on, limits from `LOAD_SHEDDING_*` (see curl.md).
    async fn serve(&self, ctx: &LabCtx) -> anyhow::Result<Option<ServeApp>> {
        let limits = Limits::from_env()?;
        schema::setup(&ctx.pg, schema::Shape::for_scale(ctx.scale), ctx.seed).await?;
        let pool = ctx.new_pool(limits.pool).await?;
        let state = AppState::new(pool, limits);
        Ok(Some(ServeApp {
            router: router(state),
            banner: format!(
                "{}\nlimits: {}\n",
                include_str!("../curl.md"),
                limits.describe()
            ),
            keep_alive: Vec::new(),
        }))
    }
}
