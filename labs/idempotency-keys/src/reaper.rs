//! Deleting expired keys. Expiry itself needs no reaper — [`crate::idempotency::begin`]
//! treats an expired key as new — the reaper only keeps the table (and its index) small.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::policy::Clock;

/// Delete keys with `expires_at <= now`, `batch` rows per statement (short transactions,
/// no long lock on a big backlog). `SKIP LOCKED` steps around rows a request is updating
/// right now. Returns the number deleted.
pub async fn reap_expired(
    pool: &PgPool,
    now: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "DELETE FROM idempotency_keys WHERE id IN (
                 SELECT id FROM idempotency_keys WHERE expires_at <= $1
                 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(now)
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < batch as u64 {
            return Ok(total);
        }
    }
}

/// A background reaper; stops when dropped.
#[derive(Debug)]
pub struct Reaper(tokio::task::JoinHandle<()>);

impl Drop for Reaper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run [`reap_expired`] every `every` until the returned [`Reaper`] is dropped.
pub fn spawn_reaper(pool: PgPool, clock: Clock, every: Duration) -> Reaper {
    Reaper(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match reap_expired(&pool, clock.now(), 1000).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "reaped expired idempotency keys"),
                Err(e) => tracing::warn!(error = %e, "reaper failed; will retry"),
            }
        }
    }))
}
