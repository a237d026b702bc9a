//! The lab run: the war story, step by step, against the real service and provider over
//! real HTTP. This file is the story; each step is a module beside it (`scenarios/*.rs`),
//! and what the report says about the results is [`crate::report`].
//!
//! 1. A client retries after timeouts, without a key and then with one.
//! 2. Check-then-insert under bursts of 50 concurrent duplicates, repeated until the race shows.
//! 3. The key record under bursts of 50 (repeated) and one big burst.
//! 4. A crash after each recovery point (and two provider failures), then retries.
//! 5. The cost: first request with and without the layer, and a replay.
//! 6. Webhooks: pre-existing duplicates removed, then one event redelivered k times.
//! 7. The reaper on a table of expired and live keys.
//! 8. The hard edges: malformed, oversized, mistyped and NUL-laden requests, tampered keys.

mod bursts;
mod cost;
mod crashes;
mod hard_edges;
mod reaping;
mod redelivery;
mod retries;

use labkit::http::TestServer;
use labkit::{Knob, LabCtx, Report, SqlCounter};
use sqlx::PgPool;

use crate::app::{self, App};
use crate::key::Caller;
use crate::report::Results;
use crate::schema;

pub use bursts::{BURST, GUARDED_PROVIDER_LATENCY, Guarded, NaiveRace};
pub use cost::Cost;
pub use crashes::Crash;
pub use hard_edges::HardEdges;
pub use reaping::Reaped;
pub use redelivery::Hooks;
pub use retries::RetryStory;

/// The running system every step pokes: the app, its service on a loopback port (statements
/// counted per request), and an outside client.
pub struct Stage<'a> {
    pub ctx: &'a LabCtx,
    pub app: App,
    pub service: TestServer,
    pub http: reqwest::Client,
    pub sql: SqlCounter,
}

impl Stage<'_> {
    pub fn url(&self, path: &str) -> String {
        self.service.url(path)
    }

    /// How many times the provider charged the caller behind `token`.
    pub fn charges(&self, token: &str) -> usize {
        self.app
            .provider
            .charges_for(Caller::from_token(token).as_str())
    }

    pub fn pool(&self) -> &PgPool {
        &self.ctx.pg
    }
}

pub async fn run(ctx: &LabCtx, title: &str) -> anyhow::Result<Report> {
    // The bursts are the scenario itself: N duplicates held at a barrier and released
    // together. Only the cost phases are load phases, and they are closed loops.
    ctx.ignores(
        Knob::Clients,
        "by the bursts and redeliveries — N concurrent duplicates released by a barrier is \
         the scenario itself, so their sizes stay as the scale sets them; the cost phases \
         use it",
    );
    ctx.ignores(
        Knob::Rate,
        "no open-loop phase: the cost phases are closed loops (the latency of one client's \
         request), and the bursts are released by a barrier",
    );

    // v1 schema: the webhook inbox has no unique constraint until step 6 adds it.
    schema::migrate(&ctx.pg).await?;
    let (app, provider_server) = app::assemble(ctx.pg.clone()).await?;
    let sql = SqlCounter::new();
    let service = labkit::http::spawn(sql.count_router(app.router())).await?;
    let stage = Stage {
        ctx,
        app,
        service,
        http: labkit::http::client(),
        sql,
    };

    // 1. A phone on a train: a 100 ms client timeout against a 200 ms provider, five tries.
    //    Without a key every try is a charge; with one, the first charge is replayed.
    let retry = retries::after_timeouts(&stage).await?;

    // 2. The key check most implementations ship: SELECT, charge, INSERT. Bursts of 50
    //    duplicates all pass the SELECT before any of them inserts.
    let naive = bursts::check_then_insert(&stage).await?;

    // 3. The key record claimed with INSERT … ON CONFLICT: one owner per key, 409 while it
    //    works, a byte-identical replay after — in bursts of 50 and one of up to 1,000.
    let guarded = bursts::key_record(&stage).await?;

    // 4. A crash after each recovery point, or a provider failure; the retries resume from
    //    the last committed point and the provider key stops a second charge.
    let crash = crashes::crash_and_retry(&stage).await?;

    // 5. What the layer costs per request: first request, no idempotency, replay.
    let cost = cost::measure(&stage).await?;

    // 6. Webhooks: the dedupe migration on a year of v1 traffic, then one event delivered
    //    k times at once against the unique event id.
    let hooks = redelivery::redelivered(&stage).await?;

    // 7. The reaper deletes expired keys in batches and leaves live ones alone.
    let reaped = reaping::reap(&stage).await?;

    // 8. What a new user sends: every bad request is a 4xx with a JSON error, never a 5xx.
    let edges = hard_edges::bad_requests(&stage).await?;

    stage.service.stop().await;
    provider_server.stop().await;
    let results = Results {
        retry,
        naive,
        guarded,
        crash,
        cost,
        hooks,
        reaped,
        edges,
    };
    Ok(crate::report::build(ctx.report(title), &results))
}
