//! The relay: from outbox rows to stream entries, at least once.
//!
//! [`Relay`] is the one to run. In one transaction it claims the oldest unsent rows with
//! `FOR UPDATE SKIP LOCKED` (so several relay processes split the backlog instead of queueing
//! on each other's row locks), publishes them, marks them sent and commits. If it dies after
//! publishing and before the commit, the rows are still unsent and are published again by
//! the next relay: **duplicates, never losses** — which is why consumers dedupe.
//!
//! [`CursorRelay`] is the pitfall: it remembers the highest `seq` it published and asks for
//! `seq > last_seen`. Sequence values are handed out at INSERT, but rows become visible at
//! COMMIT, and transactions commit in any order: if the row with `seq = 7` commits after the
//! relay has already seen `seq = 8`, the cursor has moved past 7 and never looks back. The row
//! is not late; it is lost.
//!
//! The fix chosen here is the claim: track *unsent rows* (`sent_at IS NULL`) instead of a
//! position, so a late committer is simply still unsent on the next poll. (The other fix keeps
//! a cursor but never advances it past a transaction that might still commit: store
//! `pg_current_xact_id()` per row and only publish rows whose xid is below
//! `pg_snapshot_xmin(pg_current_snapshot())`. It avoids the UPDATE per row — no dead tuples
//! for VACUUM — at the price of holding every event back behind the oldest open transaction
//! on the database. Debezium sidesteps both: it reads the WAL, which is commit order.)

use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::broker::{Broker, BrokerError, Message};
use crate::crash::{CrashPoint, Crashed, Crashes, Service};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Crashed(#[from] Crashed),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

const COLUMNS: &str = "id, aggregatetype, aggregateid, type, payload, \
                       (extract(epoch FROM created_at) * 1e6)::bigint AS created_us";

fn message(row: &sqlx::postgres::PgRow) -> Result<Message, sqlx::Error> {
    Ok(Message {
        id: row.try_get::<Uuid, _>("id")?,
        aggregatetype: row.try_get("aggregatetype")?,
        aggregateid: row.try_get("aggregateid")?,
        kind: row.try_get("type")?,
        payload: row.try_get::<Value, _>("payload")?,
        created_us: row.try_get("created_us")?,
    })
}

/// The claiming relay of one service's outbox.
#[derive(Debug)]
pub struct Relay {
    service: Service,
    pool: PgPool,
    broker: Broker,
    crashes: std::sync::Arc<Crashes>,
    batch: i64,
}

impl Relay {
    pub fn new(
        service: Service,
        pool: PgPool,
        broker: Broker,
        crashes: std::sync::Arc<Crashes>,
        batch: i64,
    ) -> Self {
        Self {
            service,
            pool,
            broker,
            crashes,
            batch,
        }
    }

    pub fn service(&self) -> Service {
        self.service
    }

    /// Claim, publish and mark one batch. Returns how many rows it published.
    pub async fn pump_once(&mut self) -> Result<usize, RelayError> {
        let mut tx = self.pool.begin().await?;
        // Rows another relay has claimed are locked: skip them rather than wait.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM outbox
             WHERE sent_at IS NULL
             ORDER BY seq
             LIMIT $1
             FOR UPDATE SKIP LOCKED"
        )))
        .bind(self.batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let batch = rows.iter().map(message).collect::<Result<Vec<_>, _>>()?;
        self.broker.publish(&batch).await?;
        // Dying here leaves the rows unsent (the transaction rolls back): the next relay
        // publishes them again. Duplicates, not losses.
        self.crashes
            .check(CrashPoint::RelayAfterPublish(self.service))?;
        let ids: Vec<Uuid> = batch.iter().map(|m| m.id).collect();
        sqlx::query("UPDATE outbox SET sent_at = clock_timestamp() WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(batch.len())
    }

    /// Pump until the outbox is empty (one task, no notifications: the stepping driver).
    pub async fn drain(&mut self) -> Result<usize, RelayError> {
        let mut total = 0;
        loop {
            let n = self.pump_once().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }
}

/// The pitfall: a relay that keeps a cursor on `seq`.
#[derive(Debug)]
pub struct CursorRelay {
    pool: PgPool,
    broker: Broker,
    pub last_seen: i64,
    batch: i64,
}

impl CursorRelay {
    /// Start after `last_seen` (the highest `seq` already published).
    pub fn new(pool: PgPool, broker: Broker, last_seen: i64, batch: i64) -> Self {
        Self {
            pool,
            broker,
            last_seen,
            batch,
        }
    }

    /// Publish the rows after the cursor and move it to the highest one seen.
    pub async fn pump_once(&mut self) -> Result<usize, RelayError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT seq, {COLUMNS} FROM outbox
             WHERE seq > $1
             ORDER BY seq
             LIMIT $2"
        )))
        .bind(self.last_seen)
        .bind(self.batch)
        .fetch_all(&self.pool)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(0);
        };
        // The bug, in one line: everything at or below this seq is now "done" — including a
        // row whose transaction has not committed yet.
        let last_seen: i64 = last.try_get("seq")?;
        let batch = rows.iter().map(message).collect::<Result<Vec<_>, _>>()?;
        self.broker.publish(&batch).await?;
        self.last_seen = last_seen;
        Ok(batch.len())
    }
}

/// Either relay, pumped the same way (the pitfall scenario runs both side by side).
pub(crate) trait Pump {
    async fn pump(&mut self) -> Result<usize, RelayError>;
}

impl Pump for Relay {
    async fn pump(&mut self) -> Result<usize, RelayError> {
        self.pump_once().await
    }
}

impl Pump for CursorRelay {
    async fn pump(&mut self) -> Result<usize, RelayError> {
        self.pump_once().await
    }
}

/// The highest `seq` in an outbox (where a fresh cursor relay starts).
pub async fn max_seq(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM outbox")
        .fetch_one(pool)
        .await
}

/// Wakes a relay when its outbox gets rows: `LISTEN <schema>_outbox`, fed by the outbox's
/// statement trigger at commit. A relay sleeps here when it found nothing, instead of polling
/// in a tight loop; the fallback timeout covers a notification lost while reconnecting.
pub struct Wake {
    listener: PgListener,
}

impl std::fmt::Debug for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wake")
    }
}

impl Wake {
    pub async fn listen(pool: &PgPool, service: Service) -> Result<Self, sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener
            .listen(&format!("{}_outbox", service.schema()))
            .await?;
        Ok(Self { listener })
    }

    /// Wait for a commit that inserted outbox rows, or `fallback`.
    pub async fn wait(&mut self, fallback: Duration) -> Result<(), sqlx::Error> {
        match tokio::time::timeout(fallback, self.listener.recv()).await {
            Ok(r) => r.map(drop)?,
            Err(_elapsed) => {}
        }
        // Several commits may have notified: one pump serves them all.
        while self.listener.next_buffered().is_some() {}
        Ok(())
    }
}
