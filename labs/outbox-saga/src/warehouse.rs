//! The warehouse service: hears `OrderPlaced` (a pick-list line), and serves the saga's
//! stock commands — reserve, and its compensation, release.
//!
//! Every handler runs inside the consumer's transaction (see [`crate::inbox`]), so its reply
//! goes into the warehouse's own outbox in the same commit as the stock change: a reply is
//! never sent for a change that did not happen, nor lost for one that did.

use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::broker::Message;
use crate::inbox::HandlerError;
use crate::outbox;
use crate::saga::SAGA_REPLIES;

/// The route of stock commands: `outbox.event.stock-command`.
pub const STOCK_COMMANDS: &str = "stock-command";

/// Which pick-list table a consumer writes.
#[derive(Debug, Clone, Copy)]
pub enum PickTable {
    WithInbox,
    NoInbox,
}

/// `OrderPlaced` → one pick-list line.
pub async fn pick(
    conn: &mut PgConnection,
    m: &Message,
    table: PickTable,
) -> Result<(), HandlerError> {
    let order_id = order_id(&m.payload)?;
    let sql = match table {
        PickTable::WithInbox => "INSERT INTO pick_list (order_id, message_id) VALUES ($1, $2)",
        PickTable::NoInbox => {
            "INSERT INTO pick_list_no_inbox (order_id, message_id) VALUES ($1, $2)"
        }
    };
    sqlx::query(sql)
        .bind(order_id)
        .bind(m.id)
        .execute(conn)
        .await?;
    Ok(())
}

/// `ReserveStock` / `ReleaseStock`, answered on the saga's reply route.
pub async fn handle_command(conn: &mut PgConnection, m: &Message) -> Result<(), HandlerError> {
    let order_id = order_id(&m.payload)?;
    let reply = match m.kind.as_str() {
        "ReserveStock" => {
            let sku = m.payload["sku"]
                .as_str()
                .ok_or_else(|| HandlerError::BadMessage("ReserveStock without sku".into()))?;
            let quantity = m.payload["quantity"]
                .as_i64()
                .ok_or_else(|| HandlerError::BadMessage("ReserveStock without quantity".into()))?
                as i32;
            if reserve(conn, order_id, sku, quantity).await? {
                "StockReserved"
            } else {
                "StockRejected"
            }
        }
        "ReleaseStock" => {
            release(conn, order_id).await?;
            "StockReleased"
        }
        other => return Err(HandlerError::BadMessage(format!("unknown command {other}"))),
    };
    let msg = Message::new(
        SAGA_REPLIES,
        order_id,
        reply,
        json!({ "order_id": order_id }),
    );
    outbox::write(conn, &msg).await?;
    Ok(())
}

/// Take `quantity` off the shelf if there is that much; hold it for the order.
async fn reserve(
    conn: &mut PgConnection,
    order_id: Uuid,
    sku: &str,
    quantity: i32,
) -> Result<bool, sqlx::Error> {
    // The guard is in the UPDATE, so two concurrent reservations cannot both take the last one.
    let taken =
        sqlx::query("UPDATE stock SET on_hand = on_hand - $2 WHERE sku = $1 AND on_hand >= $2")
            .bind(sku)
            .bind(quantity)
            .execute(&mut *conn)
            .await?
            .rows_affected()
            == 1;
    if !taken {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO reservations (order_id, sku, quantity, status) VALUES ($1, $2, $3, 'held')",
    )
    .bind(order_id)
    .bind(sku)
    .bind(quantity)
    .execute(&mut *conn)
    .await?;
    movement(conn, order_id, sku, -quantity, "reserve").await?;
    Ok(true)
}

/// The compensation: put a held reservation back on the shelf. Releasing an order that holds
/// nothing (its reservation was rejected, or already released) changes nothing.
async fn release(conn: &mut PgConnection, order_id: Uuid) -> Result<(), sqlx::Error> {
    let released: Option<(String, i32)> = sqlx::query_as(
        "UPDATE reservations SET status = 'released', released_at = clock_timestamp()
         WHERE order_id = $1 AND status = 'held'
         RETURNING sku, quantity",
    )
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((sku, quantity)) = released {
        sqlx::query("UPDATE stock SET on_hand = on_hand + $2 WHERE sku = $1")
            .bind(&sku)
            .bind(quantity)
            .execute(&mut *conn)
            .await?;
        movement(conn, order_id, &sku, quantity, "release").await?;
    }
    Ok(())
}

async fn movement(
    conn: &mut PgConnection,
    order_id: Uuid,
    sku: &str,
    delta: i32,
    kind: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO stock_movements (order_id, sku, delta, kind) VALUES ($1, $2, $3, $4)")
        .bind(order_id)
        .bind(sku)
        .bind(delta)
        .bind(kind)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) fn order_id(payload: &Value) -> Result<Uuid, HandlerError> {
    payload["order_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HandlerError::BadMessage("payload without a valid order_id".into()))
}

/// What is on the shelves, by SKU (for `GET /stock`).
pub async fn shelves(pool: &sqlx::PgPool) -> Result<Vec<(String, i32)>, sqlx::Error> {
    sqlx::query_as("SELECT sku, on_hand FROM stock ORDER BY sku")
        .fetch_all(pool)
        .await
}
