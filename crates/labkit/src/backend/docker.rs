//! The Docker backend: testcontainers starts `postgres:16-alpine` and `redis:7-alpine`,
//! and removes them when [`Containers`] drops.
//!
//! Compiled only with the `docker` feature (on for the `lab` CLI, off for the benches).
//! Not exercised on our CI machines, which have no Docker engine: there we test that the
//! engine probe fails fast and that `--backend docker` says so clearly.

#[cfg(feature = "docker")]
mod imp {
    use std::time::Duration;

    use testcontainers::ContainerAsync;
    use testcontainers::ImageExt;
    use testcontainers::runners::AsyncRunner;
    use testcontainers_modules::{postgres::Postgres, redis::Redis};

    use super::{postgres_args, redis_args};
    use crate::backend::BackendError;

    /// Ping the engine under a short timeout. Without an engine this fails in about a
    /// millisecond ("Socket not found: /var/run/docker.sock").
    pub async fn engine_answers() -> Result<(), String> {
        let ping = async {
            let docker = testcontainers::core::client::docker_client_instance()
                .await
                .map_err(|e| e.to_string())?;
            docker.ping().await.map(|_| ()).map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(2), ping).await {
            Ok(r) => r,
            Err(_) => Err("the Docker engine did not answer a ping within 2 s".into()),
        }
    }

    pub struct Containers {
        pub postgres_url: String,
        pub redis_url: String,
        _pg: ContainerAsync<Postgres>,
        _redis: ContainerAsync<Redis>,
    }

    /// A Redis container of one scenario's own, with the same flags as a local one.
    pub struct DedicatedRedis {
        pub url: String,
        container: Option<ContainerAsync<Redis>>,
    }

    impl DedicatedRedis {
        pub async fn start(opts: &crate::backend::RedisOptions) -> Result<Self, BackendError> {
            let err = |e: testcontainers::TestcontainersError| BackendError::Start {
                what: "redis container",
                reason: e.to_string(),
            };
            let c = Redis::default()
                .with_tag("7-alpine")
                .with_cmd(redis_args(opts))
                .start()
                .await
                .map_err(err)?;
            let host = c.get_host().await.map_err(err)?;
            let port = c.get_host_port_ipv4(6379).await.map_err(err)?;
            Ok(Self {
                url: format!("redis://{host}:{port}"),
                container: Some(c),
            })
        }

        pub async fn stop(&mut self) {
            if let Some(c) = self.container.take() {
                let _ = c.stop().await;
                let _ = c.rm().await;
            }
        }
    }

    impl Containers {
        pub async fn start() -> Result<Self, BackendError> {
            let err = |what: &'static str| {
                move |e: testcontainers::TestcontainersError| BackendError::Start {
                    what,
                    reason: e.to_string(),
                }
            };
            // The same settings as a local throwaway server, so numbers agree across
            // backends (the report prints them either way).
            let (pg, redis) = tokio::join!(
                Postgres::default()
                    .with_tag("16-alpine")
                    .with_cmd(postgres_args())
                    .with_shm_size(512 * 1024 * 1024)
                    .start(),
                Redis::default()
                    .with_tag("7-alpine")
                    .with_cmd(redis_args(&crate::backend::RedisOptions::default()))
                    .start()
            );
            let pg = pg.map_err(err("postgres container"))?;
            let redis = redis.map_err(err("redis container"))?;
            let pg_host = pg.get_host().await.map_err(err("postgres container"))?;
            let pg_port = pg
                .get_host_port_ipv4(5432)
                .await
                .map_err(err("postgres container"))?;
            let redis_host = redis.get_host().await.map_err(err("redis container"))?;
            let redis_port = redis
                .get_host_port_ipv4(6379)
                .await
                .map_err(err("redis container"))?;
            Ok(Self {
                // The module's defaults: user/password/db all "postgres".
                postgres_url: format!("postgres://postgres:postgres@{pg_host}:{pg_port}/postgres"),
                redis_url: format!("redis://{redis_host}:{redis_port}"),
                _pg: pg,
                _redis: redis,
            })
        }
    }
}

#[cfg(not(feature = "docker"))]
mod imp {
    use crate::backend::BackendError;

    pub struct DedicatedRedis {
        pub url: String,
    }

    impl DedicatedRedis {
        pub async fn start(_: &crate::backend::RedisOptions) -> Result<Self, BackendError> {
            Err(BackendError::DockerUnavailable {
                reason: engine_answers().await.unwrap_err(),
            })
        }

        pub async fn stop(&mut self) {}
    }

    pub async fn engine_answers() -> Result<(), String> {
        Err("this build has no Docker support (labkit's `docker` feature is off)".into())
    }

    pub struct Containers {
        pub postgres_url: String,
        pub redis_url: String,
    }

    impl Containers {
        pub async fn start() -> Result<Self, BackendError> {
            Err(BackendError::DockerUnavailable {
                reason: engine_answers().await.unwrap_err(),
            })
        }
    }
}

pub use imp::{Containers, DedicatedRedis, engine_answers};

/// `postgres -c ...` for the container: the local backend's settings (see
/// `backend::local`), so a docker run's numbers are comparable with a local one's.
pub fn postgres_args() -> Vec<String> {
    let mut args = vec!["postgres".to_string()];
    for (k, v) in super::local::DEFAULT_SETTINGS {
        if *k == "listen_addresses" {
            continue; // inside the container it must listen on its own interface
        }
        args.push("-c".into());
        args.push(format!("{k}={v}"));
    }
    args
}

/// `redis-server ...` for the container: no persistence, like a local one.
pub fn redis_args(opts: &super::RedisOptions) -> Vec<String> {
    let mut args: Vec<String> = ["redis-server", "--save", "", "--appendonly", "no"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(m) = &opts.maxmemory {
        args.extend(["--maxmemory".into(), m.clone()]);
    }
    if let Some(p) = &opts.maxmemory_policy {
        args.extend(["--maxmemory-policy".into(), p.clone()]);
    }
    args
}
