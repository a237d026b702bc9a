//! The whole lab at smoke scale: it runs, its report carries every promised key, and the
//! numbers that are invariants (not timings) hold.

use lab_locking_and_queues::LockingAndQueues;

#[tokio::test]
async fn a_smoke_run_keeps_its_contract_and_the_fixes_hold() {
    let t = labkit::testing::ctx("locking-and-queues").await;
    let report = labkit::testing::smoke_run_keeps_its_contract(&LockingAndQueues, &t).await;
    // The fixes are exact, whatever the machine's speed.
    for key in [
        "lost_updates_atomic_update",
        "lost_updates_optimistic",
        "lost_updates_pessimistic",
        "lost_updates_nowait",
        "for_update_double_processed_jobs",
        "skip_locked_double_processed_jobs",
        "duplicate_side_effects_idempotent_consumer",
        "lost_jobs",
    ] {
        assert_eq!(report.get(key), Some(0.0), "{key}");
    }
    // The failures were really injected: crashes re-delivered, poison dead-lettered.
    assert!(report.get("redelivered_after_crash").unwrap() > 0.0);
    assert!(report.get("dead_lettered_jobs").unwrap() > 0.0);
    assert!(report.get("long_tx_unremovable_after_vacuum").unwrap() > 0.0);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert!(!report.sentence.is_empty());
    assert_eq!(report.charts.len(), 6);
    t.finish().await;
}
