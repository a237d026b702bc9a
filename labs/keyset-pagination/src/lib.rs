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
//! each claim: latency and buffers by page depth, a walk, duplicates and misses under
//! writes, rows lost by a cursor without a tie-breaker, and the price of an exact count.
//!
//! Module map, in reading order:
//! - [`schema`]: the `orders` table, seed data with timestamp ties, the indexes.
//! - [`filter`]: the optional `status` / `tenant_id` filters, one statement per shape.
//! - [`offset`]: `LIMIT/OFFSET` pages — the incident.
//! - [`keyset`]: `(created_at, id) < ($1, $2)` pages, and the naive `created_at`-only cursor.
//! - [`cursor`]: the opaque, HMAC-signed cursor that carries key and filter.
//! - [`count`]: exact `COUNT(*)` vs the planner's estimate.
//! - [`api`]: the axum service (`GET /v1/orders`), its request parsing and JSON errors.
//! - [`scenario`]: the measurements — depth, walk, counting, ties, drift.

pub mod api;
pub mod count;
pub mod cursor;
pub mod filter;
pub mod keyset;
pub mod offset;
pub mod scenario;
pub mod schema;

use labkit::{LabCtx, Report, ServeApp};

use crate::scenario::{counting, depth, drift, ties, walk};

/// Rows a page, for every scenario (the API's default).
pub const PAGE_SIZE: i64 = api::DEFAULT_LIMIT;

/// The `keyset-pagination` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeysetPagination;

/// Orders in the table at each scale.
pub fn table_rows(scale: labkit::Scale) -> u64 {
    scale.pick(50_000, 2_000_000, 20_000_000)
}

#[labkit::async_trait]
impl labkit::Lab for KeysetPagination {
    fn id(&self) -> &'static str {
        "keyset-pagination"
    }

    fn title(&self) -> &'static str {
        "Keyset vs offset pagination over millions of rows and concurrent writes"
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        let pool = &ctx.pg;
        let rows = table_rows(ctx.scale);
        let seeded = schema::seed(pool, rows, ctx.seed).await?;
        let rows = rows as i64;
        let mut report = ctx.report(self.title());

        let depth = depth::run(pool, rows, PAGE_SIZE, ctx.scale).await?;
        depth.report(&mut report);

        // 2.5 % of the table at default scale (20 % at smoke): a full OFFSET walk is O(pages²).
        let walk_pages = ctx.scale.pick(200, 1_000, 1_000);
        let walk = walk::run(pool, walk_pages, PAGE_SIZE, rows).await?;
        walk.report(&mut report, rows);

        // Before the drift scenario writes, so the exact count is the seeded one.
        let counts = counting::run(pool, ctx.scale).await?;
        counting::report(&mut report, &counts);

        let ties = ties::run(pool, walk_pages, PAGE_SIZE).await?;
        ties.report(&mut report);

        let scripted = drift::scripted(pool, 20, PAGE_SIZE).await?;
        let (concurrent, plan) =
            drift::concurrent(pool, ctx.scale.pick(100, 200, 200), PAGE_SIZE, ctx.seed).await?;
        drift::report(&mut report, &scripted, &concurrent, &plan);

        let deep = depth.deepest();
        report.sentence(format!(
            "On {rows} orders, page {} by OFFSET took {:.0} ms at p95 and read {} buffers, while the keyset cursor took {:.2} ms and {} buffers; with orders arriving during a {}-page walk, OFFSET served {} rows twice and skipped {}, keyset none — and the cursor must include the id: keyed on created_at alone it lost {} of {} rows to timestamp ties.",
            deep.page,
            deep.offset.p95_ms,
            deep.offset_plan.buffers(),
            deep.keyset.p95_ms,
            deep.keyset_plan.buffers(),
            concurrent.pages,
            concurrent.offset.duplicates,
            concurrent.offset.misses,
            ties.naive.lost,
            ties.expected,
        ));
        report.note(format!(
            "Seeding {rows} orders with 4 indexes and VACUUM ANALYZE took {:.1} s. Latencies are single-client, sequential, measured in the lab process over loopback (page query only: the offset endpoint's COUNT(*) is measured separately under Counting).",
            seeded.as_secs_f64()
        ));
        Ok(report)
    }

    async fn serve(&self, ctx: &LabCtx) -> anyhow::Result<Option<ServeApp>> {
        schema::seed(&ctx.pg, table_rows(ctx.scale), ctx.seed).await?;
        let router = api::router(api::AppState {
            pool: ctx.pg.clone(),
            cursors: cursor::CursorCodec::random(),
        });
        Ok(Some(ServeApp {
            router,
            banner: BANNER.to_string(),
            keep_alive: Vec::new(),
        }))
    }
}

const BANNER: &str = r#"Offset pagination (exact total, slow when deep):
  curl -s '{base}/v1/orders?limit=3&page=2' | jq
  curl -s '{base}/v1/orders?limit=3&page=900&status=paid' | jq .meta
Keyset pagination (first page, then follow meta.next_cursor):
  curl -s '{base}/v1/orders?limit=3' | jq
  curl -s "{base}/v1/orders?limit=3&cursor=$(curl -s '{base}/v1/orders?limit=3' | jq -r .meta.next_cursor)" | jq
  curl -s '{base}/v1/orders?limit=3&tenant_id=1' | jq .meta
Errors are JSON 400s:
  curl -s '{base}/v1/orders?limit=abc'
  curl -s '{base}/v1/orders?cursor=bm90LWEtY3Vyc29y'
  curl -s '{base}/v1/orders?page=2&cursor=x'"#;
