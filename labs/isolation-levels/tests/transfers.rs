//! The transfer workload and the deadlock: the books balance when the read-modify-write is
//! protected, and two transfers deadlock only when they lock rows in opposite order.

use lab_isolation_levels::Workload;
use lab_isolation_levels::deadlock;
use lab_isolation_levels::interleave::{Interleaving, T1, T2};
use lab_isolation_levels::transfers::{self, Mode, Picker};

#[tokio::test]
async fn the_books_balance_with_for_update_and_with_serializable_retries() {
    let t = labkit::testing::ctx("isolation-levels").await;
    let w = Workload::for_scale(t.ctx.scale);
    transfers::setup(&t.ctx.pg, w.accounts, t.ctx.seed)
        .await
        .unwrap();
    let (pool, _) = transfers::pool(&t.ctx, w.workers as u32).await.unwrap();
    let picker = Picker::new(w.accounts, w.skew, t.ctx.seed);
    for mode in [Mode::ForUpdate, Mode::Serializable] {
        let run = transfers::run_mode(&pool, mode, picker, w.transfers, w.workers)
            .await
            .unwrap();
        let c = run.counts;
        assert_eq!(c.committed + c.declined, w.transfers, "{mode:?}: {c:?}");
        assert_eq!(c.failed(), 0, "{mode:?}: {c:?}");
        assert_eq!(run.books.violations, 0, "{mode:?}: {:?}", run.books);
        assert_eq!(run.books.drift, 0, "{mode:?}: {:?}", run.books);
        if mode == Mode::ForUpdate {
            // Lower id first: every transfer takes its locks in the same order.
            assert_eq!(c.deadlocks(), 0);
        }
    }
    pool.close().await;
    t.finish().await;
}

#[tokio::test]
async fn opposite_lock_order_deadlocks_and_postgres_aborts_one_transfer_with_40p01() {
    let t = labkit::testing::ctx("isolation-levels").await;
    let mut e = Interleaving::connect(t.ctx.database_url(), 3)
        .await
        .unwrap();
    let _ = e.on_every_session(deadlock::LOWER_DEADLOCK_TIMEOUT).await;
    let run = deadlock::run(&t.ctx.pg, &mut e, &deadlock::opposite_order())
        .await
        .unwrap();
    let tr = &run.transcript;
    // t1: BEGIN; UPDATE id = 1 (debit) — holds row 1
    // t2: BEGIN; UPDATE id = 2 (debit) — holds row 2
    // t1: UPDATE id = 2 (credit) — BLOCKS (pg_blocking_pids = [t2])
    // t2: UPDATE id = 1 (credit) — BLOCKS (pg_blocking_pids = [t1]): a cycle
    let step = |name| tr.step(name).unwrap_or_else(|| panic!("no step {name}"));
    let (t1_credit, t2_credit) = (step("t1 credit"), step("t2 credit"));
    assert_eq!(tr.record(t1_credit).waited_for, vec![T2]);
    assert_eq!(tr.record(t2_credit).waited_for, vec![T1]);
    // The detector broke the cycle: exactly one of them got 40P01, the other committed.
    assert_eq!(run.deadlocks, 1, "{tr:#?}");
    assert_eq!(run.committed, 1, "{tr:#?}");
    let aborted = [t1_credit, t2_credit]
        .into_iter()
        .filter(|s| tr.sqlstate(*s) == Some("40P01"))
        .count();
    assert_eq!(aborted, 1);
    e.close().await;
    t.finish().await;
}

#[tokio::test]
async fn locking_the_lower_id_first_has_no_deadlock() {
    let t = labkit::testing::ctx("isolation-levels").await;
    let mut e = Interleaving::connect(t.ctx.database_url(), 3)
        .await
        .unwrap();
    let run = deadlock::run(&t.ctx.pg, &mut e, &deadlock::lower_id_first())
        .await
        .unwrap();
    let tr = &run.transcript;
    let step = |name| tr.step(name).unwrap_or_else(|| panic!("no step {name}"));
    // t1 (1 → 2): BEGIN; SELECT id = 1 FOR UPDATE — holds row 1
    // t2 (2 → 1): BEGIN; SELECT id = 1 FOR UPDATE — BLOCKS (pg_blocking_pids = [t1]), holding
    //     nothing, so no cycle can form
    assert_eq!(tr.record(step("t2 locks row 1")).waited_for, vec![T1]);
    // t1: locks row 2, moves 5, COMMIT — t2 gets row 1, then row 2, moves 5 back, COMMIT
    assert_eq!(run.deadlocks, 0, "{tr:#?}");
    assert_eq!(run.committed, 2, "{tr:#?}");
    // t3: SELECT * — 1 → 2 and 2 → 1 of 5 each cancel out
    assert_eq!(tr.rows(step("final")), Some(&[(1, 10), (2, 20)][..]));
    e.close().await;
    t.finish().await;
}
