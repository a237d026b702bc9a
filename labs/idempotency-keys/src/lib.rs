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
//! | [`api`] | state, router, request parsing, the error enum → status codes |
//! | [`scenarios`] | the lab run: each scenario, measured, into the report |

pub mod api;
pub mod faults;
pub mod idempotency;
pub mod key;
pub mod naive;
pub mod payments;
pub mod policy;
pub mod provider;
pub mod reaper;
pub mod scenarios;
pub mod schema;
pub mod webhooks;

use std::time::Duration;

use labkit::{LabCtx, Report, ServeApp};

pub use api::{AppState, router};
pub use policy::{Clock, Policy};

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

    async fn serve(&self, ctx: &LabCtx) -> anyhow::Result<Option<ServeApp>> {
        schema::setup(&ctx.pg).await?;
        let (provider, provider_server) = provider::spawn().await?;
        let provider_url = provider_server.base_url();
        let policy = Policy::default();
        let clock = Clock::system();
        let state = AppState::new(ctx.pg.clone(), &provider_url, policy, clock.clone());
        let reaper = reaper::spawn_reaper(ctx.pg.clone(), clock, Duration::from_secs(60));
        Ok(Some(ServeApp {
            router: router(state),
            banner: banner(&provider_url, &policy),
            keep_alive: vec![
                Box::new(provider),
                Box::new(provider_server),
                Box::new(reaper),
            ],
        }))
    }
}

fn banner(provider: &str, policy: &Policy) -> String {
    let pay = |key: &str, amount: u32| {
        format!(
            "curl -i -X POST {{base}}/v1/payments -H 'Authorization: Bearer alice' \
             -H 'Idempotency-Key: {key}' -H 'Content-Type: application/json' \
             -d '{{\"amount_cents\":{amount},\"currency\":\"usd\",\"source\":\"tok_visa\"}}'"
        )
    };
    format!(
        "Payments service on {{base}}; payment provider on {provider}
Idempotency-Policy: {policy_header}

# a payment; run it twice: the second is a byte-identical replay marked Idempotent-Replayed: true
{first}
# the same key with a different body -> 422 idempotency_key_reused
{reused}
# no Idempotency-Key -> 400 idempotency_key_missing
curl -i -X POST {{base}}/v1/payments -H 'Authorization: Bearer alice' -H 'Content-Type: application/json' -d '{{\"amount_cents\":1299,\"currency\":\"usd\",\"source\":\"tok_visa\"}}'

# in flight -> 409: make the provider slow, then send the same key twice at once
curl -s -X POST {provider}/control -H 'Content-Type: application/json' -d '{{\"latency_ms\":3000}}'
{slow} & sleep 0.5; {slow}; wait
curl -s -X POST {provider}/control -H 'Content-Type: application/json' -d '{{\"latency_ms\":0}}'

# crash after the provider charged: 500, then 409 until the {lock}s lock timeout, then 201 with the same charge
curl -s -X POST {{base}}/lab/faults -H 'Content-Type: application/json' -d '{{\"crash_at\":\"after_provider_charge\"}}'
{crash}
curl -s {provider}/v1/charges

# the same payment without a key, or through the check-then-insert implementation
curl -i -X POST {{base}}/lab/no-key/payments -H 'Authorization: Bearer alice' -H 'Content-Type: application/json' -d '{{\"amount_cents\":1299,\"currency\":\"usd\",\"source\":\"tok_visa\"}}'

# a webhook; send it twice: \"processed\", then \"duplicate\"
curl -s -X POST {{base}}/v1/webhooks/provider -H 'Content-Type: application/json' -d '{{\"id\":\"evt_1\",\"type\":\"charge.succeeded\",\"data\":{{\"charge_id\":\"ch_00000001\"}}}}'",
        policy_header = policy.header_value(),
        first = pay("order-1", 1299),
        reused = pay("order-1", 999),
        slow = pay("order-2", 500),
        crash = pay("order-3", 700),
        lock = policy.lock_timeout.as_secs(),
    )
}
