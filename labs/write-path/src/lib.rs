//! The write path: batching, COPY, commit cost, pool size and an async write queue.
//!
//! The war story: "reads are fine, but writes are becoming the bottleneck as we grow — what
//! do you weigh?" An ingestion endpoint inserts one row per request, each in its own
//! transaction. At peak it cannot keep up; someone raises the pool to 200 connections and
//! it gets slower. The options are each a number and a trade-off: batch the rows, use
//! `COPY`, pay for durability knowingly (`synchronous_commit`), size the pool for the
//! database rather than for the traffic, and move writes behind a queue.
//!
//! The mechanism: with `fsync = on`, every `COMMIT` waits for the WAL to reach the disk
//! (one `fdatasync`), so one row per transaction is capped by the disk's flush rate, not by
//! Postgres. Fewer commits (transactions of 100 or 1,000 rows), fewer statements (multi-row
//! `VALUES`, `UNNEST` of arrays) and no per-row protocol at all (`COPY`) each remove a cost
//! per row. `synchronous_commit = off` removes the wait and accepts losing the last
//! acknowledged commits in a crash. More connections help only while the flush and the CPUs
//! have idle time; past that they queue inside Postgres (Little's law). A queue takes the
//! commit out of the request's latency and puts durability a batch later — in Redis until
//! then.
//!
//! Module map, in reading order:
//!
//! | module | what it holds |
//! |---|---|
//! | [`schema`] | the `events` table, the deterministic rows, the checksum |
//! | [`target`] | the lab's own Postgres with `fsync = on` (or the run's, said plainly) |
//! | [`insert_methods`] | seven ways to insert the same rows; the 65,535 bind-parameter limit |
//! | [`copy_format`] | `COPY FROM STDIN`, text and binary encoders |
//! | [`pgbench`] | the anchor: pgbench's own single-row INSERT rate on the same server |
//! | [`durability`] | `synchronous_commit` on/off, crash after acknowledged commits, group commit |
//! | [`pool_size`] | pools of 2 … 128 at one offered write load; waits in `pg_stat_activity` |
//! | [`queue`] | the Redis stream writer: batches by COPY, idempotent by event id |
//! | [`api`] | the HTTP endpoints: direct insert vs queued, one router |
//! | [`ingest`] | the queue scenario: API p99, end-to-end delay, Redis dies |
//! | [`run`] | the run, step by step |
//! | [`report`] | findings, tables, notes, the sentence |

pub mod api;
pub mod copy_format;
pub mod durability;
pub mod ingest;
pub mod insert_methods;
pub mod pgbench;
pub mod pool_size;
pub mod queue;
pub mod report;
pub mod run;
pub mod schema;
pub mod target;

use std::sync::Arc;

use labkit::{LabCtx, Report, ServeApp};

pub use api::{AppState, router};
pub use report::FINDING_KEYS;

/// The `write-path` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct WritePath;

#[labkit::async_trait]
impl labkit::Lab for WritePath {
    fn id(&self) -> &'static str {
        "write-path"
    }

    fn title(&self) -> &'static str {
        "The write path: batching, COPY, commit cost, pool size and an async write queue"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(include_str!("../baseline.json"))
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        run::run(ctx, self.title()).await
    }

    /// The API on the lab's own `fsync = on` Postgres (where the backend can start one),
    /// the stream on the run's Redis, and a writer draining it in the background.
    async fn serve(&self, ctx: &LabCtx) -> anyhow::Result<Option<ServeApp>> {
        let target = target::Target::open(ctx).await?;
        let pool = target
            .pool(ingest::API_POOL, target.connect_options())
            .await?;
        let client = ctx.redis_client();
        let mut conn = client.get_multiplexed_async_connection().await?;
        let stream = ctx.key("events");
        queue::setup(&mut conn, &stream).await?;
        let writer =
            queue::BackgroundWriter::spawn(target.connect_options(), client, stream.clone());
        let state = AppState {
            pg: pool,
            redis: conn,
            stream: Arc::from(stream.as_str()),
        };
        Ok(Some(ServeApp {
            router: router(state),
            banner: include_str!("../curl.md").to_string(),
            // The writer stops before the server it writes to.
            keep_alive: vec![Box::new(writer), Box::new(target)],
        }))
    }
}
