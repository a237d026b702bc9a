//! Outbox and saga: the dual write that loses events, the transactional outbox, and a saga
//! that compensates.
//!
//! The war story: the order service commits the order and then publishes `OrderPlaced`; the
//! process dies in between and the warehouse never hears of the order. Or it publishes first
//! and the commit fails: the warehouse ships an order that does not exist. Two-phase commit
//! across Postgres and a broker is not on the table. What is: write the event into an
//! **outbox** table in the same transaction as the order; a **relay** publishes outbox rows
//! at least once (claiming them with `FOR UPDATE SKIP LOCKED`, marking them sent after the
//! publish); **consumers deduplicate** with an inbox table written in the same transaction as
//! their effect. And a business operation spanning services — reserve stock, charge the
//! card, confirm — becomes a **saga**: an orchestrator with a log, and a compensation
//! (release stock, refund) for every step that succeeded when a later one fails.
//!
//! Everything is real: three services with their own Postgres schema and pool (no shared
//! transaction), Redis Streams as the broker (consumer groups, `XACK`, `XAUTOCLAIM`),
//! processes as tasks, and crashes injected at named points ([`crash::CrashPoint`]) where the
//! process just stops — no cleanup runs.
//!
//! | module | what it holds |
//! |---|---|
//! | [`schema`] | the three schemas and pools; outbox (Debezium's shape), inbox, NOTIFY trigger |
//! | [`crash`] | the named crash points and the crash plan the code checks |
//! | [`orders`] | writing an order: commit-then-publish, publish-then-commit, outbox |
//! | [`outbox`] | the outbox row, written inside the caller's transaction |
//! | [`broker`] | Redis Streams: publish, consumer groups, `XACK`, `XAUTOCLAIM` |
//! | [`relay`] | the claiming relay (`SKIP LOCKED`, mark sent) and the `id > last_seen` pitfall |
//! | [`inbox`] | the idempotent consumer: inbox row + effect in one transaction, then `XACK` |
//! | [`warehouse`], [`payments`] | the services' effects: pick list, reserve/release, charge/refund |
//! | [`saga`] | the orchestrator: state machine, saga log, resume after a crash |
//! | [`invariants`] | the auditor's cross-service checks |
//! | [`fleet`] | processes as supervised tasks (restart after a crash), or stepped by hand |
//! | [`pitfall`] | the out-of-order commit, forced |
//! | [`app`] | the HTTP API: place an order, watch its saga |
//! | [`scenarios`] | the four measured scenarios |
//! | [`run`], [`report`] | the lab run, step by step, and its report |

pub mod app;
pub mod broker;
pub mod crash;
pub mod fleet;
pub mod inbox;
pub mod invariants;
pub mod orders;
pub mod outbox;
pub mod payments;
pub mod pitfall;
pub mod relay;
pub mod report;
pub mod run;
pub mod saga;
pub mod scenarios;
pub mod schema;
pub mod warehouse;

use std::sync::Arc;

use labkit::{LabCtx, Report, ServeApp};

pub use app::{AppState, router};

/// The finding keys this lab promises.
pub const FINDING_KEYS: &[&str] = &[
    // 1. dual write
    "dual_write_lost_events",
    "dual_write_phantom_events",
    "dual_write_crashes_injected",
    "outbox_crash_lost_or_phantom_events",
    "commit_then_publish_write_p50_ms",
    "outbox_write_p50_ms",
    // 2. outbox, relay, inbox
    "relay_lag_p50_ms",
    "relay_lag_p99_ms",
    "relay_backlog_at_end",
    "outbox_lost_events",
    "outbox_duplicates_delivered",
    "outbox_relay_crashes",
    "consumer_crashes",
    "consumer_redeliveries_absorbed",
    "consumer_duplicate_effects",
    "consumer_duplicate_effects_without_inbox",
    // 3. the relay pitfall
    "id_cursor_relay_missed_events",
    "id_cursor_relay_missed_forced",
    "fixed_relay_missed_events",
    // 4. the saga
    "saga_runs",
    "saga_max_in_flight",
    "saga_confirmed",
    "saga_cancelled",
    "saga_compensations_run",
    "saga_invariant_violations",
    "saga_resumed_after_orchestrator_crash",
    "saga_orchestrator_crashes",
    "saga_crashes_injected",
    "saga_redeliveries_absorbed",
    "saga_duration_p50_ms",
    "saga_duration_p99_ms",
    "saga_flash_sale_drain_s",
];

/// The `outbox-saga` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxSaga;

#[labkit::async_trait]
impl labkit::Lab for OutboxSaga {
    fn id(&self) -> &'static str {
        "outbox-saga"
    }

    fn title(&self) -> &'static str {
        "Outbox and saga: the dual write that loses events, the transactional outbox, compensations"
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

    async fn serve(&self, ctx: &LabCtx) -> anyhow::Result<Option<ServeApp>> {
        let svc = schema::Services::connect(ctx, 8).await?;
        schema::create(&ctx.pg, &svc).await?;
        // Three records on the shelf: the fourth order of rare-vinyl is out of stock.
        schema::stock(&svc.warehouse, 1000, 3).await?;
        let shop = Arc::new(fleet::Shop::new(svc, ctx.redis_client(), ctx.key("serve:")));
        let fleet = fleet::Fleet::start(
            &shop,
            &[
                (crash::Service::Orders, 1),
                (crash::Service::Warehouse, 1),
                (crash::Service::Payments, 1),
            ],
            &[
                (inbox::Role::Orchestrator, 1),
                (inbox::Role::Warehouse, 1),
                (inbox::Role::Payments, 1),
            ],
        );
        Ok(Some(ServeApp {
            router: router(AppState { shop }),
            banner: include_str!("../curl.md").to_string(),
            keep_alive: vec![Box::new(fleet)],
        }))
    }
}
