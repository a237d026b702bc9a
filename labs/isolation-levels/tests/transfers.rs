//! The transfer workload and the deadlock: the books balance when the read-modify-write is
//! protected, and two transfers deadlock only when they lock rows in opposite order.

use lab_isolation_levels::Workload;
use lab_isolation_levels::deadlock;
use lab_isolation_levels::interleave::{Interleaving, StepId, T1, T2};
use lab_isolation_levels::transfers::{self, Mode, Picker};

#[tokio::test]
async fn the_books_balance_with_for_update_and_with_serializable_retries() {
    let t = labkit::testing::ctx("isolation-levels").await;
    let w = Workload::for_scale(t.ctx.scale);
    transfers::setup(&t.ctx.pg, w.accounts, t.ctx.seed)
        .await
        .unwrap();
    let (pool, _) = transfers::pool(t.ctx.database_url(), w.workers as u32)
        .await
        .unwrap();
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
    // T1 holds row 1 and waits for row 2; T2 holds row 2 and waits for row 1.
    let (t1_credit, t2_credit) = (StepId(4), StepId(5));
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
    // T2 asks for row 1 first too, so it simply waits for T1 ...
    let t2_first_lock = StepId(3);
    assert_eq!(tr.record(t2_first_lock).waited_for, vec![T1]);
    // ... and both transfers commit; 1 → 2 and 2 → 1 of 5 each cancel out.
    assert_eq!(run.deadlocks, 0, "{tr:#?}");
    assert_eq!(run.committed, 2, "{tr:#?}");
    let fin = StepId(tr.records.len() - 1);
    assert_eq!(tr.rows(fin), Some(&[(1, 10), (2, 20)][..]));
    e.close().await;
    t.finish().await;
}
