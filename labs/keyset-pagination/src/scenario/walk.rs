//! A walk: one client reading page after page from the top, as an export job or an infinite
//! scroll does. Offset page p costs O(p), so a walk of P pages costs O(P²); keyset costs
//! O(P). At default scale a full OFFSET walk of the table would take far longer than the
//! lab's minute, so both methods walk the same bounded prefix, and the report says which.

use std::time::{Duration, Instant};

use anyhow::ensure;
use labkit::{LatencySummary, Recorder};
use sqlx::PgPool;

use crate::filter::Filter;
use crate::{keyset, offset};

#[derive(Debug)]
pub struct Walk {
    pub pages: i64,
    pub rows: usize,
    pub limit: i64,
    pub offset_total: Duration,
    pub keyset_total: Duration,
    pub offset_pages: LatencySummary,
    pub keyset_pages: LatencySummary,
    pub whole_table: bool,
}

pub async fn run(pool: &PgPool, pages: i64, limit: i64, table_rows: i64) -> anyhow::Result<Walk> {
    let mut offset_ids = Vec::new();
    let mut rec = Recorder::new();
    let started = Instant::now();
    for p in 0..pages {
        let t0 = Instant::now();
        let rows = offset::page(pool, Filter::ALL, limit, p * limit).await?;
        rec.record(t0.elapsed());
        offset_ids.extend(rows.iter().map(|o| o.id));
        if (rows.len() as i64) < limit {
            break;
        }
    }
    let offset_total = started.elapsed();
    let offset_pages = rec.summary(offset_total);

    let mut keyset_ids = Vec::new();
    let mut rec = Recorder::new();
    let mut after = None;
    let started = Instant::now();
    for _ in 0..pages {
        let t0 = Instant::now();
        let rows = keyset::page(pool, Filter::ALL, after, limit).await?;
        rec.record(t0.elapsed());
        keyset_ids.extend(rows.iter().map(|o| o.id));
        match rows.last() {
            Some(last) if rows.len() as i64 == limit => after = Some(last.sort_key()),
            _ => break,
        }
    }
    let keyset_total = started.elapsed();
    let keyset_pages = rec.summary(keyset_total);

    ensure!(
        offset_ids == keyset_ids,
        "with no writes both walks must see the same rows"
    );
    let whole_table = offset_ids.len() as i64 == table_rows;
    Ok(Walk {
        pages: offset_pages.count as i64,
        rows: offset_ids.len(),
        limit,
        offset_total,
        keyset_total,
        offset_pages,
        keyset_pages,
        whole_table,
    })
}
