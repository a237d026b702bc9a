//! The whole lab at smoke scale: it runs, its report carries every promised key, and the
//! numbers that are invariants (not timings) hold.

use lab_load_shedding::LoadShedding;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_run_keeps_its_contract_and_the_invariants_hold() {
    let t = labkit::testing::ctx("load-shedding").await;
    let report = labkit::testing::smoke_run_keeps_its_contract(&LoadShedding, &t).await;
    // Whatever the machine's speed: every 503 from the shed layer says when to retry, and
    // no request that the deadline queue dropped ran a statement.
    assert_eq!(report.get("shed_503_without_retry_after"), Some(0.0));
    assert_eq!(report.get("deadline_statements_for_uncompleted"), Some(0.0));
    assert!(!report.sentence.is_empty());
    assert_eq!(report.charts.len(), 2);
    t.finish().await;
}
