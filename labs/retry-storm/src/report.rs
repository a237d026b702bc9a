//! Findings, tables, charts, notes and the sentence — built from the scenarios' results, so
//! the run in `lib.rs` reads as story → steps.

use std::time::Duration;

use labkit::{Better, Chart, LabCtx, Report, Table};

use crate::breaker::State;
use crate::jitter::Strategy;
use crate::scenarios::amplification::{self, StormRun};
use crate::scenarios::backoff::{BackoffResults, Cell};
use crate::scenarios::breaker::{self as breaker_scenario, BreakerRun};
use crate::scenarios::bulkhead::{self, IsolationRun, Setup};
use crate::scenarios::rate_series;

/// Everything the run measured.
#[derive(Debug)]
pub struct Measured {
    pub backoff: BackoffResults,
    pub storm_shape: amplification::Shape,
    pub storms: Vec<StormRun>,
    pub isolation: Vec<IsolationRun>,
    pub breaker_shape: breaker_scenario::Shape,
    pub breaker: BreakerRun,
    pub mis_set: BreakerRun,
}

pub fn build(ctx: &LabCtx, title: &str, m: &Measured) -> Report {
    let mut r = ctx.report(title);
    backoff(&mut r, &m.backoff);
    storms(&mut r, m.storm_shape, &m.storms);
    isolation(&mut r, &m.isolation);
    breaker(&mut r, m.breaker_shape, &m.breaker, &m.mis_set);
    sentence(&mut r, m);
    r
}

fn s(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------------------
// Scenario 1: backoff and jitter
// ---------------------------------------------------------------------------------------

/// A claim of the AWS post, checked on one grid of cells at N clients.
struct Claim {
    text: &'static str,
    holds: fn(&dyn Fn(Strategy) -> Cell) -> bool,
}

const CLAIMS: [Claim; 6] = [
    Claim {
        text: "no-jitter exponential makes more calls than every jittered strategy",
        holds: |c| {
            let e = c(Strategy::Exponential).calls;
            [Strategy::Full, Strategy::Equal, Strategy::Decorrelated]
                .iter()
                .all(|s| c(*s).calls < e)
        },
    },
    Claim {
        text: "no-jitter exponential takes longer to finish than every jittered strategy",
        holds: |c| {
            let e = c(Strategy::Exponential).time_ms;
            [Strategy::Full, Strategy::Equal, Strategy::Decorrelated]
                .iter()
                .all(|s| c(*s).time_ms < e)
        },
    },
    Claim {
        text: "every jittered strategy makes at most ~70 % of the calls of no backoff",
        holds: |c| {
            let n = c(Strategy::None).calls;
            [Strategy::Full, Strategy::Equal, Strategy::Decorrelated]
                .iter()
                .all(|s| c(*s).calls <= 0.7 * n)
        },
    },
    Claim {
        text: "full jitter makes fewer calls than equal and decorrelated jitter",
        holds: |c| {
            let f = c(Strategy::Full).calls;
            f < c(Strategy::Equal).calls && f < c(Strategy::Decorrelated).calls
        },
    },
    Claim {
        text: "equal jitter takes longer than full and decorrelated jitter",
        holds: |c| {
            let e = c(Strategy::Equal).time_ms;
            e > c(Strategy::Full).time_ms && e > c(Strategy::Decorrelated).time_ms
        },
    },
    Claim {
        text: "decorrelated jitter finishes sooner than full jitter",
        holds: |c| c(Strategy::Decorrelated).time_ms < c(Strategy::Full).time_ms,
    },
];

fn check(claim: &Claim, cells: &[Cell], n: usize) -> bool {
    let get = |s: Strategy| {
        BackoffResults::cell(cells, s, n).copied().unwrap_or(Cell {
            strategy: s,
            clients: n,
            calls: f64::NAN,
            time_ms: f64::NAN,
            reps: 0,
        })
    };
    (claim.holds)(&get)
}

fn backoff(r: &mut Report, b: &BackoffResults) {
    let n = b.largest();
    for s in Strategy::ALL {
        let Some(c) = BackoffResults::cell(&b.real, s, n) else {
            continue;
        };
        r.finding(
            &format!("jitter_{}_calls", s.name()),
            &format!(
                "{} — version-checked writes for {n} clients to finish",
                s.label()
            ),
            c.calls.round(),
            "count",
        )
        .better(&format!("jitter_{}_calls", s.name()), Better::Lower);
        r.measured(
            &format!("jitter_{}_ms", s.name()),
            &format!("{} — time until all {n} clients had written", s.label()),
            c.time_ms,
            "ms",
            u64::from(c.reps),
        );
    }
    r.p99(
        "jitter_sql_p99_ms",
        "backoff race — the SQL statements themselves, p99 (hops excluded)",
        &b.sql,
    );
    r.finding(
        "jitter_lost_updates",
        "backoff race — races whose row did not end at version N",
        b.lost_updates as f64,
        "count",
    )
    .better("jitter_lost_updates", Better::Lower);
    let reproduced = CLAIMS.iter().filter(|c| check(c, &b.real, n)).count();
    r.finding(
        "jitter_claims_reproduced",
        &format!("backoff race — the AWS post's orderings reproduced at {n} clients (of 6)"),
        reproduced as f64,
        "count",
    );

    let mut t = Table::new(
        format!(
            "Backoff race — N clients update one Postgres row (version check); real run vs the \
             AWS simulator ported ({} runs per cell)",
            b.sim_runs
        ),
        &[
            "strategy",
            "clients",
            "calls",
            "time ms",
            "sim (ours) calls",
            "sim (ours) ms",
            "sim (AWS) calls",
            "sim (AWS) ms",
        ],
    );
    for &n in &b.clients {
        for s in Strategy::ALL {
            let cell = |cells: &[Cell]| BackoffResults::cell(cells, s, n).copied();
            let (Some(real), Some(ours), Some(aws)) =
                (cell(&b.real), cell(&b.sim_compressed), cell(&b.sim_aws))
            else {
                continue;
            };
            t.row([
                s.label().to_string(),
                n.to_string(),
                format!("{:.0}", real.calls),
                format!("{:.0}", real.time_ms),
                format!("{:.0}", ours.calls),
                format!("{:.0}", ours.time_ms),
                format!("{:.0}", aws.calls),
                format!("{:.0}", aws.time_ms),
            ]);
        }
    }
    r.table(t);

    let mark = |yes: bool| if yes { "yes" } else { "no" }.to_string();
    let mut t = Table::new(
        format!(
            "The AWS post's orderings at {n} clients: simulator (blog's parameters, ours) and this run"
        ),
        &["claim", "sim, blog's parameters", "sim, ours", "real run"],
    );
    for c in &CLAIMS {
        t.row([
            c.text.to_string(),
            mark(check(c, &b.sim_aws, n)),
            mark(check(c, &b.sim_compressed, n)),
            mark(check(c, &b.real, n)),
        ]);
    }
    r.table(t);

    let series = |f: fn(&Cell) -> f64| {
        Strategy::ALL.map(|s| {
            let pts: Vec<(f64, f64)> = b
                .real
                .iter()
                .filter(|c| c.strategy == s)
                .map(|c| (c.clients as f64, f(c)))
                .collect();
            (s.label(), pts)
        })
    };
    let mut calls = Chart::new(
        "backoff_calls",
        "Calls until every client has written (real Postgres)",
        "clients",
        "version-checked writes",
    );
    for (name, pts) in series(|c| c.calls) {
        calls = calls.series(name, pts);
    }
    r.chart(calls);
    let mut time = Chart::new(
        "backoff_time",
        "Time until every client has written (real Postgres)",
        "clients",
        "ms",
    )
    .log_y();
    for (name, pts) in series(|c| c.time_ms) {
        time = time.series(name, pts);
    }
    r.chart(time);

    let cfg = b.cfg;
    let hop_ms = cfg.wan.mean.as_secs_f64() * 1e3;
    let sql_vs_hops = if b.sql.p50_ms < 0.5 * hop_ms {
        format!(
            "small beside the {hop_ms:.0} ms hops, so contention rounds, not Postgres CPU, set \
             the time"
        )
    } else {
        format!(
            "NOT small beside the {hop_ms:.0} ms hops: the database (and this machine's load) \
             is part of the timing in this run, and the real race departs from the model by that \
             much"
        )
    };
    r.note(format!(
        "Backoff race, compressed: every statement crosses a simulated network hop each way \
         (|Normal({hop_ms:.0} ms, {:.1} ms)|, the simulator's 10 ms ÷ 5, slept on a \
         sub-millisecond timer thread, not tokio's 1 ms ticks), backoff base {} ms (÷ 5) and cap \
         {} ms (the blog's 2000 ms ÷ 20, so the no-jitter run stays around a second). The SQL \
         itself took p50 {:.2} ms / p99 {:.2} ms per statement ({} statements) — {sql_vs_hops}. \
         A losing write also waits for the winner's row lock before it finds the version \
         changed, a queue the model's instant writes do not have. Each cell is {} race(s); the \
         simulator averages {} runs.",
        cfg.wan.sd.as_secs_f64() * 1e3,
        cfg.base.as_millis(),
        cfg.cap.as_millis(),
        b.sql.p50_ms,
        b.sql.p99_ms,
        b.sql.count,
        b.real.first().map_or(1, |c| c.reps),
        b.sim_runs,
    ));
}

// ---------------------------------------------------------------------------------------
// Scenario 2: amplification
// ---------------------------------------------------------------------------------------

fn storms(r: &mut Report, shape: amplification::Shape, runs: &[StormRun]) {
    let after_start = shape.fault_end + (shape.duration - shape.fault_end) / 2;
    for run in runs {
        let name = run.strategy.name();
        r.finding(
            &format!("amplification_{name}_calls_per_request"),
            &format!(
                "{} — dependency calls per user request sent during the fault",
                run.strategy.label()
            ),
            run.calls_per_request(),
            "x",
        )
        .better(
            &format!("amplification_{name}_calls_per_request"),
            Better::Lower,
        );
        let observed = shape.duration - shape.fault_end;
        let after_samples = run
            .users
            .timeline
            .iter()
            .filter(|s| s.at >= shape.fault_end)
            .count() as u64;
        r.measured(
            &format!("recovery_s_{name}"),
            &match run.recovery {
                Some(_) => format!(
                    "{} — from the fault's end until users succeed ≥ 90 % again",
                    run.strategy.label()
                ),
                None => format!(
                    "{} — did NOT recover: users still failing {} after the fault (value = the \
                     window observed, a lower bound)",
                    run.strategy.label(),
                    s(observed)
                ),
            },
            run.recovery.unwrap_or(observed).as_secs_f64(),
            "s",
            after_samples,
        );
        r.flag(
            &format!("recovered_{name}"),
            &format!(
                "{} — recovered within the {} observed after the fault",
                run.strategy.label(),
                s(observed)
            ),
            run.recovery.is_some(),
        );
    }
    if let Some(three) = runs
        .iter()
        .find(|r| r.strategy == amplification::Strategy::ThreeLayers)
    {
        r.finding(
            "dependency_rps_after_fault_three_layers",
            "3 layers × 3 attempts — calls/s reaching the dependency in the last half of the \
             after-fault window",
            three.load(after_start, shape.duration),
            "calls/s",
        )
        .better("dependency_rps_after_fault_three_layers", Better::Lower);
        r.finding(
            "dependency_wasted_calls_three_layers",
            "3 layers × 3 attempts — calls the dependency finished after their caller had gone",
            three.dependency.wasted as f64,
            "count",
        )
        .better("dependency_wasted_calls_three_layers", Better::Lower);
    }

    let mut t = Table::new(
        format!(
            "Amplification — the dependency fails every call from {} to {}; users at {:.0}/s; \
             dependency capacity {:.0} calls/s",
            s(shape.fault_start),
            s(shape.fault_end),
            shape.rate,
            shape.healthy.capacity_per_s()
        ),
        &[
            "strategy",
            "calls/request in fault",
            "dependency calls/s before · during · late after",
            "calls sent by L1 · L2 · L3",
            "reached the dependency",
            "wasted at dependency",
            "users ok after fault",
            "recovered after",
        ],
    );
    for run in runs {
        let after: Vec<_> = run
            .users
            .timeline
            .iter()
            .filter(|x| x.at >= shape.fault_end)
            .collect();
        let ok = after
            .iter()
            .filter(|x| x.out == Some(crate::client::Served::Dependency))
            .count();
        t.row([
            run.strategy.label().to_string(),
            format!("{:.2}", run.calls_per_request()),
            format!(
                "{:.0} · {:.0} · {:.0}",
                run.load(Duration::ZERO, shape.fault_start),
                run.load(shape.fault_start, shape.fault_end),
                run.load(after_start, shape.duration)
            ),
            run.layer_calls
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" · "),
            run.dependency.arrivals.to_string(),
            run.dependency.wasted.to_string(),
            format!(
                "{:.0} % of {}",
                100.0 * ok as f64 / after.len().max(1) as f64,
                after.len()
            ),
            run.recovery
                .map_or_else(|| "not within the run".to_string(), s),
        ]);
    }
    r.table(t);

    let mut chart = Chart::new(
        "storm_load",
        &format!(
            "Calls/s reaching the dependency (fault {:.1}–{:.1} s)",
            shape.fault_start.as_secs_f64(),
            shape.fault_end.as_secs_f64()
        ),
        "seconds",
        "calls/s",
    )
    .log_y();
    for run in runs {
        chart = chart.series(
            run.strategy.label(),
            rate_series(&run.arrivals, shape.duration, Duration::from_millis(100)),
        );
    }
    r.chart(chart);
    r.note(
        "Amplification: a failing call holds a dependency worker as long as a good one (it \
         does the work, then fails), and a job whose caller timed out is still served — the \
         accept-queue-plus-worker-pool shape of most servers. Timeouts nest (L3 100 ms per \
         attempt, L2 500 ms, L1 2 s), so three layers of three attempts can reach 27 calls per \
         request. Calls per request are counted at the dependency by the x-request-id every \
         layer passes on, for the user requests sent during the fault, whenever the calls \
         arrived. 'Recovered' means every 250 ms bucket of users from then on succeeded ≥ 90 %.",
    );
    for run in runs {
        let sent = run.layer_calls.last().copied().unwrap_or(0);
        let lost = sent.saturating_sub(run.dependency.arrivals);
        if lost * 50 > sent {
            r.note(format!(
                "Amplification, {}: {lost} of the {sent} calls L3 sent never reached the \
                 dependency's handler before L3's 100 ms timeout fired — each timed-out HTTP/1 \
                 call closes its connection, so the storm is also a storm of new TCP connections, \
                 and this machine could not set them all up in time. Calls per request count \
                 only the calls that arrived.",
                run.strategy.label()
            ));
        }
        if let Some(w) = run
            .users
            .schedule
            .and_then(|x| x.warning(&format!("amplification, {}", run.strategy.label())))
        {
            r.note(w);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Scenario 3: timeouts and bulkheads
// ---------------------------------------------------------------------------------------

fn isolation(r: &mut Report, runs: &[IsolationRun]) {
    for run in runs {
        let (key, label) = match run.setup {
            Setup::Baseline => (
                "unrelated_p99_ms_baseline",
                "/unrelated p99 — healthy dependency",
            ),
            Setup::NoTimeout => (
                "unrelated_p99_ms_no_timeout",
                "/unrelated p99 — dependency at 1 s, no timeout, 16 shared workers",
            ),
            Setup::TimeoutBulkhead => (
                "unrelated_p99_ms_timeout_bulkhead",
                "/unrelated p99 — dependency at 1 s, 100 ms timeout + bulkhead of 4",
            ),
        };
        r.p99(key, label, &run.unrelated);
    }
    if let Some(tb) = runs.iter().find(|r| r.setup == Setup::TimeoutBulkhead) {
        r.finding(
            "work_shed_timeout_bulkhead",
            "/work calls the bulkhead refused at once (timeout + bulkhead)",
            tb.shed as f64,
            "count",
        );
    }
    let mut t = Table::new(
        format!(
            "Timeouts and bulkheads — {} workers shared by /work and /unrelated; the dependency's \
             latency spikes to {}",
            bulkhead::WORKERS,
            s(bulkhead::SPIKE)
        ),
        &[
            "setup",
            "/unrelated p50 ms",
            "/unrelated p99 ms (n)",
            "/work ok · failed",
            "/work p99 ms",
            "shed by bulkhead",
        ],
    );
    for run in runs {
        t.row([
            run.setup.label().to_string(),
            format!("{:.2}", run.unrelated.p50_ms),
            format!("{:.2} ({})", run.unrelated.p99_ms, run.unrelated.count),
            format!("{} · {}", run.work.summary.count, run.work.summary.errors),
            format!("{:.1}", run.work.summary.p99_ms),
            run.shed.to_string(),
        ]);
    }
    r.table(t);
    for run in runs {
        if let Some(e) = &run.unrelated_first_error {
            r.note(format!(
                "/unrelated ({}): {} requests failed; first: {e}",
                run.setup.label(),
                run.unrelated.errors
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Scenario 4: circuit breaker
// ---------------------------------------------------------------------------------------

fn breaker(r: &mut Report, shape: breaker_scenario::Shape, good: &BreakerRun, bad: &BreakerRun) {
    r.finding(
        "breaker_calls_while_open",
        "breaker — calls that reached the failing dependency while the breaker was open",
        good.calls_while_open as f64,
        "count",
    )
    .better("breaker_calls_while_open", Better::Lower);
    r.p99(
        "breaker_fast_fail_p99_ms",
        "breaker — users' latency when the open breaker answered the fallback, p99",
        &good.fast_fail,
    );
    let observed = shape.duration - shape.fault_end;
    let detected = good.recovery_detected(shape.fault_end);
    r.measured(
        "breaker_recovery_detected_ms",
        &match detected {
            Some(_) => "breaker — from the dependency's recovery until the breaker closed".into(),
            None => format!(
                "breaker — did NOT close within the {} observed after the fault (a lower bound)",
                s(observed)
            ),
        },
        detected.unwrap_or(observed).as_secs_f64() * 1000.0,
        "ms",
        1,
    );
    r.finding(
        "fallback_responses",
        "breaker — fallback answers served (breaker open, or the call failed)",
        good.fallbacks as f64,
        "count",
    );
    if let Some(opened) = good.opened_at() {
        r.measured(
            "breaker_opened_after_ms",
            "breaker — from the fault's start until the breaker opened",
            opened.saturating_sub(shape.fault_start).as_secs_f64() * 1000.0,
            "ms",
            1,
        );
    }
    r.finding(
        "breaker_dependency_calls_during_fault",
        "breaker — calls that reached the dependency during the fault",
        good.calls_in_fault as f64,
        "count",
    )
    .better("breaker_dependency_calls_during_fault", Better::Lower);
    r.finding(
        "breaker_requests_during_fault",
        "breaker — user requests during the fault",
        good.requests_in_fault as f64,
        "count",
    );
    r.flag(
        "misset_breaker_opened",
        "mis-set breaker (1 s time window, minimum 100 calls at 50 calls/s) — opened at all",
        bad.opened_at().is_some(),
    );
    r.finding(
        "misset_breaker_dependency_calls_during_fault",
        "mis-set breaker — calls that reached the dependency during the fault",
        bad.calls_in_fault as f64,
        "count",
    )
    .better(
        "misset_breaker_dependency_calls_during_fault",
        Better::Lower,
    );

    let mut t = Table::new(
        format!(
            "Circuit breaker — the dependency fails every call from {} to {}; users at {:.0}/s",
            s(shape.fault_start),
            s(shape.fault_end),
            shape.rate
        ),
        &[
            "breaker",
            "opened after",
            "dependency calls / user requests in fault",
            "calls while open",
            "fast-fail p99 ms (n)",
            "closed after recovery",
            "fallbacks",
        ],
    );
    for (name, run) in [
        ("resilience4j defaults, wait 1 s", good),
        ("mis-set: 1 s time window, min 100 calls", bad),
    ] {
        t.row([
            name.to_string(),
            run.opened_at()
                .map_or("never".into(), |t| s(t.saturating_sub(shape.fault_start))),
            format!("{} / {}", run.calls_in_fault, run.requests_in_fault),
            run.calls_while_open.to_string(),
            format!("{:.2} ({})", run.fast_fail.p99_ms, run.fast_fail.count),
            run.recovery_detected(shape.fault_end)
                .map_or("—".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3)),
            run.fallbacks.to_string(),
        ]);
    }
    r.table(t);

    let mut t = Table::new(
        "Breaker state changes (resilience4j defaults, wait 1 s)",
        &["at", "state"],
    );
    for (at, state) in &good.transitions {
        t.row([s(*at), state.as_str().to_string()]);
    }
    r.table(t);

    let level = |st: State| match st {
        State::Closed => 0.0,
        State::HalfOpen => 1.0,
        State::Open => 2.0,
    };
    let steps = |run: &BreakerRun| {
        let mut pts = Vec::new();
        let mut last = 0.0;
        for (at, st) in &run.transitions {
            let x = at.as_secs_f64();
            pts.push((x, last));
            last = level(*st);
            pts.push((x, last));
        }
        pts.push((shape.duration.as_secs_f64(), last));
        pts
    };
    let (fs, fe) = (
        shape.fault_start.as_secs_f64(),
        shape.fault_end.as_secs_f64(),
    );
    r.chart(
        Chart::new(
            "breaker_state",
            "Breaker state over time (0 closed · 1 half-open · 2 open)",
            "seconds",
            "state",
        )
        .series("resilience4j defaults, wait 1 s", steps(good))
        .series("mis-set: 1 s time window", steps(bad))
        .series(
            "dependency failing (2 = yes)",
            vec![
                (0.0, 0.0),
                (fs, 0.0),
                (fs, 2.0),
                (fe, 2.0),
                (fe, 0.0),
                (shape.duration.as_secs_f64(), 0.0),
            ],
        ),
    );
    r.note(format!(
        "Circuit breaker: resilience4j's defaults (failureRateThreshold 50 %, \
         minimumNumberOfCalls 100, COUNT_BASED slidingWindowSize 100, \
         permittedNumberOfCallsInHalfOpenState 10) with waitDurationInOpenState scaled 60 s → \
         {} (the counts need no scaling at {:.0} calls/s). The mis-set breaker has a TIME_BASED \
         window of 1 s and the same minimum of 100 calls: at {:.0} calls/s its window never \
         holds 100, so the failure rate is never judged. 'Calls while open' counts arrivals at \
         the dependency between an open and the next state change, including any call already \
         on the wire when the breaker opened.",
        s(breaker_scenario::WAIT_IN_OPEN),
        shape.rate,
        shape.rate
    ));
    for (name, run) in [("breaker", good), ("mis-set breaker", bad)] {
        if let Some(w) = run.users.schedule.and_then(|x| x.warning(name)) {
            r.note(w);
        }
    }
}

fn sentence(r: &mut Report, m: &Measured) {
    let find = |st| m.storms.iter().find(|x| x.strategy == st);
    let (Some(three), Some(budget)) = (
        find(amplification::Strategy::ThreeLayers),
        find(amplification::Strategy::Budget),
    ) else {
        return;
    };
    let fault = m.storm_shape.fault_end - m.storm_shape.fault_start;
    let three_outcome = match three.recovery {
        Some(d) => format!("recovered {} after the fault ended", s(d)),
        None => format!(
            "was still drowning {} after the fault ended",
            s(m.storm_shape.duration - m.storm_shape.fault_end)
        ),
    };
    let budget_outcome = match budget.recovery {
        Some(d) => format!("recovered in {}", s(d)),
        None => "did not recover either".into(),
    };
    r.sentence(format!(
        "When the dependency failed for {}, three layers that each retried three times sent it \
         {:.1} calls per user request and it {three_outcome}; retrying at one layer within a 10 % \
         budget sent {:.2} calls per request and {budget_outcome}, and a breaker with \
         resilience4j's defaults let {} calls through while open and answered the fallback in \
         {:.1} ms at p99.",
        s(fault),
        three.calls_per_request(),
        budget.calls_per_request(),
        m.breaker.calls_while_open,
        m.breaker.fast_fail.p99_ms,
    ));
}
