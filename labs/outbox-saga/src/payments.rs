//! The payments service: charge, and its compensation, refund.
//!
//! Card tokens follow Stripe's test cards: `tok_chargeDeclined` is declined, anything else is
//! charged. There is deliberately no unique constraint on the charge or the refund: the only
//! thing between a redelivered `ChargePayment` and a double charge is the consumer's inbox,
//! and the auditor counts what got through.

use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::broker::Message;
use crate::inbox::HandlerError;
use crate::outbox;
use crate::saga::SAGA_REPLIES;
use crate::warehouse::order_id;

/// The route of payment commands: `outbox.event.payment-command`.
pub const PAYMENT_COMMANDS: &str = "payment-command";

/// The test card that is always declined.
pub const DECLINED_CARD: &str = "tok_chargeDeclined";

/// `ChargePayment` / `RefundPayment`, answered on the saga's reply route.
pub async fn handle_command(conn: &mut PgConnection, m: &Message) -> Result<(), HandlerError> {
    let order_id = order_id(&m.payload)?;
    let reply = match m.kind.as_str() {
        "ChargePayment" => {
            let amount = m.payload["amount_cents"]
                .as_i64()
                .ok_or_else(|| HandlerError::BadMessage("ChargePayment without amount".into()))?;
            let card = m.payload["card"].as_str().unwrap_or_default();
            let declined = card == DECLINED_CARD;
            sqlx::query("INSERT INTO charges (order_id, amount_cents, status) VALUES ($1, $2, $3)")
                .bind(order_id)
                .bind(amount)
                .bind(if declined { "declined" } else { "charged" })
                .execute(&mut *conn)
                .await?;
            if declined {
                "PaymentDeclined"
            } else {
                "PaymentCharged"
            }
        }
        "RefundPayment" => {
            refund(conn, order_id).await?;
            "PaymentRefunded"
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

/// The compensation: refund what was charged. Never a refund without a charge; a second
/// refund of the same charge is kept out by the inbox, not here.
async fn refund(conn: &mut PgConnection, order_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refunds (order_id, amount_cents)
         SELECT order_id, amount_cents FROM charges
         WHERE order_id = $1 AND status = 'charged'
         LIMIT 1",
    )
    .bind(order_id)
    .execute(conn)
    .await?;
    Ok(())
}
