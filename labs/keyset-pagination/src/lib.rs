//! Keyset vs offset pagination over millions of rows and concurrent writes.
//!
//! The war story: `GET /orders?page=N` was fine at launch. Two years and millions of orders
//! later the deep pages time out, an export job walking every page never finishes, and
//! users scrolling the list see the same order on two pages while new orders arrive.
//! `LIMIT 50 OFFSET 500000` makes Postgres produce and discard half a million rows; a page
//! number is a position in a list that moves under every insert and delete; and the
//! "page 3 of 41,213" header runs `COUNT(*)` over the whole table on every request.
//!
//! The fix is keyset (cursor) pagination: "the 50 orders after the last one you saw", on a
//! unique, stable ordering `(created_at DESC, id DESC)` served by an index, so every page is
//! one index descent plus 50 entries. The cursor the client holds is opaque — versioned,
//! signed, bound to its filter — and the total becomes an honest estimate. The lab measures
//! each claim: latency and buffers by page depth, the deepest page through the service under
//! load, a walk, duplicates and misses under writes, rows lost by a cursor without a
//! tie-breaker, and the price of an exact count.
//!
//! | module | what it holds |
//! |---|---|
//! | [`schema`] | the `orders` table, seed data with timestamp ties, the indexes |
//! | [`filter`] | the optional `status` / `tenant_id` filters, one statement per shape |
//! | [`offset`] | `LIMIT/OFFSET` pages — the incident |
//! | [`keyset`] | `(created_at, id) < ($1, $2)` pages, and the naive `created_at`-only cursor |
//! | [`cursor`] | the opaque, HMAC-signed cursor that carries key and filter |
//! | [`count`] | exact `COUNT(*)` vs the planner's estimate |
//! | [`api`] | the axum service (`GET /v1/orders`), assembled once in [`api::router`] |
//! | [`scenario`] | the measurements — depth, the API under load, walk, counting, ties, drift |
//! | [`report`] | findings, tables, the chart, notes and the sentence |
//! | this file | the run, step by step, and `lab serve` |

pub mod api;
pub mod count;
pub mod cursor;
pub mod filter;
pub mod keyset;
pub mod offset;
pub mod report;
pub mod scenario;
pub mod schema;

use labkit::{Knob, LabCtx, Report, ServeApp};

use crate::scenario::api_load::{self, LoadShape};
use crate::scenario::{counting, depth, drift, ties, walk};
use crate::schema::Dataset;

/// Rows a page, for every scenario (the API's default).
pub const PAGE_SIZE: i64 = api::DEFAULT_LIMIT;

/// Every finding key a run reports (users' scripts parse them).
pub const FINDING_KEYS: &[&str] = &[
    "deepest_page",
    "offset_p95_ms_page_1",
    "keyset_p95_ms_page_1",
    "offset_p95_ms_deepest",
    "keyset_p95_ms_deepest",
    "offset_buffers_deepest",
    "keyset_buffers_deepest",
    "offset_ms_per_1000_pages",
    "keyset_ms_per_1000_pages",
    "deepest_offset_over_keyset_p95_x",
    "api_offset_deepest_p95_ms",
    "api_keyset_deepest_p95_ms",
    "api_offset_deepest_rps",
    "api_keyset_deepest_rps",
    "api_load_errors",
    "walk_pages",
    "walk_offset_total_ms",
    "walk_keyset_total_ms",
    "walk_offset_over_keyset_x",
    "count_exact_ms",
    "count_estimate_ms",
    "count_estimate_error_pct",
    "naive_keyset_rows_lost_on_ties",
    "tiebroken_keyset_rows_lost_on_ties",
    "ties_rows_walked",
    "ties_rows_sharing_created_at_pct",
    "offset_duplicates_under_writes",
    "offset_misses_under_writes",
    "keyset_duplicates_under_writes",
    "keyset_misses_under_writes",
    "drift_pages_walked",
    "drift_rows_inserted",
    "drift_rows_deleted",
    "scripted_offset_duplicates",
    "scripted_offset_misses",
    "scripted_keyset_anomalies",
];

/// The `keyset-pagination` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeysetPagination;

#[labkit::async_trait]
impl labkit::Lab for KeysetPagination {
    fn id(&self) -> &'static str {
        "keyset-pagination"
    }

    fn title(&self) -> &'static str {
        "Keyset vs offset pagination over millions of rows and concurrent writes"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(include_str!("../baseline.json"))
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        declare_ignored_knobs(ctx);
        let pool = &ctx.pg;
        let data = Dataset::for_scale(ctx.scale);
        let shape = LoadShape::from_ctx(ctx);
        let rows = data.rows as i64;

        // 1. Two years of orders, with bursts that make many share one second.
        let seeded = schema::seed(pool, data, ctx.seed).await?;

        // 2. One page at growing depth, both ways, one client: the O(N) of OFFSET.
        let depth = depth::run(pool, rows, PAGE_SIZE, ctx.scale).await?;

        // 3. The deepest page through the service, several clients at once.
        let api = api_load::run(pool, depth.deepest().page, PAGE_SIZE, shape).await?;

        // 4. An export job's walk from the top: O(P²) against O(P). 2.5 % of the table at
        //    default scale (20 % at smoke): a full OFFSET walk would not fit the run.
        let walk_pages = ctx.scale.pick(200, 1_000, 1_000);
        let walk = walk::run(pool, walk_pages, PAGE_SIZE, rows).await?;

        // 5. What "page 3 of 41,213" costs — before the drift writes, so the exact count is
        //    the seeded one.
        let counts = counting::run(pool, data, ctx.scale).await?;

        // 6. A cursor on created_at alone, against the (created_at, id) one.
        let ties = ties::run(pool, walk_pages, PAGE_SIZE).await?;

        // 7. Walks while the shop writes: scripted (exact), then a concurrent writer.
        let scripted = drift::scripted(pool, 20, PAGE_SIZE).await?;
        let drift_pages = ctx.scale.pick(100, 200, 200);
        let (concurrent, writer) =
            drift::concurrent(pool, drift_pages, PAGE_SIZE, data.tenants, ctx.seed).await?;

        let mut report = ctx.report(self.title());
        report::write(
            &mut report,
            &report::Facts {
                data,
                seeded,
                depth,
                api,
                walk,
                counts,
                ties,
                scripted,
                concurrent,
                writer,
            },
        );
        Ok(report)
    }

    async fn serve(&self, ctx: &LabCtx) -> anyhow::Result<Option<ServeApp>> {
        schema::seed(&ctx.pg, Dataset::for_scale(ctx.scale), ctx.seed).await?;
        let router = api::router(api::AppState {
            pool: ctx.pg.clone(),
            cursors: cursor::CursorCodec::random(),
        });
        Ok(Some(ServeApp {
            router,
            banner: include_str!("../curl.md").to_string(),
            keep_alive: Vec::new(),
        }))
    }
}

/// Only the HTTP load phase has clients and a duration; the other scenarios are one reader
/// per method by design. A user who sets a knob is told which parts followed it.
fn declare_ignored_knobs(ctx: &LabCtx) {
    ctx.ignores(
        Knob::Clients,
        "by every scenario but the HTTP load phase (which ran with it). Depth, walk and \
         counting time one client on purpose; the tie walk's losses do not depend on \
         concurrency; the drift walks are one offset reader and one keyset reader against one \
         writer, scripted or on the writer's own clock.",
    );
    ctx.ignores(
        Knob::Duration,
        "by every scenario but the HTTP load phase (which ran for it). Depth and counting are \
         bounded by repetitions, the walk, tie and drift scenarios by pages.",
    );
    ctx.ignores(
        Knob::Warmup,
        "by every scenario but the HTTP load phase (which warmed up for it). Depth runs each \
         page once unmeasured instead.",
    );
    ctx.ignores(
        Knob::Rate,
        "the HTTP load phase is a closed loop (--clients), and the drift writer keeps its own \
         schedule (an order every 2 ms).",
    );
}
