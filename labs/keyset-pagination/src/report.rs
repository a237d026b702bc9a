//! The report: findings, tables, the chart, notes and the sentence, built from what the
//! scenarios measured. Nothing here touches the database.

use std::time::Duration;

use labkit::{Better, Chart, Report, Table};

use crate::scenario::api_load::{ApiLoad, KEYSET_PHASE, OFFSET_PHASE};
use crate::scenario::counting::CountRow;
use crate::scenario::depth::{Depth, DepthPoint};
use crate::scenario::drift::{DriftRun, WriterPlan};
use crate::scenario::ties::Ties;
use crate::scenario::walk::Walk;
use crate::schema::Dataset;

/// Everything the report is built from.
pub struct Facts {
    pub data: Dataset,
    /// Seeding, indexes and VACUUM ANALYZE.
    pub seeded: Duration,
    pub depth: Depth,
    pub api: ApiLoad,
    pub walk: Walk,
    /// One per [`crate::scenario::counting::filters`]; the first is all orders.
    pub counts: Vec<CountRow>,
    pub ties: Ties,
    pub scripted: DriftRun,
    pub concurrent: DriftRun,
    pub writer: WriterPlan,
}

/// Findings and tables scenario by scenario, then the sentence and the notes.
pub fn write(r: &mut Report, f: &Facts) {
    depth(r, &f.depth);
    api_load(r, &f.api);
    walk(r, &f.walk, f.data.rows);
    counting(r, &f.counts);
    ties(r, &f.ties);
    drift(r, &f.scripted, &f.concurrent, &f.writer);
    r.sentence(sentence(f));
    r.note(format!(
        "Seeding {} orders with 4 indexes and VACUUM ANALYZE took {:.1} s. Depth, walk and \
         counting latencies are single-client, sequential, measured in the lab process over \
         loopback (page query only: the offset endpoint's COUNT(*) is measured separately \
         under Counting, and included in the HTTP load phase).",
        f.data.rows,
        f.seeded.as_secs_f64()
    ));
}

/// Count findings where fewer is better (rows lost, served twice, buffers read).
fn fewer_is_better(r: &mut Report, keys: &[&str]) {
    for key in keys {
        r.better(key, Better::Lower);
    }
}

fn depth(r: &mut Report, d: &Depth) {
    let (first, deep) = (d.first(), d.deepest());
    r.finding(
        "deepest_page",
        "Deepest page (50 rows a page)",
        deep.page as f64,
        "count",
    )
    .p95("offset_p95_ms_page_1", "OFFSET page 1, p95", &first.offset)
    .p95("keyset_p95_ms_page_1", "Keyset page 1, p95", &first.keyset)
    .p95(
        "offset_p95_ms_deepest",
        "OFFSET deepest page, p95",
        &deep.offset,
    )
    .p95(
        "keyset_p95_ms_deepest",
        "Keyset deepest page, p95",
        &deep.keyset,
    )
    .finding(
        "offset_buffers_deepest",
        "OFFSET deepest page, shared buffers read",
        deep.offset_plan.buffers() as f64,
        "buffers",
    )
    .finding(
        "keyset_buffers_deepest",
        "Keyset deepest page, shared buffers read",
        deep.keyset_plan.buffers() as f64,
        "buffers",
    )
    .measured(
        "offset_ms_per_1000_pages",
        "OFFSET slope: p50 ms added per 1,000 pages of depth",
        ms_per_1000_pages(first, deep, |p| p.offset.p50_ms),
        "ms",
        first.offset.count + deep.offset.count,
    )
    .measured(
        "keyset_ms_per_1000_pages",
        "Keyset slope: p50 ms added per 1,000 pages of depth",
        ms_per_1000_pages(first, deep, |p| p.keyset.p50_ms),
        "ms",
        first.keyset.count + deep.keyset.count,
    )
    .finding(
        "deepest_offset_over_keyset_p95_x",
        "Deepest page: OFFSET p95 / keyset p95",
        deep.offset.p95_ms / deep.keyset.p95_ms.max(0.001),
        "x",
    );
    fewer_is_better(r, &["offset_buffers_deepest", "keyset_buffers_deepest"]);

    let mut t = Table::new(
        "Page depth: p50 / p95 of sequential fetches (runs: OFFSET / keyset), plans from EXPLAIN (ANALYZE, BUFFERS)",
        &[
            "page",
            "rows skipped",
            "runs",
            "OFFSET p50 / p95 ms",
            "OFFSET buffers",
            "OFFSET plan",
            "keyset p50 / p95 ms",
            "keyset buffers",
            "keyset plan",
        ],
    );
    for p in &d.points {
        t.row([
            p.page.to_string(),
            ((p.page - 1) * d.limit).to_string(),
            format!("{} / {}", p.offset.count, p.keyset.count),
            format!("{:.2} / {:.2}", p.offset.p50_ms, p.offset.p95_ms),
            p.offset_plan.buffers().to_string(),
            p.offset_plan.describe_access(),
            format!("{:.2} / {:.2}", p.keyset.p50_ms, p.keyset.p95_ms),
            p.keyset_plan.buffers().to_string(),
            p.keyset_plan.describe_access(),
        ]);
    }
    r.table(t);
    let series = |pick: fn(&DepthPoint) -> f64| {
        d.points
            .iter()
            .map(|p| (p.page as f64, pick(p)))
            .collect::<Vec<_>>()
    };
    r.chart(
        Chart::new(
            "latency-vs-page",
            "Page fetch p50 vs page depth (log-log)",
            "page number (50 rows a page)",
            "p50 latency, ms",
        )
        .log_x()
        .log_y()
        .series("OFFSET", series(|p| p.offset.p50_ms))
        .series("keyset", series(|p| p.keyset.p50_ms)),
    );
}

/// Milliseconds added per 1,000 pages of depth, from page 1 to the deepest page.
fn ms_per_1000_pages(first: &DepthPoint, last: &DepthPoint, pick: fn(&DepthPoint) -> f64) -> f64 {
    let pages = (last.page - first.page).max(1) as f64;
    (pick(last) - pick(first)) / pages * 1000.0
}

fn api_load(r: &mut Report, a: &ApiLoad) {
    let c = a.shape.clients;
    r.p95(
        "api_offset_deepest_p95_ms",
        &format!("HTTP, {c} clients: page {} by page number, p95", a.page),
        &a.offset,
    )
    .p95(
        "api_keyset_deepest_p95_ms",
        &format!("HTTP, {c} clients: the same page by cursor, p95"),
        &a.keyset,
    )
    .finding(
        "api_offset_deepest_rps",
        &format!("HTTP, {c} clients: deepest page by page number, throughput"),
        a.offset.throughput_per_s,
        "req/s",
    )
    .finding(
        "api_keyset_deepest_rps",
        &format!("HTTP, {c} clients: deepest page by cursor, throughput"),
        a.keyset.throughput_per_s,
        "req/s",
    )
    .finding(
        "api_load_errors",
        "HTTP load: responses other than 200, and connection failures",
        (a.offset.errors + a.keyset.errors) as f64,
        "count",
    );
    fewer_is_better(r, &["api_load_errors"]);
    let mut t = Table::new(
        format!(
            "The deepest page through the service: {c} clients, closed loop, {:.1} s each after {:.1} s of warm-up (GET /v1/orders)",
            a.shape.duration.as_secs_f64(),
            a.shape.warmup.as_secs_f64()
        ),
        &["request", "p50 ms", "p95 ms", "p99 ms", "requests", "req/s"],
    );
    for (name, s) in [
        (
            format!("?page={} (+ COUNT(*) for meta.total)", a.page),
            &a.offset,
        ),
        (
            "?cursor=… (+ the planner's estimate)".to_string(),
            &a.keyset,
        ),
    ] {
        t.row([
            name,
            format!("{:.2}", s.p50_ms),
            format!("{:.2}", s.p95_ms),
            format!("{:.2}", s.p99_ms),
            s.count.to_string(),
            format!("{:.0}", s.throughput_per_s),
        ]);
    }
    r.table(t);
    r.note(format!(
        "HTTP load phases '{OFFSET_PHASE}' and '{KEYSET_PHASE}': the API served on a loopback \
         port by the lab process, driven from the same process and runtime through one \
         keep-alive connection per client (labkit::http::Connections); driver, server and \
         Postgres share the machine's cores (--clients, --duration, --warmup)."
    ));
    if let Some(e) = &a.first_error {
        r.note(format!("HTTP load: first failure: {e}"));
    }
}

fn walk(r: &mut Report, w: &Walk, table_rows: u64) {
    let offset_ms = w.offset_total.as_secs_f64() * 1000.0;
    let keyset_ms = w.keyset_total.as_secs_f64() * 1000.0;
    r.finding(
        "walk_pages",
        "Walk: pages read from the top (each method)",
        w.pages as f64,
        "count",
    )
    .measured(
        "walk_offset_total_ms",
        "Walk: OFFSET total time",
        offset_ms,
        "ms",
        w.offset_pages.count,
    )
    .measured(
        "walk_keyset_total_ms",
        "Walk: keyset total time",
        keyset_ms,
        "ms",
        w.keyset_pages.count,
    )
    .finding(
        "walk_offset_over_keyset_x",
        "Walk: OFFSET time / keyset time",
        offset_ms / keyset_ms.max(0.001),
        "x",
    );
    let what = if w.whole_table {
        format!("the whole table ({} rows)", w.rows)
    } else {
        format!(
            "the first {} pages = {} of {} rows ({:.1} %)",
            w.pages,
            w.rows,
            table_rows,
            100.0 * w.rows as f64 / table_rows as f64
        )
    };
    let mut t = Table::new(
        format!(
            "Walk of {what}, {} rows a page, one client, no writes",
            w.limit
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
        ("OFFSET", offset_ms, &w.offset_pages),
        ("keyset", keyset_ms, &w.keyset_pages),
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
    if !w.whole_table {
        r.note(format!(
            "The walk covers {what}: a full OFFSET walk grows with the square of the page count and would not fit the run. Each page's depth cost is in the depth table."
        ));
    }
}

fn counting(r: &mut Report, rows: &[CountRow]) {
    let all = &rows[0];
    r.p50(
        "count_exact_ms",
        "COUNT(*) of all orders, p50",
        &all.exact_lat,
    )
    .p50(
        "count_estimate_ms",
        "Planner estimate of the same (EXPLAIN), p50",
        &all.estimate_lat,
    )
    .finding(
        "count_estimate_error_pct",
        "Planner estimate vs exact count, error",
        all.error_pct(),
        "%",
    );
    fewer_is_better(r, &["count_estimate_error_pct"]);
    let mut t = Table::new(
        "Counting: exact COUNT(*) vs the planner's estimate (p50 of sequential runs)",
        &[
            "filter",
            "exact rows",
            "COUNT(*) ms",
            "estimate",
            "estimate ms",
            "error",
        ],
    );
    for c in rows {
        t.row([
            c.filter.to_string(),
            c.exact.to_string(),
            format!("{:.2}", c.exact_lat.p50_ms),
            c.estimate.to_string(),
            format!("{:.3}", c.estimate_lat.p50_ms),
            format!("{:.1} %", c.error_pct()),
        ]);
    }
    r.table(t);
}

fn ties(r: &mut Report, t: &Ties) {
    r.finding(
        "naive_keyset_rows_lost_on_ties",
        "Naive created_at-only cursor: rows never served",
        t.naive.lost as f64,
        "count",
    )
    .finding(
        "tiebroken_keyset_rows_lost_on_ties",
        "(created_at, id) cursor: rows never served",
        t.tiebroken.lost as f64,
        "count",
    )
    .finding(
        "ties_rows_walked",
        "Ties: rows in the walked range",
        t.expected as f64,
        "count",
    )
    .finding(
        "ties_rows_sharing_created_at_pct",
        "Ties: rows whose created_at another row shares",
        t.tied_pct,
        "%",
    );
    fewer_is_better(
        r,
        &[
            "naive_keyset_rows_lost_on_ties",
            "tiebroken_keyset_rows_lost_on_ties",
        ],
    );
    let mut table = Table::new(
        format!(
            "Ties: walking {} rows from the top (largest group sharing one created_at: {} rows)",
            t.expected, t.largest_group
        ),
        &[
            "cursor",
            "pages",
            "pages ending inside a tie group",
            "rows never served",
            "duplicates",
        ],
    );
    for (name, o) in [
        ("created_at only (naive)", &t.naive),
        ("(created_at, id)", &t.tiebroken),
    ] {
        table.row([
            name.to_string(),
            o.pages.to_string(),
            o.pages_ending_in_a_tie.to_string(),
            o.lost.to_string(),
            o.duplicates.to_string(),
        ]);
    }
    r.table(table);
}

fn drift(r: &mut Report, scripted: &DriftRun, c: &DriftRun, plan: &WriterPlan) {
    r.finding(
        "offset_duplicates_under_writes",
        "Concurrent writes: rows OFFSET served twice",
        c.offset.duplicates as f64,
        "count",
    )
    .finding(
        "offset_misses_under_writes",
        "Concurrent writes: rows OFFSET never served",
        c.offset.misses as f64,
        "count",
    )
    .finding(
        "keyset_duplicates_under_writes",
        "Concurrent writes: rows keyset served twice",
        c.keyset.duplicates as f64,
        "count",
    )
    .finding(
        "keyset_misses_under_writes",
        "Concurrent writes: rows keyset never served",
        c.keyset.misses as f64,
        "count",
    )
    .finding(
        "drift_pages_walked",
        "Concurrent writes: pages in the walked range",
        c.pages as f64,
        "count",
    )
    .finding(
        "drift_rows_inserted",
        "Concurrent writes: orders inserted at the head during the walk",
        c.inserted as f64,
        "count",
    )
    .finding(
        "drift_rows_deleted",
        "Concurrent writes: orders deleted during the walk",
        c.deleted as f64,
        "count",
    )
    .finding(
        "scripted_offset_duplicates",
        "Scripted interleaving: rows OFFSET served twice",
        scripted.offset.duplicates as f64,
        "count",
    )
    .finding(
        "scripted_offset_misses",
        "Scripted interleaving: rows OFFSET never served",
        scripted.offset.misses as f64,
        "count",
    )
    .finding(
        "scripted_keyset_anomalies",
        "Scripted interleaving: keyset duplicates + misses",
        (scripted.keyset.duplicates + scripted.keyset.misses) as f64,
        "count",
    );
    fewer_is_better(
        r,
        &[
            "offset_duplicates_under_writes",
            "offset_misses_under_writes",
            "keyset_duplicates_under_writes",
            "keyset_misses_under_writes",
            "scripted_offset_duplicates",
            "scripted_offset_misses",
            "scripted_keyset_anomalies",
        ],
    );
    let mut t = Table::new(
        format!(
            "Drift: walking the first {} pages ({} rows) while orders arrive; counted against the rows that existed the whole time",
            c.pages,
            c.pages * c.limit
        ),
        &[
            "writes",
            "method",
            "pages fetched",
            "inserted / deleted",
            "duplicates",
            "misses",
        ],
    );
    drift_rows(&mut t, scripted, "scripted: +3 / -2 between pages");
    drift_rows(
        &mut t,
        c,
        &format!(
            "concurrent: 1 insert every {} ms, {} deletes every {} ms, {:.0} ms",
            plan.insert_every.as_millis(),
            plan.delete_batch,
            plan.delete_every.as_millis(),
            c.elapsed.as_secs_f64() * 1000.0
        ),
    );
    r.table(t);
}

fn drift_rows(t: &mut Table, run: &DriftRun, version: &str) {
    for (name, tally) in [("OFFSET", &run.offset), ("keyset", &run.keyset)] {
        t.row([
            version.to_string(),
            name.to_string(),
            tally.pages.to_string(),
            format!("{} / {}", run.inserted, run.deleted),
            tally.duplicates.to_string(),
            tally.misses.to_string(),
        ]);
    }
}

fn sentence(f: &Facts) -> String {
    let deep = f.depth.deepest();
    format!(
        "On {} orders, page {} by OFFSET took {:.0} ms at p95 and read {} buffers, while the keyset cursor took {:.2} ms and {} buffers; with orders arriving during a {}-page walk, OFFSET served {} rows twice and skipped {}, keyset none — and the cursor must include the id: keyed on created_at alone it lost {} of {} rows to timestamp ties.",
        f.data.rows,
        deep.page,
        deep.offset.p95_ms,
        deep.offset_plan.buffers(),
        deep.keyset.p95_ms,
        deep.keyset_plan.buffers(),
        f.concurrent.pages,
        f.concurrent.offset.duplicates,
        f.concurrent.offset.misses,
        f.ties.naive.lost,
        f.ties.expected,
    )
}
