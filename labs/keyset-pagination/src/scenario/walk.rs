//! A walk: one client reading page after page from the top, as an export job or an infinite
//! scroll does. Offset page p costs O(p), so a walk of P pages costs O(P²); keyset costs
//! O(P). At default scale a full OFFSET walk of the table would take far longer than the
//! lab's minute, so both methods walk the same bounded prefix, and the report says which.

use std::time::{Duration, Instant};

use anyhow::ensure;
use labkit::report::{Report, Table};
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

impl Walk {
    pub fn report(&self, r: &mut Report, table_rows: i64) {
        let offset_ms = self.offset_total.as_secs_f64() * 1000.0;
        let keyset_ms = self.keyset_total.as_secs_f64() * 1000.0;
        r.finding(
            "walk_pages",
            "Walk: pages read from the top (each method)",
            self.pages as f64,
            "count",
        )
        .finding(
            "walk_offset_total_ms",
            "Walk: OFFSET total time",
            offset_ms,
            "ms",
        )
        .finding(
            "walk_keyset_total_ms",
            "Walk: keyset total time",
            keyset_ms,
            "ms",
        )
        .finding(
            "walk_offset_over_keyset_x",
            "Walk: OFFSET time / keyset time",
            offset_ms / keyset_ms.max(0.001),
            "x",
        );
        let what = if self.whole_table {
            format!("the whole table ({} rows)", self.rows)
        } else {
            format!(
                "the first {} pages = {} of {} rows ({:.1} %)",
                self.pages,
                self.rows,
                table_rows,
                100.0 * self.rows as f64 / table_rows as f64
            )
        };
        let mut t = Table::new(
            format!(
                "Walk of {what}, {} rows a page, one client, no writes",
                self.limit
            ),
            &[
                "method",
                "total ms",
                "page p50 ms",
                "page p95 ms",
                "slowest page ms",
            ],
        );
        for (name, total, s) in [
            ("OFFSET", offset_ms, &self.offset_pages),
            ("keyset", keyset_ms, &self.keyset_pages),
        ] {
            t.row([
                name.to_string(),
                format!("{total:.0}"),
                format!("{:.2}", s.p50_ms),
                format!("{:.2}", s.p95_ms),
                format!("{:.2}", s.max_ms),
            ]);
        }
        r.table(t);
        if !self.whole_table {
            r.note(format!(
                "The walk covers {what}: a full OFFSET walk grows with the square of the page count and would not fit the run. Each page's depth cost is in the depth table."
            ));
        }
    }
}
