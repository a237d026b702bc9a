//! Idempotency keys: exactly-once POSTs over retries, races, crashes and webhooks.
//!
//! The war story: a phone on a train sends `POST /payments`, the response is lost in a
//! tunnel, the app retries, and the customer is charged twice. Weeks later the payment
//! provider redelivers a `charge.succeeded` webhook and the order ships twice. The fix
//! everyone names is an `Idempotency-Key` header. The bug most implementations still ship is
//! check-then-insert: look the key up, and if it's not there do the work and then save it —
//! fifty concurrent retries all look before any of them saves.
//!
//! The mechanism here: a key record in Postgres, `UNIQUE (caller, key)`, claimed with
//! `INSERT ... ON CONFLICT DO NOTHING` so exactly one request owns a key; duplicates get 409
//! while it works and a byte-for-byte replay once it's finished. The work is split into
//! atomic phases, each committed together with a recovery point (started → charge created →
//! finished), so a request that dies halfway is resumed by its retry from the last point,
//! and the one step no transaction covers — the provider call — carries a provider-side key
//! derived from the key record. Webhooks get the same treatment from a unique constraint on
//! the event id, added by a migration that first removes the duplicates already there.
//!
//! Module map, in reading order:
//!
//! | module | what it holds |
//! |---|---|
//! | [`schema`] | the tables: key record, payments, receipt outbox, webhook inbox |
//! | [`key`] | `Idempotency-Key` parsing (IETF draft), the caller from the bearer token, the request fingerprint |
//! | [`policy`] | TTL, lock timeout, body limit, and the clock they are measured on |
//! | [`idempotency`] | the key record state machine: claim, replay, 409, take over, fenced phases |
//! | [`payments`] | `POST /v1/payments`: the three phases and their recovery points |
//! | [`provider`] | the payment provider: its own HTTP server and ledger, slow/fail knobs |
//! | [`faults`] | crash injection after each recovery point |
//! | [`naive`] | no key at all, and check-then-insert — the implementations not to ship |
//! | [`webhooks`] | event inbox with a unique event id, and the dedupe migration |
//! | [`reaper`] | deleting expired keys |
//! | [`app`] | the one place the app is assembled: provider + state + router (run, serve, tests, bench) |
//! | [`errors`] | the error enum → status codes; bad bodies refused at the edge by labkit's `JsonBody` |
//! | [`client`] | the outside client: a payment, a burst released by a barrier, how a burst splits |
//! | [`bad_input`] | the corpus of bad requests and the 4xx each must get |
//! | [`scenarios`] | the lab run as story → steps (`scenarios/*.rs`) |
//! | [`report`] | findings, tables, the sentence and notes from the steps' results |

pub mod app;
pub mod bad_input;
pub mod client;
pub mod errors;
pub mod faults;
pub mod idempotency;
pub mod key;
pub mod naive;
pub mod payments;
pub mod policy;
pub mod provider;
pub mod reaper;
pub mod report;
pub mod scenarios;
pub mod schema;
pub mod webhooks;

use std::time::Duration;

use labkit::{LabCtx, Report, ServeApp};

pub use app::{App, AppState, assemble};
pub use policy::{Clock, Policy};

/// Every finding key a run reports (users' scripts parse them).
pub const FINDING_KEYS: &[&str] = &[
    "no_key_charges",
    "naive_race_charges",
    "naive_race_bursts_with_double_charge",
    "naive_race_bursts",
    "guarded_charges",
    "concurrent_duplicates",
    "guarded_non_conforming_responses",
    "crash_retry_charges",
    "webhook_rows_after_redelivery",
    "webhook_fulfillments_after_redelivery",
    "webhook_duplicates_removed",
    "first_request_p50_ms",
    "first_request_p95_ms",
    "no_idempotency_p50_ms",
    "no_idempotency_p95_ms",
    "replay_p50_ms",
    "replay_p95_ms",
    "first_request_sql_statements",
    "no_idempotency_sql_statements",
    "replay_sql_statements",
    "reaped_keys",
    "bad_input_requests",
    "bad_input_5xx_responses",
    "bad_input_unexpected_responses",
    "bad_input_side_effects",
];

/// The `idempotency-keys` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdempotencyKeys;

#[labkit::async_trait]
impl labkit::Lab for IdempotencyKeys {
    fn id(&self) -> &'static str {
        "idempotency-keys"
    }

    fn title(&self) -> &'static str {
        "Idempotency keys: exactly-once POSTs over retries, races, crashes and webhooks"
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        scenarios::run(ctx, self.title()).await
    }

    /// The service as it ships (v2 schema), its provider, and a reaper every minute.
    async fn serve(&self, ctx: &LabCtx) -> anyhow::Result<Option<ServeApp>> {
        schema::setup(&ctx.pg).await?;
        let (app, provider_server) = assemble(ctx.pg.clone()).await?;
        let reaper = reaper::spawn_reaper(
            ctx.pg.clone(),
            app.state.clock.clone(),
            Duration::from_secs(60),
        );
        Ok(Some(ServeApp {
            router: app.router(),
            banner: include_str!("../curl.md").to_string(),
            keep_alive: vec![Box::new(provider_server), Box::new(reaper)],
        }))
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(include_str!("../baseline.json"))
    }
}
