//! The whole lab at smoke scale: it runs, its report carries every promised key, and the
//! numbers that are invariants (not timings) hold.

use lab_locking_and_queues::{FINDING_KEYS, LockingAndQueues};
use labkit::{RunOptions, Scale};

#[tokio::test]
async fn a_smoke_run_reports_every_promised_key_and_the_fixes_hold() {
    let t = labkit::testing::ctx("locking-and-queues").await;
    let outcome = labkit::run_lab(
        &LockingAndQueues,
        &t.backends,
        RunOptions {
            scale: Scale::Smoke,
            ..RunOptions::default()
        },
    )
    .await
    .expect("lab run");
    let report = outcome.report;
    for key in FINDING_KEYS {
        let f = report
            .finding_by_key(key)
            .unwrap_or_else(|| panic!("missing {key}"));
        assert!(f.value.is_finite(), "{key} = {}", f.value);
        if f.unit == "ms" {
            assert!(f.samples.is_some_and(|n| n > 0), "{key} has no samples");
        }
    }
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
