//! The whole lab at smoke scale: it runs end to end, keeps its contract (every promised key,
//! latencies with samples), and the statement counts the story rests on hold.

use lab_rest_vs_graphql::RestVsGraphql;

// Multi-threaded like the CLI: the load phase runs clients and server side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_run_keeps_its_contract_and_the_statement_counts_hold() {
    let t = labkit::testing::ctx("rest-vs-graphql").await;
    let report = labkit::testing::smoke_run_keeps_its_contract(&RestVsGraphql, &t).await;
    assert_eq!(report.get("rest_bff_sql_per_screen"), Some(4.0));
    assert_eq!(
        report.get("graphql_naive_sql_per_screen"),
        report.get("graphql_naive_formula_sql_per_screen")
    );
    // DataLoader: one statement per level, at every screen size the chart shows.
    assert_eq!(report.get("graphql_dataloader_sql_per_screen"), Some(5.0));
    assert_eq!(
        report.get("graphql_dataloader_sql_at_100_projects"),
        Some(5.0)
    );
    assert_eq!(report.get("graphql_dataloader_flat"), Some(1.0));
    assert_eq!(
        report.get("deep_query_rejected"),
        Some(1.0),
        "{}",
        report.to_text()
    );
    assert_eq!(
        report.get("alias_bomb_rejected"),
        Some(1.0),
        "{}",
        report.to_text()
    );
    // 100 aliases at smoke scale, 31 statements each when nothing stops them.
    assert_eq!(report.get("alias_bomb_unprotected_naive_sql"), Some(3100.0));
    assert_eq!(report.get("graphql_persisted_get_304"), Some(1.0));
    assert_eq!(report.get("graphql_naive_persisted_get_304"), Some(1.0));
    assert_eq!(
        report.get("graphql_distinct_bodies_for_identical_posts"),
        Some(1.0)
    );
    assert!(!report.charts.is_empty() && !report.sentence.is_empty());
    for phase in &report.phases {
        assert_eq!(phase.errors, 0, "{phase:?}\n{}", report.to_text());
    }
    t.finish().await;
}
