//! Redis down mid-run: fail-open versus fail-closed.
//!
//! A dedicated throwaway Redis (not the run's shared one, which other scenarios and the
//! harness still need) backs two app instances running GCRA: one fails open, one fails
//! closed. The same traffic goes to both; halfway through, the Redis process is stopped.
//! Counted per phase: 200s, 429s and 503s, the decision latency while Redis is gone (a limiter
//! that waits for a dead Redis would turn its outage into the API's), and whether the servers
//! still answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use labkit::Recorder;
use labkit::backend::local::{LocalBins, LocalRedis, RedisOptions};
use labkit::measure::LatencySummary;
use reqwest::StatusCode;

use crate::api::{AppState, router};
use crate::clock::ManualClock;
use crate::limiter::{self, Algorithm, RedisStore};
use crate::middleware::{FailMode, Limits, StatsSnapshot};
use crate::policy::Policy;
use crate::scenario::accuracy::EPOCH_MS;

/// What one instance answered in one phase.
#[derive(Debug, Clone)]
pub struct PhaseRow {
    pub mode: FailMode,
    pub redis_up: bool,
    pub sent: u64,
    pub ok: u64,
    pub rate_limited: u64,
    pub unavailable: u64,
    pub latency: LatencySummary,
}

#[derive(Debug, Clone)]
pub struct OutageResult {
    pub phases: Vec<PhaseRow>,
    /// The layer's own counters per mode, after the run.
    pub stats: Vec<(FailMode, StatsSnapshot)>,
    /// Both servers still answered `/healthz` with 200 after the outage.
    pub servers_healthy: bool,
}

pub enum Outage {
    Measured(OutageResult),
    /// No local `redis-server` to stop (e.g. an `env` backend on another machine).
    Skipped(String),
}

/// Run the outage scenario: `per_phase` requests with Redis up, then `per_phase` with it down,
/// from `clients` API keys at 3× their rate — enough to exhaust the burst, so the phase with
/// Redis up shows the 429s that fail-open stops sending once Redis is gone.
pub async fn redis_goes_down(
    policy: Policy,
    per_phase: u64,
    clients: u64,
) -> anyhow::Result<Outage> {
    let bins = match LocalBins::find() {
        Ok(b) => b,
        Err(e) => return Ok(Outage::Skipped(e)),
    };
    let mut redis = LocalRedis::start(&bins, &RedisOptions::default()).await?;
    let client = redis::Client::open(redis.url())?;
    let clock = ManualClock::at(EPOCH_MS);

    let mut instances = Vec::new();
    for mode in [FailMode::Open, FailMode::Closed] {
        let store = RedisStore::connect(client.clone(), format!("outage:{mode}:")).await?;
        let limits = Limits::new(
            limiter::build(Algorithm::Gcra, policy, &store),
            Arc::new(clock.clone()),
            mode,
        );
        let app = router(AppState {
            instance: format!("fail-{mode}"),
            limits: Some(limits.clone()),
        });
        instances.push((mode, limits, labkit::http::spawn(app).await?));
    }

    let http = labkit::http::client();
    // All clients together, each at 3× its rate: 3 × quota × clients per period.
    let step = (policy.period_ms() / (3 * policy.quota() as u64 * clients)).max(1);
    let mut phases = Vec::new();
    let mut seq = 0u64;
    for redis_up in [true, false] {
        if !redis_up {
            redis.stop();
        }
        let mut rows: Vec<(PhaseRow, Recorder)> = instances
            .iter()
            .map(|(mode, _, _)| {
                let row = PhaseRow {
                    mode: *mode,
                    redis_up,
                    sent: 0,
                    ok: 0,
                    rate_limited: 0,
                    unavailable: 0,
                    latency: Recorder::new().summary(Duration::ZERO),
                };
                (row, Recorder::new())
            })
            .collect();
        let started = Instant::now();
        for _ in 0..per_phase {
            clock.advance(step);
            let key = format!("outage-client-{:03}", seq % clients);
            seq += 1;
            for ((_, _, server), (row, rec)) in instances.iter().zip(rows.iter_mut()) {
                let t0 = Instant::now();
                let status = http
                    .get(server.url("/v1/quote"))
                    .header("x-api-key", &key)
                    .send()
                    .await?
                    .status();
                rec.record(t0.elapsed());
                row.sent += 1;
                match status {
                    StatusCode::OK => row.ok += 1,
                    StatusCode::TOO_MANY_REQUESTS => row.rate_limited += 1,
                    StatusCode::SERVICE_UNAVAILABLE => row.unavailable += 1,
                    other => anyhow::bail!("fail-{}: unexpected status {other}", row.mode),
                }
            }
        }
        let elapsed = started.elapsed();
        for (mut row, rec) in rows {
            row.latency = rec.summary(elapsed);
            phases.push(row);
        }
    }

    let mut servers_healthy = true;
    let mut stats = Vec::new();
    for (mode, limits, server) in instances {
        let health = http.get(server.url("/healthz")).send().await?;
        servers_healthy &= health.status() == StatusCode::OK;
        stats.push((mode, limits.stats.snapshot()));
        server.stop().await;
    }
    drop(redis);
    Ok(Outage::Measured(OutageResult {
        phases,
        stats,
        servers_healthy,
    }))
}
