//! The lab's own run, at smoke scale: the report keeps its contract (every finding key the
//! issue names) and the effects the story depends on. Effects only, never timings.

use lab_keyset_pagination::KeysetPagination;
use labkit::Lab;

#[tokio::test]
async fn the_smoke_run_reports_every_contract_key() {
    let t = labkit::testing::ctx("keyset-pagination").await;
    let report = KeysetPagination.run(&t.ctx).await.expect("lab runs");
    let get = |key: &str| {
        report
            .get(key)
            .unwrap_or_else(|| panic!("finding `{key}` missing"))
    };
    // Every key the issue names is there (the JSON contract).
    for key in [
        "offset_p95_ms_page_1",
        "offset_p95_ms_deepest",
        "keyset_p95_ms_page_1",
        "keyset_p95_ms_deepest",
        "deepest_page",
        "offset_buffers_deepest",
        "keyset_buffers_deepest",
        "offset_duplicates_under_writes",
        "offset_misses_under_writes",
        "keyset_duplicates_under_writes",
        "keyset_misses_under_writes",
        "naive_keyset_rows_lost_on_ties",
        "count_exact_ms",
        "count_estimate_ms",
    ] {
        get(key);
    }
    for key in [
        "offset_p95_ms_page_1",
        "offset_p95_ms_deepest",
        "keyset_p95_ms_page_1",
        "keyset_p95_ms_deepest",
        "count_exact_ms",
        "count_estimate_ms",
    ] {
        assert!(get(key) > 0.0, "{key}");
    }
    assert_eq!(get("deepest_page"), 1_000.0, "50,000 rows / 50");
    assert!(get("offset_buffers_deepest") > 50.0 * get("keyset_buffers_deepest"));

    // Writes during the walk: keyset neither repeats nor skips; offset does, exactly as
    // scripted (10 rounds of +3 inserts, 10 rounds of -2 deletes behind the reader).
    assert_eq!(get("keyset_duplicates_under_writes"), 0.0);
    assert_eq!(get("keyset_misses_under_writes"), 0.0);
    assert_eq!(get("scripted_offset_duplicates"), 30.0);
    assert_eq!(get("scripted_offset_misses"), 20.0);
    assert_eq!(get("scripted_keyset_anomalies"), 0.0);

    // Ties: the created_at-only cursor loses rows, the tie-broken one none.
    assert!(get("naive_keyset_rows_lost_on_ties") > 0.0);
    assert_eq!(get("tiebroken_keyset_rows_lost_on_ties"), 0.0);

    assert!(!report.sentence.is_empty());
    assert_eq!(report.charts.len(), 1);
    t.finish().await;
}
