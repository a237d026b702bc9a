//! What Postgres does for a deep page: EXPLAIN (ANALYZE, BUFFERS) on the real statements.

mod common;

use common::seeded;
use lab_keyset_pagination::filter::{Filter, Status};
use lab_keyset_pagination::keyset::{self, SortKey};
use lab_keyset_pagination::schema::Dataset;
use lab_keyset_pagination::{PAGE_SIZE, offset};
use labkit::explain::{self, Plan};
use sqlx::PgPool;

async fn keyset_plan(pool: &PgPool, filter: Filter, after: SortKey) -> Plan {
    explain::analyze(pool, keyset::sql(filter), |q| {
        let q = q.bind(after.created_at).bind(after.id).bind(PAGE_SIZE);
        let q = match filter.tenant_id {
            Some(t) => q.bind(t),
            None => q,
        };
        match filter.status {
            Some(s) => q.bind(s.as_str()),
            None => q,
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_deepest_keyset_page_is_an_index_scan_reading_as_few_buffers_as_page_two() {
    let t = seeded().await;
    let pool = &t.ctx.pg;
    let rows = Dataset::for_scale(labkit::Scale::Smoke).rows as i64;
    let deepest_skip = rows - PAGE_SIZE; // page 1,000 of 50-row pages

    // The cursors a client would hold at page 2 and at the last page.
    let at_page_2 = keyset::key_at(pool, PAGE_SIZE - 1).await.unwrap().unwrap();
    let at_deepest = keyset::key_at(pool, deepest_skip - 1)
        .await
        .unwrap()
        .unwrap();

    let shallow = keyset_plan(pool, Filter::ALL, at_page_2).await;
    let deep = keyset_plan(pool, Filter::ALL, at_deepest).await;
    for plan in [&shallow, &deep] {
        assert_eq!(plan.access_path(), "Index Scan", "{:?}", plan.node_types());
        assert_eq!(plan.index_used(), Some("orders_created_id_idx"));
        assert!(!plan.has_node("Sort"), "the index provides the order");
        assert_eq!(plan.rows_returned(), PAGE_SIZE as u64);
        // The key is an index condition: the scan starts at the cursor, nothing filtered out.
        assert_eq!(plan.rows_examined(), PAGE_SIZE as u64);
    }
    // One descent plus a leaf page or two and the heap pages of 50 rows, at any depth.
    assert!(
        deep.buffers() <= 12,
        "deep keyset page read {} buffers",
        deep.buffers()
    );
    assert!(
        deep.buffers() <= shallow.buffers() + 2,
        "depth-independent: page 2 read {}, the last page {}",
        shallow.buffers(),
        deep.buffers()
    );

    // The same page by OFFSET walks the 49,950 rows before it.
    let by_offset = explain::analyze(pool, offset::sql(Filter::ALL), |q| {
        q.bind(PAGE_SIZE).bind(deepest_skip)
    })
    .await
    .unwrap();
    assert!(by_offset.rows_examined() >= rows as u64);
    assert!(
        by_offset.buffers() > 50 * deep.buffers(),
        "OFFSET read {} buffers, keyset {}",
        by_offset.buffers(),
        deep.buffers()
    );

    t.finish().await;
}

#[tokio::test]
async fn filtered_keyset_pages_seek_in_the_filters_own_index() {
    let t = seeded().await;
    let pool = &t.ctx.pg;
    let middle: SortKey = keyset::key_at(pool, 25_000).await.unwrap().unwrap();

    // Selective filters: the equality column leads the index and the cursor is the rest of
    // the index condition, so every row read is a row served.
    for (filter, index) in [
        (Filter::tenant(5), "orders_tenant_created_id_idx"),
        (
            Filter::status(Status::Refunded),
            "orders_status_created_id_idx",
        ),
    ] {
        let plan = keyset_plan(pool, filter, middle).await;
        assert_eq!(
            plan.access_path(),
            "Index Scan",
            "{filter}: {:?}",
            plan.node_types()
        );
        assert_eq!(plan.index_used(), Some(index), "{filter}");
        assert_eq!(
            plan.rows_removed_by_filter(),
            0,
            "{filter}: every row read is served"
        );
        assert!(!plan.has_node("Sort"), "{filter}");
    }

    // The biggest tenant owns about 1 order in 17: the planner may as well walk the main
    // index from the cursor and filter. Either way the page is an ordered index scan from
    // the cursor, never a sort of the tenant's orders.
    let plan = keyset_plan(pool, Filter::tenant(1), middle).await;
    assert_eq!(plan.access_path(), "Index Scan", "{:?}", plan.node_types());
    assert!(!plan.has_node("Sort"));

    t.finish().await;
}
