//! The idempotent consumer: a consumer group reader whose effects are deduplicated by an
//! inbox table.
//!
//! For each delivery, in one transaction: `INSERT INTO inbox (message_id) ... ON CONFLICT DO
//! NOTHING`; if the id was already there this is a redelivery — roll back and just `XACK`;
//! otherwise apply the effect (which may write the service's own outbox: a reply, the next
//! command) and commit; then `XACK`. The inbox row and the effect commit together, so a crash
//! anywhere leaves either both or neither, and a redelivery (the relay published twice, or a
//! dead consumer's entry was reclaimed) finds the row and changes nothing.
//!
//! Reclaim: entries a consumer read and never acked sit in the group's pending list. A live
//! consumer periodically `XAUTOCLAIM`s entries idle for longer than `min_idle` — compressed to
//! about a second here; production values are tens of seconds, long enough that a slow but
//! live consumer is not robbed of its work.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use labkit::Recorder;
use sqlx::{PgConnection, PgPool};

use crate::broker::{Broker, BrokerError, Delivery, Message};
use crate::crash::{CrashPoint, Crashed, Crashes, Service};
use crate::{orders, payments, saga, warehouse};

/// Which consumer this is: its service, the route it reads, its group, and its effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The warehouse hears `OrderPlaced` and adds a pick-list line (scenario 2).
    PickList,
    /// The same, without an inbox: what duplicates do to an effect.
    PickListNoInbox,
    /// The orders service's saga orchestrator, reading replies.
    Orchestrator,
    /// The warehouse, reading stock commands.
    Warehouse,
    /// The payments service, reading payment commands.
    Payments,
}

impl Role {
    pub fn service(self) -> Service {
        match self {
            Self::PickList | Self::PickListNoInbox | Self::Warehouse => Service::Warehouse,
            Self::Orchestrator => Service::Orders,
            Self::Payments => Service::Payments,
        }
    }

    pub fn route(self) -> &'static str {
        match self {
            Self::PickList | Self::PickListNoInbox => orders::ORDER_EVENTS,
            Self::Orchestrator => saga::SAGA_REPLIES,
            Self::Warehouse => warehouse::STOCK_COMMANDS,
            Self::Payments => payments::PAYMENT_COMMANDS,
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Self::PickList => "pick-list",
            Self::PickListNoInbox => "pick-list-no-inbox",
            Self::Orchestrator => "orchestrator",
            Self::Warehouse => "warehouse",
            Self::Payments => "payments",
        }
    }

    pub fn uses_inbox(self) -> bool {
        self != Self::PickListNoInbox
    }

    /// Apply the message's effect inside the consumer's transaction.
    async fn apply(
        self,
        conn: &mut PgConnection,
        m: &Message,
        by: &str,
    ) -> Result<(), HandlerError> {
        match self {
            Self::PickList => warehouse::pick(conn, m, warehouse::PickTable::WithInbox).await,
            Self::PickListNoInbox => warehouse::pick(conn, m, warehouse::PickTable::NoInbox).await,
            Self::Orchestrator => saga::handle_reply(conn, m, by).await,
            Self::Warehouse => warehouse::handle_command(conn, m).await,
            Self::Payments => payments::handle_command(conn, m).await,
        }
    }
}

/// Why a handler refused a message.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// Not retryable: a message this consumer cannot understand. It is acked and counted
    /// (a real system moves it to a dead-letter stream).
    #[error("bad message: {0}")]
    BadMessage(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Crashed(#[from] Crashed),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// What one consumer role saw, across its restarts.
#[derive(Debug)]
pub struct ConsumerStats {
    /// Every delivery processed to the end (first or repeated).
    pub delivered: AtomicU64,
    /// Deliveries whose effect was applied.
    pub applied: AtomicU64,
    /// Redeliveries the inbox recognised and dropped.
    pub duplicates_absorbed: AtomicU64,
    /// Entries taken over from a dead consumer with `XAUTOCLAIM`.
    pub reclaimed: AtomicU64,
    /// Messages acked without effect because they could not be understood.
    pub dead_lettered: AtomicU64,
    /// Outbox insert → this consumer received it, for first deliveries.
    pub lag: Mutex<Recorder>,
}

impl Default for ConsumerStats {
    fn default() -> Self {
        Self {
            delivered: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            duplicates_absorbed: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            lag: Mutex::new(Recorder::new()),
        }
    }
}

impl ConsumerStats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// One consumer process of a group.
#[derive(Debug)]
pub struct Consumer {
    pub role: Role,
    /// The consumer name in the group; a restarted process gets a new one (`warehouse-2`).
    pub name: String,
    pool: PgPool,
    broker: Broker,
    crashes: Arc<Crashes>,
    pub stats: Arc<ConsumerStats>,
    batch: usize,
}

impl Consumer {
    /// Join `role`'s group (creating it if needed) as `name`.
    pub async fn join(
        role: Role,
        name: String,
        pool: PgPool,
        mut broker: Broker,
        crashes: Arc<Crashes>,
        stats: Arc<ConsumerStats>,
    ) -> Result<Self, ConsumerError> {
        broker.ensure_group(role.route(), role.group()).await?;
        Ok(Self {
            role,
            name,
            pool,
            broker,
            crashes,
            stats,
            batch: 64,
        })
    }

    /// Read new entries (waiting up to `block` for one) and process them. Returns how many.
    pub async fn poll(&mut self, block: Option<Duration>) -> Result<usize, ConsumerError> {
        let batch = self
            .broker
            .read_new(
                self.role.route(),
                self.role.group(),
                &self.name,
                self.batch,
                block,
            )
            .await?;
        for d in &batch {
            self.process(d).await?;
        }
        Ok(batch.len())
    }

    /// Take over entries another consumer left unacknowledged for `min_idle`, and process
    /// them. Returns how many.
    pub async fn reclaim(&mut self, min_idle: Duration) -> Result<usize, ConsumerError> {
        let batch = self
            .broker
            .claim_idle(
                self.role.route(),
                self.role.group(),
                &self.name,
                min_idle,
                self.batch,
            )
            .await?;
        self.stats
            .reclaimed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for d in &batch {
            self.process(d).await?;
        }
        Ok(batch.len())
    }

    async fn process(&mut self, d: &Delivery) -> Result<(), ConsumerError> {
        let service = self.role.service();
        let age = d.message.age(); // received now: the end of the relay lag
        let mut tx = self.pool.begin().await?;
        if self.role.uses_inbox() {
            let first = sqlx::query(
                "INSERT INTO inbox (message_id, stream_id) VALUES ($1, $2)
                 ON CONFLICT (message_id) DO NOTHING",
            )
            .bind(d.message.id)
            .bind(&d.entry_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !first {
                drop(tx); // nothing to apply: already done once
                self.ack(d).await?;
                self.stats
                    .duplicates_absorbed
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        match self.role.apply(&mut tx, &d.message, &self.name).await {
            Ok(()) => {}
            Err(HandlerError::Db(e)) => return Err(e.into()), // not acked: retried on reclaim
            Err(HandlerError::BadMessage(why)) => {
                tracing::warn!(role = ?self.role, entry = %d.entry_id, "dead-lettering: {why}");
                drop(tx);
                self.ack(d).await?;
                self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        // The orchestrator dying here is "between two saga steps": the reply is read, the
        // transition computed, nothing committed.
        self.crashes
            .check(CrashPoint::ConsumerBeforeCommit(service))?;
        tx.commit().await?;
        self.stats.applied.fetch_add(1, Ordering::Relaxed);
        self.stats.lag.lock().unwrap().record(age);
        // Committed but not acked: the entry stays pending and is redelivered.
        self.crashes
            .check(CrashPoint::ConsumerAfterCommit(service))?;
        self.ack(d).await
    }

    async fn ack(&mut self, d: &Delivery) -> Result<(), ConsumerError> {
        self.broker
            .ack(self.role.route(), self.role.group(), &d.entry_id)
            .await?;
        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
