//! Seven ways to put the same rows into `events`, from one connection.
//!
//! What each one pays per row is the lesson: a round trip, a statement and a commit per row
//! (autocommit) — and with `fsync` on, the commit is a WAL flush to disk, so the disk's
//! flush latency caps the rate. Grouping rows into one transaction pays the flush once per
//! group; multi-row `VALUES` and `UNNEST` also pay the statement once per group; `COPY`
//! pays one command for the whole stream.
//!
//! Multi-row `VALUES` has a ceiling the others do not: every value is a bind parameter,
//! and the protocol's Bind message counts parameters in 16 bits, so a statement carries at
//! most 65,535 of them — 10,922 rows of six columns. [`oversized_insert`] hits it on
//! purpose; `UNNEST` binds one array per *column* (six parameters for any row count), which
//! is the fix, and COPY has no parameters at all.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, QueryBuilder};

use crate::copy_format::{self, CopyFormat};
use crate::schema::{self, COLUMN_COUNT, Checksum, Event};

/// Rows per statement for multi-row `VALUES` and `UNNEST` (the same for both, so they differ
/// only in how the rows are bound): 6,000 parameters, well under the limit.
pub const STATEMENT_ROWS: usize = 1_000;

/// The most bind parameters one statement can carry (a 16-bit count in the Bind message).
pub const MAX_BIND_PARAMETERS: usize = 65_535;

/// The smallest multi-row INSERT of `events` that cannot be sent: 10,923 rows × 6 columns
/// = 65,538 parameters.
pub const OVERSIZED_ROWS: usize = MAX_BIND_PARAMETERS / COLUMN_COUNT + 1;

/// An insert method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// One `INSERT` per row, each its own transaction (autocommit).
    SingleRow,
    /// One `INSERT` per row, `COMMIT` every 100 rows.
    TxPer100,
    /// One `INSERT` per row, `COMMIT` every 1,000 rows.
    TxPer1000,
    /// `INSERT ... VALUES (..), (..), ...` of [`STATEMENT_ROWS`] rows, autocommit.
    MultiValues,
    /// `INSERT ... SELECT * FROM UNNEST($1::uuid[], ...)` of [`STATEMENT_ROWS`] rows.
    Unnest,
    /// One `COPY ... FROM STDIN` (text format) of every row.
    CopyText,
    /// One `COPY ... FROM STDIN (FORMAT binary)` of every row.
    CopyBinary,
}

impl Method {
    pub const ALL: [Method; 7] = [
        Self::SingleRow,
        Self::TxPer100,
        Self::TxPer1000,
        Self::MultiValues,
        Self::Unnest,
        Self::CopyText,
        Self::CopyBinary,
    ];

    /// The prefix of its finding keys (`single_row_rows_per_s`).
    pub fn key(self) -> &'static str {
        match self {
            Self::SingleRow => "single_row",
            Self::TxPer100 => "tx_100",
            Self::TxPer1000 => "tx_1000",
            Self::MultiValues => "multi_values",
            Self::Unnest => "unnest",
            Self::CopyText => "copy_text",
            Self::CopyBinary => "copy_binary",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::SingleRow => "one INSERT per row, autocommit",
            Self::TxPer100 => "one INSERT per row, COMMIT every 100",
            Self::TxPer1000 => "one INSERT per row, COMMIT every 1,000",
            Self::MultiValues => "multi-row VALUES, 1,000 rows per statement",
            Self::Unnest => "UNNEST of arrays, 1,000 rows per statement",
            Self::CopyText => "COPY FROM STDIN (text)",
            Self::CopyBinary => "COPY FROM STDIN (binary)",
        }
    }

    /// Statements sent for `rows` rows.
    pub fn statements(self, rows: usize) -> usize {
        match self {
            Self::SingleRow | Self::TxPer100 | Self::TxPer1000 => rows,
            Self::MultiValues | Self::Unnest => rows.div_ceil(STATEMENT_ROWS),
            Self::CopyText | Self::CopyBinary => 1,
        }
    }

    /// Transactions committed (each one a WAL flush with `synchronous_commit = on`).
    pub fn commits(self, rows: usize) -> usize {
        match self {
            Self::SingleRow => rows,
            Self::TxPer100 => rows.div_ceil(100),
            Self::TxPer1000 => rows.div_ceil(1_000),
            Self::MultiValues | Self::Unnest => rows.div_ceil(STATEMENT_ROWS),
            Self::CopyText | Self::CopyBinary => 1,
        }
    }
}

/// Insert `rows` into `events` with `method`.
pub async fn insert(
    conn: &mut PgConnection,
    method: Method,
    rows: &[Event],
) -> Result<(), sqlx::Error> {
    match method {
        Method::SingleRow => {
            for e in rows {
                schema::insert_one(&mut *conn, e).await?;
            }
        }
        Method::TxPer100 => in_transactions(conn, rows, 100).await?,
        Method::TxPer1000 => in_transactions(conn, rows, 1_000).await?,
        Method::MultiValues => {
            for chunk in rows.chunks(STATEMENT_ROWS) {
                multi_values(conn, chunk).await?;
            }
        }
        Method::Unnest => {
            for chunk in rows.chunks(STATEMENT_ROWS) {
                unnest(conn, chunk).await?;
            }
        }
        Method::CopyText => {
            copy_format::copy_in(conn, "events", CopyFormat::Text, rows).await?;
        }
        Method::CopyBinary => {
            copy_format::copy_in(conn, "events", CopyFormat::Binary, rows).await?;
        }
    }
    Ok(())
}

async fn in_transactions(
    conn: &mut PgConnection,
    rows: &[Event],
    per_tx: usize,
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(per_tx) {
        let mut tx = conn.begin().await?;
        for e in chunk {
            schema::insert_one(&mut *tx, e).await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// One `INSERT ... VALUES ($1..$6), ($7..$12), ...` of all `rows`: six parameters per row.
pub async fn multi_values(conn: &mut PgConnection, rows: &[Event]) -> Result<(), sqlx::Error> {
    let mut q = QueryBuilder::new(
        "INSERT INTO events (event_id, device_id, kind, value, payload, created_at) ",
    );
    q.push_values(rows, |mut row, e| {
        row.push_bind(e.event_id)
            .push_bind(e.device_id)
            .push_bind(e.kind.clone())
            .push_bind(e.value)
            .push_bind(e.payload.clone())
            .push_bind(e.created_at);
    });
    q.build().execute(conn).await.map(|_| ())
}

/// One `INSERT ... SELECT FROM UNNEST(...)` of all `rows`: six array parameters, whatever
/// the row count.
pub async fn unnest(conn: &mut PgConnection, rows: &[Event]) -> Result<(), sqlx::Error> {
    let ids: Vec<_> = rows.iter().map(|e| e.event_id).collect();
    let devices: Vec<i32> = rows.iter().map(|e| e.device_id).collect();
    let kinds: Vec<&str> = rows.iter().map(|e| e.kind.as_str()).collect();
    let values: Vec<f64> = rows.iter().map(|e| e.value).collect();
    let payloads: Vec<&str> = rows.iter().map(|e| e.payload.as_str()).collect();
    let times: Vec<_> = rows.iter().map(|e| e.created_at).collect();
    sqlx::query(
        "INSERT INTO events (event_id, device_id, kind, value, payload, created_at)
         SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::text[], $4::float8[], $5::text[],
                              $6::timestamptz[])",
    )
    .bind(ids)
    .bind(devices)
    .bind(kinds)
    .bind(values)
    .bind(payloads)
    .bind(times)
    .execute(conn)
    .await
    .map(|_| ())
}

/// What happened to the oversized multi-row INSERT and its UNNEST fix.
#[derive(Debug, Clone)]
pub struct BindLimit {
    pub rows: usize,
    pub parameters: usize,
    /// The driver's error for the multi-row VALUES form (`None` if it went through).
    pub values_error: Option<String>,
    /// Whether the UNNEST form of the same rows inserted them all.
    pub unnest_inserted: u64,
}

/// Try [`OVERSIZED_ROWS`] rows as one multi-row INSERT (fails: 65,538 parameters), then the
/// same rows as one UNNEST (six parameters). Leaves the UNNEST's rows in the table.
pub async fn oversized_insert(
    conn: &mut PgConnection,
    seed: u64,
) -> Result<BindLimit, sqlx::Error> {
    schema::reset(&mut *conn).await?;
    let rows = schema::generate(seed, 0..OVERSIZED_ROWS as u64);
    let values_error = multi_values(conn, &rows).await.err().map(|e| e.to_string());
    unnest(conn, &rows).await?;
    let unnest_inserted = schema::checksum(&mut *conn).await?.rows as u64;
    Ok(BindLimit {
        rows: rows.len(),
        parameters: rows.len() * COLUMN_COUNT,
        values_error,
        unnest_inserted,
    })
}

/// One method's measurement.
#[derive(Debug, Clone)]
pub struct MethodRun {
    pub method: Method,
    pub rows: usize,
    /// The median of the rounds timed (one round for the slow methods, three for the fast).
    pub elapsed: Duration,
    pub rounds: usize,
    /// WAL the server generated for the rows (`pg_current_wal_insert_lsn` before and after).
    pub wal_bytes: u64,
    pub checksum: Checksum,
}

impl MethodRun {
    pub fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn commits_per_s(&self) -> f64 {
        self.method.commits(self.rows) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn wal_bytes_per_row(&self) -> f64 {
        self.wal_bytes as f64 / self.rows.max(1) as f64
    }
}

/// A round shorter than this is repeated (three rounds, the median kept): a few
/// milliseconds of COPY are at the mercy of one scheduler hiccup.
const SHORT_ROUND: Duration = Duration::from_millis(500);

/// Empty the table, insert `rows` with `method`, and measure time, WAL and the checksum.
pub async fn measure(
    conn: &mut PgConnection,
    method: Method,
    rows: &[Event],
) -> Result<MethodRun, sqlx::Error> {
    let mut times = Vec::new();
    let mut wal_bytes = 0;
    let mut checksum = None;
    while times.len() < 3 {
        schema::reset(&mut *conn).await?;
        let before = wal_lsn(conn).await?;
        let started = Instant::now();
        insert(conn, method, rows).await?;
        let elapsed = started.elapsed();
        let wal = wal_lsn(conn).await? - before;
        if checksum.is_none() {
            wal_bytes = wal;
            checksum = Some(schema::checksum(&mut *conn).await?);
        }
        times.push(elapsed);
        if elapsed >= SHORT_ROUND {
            break;
        }
    }
    let rounds = times.len();
    times.sort();
    Ok(MethodRun {
        method,
        rows: rows.len(),
        elapsed: times[times.len() / 2],
        rounds,
        wal_bytes,
        checksum: checksum.unwrap_or(Checksum {
            rows: 0,
            md5: String::new(),
        }),
    })
}

/// The server's WAL insert position, in bytes.
pub async fn wal_lsn(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let b: i64 =
        sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint")
            .fetch_one(conn)
            .await?;
    Ok(b as u64)
}
