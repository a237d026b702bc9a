//! The money-transfer workload: many accounts, concurrent transfers, and an invariant that
//! must survive them — the books balance and no account goes negative.
//!
//! A transfer is written the way application code usually is: read both balances, check
//! the source can pay, write the two new balances computed in the app, append to a ledger.
//! That read-modify-write is what the isolation level has to protect. (`SET balance =
//! balance - $1` would make the writes atomic, but the balance *check* would still race;
//! the lab keeps the check in the app because that is where the war story lives.)
//!
//! Modes, all running the same transfer code:
//!
//! | mode | isolation | locking | on 40001 / 40P01 |
//! |---|---|---|---|
//! | `read_committed` | read committed | none | fail |
//! | `for_update_unordered` | read committed | `FOR UPDATE`, source row then target row | fail |
//! | `for_update` | read committed | `FOR UPDATE`, lower account id first | fail |
//! | `repeatable_read` | repeatable read | none | retry |
//! | `serializable` | serializable | none | retry |
//!
//! After each mode the books are audited against the ledger (only committed transfers are
//! in it): an account *violates the invariant* if its balance differs from its opening
//! balance plus its committed ledger entries, or is negative.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use labkit::{Bound, ClosedLoop, LabCtx, LatencySummary};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::Zipf;
use sqlx::{ConnectOptions, PgPool, Postgres, Transaction};

use crate::deadlock::LOWER_DEADLOCK_TIMEOUT;

/// How transfers protect their read-modify-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    ReadCommitted,
    ForUpdateUnordered,
    ForUpdate,
    RepeatableRead,
    Serializable,
}

/// In which order a transfer locks its two rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LockOrder {
    /// Source, then target: two opposite transfers take the same two locks in opposite order.
    SourceFirst,
    /// Lower id first, whatever the direction: every transfer agrees, so no cycle can form.
    LowerIdFirst,
}

impl Mode {
    pub const ALL: [Mode; 5] = [
        Mode::ReadCommitted,
        Mode::ForUpdateUnordered,
        Mode::ForUpdate,
        Mode::RepeatableRead,
        Mode::Serializable,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Self::ReadCommitted => "read_committed",
            Self::ForUpdateUnordered => "for_update_unordered",
            Self::ForUpdate => "for_update",
            Self::RepeatableRead => "repeatable_read",
            Self::Serializable => "serializable",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::ReadCommitted => "read committed, no locks",
            Self::ForUpdateUnordered => "read committed + FOR UPDATE, source row first",
            Self::ForUpdate => "read committed + FOR UPDATE, lower id first",
            Self::RepeatableRead => "repeatable read + retry",
            Self::Serializable => "serializable + retry",
        }
    }

    fn begin(self) -> &'static str {
        match self {
            Self::ReadCommitted | Self::ForUpdateUnordered | Self::ForUpdate => {
                "BEGIN ISOLATION LEVEL READ COMMITTED"
            }
            Self::RepeatableRead => "BEGIN ISOLATION LEVEL REPEATABLE READ",
            Self::Serializable => "BEGIN ISOLATION LEVEL SERIALIZABLE",
        }
    }

    fn lock_order(self) -> Option<LockOrder> {
        match self {
            Self::ForUpdateUnordered => Some(LockOrder::SourceFirst),
            Self::ForUpdate => Some(LockOrder::LowerIdFirst),
            _ => None,
        }
    }

    /// Snapshot levels report conflicts as errors the caller is expected to retry; the
    /// read-committed modes surface them (that is the point of counting deadlocks there).
    pub fn retries(self) -> bool {
        matches!(self, Self::RepeatableRead | Self::Serializable)
    }
}

/// Give up on one transfer after this many attempts (it then counts as failed).
pub const MAX_ATTEMPTS: u32 = 100;

/// Move `amount` from account `from` to account `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    pub from: i32,
    pub to: i32,
    pub amount: i64,
}

/// What a transfer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Committed,
    /// The source could not pay; nothing changed.
    Declined,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("deadlock detected (40P01)")]
    Deadlock,
    #[error("serialization failure (40001)")]
    SerializationFailure,
    #[error("gave up after {0} attempts")]
    RetriesExhausted(u32),
    #[error(transparent)]
    Db(sqlx::Error),
}

/// Counts shared by the workers of one run.
#[derive(Debug, Default)]
pub struct Tally {
    attempts: AtomicU64,
    committed: AtomicU64,
    declined: AtomicU64,
    retried_40001: AtomicU64,
    retried_40p01: AtomicU64,
    failed_40001: AtomicU64,
    failed_40p01: AtomicU64,
    failed_other: AtomicU64,
}

/// A plain copy of a [`Tally`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub attempts: u64,
    pub committed: u64,
    pub declined: u64,
    pub retried_40001: u64,
    pub retried_40p01: u64,
    pub failed_40001: u64,
    pub failed_40p01: u64,
    pub failed_other: u64,
}

impl Counts {
    /// Every 40P01 Postgres raised, retried or not.
    pub fn deadlocks(&self) -> u64 {
        self.retried_40p01 + self.failed_40p01
    }

    /// Every 40001 Postgres raised, retried or not.
    pub fn serialization_failures(&self) -> u64 {
        self.retried_40001 + self.failed_40001
    }

    pub fn failed(&self) -> u64 {
        self.failed_40001 + self.failed_40p01 + self.failed_other
    }
}

impl Tally {
    pub fn counts(&self) -> Counts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            attempts: g(&self.attempts),
            committed: g(&self.committed),
            declined: g(&self.declined),
            retried_40001: g(&self.retried_40001),
            retried_40p01: g(&self.retried_40p01),
            failed_40001: g(&self.failed_40001),
            failed_40p01: g(&self.failed_40p01),
            failed_other: g(&self.failed_other),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// One transfer in `mode`, retried on 40001/40P01 when the mode retries.
pub async fn transfer(
    pool: &PgPool,
    mode: Mode,
    t: Transfer,
    tally: &Tally,
) -> Result<Applied, TransferError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        bump(&tally.attempts);
        let err = match attempt(pool, mode, t).await {
            Ok(applied) => {
                bump(match applied {
                    Applied::Committed => &tally.committed,
                    Applied::Declined => &tally.declined,
                });
                return Ok(applied);
            }
            Err(e) => e,
        };
        let code = match &err {
            sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
            _ => None,
        };
        // Retrying immediately is safe: the transaction we conflicted with has committed or
        // aborted by the time Postgres reports the conflict, so the retry sees its result.
        let (retried, failed, error) = match code.as_deref() {
            Some("40001") => (
                &tally.retried_40001,
                &tally.failed_40001,
                TransferError::SerializationFailure,
            ),
            Some("40P01") => (
                &tally.retried_40p01,
                &tally.failed_40p01,
                TransferError::Deadlock,
            ),
            _ => {
                bump(&tally.failed_other);
                return Err(TransferError::Db(err));
            }
        };
        if mode.retries() && attempts < MAX_ATTEMPTS {
            bump(retried);
            continue;
        }
        bump(failed);
        return Err(if mode.retries() {
            TransferError::RetriesExhausted(attempts)
        } else {
            error
        });
    }
}

/// One attempt: the transaction itself.
async fn attempt(pool: &PgPool, mode: Mode, t: Transfer) -> Result<Applied, sqlx::Error> {
    let mut tx = pool.begin_with(mode.begin()).await?;
    let (from_balance, to_balance) = match mode.lock_order() {
        None => (
            balance(&mut tx, t.from, false).await?,
            balance(&mut tx, t.to, false).await?,
        ),
        Some(LockOrder::SourceFirst) => {
            let from = balance(&mut tx, t.from, true).await?;
            (from, balance(&mut tx, t.to, true).await?)
        }
        Some(LockOrder::LowerIdFirst) if t.from < t.to => {
            let from = balance(&mut tx, t.from, true).await?;
            (from, balance(&mut tx, t.to, true).await?)
        }
        Some(LockOrder::LowerIdFirst) => {
            let to = balance(&mut tx, t.to, true).await?;
            (balance(&mut tx, t.from, true).await?, to)
        }
    };
    if from_balance < t.amount {
        tx.rollback().await?;
        return Ok(Applied::Declined);
    }
    // New balances computed from what this transaction read: correct only if nobody changed
    // those rows since — which is exactly what the mode has to guarantee.
    set_balance(&mut tx, t.from, from_balance - t.amount).await?;
    set_balance(&mut tx, t.to, to_balance + t.amount).await?;
    sqlx::query("INSERT INTO ledger (from_id, to_id, amount) VALUES ($1, $2, $3)")
        .bind(t.from)
        .bind(t.to)
        .bind(t.amount)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Applied::Committed)
}

async fn balance(
    tx: &mut Transaction<'static, Postgres>,
    id: i32,
    for_update: bool,
) -> Result<i64, sqlx::Error> {
    let sql = if for_update {
        "SELECT balance FROM accounts WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT balance FROM accounts WHERE id = $1"
    };
    sqlx::query_scalar(sql).bind(id).fetch_one(&mut **tx).await
}

async fn set_balance(
    tx: &mut Transaction<'static, Postgres>,
    id: i32,
    balance: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET balance = $2 WHERE id = $1")
        .bind(id)
        .bind(balance)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Schema, seeding, audit.
// ---------------------------------------------------------------------------------------

/// Create `accounts` (opening balances 100..=199 from the seed) and an empty `ledger`.
pub async fn setup(pool: &PgPool, accounts: u64, seed: u64) -> Result<(), sqlx::Error> {
    // No CHECK (balance >= 0): it would turn the race into an error instead of letting the
    // audit show it. In production you want both the constraint and the right isolation.
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS accounts, ledger;
         CREATE TABLE accounts (id int PRIMARY KEY, opening bigint NOT NULL, balance bigint NOT NULL);
         CREATE TABLE ledger (id bigserial PRIMARY KEY, from_id int NOT NULL, to_id int NOT NULL, amount bigint NOT NULL);",
    )
    .execute(pool)
    .await?;
    labkit::seed::generate(
        pool,
        "accounts",
        accounts,
        seed,
        "INSERT INTO accounts (id, opening, balance)
         SELECT g, o, o FROM generate_series($1::bigint, $2::bigint) g,
              LATERAL (SELECT 100 + floor(labkit_uniform(g, $3, 1) * 100)::bigint AS o) b",
        |q| q,
    )
    .await?;
    // VACUUM cannot share a simple-protocol batch (an implicit transaction) with other statements.
    sqlx::raw_sql("VACUUM ANALYZE accounts")
        .execute(pool)
        .await?;
    Ok(())
}

/// Back to opening balances and an empty ledger, between modes.
pub async fn reset(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("UPDATE accounts SET balance = opening; TRUNCATE ledger")
        .execute(pool)
        .await?;
    // Each mode starts from a table without the previous mode's dead row versions.
    sqlx::raw_sql("VACUUM ANALYZE accounts")
        .execute(pool)
        .await?;
    Ok(())
}

/// The audit after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Books {
    /// Accounts whose balance ≠ opening + committed ledger entries, or below zero.
    pub violations: i64,
    /// Accounts below zero.
    pub negative: i64,
    /// Money created (+) or destroyed (−) overall: Σ balance − Σ opening.
    pub drift: i64,
}

pub async fn audit(pool: &PgPool) -> Result<Books, sqlx::Error> {
    sqlx::query_as::<_, Books>(
        "WITH moved AS (
             SELECT from_id AS id, -amount AS delta FROM ledger
             UNION ALL
             SELECT to_id, amount FROM ledger
         ), net AS (
             SELECT id, sum(delta) AS net FROM moved GROUP BY id
         )
         SELECT count(*) FILTER (WHERE a.balance <> a.opening + coalesce(n.net, 0) OR a.balance < 0) AS violations,
                count(*) FILTER (WHERE a.balance < 0) AS negative,
                coalesce(sum(a.balance) - sum(a.opening), 0)::bigint AS drift
         FROM accounts a LEFT JOIN net n USING (id)",
    )
    .fetch_one(pool)
    .await
}

// ---------------------------------------------------------------------------------------
// Load.
// ---------------------------------------------------------------------------------------

/// Which transfers to run: account ids Zipf-distributed (a few hot accounts, as a
/// marketplace's big merchants are), amounts 1..=50; deterministic per seed and sequence
/// number.
#[derive(Debug, Clone, Copy)]
pub struct Picker {
    accounts: i32,
    zipf: Zipf<f64>,
    seed: u64,
}

impl Picker {
    pub fn new(accounts: u64, skew: f64, seed: u64) -> Self {
        Self {
            accounts: accounts as i32,
            zipf: Zipf::new(accounts as f64, skew).expect("accounts >= 1 and skew >= 0"),
            seed,
        }
    }

    pub fn pick(&self, seq: u64) -> Transfer {
        let mut rng = StdRng::seed_from_u64(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seq);
        let from = rng.sample(self.zipf) as i32;
        let mut to = rng.sample(self.zipf) as i32;
        if to == from {
            to = from % self.accounts + 1;
        }
        Transfer {
            from,
            to,
            amount: rng.random_range(1..=50),
        }
    }
}

/// The workload's pool, `size` connections opened up front. Every session runs with
/// `client_min_messages = error` (a startup option, any user may set it) and, where the
/// server allows it, `deadlock_timeout = 100ms` (superuser-only, so it is tried after
/// connecting and the server's value stays if refused). Returns the pool and the timeout
/// its sessions use.
pub async fn pool(ctx: &LabCtx, size: u32) -> Result<(PgPool, String), sqlx::Error> {
    let pool = ctx
        .new_pool_with(
            labkit::pool_options(size)
                .min_connections(size)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // Without superuser this fails with 42501; the session goes on.
                        let _ = sqlx::query(LOWER_DEADLOCK_TIMEOUT)
                            .execute(&mut *conn)
                            .await;
                        Ok(())
                    })
                }),
            ctx.connect_options()
                // After a COMMIT fails with 40001 sqlx still sends ROLLBACK when the
                // transaction drops, and Postgres warns "there is no transaction in
                // progress" — thousands of times in a retry storm. Errors still arrive.
                .options([("client_min_messages", "error")])
                // Statements that wait seconds on a row lock are the subject here, not
                // something to warn about on stderr thousands of times.
                .disable_statement_logging(),
        )
        .await?;
    let timeout: String = sqlx::query_scalar("SHOW deadlock_timeout")
        .fetch_one(&pool)
        .await?;
    Ok((pool, timeout))
}

/// What one mode did.
#[derive(Debug, Clone)]
pub struct ModeRun {
    pub mode: Mode,
    pub transfers: u64,
    pub load: LatencySummary,
    pub counts: Counts,
    pub books: Books,
}

impl ModeRun {
    /// Retries per committed transfer.
    pub fn retries_per_commit(&self) -> f64 {
        let retries = self.counts.retried_40001 + self.counts.retried_40p01;
        retries as f64 / self.counts.committed.max(1) as f64
    }

    /// Share of attempts that ended in a serialization failure (40001), in %.
    pub fn serialization_failure_pct(&self) -> f64 {
        100.0 * self.counts.serialization_failures() as f64 / self.counts.attempts.max(1) as f64
    }

    pub fn committed_per_s(&self) -> f64 {
        self.counts.committed as f64 / self.load.elapsed_s.max(1e-9)
    }
}

/// Reset the books, run `transfers` transfers from `workers` concurrent clients, audit.
pub async fn run_mode(
    pool: &PgPool,
    mode: Mode,
    picker: Picker,
    transfers: u64,
    workers: usize,
) -> Result<ModeRun, sqlx::Error> {
    reset(pool).await?;
    let tally = Arc::new(Tally::default());
    let load = {
        let pool = pool.clone();
        let tally = tally.clone();
        labkit::closed_loop(
            ClosedLoop::new(workers, Bound::Count(transfers))
                .label(format!("transfers: {}", mode.label())),
            move |call| {
                let pool = pool.clone();
                let tally = tally.clone();
                let t = picker.pick(call.seq);
                async move { transfer(&pool, mode, t, &tally).await }
            },
        )
        .await
    };
    Ok(ModeRun {
        mode,
        transfers,
        load: load.summary,
        counts: tally.counts(),
        books: audit(pool).await?,
    })
}
