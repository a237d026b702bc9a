//! The interleaving engine on its own: a step that waits on a lock is detected (through
//! `pg_blocking_pids`, not a timeout), the script moves on to the other transaction, and the
//! waiting step is recorded as finishing after the step that released its lock.

use lab_isolation_levels::anomalies::reset_table;
use lab_isolation_levels::interleave::{Interleaving, Outcome, Script, T1, T2};

#[tokio::test]
async fn a_step_waiting_on_a_row_lock_is_reported_blocked_and_resumes_when_the_holder_commits() {
    let t = labkit::testing::ctx("isolation-levels").await;
    reset_table(&t.ctx.pg).await.unwrap(); // test = {1 → 10, 2 → 20}
    let mut engine = Interleaving::connect(t.ctx.database_url(), 2)
        .await
        .unwrap();

    let mut s = Script::new();
    s.step(T1, "begin");
    s.step(T2, "begin");
    let t1_write = s.step(T1, "update test set value = 11 where id = 1 returning *"); // T1 holds row 1
    let t2_write = s.step(T2, "update test set value = 12 where id = 1 returning *"); // T2 waits for T1
    let t1_read = s.step(T1, "select * from test where id = 2"); // T1 goes on meanwhile
    let t1_commit = s.step(T1, "commit"); // releases row 1: T2's update finishes
    let t2_commit = s.step(T2, "commit");
    let fin = s.step(T1, "select * from test where id = 1");
    let tr = engine.run(&s).await.unwrap();

    // T1's own statements never waited.
    assert!(!tr.record(t1_write).waited());
    assert_eq!(tr.rows(t1_read), Some(&[(2, 20)][..]));
    // T2's update was seen waiting for T1, and finished once T1's COMMIT had been sent.
    let waited = tr.record(t2_write);
    assert_eq!(waited.waited_for, vec![T1]);
    assert_eq!(waited.finished_after, Some(t1_commit));
    assert_eq!(waited.outcome, Outcome::Rows(vec![(1, 12)]));
    assert!(tr.succeeded(t2_commit));
    // T2 wrote last.
    assert_eq!(tr.rows(fin), Some(&[(1, 12)][..]));

    engine.close().await;
    t.finish().await;
}

#[tokio::test]
async fn after_a_failed_statement_the_engine_skips_the_rest_of_that_transaction_and_rolls_it_back()
{
    let t = labkit::testing::ctx("isolation-levels").await;
    reset_table(&t.ctx.pg).await.unwrap();
    let mut engine = Interleaving::connect(t.ctx.database_url(), 2)
        .await
        .unwrap();

    let mut s = Script::new();
    s.step(T1, "begin");
    let bad = s.step(
        T1,
        "insert into test (id, value) values (1, 99) returning *",
    ); // duplicate key
    let after = s.step(T1, "select * from test");
    let end = s.step(T1, "commit");
    let next = s.step(T2, "select * from test order by id"); // a fresh session sees the old rows
    let tr = engine.run(&s).await.unwrap();

    assert_eq!(tr.sqlstate(bad), Some("23505"));
    assert_eq!(tr.record(after).outcome, Outcome::Skipped);
    assert_eq!(tr.record(end).outcome, Outcome::RolledBack);
    assert_eq!(tr.rows(next), Some(&[(1, 10), (2, 20)][..]));

    // The engine left T1 idle: the next script can begin a transaction there.
    let mut again = Script::new();
    let begin = again.step(T1, "begin");
    again.step(T1, "commit");
    let tr = engine.run(&again).await.unwrap();
    assert!(tr.succeeded(begin));

    engine.close().await;
    t.finish().await;
}
