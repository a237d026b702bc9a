//! A lab's run context: its own scratch database and Redis key prefix on the resolved
//! backend, the scale and seed, and the environment the numbers were measured in.
//!
//! Isolation: each [`LabCtx`] creates `lab_<id>_<random>` on the server and drops it in
//! [`LabCtx::finish`] (or, if a run fails or is interrupted, in `Drop`), and uses the Redis key
//! prefix `lab:<id>:<random>:`, deleted the same way. Two runs on one server never meet.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use std::sync::Mutex;

use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::backend::local::{LocalBins, LocalPostgres, LocalRedis, PostgresOptions, RedisOptions};
use crate::backend::{BackendKind, Backends, redact};
use crate::report::{Environment, Report};

/// How big a run is. `smoke` is for tests (seconds), `default` makes the README numbers
/// (under a minute per lab, seeding included), `large` is for people with time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// seconds: what the tests run
    Smoke,
    /// the README numbers: under a minute per lab, seeding included
    #[default]
    Default,
    /// millions of rows, for people with time
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
    /// `--clients`, `--duration`, `--rate`, `--warmup`: override each lab's load shape.
    pub load: LoadKnobs,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            scale: Scale::Default,
            seed: 42,
            keep: false,
            load: LoadKnobs::default(),
        }
    }
}

/// The load knobs a user may set on `lab run` (pgbench/oha habits). Each is `None` unless
/// set; a lab reads them through [`LabCtx::clients`] and friends, which fall back to the
/// lab's own default for the scale and remember what was used for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadKnobs {
    /// Concurrent clients (closed-loop workers, connections).
    pub clients: Option<usize>,
    /// Length of each measured load phase.
    pub duration: Option<Duration>,
    /// Open-loop arrival rate, requests per second.
    pub rate: Option<f64>,
    /// Unmeasured warm-up before each measured phase.
    pub warmup: Option<Duration>,
}

/// One of the load knobs, for [`LabCtx::ignores`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Knob {
    Clients,
    Duration,
    Rate,
    Warmup,
}

impl Knob {
    pub const ALL: [Knob; 4] = [Knob::Clients, Knob::Duration, Knob::Rate, Knob::Warmup];

    /// The command-line flag, `--clients`.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Clients => "--clients",
            Self::Duration => "--duration",
            Self::Rate => "--rate",
            Self::Warmup => "--warmup",
        }
    }

    fn is_set(self, k: &LoadKnobs) -> bool {
        match self {
            Self::Clients => k.clients.is_some(),
            Self::Duration => k.duration.is_some(),
            Self::Rate => k.rate.is_some(),
            Self::Warmup => k.warmup.is_some(),
        }
    }
}

/// What a run did with the knobs: the values its phases used, and why any were ignored.
#[derive(Debug, Clone, Default)]
pub(crate) struct KnobUse {
    pub clients: Vec<f64>,
    pub duration_s: Vec<f64>,
    pub rate_per_s: Vec<f64>,
    pub warmup_s: Vec<f64>,
    pub ignored: BTreeMap<Knob, String>,
}

fn remember(values: &mut Vec<f64>, v: f64) {
    if !values.contains(&v) {
        values.push(v);
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

/// Why a scenario's extra server (a dedicated Redis, a replica, a Postgres of its own)
/// could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ExtraError {
    /// This backend cannot provide it (the `env` backend is the user's servers). The lab
    /// skips the scenario and says why in its report ([`Report::skipped`]).
    #[error("{0}")]
    Unavailable(String),
    /// It could have, but starting it failed: an error, not a skip.
    #[error(transparent)]
    Failed(#[from] crate::backend::BackendError),
}

/// What the backend can start besides the run's own Postgres and Redis.
#[derive(Debug, Clone)]
enum Extras {
    Local { bins: LocalBins, primary_port: u16 },
    Docker,
    Env,
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
    /// What the user set with `--clients`/`--duration`/`--rate`/`--warmup`.
    pub knobs: LoadKnobs,
    scratch: Scratch,
    redis_url: String,
    redis_prefix: String,
    extras: Extras,
    knob_use: Mutex<KnobUse>,
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
        let redis_prefix = format!("lab:{lab_id}:{tag}:");
        let admin: PgConnectOptions = backends.admin_url.parse().map_err(CtxError::CreateDb)?;
        if backends.kind == BackendKind::Env {
            // Long-lived servers keep what a SIGKILLed run left; local ones are deleted whole.
            sweep_dead_owners(&backends.admin_url, &backends.redis_url).await;
        }
        {
            let mut conn = admin.connect().await.map_err(CtxError::CreateDb)?;
            // Identifiers cannot be bound as parameters; `name` is built from [a-z0-9_] only.
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .map_err(CtxError::CreateDb)?;
            // Mark the owner, so a later run can sweep it if this process dies unannounced.
            let owner = Owner::me(&redis_prefix).to_comment();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "COMMENT ON DATABASE {name} IS '{}'",
                owner.replace('\'', "''")
            )))
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
            redis_prefix,
            keep: opts.keep,
            // Local and docker servers are deleted whole at exit; dropping the database
            // first would only slow every test down.
            done: backends.kind != BackendKind::Env && !opts.keep,
        };
        // From here on `scratch` drops the database if anything below fails.
        let pg = pool_options(32)
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
        let extras = match (backends.kind, backends.local_postgres()) {
            (BackendKind::Local, Some(primary)) => Extras::Local {
                bins: LocalBins::find()
                    .map_err(|e| CtxError::Connect(sqlx::Error::Configuration(e.into())))?,
                primary_port: primary.port,
            },
            (BackendKind::Docker, _) => Extras::Docker,
            _ => Extras::Env,
        };
        Ok(Self {
            lab_id: lab_id.to_string(),
            scale: opts.scale,
            seed: opts.seed,
            pg,
            redis,
            environment,
            knobs: opts.load,
            redis_url: backends.redis_url.clone(),
            redis_prefix: scratch.redis_prefix.clone(),
            scratch,
            extras,
            knob_use: Mutex::default(),
        })
    }

    /// Clients for a load phase: `--clients` if the user set it, else the lab's `default`.
    pub fn clients(&self, default: usize) -> usize {
        let v = self.knobs.clients.unwrap_or(default).max(1);
        remember(&mut self.knob_use().clients, v as f64);
        v
    }

    /// Length of a measured load phase: `--duration`, else `default`.
    pub fn duration(&self, default: Duration) -> Duration {
        let v = self.knobs.duration.unwrap_or(default);
        remember(&mut self.knob_use().duration_s, v.as_secs_f64());
        v
    }

    /// Open-loop arrival rate (requests/s): `--rate`, else `default`.
    pub fn rate(&self, default: f64) -> f64 {
        let v = self.knobs.rate.unwrap_or(default);
        remember(&mut self.knob_use().rate_per_s, v);
        v
    }

    /// Unmeasured warm-up before a measured phase: `--warmup`, else `default`.
    pub fn warmup(&self, default: Duration) -> Duration {
        let v = self.knobs.warmup.unwrap_or(default);
        remember(&mut self.knob_use().warmup_s, v.as_secs_f64());
        v
    }

    /// Say why this lab does not honour `knob` (a scripted interleaving has no clients).
    /// When the user set it, the report's notes carry the reason; it is never silent.
    pub fn ignores(&self, knob: Knob, why: &str) {
        self.knob_use().ignored.insert(knob, why.to_string());
    }

    fn knob_use(&self) -> std::sync::MutexGuard<'_, KnobUse> {
        self.knob_use.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Put what the run did with the knobs into the report: a `load` section, and a note
    /// for every knob the user set that the lab did not read.
    pub(crate) fn stamp_load(&self, report: &mut Report) {
        let used = self.knob_use().clone();
        let one_or_many = |v: &[f64]| match v {
            [] => serde_json::Value::Null,
            [one] => serde_json::json!(one),
            many => serde_json::json!(many),
        };
        report.load = serde_json::json!({
            "clients": match used.clients.as_slice() {
                [] => serde_json::Value::Null,
                [one] => serde_json::json!(*one as u64),
                many => serde_json::json!(many.iter().map(|c| *c as u64).collect::<Vec<_>>()),
            },
            "duration_s": one_or_many(&used.duration_s),
            "rate_per_s": one_or_many(&used.rate_per_s),
            "warmup_s": one_or_many(&used.warmup_s),
            "set_by_user": {
                "clients": self.knobs.clients,
                "duration_s": self.knobs.duration.map(|d| d.as_secs_f64()),
                "rate_per_s": self.knobs.rate,
                "warmup_s": self.knobs.warmup.map(|d| d.as_secs_f64()),
            },
        });
        for knob in Knob::ALL {
            if !knob.is_set(&self.knobs) {
                continue;
            }
            let read = match knob {
                Knob::Clients => !used.clients.is_empty(),
                Knob::Duration => !used.duration_s.is_empty(),
                Knob::Rate => !used.rate_per_s.is_empty(),
                Knob::Warmup => !used.warmup_s.is_empty(),
            };
            if let Some(why) = used.ignored.get(&knob) {
                report.note(format!("{} was ignored: {why}", knob.flag()));
            } else if !read {
                report.note(format!(
                    "{} was ignored: no phase of this lab has that knob.",
                    knob.flag()
                ));
            }
        }
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
        self.new_pool_with(pool_options(max_connections), self.connect_options())
            .await
    }

    /// Connect options for the scratch database, to adjust (`.options([("statement_timeout",
    /// "5s")])`, `.application_name(..)`) and pass to [`new_pool_with`](Self::new_pool_with).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.scratch
            .url
            .parse()
            .expect("the scratch URL was built from parsed options")
    }

    /// A pool with your own pool and connect options; start from [`pool_options`] to keep
    /// labkit's defaults (no ping before every acquire, a 30 s acquire timeout), and add
    /// `.after_connect(..)` for per-session setup.
    pub async fn new_pool_with(
        &self,
        pool: PgPoolOptions,
        connect: PgConnectOptions,
    ) -> Result<PgPool, sqlx::Error> {
        pool.connect_with(connect).await
    }

    /// A Redis of this scenario's own (its own `maxmemory`, or one the lab may stop): a
    /// process on the local backend, a container on docker. The env backend cannot give one
    /// (`REDIS_URL` is one server the user owns): [`ExtraError::Unavailable`] says so.
    pub async fn dedicated_redis(&self, opts: &RedisOptions) -> Result<DedicatedRedis, ExtraError> {
        match &self.extras {
            Extras::Local { bins, .. } => {
                Ok(DedicatedRedis::Local(LocalRedis::start(bins, opts).await?))
            }
            Extras::Docker => Ok(DedicatedRedis::Docker(Box::new(
                crate::backend::docker::DedicatedRedis::start(opts).await?,
            ))),
            Extras::Env => Err(ExtraError::Unavailable(
                "the env backend has exactly one Redis (REDIS_URL), which this lab must not \
                 reconfigure or stop; run with --backend local (or docker) for this scenario"
                    .into(),
            )),
        }
    }

    /// A Postgres of this scenario's own, with `opts` settings (say `fsync=on`), that the lab
    /// may crash and restart. Local backend only.
    pub async fn dedicated_postgres(
        &self,
        opts: &PostgresOptions,
    ) -> Result<LocalPostgres, ExtraError> {
        match &self.extras {
            Extras::Local { bins, .. } => Ok(LocalPostgres::start_with(bins, opts).await?),
            Extras::Docker => Err(ExtraError::Unavailable(
                "a dedicated Postgres is only implemented on the local backend (initdb and \
                 postgres binaries); run with --backend local for this scenario"
                    .into(),
            )),
            Extras::Env => Err(ExtraError::Unavailable(
                "the env backend is the user's own Postgres (DATABASE_URL), which this lab \
                 must not crash or reconfigure; run with --backend local for this scenario"
                    .into(),
            )),
        }
    }

    /// A streaming replica of this run's Postgres, and the scratch database's URL on it.
    /// - local: `pg_basebackup -R` of the throwaway primary, started as a hot standby with
    ///   `opts` settings (e.g. `recovery_min_apply_delay`); stopped and deleted on drop;
    /// - env: `REPLICA_URL` (a standby of `DATABASE_URL`'s server), if set;
    /// - docker: not implemented; the error says so.
    pub async fn replica(&self, opts: &PostgresOptions) -> Result<Replica, ExtraError> {
        match &self.extras {
            Extras::Local { bins, primary_port } => {
                let standby = LocalPostgres::standby_of(bins, *primary_port, opts).await?;
                let url = standby.url(&self.scratch.name);
                Ok(Replica {
                    url,
                    server: Some(standby),
                })
            }
            Extras::Env => match std::env::var("REPLICA_URL")
                .ok()
                .filter(|v| !v.trim().is_empty())
            {
                Some(v) => {
                    let base: PgConnectOptions = v.parse().map_err(|e: sqlx::Error| {
                        ExtraError::Unavailable(format!("REPLICA_URL is invalid: {e}"))
                    })?;
                    Ok(Replica {
                        url: base.database(&self.scratch.name).to_url_lossy().to_string(),
                        server: None,
                    })
                }
                None => Err(ExtraError::Unavailable(
                    "this scenario needs a streaming replica: set REPLICA_URL to a hot standby \
                     of DATABASE_URL's server, or run with --backend local (labkit then starts \
                     one with pg_basebackup)"
                        .into(),
                )),
            },
            Extras::Docker => Err(ExtraError::Unavailable(
                "a streaming replica is not implemented on the docker backend; run with \
                 --backend local, or --backend env with REPLICA_URL"
                    .into(),
            )),
        }
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

/// labkit's pool defaults: up to `max_connections`, a 30 s acquire timeout, and **no ping
/// before every acquire** (sqlx's default `test_before_acquire` adds a round trip to every
/// query a load loop runs, which on a 0.15 ms query is a large share of what is measured).
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .test_before_acquire(false)
}

/// A Redis a scenario has to itself. Stopped on drop.
pub enum DedicatedRedis {
    Local(LocalRedis),
    Docker(Box<crate::backend::docker::DedicatedRedis>),
}

impl fmt::Debug for DedicatedRedis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedicatedRedis")
            .field("url", &self.url())
            .finish()
    }
}

impl DedicatedRedis {
    pub fn url(&self) -> String {
        match self {
            Self::Local(r) => r.url(),
            Self::Docker(r) => r.url.clone(),
        }
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("a redis:// URL built by labkit")
    }

    /// Stop the server now (the story's outage). Nothing is saved: it ran without persistence.
    pub async fn stop(&mut self) {
        match self {
            Self::Local(r) => r.stop(),
            Self::Docker(r) => r.stop().await,
        }
    }
}

/// A streaming replica: the scratch database's URL on it, and the server when labkit
/// started it (local backend; `None` for `REPLICA_URL`).
pub struct Replica {
    pub url: String,
    pub server: Option<LocalPostgres>,
}

impl fmt::Debug for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replica")
            .field("url", &redact(&self.url))
            .finish()
    }
}

/// Who created a scratch database: written as its `COMMENT`, read by the sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub host: String,
    pub pid: i32,
    pub redis_prefix: String,
}

const OWNER_TAG: &str = "labkit scratch";

impl Owner {
    fn me(redis_prefix: &str) -> Self {
        Self {
            host: hostname(),
            pid: std::process::id() as i32,
            redis_prefix: redis_prefix.to_string(),
        }
    }

    pub(crate) fn to_comment(&self) -> String {
        format!(
            "{OWNER_TAG}; host={}; pid={}; redis_prefix={}",
            self.host, self.pid, self.redis_prefix
        )
    }

    pub(crate) fn parse(comment: &str) -> Option<Self> {
        let mut parts = comment.split("; ");
        if parts.next()? != OWNER_TAG {
            return None;
        }
        let mut host = None;
        let mut pid = None;
        let mut prefix = None;
        for p in parts {
            match p.split_once('=')? {
                ("host", v) => host = Some(v.to_string()),
                ("pid", v) => pid = v.parse().ok(),
                ("redis_prefix", v) => prefix = Some(v.to_string()),
                _ => {}
            }
        }
        Some(Self {
            host: host?,
            pid: pid?,
            redis_prefix: prefix?,
        })
    }

    /// Dead means: created on this host by a process that no longer exists. Runs from other
    /// machines sharing the server are never touched.
    fn is_dead_here(&self) -> bool {
        self.host == hostname()
            && self.pid != std::process::id() as i32
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), None).is_err()
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Drop the scratch databases and Redis key prefixes of runs on this host whose process is
/// gone (a SIGKILL leaves them behind on long-lived servers). Returns what was removed.
/// Runs once per process from [`LabCtx::new`] on the env backend, and from `lab doctor`.
pub async fn sweep_dead_owners(admin_url: &str, redis_url: &str) -> Vec<String> {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Vec::new();
    }
    sweep_now(admin_url, redis_url).await
}

pub(crate) async fn sweep_now(admin_url: &str, redis_url: &str) -> Vec<String> {
    let found: Result<Vec<(String, Option<String>)>, sqlx::Error> = async {
        let mut conn = sqlx::PgConnection::connect(admin_url).await?;
        let rows = sqlx::query_as(
            "SELECT datname::text, shobj_description(oid, 'pg_database') \
             FROM pg_database WHERE datname LIKE 'lab\\_%'",
        )
        .fetch_all(&mut conn)
        .await?;
        let _ = conn.close().await;
        Ok(rows)
    }
    .await;
    let mut removed = Vec::new();
    for (name, comment) in found.unwrap_or_default() {
        let Some(owner) = comment.as_deref().and_then(Owner::parse) else {
            continue;
        };
        if !owner.is_dead_here() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let scratch = Scratch {
            name: name.clone(),
            admin_url: admin_url.to_string(),
            url: String::new(),
            redis_url: redis_url.to_string(),
            redis_prefix: owner.redis_prefix.clone(),
            keep: false,
            done: true,
        };
        scratch.cleanup().await;
        tracing::info!(db = %name, pid = owner.pid, "swept a scratch database whose run is gone");
        removed.push(name);
    }
    removed
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
