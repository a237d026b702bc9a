//! The lab run: the story in four steps, each a call into its module; numbers into
//! [`crate::report`].

use std::time::Duration;

use labkit::backend::RedisOptions;
use labkit::{ExtraError, LabCtx, Report};
use sqlx::Connection;

use crate::durability::{self, CommitRate, CrashOutcome, Session};
use crate::ingest::{Comparison, Ingest, RedisCrash};
use crate::insert_methods::{self, BindLimit, Method, MethodRun};
use crate::pgbench::{self, PgbenchRun};
use crate::pool_size::{self, PoolPoint};
use crate::schema;
use crate::target::Target;

/// Everything the run measured, for [`crate::report::build`].
#[derive(Debug, Default)]
pub struct Outcome {
    pub methods: Vec<MethodRun>,
    pub bind_limit: Option<BindLimit>,
    pub pgbench_single: Option<Result<PgbenchRun, String>>,
    pub pgbench_many: Option<Result<PgbenchRun, String>>,
    pub sync_on: Option<CommitRate>,
    pub sync_off: Option<CommitRate>,
    pub group_commit: Vec<CommitRate>,
    pub commit_delay_skipped: Option<String>,
    pub crashes: Vec<CrashOutcome>,
    pub crash_skipped: Option<String>,
    pub capacity_rows_per_s: f64,
    pub pool_rate: f64,
    pub pools: Vec<PoolPoint>,
    pub http_rate: f64,
    pub queue: Option<Comparison>,
    pub redis_crash: Option<RedisCrash>,
    pub queue_skipped: Option<String>,
}

/// Where the lab's load-phase ids start: above every id the insert methods use.
const LOAD_IDS_FROM: u64 = 1 << 40;

pub async fn run(ctx: &LabCtx, title: &str) -> anyhow::Result<Report> {
    let s = ctx.scale;
    let seed = ctx.seed;
    let duration = ctx.duration(s.pick(ms(300), ms(2_000), ms(5_000)));
    let warmup = ctx.warmup(s.pick(ms(0), ms(300), ms(1_000)));
    let events = schema::EventStream::new(seed, LOAD_IDS_FROM);
    let mut out = Outcome::default();

    // The server: a Postgres of the lab's own with fsync on, because commit cost is the story.
    let mut target = Target::open(ctx).await?;

    // 1. Insert methods: the same rows, seven ways, one connection.
    let rows = schema::generate(seed, 0..s.pick(400, 2_000, 50_000));
    let mut conn = target.connect().await?;
    for method in Method::ALL {
        out.methods
            .push(insert_methods::measure(&mut conn, method, &rows).await?);
    }
    // ... and the multi-row INSERT too big for the protocol, then its UNNEST fix.
    out.bind_limit = Some(insert_methods::oversized_insert(&mut conn, seed).await?);
    schema::reset(&mut conn).await?;
    let _ = conn.close().await;
    // The anchor: pgbench, the same INSERT, the same server.
    out.pgbench_single = Some(
        pgbench::single_row_inserts(&target.url, 1, duration)
            .await
            .map_err(|e| e.to_string()),
    );

    // 2. Durability: what the flush per commit costs, and what skipping it loses.
    let on = Session::DEFAULT;
    let off = Session {
        synchronous_commit: false,
        ..on
    };
    let rate = |label: String, writers: usize, session: Session| {
        durability::commit_rate(&target, label, writers, session, duration, warmup, &events)
    };
    out.sync_on = Some(rate("1 writer, synchronous_commit=on".into(), 1, on).await?);
    out.sync_off = Some(rate("1 writer, synchronous_commit=off".into(), 1, off).await?);
    // Group commit: many writers share each flush; commit_delay tries to make them share more.
    let writers = ctx.clients(s.pick(8, 32, 64));
    for delay_us in [0, 1_000] {
        let label = format!("{writers} writers, commit_delay={delay_us}us");
        let session = Session {
            commit_delay_us: delay_us,
            ..on
        };
        match rate(label, writers, session).await {
            Ok(r) => out.group_commit.push(r),
            // commit_delay needs a superuser: on a user's own server it may be refused.
            Err(e) if delay_us > 0 => out.commit_delay_skipped = Some(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    out.pgbench_many = Some(
        pgbench::single_row_inserts(&target.url, writers as u32, duration)
            .await
            .map_err(|e| e.to_string()),
    );
    // Crash the server right after acknowledged commits, with and without the flush.
    if target.server.is_some() {
        let trigger = s.pick(200, 2_000, 5_000);
        for sync in [true, false] {
            out.crashes
                .push(durability::crash_after_acks(&mut target, sync, trigger, seed).await?);
        }
    } else {
        out.crash_skipped = target.fallback_reason.clone();
    }

    // 3. Pool size: the same offered write load through pools of 2 … 128 connections.
    let probe = s.pick(ms(300), ms(1_000), ms(2_000));
    out.capacity_rows_per_s = pool_size::capacity(&target, 8, probe, &events).await?;
    // 70 % of what 8 writers reach: a load the right pool carries with room to spare.
    out.pool_rate = ctx.rate(((out.capacity_rows_per_s * 0.7) / 100.0).round().max(1.0) * 100.0);
    let sizes: &[u32] = s.pick(&[2, 8, 32], &pool_size::SIZES, &pool_size::SIZES);
    for &size in sizes {
        out.pools
            .push(pool_size::at_size(&target, size, out.pool_rate, duration, &events).await?);
    }

    // 4. The async write queue: the API in front of a Redis stream, then Redis dies.
    out.http_rate = ctx.rate(s.pick(200.0, 300.0, 500.0));
    match ctx.dedicated_redis(&RedisOptions::default()).await {
        Ok(mut redis) => {
            let ingest = Ingest::start(&target, &redis, &ctx.key("events")).await?;
            out.queue = Some(ingest.compare(out.http_rate, duration).await?);
            out.redis_crash = Some(
                ingest
                    .redis_crash(&mut redis, out.http_rate, duration)
                    .await?,
            );
            ingest.stop().await;
        }
        Err(ExtraError::Unavailable(why)) => out.queue_skipped = Some(why),
        Err(e) => return Err(e.into()),
    }

    Ok(crate::report::build(ctx, title, &target, &out))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
