//! The tables, as the payments service's migration would create them.
//!
//! `idempotency_keys` is the key record: one row per (caller, key), its recovery point, the
//! lock that says "a request is working on this", and — once finished — the exact response
//! to replay. `UNIQUE (caller, key)` is the whole concurrency story: the first `INSERT` wins
//! and every duplicate conflicts, however many arrive at once.
//!
//! `webhook_events` is created the way it shipped in v1: *without* a unique constraint on
//! `event_id`. [`crate::webhooks::dedupe_webhook_events`] is the v2 migration that removes
//! the duplicates v1 let in and adds the constraint.

use sqlx::PgPool;

const SCHEMA_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS idempotency_keys (
    id                 bigserial   PRIMARY KEY,
    caller             text        NOT NULL,          -- sha256 of the bearer token, never the token
    key                text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint        bytea       NOT NULL,          -- sha256(method, path, canonical body)
    recovery_point     text        NOT NULL DEFAULT 'started'
                       CHECK (recovery_point IN ('started', 'charge_created', 'finished')),
    locked_at          timestamptz,                   -- set while a request works on the key
    lock_token         uuid,                          -- fencing token of the request holding it
    payment_id         bigint,                        -- set at 'charge_created'
    response_status    int,                           -- set at 'finished'
    response_body      bytea,                         -- the exact bytes the first caller got
    created_at         timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    UNIQUE (caller, key)
);
-- The reaper deletes by expiry; without this it would scan the table every run.
CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at ON idempotency_keys (expires_at);

CREATE TABLE IF NOT EXISTS payments (
    id                 bigserial   PRIMARY KEY,
    caller             text        NOT NULL,
    amount_cents       bigint      NOT NULL CHECK (amount_cents > 0),
    currency           text        NOT NULL,
    provider_charge_id text        NOT NULL UNIQUE,
    created_at         timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_caller ON payments (caller);

-- A receipt e-mail to send, queued in the same transaction that finishes the key (an outbox):
-- the third side effect, so a crash between phases has something to duplicate.
CREATE TABLE IF NOT EXISTS receipt_outbox (
    id                 bigserial   PRIMARY KEY,
    payment_id         bigint      NOT NULL REFERENCES payments (id),
    queued_at          timestamptz NOT NULL
);

-- The check-then-insert implementation's table: the same record, no unique constraint.
CREATE TABLE IF NOT EXISTS naive_idempotency_keys (
    caller             text        NOT NULL,
    key                text        NOT NULL,
    response_status    int         NOT NULL,
    response_body      bytea       NOT NULL
);
CREATE INDEX IF NOT EXISTS naive_idempotency_keys_lookup ON naive_idempotency_keys (caller, key);

-- v1 of the webhook inbox: no unique constraint on event_id (the bug).
CREATE TABLE IF NOT EXISTS webhook_events (
    id                 bigserial   PRIMARY KEY,
    event_id           text        NOT NULL,
    event_type         text        NOT NULL,
    payload            jsonb       NOT NULL,
    received_at        timestamptz NOT NULL
);
-- Where the dedupe step moves the rows it removes: nothing is thrown away.
CREATE TABLE IF NOT EXISTS webhook_events_duplicates (
    id                 bigint      PRIMARY KEY,
    event_id           text        NOT NULL,
    event_type         text        NOT NULL,
    payload            jsonb       NOT NULL,
    received_at        timestamptz NOT NULL,
    removed_at         timestamptz NOT NULL DEFAULT now()
);
-- What processing an event does: fulfil the order. No unique constraint here on purpose, so a
-- second processing of one event would show up as a second row.
CREATE TABLE IF NOT EXISTS fulfillments (
    id                 bigserial   PRIMARY KEY,
    event_id           text        NOT NULL,
    charge_id          text,
    fulfilled_at       timestamptz NOT NULL
);
"#;

/// Create the v1 schema (idempotent). The webhook inbox has no unique constraint yet.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(SCHEMA_SQL).execute(pool).await?;
    Ok(())
}

/// The schema the service runs on: v1, then the webhook dedupe + constraint (v2).
pub async fn setup(pool: &PgPool) -> Result<(), sqlx::Error> {
    migrate(pool).await?;
    crate::webhooks::dedupe_webhook_events(pool).await?;
    Ok(())
}
