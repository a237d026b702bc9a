//! The run's numbers as findings, tables, notes and the sentence.

use labkit::{Better, LabCtx, Report, Table};

use crate::limiter::Algorithm;
use crate::middleware::FailMode;
use crate::policy::Policy;
use crate::scenario::Params;
use crate::scenario::accuracy::{AlgorithmAccuracy, RetryTruth};
use crate::scenario::cost::{LatencyRow, LatencyShape, MemoryRow, OpsRow};
use crate::scenario::instances::InstancesRow;
use crate::scenario::outage::OutageResult;

/// Every key the report carries. The `redis_*` keys of the outage need a Redis the lab may
/// stop (local or docker backend); on the env backend that scenario is skipped with a note.
pub const FINDING_KEYS: &[&str] = &[
    // accuracy: the most admitted in any window of one period, against the promise
    "fixed_window_max_admitted_in_any_window",
    "fixed_window_promised_max",
    "sliding_log_max_admitted_in_any_window",
    "sliding_log_promised_max",
    "sliding_counter_max_admitted_in_any_window",
    "sliding_counter_promised_max",
    "token_bucket_max_admitted_in_any_window",
    "token_bucket_promised_max",
    "gcra_max_admitted_in_any_window",
    "gcra_promised_max",
    "in_memory_max_admitted_in_any_window",
    "in_memory_promised_max",
    "retry_after_truthful_ratio",
    // instances
    "in_memory_4_instances_admitted_ratio",
    "shared_4_instances_admitted_ratio",
    // cost: latency over HTTP
    "baseline_p50_ms",
    "baseline_p95_ms",
    "fixed_window_overhead_p50_ms",
    "fixed_window_overhead_p95_ms",
    "sliding_log_overhead_p50_ms",
    "sliding_log_overhead_p95_ms",
    "sliding_counter_overhead_p50_ms",
    "sliding_counter_overhead_p95_ms",
    "token_bucket_overhead_p50_ms",
    "token_bucket_overhead_p95_ms",
    "gcra_overhead_p50_ms",
    "gcra_overhead_p95_ms",
    "in_memory_overhead_p50_ms",
    "in_memory_overhead_p95_ms",
    // cost: Redis work and memory
    "fixed_window_redis_commands_per_decision",
    "sliding_log_redis_commands_per_decision",
    "sliding_counter_redis_commands_per_decision",
    "token_bucket_redis_commands_per_decision",
    "gcra_redis_commands_per_decision",
    "fixed_window_bytes_per_key",
    "sliding_log_bytes_per_key",
    "sliding_counter_bytes_per_key",
    "token_bucket_bytes_per_key",
    "gcra_bytes_per_key",
    // Redis down
    "redis_up_rate_limited",
    "redis_down_fail_open_admitted",
    "redis_down_fail_open_rejected",
    "redis_down_fail_open_p95_ms",
    "redis_down_fail_closed_admitted",
    "redis_down_fail_closed_rejected",
    "redis_down_fail_closed_p95_ms",
    "redis_down_limiter_errors_counted",
    "redis_down_servers_healthy",
];

/// The scenario that needs a Redis of its own, as named in `report.skipped`.
pub const OUTAGE_SCENARIO: &str = "Redis down mid-run (fail-open vs fail-closed)";

/// What the run's steps measured.
#[derive(Debug)]
pub struct Measured {
    pub params: Params,
    pub latency_shape: LatencyShape,
    pub accuracy: Vec<AlgorithmAccuracy>,
    pub instances: Vec<InstancesRow>,
    pub latency: Vec<LatencyRow>,
    pub ops: Vec<OpsRow>,
    pub memory: Vec<MemoryRow>,
    /// `Err(why)` when the backend could not give the scenario a Redis to stop.
    pub outage: Result<OutageResult, String>,
}

pub fn build(ctx: &LabCtx, title: &str, m: &Measured) -> Report {
    let mut r = ctx.report(title);
    let policy = m.params.policy;
    accuracy(&mut r, &m.params, &m.accuracy);
    instances(&mut r, &m.instances);
    latency(&mut r, &m.latency, &m.latency_shape);
    redis_work(&mut r, &policy, &m.ops, &m.memory);
    match &m.outage {
        Ok(o) => outage(&mut r, &m.params, o),
        Err(why) => {
            r.skipped(OUTAGE_SCENARIO, why.clone());
        }
    }
    notes(&mut r, ctx, m);
    r.sentence(sentence(&r, &policy, m));
    r
}

fn accuracy(r: &mut Report, params: &Params, rows: &[AlgorithmAccuracy]) {
    let policy = params.policy;
    let period_s = policy.period_ms() / 1000;
    for AlgorithmAccuracy { edge, .. } in rows {
        let (id, name) = (edge.algorithm.id(), edge.algorithm.name());
        r.finding(
            &format!("{id}_max_admitted_in_any_window"),
            &format!("{name}: most admitted in any {period_s} s window"),
            edge.max_in_any_window as f64,
            "count",
        );
        r.finding(
            &format!("{id}_promised_max"),
            &format!("{name}: promised maximum per {period_s} s window"),
            edge.promised_max as f64,
            "count",
        );
    }
    r.finding(
        "retry_after_truthful_ratio",
        "Retries at exactly the advertised Retry-After that were admitted (all algorithms)",
        retries(rows).ratio() * 100.0,
        "%",
    )
    .better("retry_after_truthful_ratio", Better::Higher);

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
    for a in rows {
        let e = &a.edge;
        t.row([
            e.algorithm.name().to_string(),
            e.promised_max.to_string(),
            e.max_in_any_window.to_string(),
            if e.kept_promise() { "yes" } else { "NO" }.to_string(),
            a.window_start.max_in_any_window.to_string(),
            format!("{} / {}", e.admitted, e.sent),
            format!("{} / {}", a.retries.admitted, a.retries.retries),
        ]);
    }
    r.table(t);
}

/// Every algorithm's obedient clients together.
fn retries(rows: &[AlgorithmAccuracy]) -> RetryTruth {
    rows.iter()
        .fold(RetryTruth::default(), |acc, a| RetryTruth {
            retries: acc.retries + a.retries.retries,
            admitted: acc.admitted + a.retries.admitted,
            longest_wait: acc.longest_wait.max(a.retries.longest_wait),
        })
}

fn in_memory(rows: &[InstancesRow]) -> &InstancesRow {
    rows.iter()
        .find(|r| r.algorithm == Algorithm::InMemory)
        .expect("in-memory row")
}

/// The shared algorithm whose 4-instance ratio is furthest from 1.
fn worst_shared(rows: &[InstancesRow]) -> &InstancesRow {
    rows.iter()
        .filter(|r| r.algorithm.is_shared())
        .max_by(|a, b| (a.ratio() - 1.0).abs().total_cmp(&(b.ratio() - 1.0).abs()))
        .expect("shared rows")
}

fn instances(r: &mut Report, rows: &[InstancesRow]) {
    r.finding(
        "in_memory_4_instances_admitted_ratio",
        "In-memory limiter: admitted behind 4 instances ÷ behind 1",
        in_memory(rows).ratio(),
        "x",
    );
    r.finding(
        "shared_4_instances_admitted_ratio",
        "Shared-Redis limiters: admitted behind 4 instances ÷ behind 1 (furthest from 1 of the five)",
        worst_shared(rows).ratio(),
        "x",
    );
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
    for row in rows {
        t.row([
            row.algorithm.name().to_string(),
            row.sent.to_string(),
            row.one_instance.to_string(),
            row.four_instances.to_string(),
            format!("{:.2}", row.ratio()),
        ]);
    }
    r.table(t);
}

fn latency(r: &mut Report, rows: &[LatencyRow], shape: &LatencyShape) {
    let base = rows[0].summary;
    r.p50(
        "baseline_p50_ms",
        "HTTP p50 without the rate-limit layer",
        &base,
    );
    r.p95(
        "baseline_p95_ms",
        "HTTP p95 without the rate-limit layer",
        &base,
    );
    for row in rows.iter().skip(1) {
        let a = row.algorithm.expect("non-baseline rows have an algorithm");
        let s = row.summary;
        // A difference of two percentiles rests on the smaller of the two sample sets.
        let n = s.count.min(base.count);
        for (p, added) in [
            ("p50", s.p50_ms - base.p50_ms),
            ("p95", s.p95_ms - base.p95_ms),
        ] {
            r.measured(
                &format!("{}_overhead_{p}_ms", a.id()),
                &format!("{}: {p} added per request", a.name()),
                added,
                "ms",
                n,
            );
        }
    }
    let mut t = Table::new(
        format!(
            "HTTP latency with and without the layer (closed loop, {} workers, {} keys, {} rounds × {} ms per variant)",
            shape.workers,
            shape.keys,
            shape.rounds,
            (shape.per_variant / shape.rounds.max(1)).as_millis()
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
    for row in rows {
        let s = row.summary;
        t.row([
            row.name().to_string(),
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
    r.table(t);
}

fn redis_work(r: &mut Report, policy: &Policy, ops: &[OpsRow], memory: &[MemoryRow]) {
    let period_s = policy.period_ms() / 1000;
    for row in ops {
        let key = format!("{}_redis_commands_per_decision", row.algorithm.id());
        r.finding(
            &key,
            &format!(
                "{}: Redis commands per admitted decision, a client's first request (1 round trip)",
                row.algorithm.name()
            ),
            row.commands_admitted,
            "count",
        )
        .better(&key, Better::Lower);
    }
    for row in memory.iter().filter(|m| m.quota == policy.quota()) {
        let key = format!("{}_bytes_per_key", row.algorithm.id());
        r.finding(
            &key,
            &format!(
                "{}: Redis bytes per client at {} requests per {period_s} s",
                row.algorithm.name(),
                row.quota
            ),
            row.bytes as f64,
            "bytes",
        )
        .better(&key, Better::Lower);
    }
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
    for row in ops {
        t.row([
            row.algorithm.name().to_string(),
            format!("{:.2}", row.round_trips),
            format!("{:.2}", row.commands_admitted),
            format!("{:.2}", row.commands_rejected),
            row.commands.clone(),
        ]);
    }
    r.table(t);
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
    for m in memory {
        t.row([
            m.algorithm.name().to_string(),
            m.quota.to_string(),
            m.keys.to_string(),
            m.bytes.to_string(),
            m.encoding.clone(),
        ]);
    }
    r.table(t);
}

fn outage(r: &mut Report, params: &Params, o: &OutageResult) {
    let up_open = o
        .phases
        .iter()
        .find(|p| p.mode == FailMode::Open && p.redis_up)
        .expect("an up phase");
    r.finding(
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
        r.finding(
            &format!("redis_down_fail_{mode}_admitted"),
            &format!("Redis down, fail-{mode}: requests admitted"),
            down.ok as f64,
            "count",
        );
        r.finding(
            &format!("redis_down_fail_{mode}_rejected"),
            &format!("Redis down, fail-{mode}: requests rejected (429 or 503)"),
            (down.rate_limited + down.unavailable) as f64,
            "count",
        );
        r.p95(
            &format!("redis_down_fail_{mode}_p95_ms"),
            &format!("Redis down, fail-{mode}: request p95"),
            &down.latency,
        );
    }
    let errors: u64 = o
        .stats
        .iter()
        .map(|(_, s)| s.failed_open + s.failed_closed)
        .sum();
    r.finding(
        "redis_down_limiter_errors_counted",
        "Redis down: limiter failures counted by the layer (both instances)",
        errors as f64,
        "count",
    );
    r.flag(
        "redis_down_servers_healthy",
        "Both servers still answered /healthz after the outage",
        o.servers_healthy,
    );
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
    r.table(t);
}

fn edge_row(m: &Measured, a: Algorithm) -> &crate::scenario::accuracy::AccuracyRow {
    &m.accuracy
        .iter()
        .find(|row| row.edge.algorithm == a)
        .expect("every algorithm has a row")
        .edge
}

fn notes(r: &mut Report, ctx: &LabCtx, m: &Measured) {
    r.note(
        "Accuracy, instances and outage run on simulated time: every limiter call receives `now` from a manual clock, \
         so minutes of traffic replay in milliseconds and every run admits exactly the same requests. \
         --clients, --duration and --warmup shape the one load phase, the HTTP latency comparison.",
    );
    r.note(
        "Retry-After truthfulness is checked at millisecond precision (the limiter's own retry time). \
         The HTTP header rounds that up to whole seconds, which can only make a retry later, never earlier.",
    );
    if !edge_row(m, Algorithm::SlidingCounter).kept_promise() {
        r.note(
            "The sliding counter estimates the previous window as if its requests were spread evenly; \
             a burst at the very end of that window is undercounted, so it breaks the per-window promise much as the fixed window does.",
        );
    }
    r.note(format!(
        "Redis commands are counted with INFO commandstats on this run's Redis; on a Redis shared with other clients (env backend) their commands would be counted too. \
         Memory includes each key's name, which carries this run's prefix ({} bytes).",
        ctx.redis_prefix().len()
    ));
}

fn sentence(r: &Report, policy: &Policy, m: &Measured) -> String {
    let period_s = policy.period_ms() / 1000;
    let (fw, sc, sl, g) = (
        edge_row(m, Algorithm::FixedWindow),
        edge_row(m, Algorithm::SlidingCounter),
        edge_row(m, Algorithm::SlidingLog),
        edge_row(m, Algorithm::Gcra),
    );
    format!(
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
        retries(&m.accuracy).ratio() * 100.0,
        in_memory(&m.instances).ratio(),
        worst_shared(&m.instances).ratio(),
        r.get("gcra_overhead_p95_ms").unwrap_or(f64::NAN),
    )
}
