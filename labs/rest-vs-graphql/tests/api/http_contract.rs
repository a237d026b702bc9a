//! The HTTP contract: ETags and 304s, JSON errors with the right status, GraphQL over HTTP
//! status codes, persisted queries by GET.

use lab_rest_vs_graphql::screen::{DASHBOARD_QUERY, Screen};
use sha2::{Digest, Sha256};

use crate::helpers::spawn_app;

#[tokio::test]
async fn if_none_match_with_the_current_etag_is_a_bodiless_304() {
    let app = spawn_app().await;
    for path in [
        "/v1/users/1",
        "/v1/projects/1/tasks",
        "/v1/dashboard?projects=3",
    ] {
        // t1: first GET → 200, body, ETag, Cache-Control: no-cache
        let first = app.http().get(app.url(path)).send().await.unwrap();
        assert_eq!(first.status(), 200, "{path}");
        assert_eq!(first.headers()["cache-control"], "no-cache");
        let etag = first.headers()["etag"].to_str().unwrap().to_string();
        // t2: same GET with If-None-Match: that tag → 304, same tag, empty body
        let again = app
            .http()
            .get(app.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"], etag.as_str());
        assert!(again.bytes().await.unwrap().is_empty());
        // t3: a stale tag → 200 with the body again
        let stale = app
            .http()
            .get(app.url(path))
            .header("if-none-match", "\"something-else\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 200, "{path}");
    }
    app.finish().await;
}

#[tokio::test]
async fn a_changed_resource_gets_a_new_etag_and_a_full_response() {
    let app = spawn_app().await;
    let path = "/v1/projects/1/tasks?limit=5";
    let first = app.http().get(app.url(path)).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    // Someone renames the project's newest task.
    sqlx::query(
        "UPDATE tasks SET title = 'renamed' WHERE id = (SELECT max(id) FROM tasks WHERE project_id = 1)",
    )
    .execute(&app.t.ctx.pg)
    .await
    .unwrap();
    let after = app
        .http()
        .get(app.url(path))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200);
    assert_ne!(after.headers()["etag"], etag.as_str());
    let tasks: serde_json::Value = after.json().await.unwrap();
    assert_eq!(tasks[0]["title"], "renamed");
    app.finish().await;
}

#[tokio::test]
async fn unknown_ids_and_bad_input_are_json_errors_with_the_right_status() {
    let app = spawn_app().await;
    let cases = [
        ("/v1/users/999999", 404, "not_found"),
        ("/v1/projects/999999", 404, "not_found"),
        ("/v1/projects/999999/tasks", 404, "not_found"),
        ("/v1/tasks/999999/comments", 404, "not_found"),
        ("/v1/users/abc", 400, "invalid_id"),
        ("/v1/users/-1", 400, "invalid_id"),
        ("/v1/projects?limit=abc", 400, "invalid_query_parameter"),
        ("/v1/projects?limit=0", 400, "invalid_query_parameter"),
        ("/v1/dashboard?projects=101", 400, "invalid_query_parameter"),
        ("/v1/nothing-here", 404, "no_route"),
    ];
    for (path, status, code) in cases {
        let r = app.http().get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert!(body["error"]["message"].is_string(), "{path}");
    }
    let r = app
        .http()
        .delete(app.url("/v1/users/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    app.finish().await;
}

#[tokio::test]
async fn malformed_graphql_gets_a_graphql_over_http_error_never_a_500() {
    let app = spawn_app().await;
    let post = |accept: &'static str, content_type: &'static str, body: String| {
        app.http()
            .post(app.url("/graphql"))
            .header("accept", accept)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let new = "application/graphql-response+json";
    let legacy = "application/json";
    let syntax_error = serde_json::json!({ "query": "{ projects(first: 1) { id " }).to_string();
    let unknown_field = serde_json::json!({ "query": "{ projects { salary } }" }).to_string();

    // A GraphQL request error (nothing executed): 400 under the new media type ...
    for body in [&syntax_error, &unknown_field] {
        let r = post(new, "application/json", body.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(new)
        );
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v.get("data").is_none(), "{v}");
        assert!(v["errors"][0]["message"].is_string(), "{v}");
    }
    // ... and 200 with `errors` under legacy application/json.
    let r = post(legacy, "application/json", syntax_error.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["errors"][0]["message"].is_string(), "{v}");

    // Not a GraphQL request at all: 4xx whatever the Accept header.
    for accept in [new, legacy] {
        let r = post(accept, "application/json", "{not json".into())
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_REQUEST");

        let r = post(accept, "text/plain", syntax_error.clone())
            .await
            .unwrap();
        assert_eq!(r.status(), 415);

        let huge = serde_json::json!({ "query": "x".repeat(100_000) }).to_string();
        let r = post(accept, "application/json", huge).await.unwrap();
        assert_eq!(r.status(), 413);
    }
    let r = app
        .http()
        .get(app.url("/graphql?query=%7B%20projects%20%7B%20id%20%7D%20%7D&variables=%7Bnope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "unparsable variables in a GET");
    app.finish().await;
}

#[tokio::test]
async fn a_persisted_query_is_served_by_hash_over_get_and_revalidates_to_304() {
    let app = spawn_app().await;
    let hash = format!("{:x}", Sha256::digest(DASHBOARD_QUERY.as_bytes()));
    let extensions =
        serde_json::json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } }).to_string();
    let variables = Screen::dashboard(3).variables().to_string();
    let by_hash = reqwest::Url::parse_with_params(
        &app.url("/graphql"),
        &[("variables", &variables), ("extensions", &extensions)],
    )
    .unwrap();

    // t1: the hash alone, before anyone sent the text → PersistedQueryNotFound, nothing run
    app.sql.take();
    let r = app.http().get(by_hash.clone()).send().await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(app.sql.take(), 0);

    // t2: the text with its hash registers it (and answers)
    let register = reqwest::Url::parse_with_params(
        &app.url("/graphql"),
        &[
            ("query", DASHBOARD_QUERY),
            ("variables", &variables),
            ("extensions", &extensions),
        ],
    )
    .unwrap();
    let r = app.http().get(register).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // t3: the hash alone now works, as a cacheable GET with an ETag
    let r = app.http().get(by_hash.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["data"]["projects"].as_array().unwrap().len(), 3);

    // t4: revalidation → 304, no body
    let r = app
        .http()
        .get(by_hash)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let new_etag = r.headers().get("etag").cloned();
    let body = r.bytes().await.unwrap();
    assert_eq!(
        status,
        304,
        "sent If-None-Match {etag}, got ETag {new_etag:?} and body {}",
        String::from_utf8_lossy(&body)
    );
    assert!(body.is_empty());
    app.finish().await;
}

#[tokio::test]
async fn a_plain_get_on_the_graphql_endpoint_serves_graphiql() {
    let app = spawn_app().await;
    let r = app.http().get(app.url("/graphql")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("graphiql"));
    app.finish().await;
}
