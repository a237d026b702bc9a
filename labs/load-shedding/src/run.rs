//! The lab run: find capacity, then offer the spike to each version of the service.
//!
//! Every scenario starts its own service (own pool, own ledger) on a loopback port and
//! drives it with real HTTP from the same process; the report says how well the driver kept
//! its schedule at every step.

use std::time::Duration;

use labkit::{LabCtx, Report};
use sqlx::PgPool;

use crate::app::{AppState, router};
use crate::client::{LoadClient, Mix, StepPlan, StepResult, closed_step, open_step};
use crate::limits::{self, Limits};
use crate::report::{self, CapacityRow, Findings, PoolRow, SHED, UNPROTECTED, Work};
use crate::schema::{self, Shape};
use crate::shop;

/// The run's shape: step lengths, the load multiples, the SLO and the budgets.
#[derive(Debug, Clone)]
pub struct Params {
    pub shape: Shape,
    /// Each open-loop step (`--duration`).
    pub step: Duration,
    /// Each closed-loop step of the capacity ladder and the pool sweep.
    pub closed_step: Duration,
    pub warmup: Duration,
    pub ladder: Vec<usize>,
    /// Offered load, as multiples of capacity.
    pub multiples: Vec<f64>,
    pub slo: Duration,
    pub client_timeout: Duration,
    /// Open-loop requests in flight at most (`--clients`).
    pub max_in_flight: usize,
    pub pool: u32,
    pub limit: usize,
    pub recs_budget: usize,
    pub queue_timeout: Duration,
    pub pool_sizes: Vec<u32>,
    pub pool_clients: usize,
    /// Sequential samples of each endpoint's SQL.
    pub work_samples: u64,
}

impl Params {
    pub fn new(ctx: &LabCtx) -> Self {
        let s = ctx.scale;
        let pool = limits::default_pool();
        let step = ctx.duration(s.pick(
            Duration::from_millis(600),
            Duration::from_secs(3),
            Duration::from_secs(10),
        ));
        Self {
            shape: Shape::for_scale(s),
            step,
            closed_step: step.mul_f64(0.3).max(Duration::from_millis(300)),
            warmup: ctx.warmup(s.pick(
                Duration::from_millis(200),
                Duration::from_millis(500),
                Duration::from_secs(2),
            )),
            ladder: s.pick(vec![1, 4], vec![1, 2, 4, 8, 16], vec![1, 2, 4, 8, 16, 32]),
            multiples: s.pick(
                vec![0.5, 1.0, 2.0, 3.0],
                vec![0.5, 1.0, 2.0, 3.0],
                vec![0.5, 1.0, 1.5, 2.0, 3.0],
            ),
            slo: s.pick(
                Duration::from_millis(100),
                Duration::from_millis(250),
                Duration::from_millis(250),
            ),
            client_timeout: s.pick(
                Duration::from_millis(300),
                Duration::from_secs(1),
                Duration::from_secs(1),
            ),
            max_in_flight: ctx.clients(4096),
            pool,
            // Twice the pool: at most one request waiting per connection. By Little's law a
            // limit L at throughput X bounds the time inside the service to L / X.
            limit: 2 * pool as usize,
            recs_budget: (pool as usize / 2).max(1),
            queue_timeout: s.pick(
                Duration::from_millis(50),
                Duration::from_millis(100),
                Duration::from_millis(100),
            ),
            pool_sizes: s.pick(
                vec![2, 32],
                vec![1, 2, 4, 8, 16, 64],
                vec![1, 2, 4, 8, 16, 32, 64, 128],
            ),
            pool_clients: s.pick(32, 64, 128),
            work_samples: s.pick(30, 100, 500),
        }
    }
}

/// One version of the service, running.
pub struct Service {
    pub state: AppState,
    pub server: labkit::http::TestServer,
    pub client: LoadClient,
    pool: PgPool,
    _abort: AbortOnDrop,
}

/// Ends the service's request tasks when the service goes away (Ctrl-C drops the run).
struct AbortOnDrop(std::sync::Arc<crate::ledger::Ledger>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort_all();
    }
}

impl Service {
    pub async fn start(
        ctx: &LabCtx,
        limits: Limits,
        mix: Mix,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Self::start_counted(ctx, limits, mix, timeout, None).await
    }

    /// With `counter`, every statement the service runs is counted by labkit's SqlCounter.
    pub async fn start_counted(
        ctx: &LabCtx,
        limits: Limits,
        mix: Mix,
        timeout: Duration,
        counter: Option<&labkit::SqlCounter>,
    ) -> anyhow::Result<Self> {
        let pool = ctx.new_pool(limits.pool).await?;
        let state = AppState::new(pool.clone(), limits);
        let app = router(state.clone());
        let app = match counter {
            Some(c) => c.count_router(app),
            None => app,
        };
        let server = labkit::http::spawn(app).await?;
        let client = LoadClient::new(server.base_url(), mix, timeout);
        Ok(Self {
            _abort: AbortOnDrop(state.ledger.clone()),
            state,
            server,
            client,
            pool,
        })
    }

    /// Offer `rate` for one step.
    pub async fn step(&self, p: &Params, label: String, rate: f64) -> StepResult {
        let plan = StepPlan {
            label,
            rate,
            duration: p.step,
            max_in_flight: p.max_in_flight,
            slo: p.slo,
        };
        open_step(&self.client, &self.state.ledger, &plan).await
    }

    /// A closed-loop run of `clients` against this service.
    pub async fn closed(
        &self,
        clients: usize,
        duration: Duration,
        warmup: Duration,
        label: &str,
    ) -> labkit::LoadResult<()> {
        closed_step(
            &self.client,
            &self.state.ledger,
            clients,
            duration,
            warmup,
            label,
        )
        .await
    }

    pub async fn stop(self) {
        self.state.ledger.abort_all();
        self.server.stop().await;
        self.pool.close().await;
    }
}

pub async fn run(ctx: &LabCtx, title: &str) -> anyhow::Result<Report> {
    let p = Params::new(ctx);
    schema::setup(&ctx.pg, p.shape, ctx.seed).await?;
    let mix = Mix {
        seed: ctx.seed,
        shape: p.shape,
    };
    let patient = Duration::from_secs(30);

    // 0. The work per request, one at a time straight on the database: what capacity is
    //    made of (Little's law: busy connections = throughput × time per request).
    let work = work_per_request(&ctx.pg, mix, p.work_samples).await?;

    // 1. Capacity: a closed loop (each client waits for its answer) finds the knee — where
    //    more clients stop adding throughput because the cores are busy.
    let svc = Service::start(ctx, Limits::unprotected(p.pool), mix, patient).await?;
    let mut capacity = Vec::new();
    for (i, &clients) in p.ladder.iter().enumerate() {
        let warmup = if i == 0 { p.warmup } else { Duration::ZERO };
        let label = format!("capacity: {clients} clients");
        let r = svc.closed(clients, p.closed_step, warmup, &label).await;
        capacity.push(CapacityRow {
            clients,
            summary: r.summary,
            first_error: r.first_error,
        });
    }
    svc.stop().await;
    // `--rate` overrides the base the multiples apply to.
    let base_rps = ctx.rate(report::capacity(&capacity).round().max(1.0));

    // 2–3. The spike, unprotected and behind tower's limit + shed, from 0.5× to 3×.
    let mut sweep = Vec::new();
    for (name, limits) in [
        (UNPROTECTED, Limits::unprotected(p.pool)),
        (SHED, Limits::shed(p.pool, p.limit)),
    ] {
        let svc = Service::start(ctx, limits, mix, p.client_timeout).await?;
        for &m in &p.multiples {
            let r = svc.step(&p, format!("{name} at {m}×"), base_rps * m).await;
            sweep.push((name, m, r));
        }
        svc.stop().await;
    }

    // 3b. The pitfall: a concurrency limit without shedding queues, as the pool did.
    let limits = Limits::limit_only(p.pool, p.limit);
    let svc = Service::start(ctx, limits, mix, p.client_timeout).await?;
    let limit_only = svc
        .step(&p, "limit only at 2×".into(), base_rps * 2.0)
        .await;
    svc.stop().await;

    // 4. Deadlines: drop at the front of the queue what nobody waits for. labkit's
    //    SqlCounter counts every statement the service runs, to check expired requests ran none.
    let counter = labkit::SqlCounter::new();
    let limits = Limits::deadline(p.pool, p.queue_timeout);
    let svc = Service::start_counted(ctx, limits, mix, p.client_timeout, Some(&counter)).await?;
    let r = svc
        .step(&p, "deadline queue at 2×".into(), base_rps * 2.0)
        .await;
    let deadline = (r, counter.get());
    svc.stop().await;

    // 5. Priorities at 3×: the non-critical read gets its own, smaller budget. (Without
    //    priority is the "limit + shed" step at 3× above: one budget for both endpoints.)
    let limits = Limits::priority(p.pool, p.limit, p.recs_budget);
    let svc = Service::start(ctx, limits, mix, p.client_timeout).await?;
    let priority = svc.step(&p, "priority at 3×".into(), base_rps * 3.0).await;
    svc.stop().await;

    // 6. Pool size: the same clients against pools from one connection to many.
    let mut pools = Vec::new();
    for &size in &p.pool_sizes {
        let svc = Service::start(ctx, Limits::unprotected(size), mix, patient).await?;
        let label = format!("pool of {size}: {} clients", p.pool_clients);
        let warmup = p.warmup.min(Duration::from_millis(200));
        let r = svc
            .closed(p.pool_clients, p.closed_step, warmup, &label)
            .await;
        pools.push(PoolRow {
            pool: size,
            summary: r.summary,
            first_error: r.first_error,
        });
        svc.stop().await;
    }

    let f = Findings {
        work,
        capacity,
        base_rps,
        sweep,
        limit_only,
        deadline,
        priority,
        pools,
    };
    report::build(ctx, title, &p, &f)
}

/// Each endpoint's SQL timed alone, one request at a time, plus the read's plan.
async fn work_per_request(pool: &PgPool, mix: Mix, n: u64) -> anyhow::Result<Work> {
    let recommendations = labkit::measure::sequential(n, |i| {
        shop::recommendations(pool, mix.recommendations_for(1_000_000 + i))
    })
    .await;
    let checkout =
        labkit::measure::sequential(n, |i| shop::checkout(pool, mix.checkout(2_000_000 + i))).await;
    let plan = shop::explain_recommendations(pool, mix.recommendations_for(3_000_000)).await?;
    Ok(Work {
        recommendations,
        checkout,
        plan,
    })
}
