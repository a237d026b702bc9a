//! Where a lab's Postgres and Redis come from.
//!
//! Resolution order (DESIGN.md, "Backends"), each step skipped when it does not apply:
//!
//! 1. `env`    — `DATABASE_URL` and `REDIS_URL` point at servers the user runs.
//! 2. `docker` — a Docker engine answers a ping → testcontainers starts postgres and redis.
//! 3. `local`  — `initdb`/`postgres` and `redis-server` are installed → throwaway servers in
//!    a temp dir on free loopback ports, stopped and deleted on drop.
//! 4. nothing  — one error that names the three ways to get a backend.
//!
//! The decision itself is [`select`], a pure function over a [`Probe`], so it is unit-tested
//! without needing Docker (which our CI machines do not have).

pub mod docker;
pub mod local;

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use local::{LocalPostgres, LocalRedis, PostgresOptions, RedisOptions};

/// What the user asked for with `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// the first that applies: env, docker, local
    #[default]
    Auto,
    /// DATABASE_URL and REDIS_URL (your servers)
    Env,
    /// testcontainers starts postgres and redis
    Docker,
    /// throwaway servers from the installed binaries
    Local,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "env" => Ok(Self::Env),
            "docker" => Ok(Self::Docker),
            "local" => Ok(Self::Local),
            other => Err(format!(
                "unknown backend `{other}` (expected auto, env, docker or local)"
            )),
        }
    }
}

impl BackendChoice {
    /// Read `LAB_BACKEND` (used by tests and CI to force a backend without a CLI flag).
    pub fn from_env() -> Result<Self, BackendError> {
        match std::env::var("LAB_BACKEND") {
            Ok(v) if !v.trim().is_empty() => {
                v.trim().parse().map_err(|reason| BackendError::InvalidVar {
                    var: "LAB_BACKEND",
                    reason,
                })
            }
            _ => Ok(Self::Auto),
        }
    }
}

/// The backend that was actually used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Env,
    Docker,
    Local,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Env => "env",
            Self::Docker => "docker",
            Self::Local => "local",
        })
    }
}

/// Everything [`select`] needs to know about the machine. Probing docker costs a ping, so
/// [`Backends::resolve`] fills these lazily, only as far as the decision needs.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// `DATABASE_URL` / `REDIS_URL`, as set (empty strings count as unset).
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    /// `Ok(())` when a Docker engine answered; otherwise why not.
    pub docker: Option<Result<(), String>>,
    /// `Ok` when initdb/postgres/redis-server were found; otherwise what is missing.
    pub local: Option<Result<local::LocalBins, String>>,
}

/// The pure resolution rule. `Ok(kind)` when a backend applies; `Err` is the error to show.
/// `None` inside the probe means "not probed yet": the caller probes it and asks again
/// ([`Decision::NeedDocker`] / [`Decision::NeedLocal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Use(BackendKind),
    NeedDocker,
    NeedLocal,
}

pub fn select(choice: BackendChoice, probe: &Probe) -> Result<Decision, BackendError> {
    let env_state = match (&probe.database_url, &probe.redis_url) {
        (Some(_), Some(_)) => Some(Ok(())),
        (Some(_), None) => Some(Err("REDIS_URL")),
        (None, Some(_)) => Some(Err("DATABASE_URL")),
        (None, None) => None,
    };
    match choice {
        BackendChoice::Env => match env_state {
            Some(Ok(())) => Ok(Decision::Use(BackendKind::Env)),
            Some(Err(missing)) => Err(BackendError::HalfEnv { missing }),
            None => Err(BackendError::EnvNotSet),
        },
        BackendChoice::Docker => match &probe.docker {
            None => Ok(Decision::NeedDocker),
            Some(Ok(())) => Ok(Decision::Use(BackendKind::Docker)),
            Some(Err(reason)) => Err(BackendError::DockerUnavailable {
                reason: reason.clone(),
            }),
        },
        BackendChoice::Local => match &probe.local {
            None => Ok(Decision::NeedLocal),
            Some(Ok(_)) => Ok(Decision::Use(BackendKind::Local)),
            Some(Err(missing)) => Err(BackendError::LocalNotFound {
                missing: missing.clone(),
            }),
        },
        BackendChoice::Auto => {
            // A half-set environment is a mistake worth stopping for: silently starting a
            // throwaway server would hide that the user's DATABASE_URL was ignored.
            match env_state {
                Some(Ok(())) => return Ok(Decision::Use(BackendKind::Env)),
                Some(Err(missing)) => return Err(BackendError::HalfEnv { missing }),
                None => {}
            }
            match &probe.docker {
                None => return Ok(Decision::NeedDocker),
                Some(Ok(())) => return Ok(Decision::Use(BackendKind::Docker)),
                Some(Err(_)) => {}
            }
            match &probe.local {
                None => Ok(Decision::NeedLocal),
                Some(Ok(_)) => Ok(Decision::Use(BackendKind::Local)),
                Some(Err(local_missing)) => Err(BackendError::NoBackend {
                    docker: probe
                        .docker
                        .as_ref()
                        .and_then(|d| d.as_ref().err().cloned())
                        .unwrap_or_default(),
                    local: local_missing.clone(),
                }),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "no Postgres/Redis backend available. Pick one of:\n  \
         1. export DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379 \
         (your own servers, or `docker compose up -d` in this repo)\n  \
         2. start a Docker engine (testcontainers will start postgres and redis) — {docker}\n  \
         3. install PostgreSQL and Redis binaries (initdb, postgres, redis-server) — {local}"
    )]
    NoBackend { docker: String, local: String },
    #[error(
        "--backend env: DATABASE_URL and REDIS_URL are not set (hint: export both, or use --backend auto)"
    )]
    EnvNotSet,
    #[error(
        "{missing} is not set while its partner is; set both DATABASE_URL and REDIS_URL, or neither to use a throwaway backend"
    )]
    HalfEnv { missing: &'static str },
    #[error("{var} is invalid: {reason}")]
    InvalidVar { var: &'static str, reason: String },
    #[error(
        "could not connect to {var} ({target}): {reason} (hint: is the server running? unset {var} to use a throwaway backend)"
    )]
    Unreachable {
        var: &'static str,
        target: String,
        reason: String,
    },
    #[error(
        "--backend docker: no Docker engine answered ({reason}); hint: start Docker, or use --backend local / env"
    )]
    DockerUnavailable { reason: String },
    #[error(
        "--backend local: {missing} (hint: install postgresql and redis-server, or set DATABASE_URL/REDIS_URL)"
    )]
    LocalNotFound { missing: String },
    #[error("starting {what} failed: {reason}")]
    Start { what: &'static str, reason: String },
}

/// How the servers were obtained plus anything that must live as long as they are used
/// (child processes, containers). Dropping it stops and deletes throwaway servers.
pub struct Backends {
    pub kind: BackendKind,
    /// Superuser URL of a maintenance database; scratch databases are created through it.
    pub admin_url: String,
    pub redis_url: String,
    /// Time from "start" to "answers queries", for `lab doctor` (local and docker only).
    pub ready: Option<ReadyTimes>,
    _guard: Guard,
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backends")
            .field("kind", &self.kind)
            .field("admin_url", &self.admin_url)
            .field("redis_url", &self.redis_url)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReadyTimes {
    pub postgres_init: Duration,
    pub postgres_ready: Duration,
    pub redis_ready: Duration,
}

#[allow(dead_code)] // fields are held only for their Drop
enum Guard {
    None,
    Local(Box<LocalPostgres>, Box<LocalRedis>),
    Docker(Box<docker::Containers>),
}

impl Backends {
    /// Resolve with the choice from `LAB_BACKEND` (default auto). Tests use this.
    pub async fn from_env() -> Result<Self, BackendError> {
        Self::resolve(BackendChoice::from_env()?).await
    }

    /// An `env` backend on these URLs, checked as `DATABASE_URL`/`REDIS_URL` would be, for a
    /// caller that runs servers of its own beside the lab (the benches' kept cluster): the
    /// caller keeps them alive as long as this is used.
    pub async fn from_urls(admin_url: &str, redis_url: &str) -> Result<Self, BackendError> {
        check_env_urls(admin_url, redis_url).await?;
        Ok(Self {
            kind: BackendKind::Env,
            admin_url: admin_url.to_string(),
            redis_url: redis_url.to_string(),
            ready: None,
            _guard: Guard::None,
        })
    }

    /// Probe the machine as far as needed and start (or connect to) a backend.
    pub async fn resolve(choice: BackendChoice) -> Result<Self, BackendError> {
        let mut probe = Probe {
            database_url: non_empty_var("DATABASE_URL"),
            redis_url: non_empty_var("REDIS_URL"),
            ..Probe::default()
        };
        loop {
            match select(choice, &probe)? {
                Decision::NeedDocker => probe.docker = Some(docker::engine_answers().await),
                Decision::NeedLocal => probe.local = Some(local::LocalBins::find()),
                Decision::Use(kind) => return Self::start(kind, &probe).await,
            }
        }
    }

    async fn start(kind: BackendKind, probe: &Probe) -> Result<Self, BackendError> {
        match kind {
            BackendKind::Env => {
                let admin_url = probe.database_url.clone().unwrap_or_default();
                let redis_url = probe.redis_url.clone().unwrap_or_default();
                check_env_urls(&admin_url, &redis_url).await?;
                Ok(Self {
                    kind,
                    admin_url,
                    redis_url,
                    ready: None,
                    _guard: Guard::None,
                })
            }
            BackendKind::Local => {
                let bins = match &probe.local {
                    Some(Ok(b)) => b.clone(),
                    _ => local::LocalBins::find()
                        .map_err(|missing| BackendError::LocalNotFound { missing })?,
                };
                // Start both at once: initdb (~0.6 s) dominates, redis is ready in ~20 ms.
                let redis_opts = RedisOptions::default();
                let (pg, redis) = tokio::join!(
                    LocalPostgres::start(&bins),
                    LocalRedis::start(&bins, &redis_opts)
                );
                let (pg, redis) = (pg?, redis?);
                Ok(Self {
                    kind,
                    admin_url: pg.url("postgres"),
                    redis_url: redis.url(),
                    ready: Some(ReadyTimes {
                        postgres_init: pg.init_time,
                        postgres_ready: pg.ready_time,
                        redis_ready: redis.ready_time,
                    }),
                    _guard: Guard::Local(Box::new(pg), Box::new(redis)),
                })
            }
            BackendKind::Docker => {
                let started = Instant::now();
                let containers = docker::Containers::start().await?;
                let elapsed = started.elapsed();
                Ok(Self {
                    kind,
                    admin_url: containers.postgres_url.clone(),
                    redis_url: containers.redis_url.clone(),
                    ready: Some(ReadyTimes {
                        postgres_init: Duration::ZERO,
                        postgres_ready: elapsed,
                        redis_ready: elapsed,
                    }),
                    _guard: Guard::Docker(Box::new(containers)),
                })
            }
        }
    }

    /// The local Postgres, when this is a local backend (labs that restart or reconfigure
    /// their own servers use it; most never need it).
    pub fn local_postgres(&self) -> Option<&LocalPostgres> {
        match &self._guard {
            Guard::Local(pg, _) => Some(pg),
            _ => None,
        }
    }
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Validate the user's URLs up front so a typo is one clear line, not a stack of sqlx errors.
async fn check_env_urls(database_url: &str, redis_url: &str) -> Result<(), BackendError> {
    use sqlx::ConnectOptions;
    let opts: sqlx::postgres::PgConnectOptions =
        database_url
            .parse()
            .map_err(|e: sqlx::Error| BackendError::InvalidVar {
                var: "DATABASE_URL",
                reason: format!("{e} (expected postgres://user@host:5432/db)"),
            })?;
    let conn = tokio::time::timeout(Duration::from_secs(5), opts.connect()).await;
    match conn {
        Ok(Ok(c)) => drop(c),
        Ok(Err(e)) => {
            return Err(BackendError::Unreachable {
                var: "DATABASE_URL",
                target: redact(database_url),
                reason: e.to_string(),
            });
        }
        Err(_) => {
            return Err(BackendError::Unreachable {
                var: "DATABASE_URL",
                target: redact(database_url),
                reason: "timed out after 5 s".into(),
            });
        }
    }
    let client = redis::Client::open(redis_url).map_err(|e| BackendError::InvalidVar {
        var: "REDIS_URL",
        reason: format!("{e} (expected redis://host:6379)"),
    })?;
    let ping = tokio::time::timeout(Duration::from_secs(5), async {
        let mut c = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut c).await
    })
    .await;
    match ping {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(BackendError::Unreachable {
            var: "REDIS_URL",
            target: redact(redis_url),
            reason: e.to_string(),
        }),
        Err(_) => Err(BackendError::Unreachable {
            var: "REDIS_URL",
            target: redact(redis_url),
            reason: "timed out after 5 s".into(),
        }),
    }
}

/// Hide a password in a URL before printing it (`postgres://u:***@h/db`,
/// `redis://:***@h:6379`).
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bins() -> local::LocalBins {
        local::LocalBins {
            pg_bin_dir: "/usr/lib/postgresql/15/bin".into(),
            redis_server: "/usr/bin/redis-server".into(),
        }
    }

    fn probe(env: bool, docker: Option<bool>, local: Option<bool>) -> Probe {
        Probe {
            database_url: env.then(|| "postgres://x@h/db".into()),
            redis_url: env.then(|| "redis://h".into()),
            docker: docker.map(|ok| if ok { Ok(()) } else { Err("no socket".into()) }),
            local: local.map(|ok| {
                if ok {
                    Ok(bins())
                } else {
                    Err("no initdb".into())
                }
            }),
        }
    }

    #[test]
    fn auto_prefers_env_then_docker_then_local() {
        use BackendChoice::Auto;
        let env = select(Auto, &probe(true, None, None)).unwrap();
        assert_eq!(
            env,
            Decision::Use(BackendKind::Env),
            "env wins without probing"
        );
        let ask = select(Auto, &probe(false, None, None)).unwrap();
        assert_eq!(ask, Decision::NeedDocker, "docker is probed next");
        let docker = select(Auto, &probe(false, Some(true), None)).unwrap();
        assert_eq!(docker, Decision::Use(BackendKind::Docker));
        let ask = select(Auto, &probe(false, Some(false), None)).unwrap();
        assert_eq!(ask, Decision::NeedLocal, "no engine: local is probed");
        let local = select(Auto, &probe(false, Some(false), Some(true))).unwrap();
        assert_eq!(local, Decision::Use(BackendKind::Local));
    }

    #[test]
    fn auto_with_nothing_names_all_three_ways() {
        let err = select(BackendChoice::Auto, &probe(false, Some(false), Some(false))).unwrap_err();
        let msg = err.to_string();
        for needle in ["DATABASE_URL", "Docker", "initdb", "no socket", "no initdb"] {
            assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
        }
    }

    #[test]
    fn half_set_environment_is_an_error_not_a_silent_fallback() {
        let p = Probe {
            database_url: Some("postgres://h/db".into()),
            ..Probe::default()
        };
        let err = select(BackendChoice::Auto, &p).unwrap_err();
        assert!(err.to_string().contains("REDIS_URL is not set"), "{err}");
    }

    #[test]
    fn forced_docker_without_engine_is_a_clear_error() {
        let err = select(BackendChoice::Docker, &probe(true, Some(false), Some(true))).unwrap_err();
        assert!(matches!(err, BackendError::DockerUnavailable { .. }));
        assert!(err.to_string().contains("no Docker engine answered"));
    }

    #[test]
    fn forced_choices_ignore_the_other_backends() {
        let p = probe(true, Some(true), Some(true));
        assert_eq!(
            select(BackendChoice::Local, &p).unwrap(),
            Decision::Use(BackendKind::Local)
        );
        assert_eq!(
            select(BackendChoice::Docker, &p).unwrap(),
            Decision::Use(BackendKind::Docker)
        );
        assert!(matches!(
            select(BackendChoice::Env, &probe(false, Some(true), Some(true))),
            Err(BackendError::EnvNotSet)
        ));
    }

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
