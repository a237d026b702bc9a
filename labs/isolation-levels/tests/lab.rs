//! The whole lab at smoke scale: it runs, and its report carries every contracted key.

use lab_isolation_levels::IsolationLevels;
use lab_isolation_levels::anomalies::{Anomaly, Level};
use labkit::Lab;

#[tokio::test]
async fn the_report_has_a_verdict_for_every_anomaly_at_every_level_and_the_transfer_numbers() {
    let t = labkit::testing::ctx("isolation-levels").await;
    let report = IsolationLevels.run(&t.ctx).await.unwrap();
    for anomaly in Anomaly::ALL {
        for level in Level::ALL {
            let v = report.get(&anomaly.finding_key(level)).unwrap();
            assert!(v == 0.0 || v == 1.0);
        }
        // Serializable prevented every one of them.
        assert_eq!(
            report.get(&anomaly.finding_key(Level::Serializable)),
            Some(0.0)
        );
    }
    for key in [
        "transfer_invariant_violations_read_committed",
        "serializable_retries_per_commit",
        "for_update_p95_ms",
        "serializable_p95_ms",
        "deadlocks_detected",
    ] {
        assert!(report.get(key).is_some(), "{key}");
    }
    assert_eq!(
        report.get("transfer_invariant_violations_serializable"),
        Some(0.0)
    );
    assert_eq!(
        report.get("transfer_invariant_violations_for_update"),
        Some(0.0)
    );
    assert_eq!(report.get("deadlocks_with_lock_ordering"), Some(0.0));
    assert_eq!(report.get("deadlock_script_opposite_order"), Some(1.0));
    assert_eq!(report.get("deadlock_script_lower_id_first"), Some(0.0));
    // Transcripts are in the Markdown.
    let md = report.to_markdown();
    assert!(md.contains("Transcript: G2-item write skew"));
    assert!(md.contains("BLOCKED (waits for T1)"));
    t.finish().await;
}
