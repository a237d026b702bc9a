//! The anomalies as Postgres runs them. Each test runs a Hermitage script through the
//! interleaving engine and checks the verdict the judge derived from what was observed.

use lab_isolation_levels::anomalies::{Anomaly, Level, Verdict, run_one};
use lab_isolation_levels::interleave::{Interleaving, T1};

async fn engine(t: &labkit::testing::TestCtx) -> Interleaving {
    Interleaving::connect(t.ctx.database_url(), 3)
        .await
        .unwrap()
}

#[tokio::test]
async fn every_anomaly_is_prevented_at_serializable() {
    let t = labkit::testing::ctx("isolation-levels").await;
    let mut e = engine(&t).await;
    for anomaly in Anomaly::ALL {
        let run = run_one(&t.ctx.pg, &mut e, anomaly, Level::Serializable)
            .await
            .unwrap();
        assert!(
            run.verdict.prevented(),
            "{} happened at serializable: {:#?}",
            anomaly.name(),
            run.transcript
        );
    }
    e.close().await;
    t.finish().await;
}

#[tokio::test]
async fn read_committed_loses_an_update() {
    let t = labkit::testing::ctx("isolation-levels").await;
    let mut e = engine(&t).await;
    let run = run_one(&t.ctx.pg, &mut e, Anomaly::P4, Level::ReadCommitted)
        .await
        .unwrap();
    let tr = &run.transcript;
    // t1: BEGIN; SELECT id = 1 → 10        t2: BEGIN; SELECT id = 1 → 10
    // t1: UPDATE id = 1 SET 11 — holds the row lock
    // t2: UPDATE id = 1 SET 11 — BLOCKS (pg_blocking_pids = [t1])
    // t1: COMMIT — t2's update goes through and overwrites t1's committed 11 with its own 11
    let t2_update = tr.step("t2 update").expect("the script names t2's update");
    assert_eq!(tr.record(t2_update).waited_for, vec![T1]);
    assert!(tr.succeeded(t2_update));
    // t2: COMMIT — succeeds; two increments committed and the row says 11: one is lost.
    assert_eq!(run.verdict, Verdict::Happened, "{tr:#?}");
    e.close().await;
    t.finish().await;
}

#[tokio::test]
async fn repeatable_read_turns_the_lost_update_into_a_serialization_failure() {
    let t = labkit::testing::ctx("isolation-levels").await;
    let mut e = engine(&t).await;
    let run = run_one(&t.ctx.pg, &mut e, Anomaly::P4, Level::RepeatableRead)
        .await
        .unwrap();
    // Same script.
    // t2: UPDATE id = 1 SET 11 — BLOCKS (pg_blocking_pids = [t1])
    // t1: COMMIT — t2's update fails with 40001 instead of overwriting a row changed after
    //     t2's snapshot was taken
    let t2_update = run
        .transcript
        .step("t2 update")
        .expect("the script names t2's update");
    assert_eq!(run.transcript.record(t2_update).waited_for, vec![T1]);
    assert_eq!(run.transcript.sqlstate(t2_update), Some("40001"));
    assert_eq!(
        run.verdict,
        Verdict::Aborted {
            sqlstate: "40001".into()
        }
    );
    e.close().await;
    t.finish().await;
}

#[tokio::test]
async fn write_skew_gets_through_read_committed_and_repeatable_read_but_not_serializable() {
    let t = labkit::testing::ctx("isolation-levels").await;
    let mut e = engine(&t).await;
    // T1 and T2 each read both rows, then each updates a different one; no row is written
    // twice, so no lock ever makes them wait.
    for level in [Level::ReadCommitted, Level::RepeatableRead] {
        let run = run_one(&t.ctx.pg, &mut e, Anomaly::G2Item, level)
            .await
            .unwrap();
        assert_eq!(
            run.verdict,
            Verdict::Happened,
            "{level}: {:#?}",
            run.transcript
        );
    }
    // At serializable, SSI sees T1 →rw T2 →rw T1 and refuses the second commit.
    let run = run_one(&t.ctx.pg, &mut e, Anomaly::G2Item, Level::Serializable)
        .await
        .unwrap();
    assert_eq!(
        run.verdict,
        Verdict::Aborted {
            sqlstate: "40001".into()
        },
        "{:#?}",
        run.transcript
    );
    e.close().await;
    t.finish().await;
}

#[tokio::test]
async fn read_uncommitted_never_shows_uncommitted_data_in_postgres() {
    let t = labkit::testing::ctx("isolation-levels").await;
    let mut e = engine(&t).await;
    for anomaly in [Anomaly::G1a, Anomaly::G1b, Anomaly::G1c] {
        let run = run_one(&t.ctx.pg, &mut e, anomaly, Level::ReadUncommitted)
            .await
            .unwrap();
        assert_eq!(run.verdict, Verdict::ConsistentRead, "{}", anomaly.name());
    }
    e.close().await;
    t.finish().await;
}
