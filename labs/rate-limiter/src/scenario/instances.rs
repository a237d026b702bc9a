//! Instances: one client, spread by a round-robin load balancer over 4 app instances.
//!
//! Each instance is a real HTTP server with its own limiter object and its own Redis
//! connection, as separate processes would have. The shared algorithms keep their state in
//! the one Redis, so 4 instances admit what 1 does; governor keeps it in each process, so
//! each instance hands out a full allowance and the client gets about 4×.
//!
//! Time is a [`ManualClock`] shared by the instances (the lab's stand-in for NTP-synced hosts),
//! advanced before each request; the requests go out one at a time, so the run is exact.
//! Each instance gets one keep-alive connection (`labkit::http::Conn`), as a load balancer
//! keeps one per backend.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use labkit::http::Conn;

use crate::api::{AppState, router};
use crate::clock::ManualClock;
use crate::limiter::{self, Algorithm, RedisStore};
use crate::middleware::{FailMode, Limits};
use crate::policy::Policy;
use crate::scenario::MEASUREMENT_DEADLINE;
use crate::scenario::accuracy::{EPOCH_MS, burst_then_too_fast};

/// Admitted counts for one algorithm behind 1 and behind 4 instances.
#[derive(Debug, Clone, Copy)]
pub struct InstancesRow {
    pub algorithm: Algorithm,
    pub sent: usize,
    pub one_instance: u64,
    pub four_instances: u64,
}

impl InstancesRow {
    pub fn ratio(&self) -> f64 {
        self.four_instances as f64 / self.one_instance as f64
    }
}

/// A fleet of `n` app instances for one algorithm, each a server on its own port.
pub struct Fleet {
    pub servers: Vec<labkit::http::TestServer>,
    pub limits: Vec<Limits>,
}

impl Fleet {
    /// Start `n` instances sharing `clock` and (for shared algorithms) the Redis behind
    /// `client`, each with its own connection and its own limiter object.
    pub async fn start(
        n: usize,
        algorithm: Algorithm,
        policy: Policy,
        client: &redis::Client,
        prefix: &str,
        clock: &ManualClock,
        fail_mode: FailMode,
    ) -> anyhow::Result<Self> {
        let mut servers = Vec::with_capacity(n);
        let mut all_limits = Vec::with_capacity(n);
        for i in 0..n {
            let store =
                RedisStore::connect_with_deadline(client.clone(), prefix, MEASUREMENT_DEADLINE)
                    .await?;
            let limits = Limits::new(
                limiter::build(algorithm, policy, &store),
                Arc::new(clock.clone()),
                fail_mode,
            );
            let app = router(AppState {
                instance: format!("app-{i}"),
                limits: Some(limits.clone()),
            });
            servers.push(labkit::http::spawn(app).await?);
            all_limits.push(limits);
        }
        Ok(Self {
            servers,
            limits: all_limits,
        })
    }

    /// Send one request per entry of `times` (ms after `start_ms`) as API key `key`, to
    /// instance `i % n`. Returns how many got a 200.
    pub async fn send_round_robin(
        &self,
        clock: &ManualClock,
        key: &str,
        start_ms: u64,
        times: &[u64],
    ) -> anyhow::Result<u64> {
        let mut conns: Vec<Conn> = self.servers.iter().map(|s| Conn::new(s.addr)).collect();
        let n = conns.len();
        let mut admitted = 0;
        for (i, &t) in times.iter().enumerate() {
            clock.set(start_ms + t);
            let reply = conns[i % n]
                .send(Method::GET, "/v1/quote", &[("x-api-key", key)], None)
                .await?;
            match reply.status {
                StatusCode::OK => admitted += 1,
                StatusCode::TOO_MANY_REQUESTS => {}
                other => anyhow::bail!("instance {i}: unexpected status {other}"),
            }
        }
        Ok(admitted)
    }

    pub async fn stop(self) {
        for s in self.servers {
            s.stop().await;
        }
    }
}

/// A burst-then-too-fast client (see `accuracy`) sent to 1 instance and to 4. It sends at 6×
/// its allowed rate, so each of 4 instances still sees more than the allowance (1.5×) and an
/// unshared limiter's full multiplication shows.
pub async fn one_vs_four(
    algorithm: Algorithm,
    policy: Policy,
    client: &redis::Client,
    prefix: &str,
    periods: u64,
) -> anyhow::Result<InstancesRow> {
    let times = burst_then_too_fast(&policy, periods, 6);
    let clock = ManualClock::at(EPOCH_MS);
    let mut admitted = [0; 2];
    for (slot, n) in [1, 4].into_iter().enumerate() {
        let fleet = Fleet::start(
            n,
            algorithm,
            policy,
            client,
            prefix,
            &clock,
            FailMode::Closed,
        )
        .await?;
        let key = format!("instances-{}-{n}x", algorithm.id().replace('_', "-"));
        admitted[slot] = fleet
            .send_round_robin(&clock, &key, EPOCH_MS, &times)
            .await?;
        fleet.stop().await;
    }
    Ok(InstancesRow {
        algorithm,
        sent: times.len(),
        one_instance: admitted[0],
        four_instances: admitted[1],
    })
}

/// [`one_vs_four`] for every algorithm.
pub async fn every_algorithm(
    policy: Policy,
    client: &redis::Client,
    prefix: &str,
    periods: u64,
) -> anyhow::Result<Vec<InstancesRow>> {
    let mut rows = Vec::new();
    for algorithm in Algorithm::ALL {
        rows.push(one_vs_four(algorithm, policy, client, prefix, periods).await?);
    }
    Ok(rows)
}
