//! The `invoices` table, its seed, and the two tenants every plan is shown for.
//!
//! The data is shaped like a real multi-tenant invoice table: rows arrive in time order
//! (so `created_at` follows the physical order, as in an append-only table), tenants are
//! skewed (tenant 1 holds ~6 % of all rows, thousands of tenants share a long tail), and
//! `status` has five values of which `paid` is ~90 %.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use labkit::Scale;
use labkit::seed::SeedStats;
use sqlx::PgPool;

/// How much data a scale seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dataset {
    pub rows: u64,
    pub tenants: u64,
}

impl Dataset {
    pub fn for_scale(scale: Scale) -> Self {
        Self {
            rows: scale.pick(50_000, 2_000_000, 20_000_000),
            tenants: scale.pick(500, 5_000, 50_000),
        }
    }

    /// The generator's sizes as `$4` (rows: the year is cut into that many time slots) and
    /// `$5` (tenants), after labkit's `$1..$3` (lo, hi, seed).
    pub fn bind(self, q: PgQuery<'_>) -> PgQuery<'_> {
        q.bind(self.rows as i64).bind(self.tenants as i64)
    }
}

/// A query with its binds so far, as `labkit::seed` hands it over.
pub type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// The seeded year ends here, and every query's "now" is this instant rather than `now()`:
/// the same seed gives the same 7-day window, and the same plans, whatever day you run it.
pub fn reference_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid fixed instant")
}

/// `autovacuum_enabled = off` makes "right after the load" a state we control: the
/// visibility map stays empty until *we* run VACUUM, so the covering index's heap fetches
/// are > 0 before and exactly 0 after, every run. (With autovacuum on, a worker could wake
/// up mid-run and the "before" numbers would depend on timing.) It also turns off
/// auto-ANALYZE for the table, so [`load`] runs ANALYZE itself.
const CREATE_TABLE: &str = r#"
CREATE TABLE invoices (
    id             bigint      NOT NULL,
    tenant_id      bigint      NOT NULL,
    created_at     timestamptz NOT NULL,
    amount_cents   bigint      NOT NULL,
    status         text        NOT NULL,
    currency       text        NOT NULL,
    customer_email text        NOT NULL,
    description    text        NOT NULL
) WITH (autovacuum_enabled = off)
"#;

/// The generated rows, shared by the seed and by the write-cost copy
/// ([`crate::write_cost`]): `INSERT INTO <table>` + this. `$1..$2` are row numbers, `$3` the
/// seed, `$4` the dataset's rows and `$5` its tenants ([`Dataset::bind`]).
///
/// - `tenant_id`: `labkit_skewed(.., s = 3)`, a few huge tenants and a long tail.
/// - `created_at`: row g lands in its own slot of a year ending at [`reference_now`], so
///   rows are stored in time order, like an append-only table.
/// - `status`: 90 % paid, 7 % open, 2 % void, 0.9 % refunded, 0.1 % disputed.
/// - `customer_email`, `description`: ~150 bytes of payload, so a row is ~200 bytes and a
///   heap page holds ~40 rows — a realistic width, not a toy 3-column row.
macro_rules! generated_invoices {
    () => {
        r#" (id, tenant_id, created_at, amount_cents, status, currency, customer_email, description)
SELECT g,
       labkit_skewed(g, $3, 1, $5::bigint, 3.0),
       timestamptz '2025-01-01 00:00:00+00'
         + (g - 1 + labkit_uniform(g, $3, 2)) * (interval '365 days' / $4::bigint),
       100 + floor(labkit_uniform(g, $3, 3) ^ 2 * 500000)::bigint,
       CASE WHEN u < 0.90  THEN 'paid'
            WHEN u < 0.97  THEN 'open'
            WHEN u < 0.99  THEN 'void'
            WHEN u < 0.999 THEN 'refunded'
            ELSE 'disputed' END,
       'EUR',
       'billing+' || g % 100000 || '@customer-' || g % 5000 || '.example.com',
       'Subscription renewal, invoice ' || g
         || ': platform seats, support plan, usage overage for the period'
FROM generate_series($1::bigint, $2::bigint) AS g
CROSS JOIN LATERAL (SELECT labkit_uniform(g, $3, 4) AS u) AS s"#
    };
}
pub(crate) use generated_invoices;

const SEED_INVOICES: &str = concat!("INSERT INTO invoices", generated_invoices!());

/// Create `invoices` and fill it. Returns the insert phase's speed (the primary key and
/// ANALYZE come after it, as in any bulk load, and are timed separately).
pub async fn load(pool: &PgPool, data: Dataset, seed: u64) -> Result<Loaded, sqlx::Error> {
    sqlx::raw_sql(CREATE_TABLE).execute(pool).await?;
    let insert = labkit::seed::generate(pool, "invoices", data.rows, seed, SEED_INVOICES, |q| {
        data.bind(q)
    })
    .await?;
    // The primary key is built after the rows are in: one sorted build instead of two
    // million random inserts. It stays for every variant, as it would in production.
    let primary_key = labkit::seed::step(
        pool,
        "primary key",
        "ALTER TABLE invoices ADD PRIMARY KEY (id)",
    )
    .await?;
    labkit::seed::step(pool, "analyze", "ANALYZE invoices").await?;
    // The first read of each freshly loaded row sets its hint bits and dirties the page.
    // Pay that once here, so the first variant measured is not charged for the load.
    // (VACUUM would do it too, but would also fill the visibility map — the point of the
    // "before VACUUM" variant.)
    labkit::seed::step(pool, "hint bits", "SELECT count(*) FROM invoices").await?;
    Ok(Loaded {
        insert,
        primary_key,
    })
}

/// What [`load`] measured.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    pub insert: SeedStats,
    pub primary_key: Duration,
}

/// A tenant and how many invoices it has (in total, and in the 7-day window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Tenant {
    pub tenant_id: i64,
    pub rows: i64,
    pub rows_last_7_days: i64,
}

/// The two tenants every plan is shown for.
#[derive(Debug, Clone, Copy)]
pub struct Tenants {
    /// The tenant with the most invoices.
    pub big: Tenant,
    /// The median tenant by invoice count among those with invoices in the window: the
    /// typical customer (one with none in the window would make every plan look free).
    pub long_tail: Tenant,
}

const TENANT_SIZES: &str = r#"
WITH sizes AS (
    SELECT tenant_id,
           count(*) AS rows,
           count(*) FILTER (WHERE created_at >= $1::timestamptz - interval '7 days') AS rows_last_7_days
    FROM invoices
    GROUP BY tenant_id
), active AS (
    SELECT * FROM sizes WHERE rows_last_7_days > 0
)
(SELECT tenant_id, rows, rows_last_7_days FROM sizes ORDER BY rows DESC, tenant_id LIMIT 1)
UNION ALL
(SELECT tenant_id, rows, rows_last_7_days FROM active ORDER BY rows, tenant_id
 OFFSET (SELECT count(*) / 2 FROM active) LIMIT 1)
"#;

pub async fn pick_tenants(pool: &PgPool) -> Result<Tenants, sqlx::Error> {
    let rows: Vec<Tenant> = sqlx::query_as(TENANT_SIZES)
        .bind(reference_now())
        .fetch_all(pool)
        .await?;
    match rows.as_slice() {
        [big, long_tail] => Ok(Tenants {
            big: *big,
            long_tail: *long_tail,
        }),
        _ => Err(sqlx::Error::RowNotFound),
    }
}
