//! One app instance: its own Postgres pool, its own Redis connection, its own in-process
//! single-flight map. Instances share nothing but Redis (and Postgres) — the lab runs
//! several side by side in one process, the way several pods would run behind a balancer.
//!
//! `read` is where an instance picks its caching mechanism, and where it fails open: if
//! Redis errors, the read goes to Postgres and the error is counted, instead of a cache
//! outage becoming an outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sqlx::PgPool;

use crate::entry::{CacheError, Read, Served};
use crate::ledger::{LoadStats, MonthEnd, ReportLoader};
use crate::redis_lock::LockSettings;
use crate::single_flight::SingleFlight;
use crate::swr::Swr;
use crate::{cache_aside, redis_lock, xfetch};

/// The caching mechanism an instance uses for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    NoCache,
    Naive,
    SingleFlight,
    RedisLock,
    XFetch,
    StaleWhileRevalidate,
}

impl Strategy {
    pub const ALL: [Strategy; 6] = [
        Strategy::NoCache,
        Strategy::Naive,
        Strategy::SingleFlight,
        Strategy::RedisLock,
        Strategy::XFetch,
        Strategy::StaleWhileRevalidate,
    ];

    /// The prefix of this mechanism's finding keys.
    pub fn key(self) -> &'static str {
        match self {
            Strategy::NoCache => "no_cache",
            Strategy::Naive => "naive",
            Strategy::SingleFlight => "single_flight",
            Strategy::RedisLock => "redis_lock",
            Strategy::XFetch => "xfetch",
            Strategy::StaleWhileRevalidate => "swr",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Strategy::NoCache => "no cache",
            Strategy::Naive => "naive cache-aside",
            Strategy::SingleFlight => "single-flight (per instance)",
            Strategy::RedisLock => "Redis lock (fleet-wide)",
            Strategy::XFetch => "XFetch early recompute",
            Strategy::StaleWhileRevalidate => "stale-while-revalidate",
        }
    }
}

/// Knobs shared by the mechanisms.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a cached report is fresh.
    pub ttl: Duration,
    pub lock: LockSettings,
    /// XFetch's beta (1 = the paper's default).
    pub beta: f64,
    /// Stale-while-revalidate: how long past `ttl` a value may still be served.
    pub stale_for: Duration,
    /// On a Redis error, read from Postgres instead of failing.
    pub fail_open: bool,
}

impl Settings {
    pub fn with_ttl(ttl: Duration) -> Self {
        Self {
            ttl,
            lock: LockSettings::default(),
            beta: 1.0,
            stale_for: ttl * 10,
            fail_open: true,
        }
    }
}

/// A Redis connection as an app would configure it: bounded waits, so a dead Redis costs
/// a read a fraction of a second, not a hang. Lazy, so an instance starts even when Redis
/// is down.
pub fn redis_connection(client: redis::Client) -> Result<ConnectionManager, redis::RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(250)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(100));
    ConnectionManager::new_lazy_with_config(client, config)
}

/// One app instance.
pub struct Instance {
    pub id: usize,
    pub strategy: Strategy,
    settings: Settings,
    redis: ConnectionManager,
    loader: ReportLoader,
    single_flight: SingleFlight<MonthEnd>,
    swr: Swr,
    redis_errors: AtomicU64,
}

impl Instance {
    /// `pool` and `redis` must be this instance's own (`LabCtx::new_pool`,
    /// `LabCtx::redis_client`); `stats` is the lab's shared instrument.
    pub fn new(
        id: usize,
        strategy: Strategy,
        settings: Settings,
        pool: PgPool,
        redis: redis::Client,
        stats: Arc<LoadStats>,
    ) -> Result<Self, CacheError> {
        Ok(Self {
            id,
            strategy,
            settings,
            redis: redis_connection(redis)?,
            loader: ReportLoader::new(pool, stats),
            single_flight: SingleFlight::default(),
            swr: Swr::new(settings.ttl, settings.stale_for, settings.lock.px),
            redis_errors: AtomicU64::new(0),
        })
    }

    pub fn loader(&self) -> &ReportLoader {
        &self.loader
    }

    pub fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Redis errors this instance absorbed by failing open.
    pub fn redis_errors(&self) -> u64 {
        self.redis_errors.load(Ordering::Relaxed)
    }

    /// Read the month-end report cached under `key`.
    pub async fn read(&self, key: &str) -> Result<Read<MonthEnd>, CacheError> {
        let s = self.settings;
        let mut redis = self.redis.clone();
        let loader = self.loader.clone();
        let load = move || async move { loader.load().await };
        let result = match self.strategy {
            Strategy::NoCache => Ok(Read::new(self.loader.load().await?, Served::Database)),
            Strategy::Naive => cache_aside::read(&mut redis, key, Some(s.ttl), load).await,
            Strategy::SingleFlight => self.single_flight.read(&mut redis, key, s.ttl, load).await,
            Strategy::RedisLock => redis_lock::read(&mut redis, key, s.ttl, s.lock, load).await,
            Strategy::XFetch => xfetch::read(&mut redis, key, s.ttl, s.beta, load).await,
            Strategy::StaleWhileRevalidate => self.swr.read(&mut redis, key, load).await,
        };
        match result {
            Err(CacheError::Redis(e)) if s.fail_open => {
                self.redis_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    instance = self.id,
                    "redis failed, reading from postgres: {e}"
                );
                Ok(Read::new(self.loader.load().await?, Served::FellBack))
            }
            other => other,
        }
    }

    /// Delete-on-write after a committed change.
    pub async fn invalidate(&self, key: &str) -> Result<(), CacheError> {
        cache_aside::invalidate(&mut self.redis.clone(), key).await
    }

    /// Wait for background work (stale-while-revalidate refreshes) to finish.
    pub async fn shutdown(&self) {
        self.swr.drain().await;
    }
}
