//! The orders service writing an order and announcing it: three ways.
//!
//! - **Commit, then publish** (dual write): a crash between the two loses the event — the
//!   order exists and the warehouse never hears of it.
//! - **Publish, then commit** (dual write): a crash or a failed commit after the publish
//!   leaves a phantom — the warehouse ships an order that does not exist.
//! - **Outbox**: the order row and the `OrderPlaced` row commit in one transaction; there is
//!   no moment at which one exists without the other.

use redis::RedisError;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::broker::{Broker, BrokerError, Message};
use crate::crash::{CrashPoint, Crashed, Crashes};
use crate::outbox;
use crate::schema;

/// The route (Debezium `aggregatetype`) of order events: `outbox.event.order`.
pub const ORDER_EVENTS: &str = "order";

/// An order as the API accepted it.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub id: Uuid,
    pub customer_id: i64,
    pub sku: String,
    pub quantity: i32,
    /// A payment token, Stripe-style: `tok_visa` is charged, `tok_chargeDeclined` is declined.
    pub card: String,
}

impl NewOrder {
    pub fn new(customer_id: i64, sku: &str, quantity: i32, card: &str) -> Self {
        Self {
            id: Uuid::new_v4(),
            customer_id,
            sku: sku.into(),
            quantity,
            card: card.into(),
        }
    }

    pub fn amount_cents(&self) -> i64 {
        schema::product(&self.sku).map_or(0, |p| p.price_cents) * i64::from(self.quantity)
    }

    /// The `OrderPlaced` event.
    pub fn placed_event(&self) -> Message {
        Message::new(
            ORDER_EVENTS,
            self.id,
            "OrderPlaced",
            json!({
                "order_id": self.id, "customer_id": self.customer_id, "sku": self.sku,
                "quantity": self.quantity, "amount_cents": self.amount_cents(),
            }),
        )
    }
}

/// How the order and its event are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePath {
    CommitThenPublish,
    PublishThenCommit,
    Outbox,
}

impl WritePath {
    pub const ALL: [WritePath; 3] = [
        Self::CommitThenPublish,
        Self::PublishThenCommit,
        Self::Outbox,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Self::CommitThenPublish => "commit_then_publish",
            Self::PublishThenCommit => "publish_then_commit",
            Self::Outbox => "outbox",
        }
    }

    /// The point between the two writes, where a crash does the damage.
    pub fn crash_point(self) -> CrashPoint {
        match self {
            Self::PublishThenCommit => CrashPoint::WriterAfterPublish,
            Self::CommitThenPublish | Self::Outbox => CrashPoint::WriterAfterCommit,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error(transparent)]
    Crashed(#[from] Crashed),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl From<RedisError> for PlaceError {
    fn from(e: RedisError) -> Self {
        Self::Broker(e.into())
    }
}

pub async fn insert_order(conn: &mut PgConnection, o: &NewOrder) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO orders (id, customer_id, sku, quantity, amount_cents, card)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(o.id)
    .bind(o.customer_id)
    .bind(&o.sku)
    .bind(o.quantity)
    .bind(o.amount_cents())
    .bind(&o.card)
    .execute(conn)
    .await?;
    Ok(())
}

/// Place `o` on `path`. A crash armed at `path.crash_point()` stops it right there.
pub async fn place(
    pool: &PgPool,
    broker: &mut Broker,
    path: WritePath,
    o: &NewOrder,
    crashes: &Crashes,
) -> Result<(), PlaceError> {
    let event = o.placed_event();
    match path {
        WritePath::CommitThenPublish => {
            let mut tx = pool.begin().await?;
            insert_order(&mut tx, o).await?;
            tx.commit().await?;
            crashes.check(CrashPoint::WriterAfterCommit)?; // the event is lost
            broker.publish(&[event]).await?;
        }
        WritePath::PublishThenCommit => {
            let mut tx = pool.begin().await?;
            insert_order(&mut tx, o).await?;
            broker.publish(&[event]).await?;
            // A crash here is also what a failed COMMIT looks like from the outside: the
            // event is out, the order is not.
            crashes.check(CrashPoint::WriterAfterPublish)?;
            tx.commit().await?;
        }
        WritePath::Outbox => {
            place_with_outbox(pool, o).await?;
            crashes.check(CrashPoint::WriterAfterCommit)?; // nothing left to lose
        }
    }
    Ok(())
}

/// The order and its `OrderPlaced` outbox row, in one transaction.
pub async fn place_with_outbox(pool: &PgPool, o: &NewOrder) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    insert_order(&mut tx, o).await?;
    outbox::write(&mut tx, &o.placed_event()).await?;
    tx.commit().await
}

/// The order alone, one autocommit statement (the bench's baseline).
pub async fn place_plain(pool: &PgPool, o: &NewOrder) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    insert_order(&mut conn, o).await
}
