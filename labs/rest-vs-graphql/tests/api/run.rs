//! The whole lab at smoke scale: it runs end to end and reports every contract key.

use labkit::Lab;

// Multi-threaded like the CLI: the load phase runs clients and server side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smoke_run_reports_every_finding_key_the_issue_names() {
    let t = labkit::testing::ctx("rest-vs-graphql").await;
    let report = lab_rest_vs_graphql::RestVsGraphql
        .run(&t.ctx)
        .await
        .unwrap();
    for key in [
        "rest_chatty_sql_per_screen",
        "rest_chatty_http_per_screen",
        "rest_bff_sql_per_screen",
        "graphql_naive_sql_per_screen",
        "graphql_dataloader_sql_per_screen",
        "rest_chatty_p95_ms",
        "rest_bff_p95_ms",
        "graphql_naive_p95_ms",
        "graphql_dataloader_p95_ms",
        "deep_query_rejected",
        "etag_bytes_saved_ratio",
    ] {
        assert!(report.get(key).is_some(), "missing finding `{key}`");
    }
    assert_eq!(report.get("rest_bff_sql_per_screen"), Some(4.0));
    assert_eq!(
        report.get("graphql_naive_sql_per_screen"),
        report.get("graphql_naive_formula_sql_per_screen")
    );
    assert_eq!(
        report.get("deep_query_rejected"),
        Some(1.0),
        "{}",
        report.to_text()
    );
    assert_eq!(report.get("graphql_persisted_get_304"), Some(1.0));
    assert!(!report.charts.is_empty() && !report.sentence.is_empty());
    t.finish().await;
}
