//! A lab's run context: its own scratch database and Redis key prefix on the resolved
//! backend, the scale and seed, and the environment the numbers were measured in.
//!
//! Isolation: each [`LabCtx`] creates `lab_<id>_<random>` on the server and drops it in
//! [`LabCtx::finish`] (or, if a run fails or is interrupted, in `Drop`), and uses the Redis key
//! prefix `lab:<id>:<random>:`, deleted the same way. Two runs on one server never meet.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::backend::{BackendKind, Backends, redact};
use crate::report::{Environment, Report};

/// How big a run is. `smoke` is for tests (seconds), `default` makes the README numbers
/// (under a minute per lab, seeding included), `large` is for people with time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    Smoke,
    #[default]
    Default,
    Large,
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Smoke => "smoke",
            Self::Default => "default",
            Self::Large => "large",
        })
    }
}

impl std::str::FromStr for Scale {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "smoke" => Ok(Self::Smoke),
            "default" => Ok(Self::Default),
            "large" => Ok(Self::Large),
            o => Err(format!(
                "unknown scale `{o}` (expected smoke, default or large)"
            )),
        }
    }
}

impl Scale {
    /// Pick a number by scale: `ctx.scale.pick(50_000, 2_000_000, 20_000_000)`.
    pub fn pick<T>(self, smoke: T, default: T, large: T) -> T {
        match self {
            Self::Smoke => smoke,
            Self::Default => default,
            Self::Large => large,
        }
    }
}

/// What the user chose for this run.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub scale: Scale,
    pub seed: u64,
    /// Keep the scratch database (and Redis keys) after the run.
    pub keep: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            scale: Scale::Default,
            seed: 42,
            keep: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CtxError {
    #[error("creating the scratch database on the backend failed: {0}")]
    CreateDb(#[source] sqlx::Error),
    #[error("connecting to the scratch database failed: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("connecting to Redis failed: {0}")]
    Redis(#[source] redis::RedisError),
}

/// Everything a lab needs for one run. See the module docs for isolation.
pub struct LabCtx {
    pub lab_id: String,
    pub scale: Scale,
    pub seed: u64,
    /// A pool on this run's scratch database (up to 32 connections).
    pub pg: PgPool,
    /// A multiplexed, auto-reconnecting Redis connection.
    pub redis: redis::aio::ConnectionManager,
    pub environment: Environment,
    scratch: Scratch,
    redis_url: String,
    redis_prefix: String,
}

impl fmt::Debug for LabCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LabCtx")
            .field("lab_id", &self.lab_id)
            .field("scale", &self.scale)
            .field("database", &self.scratch.name)
            .field("redis_prefix", &self.redis_prefix)
            .finish()
    }
}

impl LabCtx {
    /// Create the scratch database and Redis prefix for `lab_id` on `backends`.
    pub async fn new(
        backends: &Backends,
        lab_id: &str,
        opts: RunOptions,
    ) -> Result<Self, CtxError> {
        crate::telemetry::init();
        let tag = format!("{:08x}", rand::random::<u32>());
        let slug: String = lab_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let name = format!("lab_{slug}_{tag}");
        let admin: PgConnectOptions = backends.admin_url.parse().map_err(CtxError::CreateDb)?;
        {
            let mut conn = admin.connect().await.map_err(CtxError::CreateDb)?;
            // Identifiers cannot be bound as parameters; `name` is built from [a-z0-9_] only.
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .map_err(CtxError::CreateDb)?;
            let _ = conn.close().await;
        }
        let scratch = Scratch {
            name: name.clone(),
            admin_url: backends.admin_url.clone(),
            url: admin.clone().database(&name).to_url_lossy().to_string(),
            redis_url: backends.redis_url.clone(),
            redis_prefix: format!("lab:{lab_id}:{tag}:"),
            keep: opts.keep,
            // Local and docker servers are deleted whole at exit; dropping the database
            // first would only slow every test down.
            done: backends.kind != BackendKind::Env && !opts.keep,
        };
        // From here on `scratch` drops the database if anything below fails.
        let pg = PgPoolOptions::new()
            .max_connections(32)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(admin.database(&name))
            .await
            .map_err(CtxError::Connect)?;
        sqlx::raw_sql(crate::seed::FUNCTIONS_SQL)
            .execute(&pg)
            .await
            .map_err(CtxError::Connect)?;
        let client = redis::Client::open(backends.redis_url.as_str()).map_err(CtxError::Redis)?;
        let redis = redis::aio::ConnectionManager::new(client)
            .await
            .map_err(CtxError::Redis)?;
        let environment = environment(&pg, redis.clone(), backends.kind).await;
        Ok(Self {
            lab_id: lab_id.to_string(),
            scale: opts.scale,
            seed: opts.seed,
            pg,
            redis,
            environment,
            redis_url: backends.redis_url.clone(),
            redis_prefix: scratch.redis_prefix.clone(),
            scratch,
        })
    }

    /// URL of this run's scratch database (for extra pools, e.g. one per app instance).
    pub fn database_url(&self) -> &str {
        &self.scratch.url
    }

    /// The scratch database's name.
    pub fn database_name(&self) -> &str {
        &self.scratch.name
    }

    /// A new, separate pool on the scratch database — what a second app instance would have.
    pub async fn new_pool(&self, max_connections: u32) -> Result<PgPool, sqlx::Error> {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&self.scratch.url)
            .await
    }

    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }

    /// A new Redis client (separate connections, as another app instance would have).
    pub fn redis_client(&self) -> redis::Client {
        redis::Client::open(self.redis_url.as_str()).expect("validated at LabCtx::new")
    }

    /// This run's Redis key prefix, `lab:<id>:<tag>:`. Every key a lab writes must use it.
    pub fn redis_prefix(&self) -> &str {
        &self.redis_prefix
    }

    /// `prefix + name`
    pub fn key(&self, name: &str) -> String {
        format!("{}{}", self.redis_prefix, name)
    }

    /// A report pre-filled with lab id, scale, seed and environment.
    pub fn report(&self, title: &str) -> Report {
        Report::new(
            &self.lab_id,
            title,
            self.scale,
            self.seed,
            self.environment.clone(),
        )
    }

    /// Drop the scratch database and the Redis keys (unless `keep`). Returns the database
    /// URL when it was kept.
    pub async fn finish(mut self) -> Option<String> {
        self.pg.close().await;
        if self.scratch.keep {
            self.scratch.done = true;
            return Some(redact(&self.scratch.url));
        }
        if !self.scratch.done {
            self.scratch.cleanup().await;
            self.scratch.done = true;
        }
        None
    }
}

/// The scratch database and Redis prefix; cleans itself up in Drop if `finish` never ran
/// (a failed or interrupted run).
struct Scratch {
    name: String,
    admin_url: String,
    url: String,
    redis_url: String,
    redis_prefix: String,
    keep: bool,
    done: bool,
}

impl Scratch {
    async fn cleanup(&self) {
        let drop_db = async {
            let mut conn = sqlx::PgConnection::connect(&self.admin_url).await?;
            // WITH (FORCE) ends sessions still connected (e.g. a pool a lab forgot to close).
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await?;
            conn.close().await
        };
        if let Err(e) = tokio::time::timeout(Duration::from_secs(10), drop_db)
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
        {
            tracing::warn!(db = %self.name, "could not drop scratch database: {e}");
        }
        let clear_keys = async {
            let client = redis::Client::open(self.redis_url.as_str())?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{}*", self.redis_prefix))
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await?;
                if !keys.is_empty() {
                    redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async::<()>(&mut conn)
                        .await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            Ok::<_, redis::RedisError>(())
        };
        // Redis may be down on purpose (labs stop it); never hang the exit on it.
        let _ = tokio::time::timeout(Duration::from_secs(3), clear_keys).await;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.done || self.keep {
            return;
        }
        // Drop cannot await, and we may be inside a runtime that is shutting down: do the
        // cleanup on a fresh thread with its own small runtime, and wait for it.
        let this = Scratch {
            name: self.name.clone(),
            admin_url: self.admin_url.clone(),
            url: self.url.clone(),
            redis_url: self.redis_url.clone(),
            redis_prefix: self.redis_prefix.clone(),
            keep: false,
            done: true,
        };
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(this.cleanup());
            }
        })
        .join();
    }
}

async fn environment(
    pg: &PgPool,
    mut redis: redis::aio::ConnectionManager,
    backend: BackendKind,
) -> Environment {
    let postgres_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(pg)
        .await
        .unwrap_or_else(|_| "?".into());
    let mut postgres_settings = BTreeMap::new();
    for name in [
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "shared_buffers",
        "jit",
        "max_connections",
        "work_mem",
    ] {
        if let Ok(v) = sqlx::query_scalar::<_, String>("SELECT current_setting($1)")
            .bind(name)
            .fetch_one(pg)
            .await
        {
            postgres_settings.insert(name.to_string(), v);
        }
    }
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut redis)
        .await
        .unwrap_or_default();
    let redis_version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_string();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    Environment {
        backend,
        postgres_version,
        redis_version,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        memory_gib,
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        postgres_settings,
        labkit_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}
