//! Leases, re-delivery, dead letters and the idempotent consumer, as transcripts. The lease
//! "running out" is a step of the script (the job's `visible_at` moved into the past), not a
//! sleep.

use std::time::Duration;

use lab_locking_and_queues::delivery::{
    Completed, Consumer, Failed, Leased, claim, complete, fail,
};
use lab_locking_and_queues::interleave::{NoPause, Point, backend_pid, pause, wait_until_blocked};
use lab_locking_and_queues::schema;
use labkit::testing::TestCtx;
use sqlx::{Connection, PgConnection};

const QUEUE: &str = "payments";
const HOUR: Duration = Duration::from_secs(3600);

async fn setup(t: &TestCtx, jobs: i64) -> (PgConnection, PgConnection) {
    schema::create(&t.ctx.pg).await.unwrap();
    schema::enqueue(&t.ctx.pg, QUEUE, jobs).await.unwrap();
    let url = t.ctx.database_url();
    (
        PgConnection::connect(url).await.unwrap(),
        PgConnection::connect(url).await.unwrap(),
    )
}

/// The lease runs out: as if an hour had passed for every job of the queue.
async fn an_hour_passes(t: &TestCtx) {
    sqlx::query("UPDATE jobs SET visible_at = visible_at - interval '1 hour' WHERE queue = $1")
        .bind(QUEUE)
        .execute(&t.ctx.pg)
        .await
        .unwrap();
}

async fn ledger(t: &TestCtx) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ledger")
        .fetch_one(&t.ctx.pg)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_job_whose_worker_died_is_delivered_again_after_its_lease() {
    let t = labkit::testing::ctx("locking-and-queues").await;
    let (mut w1, mut w2) = setup(&t, 1).await;
    // w1: UPDATE jobs SET visible_at = now() + 1 hour, attempts = 1 … RETURNING — leased
    let first = claim(&mut w1, QUEUE, HOUR).await.unwrap().unwrap();
    assert_eq!(first.attempts, 1);
    // w1 dies: its connection goes away without an ack.
    drop(w1);
    // w2: claim → nothing: the job is invisible until its lease runs out
    assert_eq!(claim(&mut w2, QUEUE, HOUR).await.unwrap(), None);
    an_hour_passes(&t).await;
    // w2: claim → the same job, attempt 2
    let again = claim(&mut w2, QUEUE, HOUR).await.unwrap().unwrap();
    assert_eq!((again.id, again.attempts), (first.id, 2));
    let done = complete(&mut w2, Consumer::Idempotent, &again, 2, &NoPause)
        .await
        .unwrap();
    assert_eq!(done, Completed::Applied);
    assert_eq!(ledger(&t).await, 1);
    t.finish().await;
}

#[tokio::test]
async fn after_max_attempts_a_failing_job_is_in_the_dead_letter_table_with_its_last_error() {
    let t = labkit::testing::ctx("locking-and-queues").await;
    let (mut w1, _) = setup(&t, 1).await;
    let mut outcomes = Vec::new();
    for attempt in 1..=3 {
        // claim → attempt n; the handler fails; retry at once (backoff 0)
        let job: Leased = claim(&mut w1, QUEUE, HOUR).await.unwrap().unwrap();
        assert_eq!(job.attempts, attempt);
        let error = format!("payload rejected (attempt {attempt})");
        outcomes.push(fail(&mut w1, &job, &error, Duration::ZERO).await.unwrap());
    }
    assert_eq!(
        outcomes,
        vec![Failed::RetryLater, Failed::RetryLater, Failed::DeadLettered]
    );
    assert_eq!(claim(&mut w1, QUEUE, HOUR).await.unwrap(), None);
    let (attempts, last_error): (i32, String) =
        sqlx::query_as("SELECT attempts, last_error FROM dead_letter WHERE queue = $1")
            .bind(QUEUE)
            .fetch_one(&t.ctx.pg)
            .await
            .unwrap();
    assert_eq!(attempts, 3);
    assert_eq!(last_error, "payload rejected (attempt 3)");
    t.finish().await;
}

/// w1 leases the job and outlives its lease; w2 gets it again. Both complete it.
async fn two_deliveries_of_one_job(t: &TestCtx, consumer: Consumer) -> (Completed, Completed) {
    let (mut w1, mut w2) = setup(t, 1).await;
    let p1 = backend_pid(&mut w1).await.unwrap();
    let p2 = backend_pid(&mut w2).await.unwrap();
    // w1: claim → attempt 1 (and then it is slow)
    let d1 = claim(&mut w1, QUEUE, HOUR).await.unwrap().unwrap();
    an_hour_passes(t).await;
    // w2: claim → the same job, attempt 2: at-least-once delivery
    let d2 = claim(&mut w2, QUEUE, HOUR).await.unwrap().unwrap();
    assert_eq!((d2.id, d2.attempts), (d1.id, 2));
    let (g1, mut t1) = pause(&[Point::Applied]);
    let h1 = tokio::spawn(async move { complete(&mut w1, consumer, &d1, 1, &g1).await.unwrap() });
    // w1: (idempotent: BEGIN; INSERT processed_keys) INSERT ledger — not acknowledged yet
    t1.arrived().await;
    let h2 =
        tokio::spawn(async move { complete(&mut w2, consumer, &d2, 2, &NoPause).await.unwrap() });
    if consumer == Consumer::Idempotent {
        // w2: BEGIN; INSERT INTO processed_keys … ON CONFLICT DO NOTHING — BLOCKS on w1's
        //     uncommitted key (pg_blocking_pids = [w1])
        assert_eq!(wait_until_blocked(&t.ctx.pg, p2).await.unwrap(), vec![p1]);
    }
    // w1: DELETE job (ack); COMMIT
    t1.release();
    (h1.await.unwrap(), h2.await.unwrap())
}

#[tokio::test]
async fn the_idempotent_consumer_applies_a_redelivered_job_once() {
    let t = labkit::testing::ctx("locking-and-queues").await;
    let (first, second) = two_deliveries_of_one_job(&t, Consumer::Idempotent).await;
    // w2: the key is there once w1 commits: ON CONFLICT DO NOTHING → 0 rows, no side effect
    assert_eq!(
        (first, second),
        (Completed::Applied, Completed::AlreadyApplied)
    );
    assert_eq!(ledger(&t).await, 1);
    t.finish().await;
}

#[tokio::test]
async fn the_naive_consumer_applies_a_redelivered_job_twice() {
    let t = labkit::testing::ctx("locking-and-queues").await;
    let (first, second) = two_deliveries_of_one_job(&t, Consumer::Naive).await;
    // w2: INSERT ledger — nothing remembers that w1 already did
    assert_eq!((first, second), (Completed::Applied, Completed::Applied));
    assert_eq!(ledger(&t).await, 2);
    t.finish().await;
}
