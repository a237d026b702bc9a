//! The table every scenario writes to, and the rows it writes.
//!
//! `events` is what an ingestion endpoint stores: one row per device event. Its primary key
//! is the event's id, assigned where the event enters the system (the generator here, the
//! API for live requests), so it doubles as the dedup key that makes the queue writer's
//! batches idempotent. One index only: what each extra index costs per write is measured in
//! the seek-vs-scan lab (rows/s with 0/1/3/6 indexes) and not again here.

use std::ops::Range;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use uuid::Uuid;

/// Autovacuum is off on the table: it is insert-only and truncated between measurements,
/// and an insert-triggered autovacuum landing inside one method's timing would be noise.
pub const CREATE: &str = "
CREATE TABLE IF NOT EXISTS events (
    event_id   uuid PRIMARY KEY,            -- assigned at the edge: the dedup key
    device_id  integer NOT NULL,
    kind       text NOT NULL,
    value      double precision NOT NULL,
    payload    text NOT NULL,
    created_at timestamptz NOT NULL
) WITH (autovacuum_enabled = off)";

/// The column list every insert method names, in this order.
pub const COLUMNS: &str = "event_id, device_id, kind, value, payload, created_at";

/// Columns per row: a multi-row INSERT binds this many parameters per row.
pub const COLUMN_COUNT: usize = 6;

/// One row of `events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: Uuid,
    pub device_id: i32,
    pub kind: String,
    pub value: f64,
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

const KINDS: [&str; 5] = ["view", "click", "scroll", "add_to_cart", "purchase"];

/// splitmix64: a tiny, well-mixed hash, so the same seed gives the same rows everywhere.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Event {
    /// The `n`-th generated event for `seed`. Ids grow with `n` (as time-ordered UUIDv7s
    /// would), so every method appends to the right edge of the primary key.
    pub fn nth(seed: u64, n: u64) -> Self {
        let h = mix(seed ^ mix(n));
        let base = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid date");
        Self {
            event_id: Uuid::from_u64_pair(seed, n),
            device_id: (h % 5_000) as i32,
            kind: KINDS[(h >> 20) as usize % KINDS.len()].to_string(),
            // Quarter units: exactly representable, so text and binary COPY agree bit for bit.
            value: ((h >> 32) % 100_000) as f64 / 4.0,
            payload: format!(
                r#"{{"session":"{:016x}","path":"/p/{}","ua":"Mozilla/5.0 (X11; Linux x86_64)"}}"#,
                mix(h),
                h % 997
            ),
            created_at: base + chrono::Duration::milliseconds(n as i64 * 250),
        }
    }
}

/// Events `range` of `seed`'s stream.
pub fn generate(seed: u64, range: Range<u64>) -> Vec<Event> {
    range.map(|n| Event::nth(seed, n)).collect()
}

/// Fresh events for load phases: the generator's rows from a shared counter, so no two
/// phases (or workers) ever write the same id. Cheap to clone into every worker.
#[derive(Debug, Clone)]
pub struct EventStream {
    seed: u64,
    next: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl EventStream {
    /// Ids from `first` on (above every id the fixed row sets use).
    pub fn new(seed: u64, first: u64) -> Self {
        Self {
            seed,
            next: std::sync::Arc::new(first.into()),
        }
    }

    pub fn next_event(&self) -> Event {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Event::nth(self.seed, n)
    }

    /// Events handed out so far (a phase's count is the difference).
    pub fn issued(&self) -> u64 {
        self.next.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Create `events` (idempotent).
pub async fn setup(db: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(CREATE).execute(db).await.map(|_| ())
}

/// Empty `events` (between methods: each starts from the same empty table).
pub async fn reset(db: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
    sqlx::query("TRUNCATE events").execute(db).await.map(|_| ())
}

/// What is in the table: row count and an md5 over every column of every row in id order.
/// Two methods wrote the same rows exactly when their checksums are equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub rows: i64,
    pub md5: String,
}

pub async fn checksum(db: impl PgExecutor<'_>) -> Result<Checksum, sqlx::Error> {
    // Timestamps as epoch microseconds: independent of the session's TimeZone.
    let (rows, md5): (i64, Option<String>) = sqlx::query_as(
        "SELECT count(*),
                md5(string_agg(
                    concat_ws('|', event_id, device_id, kind, value, payload,
                              (extract(epoch FROM created_at) * 1000000)::bigint),
                    E'\\n' ORDER BY event_id))
         FROM events",
    )
    .fetch_one(db)
    .await?;
    Ok(Checksum {
        rows,
        md5: md5.unwrap_or_default(),
    })
}

/// How many of `ids` are in the table (after a crash: which acknowledged rows survived).
pub async fn present(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_id = ANY($1)")
        .bind(ids)
        .fetch_one(db)
        .await?;
    Ok(n as u64)
}

/// `INSERT` of one event: the statement of the single-row, per-transaction and direct paths.
pub const INSERT_ONE: &str =
    "INSERT INTO events (event_id, device_id, kind, value, payload, created_at)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// Insert one event with [`INSERT_ONE`].
pub async fn insert_one(db: impl PgExecutor<'_>, e: &Event) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_ONE)
        .bind(e.event_id)
        .bind(e.device_id)
        .bind(&e.kind)
        .bind(e.value)
        .bind(&e.payload)
        .bind(e.created_at)
        .execute(db)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_ids_grow() {
        assert_eq!(Event::nth(42, 7), Event::nth(42, 7));
        assert_ne!(Event::nth(42, 7), Event::nth(43, 7));
        assert!(Event::nth(42, 8).event_id > Event::nth(42, 7).event_id);
        let e = Event::nth(42, 1);
        assert!(!e.payload.contains(['\t', '\n', '\\']));
    }
}
