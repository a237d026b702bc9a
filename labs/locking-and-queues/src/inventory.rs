//! The lost update and its four fixes, on inventory rows.
//!
//! Every client sells one unit: "read the stock, subtract one, write it back". At read
//! committed, two clients that read the same stock both write `stock - 1`, and one sale
//! vanishes. The fixes differ in *who waits* and *who retries*:
//!
//! | strategy | statements | under contention |
//! |---|---|---|
//! | read-modify-write | `SELECT qty` … `UPDATE SET qty = $computed` | loses updates |
//! | atomic update | `UPDATE SET qty = qty - 1 WHERE qty > 0` | the row lock serialises writers; nothing to retry |
//! | optimistic | `SELECT qty, version` … `UPDATE … WHERE version = $seen` | 0 rows → read again and retry |
//! | pessimistic | `SELECT … FOR UPDATE` … `UPDATE` in one transaction | later readers wait for the lock |
//! | NOWAIT | `SELECT … FOR UPDATE NOWAIT` | a held lock is an instant error (55P03) → retry |
//!
//! Contention goes from many rows picked uniformly to one hot row; a Zipf picker in between.
//! Retries are immediate (no backoff): a backoff trades retries for latency, and the point
//! here is to see the retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use labkit::measure::Call;
use labkit::{Bound, ClosedLoop, LatencySummary};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use sqlx::{Connection, PgConnection, PgPool};

use crate::interleave::{Gate, NoPause, Point};

/// Units every row starts with: far more than any run sells, so no row sells out and the
/// expected final stock is exactly `STOCK - sales`.
pub const STOCK: i32 = 1_000_000_000;

/// A client gives up after this many attempts (only a pathological run gets there).
pub const MAX_ATTEMPTS: u32 = 10_000;

/// The statements, as the strategies send them.
pub mod sql {
    pub const READ: &str = "SELECT qty FROM inventory WHERE id = $1";
    /// The application computed `qty - 1` from what it read; the write does not look again.
    pub const WRITE_COMPUTED: &str = "UPDATE inventory SET qty = $2 WHERE id = $1";
    pub const ATOMIC_DECREMENT: &str =
        "UPDATE inventory SET qty = qty - 1 WHERE id = $1 AND qty > 0";
    pub const READ_VERSIONED: &str = "SELECT qty, version FROM inventory WHERE id = $1";
    /// Succeeds only if nobody wrote since we read: 0 rows updated means "retry".
    pub const WRITE_IF_VERSION: &str = "UPDATE inventory SET qty = $2, version = version + 1 \
                                        WHERE id = $1 AND version = $3";
    pub const READ_FOR_UPDATE: &str = "SELECT qty FROM inventory WHERE id = $1 FOR UPDATE";
    pub const READ_FOR_UPDATE_NOWAIT: &str =
        "SELECT qty FROM inventory WHERE id = $1 FOR UPDATE NOWAIT";
}

/// How a client sells one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    ReadModifyWrite,
    AtomicUpdate,
    Optimistic,
    Pessimistic,
    NoWait,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Self::ReadModifyWrite,
        Self::AtomicUpdate,
        Self::Optimistic,
        Self::Pessimistic,
        Self::NoWait,
    ];

    /// The finding-key part: `lost_updates_<key>`.
    pub fn key(self) -> &'static str {
        match self {
            Self::ReadModifyWrite => "read_modify_write",
            Self::AtomicUpdate => "atomic_update",
            Self::Optimistic => "optimistic",
            Self::Pessimistic => "pessimistic",
            Self::NoWait => "nowait",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::ReadModifyWrite => "read-modify-write",
            Self::AtomicUpdate => "atomic UPDATE … WHERE qty > 0",
            Self::Optimistic => "optimistic (version check)",
            Self::Pessimistic => "pessimistic (FOR UPDATE)",
            Self::NoWait => "FOR UPDATE NOWAIT",
        }
    }
}

/// One sale's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sale {
    /// False when the row was at 0 (sold out): nothing written.
    pub sold: bool,
    /// Attempts thrown away: version mismatches (optimistic) or 55P03 (NOWAIT).
    pub retries: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SaleError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("gave up after {0} attempts")]
    GaveUp(u32),
}

fn lock_not_available(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03")
}

/// Sell one unit of `item` with `strategy`. `gate` is called between the read and the write
/// (tests pause there; a load run passes [`NoPause`]).
pub async fn sell(
    conn: &mut PgConnection,
    strategy: Strategy,
    item: i64,
    gate: &impl Gate,
) -> Result<Sale, SaleError> {
    let sale = |sold, retries| Ok(Sale { sold, retries });
    match strategy {
        Strategy::ReadModifyWrite => {
            // A transaction changes nothing here: at read committed the UPDATE does not
            // re-check what the SELECT saw.
            let mut tx = conn.begin().await?;
            let qty: i32 = sqlx::query_scalar(sql::READ)
                .bind(item)
                .fetch_one(&mut *tx)
                .await?;
            gate.at(Point::Read).await;
            if qty <= 0 {
                return sale(false, 0);
            }
            sqlx::query(sql::WRITE_COMPUTED)
                .bind(item)
                .bind(qty - 1)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            sale(true, 0)
        }
        Strategy::AtomicUpdate => {
            // One statement: the row lock is taken and the new value computed from the
            // current row, so concurrent decrements queue up and none is lost.
            let done = sqlx::query(sql::ATOMIC_DECREMENT)
                .bind(item)
                .execute(&mut *conn)
                .await?;
            sale(done.rows_affected() == 1, 0)
        }
        Strategy::Optimistic => {
            for attempt in 0..MAX_ATTEMPTS {
                let (qty, version): (i32, i64) = sqlx::query_as(sql::READ_VERSIONED)
                    .bind(item)
                    .fetch_one(&mut *conn)
                    .await?;
                gate.at(Point::Read).await;
                if qty <= 0 {
                    return sale(false, attempt);
                }
                let done = sqlx::query(sql::WRITE_IF_VERSION)
                    .bind(item)
                    .bind(qty - 1)
                    .bind(version)
                    .execute(&mut *conn)
                    .await?;
                if done.rows_affected() == 1 {
                    return sale(true, attempt);
                }
                // Someone wrote since we read: our qty is stale. Read again.
            }
            Err(SaleError::GaveUp(MAX_ATTEMPTS))
        }
        Strategy::Pessimistic | Strategy::NoWait => {
            let read = if strategy == Strategy::NoWait {
                sql::READ_FOR_UPDATE_NOWAIT
            } else {
                sql::READ_FOR_UPDATE
            };
            for attempt in 0..MAX_ATTEMPTS {
                let mut tx = conn.begin().await?;
                let qty: i32 = match sqlx::query_scalar(read)
                    .bind(item)
                    .fetch_one(&mut *tx)
                    .await
                {
                    Ok(q) => q,
                    Err(e) if lock_not_available(&e) => {
                        // NOWAIT: someone holds the row. Give up this attempt at once.
                        tx.rollback().await?;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                gate.at(Point::Read).await;
                if qty <= 0 {
                    tx.commit().await?;
                    return sale(false, attempt);
                }
                sqlx::query(sql::WRITE_COMPUTED)
                    .bind(item)
                    .bind(qty - 1)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                return sale(true, attempt);
            }
            Err(SaleError::GaveUp(MAX_ATTEMPTS))
        }
    }
}

/// How the clients pick rows: from many rows uniformly to one hot row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contention {
    /// Finding-key part: `…_low_contention`.
    pub key: &'static str,
    pub label: &'static str,
    /// Rows the clients pick from.
    pub rows: u64,
    /// Zipf exponent; `None` = uniform.
    pub zipf: Option<f64>,
}

impl Contention {
    /// Low (uniform over `rows`), Zipf 1.0, Zipf 2.0, high (one row).
    pub fn levels(rows: u64) -> [Contention; 4] {
        [
            Contention {
                key: "low_contention",
                label: "low: uniform over all rows",
                rows,
                zipf: None,
            },
            Contention {
                key: "zipf_1_contention",
                label: "Zipf s=1.0",
                rows,
                zipf: Some(1.0),
            },
            Contention {
                key: "zipf_2_contention",
                label: "Zipf s=2.0",
                rows,
                zipf: Some(2.0),
            },
            Contention {
                key: "high_contention",
                label: "high: one hot row",
                rows: 1,
                zipf: None,
            },
        ]
    }

    /// The share of sales that hit the hottest row (exact, from the distribution).
    pub fn hot_row_share(&self) -> f64 {
        match self.zipf {
            None => 1.0 / self.rows as f64,
            Some(s) => {
                let h: f64 = (1..=self.rows).map(|k| (k as f64).powf(-s)).sum();
                1.0 / h
            }
        }
    }

    pub fn picker(&self, seed: u64) -> Picker {
        Picker {
            rows: self.rows,
            zipf: self
                .zipf
                .map(|s| Zipf::new(self.rows as f64, s).expect("rows >= 1 and s >= 0")),
            seed,
        }
    }
}

/// Deterministic row picks: the n-th sale of a run picks the same row for the same seed.
#[derive(Debug, Clone, Copy)]
pub struct Picker {
    rows: u64,
    zipf: Option<Zipf<f64>>,
    seed: u64,
}

impl Picker {
    pub fn pick(&self, seq: u64) -> i64 {
        let mut rng = StdRng::seed_from_u64(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seq);
        match self.zipf {
            Some(z) => z.sample(&mut rng) as i64,
            None => rng.random_range(1..=self.rows) as i64,
        }
    }
}

/// The load of one phase.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
}

/// One strategy at one contention level, measured.
#[derive(Debug, Clone)]
pub struct PhaseRun {
    pub strategy: Strategy,
    pub contention: Contention,
    pub clients: usize,
    /// Latency per sale (retries included) and sales per second, measured phase only.
    pub summary: LatencySummary,
    /// Sales the clients were told succeeded, warm-up included.
    pub sold: u64,
    /// Attempts thrown away, warm-up included.
    pub retries: u64,
    /// Sales reported as done that the stock does not show: `sold - (STOCK·rows - Σ qty)`.
    pub lost: i64,
    pub first_error: Option<String>,
}

impl PhaseRun {
    pub fn retries_per_success(&self) -> f64 {
        self.retries as f64 / self.sold.max(1) as f64
    }
}

/// Run `strategy` at `contention` from `shape.clients` concurrent clients (each sale on a
/// connection of `clients`, a pool with one connection per client), then audit the stock.
pub async fn run_phase(
    admin: &PgPool,
    clients: &PgPool,
    strategy: Strategy,
    contention: Contention,
    shape: Shape,
    seed: u64,
) -> Result<PhaseRun, sqlx::Error> {
    crate::schema::reset_inventory(admin, contention.rows as i64, STOCK).await?;
    let sold = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let picker = contention.picker(seed);
    let cfg = ClosedLoop::new(shape.clients, Bound::Duration(shape.duration))
        .warmup(shape.warmup)
        .label(format!(
            "lost update: {} · {} · {} clients",
            strategy.label(),
            contention.label,
            shape.clients
        ));
    let op = {
        let (pool, sold, retries) = (clients.clone(), sold.clone(), retries.clone());
        move |call: Call| {
            let (pool, sold, retries) = (pool.clone(), sold.clone(), retries.clone());
            async move {
                let mut conn = pool.acquire().await?;
                let sale = sell(&mut conn, strategy, picker.pick(call.seq), &NoPause).await?;
                retries.fetch_add(sale.retries as u64, Ordering::Relaxed);
                if sale.sold {
                    sold.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, SaleError>(())
            }
        }
    };
    let result = labkit::closed_loop(cfg, op).await;
    let removed: i64 = sqlx::query_scalar("SELECT sum($1::bigint - qty)::bigint FROM inventory")
        .bind(STOCK as i64)
        .fetch_one(admin)
        .await?;
    let sold = sold.load(Ordering::Relaxed);
    Ok(PhaseRun {
        strategy,
        contention,
        clients: shape.clients,
        summary: result.summary,
        sold,
        retries: retries.load(Ordering::Relaxed),
        lost: sold as i64 - removed,
        first_error: result.first_error,
    })
}
