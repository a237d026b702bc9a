//! Claiming jobs, as transcripts: two workers on their own connections, the interleaving
//! forced with pause points and observed through `pg_blocking_pids`.

use std::time::Duration;

use lab_locking_and_queues::interleave::{NoPause, Point, backend_pid, pause, wait_until_blocked};
use lab_locking_and_queues::queue::{ClaimMode, QUEUE, double_processed, process_one};
use lab_locking_and_queues::schema;
use labkit::testing::TestCtx;
use sqlx::{Connection, PgConnection};

/// Two queued jobs (ids 1 and 2) and two worker sessions.
async fn setup(t: &TestCtx) -> (PgConnection, PgConnection) {
    schema::create(&t.ctx.pg).await.unwrap();
    schema::enqueue(&t.ctx.pg, QUEUE, 2).await.unwrap();
    let url = t.ctx.database_url();
    (
        PgConnection::connect(url).await.unwrap(),
        PgConnection::connect(url).await.unwrap(),
    )
}

async fn effects(t: &TestCtx) -> Vec<(i64, i32)> {
    sqlx::query_as("SELECT job_id, worker FROM job_effects ORDER BY job_id, worker")
        .fetch_all(&t.ctx.pg)
        .await
        .unwrap()
}

#[tokio::test]
async fn two_skip_locked_workers_never_claim_the_same_job() {
    let t = labkit::testing::ctx("locking-and-queues").await;
    let (mut w1, mut w2) = setup(&t).await;
    let (g1, mut t1) = pause(&[Point::Claimed]);
    let mode = ClaimMode::SkipLocked;
    let h1 = tokio::spawn(async move {
        process_one(&mut w1, mode, QUEUE, 1, Duration::ZERO, &g1)
            .await
            .unwrap()
    });
    // w1: BEGIN; SELECT … FOR UPDATE SKIP LOCKED → job 1, locked, work not started
    t1.arrived().await;
    // w2: BEGIN; SELECT … FOR UPDATE SKIP LOCKED → job 2 (job 1 is skipped, not waited for);
    //     work; DELETE; COMMIT — all while w1 still holds job 1
    let got = process_one(&mut w2, mode, QUEUE, 2, Duration::ZERO, &NoPause)
        .await
        .unwrap();
    assert_eq!(got, Some(2));
    // w1: work; DELETE; COMMIT
    t1.release();
    assert_eq!(h1.await.unwrap(), Some(1));
    assert_eq!(effects(&t).await, vec![(1, 1), (2, 2)]);
    assert_eq!(double_processed(&t.ctx.pg).await.unwrap(), 0);
    t.finish().await;
}

#[tokio::test]
async fn without_a_lock_two_workers_process_the_same_job() {
    let t = labkit::testing::ctx("locking-and-queues").await;
    let (mut w1, mut w2) = setup(&t).await;
    let (g1, mut t1) = pause(&[Point::Claimed]);
    let (g2, mut t2) = pause(&[Point::Claimed]);
    let mode = ClaimMode::NoLock;
    let h1 = tokio::spawn(async move {
        process_one(&mut w1, mode, QUEUE, 1, Duration::ZERO, &g1)
            .await
            .unwrap()
    });
    // w1: SELECT … LIMIT 1 → job 1 (no lock taken)
    t1.arrived().await;
    let h2 = tokio::spawn(async move {
        process_one(&mut w2, mode, QUEUE, 2, Duration::ZERO, &g2)
            .await
            .unwrap()
    });
    // w2: SELECT … LIMIT 1 → job 1 as well
    t2.arrived().await;
    // w1: INSERT job_effects; DELETE job 1
    t1.release();
    assert_eq!(h1.await.unwrap(), Some(1));
    // w2: INSERT job_effects (again); DELETE job 1 (0 rows)
    t2.release();
    assert_eq!(h2.await.unwrap(), Some(1));
    assert_eq!(effects(&t).await, vec![(1, 1), (1, 2)]);
    assert_eq!(double_processed(&t.ctx.pg).await.unwrap(), 1);
    t.finish().await;
}

#[tokio::test]
async fn with_for_update_the_second_worker_waits_for_the_first_workers_job() {
    let t = labkit::testing::ctx("locking-and-queues").await;
    let (mut w1, mut w2) = setup(&t).await;
    let p1 = backend_pid(&mut w1).await.unwrap();
    let p2 = backend_pid(&mut w2).await.unwrap();
    let (g1, mut t1) = pause(&[Point::Claimed]);
    let mode = ClaimMode::ForUpdate;
    let h1 = tokio::spawn(async move {
        process_one(&mut w1, mode, QUEUE, 1, Duration::ZERO, &g1)
            .await
            .unwrap()
    });
    // w1: BEGIN; SELECT … FOR UPDATE → job 1, locked
    t1.arrived().await;
    // w2: BEGIN; SELECT … FOR UPDATE — wants the oldest job too: BLOCKS (pg_blocking_pids = [w1])
    let h2 = tokio::spawn(async move {
        process_one(&mut w2, mode, QUEUE, 2, Duration::ZERO, &NoPause)
            .await
            .unwrap()
    });
    assert_eq!(wait_until_blocked(&t.ctx.pg, p2).await.unwrap(), vec![p1]);
    // w1: work; DELETE job 1; COMMIT — w2 finds job 1 gone and takes the next row, job 2
    t1.release();
    assert_eq!(h1.await.unwrap(), Some(1));
    assert_eq!(h2.await.unwrap(), Some(2));
    assert_eq!(double_processed(&t.ctx.pg).await.unwrap(), 0);
    t.finish().await;
}
