//! The queue scenario: the API over HTTP, direct inserts vs the Redis stream, then Redis dies.
//!
//! Both endpoints get the same open-loop request stream. The queued phase runs the writer
//! beside the load and crashes it once (after its third batch, between `COMMIT` and
//! `XACK`) to show the replayed batch inserting nothing twice. The last phase stops the
//! queue's Redis halfway through the load and counts the events the API acknowledged
//! (`202`) that never reached Postgres.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use labkit::ctx::DedicatedRedis;
use labkit::http::Connections;
use labkit::{LoadResult, OpenLoop, open_loop};
use uuid::Uuid;

use crate::api::{self, AppState};
use crate::queue::{self, WriterConfig, WriterStats};
use crate::schema;
use crate::target::Target;

/// Connections of the API's pool for the direct path: a small multiple of the cores (what
/// the pool-size sweep recommends).
pub const API_POOL: u32 = 8;

/// Keep-alive connections the load client spreads its requests over.
const LOAD_CONNECTIONS: usize = 64;

/// The direct and queued phases.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub direct: LoadResult<Uuid>,
    pub queued: LoadResult<Uuid>,
    pub writer: WriterStats,
    pub writer_error: Option<String>,
    /// Events acknowledged by the queued endpoint and not in `events` after the drain.
    pub missing: u64,
    /// Events the queued endpoint acknowledged.
    pub acked_queued: u64,
}

/// What stopping the queue's Redis cost.
#[derive(Debug, Clone)]
pub struct RedisCrash {
    pub load: LoadResult<Uuid>,
    /// Events the API answered `202` for.
    pub acknowledged: u64,
    /// Of those, rows in `events` after the writer stopped.
    pub written: u64,
    pub lost: u64,
    pub writer: WriterStats,
}

/// The API on a loopback port, wired to the target and the dedicated Redis.
pub struct Ingest {
    server: labkit::http::TestServer,
    pool: sqlx::PgPool,
    conns: Arc<Connections>,
    redis: redis::Client,
    stream: String,
    pg_options: sqlx::postgres::PgConnectOptions,
}

impl Ingest {
    pub async fn start(
        target: &Target,
        redis: &DedicatedRedis,
        stream: &str,
    ) -> anyhow::Result<Self> {
        let pool = target.pool(API_POOL, target.connect_options()).await?;
        let client = redis.client();
        let mut conn = client.get_multiplexed_async_connection().await?;
        queue::setup(&mut conn, stream).await?;
        let state = AppState {
            pg: pool.clone(),
            redis: conn,
            stream: Arc::from(stream),
        };
        let server = labkit::http::spawn(api::router(state)).await?;
        Ok(Self {
            conns: Connections::new(server.addr, LOAD_CONNECTIONS),
            server,
            pool,
            redis: client,
            stream: stream.to_string(),
            pg_options: target.connect_options(),
        })
    }

    /// Open-loop POSTs of generated events to `path` at `rate` for `duration`, spread over
    /// [`LOAD_CONNECTIONS`] keep-alive connections (as wrk2 spreads its rate over `-c`); a
    /// request whose connection is busy waits, and that wait counts from its intended start.
    async fn load(
        &self,
        label: &str,
        path: &'static str,
        rate: f64,
        duration: Duration,
    ) -> LoadResult<Uuid> {
        let conns = self.conns.clone();
        open_loop(
            OpenLoop::new(rate, duration).label(label).with_timeline(),
            move |call| {
                let conns = conns.clone();
                async move {
                    let mut conn = conns.get(call.seq as usize).await;
                    api::post_event(&mut conn, path, &api::sample_body(call.seq)).await
                }
            },
        )
        .await
    }

    /// Direct inserts, then the queue with its writer (crashed once and restarted).
    pub async fn compare(&self, rate: f64, duration: Duration) -> anyhow::Result<Comparison> {
        schema::reset(&self.pool).await?;
        let direct = self
            .load("API: direct insert per request", "/events", rate, duration)
            .await;
        let stop = AtomicBool::new(false);
        let load = async {
            let r = self
                .load(
                    "API: XADD to the queue, writer drains",
                    "/events/queued",
                    rate,
                    duration,
                )
                .await;
            stop.store(true, Ordering::SeqCst);
            r
        };
        let cfg = WriterConfig {
            crash_after_batches: Some(3),
            ..WriterConfig::default()
        };
        let writer = queue::run_writer(&self.pg_options, &self.redis, &self.stream, cfg, &stop);
        let (queued, (writer, writer_result)) = tokio::join!(load, writer);
        let ids = acknowledged(&queued);
        let present = schema::present(&self.pool, &ids).await?;
        Ok(Comparison {
            missing: ids.len() as u64 - present,
            acked_queued: ids.len() as u64,
            direct,
            queued,
            writer,
            writer_error: writer_result.err().map(|e| e.to_string()),
        })
    }

    /// Queued load with the writer running; halfway through, stop Redis (no persistence).
    pub async fn redis_crash(
        &self,
        redis: &mut DedicatedRedis,
        rate: f64,
        duration: Duration,
    ) -> anyhow::Result<RedisCrash> {
        let stop = AtomicBool::new(false);
        let load = async {
            let r = self
                .load(
                    "API: queue, Redis stopped halfway",
                    "/events/queued",
                    rate,
                    duration,
                )
                .await;
            stop.store(true, Ordering::SeqCst);
            r
        };
        let kill = async {
            tokio::time::sleep(duration / 2).await;
            redis.stop().await;
        };
        let writer = queue::run_writer(
            &self.pg_options,
            &self.redis,
            &self.stream,
            WriterConfig::default(),
            &stop,
        );
        let (load, (), (writer, _redis_gone)) = tokio::join!(load, kill, writer);
        let ids = acknowledged(&load);
        let written = schema::present(&self.pool, &ids).await?;
        Ok(RedisCrash {
            acknowledged: ids.len() as u64,
            written,
            lost: ids.len() as u64 - written,
            load,
            writer,
        })
    }

    pub async fn stop(self) {
        self.server.stop().await;
        self.pool.close().await;
    }
}

/// The event ids the API acknowledged in a load phase.
fn acknowledged(r: &LoadResult<Uuid>) -> Vec<Uuid> {
    r.timeline.iter().filter_map(|s| s.out).collect()
}
