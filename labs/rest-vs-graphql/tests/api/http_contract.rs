//! The HTTP contract: ETags and 304s, JSON errors with the right status, GraphQL over HTTP
//! status codes, persisted queries by GET.

use lab_rest_vs_graphql::client::Approach;
use lab_rest_vs_graphql::limits::{alias_bomb, nested_query};
use lab_rest_vs_graphql::screen::{DASHBOARD_QUERY, Screen};
use sha2::{Digest, Sha256};

use crate::helpers::{App, spawn_app};

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

    // Not a GraphQL request at all: 4xx whatever the Accept header, with the JSON error
    // body every endpoint of the project sends (there is no GraphQL request to answer).
    let json_error = |v: &serde_json::Value| v["error"]["code"].as_str().map(str::to_string);
    for accept in [new, legacy] {
        let r = post(accept, "application/json", "{not json".into())
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(json_error(&v).as_deref(), Some("malformed_json"), "{v}");

        let r = post(accept, "text/plain", syntax_error.clone())
            .await
            .unwrap();
        assert_eq!(r.status(), 415);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(json_error(&v).as_deref(), Some("unsupported_media_type"));

        // No Content-Type at all is not JSON either.
        let r = app
            .http()
            .post(app.url("/graphql"))
            .header("accept", accept)
            .body(syntax_error.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(json_error(&v).as_deref(), Some("unsupported_media_type"));

        // JSON, but no `query` (or not a string): 400, not a 200 "syntax error".
        for (body, code) in [
            (r#"{"variables":{}}"#, "missing_query"),
            (r#"{"query":null}"#, "missing_query"),
            (r#"{"query":42}"#, "invalid_graphql_request"),
            (r#"["{ projects { id } }"]"#, "invalid_graphql_request"),
            (
                r#"{"query":"{ projects { id } }","variables":"nope"}"#,
                "invalid_graphql_request",
            ),
        ] {
            let r = post(accept, "application/json", body.into()).await.unwrap();
            assert_eq!(r.status(), 400, "{body}");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(json_error(&v).as_deref(), Some(code), "{body}: {v}");
        }

        let huge = serde_json::json!({ "query": "x".repeat(100_000) }).to_string();
        let r = post(accept, "application/json", huge).await.unwrap();
        assert_eq!(r.status(), 413);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(json_error(&v).as_deref(), Some("body_too_large"));
    }
    let r = app
        .http()
        .get(app.url("/graphql?query=%7B%20projects%20%7B%20id%20%7D%20%7D&variables=%7Bnope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "unparsable variables in a GET");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json_error(&v).as_deref(), Some("invalid_graphql_request"));
    let r = app
        .http()
        .get(app.url("/graphql?variables=%7B%7D"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a GET without a query");
    app.finish().await;
}

/// The dashboard as a persisted query on `path`: (hash-only URL, registering URL).
fn persisted_urls(app: &App, path: &str, screen: Screen) -> (reqwest::Url, reqwest::Url) {
    let hash = format!("{:x}", Sha256::digest(DASHBOARD_QUERY.as_bytes()));
    let extensions =
        serde_json::json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } }).to_string();
    let variables = screen.variables().to_string();
    let by_hash = reqwest::Url::parse_with_params(
        &app.url(path),
        &[("variables", &variables), ("extensions", &extensions)],
    )
    .unwrap();
    let register = reqwest::Url::parse_with_params(
        &app.url(path),
        &[
            ("query", DASHBOARD_QUERY),
            ("variables", &variables),
            ("extensions", &extensions),
        ],
    )
    .unwrap();
    (by_hash, register)
}

// The 304 used to fail now and then under load: the body (and so its ETag) changed with the
// order in which the level's batches finished. Both endpoints, many revalidations, on a
// multi-threaded runtime with a busy pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persisted_query_is_served_by_hash_over_get_and_revalidates_to_304() {
    let app = spawn_app().await;
    for path in ["/graphql", "/graphql/naive"] {
        let (by_hash, register) = persisted_urls(&app, path, Screen::dashboard(3));

        // t1: the hash alone, before anyone sent the text → PersistedQueryNotFound, nothing
        // run (the store is the schema's, shared by both endpoints: one miss, on the first)
        if path == "/graphql" {
            app.sql.take();
            let r = app.http().get(by_hash.clone()).send().await.unwrap();
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["errors"][0]["message"], "PersistedQueryNotFound");
            assert_eq!(app.sql.take(), 0);
        }

        // t2: the text with its hash registers it (and answers)
        let r = app.http().get(register).send().await.unwrap();
        assert_eq!(r.status(), 200);

        // t3: the hash alone now works, as a cacheable GET with an ETag
        let r = app.http().get(by_hash.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["data"]["projects"].as_array().unwrap().len(), 3);

        // t4: revalidation → 304, no body — every time, while other screens load alongside
        let busy = {
            let client = app.client.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    let _ = client
                        .load(Approach::GraphQLNaive, Screen::dashboard(5))
                        .await;
                }
            })
        };
        for i in 0..20 {
            let r = app
                .http()
                .get(by_hash.clone())
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
                "{path}, try {i}: sent If-None-Match {etag}, got ETag {new_etag:?} and body {}",
                String::from_utf8_lossy(&body)
            );
            assert!(body.is_empty());
        }
        busy.await.unwrap();
    }
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

/// What an outside client threw at the server: none of it may be a 5xx, and every 4xx says
/// why in JSON (labkit's `{"error"}` body, or a GraphQL response's `errors`).
#[tokio::test]
async fn a_corpus_of_bad_requests_gets_4xx_with_json_bodies_and_never_a_5xx() {
    let app = spawn_app().await;
    let json = "application/json";
    let nul_query = serde_json::json!({ "query": "{ projects { id } }\u{0}" }).to_string();
    let posts: Vec<(&str, Option<&str>, String)> = vec![
        ("/graphql", Some(json), "{not json".into()),
        ("/graphql", Some(json), "".into()),
        ("/graphql", Some(json), nul_query),
        (
            "/graphql",
            Some(json),
            r#"{"query":"{ projects { id } }","variables":{"x":"a\u0000b"}}"#.into(),
        ),
        (
            "/graphql",
            Some(json),
            serde_json::json!({ "query": "x".repeat(10 << 20) }).to_string(),
        ),
        (
            "/graphql",
            Some(json),
            serde_json::json!({ "query": nested_query(10) }).to_string(),
        ),
        (
            "/graphql",
            Some(json),
            serde_json::json!({ "query": alias_bomb(800) }).to_string(),
        ),
        (
            "/graphql",
            Some(json),
            r#"{"query":"{ projects(first: 1000) { id } }"}"#.into(),
        ),
        ("/graphql", Some(json), r#"{"query":"{ nope }"}"#.into()),
        (
            "/graphql",
            Some(json),
            r#"{"query":"{ user(id: 99999999999999999999) { id } }"}"#.into(),
        ),
        (
            "/graphql",
            None,
            r#"{"query":"{ projects { id } }"}"#.into(),
        ),
        (
            "/graphql",
            Some("text/plain"),
            r#"{"query":"{ projects { id } }"}"#.into(),
        ),
        (
            "/graphql/naive",
            Some("application/graphql"),
            "{ projects { id } }".into(),
        ),
        ("/graphql/naive", Some(json), r#"{"variables":{}}"#.into()),
        ("/v1/projects", Some(json), "{}".into()),
    ];
    let gets = [
        "/graphql?query=%7B%20projects%20%7B%20id%20%7D%20%7D%00",
        "/graphql?query=%7B&variables=%7B",
        "/graphql?extensions=%7Bnope",
        "/graphql?extensions=%7B%22persistedQuery%22%3A%7B%22version%22%3A1%2C%22sha256Hash%22%3A%22ff%22%7D%7D",
        "/v1/users/%00",
        "/v1/users/99999999999999999999",
        "/v1/projects?limit=-1",
        "/v1/projects/1/tasks?limit=nan",
        "/v1/dashboard?projects=0",
        "/v1/tasks/abc/comments",
        "/nowhere",
    ];
    let mut answers = Vec::new();
    for (path, content_type, body) in posts {
        let mut r = app
            .http()
            .post(app.url(path))
            .header("accept", "application/graphql-response+json")
            .body(body.clone());
        if let Some(ct) = content_type {
            r = r.header("content-type", ct);
        }
        let r = r.send().await.unwrap();
        answers.push((format!("POST {path} {}", &body[..body.len().min(60)]), r));
    }
    for path in gets {
        let r = app.http().get(app.url(path)).send().await.unwrap();
        answers.push((format!("GET {path}"), r));
    }
    for (what, r) in answers {
        let status = r.status();
        assert!(!status.is_server_error(), "{what}: {status}");
        let body = r.bytes().await.unwrap();
        if status.is_client_error() {
            let v: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{what}: {status} without a JSON body ({e})"));
            assert!(
                v["error"]["code"].is_string() || v["errors"][0]["message"].is_string(),
                "{what}: {status} {v}"
            );
        } else {
            // A 200 is a GraphQL response carrying its errors (legacy media type or a field
            // error): still JSON, still saying why.
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(
                v["errors"][0]["message"].is_string(),
                "{what}: {status} {v}"
            );
        }
    }
    app.finish().await;
}
