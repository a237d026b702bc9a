//! Scenario 3 — timeouts and bulkheads: the dependency's latency spikes from 20 ms to 1 s.
//! The service has 16 workers shared by `/work` (calls the dependency) and `/unrelated`
//! (answers from memory). Users call both, open loop, at the same rate.
//!
//! - **no timeout**: each `/work` holds a worker for the whole second; at 50 requests/s
//!   that is 50 workers wanted of 16, the pool fills, and `/unrelated` requests queue behind
//!   calls they have nothing to do with.
//! - **timeout + bulkhead**: 100 ms per call, and at most 4 calls to the dependency at once
//!   (the fifth is refused at once): `/work` can hold at most 4 workers for at most 100 ms,
//!   and `/unrelated` keeps the rest.
//!
//! The dependency's capacity is wide here (1024 workers): only its latency changes.

use std::time::Duration;

use labkit::measure::{LatencySummary, LoadResult, OpenLoop, open_loop};

use crate::app::Resilience;
use crate::client::{self, Served, UserError};
use crate::clock::Clock;
use crate::dependency::{FaultPatch, Faults};
use crate::topology::Chain;

pub const WORKERS: usize = 16;
pub const BULKHEAD: usize = 4;
pub const SPIKE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Healthy dependency: what `/unrelated` normally costs.
    Baseline,
    NoTimeout,
    TimeoutBulkhead,
}

impl Setup {
    pub const ALL: [Setup; 3] = [Self::Baseline, Self::NoTimeout, Self::TimeoutBulkhead];

    pub fn label(self) -> &'static str {
        match self {
            Self::Baseline => "healthy dependency",
            Self::NoTimeout => "latency spike, no timeout, shared workers",
            Self::TimeoutBulkhead => "latency spike, 100 ms timeout + bulkhead of 4",
        }
    }

    pub fn resilience(self) -> Resilience {
        let base = Resilience {
            attempts: 1,
            attempt_timeout: None,
            retry_budget: false,
            bulkhead: None,
            breaker: None,
            fallback: false,
            workers: WORKERS,
        };
        match self {
            Self::Baseline | Self::NoTimeout => base,
            Self::TimeoutBulkhead => Resilience {
                attempt_timeout: Some(Duration::from_millis(100)),
                bulkhead: Some(BULKHEAD),
                ..base
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct IsolationRun {
    pub setup: Setup,
    pub unrelated: LatencySummary,
    pub unrelated_first_error: Option<String>,
    pub work: LoadResult<Served>,
    /// `/work` calls refused by the bulkhead.
    pub shed: u64,
}

pub async fn run(rate: f64, duration: Duration, seed: u64) -> anyhow::Result<Vec<IsolationRun>> {
    let mut runs = Vec::new();
    for setup in Setup::ALL {
        runs.push(isolate(setup, rate, duration, seed).await?);
    }
    Ok(runs)
}

async fn isolate(
    setup: Setup,
    rate: f64,
    duration: Duration,
    seed: u64,
) -> anyhow::Result<IsolationRun> {
    let healthy = Faults {
        capacity: 1024,
        latency_ms: 20,
        error_rate: 0.0,
    };
    let chain = Chain::spawn(healthy, seed, &[setup.resilience()], Clock::system()).await?;
    if setup != Setup::Baseline {
        chain.dependency.dep.set(FaultPatch {
            latency_ms: Some(SPIKE.as_millis() as u64),
            ..FaultPatch::default()
        })?;
    }
    let users = labkit::http::client();
    let (work_url, unrelated_url) = (chain.url("/work"), chain.url("/unrelated"));
    // A /work user gives up after 2 s (and so frees its worker); /unrelated users wait, so
    // every one of their latencies is measured.
    let work = open_loop(
        OpenLoop::new(rate, duration)
            .max_in_flight(100_000)
            .label(format!("bulkhead: /work, {}", setup.label())),
        {
            let (users, url) = (users.clone(), work_url);
            move |call| {
                let (users, url) = (users.clone(), url.clone());
                async move { client::get(&users, &url, call.seq, Duration::from_secs(2)).await }
            }
        },
    );
    let unrelated = open_loop(
        OpenLoop::new(rate, duration)
            .max_in_flight(100_000)
            .label(format!("bulkhead: /unrelated, {}", setup.label())),
        move |call| {
            let (users, url) = (users.clone(), unrelated_url.clone());
            async move {
                client::get(&users, &url, call.seq, Duration::from_secs(30))
                    .await
                    .map(|_| ())
                    .map_err(|e: UserError| e)
            }
        },
    );
    let (work, unrelated) = tokio::join!(work, unrelated);
    let shed = chain
        .front()
        .app
        .counters
        .shed
        .load(std::sync::atomic::Ordering::Relaxed);
    Ok(IsolationRun {
        setup,
        unrelated: unrelated.summary,
        unrelated_first_error: unrelated.first_error,
        work,
        shed,
    })
}
