//! The lab run: the four scenarios in order, then the report (findings, tables, sentence).

use labkit::{LabCtx, Report, Table};

use crate::limiter::{self, Algorithm, RedisStore};
use crate::middleware::FailMode;
use crate::policy::Policy;
use crate::scenario::accuracy::{self, AccuracyRow, RetryTruth};
use crate::scenario::cost::{self, LatencyRow};
use crate::scenario::instances;
use crate::scenario::outage::{self, Outage};
use crate::scenario::{MEASUREMENT_DEADLINE, Params};

pub const TITLE: &str = "Rate limiter: token bucket, sliding window and GCRA on shared Redis";

pub async fn run(ctx: &LabCtx) -> anyhow::Result<Report> {
    let params = Params::for_scale(ctx.scale);
    let policy = params.policy;
    let period_s = policy.period_ms() / 1000;
    let client = ctx.redis_client();
    let prefix = ctx.redis_prefix().to_string();
    let store =
        RedisStore::connect_with_deadline(client.clone(), &prefix, MEASUREMENT_DEADLINE).await?;
    let mut report = ctx.report(TITLE);

    let started = std::time::Instant::now();
    // 1. Accuracy. A fresh limiter per workload: governor's clock only moves forward.
    let edge_start = accuracy::just_before_window_edge(&policy, policy.period_ms() / 20);
    let window_start = accuracy::just_before_window_edge(&policy, 0);
    let mut accuracy_rows: Vec<(AccuracyRow, AccuracyRow, RetryTruth)> = Vec::new();
    for algorithm in Algorithm::ALL {
        let fresh = || limiter::build(algorithm, policy, &store);
        let at_edge = accuracy::burst_accuracy(
            &*fresh(),
            "accuracy-edge",
            edge_start,
            params.accuracy_periods,
        )
        .await?;
        let at_start = accuracy::burst_accuracy(
            &*fresh(),
            "accuracy-window-start",
            window_start,
            params.accuracy_periods,
        )
        .await?;
        let truth = accuracy::obedient_clients(
            &*fresh(),
            "obedient",
            params.obedient_clients,
            params.obedient_rounds,
            ctx.seed,
        )
        .await?;
        accuracy_rows.push((at_edge, at_start, truth));
    }

    tracing::info!(elapsed = ?started.elapsed(), "accuracy done");
    // 2. Instances.
    let mut instance_rows = Vec::new();
    for algorithm in Algorithm::ALL {
        instance_rows.push(
            instances::one_vs_four(algorithm, policy, &client, &prefix, params.instance_periods)
                .await?,
        );
    }

    tracing::info!(elapsed = ?started.elapsed(), "instances done");
    // 3. Cost: latency over HTTP, Redis work, memory.
    let latency = cost::latency(
        &client,
        &prefix,
        params.cost_workers,
        params.cost_round,
        params.cost_rounds,
        params.cost_keys,
    )
    .await?;
    let ops = cost::redis_ops(&client, &prefix, policy, params.ops_decisions).await?;
    let tenfold = Policy::new(
        policy.quota() as i64 * 10,
        policy.period(),
        policy.burst() as i64 * 10,
    )?;
    let mut memory = cost::memory_per_client(&client, &prefix, policy).await?;
    memory.extend(cost::memory_per_client(&client, &prefix, tenfold).await?);

    tracing::info!(elapsed = ?started.elapsed(), "cost done");
    // 4. Redis down.
    let outage =
        outage::redis_goes_down(policy, params.outage_per_phase, params.outage_clients).await?;

    tracing::info!(elapsed = ?started.elapsed(), "outage done");

    // ---- Findings -------------------------------------------------------------------------
    for (edge, _, _) in &accuracy_rows {
        let id = edge.algorithm.id();
        let name = edge.algorithm.name();
        report.finding(
            &format!("{id}_max_admitted_in_any_window"),
            &format!("{name}: most admitted in any {period_s} s window"),
            edge.max_in_any_window as f64,
            "count",
        );
        report.finding(
            &format!("{id}_promised_max"),
            &format!("{name}: promised maximum per {period_s} s window"),
            edge.promised_max as f64,
            "count",
        );
    }
    let truth = accuracy_rows
        .iter()
        .fold(RetryTruth::default(), |acc, (_, _, t)| RetryTruth {
            retries: acc.retries + t.retries,
            admitted: acc.admitted + t.admitted,
            longest_wait: acc.longest_wait.max(t.longest_wait),
        });
    report.finding(
        "retry_after_truthful_ratio",
        "Retries at exactly the advertised Retry-After that were admitted (all algorithms)",
        truth.ratio() * 100.0,
        "%",
    );

    let in_memory = instance_rows
        .iter()
        .find(|r| r.algorithm == Algorithm::InMemory)
        .expect("in-memory row");
    report.finding(
        "in_memory_4_instances_admitted_ratio",
        "In-memory limiter: admitted behind 4 instances ÷ behind 1",
        in_memory.ratio(),
        "x",
    );
    let worst_shared = instance_rows
        .iter()
        .filter(|r| r.algorithm.is_shared())
        .max_by(|a, b| (a.ratio() - 1.0).abs().total_cmp(&(b.ratio() - 1.0).abs()))
        .expect("shared rows");
    report.finding(
        "shared_4_instances_admitted_ratio",
        "Shared-Redis limiters: admitted behind 4 instances ÷ behind 1 (furthest from 1 of the five)",
        worst_shared.ratio(),
        "x",
    );

    let baseline = latency[0].summary;
    report.finding(
        "baseline_p95_ms",
        "HTTP p95 without the rate-limit layer",
        baseline.p95_ms,
        "ms",
    );
    for row in latency.iter().skip(1) {
        let a = row.algorithm.expect("non-baseline rows have an algorithm");
        report.finding(
            &format!("{}_overhead_p95_ms", a.id()),
            &format!("{}: p95 added per request", a.name()),
            row.summary.p95_ms - baseline.p95_ms,
            "ms",
        );
    }
    for row in &ops {
        report.finding(
            &format!("{}_redis_commands_per_decision", row.algorithm.id()),
            &format!(
                "{}: Redis commands per admitted decision, a client's first request (1 round trip)",
                row.algorithm.name()
            ),
            row.commands_admitted,
            "count",
        );
    }
    for row in memory.iter().filter(|m| m.quota == policy.quota()) {
        report.finding(
            &format!("{}_bytes_per_key", row.algorithm.id()),
            &format!(
                "{}: Redis bytes per client at {} requests per {period_s} s",
                row.algorithm.name(),
                row.quota
            ),
            row.bytes as f64,
            "bytes",
        );
    }

    match &outage {
        Outage::Measured(o) => {
            let up_open = o
                .phases
                .iter()
                .find(|p| p.mode == FailMode::Open && p.redis_up)
                .expect("an up phase");
            report.finding(
                "redis_up_rate_limited",
                "Redis up: the same traffic's requests answered 429 (what fail-open stops refusing)",
                up_open.rate_limited as f64,
                "count",
            );
            for mode in [FailMode::Open, FailMode::Closed] {
                let down = o
                    .phases
                    .iter()
                    .find(|p| p.mode == mode && !p.redis_up)
                    .expect("a down phase per mode");
                report.finding(
                    &format!("redis_down_fail_{mode}_admitted"),
                    &format!("Redis down, fail-{mode}: requests admitted"),
                    down.ok as f64,
                    "count",
                );
                report.finding(
                    &format!("redis_down_fail_{mode}_rejected"),
                    &format!("Redis down, fail-{mode}: requests rejected (429 or 503)"),
                    (down.rate_limited + down.unavailable) as f64,
                    "count",
                );
                report.finding(
                    &format!("redis_down_fail_{mode}_p95_ms"),
                    &format!("Redis down, fail-{mode}: request p95"),
                    down.latency.p95_ms,
                    "ms",
                );
            }
            let errors: u64 = o
                .stats
                .iter()
                .map(|(_, s)| s.failed_open + s.failed_closed)
                .sum();
            report.finding(
                "redis_down_limiter_errors_counted",
                "Redis down: limiter failures counted by the layer (both instances)",
                errors as f64,
                "count",
            );
            report.finding(
                "redis_down_servers_healthy",
                "Both servers still answered /healthz after the outage",
                if o.servers_healthy { 1.0 } else { 0.0 },
                "bool",
            );
        }
        Outage::Skipped(why) => {
            report.note(format!(
                "Redis-down scenario skipped: it stops a throwaway local redis-server, and none was found ({why})."
            ));
        }
    }

    // ---- Tables ---------------------------------------------------------------------------
    let mut t = Table::new(
        format!(
            "Accuracy ({policy}): a burst of {} at t=0, then 3× the allowed rate for {} periods",
            2 * policy.quota(),
            params.accuracy_periods
        ),
        &[
            "algorithm",
            "promise: max per window",
            "most in any window, burst at 95 % of a window",
            "kept promise",
            "same, burst at a window start",
            "admitted / sent",
            "retries admitted at Retry-After",
        ],
    );
    for (edge, start, truth) in &accuracy_rows {
        t.row([
            edge.algorithm.name().to_string(),
            edge.promised_max.to_string(),
            edge.max_in_any_window.to_string(),
            if edge.kept_promise() { "yes" } else { "NO" }.to_string(),
            start.max_in_any_window.to_string(),
            format!("{} / {}", edge.admitted, edge.sent),
            format!("{} / {}", truth.admitted, truth.retries),
        ]);
    }
    report.table(t);

    let mut t = Table::new(
        "One client, round-robin over app instances (real HTTP, one Redis)",
        &[
            "algorithm",
            "sent",
            "admitted, 1 instance",
            "admitted, 4 instances",
            "4 ÷ 1",
        ],
    );
    for r in &instance_rows {
        t.row([
            r.algorithm.name().to_string(),
            r.sent.to_string(),
            r.one_instance.to_string(),
            r.four_instances.to_string(),
            format!("{:.2}", r.ratio()),
        ]);
    }
    report.table(t);

    report.table(latency_table(&latency, &params));

    let mut t = Table::new(
        "Redis work per decision (INFO commandstats deltas)",
        &[
            "algorithm",
            "round trips",
            "commands, admitted (new client)",
            "commands, rejected",
            "commands run",
        ],
    );
    for r in &ops {
        t.row([
            r.algorithm.name().to_string(),
            format!("{:.2}", r.round_trips),
            format!("{:.2}", r.commands_admitted),
            format!("{:.2}", r.commands_rejected),
            r.commands.clone(),
        ]);
    }
    report.table(t);

    let mut t = Table::new(
        "Redis memory per client after one period at the policy's rate (MEMORY USAGE)",
        &[
            "algorithm",
            "requests per period",
            "keys",
            "bytes",
            "encoding",
        ],
    );
    for m in &memory {
        t.row([
            m.algorithm.name().to_string(),
            m.quota.to_string(),
            m.keys.to_string(),
            m.bytes.to_string(),
            m.encoding.clone(),
        ]);
    }
    report.table(t);

    if let Outage::Measured(o) = &outage {
        let mut t = Table::new(
            format!(
                "Redis stopped mid-run: GCRA, {} clients at 3× their rate, same traffic to both instances",
                params.outage_clients
            ),
            &["instance", "Redis", "sent", "200", "429", "503", "p95 ms"],
        );
        for p in &o.phases {
            t.row([
                format!("fail-{}", p.mode),
                if p.redis_up { "up" } else { "down" }.to_string(),
                p.sent.to_string(),
                p.ok.to_string(),
                p.rate_limited.to_string(),
                p.unavailable.to_string(),
                format!("{:.2}", p.latency.p95_ms),
            ]);
        }
        report.table(t);
    }

    // ---- Notes and the sentence -----------------------------------------------------------
    report.note(
        "Accuracy, instances and outage run on simulated time: every limiter call receives `now` from a manual clock, \
         so minutes of traffic replay in milliseconds and every run admits exactly the same requests.",
    );
    report.note(
        "Retry-After truthfulness is checked at millisecond precision (the limiter's own retry time). \
         The HTTP header rounds that up to whole seconds, which can only make a retry later, never earlier.",
    );
    let sliding_counter = &accuracy_rows
        .iter()
        .find(|(e, _, _)| e.algorithm == Algorithm::SlidingCounter)
        .expect("sliding counter row")
        .0;
    if !sliding_counter.kept_promise() {
        report.note(
            "The sliding counter estimates the previous window as if its requests were spread evenly; \
             a burst at the very end of that window is undercounted, so it breaks the per-window promise much as the fixed window does.",
        );
    }
    report.note(format!(
        "Redis commands are counted with INFO commandstats on this run's Redis; on a Redis shared with other clients (env backend) their commands would be counted too. \
         Memory includes each key's name, which carries this run's prefix ({} bytes).",
        prefix.len()
    ));

    let get = |a: Algorithm| {
        accuracy_rows
            .iter()
            .find(|(e, _, _)| e.algorithm == a)
            .map(|(e, _, _)| *e)
            .expect("every algorithm has a row")
    };
    let (fw, sc, sl, g) = (
        get(Algorithm::FixedWindow),
        get(Algorithm::SlidingCounter),
        get(Algorithm::SlidingLog),
        get(Algorithm::Gcra),
    );
    let gcra_p95 = report.get("gcra_overhead_p95_ms").unwrap_or(f64::NAN);
    report.sentence(format!(
        "With a limit of {policy}, a client bursting just before a window boundary got {} requests into one {period_s}-second window \
         through a fixed window and {} through a sliding counter (promise {}), while the sliding log held at {} and GCRA at {} (promise {}); \
         {:.0} % of retries at the advertised Retry-After were admitted; spread over 4 instances, in-memory limiters admitted {:.1}× what one did \
         and the shared-Redis ones {:.2}×; GCRA cost one EVALSHA and {:.2} ms at p95 per request.",
        fw.max_in_any_window,
        sc.max_in_any_window,
        fw.promised_max,
        sl.max_in_any_window,
        g.max_in_any_window,
        g.promised_max,
        truth.ratio() * 100.0,
        in_memory.ratio(),
        worst_shared.ratio(),
        gcra_p95,
    ));
    Ok(report)
}

fn latency_table(rows: &[LatencyRow], params: &Params) -> Table {
    let base = rows[0].summary;
    let mut t = Table::new(
        format!(
            "HTTP latency with and without the layer (closed loop, {} workers, {} keys, {} rounds × {} ms per variant)",
            params.cost_workers,
            params.cost_keys,
            params.cost_rounds,
            params.cost_round.as_millis()
        ),
        &[
            "variant",
            "requests",
            "errors",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "req/s",
            "added p50",
            "added p95",
        ],
    );
    for r in rows {
        let s = r.summary;
        t.row([
            r.algorithm.map_or("no limiter", |a| a.name()).to_string(),
            s.count.to_string(),
            s.errors.to_string(),
            format!("{:.3}", s.p50_ms),
            format!("{:.3}", s.p95_ms),
            format!("{:.3}", s.p99_ms),
            format!("{:.0}", s.throughput_per_s),
            format!("{:+.3}", s.p50_ms - base.p50_ms),
            format!("{:+.3}", s.p95_ms - base.p95_ms),
        ]);
    }
    t
}
