//! Scenario 4 — the circuit breaker: the dependency fails every call for a window; one
//! service layer calls it through a breaker and answers a fallback when the call fails or
//! the breaker refuses it.
//!
//! The reference configuration is resilience4j's defaults ([`BreakerConfig::RESILIENCE4J`]):
//! failure rate 50 %, minimum 100 calls, a count-based window of 100 calls, 10 probes in
//! half-open — unchanged, because counts do not need compressing at 50 requests/s — and
//! `waitDurationInOpenState` scaled from 60 s to 1 s, because the run observes seconds, not
//! minutes. Then the same fault against a mis-set breaker: a time-based window of 1 s with
//! the same minimum of 100 calls, on an endpoint doing 50 calls a second.

use std::time::{Duration, Instant};

use labkit::measure::{LatencySummary, LoadResult, OpenLoop, Recorder, open_loop};

use crate::app::Resilience;
use crate::breaker::{BreakerConfig, State, Window};
use crate::client::{self, Served};
use crate::clock::Clock;
use crate::dependency::{FaultPatch, Faults};
use crate::scenarios::{count_between, since};
use crate::topology::Chain;

/// `waitDurationInOpenState`, compressed 60×.
pub const WAIT_IN_OPEN: Duration = Duration::from_secs(1);

pub fn reference() -> BreakerConfig {
    BreakerConfig::RESILIENCE4J.wait(WAIT_IN_OPEN)
}

/// Never opens at 50 calls/s: the 1 s window never holds the 100 calls it waits for.
pub fn mis_set() -> BreakerConfig {
    reference().window(Window::TimeBased(Duration::from_secs(1)))
}

#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub rate: f64,
    pub duration: Duration,
    pub fault_start: Duration,
    pub fault_end: Duration,
    pub healthy: Faults,
}

impl Shape {
    /// The fault covers 1/6 – 4/6 of the phase.
    pub fn new(rate: f64, duration: Duration) -> Self {
        let latency_ms = 20;
        let capacity = ((rate * latency_ms as f64 / 1000.0) * 4.0).ceil().max(2.0) as usize;
        Self {
            rate,
            duration,
            fault_start: duration.mul_f64(1.0 / 6.0),
            fault_end: duration.mul_f64(4.0 / 6.0),
            healthy: Faults {
                capacity,
                latency_ms,
                error_rate: 0.0,
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct BreakerRun {
    pub config: BreakerConfig,
    pub users: LoadResult<Served>,
    /// State changes, from the phase start.
    pub transitions: Vec<(Duration, State)>,
    pub arrivals: Vec<Duration>,
    /// Calls that reached the dependency while the breaker was open.
    pub calls_while_open: u64,
    pub calls_in_fault: u64,
    pub requests_in_fault: u64,
    /// Latency users saw when the open breaker answered the fallback.
    pub fast_fail: LatencySummary,
    pub fallbacks: u64,
}

impl BreakerRun {
    pub fn opened_at(&self) -> Option<Duration> {
        self.transitions
            .iter()
            .find(|(_, s)| *s == State::Open)
            .map(|(t, _)| *t)
    }

    /// The first close after the fault ended, measured from the fault's end.
    pub fn recovery_detected(&self, fault_end: Duration) -> Option<Duration> {
        self.transitions
            .iter()
            .find(|(t, s)| *s == State::Closed && *t >= fault_end)
            .map(|(t, _)| *t - fault_end)
    }
}

pub async fn run(shape: Shape, seed: u64) -> anyhow::Result<(BreakerRun, BreakerRun)> {
    let good = trip(reference(), "resilience4j defaults", shape, seed).await?;
    let bad = trip(mis_set(), "mis-set: 1 s time window", shape, seed).await?;
    Ok((good, bad))
}

async fn trip(
    config: BreakerConfig,
    label: &str,
    shape: Shape,
    seed: u64,
) -> anyhow::Result<BreakerRun> {
    let layer = Resilience {
        attempts: 1,
        attempt_timeout: Some(Duration::from_millis(100)),
        retry_budget: false,
        bulkhead: None,
        breaker: Some(config),
        fallback: true,
        workers: 1024,
    };
    let chain = Chain::spawn(shape.healthy, seed, &[layer], Clock::system()).await?;
    let breaker = chain.front().app.breaker.clone().expect("configured");
    let dep = chain.dependency.dep.clone();
    let (users, url) = (labkit::http::client(), chain.url("/work"));
    let t0 = Instant::now();
    let fault = async {
        tokio::time::sleep_until((t0 + shape.fault_start).into()).await;
        let _ = dep.set(FaultPatch {
            error_rate: Some(1.0),
            ..FaultPatch::default()
        });
        tokio::time::sleep_until((t0 + shape.fault_end).into()).await;
        dep.heal();
    };
    let load = OpenLoop::new(shape.rate, shape.duration)
        .max_in_flight(100_000)
        .with_timeline()
        .label(format!("circuit breaker: {label}"));
    let (users, ()) = tokio::join!(
        open_loop(load, move |call| {
            let (users, url) = (users.clone(), url.clone());
            async move { client::get(&users, &url, call.seq, Duration::from_secs(5)).await }
        }),
        fault
    );
    let transitions: Vec<(Duration, State)> = breaker
        .stats()
        .transitions
        .iter()
        .map(|t| (t.at.saturating_duration_since(t0), t.to))
        .collect();
    let arrivals = since(t0, &dep.arrivals());
    let end = shape.duration + Duration::from_secs(60);
    let calls_while_open = transitions
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| *s == State::Open)
        .map(|(i, (from, _))| {
            let to = transitions.get(i + 1).map_or(end, |(t, _)| *t);
            count_between(&arrivals, *from, to)
        })
        .sum();
    let mut fast = Recorder::new();
    let mut fallbacks = 0;
    for s in &users.timeline {
        match s.out {
            Some(Served::FallbackCircuitOpen) => {
                fast.record(s.latency);
                fallbacks += 1;
            }
            Some(Served::FallbackFailed) => fallbacks += 1,
            _ => {}
        }
    }
    Ok(BreakerRun {
        config,
        calls_in_fault: count_between(&arrivals, shape.fault_start, shape.fault_end),
        requests_in_fault: users
            .timeline
            .iter()
            .filter(|s| s.at >= shape.fault_start && s.at < shape.fault_end)
            .count() as u64,
        fast_fail: fast.summary(shape.duration),
        transitions,
        arrivals,
        calls_while_open,
        fallbacks,
        users,
    })
}
