//! The orchestrated saga: place order → reserve stock → charge payment → confirm, with a
//! compensation for every step that succeeded when a later one fails.
//!
//! ```text
//!             StockReserved            PaymentCharged
//! reserving ───────────────► charging ───────────────► confirmed
//!     │ StockRejected            │ PaymentDeclined         │ (customer cancelled first)
//!     ▼                          ▼                         ▼
//! cancelled ◄──StockReleased── releasing ◄─PaymentRefunded─ refunding
//! ```
//!
//! The orchestrator lives in the orders service and keeps a **saga log** there: `saga` holds
//! each saga's current state, `saga_log` every step and who took it. One reply is handled in
//! one transaction of the orders database — lock the saga row, compute the next state with
//! the pure [`next`], write state + log row + the next command into the orders outbox,
//! commit. So the log and the commands it owes can never disagree; the relay delivers the
//! command at least once, and the warehouse and payments consumers apply it at most once
//! (their inboxes): together, compensations run exactly once.
//!
//! A crash of the orchestrator between steps loses nothing: an unprocessed reply stays
//! pending on the stream and is reclaimed by the next orchestrator process; a processed one
//! whose `XACK` was lost comes back and the saga's state says it is stale. A restarted
//! orchestrator first reads its log for sagas still in flight and records that it resumed
//! them ([`recover`]).

use serde::Serialize;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::broker::Message;
use crate::inbox::HandlerError;
use crate::orders::{self, NewOrder};
use crate::outbox;
use crate::payments::PAYMENT_COMMANDS;
use crate::warehouse::{STOCK_COMMANDS, order_id};

/// The route of replies to the orchestrator: `outbox.event.saga-reply`.
pub const SAGA_REPLIES: &str = "saga-reply";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaState {
    Reserving,
    Charging,
    Refunding,
    Releasing,
    Confirmed,
    Cancelled,
}

impl SagaState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserving => "reserving",
            Self::Charging => "charging",
            Self::Refunding => "refunding",
            Self::Releasing => "releasing",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Reserving,
            Self::Charging,
            Self::Refunding,
            Self::Releasing,
            Self::Confirmed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Confirmed | Self::Cancelled)
    }
}

/// A command the orchestrator sends (through its outbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    ReserveStock,
    ChargePayment,
    /// compensation of ChargePayment
    RefundPayment,
    /// compensation of ReserveStock
    ReleaseStock,
}

/// One step of the saga: where it goes, what it sends, and why it is failing (if it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub to: SagaState,
    pub command: Option<Command>,
    pub reason: Option<&'static str>,
}

/// The state machine. `None`: the reply does not fit the state — a redelivery of a reply
/// already acted on — and is ignored.
pub fn next(state: SagaState, reply: &str, cancel_requested: bool) -> Option<Step> {
    use Command::*;
    use SagaState::*;
    let step = |to, command, reason| {
        Some(Step {
            to,
            command,
            reason,
        })
    };
    match (state, reply) {
        (Reserving, "StockReserved") if cancel_requested => {
            step(Releasing, Some(ReleaseStock), Some("customer_cancelled"))
        }
        (Reserving, "StockReserved") => step(Charging, Some(ChargePayment), None),
        (Reserving, "StockRejected") => step(Cancelled, None, Some("out_of_stock")),
        // The confirm step fails when the customer cancelled while we were charging.
        (Charging, "PaymentCharged") if cancel_requested => {
            step(Refunding, Some(RefundPayment), Some("customer_cancelled"))
        }
        (Charging, "PaymentCharged") => step(Confirmed, None, None),
        (Charging, "PaymentDeclined") => {
            step(Releasing, Some(ReleaseStock), Some("payment_declined"))
        }
        (Refunding, "PaymentRefunded") => step(Releasing, Some(ReleaseStock), None),
        (Releasing, "StockReleased") => step(Cancelled, None, None),
        _ => None,
    }
}

fn command_message(cmd: Command, o: &OrderRow) -> Message {
    let (route, kind, payload) = match cmd {
        Command::ReserveStock => (
            STOCK_COMMANDS,
            "ReserveStock",
            json!({ "order_id": o.id, "sku": o.sku, "quantity": o.quantity }),
        ),
        Command::ReleaseStock => (STOCK_COMMANDS, "ReleaseStock", json!({ "order_id": o.id })),
        Command::ChargePayment => (
            PAYMENT_COMMANDS,
            "ChargePayment",
            json!({ "order_id": o.id, "amount_cents": o.amount_cents, "card": o.card }),
        ),
        Command::RefundPayment => (
            PAYMENT_COMMANDS,
            "RefundPayment",
            json!({ "order_id": o.id }),
        ),
    };
    Message::new(route, o.id, kind, payload)
}

#[derive(Debug, Clone)]
struct OrderRow {
    id: Uuid,
    sku: String,
    quantity: i32,
    amount_cents: i64,
    card: String,
    cancel_requested: bool,
}

/// Place an order and start its saga: the order, the saga row, its first log entry and the
/// `ReserveStock` command, in one transaction of the orders database.
pub async fn place_order(pool: &PgPool, o: &NewOrder) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    orders::insert_order(&mut tx, o).await?;
    sqlx::query("INSERT INTO saga (saga_id, state) VALUES ($1, 'reserving')")
        .bind(o.id)
        .execute(&mut *tx)
        .await?;
    log(&mut tx, o.id, SagaState::Reserving, "OrderPlaced", "api").await?;
    let row = OrderRow {
        id: o.id,
        sku: o.sku.clone(),
        quantity: o.quantity,
        amount_cents: o.amount_cents(),
        card: o.card.clone(),
        cancel_requested: false,
    };
    outbox::write(&mut tx, &command_message(Command::ReserveStock, &row)).await?;
    tx.commit().await
}

/// The orchestrator's reply handler (runs inside the consumer's transaction).
pub async fn handle_reply(
    conn: &mut PgConnection,
    m: &Message,
    by: &str,
) -> Result<(), HandlerError> {
    let id = order_id(&m.payload)?;
    // The row lock on the saga serialises the replies of one saga, whoever handles them.
    type Row = (String, Uuid, String, i32, i64, String, bool);
    let row: Option<Row> = sqlx::query_as(
        "SELECT s.state, o.id, o.sku, o.quantity, o.amount_cents, o.card, o.cancel_requested
         FROM saga s JOIN orders o ON o.id = s.saga_id
         WHERE s.saga_id = $1
         FOR UPDATE OF s",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let row = row.map(
        |(state, id, sku, quantity, amount_cents, card, cancel_requested)| {
            let order = OrderRow {
                id,
                sku,
                quantity,
                amount_cents,
                card,
                cancel_requested,
            };
            (state, order)
        },
    );
    let Some((state, order)) = row else {
        return Err(HandlerError::BadMessage(format!(
            "reply for unknown saga {id}"
        )));
    };
    let state = SagaState::parse(&state)
        .ok_or_else(|| HandlerError::BadMessage(format!("saga {id} in unknown state {state}")))?;
    let Some(step) = next(state, &m.kind, order.cancel_requested) else {
        tracing::debug!(%id, reply = %m.kind, state = state.as_str(), "stale reply ignored");
        return Ok(());
    };
    sqlx::query(
        "UPDATE saga SET state = $2, reason = coalesce(reason, $3),
                finished_at = CASE WHEN $4 THEN clock_timestamp() END
         WHERE saga_id = $1",
    )
    .bind(id)
    .bind(step.to.as_str())
    .bind(step.reason)
    .bind(step.to.is_terminal())
    .execute(&mut *conn)
    .await?;
    if step.to.is_terminal() {
        // The confirm step (or the final cancel) is local: same database, same transaction.
        sqlx::query("UPDATE orders SET status = $2 WHERE id = $1")
            .bind(id)
            .bind(step.to.as_str())
            .execute(&mut *conn)
            .await?;
    }
    log(conn, id, step.to, &m.kind, by).await?;
    if let Some(cmd) = step.command {
        outbox::write(conn, &command_message(cmd, &order)).await?;
    }
    Ok(())
}

async fn log(
    conn: &mut PgConnection,
    id: Uuid,
    state: SagaState,
    event: &str,
    by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO saga_log (saga_id, step, state, event, by_process)
         SELECT $1, coalesce(max(step), 0) + 1, $2, $3, $4 FROM saga_log WHERE saga_id = $1",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(event)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}

/// A starting orchestrator reads its log: every saga not finished is resumed by this
/// process, and the log says so. Returns how many. (Nothing needs re-sending: the command
/// each of them owes is already in the outbox, sent or about to be.)
pub async fn recover(pool: &PgPool, by: &str) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let in_flight: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT saga_id, state FROM saga WHERE finished_at IS NULL ORDER BY saga_id FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (id, state) in &in_flight {
        let state = SagaState::parse(state).unwrap_or(SagaState::Reserving);
        log(&mut tx, *id, state, "resumed", by).await?;
    }
    tx.commit().await?;
    Ok(in_flight.len() as u64)
}

/// What a cancel request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// Noted; the saga compensates at its next step.
    Requested,
    /// Too late: the saga already finished in this state.
    Finished(SagaState),
    NotFound,
}

/// The customer asks to cancel. The saga sees the flag at its next step.
pub async fn request_cancel(pool: &PgPool, id: Uuid) -> Result<Cancel, sqlx::Error> {
    let status: Option<String> = sqlx::query_scalar(
        "UPDATE orders SET cancel_requested = true WHERE id = $1 AND status = 'pending'
         RETURNING status",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    if status.is_some() {
        return Ok(Cancel::Requested);
    }
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM saga WHERE saga_id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(match state.as_deref().and_then(SagaState::parse) {
        Some(s) => Cancel::Finished(s),
        None => Cancel::NotFound,
    })
}

/// An order and its saga, as `GET /orders/{id}` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct SagaView {
    pub order_id: Uuid,
    pub sku: String,
    pub quantity: i32,
    pub amount_cents: i64,
    pub order_status: String,
    pub cancel_requested: bool,
    pub saga_state: String,
    pub reason: Option<String>,
    pub log: Vec<LogEntry>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LogEntry {
    pub step: i32,
    pub state: String,
    pub event: String,
    pub by_process: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

pub async fn view(pool: &PgPool, id: Uuid) -> Result<Option<SagaView>, sqlx::Error> {
    type Head = (String, i32, i64, String, bool, String, Option<String>);
    let head: Option<Head> = sqlx::query_as(
        "SELECT o.sku, o.quantity, o.amount_cents, o.status, o.cancel_requested, s.state, s.reason
         FROM orders o JOIN saga s ON s.saga_id = o.id WHERE o.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some((sku, quantity, amount_cents, order_status, cancel_requested, saga_state, reason)) =
        head
    else {
        return Ok(None);
    };
    let log = sqlx::query_as(
        "SELECT step, state, event, by_process, at FROM saga_log WHERE saga_id = $1 ORDER BY step",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(Some(SagaView {
        order_id: id,
        sku,
        quantity,
        amount_cents,
        order_status,
        cancel_requested,
        saga_state,
        reason,
        log,
    }))
}

/// Sagas not yet finished.
pub async fn in_flight(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM saga WHERE finished_at IS NULL")
        .fetch_one(pool)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_compensates_the_steps_before_it_and_stale_replies_are_ignored() {
        use Command::*;
        use SagaState::*;
        let to = |s, r, c| next(s, r, c).map(|x| (x.to, x.command));
        // happy path
        assert_eq!(
            to(Reserving, "StockReserved", false),
            Some((Charging, Some(ChargePayment)))
        );
        assert_eq!(
            to(Charging, "PaymentCharged", false),
            Some((Confirmed, None))
        );
        // reserve fails: nothing to compensate
        assert_eq!(
            to(Reserving, "StockRejected", false),
            Some((Cancelled, None))
        );
        // charge fails: release the stock
        assert_eq!(
            to(Charging, "PaymentDeclined", false),
            Some((Releasing, Some(ReleaseStock)))
        );
        // confirm fails (customer cancelled): refund, then release
        assert_eq!(
            to(Charging, "PaymentCharged", true),
            Some((Refunding, Some(RefundPayment)))
        );
        assert_eq!(
            to(Refunding, "PaymentRefunded", true),
            Some((Releasing, Some(ReleaseStock)))
        );
        assert_eq!(
            to(Releasing, "StockReleased", true),
            Some((Cancelled, None))
        );
        // a redelivered reply the saga already acted on
        assert_eq!(to(Charging, "StockReserved", false), None);
        assert_eq!(to(Confirmed, "PaymentCharged", false), None);
        assert_eq!(to(Cancelled, "StockReleased", false), None);
    }
}
