//! The expensive thing being cached: finance's month-end report, a real aggregate over a
//! real ledger table, plus the small `accounts` rows the eviction and deploy scenarios cache.
//!
//! The loader counts every recompute and the time Postgres spent on it. Those counters are
//! the lab's instruments, shared by all app instances so the report can add them up; the
//! caching mechanisms never read them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use labkit::Scale;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

pub const SCHEMA: &str = r#"
CREATE TABLE ledger_entries (
    id           bigint PRIMARY KEY,
    account_id   int    NOT NULL,
    booked_on    date   NOT NULL,
    amount_cents bigint NOT NULL  -- credits positive, debits negative
);
CREATE TABLE accounts (
    id      int PRIMARY KEY,
    name    text   NOT NULL,
    balance bigint NOT NULL,
    profile text   NOT NULL   -- ~1 KB of KYC notes: what makes a cached account row weigh something
);
-- Ids for entries posted after the seed (which numbers rows 1..n itself). A sequence, not
-- `max(id) + 1`: two writers posting at once would both read the same max and collide.
CREATE SEQUENCE ledger_entry_posted_ids START WITH 1000000000000;
"#;

/// A year of bookings; the report covers one month of it, so every run scans the whole
/// table to find that month — the shape of a real "just run it at month-end" report.
/// `$4` is the number of accounts (a few of them book most entries).
const SEED_LEDGER: &str = r#"
INSERT INTO ledger_entries (id, account_id, booked_on, amount_cents)
SELECT g,
       labkit_skewed(g, $3, 1, $4, 2.0)::int,
       DATE '2026-01-01' + floor(labkit_uniform(g, $3, 2) * 365)::int,
       floor(labkit_uniform(g, $3, 3) * 200000)::bigint - 50000
FROM generate_series($1::bigint, $2::bigint) AS g
"#;

const SEED_ACCOUNTS: &str = r#"
INSERT INTO accounts (id, name, balance, profile)
SELECT g, 'account-' || g,
       floor(labkit_uniform(g, $3, 4) * 10000000)::bigint,
       repeat(md5(g::text || $3::text), 32)
FROM generate_series($1::bigint, $2::bigint) AS g
"#;

/// The month finance closes.
pub fn report_month() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 1).expect("valid date")
}

/// Sizes by scale: ledger rows, accounts.
pub fn sizes(scale: Scale) -> (u64, u64) {
    (
        scale.pick(50_000, 500_000, 5_000_000),
        scale.pick(2_000, 5_000, 50_000),
    )
}

/// Create the tables and fill them (server-side `generate_series`, deterministic per seed).
pub async fn seed(pool: &PgPool, scale: Scale, seed: u64) -> Result<(), sqlx::Error> {
    let (ledger_rows, accounts) = sizes(scale);
    sqlx::raw_sql(SCHEMA).execute(pool).await?;
    let accounts_bind = accounts as i64;
    labkit::seed::generate(pool, "ledger", ledger_rows, seed, SEED_LEDGER, |q| {
        q.bind(accounts_bind)
    })
    .await?;
    labkit::seed::generate(pool, "accounts", accounts, seed, SEED_ACCOUNTS, |q| q).await?;
    labkit::seed::step(pool, "analyze", "VACUUM ANALYZE ledger_entries, accounts").await?;
    Ok(())
}

/// One day of the month-end report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct DayTotal {
    pub booked_on: NaiveDate,
    pub entries: i64,
    pub credits_cents: i64,
    pub debits_cents: i64,
}

/// The cached value: what the finance dashboard renders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthEnd {
    pub month: NaiveDate,
    pub entries: i64,
    pub net_cents: i64,
    pub days: Vec<DayTotal>,
}

/// The heavy query. No index helps it: the month is a twelfth of the table, and finance
/// wants every entry summed.
const REPORT_SQL: &str = r#"
SELECT booked_on,
       count(*)                                                    AS entries,
       coalesce(sum(amount_cents) FILTER (WHERE amount_cents > 0), 0)::bigint AS credits_cents,
       coalesce(sum(amount_cents) FILTER (WHERE amount_cents < 0), 0)::bigint AS debits_cents
FROM ledger_entries
WHERE booked_on >= $1 AND booked_on < $2
GROUP BY booked_on
ORDER BY booked_on
"#;

/// A correcting entry, posted by the writer in the invalidation scenario.
const POST_ENTRY_SQL: &str = r#"
INSERT INTO ledger_entries (id, account_id, booked_on, amount_cents)
VALUES (nextval('ledger_entry_posted_ids'), $1, $2, $3)
"#;

/// Instruments on the loader: how many recomputes, when they started, Postgres busy time.
#[derive(Debug, Default)]
pub struct LoadStats {
    count: AtomicU64,
    busy_us: AtomicU64,
    starts: Mutex<Vec<Instant>>,
}

impl LoadStats {
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Time connections spent executing the report query (not waiting for a connection).
    pub fn busy(&self) -> Duration {
        Duration::from_micros(self.busy_us.load(Ordering::Relaxed))
    }

    /// When each recompute started.
    pub fn starts(&self) -> Vec<Instant> {
        self.starts.lock().expect("starts lock").clone()
    }

    pub fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
        self.busy_us.store(0, Ordering::Relaxed);
        self.starts.lock().expect("starts lock").clear();
    }
}

/// Runs the month-end report on one app instance's pool.
#[derive(Debug, Clone)]
pub struct ReportLoader {
    pool: PgPool,
    month: NaiveDate,
    stats: Arc<LoadStats>,
}

impl ReportLoader {
    pub fn new(pool: PgPool, stats: Arc<LoadStats>) -> Self {
        Self {
            pool,
            month: report_month(),
            stats,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn stats(&self) -> &Arc<LoadStats> {
        &self.stats
    }

    /// Recompute the report from Postgres. Every call is one recompute.
    pub async fn load(&self) -> Result<MonthEnd, sqlx::Error> {
        self.stats.count.fetch_add(1, Ordering::Relaxed);
        self.stats
            .starts
            .lock()
            .expect("starts lock")
            .push(Instant::now());
        let next = self
            .month
            .checked_add_months(chrono::Months::new(1))
            .expect("valid month");
        let mut conn = self.pool.acquire().await?;
        let t0 = Instant::now();
        let days = sqlx::query_as::<_, DayTotal>(REPORT_SQL)
            .bind(self.month)
            .bind(next)
            .fetch_all(&mut *conn)
            .await;
        self.stats
            .busy_us
            .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        let days = days?;
        Ok(MonthEnd {
            month: self.month,
            entries: days.iter().map(|d| d.entries).sum(),
            net_cents: days.iter().map(|d| d.credits_cents + d.debits_cents).sum(),
            days,
        })
    }

    /// Post a correcting entry into the report's month; returns once it is committed.
    pub async fn post_correction(&self, amount_cents: i64) -> Result<(), sqlx::Error> {
        let day = self.month + chrono::Days::new(14);
        sqlx::query(POST_ENTRY_SQL)
            .bind(1_i32)
            .bind(day)
            .bind(amount_cents)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// One account row: the many small keys of the eviction and deploy scenarios.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Account {
    pub id: i32,
    pub name: String,
    pub balance: i64,
    pub profile: String,
}

const ACCOUNT_SQL: &str = "SELECT id, name, balance, profile FROM accounts WHERE id = $1";

/// Load one account by primary key (a cheap miss, unlike the report).
pub async fn load_account(pool: &PgPool, id: i32) -> Result<Account, sqlx::Error> {
    sqlx::query_as::<_, Account>(ACCOUNT_SQL)
        .bind(id)
        .fetch_one(pool)
        .await
}

/// Every account at once, to warm a cache the way hours of traffic would have.
pub async fn all_accounts(pool: &PgPool) -> Result<Vec<Account>, sqlx::Error> {
    sqlx::query_as::<_, Account>("SELECT id, name, balance, profile FROM accounts ORDER BY id")
        .fetch_all(pool)
        .await
}
