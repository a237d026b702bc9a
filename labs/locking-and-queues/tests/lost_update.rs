//! The lost update and its fixes, as transcripts: two clients on their own connections, the
//! interleaving forced with pause points and observed through `pg_blocking_pids`.

use lab_locking_and_queues::interleave::NoPause;
use lab_locking_and_queues::interleave::{Point, backend_pid, pause, wait_until_blocked};
use lab_locking_and_queues::inventory::{Sale, Strategy, sell, sql};
use lab_locking_and_queues::schema;
use labkit::testing::TestCtx;
use sqlx::{Connection, PgConnection};

const ITEM: i64 = 1;

/// One inventory row with 10 units, and two client sessions.
async fn setup(t: &TestCtx) -> (PgConnection, PgConnection) {
    schema::create(&t.ctx.pg).await.unwrap();
    schema::reset_inventory(&t.ctx.pg, 1, 10).await.unwrap();
    let url = t.ctx.database_url();
    (
        PgConnection::connect(url).await.unwrap(),
        PgConnection::connect(url).await.unwrap(),
    )
}

async fn stock(t: &TestCtx) -> i32 {
    sqlx::query_scalar("SELECT qty FROM inventory WHERE id = $1")
        .bind(ITEM)
        .fetch_one(&t.ctx.pg)
        .await
        .unwrap()
}

const SOLD: Sale = Sale {
    sold: true,
    retries: 0,
};

#[tokio::test]
async fn a_read_modify_write_loses_a_sale_when_two_clients_interleave() {
    let t = labkit::testing::ctx("locking-and-queues").await;
    let (mut c1, mut c2) = setup(&t).await;
    let (g1, mut t1) = pause(&[Point::Read]);
    let (g2, mut t2) = pause(&[Point::Read]);
    let s = Strategy::ReadModifyWrite;
    let h1 = tokio::spawn(async move { sell(&mut c1, s, ITEM, &g1).await.unwrap() });
    // t1: BEGIN; SELECT qty → 10
    assert_eq!(t1.arrived().await, Point::Read);
    let h2 = tokio::spawn(async move { sell(&mut c2, s, ITEM, &g2).await.unwrap() });
    // t2: BEGIN; SELECT qty → 10 (t1 holds no lock yet: a plain read never waits)
    assert_eq!(t2.arrived().await, Point::Read);
    // t1: UPDATE SET qty = 9; COMMIT
    t1.release();
    assert_eq!(h1.await.unwrap(), SOLD);
    // t2: UPDATE SET qty = 9; COMMIT — overwrites t1's 9 with its own 9
    t2.release();
    assert_eq!(h2.await.unwrap(), SOLD);
    // Two sales reported, one unit gone.
    assert_eq!(stock(&t).await, 9);
    t.finish().await;
}

#[tokio::test]
async fn the_atomic_update_makes_the_second_sale_wait_and_both_count() {
    let t = labkit::testing::ctx("locking-and-queues").await;
    let (mut c1, mut c2) = setup(&t).await;
    let p1 = backend_pid(&mut c1).await.unwrap();
    let p2 = backend_pid(&mut c2).await.unwrap();
    // t1: BEGIN; UPDATE … SET qty = qty - 1 WHERE qty > 0 — holds the row lock
    sqlx::raw_sql("BEGIN").execute(&mut c1).await.unwrap();
    let n = sqlx::query(sql::ATOMIC_DECREMENT)
        .bind(ITEM)
        .execute(&mut c1)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 1);
    // t2: UPDATE … SET qty = qty - 1 — BLOCKS (pg_blocking_pids = [t1])
    let h2 = tokio::spawn(async move {
        sell(&mut c2, Strategy::AtomicUpdate, ITEM, &NoPause)
            .await
            .unwrap()
    });
    assert_eq!(wait_until_blocked(&t.ctx.pg, p2).await.unwrap(), vec![p1]);
    // t1: COMMIT — t2 re-reads the row t1 committed (9) and writes 8
    sqlx::raw_sql("COMMIT").execute(&mut c1).await.unwrap();
    assert_eq!(h2.await.unwrap(), SOLD);
    assert_eq!(stock(&t).await, 8);
    t.finish().await;
}

#[tokio::test]
async fn the_version_check_sends_the_loser_back_to_read_again() {
    let t = labkit::testing::ctx("locking-and-queues").await;
    let (mut c1, mut c2) = setup(&t).await;
    let (g1, mut t1) = pause(&[Point::Read]);
    let (g2, mut t2) = pause(&[Point::Read]);
    let s = Strategy::Optimistic;
    let h1 = tokio::spawn(async move { sell(&mut c1, s, ITEM, &g1).await.unwrap() });
    // t1: SELECT qty, version → (10, 0)
    t1.arrived().await;
    let h2 = tokio::spawn(async move { sell(&mut c2, s, ITEM, &g2).await.unwrap() });
    // t2: SELECT qty, version → (10, 0)
    t2.arrived().await;
    // t1: UPDATE SET qty = 9, version = 1 WHERE version = 0 → 1 row
    t1.release();
    assert_eq!(h1.await.unwrap(), SOLD);
    // t2: UPDATE … WHERE version = 0 → 0 rows: stale. It reads again: (9, 1) …
    t2.release();
    assert_eq!(t2.arrived().await, Point::Read);
    // … and UPDATE SET qty = 8, version = 2 WHERE version = 1 → 1 row
    t2.release();
    assert_eq!(
        h2.await.unwrap(),
        Sale {
            sold: true,
            retries: 1
        }
    );
    assert_eq!(stock(&t).await, 8);
    t.finish().await;
}

#[tokio::test]
async fn for_update_makes_the_second_reader_wait_for_the_first_sale() {
    let t = labkit::testing::ctx("locking-and-queues").await;
    let (mut c1, mut c2) = setup(&t).await;
    let p1 = backend_pid(&mut c1).await.unwrap();
    let p2 = backend_pid(&mut c2).await.unwrap();
    let (g1, mut t1) = pause(&[Point::Read]);
    let s = Strategy::Pessimistic;
    let h1 = tokio::spawn(async move { sell(&mut c1, s, ITEM, &g1).await.unwrap() });
    // t1: BEGIN; SELECT qty … FOR UPDATE → 10, row locked
    t1.arrived().await;
    // t2: BEGIN; SELECT qty … FOR UPDATE — BLOCKS (pg_blocking_pids = [t1])
    let h2 = tokio::spawn(async move { sell(&mut c2, s, ITEM, &NoPause).await.unwrap() });
    assert_eq!(wait_until_blocked(&t.ctx.pg, p2).await.unwrap(), vec![p1]);
    // t1: UPDATE SET qty = 9; COMMIT — t2's SELECT returns 9, it writes 8
    t1.release();
    assert_eq!(h1.await.unwrap(), SOLD);
    assert_eq!(h2.await.unwrap(), SOLD);
    assert_eq!(stock(&t).await, 8);
    t.finish().await;
}

#[tokio::test]
async fn nowait_refuses_at_once_instead_of_waiting() {
    let t = labkit::testing::ctx("locking-and-queues").await;
    let (mut c1, mut c2) = setup(&t).await;
    let (g1, mut t1) = pause(&[Point::Read]);
    let h1 = tokio::spawn(async move { sell(&mut c1, Strategy::NoWait, ITEM, &g1).await.unwrap() });
    // t1: BEGIN; SELECT qty … FOR UPDATE NOWAIT → 10, row locked
    t1.arrived().await;
    // t2: BEGIN; SELECT qty … FOR UPDATE NOWAIT → ERROR 55P03 lock_not_available, no wait
    let mut tx = c2.begin().await.unwrap();
    let err = sqlx::query_scalar::<_, i32>(sql::READ_FOR_UPDATE_NOWAIT)
        .bind(ITEM)
        .fetch_one(&mut *tx)
        .await
        .unwrap_err();
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.to_string());
    assert_eq!(code.as_deref(), Some("55P03"), "{err}");
    tx.rollback().await.unwrap();
    // t1: UPDATE SET qty = 9; COMMIT
    t1.release();
    assert_eq!(h1.await.unwrap(), SOLD);
    assert_eq!(stock(&t).await, 9);
    t.finish().await;
}
