//! The xmin horizon, deterministically: the dead row versions a queue leaves behind cannot be
//! removed while one old snapshot is open, and can the moment it ends.

use std::time::Duration;

use lab_locking_and_queues::horizon::{self, LongTransaction};
use lab_locking_and_queues::interleave::NoPause;
use lab_locking_and_queues::queue::{ClaimMode, process_one};
use lab_locking_and_queues::schema;
use sqlx::{Connection, PgConnection};

const JOBS: i64 = 1_000;

#[tokio::test]
async fn while_a_transaction_holds_the_horizon_vacuum_cannot_remove_the_queues_dead_tuples() {
    let t = labkit::testing::ctx("locking-and-queues").await;
    let pool = &t.ctx.pg;
    schema::create(pool).await.unwrap();
    schema::enqueue(pool, horizon::QUEUE, JOBS).await.unwrap();
    sqlx::query("VACUUM ANALYZE jobs")
        .execute(pool)
        .await
        .unwrap();
    let before = horizon::explain_claim(pool).await.unwrap().buffers();

    // report: BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM jobs — then idles
    let report = LongTransaction::open(t.ctx.database_url()).await.unwrap();
    assert!(report.backend_xmin(pool).await.unwrap().is_some());

    // worker: every job claimed, worked and deleted (each one a dead row version)
    let mut worker = PgConnection::connect(t.ctx.database_url()).await.unwrap();
    let mut done = 0;
    while process_one(
        &mut worker,
        ClaimMode::SkipLocked,
        horizon::QUEUE,
        1,
        Duration::ZERO,
        &NoPause,
    )
    .await
    .unwrap()
    .is_some()
    {
        done += 1;
    }
    assert_eq!(done, JOBS);
    // Statistics are asynchronous: make the worker's counts land before VACUUM reads them.
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut worker)
        .await
        .unwrap();
    sqlx::query("SELECT 1").execute(&mut worker).await.unwrap();

    // VACUUM jobs → every deleted version is "dead but not yet removable"
    let stuck = horizon::vacuum_and_count_dead(pool).await.unwrap();
    assert!(stuck >= JOBS, "n_dead_tup after VACUUM = {stuck}");
    // The (now empty) queue's claim walks every dead index entry and visits the heap page of
    // each (buffers count pages: ~1,000 dead entries span a few index and heap pages).
    let held = horizon::explain_claim(pool).await.unwrap().buffers();
    assert!(held > before * 3, "claim buffers {before} → {held}");

    // report: COMMIT — the horizon moves on
    report.end().await.unwrap();
    // VACUUM jobs → all of them removed
    assert_eq!(horizon::vacuum_and_count_dead(pool).await.unwrap(), 0);
    let after = horizon::explain_claim(pool).await.unwrap().buffers();
    assert!(
        after * 3 < held,
        "claim buffers {held} → {after} after VACUUM"
    );
    worker.close().await.unwrap();
    t.finish().await;
}
