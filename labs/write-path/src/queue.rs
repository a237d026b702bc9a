//! The async write queue: a Redis stream in front of Postgres, drained in COPY batches.
//!
//! The endpoint appends the event to a stream (`XADD`, ~0.1 ms, no disk) and answers
//! `202 Accepted`; a writer reads the stream through a consumer group (`XREADGROUP`), waits
//! up to `linger` for a batch to fill, writes the batch in one transaction, and only then
//! acknowledges it (`XACK`) and deletes it (`XDEL`). The API's latency no longer includes a
//! commit; the price is the delay until the event is durable (linger + one COPY commit), and
//! that until then the event lives only in Redis.
//!
//! Delivery is at least once: a writer that dies after `COMMIT` and before `XACK` leaves the
//! batch in its pending list, and the restarted writer reads it again (`XREADGROUP ... 0`,
//! its own pending entries, before any new ones). The batch is made idempotent by the event
//! id, assigned at the API: the rows are `COPY`'d into a temporary staging table and moved
//! with `INSERT ... ON CONFLICT (event_id) DO NOTHING`, so a replayed batch inserts nothing
//! twice. (A plain `COPY` into `events` would fail the replay on the primary key — forever,
//! a poison batch — and without the key it would duplicate the rows.) A writer on another
//! machine that never comes back is the job of `XAUTOCLAIM`; this lab restarts the same
//! consumer, which is the common case.
//!
//! What the queue cannot survive is Redis itself losing the stream: the lab's Redis runs
//! without persistence (no RDB, no AOF), so stopping it loses every acknowledged entry not
//! yet written. `appendonly yes` with `appendfsync everysec` narrows that to about a second;
//! `appendfsync always` pays a disk flush per `XADD` — a commit again, in another server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use labkit::Recorder;
use redis::aio::MultiplexedConnection;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::copy_format::{self, CopyFormat};
use crate::schema::Event;

/// The consumer group every writer reads through.
pub const GROUP: &str = "writers";

/// How long one `XREADGROUP` blocks waiting for the first entry of a batch; the writer
/// checks its stop flag this often.
const BLOCK: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// The fault the tests and the run inject: the writer dies after `COMMIT`, before `XACK`.
    #[error("writer crashed after committing batch {0} and before acknowledging it")]
    InjectedCrash(u64),
}

/// Create the stream and its consumer group, if they are not there yet.
pub async fn setup(redis: &mut MultiplexedConnection, stream: &str) -> Result<(), QueueError> {
    let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(redis)
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => Ok(other?),
    }
}

/// Append `event` to the stream; returns the entry's stream id. This is all the API waits for.
pub async fn enqueue(
    redis: &mut MultiplexedConnection,
    stream: &str,
    event: &Event,
) -> Result<String, QueueError> {
    let body = serde_json::to_string(event).map_err(|e| {
        redis::RedisError::from((redis::ErrorKind::Client, "encode event", e.to_string()))
    })?;
    Ok(redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("e")
        .arg(body)
        .query_async(redis)
        .await?)
}

/// Entries waiting in the stream (`XLEN`: written but not yet deleted by a writer).
pub async fn backlog(redis: &mut MultiplexedConnection, stream: &str) -> Result<u64, QueueError> {
    Ok(redis::cmd("XLEN").arg(stream).query_async(redis).await?)
}

/// How a writer batches, and the fault to inject.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The consumer name: a restarted writer uses the same one, to find its pending batch.
    pub consumer: String,
    pub max_batch: usize,
    /// After the first entry of a batch, wait this long for more (0 = write what is there).
    pub linger: Duration,
    /// Crash (return [`QueueError::InjectedCrash`]) after committing this many batches,
    /// before acknowledging the last one. Cleared on restart.
    pub crash_after_batches: Option<u64>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            consumer: "writer-1".into(),
            max_batch: 1_000,
            linger: Duration::from_millis(50),
            crash_after_batches: None,
        }
    }
}

/// What a writer did, across restarts.
#[derive(Debug, Clone)]
pub struct WriterStats {
    pub batches: u64,
    /// Entries read from the stream, redeliveries included.
    pub read: u64,
    /// Rows the batches inserted into `events`.
    pub inserted: u64,
    /// Entries whose row was already there (a replayed batch): skipped by `ON CONFLICT`.
    pub skipped_duplicates: u64,
    /// Entries that could not be decoded (acknowledged and dropped; counted, never silent).
    pub undecodable: u64,
    pub restarts: u64,
    /// From the API's `202` to the batch's `COMMIT` returning, per entry.
    pub end_to_end: Recorder,
}

impl Default for WriterStats {
    fn default() -> Self {
        Self {
            batches: 0,
            read: 0,
            inserted: 0,
            skipped_duplicates: 0,
            undecodable: 0,
            restarts: 0,
            end_to_end: Recorder::new(),
        }
    }
}

impl WriterStats {
    pub fn mean_batch(&self) -> f64 {
        self.read as f64 / self.batches.max(1) as f64
    }
}

/// One writer process: its own Postgres session (with the staging table) and Redis
/// connection (an `XREADGROUP ... BLOCK` would hold up any other command sharing it).
pub struct Writer {
    pg: PgConnection,
    redis: MultiplexedConnection,
    stream: String,
    cfg: WriterConfig,
}

type Batch = Vec<(String, Option<Event>)>;

impl Writer {
    pub async fn start(
        pg: &PgConnectOptions,
        redis: &redis::Client,
        stream: &str,
        cfg: WriterConfig,
    ) -> Result<Self, QueueError> {
        let mut pg = pg.connect().await?;
        // Temporary: no WAL, private to this session, emptied at every COMMIT.
        sqlx::query("CREATE TEMP TABLE events_staging (LIKE events) ON COMMIT DELETE ROWS")
            .execute(&mut pg)
            .await?;
        let redis = redis.get_multiplexed_async_connection().await?;
        Ok(Self {
            pg,
            redis,
            stream: stream.to_string(),
            cfg,
        })
    }

    /// Write batches until `stop` is set and the stream has nothing more for this writer.
    pub async fn run(
        &mut self,
        stop: &AtomicBool,
        stats: &mut WriterStats,
    ) -> Result<(), QueueError> {
        // First what this consumer was given before and never acknowledged: a restart after
        // a crash finds its last batch here.
        loop {
            let pending = self.read("0", self.cfg.max_batch, None).await?;
            if pending.is_empty() {
                break;
            }
            self.write(pending, stats).await?;
        }
        loop {
            let mut batch = self.read(">", self.cfg.max_batch, Some(BLOCK)).await?;
            if batch.is_empty() {
                if stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                continue;
            }
            if batch.len() < self.cfg.max_batch && !self.cfg.linger.is_zero() {
                tokio::time::sleep(self.cfg.linger).await;
                let more = self.cfg.max_batch - batch.len();
                match self.read(">", more, None).await {
                    Ok(more) => batch.extend(more),
                    Err(e) => {
                        // Redis went away while the batch lingered: what is in hand can
                        // still be made durable (it cannot be acknowledged any more).
                        let _ = self.write(batch, stats).await;
                        return Err(e);
                    }
                }
            }
            self.write(batch, stats).await?;
        }
    }

    /// `XREADGROUP GROUP writers <consumer> COUNT n [BLOCK ms] STREAMS <stream> <id>`:
    /// `>` for new entries, `0` for this consumer's pending ones.
    async fn read(
        &mut self,
        id: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Batch, QueueError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.cfg.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(b) = block {
            cmd.arg("BLOCK").arg(b.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(id);
        // [[stream, [[id, [field, value, ...] | nil], ...]]], or nil when nothing came.
        type Reply = Option<Vec<(String, Vec<(String, Option<Vec<String>>)>)>>;
        let reply: Reply = cmd.query_async(&mut self.redis).await?;
        Ok(reply
            .into_iter()
            .flatten()
            .flat_map(|(_, entries)| entries)
            .map(|(id, fields)| {
                let event = fields.and_then(|f| {
                    f.chunks(2)
                        .find(|kv| kv[0] == "e" && kv.len() == 2)
                        .and_then(|kv| serde_json::from_str::<Event>(&kv[1]).ok())
                });
                (id, event)
            })
            .collect())
    }

    /// The idempotent batch: COPY into staging, move with ON CONFLICT DO NOTHING, COMMIT,
    /// then XACK + XDEL. A crash anywhere before XACK replays the batch harmlessly.
    async fn write(&mut self, batch: Batch, stats: &mut WriterStats) -> Result<(), QueueError> {
        let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
        let events: Vec<Event> = batch.into_iter().filter_map(|(_, e)| e).collect();
        stats.undecodable += (ids.len() - events.len()) as u64;
        stats.read += ids.len() as u64;
        if !events.is_empty() {
            let mut tx = self.pg.begin().await?;
            copy_format::copy_in(&mut tx, "events_staging", CopyFormat::Binary, &events).await?;
            let inserted = sqlx::query(
                "INSERT INTO events (event_id, device_id, kind, value, payload, created_at)
                 SELECT event_id, device_id, kind, value, payload, created_at
                 FROM events_staging
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            let now = chrono::Utc::now();
            for e in &events {
                let delay = (now - e.created_at).to_std().unwrap_or_default();
                stats.end_to_end.record(delay);
            }
            stats.inserted += inserted;
            stats.skipped_duplicates += events.len() as u64 - inserted;
        }
        stats.batches += 1;
        if self.cfg.crash_after_batches == Some(stats.batches) {
            return Err(QueueError::InjectedCrash(stats.batches));
        }
        let mut pipe = redis::pipe();
        pipe.cmd("XACK")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(&ids)
            .ignore()
            .cmd("XDEL")
            .arg(&self.stream)
            .arg(&ids)
            .ignore();
        pipe.query_async::<()>(&mut self.redis).await?;
        Ok(())
    }
}

/// Run a writer until `stop` and the stream is drained, restarting it (a fresh session and
/// connection, the same consumer name) after an injected crash, as a supervisor would.
/// Returns what it did, and the error that stopped it if one did (Redis gone, say).
pub async fn run_writer(
    pg: &PgConnectOptions,
    redis: &redis::Client,
    stream: &str,
    mut cfg: WriterConfig,
    stop: &AtomicBool,
) -> (WriterStats, Result<(), QueueError>) {
    let mut stats = WriterStats::default();
    loop {
        let outcome = async {
            let mut w = Writer::start(pg, redis, stream, cfg.clone()).await?;
            w.run(stop, &mut stats).await
        }
        .await;
        match outcome {
            Err(QueueError::InjectedCrash(_)) => {
                // The crashed process is gone with its session (and staging table).
                stats.restarts += 1;
                cfg.crash_after_batches = None;
            }
            other => return (stats, other),
        }
    }
}

/// A writer running in the background for `lab serve`: restarted a second after any error
/// (Redis or Postgres away), stopped when dropped.
pub struct BackgroundWriter {
    task: tokio::task::JoinHandle<()>,
}

impl BackgroundWriter {
    pub fn spawn(pg: PgConnectOptions, redis: redis::Client, stream: String) -> Self {
        let task = tokio::spawn(async move {
            let never = AtomicBool::new(false);
            loop {
                let (_, result) =
                    run_writer(&pg, &redis, &stream, WriterConfig::default(), &never).await;
                if let Err(e) = result {
                    tracing::warn!("queue writer stopped: {e}; restarting in 1 s");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Self { task }
    }
}

impl Drop for BackgroundWriter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
