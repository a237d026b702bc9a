//! The whole lab at smoke scale: it runs, its report carries every promised key, and the
//! numbers that are invariants (not timings) hold.

use lab_idempotency_keys::IdempotencyKeys;

#[tokio::test]
async fn a_smoke_run_keeps_its_contract_and_charges_exactly_once() {
    let t = labkit::testing::ctx("idempotency-keys").await;
    let report = labkit::testing::smoke_run_keeps_its_contract(&IdempotencyKeys, &t).await;
    // Exactly once, whatever the machine's speed.
    for (key, want) in [
        ("guarded_charges", 1.0),
        ("crash_retry_charges", 1.0),
        ("guarded_non_conforming_responses", 0.0),
        ("webhook_rows_after_redelivery", 1.0),
        ("webhook_fulfillments_after_redelivery", 1.0),
        ("bad_input_5xx_responses", 0.0),
        ("bad_input_unexpected_responses", 0.0),
        ("bad_input_side_effects", 0.0),
        ("first_request_sql_statements", 7.0),
        ("replay_sql_statements", 2.0),
    ] {
        assert_eq!(report.get(key), Some(want), "{key}");
    }
    // The bugs really showed.
    assert!(report.get("naive_race_bursts_with_double_charge").unwrap() >= 1.0);
    assert_eq!(
        report.get("bad_input_requests"),
        Some(lab_idempotency_keys::bad_input::corpus().len() as f64)
    );
    assert!(!report.sentence.is_empty());
    t.finish().await;
}
