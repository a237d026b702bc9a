//! Redis down mid-run: fail-open versus fail-closed.
//!
//! A Redis of the scenario's own (`LabCtx::dedicated_redis`: a process on the local backend,
//! a container on docker; the run's shared Redis is still needed by the harness) backs two
//! app instances running GCRA: one fails open, one fails closed. The same traffic goes to
//! both, on a manual clock, one request at a time; halfway through, the Redis is stopped.
//! Counted per phase: 200s, 429s and 503s, the decision latency while Redis is gone (a limiter
//! that waits for a dead Redis would turn its outage into the API's), and whether the servers
//! still answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use labkit::backend::local::RedisOptions;
use labkit::ctx::DedicatedRedis;
use labkit::http::Conn;
use labkit::measure::LatencySummary;
use labkit::{ExtraError, LabCtx, Recorder};

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

/// Start the scenario's own Redis and run the outage on it; `Ok(Err(why))` when this backend
/// cannot give the lab a Redis to stop (the env backend's one Redis belongs to the user).
pub async fn run(
    ctx: &LabCtx,
    policy: Policy,
    per_phase: u64,
    clients: u64,
) -> anyhow::Result<Result<OutageResult, String>> {
    let server = match ctx.dedicated_redis(&RedisOptions::default()).await {
        Ok(s) => s,
        Err(ExtraError::Unavailable(why)) => return Ok(Err(why)),
        Err(e) => return Err(e.into()),
    };
    Ok(Ok(
        redis_goes_down(server, policy, per_phase, clients).await?
    ))
}

/// Run the outage scenario on `redis`: `per_phase` requests with Redis up, then `per_phase`
/// with it stopped, from `clients` API keys at 3× their rate — enough to exhaust the burst,
/// so the phase with Redis up shows the 429s that fail-open stops sending once Redis is gone.
pub async fn redis_goes_down(
    mut redis: DedicatedRedis,
    policy: Policy,
    per_phase: u64,
    clients: u64,
) -> anyhow::Result<OutageResult> {
    let client = redis.client();
    let clock = ManualClock::at(EPOCH_MS);

    let mut instances = Vec::new();
    for mode in [FailMode::Open, FailMode::Closed] {
        // The serving deadline (250 ms), not the measurement one: how fast a request fails
        // over while Redis is gone is part of what this scenario shows.
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
        let server = labkit::http::spawn(app).await?;
        let conn = Conn::new(server.addr);
        instances.push((mode, limits, server, conn));
    }

    // All clients together, each at 3× its rate: 3 × quota × clients per period.
    let step = (policy.period_ms() / (3 * policy.quota() as u64 * clients)).max(1);
    let mut phases = Vec::new();
    let mut seq = 0u64;
    for redis_up in [true, false] {
        if !redis_up {
            redis.stop().await;
        }
        let mut rows: Vec<(PhaseRow, Recorder)> = instances
            .iter()
            .map(|(mode, ..)| {
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
            for ((.., conn), (row, rec)) in instances.iter_mut().zip(rows.iter_mut()) {
                let t0 = Instant::now();
                let reply = conn
                    .send(Method::GET, "/v1/quote", &[("x-api-key", &key)], None)
                    .await?;
                rec.record(t0.elapsed());
                row.sent += 1;
                match reply.status {
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
    for (mode, limits, server, mut conn) in instances {
        servers_healthy &= conn.get("/healthz").await?.status == StatusCode::OK;
        stats.push((mode, limits.stats.snapshot()));
        server.stop().await;
    }
    drop(redis);
    Ok(OutageResult {
        phases,
        stats,
        servers_healthy,
    })
}
