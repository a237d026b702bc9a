//! Findings, tables, charts, notes and the sentence, from what [`crate::run`] measured.

use labkit::{Better, Chart, LabCtx, LatencySummary, Report, Table};

use crate::client::{Endpoint, StepResult};
use crate::run::Params;

/// One rung of the capacity ladder.
#[derive(Debug, Clone)]
pub struct CapacityRow {
    pub clients: usize,
    pub summary: LatencySummary,
    pub first_error: Option<String>,
}

/// One pool size.
#[derive(Debug, Clone)]
pub struct PoolRow {
    pub pool: u32,
    pub summary: LatencySummary,
    pub first_error: Option<String>,
}

/// Each endpoint's database work alone, and the read's plan.
#[derive(Debug, Clone)]
pub struct Work {
    pub recommendations: LatencySummary,
    pub checkout: LatencySummary,
    pub plan: labkit::explain::Plan,
}

/// Everything the run measured.
#[derive(Debug, Clone)]
pub struct Findings {
    pub work: Work,
    pub capacity: Vec<CapacityRow>,
    /// The rate the multiples apply to: the measured capacity, or `--rate`.
    pub base_rps: f64,
    /// (variant, multiple, step) for the offered-load sweep.
    pub sweep: Vec<(&'static str, f64, StepResult)>,
    pub limit_only: StepResult,
    /// The deadline step and the statements labkit's SqlCounter counted during it.
    pub deadline: (StepResult, u64),
    pub priority: StepResult,
    pub pools: Vec<PoolRow>,
}

pub const UNPROTECTED: &str = "unprotected";
pub const SHED: &str = "limit + shed";

/// The capacity: the best closed-loop throughput of the ladder.
pub fn capacity(rows: &[CapacityRow]) -> f64 {
    rows.iter()
        .map(|r| r.summary.throughput_per_s)
        .fold(0.0, f64::max)
}

/// The knee: the fewest clients that reach 90 % of capacity.
pub fn knee(rows: &[CapacityRow]) -> usize {
    let cap = capacity(rows);
    rows.iter()
        .find(|r| r.summary.throughput_per_s >= 0.9 * cap)
        .map_or(0, |r| r.clients)
}

impl Findings {
    fn step(&self, variant: &str, multiple: f64) -> Option<&StepResult> {
        self.sweep
            .iter()
            .find(|(v, m, _)| *v == variant && (*m - multiple).abs() < 1e-9)
            .map(|(_, _, r)| r)
    }

    fn all_steps(&self) -> impl Iterator<Item = &StepResult> {
        self.sweep.iter().map(|(_, _, r)| r).chain([
            &self.limit_only,
            &self.deadline.0,
            &self.priority,
        ])
    }
}

fn pct(v: f64) -> String {
    format!("{:.1} %", v * 100.0)
}

fn ms(v: f64) -> String {
    format!("{v:.1}")
}

pub fn build(ctx: &LabCtx, title: &str, p: &Params, f: &Findings) -> anyhow::Result<Report> {
    let mut report = ctx.report(title);
    let cap = capacity(&f.capacity);
    let cores = crate::limits::cores();
    let step = |variant: &str, m: f64| {
        f.step(variant, m)
            .ok_or_else(|| anyhow::anyhow!("the sweep has no {variant} step at {m}×"))
    };
    let (u05, u1, u2) = (
        step(UNPROTECTED, 0.5)?,
        step(UNPROTECTED, 1.0)?,
        step(UNPROTECTED, 2.0)?,
    );
    let (s2, s3) = (step(SHED, 2.0)?, step(SHED, 3.0)?);
    let (dl, dl_statements) = (&f.deadline.0, f.deadline.1);
    let pr = &f.priority;

    // --- findings ---------------------------------------------------------------------
    report
        .p50(
            "recommendations_db_p50_ms",
            "recommendations SQL alone, one at a time (p50)",
            &f.work.recommendations,
        )
        .p50(
            "checkout_db_p50_ms",
            "checkout transaction alone, one at a time (p50)",
            &f.work.checkout,
        )
        .finding("capacity_rps", "capacity: best closed-loop throughput (2xx/s)", cap, "req/s")
        .finding(
            "capacity_knee_clients",
            "the knee: fewest concurrent clients reaching 90 % of capacity",
            knee(&f.capacity) as f64,
            "count",
        )
        .finding("offered_base_rps", "1× offered load in the sweep (capacity, or --rate)", f.base_rps, "req/s")
        .p99("unloaded_p99_ms", "p99 at 0.5× offered, unprotected (the unloaded p99)", &u05.ok_latency)
        .finding(
            "unprotected_goodput_rps_at_1x",
            "goodput at 1× (2xx within the SLO), unprotected: before the spike",
            u1.goodput_rps(),
            "req/s",
        )
        .finding(
            "unprotected_goodput_rps_at_2x",
            "goodput at 2× offered, unprotected",
            u2.goodput_rps(),
            "req/s",
        )
        .finding(
            "shed_goodput_rps_at_2x",
            "goodput at 2× offered, concurrency limit + load shed",
            s2.goodput_rps(),
            "req/s",
        )
        .p99(
            "unprotected_p99_ms_at_2x",
            "p99 of the 2xx answers at 2×, unprotected (timeouts excluded)",
            &u2.ok_latency,
        )
        .p99(
            "shed_admitted_p99_ms_at_2x",
            "p99 of the admitted (2xx) requests at 2×, limit + shed",
            &s2.ok_latency,
        )
        .finding(
            "shed_rejected_ratio_at_2x",
            "share answered 503 + Retry-After at 2×, limit + shed",
            s2.shed_ratio(),
            "ratio",
        )
        .finding(
            "shed_503_without_retry_after",
            "503s from the load-shed layer without a Retry-After header (whole run)",
            f.all_steps()
                .map(|r| r.shed - r.shed_with_retry_after)
                .sum::<u64>() as f64,
            "count",
        )
        .better("shed_503_without_retry_after", Better::Lower)
        .finding(
            "unprotected_timeout_ratio_at_2x",
            "share of requests whose client timed out at 2×, unprotected",
            u2.timeout_ratio(),
            "ratio",
        )
        .better("unprotected_timeout_ratio_at_2x", Better::Lower)
        .finding(
            "unprotected_wasted_work_ratio_at_2x",
            "of the requests the server completed at 2×, share whose client had already given up",
            u2.wasted_ratio(),
            "ratio",
        )
        .better("unprotected_wasted_work_ratio_at_2x", Better::Lower)
        .finding(
            "unprotected_drain_s_at_2x",
            "seconds the unprotected server kept working after the 2× step's last client gave up",
            u2.drain.as_secs_f64(),
            "s",
        )
        .finding(
            "limit_only_goodput_rps_at_2x",
            "goodput at 2× with a concurrency limit and no shedding (it queues)",
            f.limit_only.goodput_rps(),
            "req/s",
        )
        .p99(
            "limit_only_p99_ms_at_2x",
            "p99 of the 2xx answers at 2×, concurrency limit without shedding",
            &f.limit_only.ok_latency,
        )
        .finding(
            "deadline_goodput_rps_at_2x",
            "goodput at 2× with the deadline queue",
            dl.goodput_rps(),
            "req/s",
        )
        .p99(
            "deadline_admitted_p99_ms_at_2x",
            "p99 of the 2xx answers at 2×, deadline queue",
            &dl.ok_latency,
        )
        .finding(
            "deadline_expired_requests_without_sql",
            "requests dropped at the front of the deadline queue without running SQL (2×)",
            dl.expired_without_sql as f64,
            "count",
        )
        .finding(
            "deadline_statements_for_uncompleted",
            "SQL statements counted (labkit SqlCounter) beyond those of completed requests, deadline step",
            dl_statements.saturating_sub(dl.server.statements) as f64,
            "count",
        )
        .better("deadline_statements_for_uncompleted", Better::Lower)
        .finding(
            "deadline_wasted_work_ratio_at_2x",
            "of the requests completed at 2× with the deadline queue, share whose client had given up",
            dl.wasted_ratio(),
            "ratio",
        )
        .better("deadline_wasted_work_ratio_at_2x", Better::Lower)
        .finding(
            "checkout_success_ratio_at_3x_no_priority",
            "checkout 2xx share at 3×, one budget for both endpoints",
            s3.endpoint(Endpoint::Checkout).success_ratio(),
            "ratio",
        )
        .better("checkout_success_ratio_at_3x_no_priority", Better::Higher)
        .finding(
            "checkout_success_ratio_at_3x_priority",
            "checkout 2xx share at 3×, recommendations on a budget of their own",
            pr.endpoint(Endpoint::Checkout).success_ratio(),
            "ratio",
        )
        .better("checkout_success_ratio_at_3x_priority", Better::Higher);
    let checkout_p99 = |r: &StepResult| {
        r.endpoint(Endpoint::Checkout)
            .ok_latency
            .summary(r.duration)
    };
    report
        .p99(
            "checkout_p99_ms_at_3x_no_priority",
            "checkout p99 at 3×, one budget",
            &checkout_p99(s3),
        )
        .p99(
            "checkout_p99_ms_at_3x_priority",
            "checkout p99 at 3×, separate budgets",
            &checkout_p99(pr),
        );
    let best_tput = f.pools.iter().max_by(|a, b| {
        a.summary
            .throughput_per_s
            .total_cmp(&b.summary.throughput_per_s)
    });
    let best_p99 = f
        .pools
        .iter()
        .min_by(|a, b| a.summary.p99_ms.total_cmp(&b.summary.p99_ms));
    let largest = f.pools.iter().max_by_key(|r| r.pool);
    if let (Some(bt), Some(bp), Some(lg)) = (best_tput, best_p99, largest) {
        report
            .finding(
                "pool_size_best_throughput",
                "pool size with the best throughput, same clients",
                bt.pool as f64,
                "count",
            )
            .finding(
                "pool_best_throughput_rps",
                "throughput at that pool size",
                bt.summary.throughput_per_s,
                "req/s",
            )
            .finding(
                "pool_largest_throughput_rps",
                &format!("throughput with the largest pool ({} connections)", lg.pool),
                lg.summary.throughput_per_s,
                "req/s",
            )
            .measured(
                "pool_size_largest_p99_ms",
                &format!("p99 with the largest pool ({} connections)", lg.pool),
                lg.summary.p99_ms,
                "ms",
                lg.summary.count,
            )
            .measured(
                "pool_size_best_p99_ms",
                &format!("best p99 over pool sizes (pool of {})", bp.pool),
                bp.summary.p99_ms,
                "ms",
                bp.summary.count,
            );
    }
    let behind: Vec<&StepResult> = f.all_steps().filter(|r| !r.schedule.kept_up()).collect();
    report
        .finding(
            "driver_steps_behind_schedule",
            "open-loop steps where the driver did not keep its rate (see notes)",
            behind.len() as f64,
            "count",
        )
        .better("driver_steps_behind_schedule", Better::Lower);

    // --- tables -------------------------------------------------------------------------
    let mut t = Table::new(
        "Capacity: closed loop (each client sends when its last answer arrived)",
        &[
            "clients",
            "2xx/s",
            "p50 ms",
            "p99 ms",
            "in flight = X × R (Little)",
        ],
    );
    for r in &f.capacity {
        let s = &r.summary;
        t.row([
            r.clients.to_string(),
            format!("{:.0}", s.throughput_per_s),
            ms(s.p50_ms),
            ms(s.p99_ms),
            format!("{:.1}", s.throughput_per_s * s.mean_ms / 1000.0),
        ]);
    }
    report.table(t);

    let mut t = Table::new(
        format!(
            "The spike: offered load vs goodput ({} s steps, SLO {} ms, client timeout {} ms; \
             latency from when each request was due)",
            p.step.as_secs_f64(),
            p.slo.as_millis(),
            p.client_timeout.as_millis()
        ),
        &[
            "variant",
            "offered",
            "offered/s",
            "sent/s",
            "sent late p99 ms",
            "goodput/s",
            "2xx/s",
            "p50 ms",
            "p99 ms",
            "503",
            "timed out",
            "wasted",
            "server busy after",
            "this process, cores",
        ],
    );
    let mut row = |name: &str, m: f64, r: &StepResult| {
        t.row([
            name.to_string(),
            format!("{m}×"),
            format!("{:.0}", r.offered_rps),
            format!("{:.0}", r.schedule.achieved_rate_per_s),
            format!("{:.2}", r.schedule.send_late_p99_ms),
            format!("{:.0}", r.goodput_rps()),
            format!("{:.0}", r.ok_rps()),
            ms(r.ok_latency.p50_ms),
            ms(r.ok_latency.p99_ms),
            pct(r.shed_ratio()),
            pct(r.timeout_ratio()),
            pct(r.wasted_ratio()),
            format!("{:.1} s", r.drain.as_secs_f64()),
            r.process_cores
                .map_or("n/a".to_string(), |c| format!("{c:.2}")),
        ]);
    };
    for (name, m, r) in &f.sweep {
        row(name, *m, r);
    }
    row("limit only (no shed)", 2.0, &f.limit_only);
    row("deadline queue", 2.0, dl);
    row("priority budgets", 3.0, pr);
    report.table(t);

    let mut t = Table::new(
        "Priorities at 3×: checkout (critical) vs recommendations (non-critical)",
        &["budgets", "endpoint", "sent", "2xx", "success", "p99 ms"],
    );
    for (name, r) in [
        ("one budget for both", s3),
        ("recommendations on their own budget", pr),
    ] {
        for (e, label) in [
            (Endpoint::Checkout, "checkout"),
            (Endpoint::Recommendations, "recommendations"),
        ] {
            let x = r.endpoint(e);
            t.row([
                name.to_string(),
                label.to_string(),
                x.sent.to_string(),
                x.ok.to_string(),
                pct(x.success_ratio()),
                ms(x.ok_latency.summary(r.duration).p99_ms),
            ]);
        }
    }
    report.table(t);

    let mut t = Table::new(
        format!(
            "Pool size: the same {} clients, closed loop, {cores} cores",
            p.pool_clients
        ),
        &["pool", "2xx/s", "p50 ms", "p99 ms", "max ms"],
    );
    for r in &f.pools {
        let s = &r.summary;
        t.row([
            r.pool.to_string(),
            format!("{:.0}", s.throughput_per_s),
            ms(s.p50_ms),
            ms(s.p99_ms),
            ms(s.max_ms),
        ]);
    }
    report.table(t);

    // --- charts -------------------------------------------------------------------------
    let mut chart = Chart::new(
        "goodput-vs-offered",
        "Goodput (2xx within the SLO) vs offered load",
        "offered load (req/s)",
        "goodput (req/s)",
    );
    for variant in [UNPROTECTED, SHED] {
        let pts = f
            .sweep
            .iter()
            .filter(|(v, _, _)| *v == variant)
            .map(|(_, _, r)| (r.offered_rps, r.goodput_rps()))
            .collect();
        chart = chart.series(variant, pts);
    }
    report.chart(chart);
    report.chart(
        Chart::new(
            "pool-size",
            "Throughput by pool size (same clients)",
            "pool size",
            "req/s",
        )
        .log_x()
        .series(
            "2xx/s",
            f.pools
                .iter()
                .map(|r| (f64::from(r.pool), r.summary.throughput_per_s))
                .collect(),
        ),
    );

    // --- notes --------------------------------------------------------------------------
    let plan = &f.work.plan;
    report.note(format!(
        "The recommendations read is real work: {} ({} rows examined, {} buffers, {:.2} ms in \
         EXPLAIN ANALYZE); alone it takes {:.2} ms at p50 and the checkout transaction {:.2} ms.",
        plan.node_types().join(" → "),
        plan.rows_examined(),
        plan.buffers(),
        plan.execution_ms,
        f.work.recommendations.p50_ms,
        f.work.checkout.p50_ms,
    ));
    report.note(format!(
        "Steps: each open-loop step offers its rate for {:.1} s; capacity and pool-size rungs \
         are {:.1} s closed-loop runs. Goodput counts 2xx answers within the {} ms SLO, \
         measured from when each request was due; the client gives up after {} ms.",
        p.step.as_secs_f64(),
        p.closed_step.as_secs_f64(),
        p.slo.as_millis(),
        p.client_timeout.as_millis()
    ));
    report.note(format!(
        "Everything shares this machine's {cores} cores: Postgres, the service and the load \
         driver run side by side, so capacity is the capacity of all three together. The \
         driver's honesty is in the sweep table: offered vs sent per second and how late it \
         sent at p99."
    ));
    for r in &behind {
        if let Some(w) = r.schedule.warning(&r.label) {
            report.note(w);
        }
    }
    report.note(
        "The service runs each request in its own task, so a client that gives up does not \
         cancel its work — as behind a load balancer that keeps backend connections open. \
         (hyper serving clients directly drops a handler when its connection closes; you lose \
         that the moment a proxy sits in between.)",
    );
    report.note(format!(
        "Budgets: pool of {} connections (2 per core); concurrency limit {} (tower \
         GlobalConcurrencyLimitLayer); recommendations budget {} under priorities; deadline \
         queue timeout {} ms, or the client's Request-Timeout-Ms if shorter.",
        p.pool,
        p.limit,
        p.recs_budget,
        p.queue_timeout.as_millis()
    ));
    for r in f.all_steps() {
        if let Some(e) = &r.first_error {
            report.note(format!("{}: first driver error: {e}", r.label));
        }
    }
    for r in f
        .capacity
        .iter()
        .filter_map(|r| r.first_error.as_ref().map(|e| (r.clients, e)))
    {
        report.note(format!(
            "capacity with {} clients: first non-2xx: {}",
            r.0, r.1
        ));
    }
    for r in f
        .pools
        .iter()
        .filter_map(|r| r.first_error.as_ref().map(|e| (r.pool, e)))
    {
        report.note(format!("pool of {}: first non-2xx: {}", r.0, r.1));
    }

    // --- the sentence ---------------------------------------------------------------------
    let lg = f.pools.iter().max_by_key(|r| r.pool);
    let pool_part = match (best_tput, lg) {
        (Some(b), Some(l)) if b.pool != l.pool => format!(
            "; and on {cores} cores a pool of {} did {:.0} req/s where {} connections did {:.0}",
            b.pool, b.summary.throughput_per_s, l.pool, l.summary.throughput_per_s
        ),
        _ => String::new(),
    };
    report.sentence(format!(
        "At twice capacity ({:.0} req/s offered to a service that completes {:.0}), the \
         unprotected service's goodput fell to {:.0} req/s with p99 {:.0} ms, and {:.0} % of \
         the work it finished was for clients who had already left; a concurrency limit with \
         load shedding kept {:.0} req/s of goodput at p99 {:.0} ms by answering {:.0} % with \
         503 + Retry-After, and a separate budget for recommendations kept checkout at {:.0} % \
         success under 3× instead of {:.0} %{pool_part}.",
        u2.offered_rps,
        cap,
        u2.goodput_rps(),
        u2.ok_latency.p99_ms,
        u2.wasted_ratio() * 100.0,
        s2.goodput_rps(),
        s2.ok_latency.p99_ms,
        s2.shed_ratio() * 100.0,
        pr.endpoint(Endpoint::Checkout).success_ratio() * 100.0,
        s3.endpoint(Endpoint::Checkout).success_ratio() * 100.0,
    ));
    Ok(report)
}
