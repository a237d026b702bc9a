//! Query limits: the server prices a client-written query before running it.

use lab_rest_vs_graphql::limits::{alias_bomb, nested_query};
use lab_rest_vs_graphql::screen::{DASHBOARD_QUERY, Screen};

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_query_nested_past_the_depth_limit_is_rejected_before_any_sql_runs() {
    let app = spawn_app().await;
    app.sql.take();
    // task → assignee → assignedTasks → comments → author → assignedTasks: depth 8.
    let (status, body) = app.graphql("/graphql", &nested_query(10)).await;
    assert_eq!(
        status, 400,
        "a request error under application/graphql-response+json"
    );
    assert!(
        body.get("data").is_none(),
        "nothing executed, so no data entry: {body}"
    );
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "DEPTH_LIMIT_EXCEEDED");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("query depth 8 exceeds the limit of 6"),
        "says why: {message}"
    );
    assert_eq!(app.sql.take(), 0, "rejected before execution");
    // The naive endpoint shares the schema, so the same guard.
    let (status, _) = app.graphql("/graphql/naive", &nested_query(10)).await;
    assert_eq!(status, 400);
    assert_eq!(app.sql.take(), 0);
    app.finish().await;
}

#[tokio::test]
async fn a_shallow_query_that_fans_out_too_wide_is_rejected_by_complexity() {
    let app = spawn_app().await;
    app.sql.take();
    // Depth 4, within the depth limit, but 100 × 100 × 100 comments: each list costs a
    // statement (10) plus `first` × one item, 10 + 100 × (10 + 100 × (10 + 100 × 1)).
    let wide = "{ projects(first: 100) { tasks(first: 100) { comments(first: 100) { id } } } }";
    let (status, body) = app.graphql("/graphql", wide).await;
    assert_eq!(status, 400);
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "COMPLEXITY_LIMIT_EXCEEDED");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("query complexity 1101010 exceeds the limit of 75000"),
        "says why: {message}"
    );
    assert_eq!(app.sql.take(), 0, "rejected before execution");
    app.finish().await;
}

#[tokio::test]
async fn eight_hundred_aliases_three_deep_are_rejected_by_their_cost_before_any_sql_runs() {
    let app = spawn_app().await;
    // What an outside client sent: 42 KB, depth 3, 24 800 statements on naive resolvers.
    let bomb = alias_bomb(800);
    assert!(bomb.len() > 40_000, "{} bytes", bomb.len());
    for path in ["/graphql/naive", "/graphql"] {
        app.sql.take();
        let (status, body) = app.graphql(path, &bomb).await;
        assert_eq!(status, 400, "{path}");
        assert!(body.get("data").is_none(), "{path}: nothing executed");
        let errors = body["errors"].as_array().unwrap();
        // Depth does not see it; only the cost does: 800 × (10 + 30 × (10 + 1)).
        assert_eq!(errors.len(), 1, "{path}: {body}");
        assert_eq!(errors[0]["extensions"]["code"], "COMPLEXITY_LIMIT_EXCEEDED");
        let message = errors[0]["message"].as_str().unwrap();
        assert!(
            message.contains("query complexity 272000 exceeds the limit of 75000"),
            "{path}: {message}"
        );
        assert_eq!(app.sql.take(), 0, "{path}: rejected before execution");
    }
    // The cost bounds statements: 200 aliases cost 68 000 and pass, running 31 each.
    app.sql.take();
    let (status, body) = app.graphql("/graphql/naive", &alias_bomb(200)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    let statements = app.sql.take();
    assert_eq!(statements, 200 * 31);
    assert!(statements <= 75_000 / 10);
    app.finish().await;
}

#[tokio::test]
async fn the_largest_dashboard_fits_within_the_limits() {
    let app = spawn_app().await;
    let r = app
        .http()
        .post(app.url("/graphql"))
        .json(&serde_json::json!({
            "query": DASHBOARD_QUERY,
            "variables": Screen::dashboard(100).variables(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["projects"].as_array().unwrap().len(), 100);
    app.finish().await;
}

#[tokio::test]
async fn a_page_of_a_thousand_is_rejected_not_capped_in_graphql_and_rest() {
    let app = spawn_app().await;
    app.sql.take();
    let (status, body) = app
        .graphql("/graphql", "{ projects(first: 1000) { id } }")
        .await;
    // A field error (the argument fails its validator): 200 with data null and the reason.
    assert_eq!(status, 200);
    assert!(body["data"].is_null(), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("must be less than or equal to 100"),
        "says why: {message}"
    );
    assert_eq!(app.sql.take(), 0, "no statement for a rejected page");

    let r = app
        .http()
        .get(app.url("/v1/projects?limit=1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_query_parameter");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("between 1 and 100")
    );
    app.finish().await;
}
