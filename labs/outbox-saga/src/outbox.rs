//! The transactional outbox: the event is a row, written in the same transaction as the
//! state change it announces. Either both commit or neither does; publishing is someone
//! else's job ([`crate::relay`]), and it can be retried because the row is still there.
//!
//! The row is shaped after Debezium's outbox event router (`id`, `aggregatetype`,
//! `aggregateid`, `type`, `payload`): with Debezium, a connector tails the WAL and routes each
//! row to `outbox.event.<aggregatetype>`; here a polling relay does the same routing onto
//! Redis Streams.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::broker::{Message, now_us};

impl Message {
    /// A new message for `route` (the `aggregatetype`), stamped now on the writer's clock.
    pub fn new(route: &str, aggregateid: impl ToString, kind: &str, payload: Value) -> Self {
        Self {
            id: Uuid::new_v4(),
            aggregatetype: route.to_string(),
            aggregateid: aggregateid.to_string(),
            kind: kind.to_string(),
            payload,
            created_us: now_us(),
        }
    }
}

/// Insert `m` into the outbox of the connection's schema — call it inside the transaction
/// that makes the change `m` announces.
pub async fn write(conn: &mut PgConnection, m: &Message) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, created_at)
         VALUES ($1, $2, $3, $4, $5, to_timestamp($6::float8 / 1e6))",
    )
    .bind(m.id)
    .bind(&m.aggregatetype)
    .bind(&m.aggregateid)
    .bind(&m.kind)
    .bind(&m.payload)
    .bind(m.created_us)
    .execute(conn)
    .await?;
    Ok(())
}

/// Outbox rows not yet published (the relay's backlog).
pub async fn unsent(pool: &sqlx::PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        .fetch_one(pool)
        .await
}
