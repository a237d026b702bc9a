//! Scenario 2 — amplification: the dependency fails for a window while users keep coming
//! (open loop). Three strategies, each on a fresh chain of three layers:
//!
//! - **three layers × 3 attempts**: every layer retries immediately (the war story);
//! - **one layer × 3 attempts**: only the layer next to the dependency retries;
//! - **one layer within a budget**: the same, but retries capped at 10 % of requests.
//!
//! Timeouts nest the way a careful team sets them (each layer waits longer than the retries
//! below it take: L3 100 ms per attempt, L2 500 ms, L1 2 s), so the retries really
//! multiply: 3 × 3 × 3 = 27 calls per user request at worst. The dependency is sized at 4×
//! the users' rate: one layer's 3× fits in it, 27× does not — and once its queue is longer
//! than L3's timeout, every call it finishes is wasted and the storm feeds itself after the
//! fault is over.

use std::time::{Duration, Instant};

use labkit::measure::{LoadResult, OpenLoop, open_loop};

use crate::app::Resilience;
use crate::client::{self, Served};
use crate::clock::Clock;
use crate::dependency::{FaultPatch, Faults, Stats};
use crate::scenarios::{count_between, ids_due, since};
use crate::topology::Chain;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    ThreeLayers,
    OneLayer,
    Budget,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [Self::ThreeLayers, Self::OneLayer, Self::Budget];

    /// The key fragment: `amplification_<name>_calls_per_request`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ThreeLayers => "three_layers",
            Self::OneLayer => "one_layer",
            Self::Budget => "budget",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::ThreeLayers => "3 layers × 3 attempts",
            Self::OneLayer => "1 layer × 3 attempts",
            Self::Budget => "1 layer × 3 attempts, 10 % budget",
        }
    }

    /// L1, L2, L3 (L3 calls the dependency).
    pub fn layers(self) -> [Resilience; 3] {
        let (l1, l2, l3) = (
            Duration::from_millis(2000),
            Duration::from_millis(500),
            Duration::from_millis(100),
        );
        match self {
            Self::ThreeLayers => [
                Resilience::retrying(3, l1),
                Resilience::retrying(3, l2),
                Resilience::retrying(3, l3),
            ],
            Self::OneLayer => [
                Resilience::pass_through(l1),
                Resilience::pass_through(l2),
                Resilience::retrying(3, l3),
            ],
            Self::Budget => [
                Resilience::pass_through(l1),
                Resilience::pass_through(l2),
                Resilience::retrying(3, l3).with_budget(),
            ],
        }
    }
}

/// The shape of one storm phase.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Users per second (open loop).
    pub rate: f64,
    pub duration: Duration,
    pub fault_start: Duration,
    pub fault_end: Duration,
    pub healthy: Faults,
    /// A user gives up after this long.
    pub user_timeout: Duration,
}

impl Shape {
    /// The fault covers 20 %–45 % of the phase; the dependency has 4× the users' rate.
    pub fn new(rate: f64, duration: Duration) -> Self {
        let latency_ms = 20;
        let capacity = ((rate * latency_ms as f64 / 1000.0) * 4.0).ceil().max(2.0) as usize;
        Self {
            rate,
            duration,
            fault_start: duration.mul_f64(0.20),
            fault_end: duration.mul_f64(0.45),
            healthy: Faults {
                capacity,
                latency_ms,
                error_rate: 0.0,
            },
            // Longer than L1's three attempts of 2 s: the user sees the whole storm.
            user_timeout: Duration::from_secs(7),
        }
    }
}

/// One strategy's storm.
#[derive(Debug, Clone)]
pub struct StormRun {
    pub strategy: Strategy,
    pub users: LoadResult<Served>,
    /// When each call reached the dependency, from the phase start.
    pub arrivals: Vec<Duration>,
    /// User requests due during the fault, and the dependency calls made for them (counted
    /// by the `x-request-id` every layer passes on, whenever they arrived).
    pub requests_in_fault: u64,
    pub calls_for_fault_requests: u64,
    /// Calls each layer sent downstream (L1, L2, L3).
    pub layer_calls: Vec<u64>,
    pub dependency: Stats,
    /// From the fault's end until user success stayed ≥ 90 % (250 ms buckets); `None` if
    /// it never did within the phase.
    pub recovery: Option<Duration>,
}

impl StormRun {
    pub fn calls_per_request(&self) -> f64 {
        self.calls_for_fault_requests as f64 / self.requests_in_fault.max(1) as f64
    }

    /// Calls per second reaching the dependency in `[from, to)`.
    pub fn load(&self, from: Duration, to: Duration) -> f64 {
        count_between(&self.arrivals, from, to) as f64 / (to - from).as_secs_f64().max(1e-9)
    }
}

pub const RECOVERY_BUCKET: Duration = Duration::from_millis(250);
pub const RECOVERED_SUCCESS: f64 = 0.90;

pub async fn run(shape: Shape, seed: u64) -> anyhow::Result<Vec<StormRun>> {
    let mut runs = Vec::new();
    for strategy in Strategy::ALL {
        runs.push(storm(strategy, shape, seed).await?);
    }
    Ok(runs)
}

/// One phase: users at a steady rate; the dependency fails (every call 503s after its
/// work) from `fault_start` to `fault_end`, then is healthy again.
pub async fn storm(strategy: Strategy, shape: Shape, seed: u64) -> anyhow::Result<StormRun> {
    let chain = Chain::spawn(shape.healthy, seed, &strategy.layers(), Clock::system()).await?;
    let url = chain.url("/work");
    let users = labkit::http::client();
    let load = OpenLoop::new(shape.rate, shape.duration)
        .max_in_flight(100_000)
        .with_timeline()
        .label(format!("amplification: {}", strategy.label()));
    let dep = chain.dependency.dep.clone();
    let t0 = Instant::now();
    // The fault script runs beside the users, in this task (nothing outlives the phase).
    let fault = async {
        tokio::time::sleep_until((t0 + shape.fault_start).into()).await;
        let _ = dep.set(FaultPatch {
            error_rate: Some(1.0),
            ..FaultPatch::default()
        });
        tokio::time::sleep_until((t0 + shape.fault_end).into()).await;
        dep.heal();
    };
    let (users, ()) = tokio::join!(
        open_loop(load, move |call| {
            let (users, url) = (users.clone(), url.clone());
            async move { client::get(&users, &url, call.seq, shape.user_timeout).await }
        }),
        fault
    );
    let arrivals = since(t0, &dep.arrivals());
    let in_fault = ids_due(shape.rate, shape.fault_start, shape.fault_end);
    let requests_in_fault = in_fault.end - in_fault.start;
    let calls_for_fault_requests = dep.calls_for(in_fault);
    let recovery = recovery(&users, shape);
    Ok(StormRun {
        strategy,
        layer_calls: chain
            .layers
            .iter()
            .map(|l| {
                l.app
                    .counters
                    .downstream_calls
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .collect(),
        dependency: dep.stats(),
        users,
        arrivals,
        requests_in_fault,
        calls_for_fault_requests,
        recovery,
    })
}

/// User success rate per bucket from the fault's end: the first bucket from which every
/// later bucket succeeds ≥ 90 %.
fn recovery(users: &LoadResult<Served>, shape: Shape) -> Option<Duration> {
    let after = shape.duration.saturating_sub(shape.fault_end);
    let n = (after.as_secs_f64() / RECOVERY_BUCKET.as_secs_f64()).floor() as usize;
    if n == 0 {
        return None;
    }
    let mut ok = vec![0u64; n];
    let mut all = vec![0u64; n];
    for s in &users.timeline {
        let Some(rel) = s.at.checked_sub(shape.fault_end) else {
            continue;
        };
        let i = (rel.as_secs_f64() / RECOVERY_BUCKET.as_secs_f64()) as usize;
        if i < n {
            all[i] += 1;
            ok[i] += u64::from(s.out == Some(Served::Dependency));
        }
    }
    let good = |i: usize| all[i] > 0 && ok[i] as f64 >= RECOVERED_SUCCESS * all[i] as f64;
    let mut first_good = None;
    for i in (0..n).rev() {
        if good(i) {
            first_good = Some(i);
        } else {
            break;
        }
    }
    first_good.map(|i| RECOVERY_BUCKET * i as u32)
}
