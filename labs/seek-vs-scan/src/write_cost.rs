//! What each index costs on the write path.
//!
//! Every index is another B-tree to update (and WAL to write) for each inserted row, and
//! most of these keys land at random places in their tree. The lab inserts the same
//! generated rows into an empty copy of `invoices` carrying 0, 1, 3 and 6 indexes and
//! reports rows/s, the middle of three interleaved rounds (0, 1, 3, 6, 0, 1, 3, 6, ...) so a
//! burst of noise from elsewhere on the machine lands on one round, not on one index count.
//! The copy starts empty each time, so its indexes stay in memory: this
//! measures the CPU and WAL cost of index maintenance, the floor of the real cost (a big
//! table whose indexes spill out of cache pays random reads on top).

use labkit::seed::SeedStats;
use sqlx::PgPool;

use crate::schema::{Dataset, generated_invoices};

/// The index counts the lab measures.
pub const INDEX_COUNTS: [usize; 4] = [0, 1, 3, 6];

/// In the order they are added: the primary key; the set the story ends with (covering
/// index for the tenant list, status for the dashboards); then the ones somebody tried
/// once and never dropped.
const INDEXES: [&str; 6] = [
    "ALTER TABLE invoices_write ADD PRIMARY KEY (id)",
    "CREATE INDEX ON invoices_write (tenant_id, created_at DESC) INCLUDE (id, amount_cents)",
    "CREATE INDEX ON invoices_write (status)",
    "CREATE INDEX ON invoices_write (created_at, tenant_id)",
    "CREATE INDEX ON invoices_write (tenant_id)",
    "CREATE INDEX ON invoices_write (customer_email)",
];

const CREATE_COPY: &str = "\
DROP TABLE IF EXISTS invoices_write;
CREATE TABLE invoices_write (LIKE invoices) WITH (autovacuum_enabled = off);";

const INSERT_COPY: &str = concat!("INSERT INTO invoices_write", generated_invoices!());

/// A fresh, empty `invoices_write` with the first `indexes` of the list above.
pub async fn prepare_copy(pool: &PgPool, indexes: usize) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(CREATE_COPY).execute(pool).await?;
    for ddl in INDEXES.iter().take(indexes) {
        sqlx::query(*ddl).execute(pool).await?;
    }
    Ok(())
}

/// How many indexes `invoices_write` has right now.
pub async fn index_count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 'invoices_write'")
        .fetch_one(pool)
        .await
}

/// Insert `rows` generated invoices (shaped like `data`'s: its tenants, its time slots) into a
/// fresh copy with `indexes` indexes, from one connection in statements of 10,000 rows. One writer, not one per core like the seed:
/// two writers extending the same index-less heap contend on its extension lock, which
/// would charge "0 indexes" for something that is not index maintenance.
pub async fn insert_rate(
    pool: &PgPool,
    data: Dataset,
    indexes: usize,
    rows: u64,
    seed: u64,
) -> Result<SeedStats, sqlx::Error> {
    prepare_copy(pool, indexes).await?;
    let label = format!("{indexes} indexes");
    labkit::seed::generate_with(
        pool,
        &label,
        rows,
        seed,
        INSERT_COPY,
        |q| data.bind(q),
        1,
        10_000,
    )
    .await
}

/// `rounds` interleaved rounds of [`insert_rate`] over [`INDEX_COUNTS`]; for each count, the
/// median round's rows/s (the middle one of three; with an even count, the upper middle).
pub async fn measure(
    pool: &PgPool,
    data: Dataset,
    rows: u64,
    rounds: usize,
    seed: u64,
) -> Result<Vec<(usize, f64)>, sqlx::Error> {
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); INDEX_COUNTS.len()];
    for _ in 0..rounds.max(1) {
        for (i, n) in INDEX_COUNTS.into_iter().enumerate() {
            rates[i].push(insert_rate(pool, data, n, rows, seed).await?.rows_per_s);
        }
    }
    drop_copy(pool).await?;
    Ok(INDEX_COUNTS
        .into_iter()
        .zip(rates)
        .map(|(n, mut r)| {
            r.sort_by(f64::total_cmp);
            (n, r[r.len() / 2])
        })
        .collect())
}

/// Drop the copy (it is as big as the rows inserted; no reason to keep it).
pub async fn drop_copy(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("DROP TABLE IF EXISTS invoices_write")
        .execute(pool)
        .await?;
    Ok(())
}
