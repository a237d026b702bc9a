//! Cost: what a limiter adds to every request, in latency, Redis work and memory.
//!
//! - **Latency**: a closed loop of HTTP requests against the same routes with and without the
//!   rate-limit layer; the difference in p50/p95 is the limiter's share. The lab's one load
//!   phase: `--clients`, `--duration` and `--warmup` shape it. Variants run in
//!   interleaved rounds (baseline, fixed window, ..., baseline, ...) so a noisy neighbour
//!   slows all of them alike instead of whichever ran during the noise.
//! - **Redis work**: `INFO commandstats` before and after a batch of decisions. Commands a
//!   script runs are counted there too, so the delta splits into round trips (`EVALSHA`) and
//!   the commands executed inside Redis per decision.
//! - **Memory**: `MEMORY USAGE` of every key one client's state occupies, after a period of
//!   traffic at exactly the policy's rate.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use labkit::http::Connections;
use labkit::{Bound, ClosedLoop, LatencySummary, Recorder};

use crate::api::{AppState, router};
use crate::clock::SystemClock;
use crate::limiter::{self, Algorithm, RedisStore};
use crate::middleware::{FailMode, Limits};
use crate::policy::Policy;
use crate::scenario::MEASUREMENT_DEADLINE;
use crate::scenario::accuracy::EPOCH_MS;

/// One latency variant: `None` is the baseline without the layer.
#[derive(Debug, Clone)]
pub struct LatencyRow {
    pub algorithm: Option<Algorithm>,
    pub summary: LatencySummary,
}

impl LatencyRow {
    pub fn name(&self) -> &'static str {
        self.algorithm.map_or("no limiter", |a| a.name())
    }
}

/// The latency phase's shape: `--clients` workers, `--duration` of measurement per variant
/// (split over `rounds` interleaved rounds), `--warmup` before each variant's first round.
#[derive(Debug, Clone, Copy)]
pub struct LatencyShape {
    pub workers: usize,
    pub per_variant: Duration,
    pub rounds: u32,
    pub warmup: Duration,
    /// Distinct API keys the requests cycle through.
    pub keys: usize,
}

/// Closed-loop HTTP latency for the baseline and each algorithm, one keep-alive connection
/// per worker (`labkit::http::Connections`: the driver costs microseconds, not reqwest's
/// tens, so it does not become what it measures). The keys are cycled through and the
/// policy is generous, so (almost) every decision is an admission — the expensive path,
/// with a write.
pub async fn latency(
    client: &redis::Client,
    prefix: &str,
    shape: LatencyShape,
) -> anyhow::Result<Vec<LatencyRow>> {
    // 1e6 requests per minute per key: never the limiting factor here.
    let policy = Policy::new(1_000_000, Duration::from_secs(60), 1_000_000)?;
    let mut variants: Vec<Option<Algorithm>> = vec![None];
    variants.extend(Algorithm::ALL.map(Some));
    let mut servers = Vec::new();
    for v in &variants {
        let limits = match v {
            None => None,
            Some(a) => {
                let store =
                    RedisStore::connect_with_deadline(client.clone(), prefix, MEASUREMENT_DEADLINE)
                        .await?;
                Some(Limits::new(
                    limiter::build(*a, policy, &store),
                    Arc::new(SystemClock),
                    FailMode::Closed,
                ))
            }
        };
        let instance = v.map_or("baseline", |a| a.id()).to_string();
        servers.push(labkit::http::spawn(router(AppState { instance, limits })).await?);
    }
    let conns: Vec<Arc<Connections>> = servers
        .iter()
        .map(|s| Connections::new(s.addr, shape.workers))
        .collect();
    let keys: Arc<Vec<String>> = Arc::new(
        (0..shape.keys)
            .map(|i| format!("cost-key-{i:05}"))
            .collect(),
    );
    let rounds = shape.rounds.max(1);
    let per_round = shape.per_variant / rounds;
    let mut recorders = vec![Recorder::new(); variants.len()];
    let mut elapsed = vec![Duration::ZERO; variants.len()];
    // Interleaved rounds: a noisy neighbour slows every variant alike.
    for round in 1..=rounds {
        for (i, v) in variants.iter().enumerate() {
            let name = v.map_or("no limiter", |a| a.name());
            let warmup = if round == 1 {
                shape.warmup
            } else {
                Duration::ZERO
            };
            let cfg = ClosedLoop::new(shape.workers, Bound::Duration(per_round))
                .warmup(warmup)
                .label(format!("latency: {name}, round {round}/{rounds}"));
            let (conns, keys) = (conns[i].clone(), keys.clone());
            let result = labkit::closed_loop(cfg, move |call| {
                let (conns, keys) = (conns.clone(), keys.clone());
                async move {
                    let key = keys[call.seq as usize % keys.len()].as_str();
                    let reply = conns
                        .get(call.worker)
                        .await
                        .send(Method::GET, "/v1/quote", &[("x-api-key", key)], None)
                        .await
                        .map_err(|e| e.to_string())?;
                    match reply.status {
                        StatusCode::OK => Ok(()),
                        other => Err(format!("unexpected status {other}")),
                    }
                }
            })
            .await;
            if let Some(e) = &result.first_error {
                tracing::warn!(variant = name, "latency phase had errors, first: {e}");
            }
            recorders[i].merge(&result.recorder);
            elapsed[i] += Duration::from_secs_f64(result.summary.elapsed_s);
        }
    }
    for s in servers {
        s.stop().await;
    }
    Ok(variants
        .into_iter()
        .zip(recorders.iter().zip(elapsed))
        .map(|(algorithm, (rec, el))| LatencyRow {
            algorithm,
            summary: rec.summary(el),
        })
        .collect())
}

/// Redis work per decision, from `INFO commandstats` deltas.
#[derive(Debug, Clone)]
pub struct OpsRow {
    pub algorithm: Algorithm,
    /// Client round trips per decision (EVALSHA calls).
    pub round_trips: f64,
    /// Commands run inside Redis per admitted decision, and per rejected one.
    pub commands_admitted: f64,
    pub commands_rejected: f64,
    /// Which commands, e.g. `INCR, PEXPIRE`.
    pub commands: String,
}

/// `INFO commandstats` as command name → calls (`cmdstat_get:calls=3,usec=…`).
async fn commandstats(
    conn: &mut redis::aio::MultiplexedConnection,
) -> redis::RedisResult<BTreeMap<String, u64>> {
    Ok(labkit::redis_info::info(conn, "commandstats")
        .await?
        .into_iter()
        .filter_map(|(field, value)| {
            let name = field.strip_prefix("cmdstat_")?;
            let calls = value
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect())
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(k, v)| *v > 0 && k != "info")
        .collect()
}

/// Split a commandstats delta into (round trips, commands executed inside scripts).
fn split(d: &BTreeMap<String, u64>) -> (u64, u64) {
    let round_trips: u64 = ["evalsha", "eval"]
        .iter()
        .map(|k| d.get(*k).copied().unwrap_or(0))
        .sum();
    (round_trips, d.values().sum::<u64>() - round_trips)
}

/// `n` admitted decisions (fresh clients) and `n` rejected ones (an exhausted client) per
/// algorithm, counted on Redis itself. Needs a Redis no one else is writing to meanwhile.
pub async fn redis_ops(
    client: &redis::Client,
    prefix: &str,
    policy: Policy,
    n: u64,
) -> anyhow::Result<Vec<OpsRow>> {
    let mut stats_conn = client.get_multiplexed_async_connection().await?;
    let store =
        RedisStore::connect_with_deadline(client.clone(), prefix, MEASUREMENT_DEADLINE).await?;
    let mut rows = Vec::new();
    for algorithm in Algorithm::SHARED {
        let limiter = limiter::build(algorithm, policy, &store);
        let now = EPOCH_MS;
        // Warm-up: the first EVALSHA of a script answers NOSCRIPT and loads it.
        limiter.check("ops-warmup", now).await?;

        let before = commandstats(&mut stats_conn).await?;
        for i in 0..n {
            limiter.check(&format!("ops-admit-{i}"), now).await?;
        }
        let admitted = delta(&before, &commandstats(&mut stats_conn).await?);

        let hot = "ops-exhausted";
        while limiter.check(hot, now).await?.allowed {}
        let before = commandstats(&mut stats_conn).await?;
        for _ in 0..n {
            limiter.check(hot, now).await?;
        }
        let rejected = delta(&before, &commandstats(&mut stats_conn).await?);

        let (trips_a, inner_a) = split(&admitted);
        let (trips_r, inner_r) = split(&rejected);
        let commands: Vec<String> = admitted
            .keys()
            .chain(rejected.keys())
            .filter(|k| !matches!(k.as_str(), "evalsha" | "eval"))
            .map(|k| k.to_uppercase())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        rows.push(OpsRow {
            algorithm,
            round_trips: (trips_a + trips_r) as f64 / (2 * n) as f64,
            commands_admitted: inner_a as f64 / n as f64,
            commands_rejected: inner_r as f64 / n as f64,
            commands: commands.join(", "),
        });
    }
    Ok(rows)
}

/// Bytes one client's state occupies in Redis.
#[derive(Debug, Clone)]
pub struct MemoryRow {
    pub algorithm: Algorithm,
    pub quota: u32,
    pub keys: usize,
    pub bytes: u64,
    /// Redis's internal encoding of the biggest key (`listpack`, `skiplist`, `int`...).
    pub encoding: String,
}

/// Send one period of traffic at exactly the policy's rate for one client, then add up
/// `MEMORY USAGE` of every key it left. Key names count too (they carry the run's prefix).
pub async fn memory_per_client(
    client: &redis::Client,
    prefix: &str,
    policy: Policy,
) -> anyhow::Result<Vec<MemoryRow>> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    let store =
        RedisStore::connect_with_deadline(client.clone(), prefix, MEASUREMENT_DEADLINE).await?;
    let mut rows = Vec::new();
    for algorithm in Algorithm::SHARED {
        let limiter = limiter::build(algorithm, policy, &store);
        let who = format!("mem-{}-{}", algorithm.id(), policy.quota());
        let step = policy.period_ms() / policy.quota() as u64;
        let start = EPOCH_MS;
        for i in 0..policy.quota() as u64 {
            limiter.check(&who, start + i * step).await?;
        }
        let pattern = format!("{prefix}rl:*:{who}*");
        let keys = scan_keys(&mut conn, &pattern).await?;
        let mut bytes = 0;
        let mut biggest = (0, String::new());
        for k in &keys {
            let b: u64 = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(k)
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut conn)
                .await?;
            bytes += b;
            if b > biggest.0 {
                let enc: String = redis::cmd("OBJECT")
                    .arg("ENCODING")
                    .arg(k)
                    .query_async(&mut conn)
                    .await?;
                biggest = (b, enc);
            }
        }
        rows.push(MemoryRow {
            algorithm,
            quota: policy.quota(),
            keys: keys.len(),
            bytes,
            encoding: biggest.1,
        });
    }
    Ok(rows)
}

/// Keys matching `pattern`, with SCAN (never `KEYS`, which blocks a shared server).
async fn scan_keys(
    conn: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}
