//! The war story over real HTTP: pages read while orders arrive and leave, and pages cut
//! through groups of orders that share a timestamp.

mod common;

use std::collections::HashSet;

use common::{get_ok, ids, next_cursor, seeded, serve};
use lab_keyset_pagination::filter::Filter;
use lab_keyset_pagination::scenario::ties::{CursorKind, walk};
use lab_keyset_pagination::{count, schema};

#[tokio::test]
async fn orders_inserted_at_the_head_between_two_pages_repeat_rows_under_offset_but_not_keyset() {
    let t = seeded().await;
    let srv = serve(&t).await;
    let pool = &t.ctx.pg;
    let truth = schema::ids_in_order(pool, 200).await.unwrap();

    // t1: a client reads page 1 both ways — the same 50 newest orders.
    let offset_1 = get_ok(&srv, "/v1/orders?limit=50&page=1").await;
    let keyset_1 = get_ok(&srv, "/v1/orders?limit=50").await;
    assert_eq!(ids(&offset_1), truth[..50]);
    assert_eq!(ids(&keyset_1), truth[..50]);

    // t2: three orders arrive; they sort before everything the client has seen.
    for _ in 0..3 {
        schema::insert_at_head(pool, 1).await.unwrap();
    }

    // t3: offset page 2 = positions 51..100 of a list that grew by 3 at the top: it starts
    //     with the last 3 orders of page 1 again.
    let offset_2 = get_ok(&srv, "/v1/orders?limit=50&page=2").await;
    assert_eq!(ids(&offset_2)[..3], ids(&offset_1)[47..]);
    assert_eq!(ids(&offset_2), truth[47..97]);

    // t4: keyset page 2 = the 50 orders after the last one served: exactly 51..100 of the
    //     original list. No duplicate, no miss, the new orders are simply not behind us.
    let cursor = next_cursor(&keyset_1).expect("page 1 has a next cursor");
    let keyset_2 = get_ok(&srv, &format!("/v1/orders?limit=50&cursor={cursor}")).await;
    assert_eq!(ids(&keyset_2), truth[50..100]);

    t.finish().await;
}

#[tokio::test]
async fn orders_deleted_from_a_served_page_make_offset_skip_rows_and_keyset_miss_none() {
    let t = seeded().await;
    let srv = serve(&t).await;
    let pool = &t.ctx.pg;
    let truth = schema::ids_in_order(pool, 200).await.unwrap();

    // t1: page 1 both ways.
    let offset_1 = get_ok(&srv, "/v1/orders?limit=50&page=1").await;
    let keyset_1 = get_ok(&srv, "/v1/orders?limit=50").await;
    assert_eq!(ids(&offset_1), ids(&keyset_1));

    // t2: two orders the client has already seen are deleted (refund clean-up).
    assert_eq!(schema::delete(pool, &truth[10..12]).await.unwrap(), 2);

    // t3: offset page 2 now starts 2 positions later: orders 51 and 52 of the original
    //     list were never on page 1 and are not on page 2. The client never sees them.
    let offset_2 = get_ok(&srv, "/v1/orders?limit=50&page=2").await;
    assert_eq!(ids(&offset_2), truth[52..102]);
    let served: HashSet<i64> = ids(&offset_1).into_iter().chain(ids(&offset_2)).collect();
    assert!(!served.contains(&truth[50]) && !served.contains(&truth[51]));

    // t4: keyset page 2 still starts right after the last order served.
    let cursor = next_cursor(&keyset_1).unwrap();
    let keyset_2 = get_ok(&srv, &format!("/v1/orders?limit=50&cursor={cursor}")).await;
    assert_eq!(ids(&keyset_2), truth[50..100]);

    t.finish().await;
}

#[tokio::test]
async fn naive_created_at_cursor_loses_orders_on_ties_and_the_tie_broken_cursor_serves_each_once() {
    let t = seeded().await;
    let srv = serve(&t).await;
    let pool = &t.ctx.pg;
    let total = count::exact(pool, Filter::ALL).await.unwrap() as usize;

    // The naive cursor (`created_at < last.created_at`) over the whole table: every page that
    // ends inside a group of orders sharing a second drops the rest of that group.
    let (naive_ids, _, pages_cut) = walk(pool, CursorKind::Naive, 200, None).await.unwrap();
    let naive: HashSet<i64> = naive_ids.iter().copied().collect();
    assert!(pages_cut > 0, "the seed has ties at page boundaries");
    assert!(
        naive.len() < total,
        "naive cursor served {} of {total}",
        naive.len()
    );

    // The API's cursor, `(created_at, id)`, walked over HTTP to the end: every order once.
    let mut served = Vec::new();
    let mut page = get_ok(&srv, "/v1/orders?limit=200").await;
    loop {
        served.extend(ids(&page));
        let Some(cursor) = next_cursor(&page) else {
            break;
        };
        page = get_ok(&srv, &format!("/v1/orders?limit=200&cursor={cursor}")).await;
    }
    let distinct: HashSet<i64> = served.iter().copied().collect();
    assert_eq!(served.len(), total, "no duplicates");
    assert_eq!(distinct.len(), total, "no order lost");
    assert_eq!(
        served,
        schema::ids_in_order(pool, total as i64).await.unwrap()
    );

    t.finish().await;
}

#[tokio::test]
async fn a_filtered_keyset_walk_serves_exactly_the_filtered_orders() {
    let t = seeded().await;
    let srv = serve(&t).await;
    let pool = &t.ctx.pg;
    let expected: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM orders WHERE tenant_id = 1 AND status = 'paid'
         ORDER BY created_at DESC, id DESC",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(expected.len() > 400, "tenant 1 is big enough to page");

    let mut served = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/orders?limit=100&tenant_id=1&status=paid".to_string(),
            Some(c) => format!("/v1/orders?limit=100&tenant_id=1&status=paid&cursor={c}"),
        };
        let page = get_ok(&srv, &path).await;
        assert_eq!(page["meta"]["mode"], "keyset");
        assert!(page["meta"]["total_estimate"].as_i64().unwrap() > 0);
        served.extend(ids(&page));
        cursor = next_cursor(&page);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(served, expected);

    // Offset mode on the same filter reports the exact total.
    let page = get_ok(&srv, "/v1/orders?limit=100&page=2&tenant_id=1&status=paid").await;
    assert_eq!(page["meta"]["mode"], "offset");
    assert_eq!(
        page["meta"]["total"].as_i64().unwrap() as usize,
        expected.len()
    );
    assert_eq!(ids(&page), expected[100..200]);

    t.finish().await;
}
