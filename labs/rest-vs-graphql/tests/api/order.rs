//! Responses in query order, byte for byte: the GraphQL spec orders fields as the query
//! selected them, and an ETag that hashes the body only revalidates if equal data gives equal
//! bytes. (async-graphql 7.2 assembles objects in the order their fields *finish*; see
//! `field_order.rs`.)

use std::collections::HashSet;

use lab_rest_vs_graphql::limits::alias_bomb;
use lab_rest_vs_graphql::screen::{DASHBOARD_QUERY, Screen};

use crate::helpers::spawn_app;

/// Keys of every object in `v`, in the order the body has them (serde_json's
/// `preserve_order` is on in this workspace), depth first.
fn key_orders(v: &serde_json::Value, out: &mut Vec<Vec<String>>) {
    match v {
        serde_json::Value::Object(m) => {
            out.push(m.keys().cloned().collect());
            m.values().for_each(|x| key_orders(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| key_orders(x, out)),
        _ => {}
    }
}

// Multi-threaded like the server in a run: the resolvers' statements race each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_requests_get_identical_bytes_with_fields_in_query_order() {
    let app = spawn_app().await;
    let dashboard = serde_json::json!({
        "query": DASHBOARD_QUERY,
        "variables": Screen::dashboard(5).variables(),
    });
    // Fields spread by fragments and an inline fragment, a merged key, aliases ahead of
    // the fields they alias, a skipped field.
    let fragments = serde_json::json!({
        "query": r#"query Q($no: Boolean!) {
            projects(first: 3) {
                tasks(first: 2) {
                    ...Who
                    title
                    ... on Task { comments(first: 2) { author { name } body } }
                    first: comments(first: 1) { id }
                    id @skip(if: $no)
                    status @include(if: $no)
                    assignee { id }
                }
                name
            }
        }
        fragment Who on Task { assignee { name } id }"#,
        "variables": { "no": false },
    });
    let aliases = serde_json::json!({ "query": alias_bomb(60) });
    for path in ["/graphql/naive", "/graphql"] {
        for (what, request, expected_first_object) in [
            (
                "dashboard",
                &dashboard,
                vec![vec!["data"], vec!["projects"], vec!["id", "name", "tasks"]],
            ),
            (
                "fragments",
                &fragments,
                vec![vec!["data"], vec!["projects"], vec!["tasks", "name"]],
            ),
            ("60 aliases", &aliases, vec![vec!["data"]]),
        ] {
            let mut bodies = HashSet::new();
            for _ in 0..8 {
                let r = app
                    .http()
                    .post(app.url(path))
                    .json(request)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{path} {what}");
                bodies.insert(r.bytes().await.unwrap());
            }
            assert_eq!(
                bodies.len(),
                1,
                "{path} {what}: identical requests, different bytes"
            );
            let body: serde_json::Value =
                serde_json::from_slice(bodies.iter().next().unwrap()).unwrap();
            assert!(body.get("errors").is_none(), "{path} {what}: {body}");
            let mut orders = Vec::new();
            key_orders(&body, &mut orders);
            for (i, expected) in expected_first_object.iter().enumerate() {
                assert_eq!(&orders[i], expected, "{path} {what}: object {i}");
            }
            match what {
                "dashboard" => {
                    // task, assignee, comment, author — each as the query lists them
                    assert!(orders.contains(&to_strings(&[
                        "id", "title", "status", "assignee", "comments"
                    ])));
                    assert!(orders.contains(&to_strings(&["id", "body", "author"])));
                    assert!(!orders.iter().any(|o| o == &to_strings(&["name", "id"])));
                }
                "fragments" => {
                    // ...Who puts assignee and id first; the inline fragment's comments
                    // follow title; `id` keeps its first place though spread again; status
                    // is not included; the second `assignee` merges into the first.
                    let task = to_strings(&["assignee", "id", "title", "comments", "first"]);
                    assert!(orders.contains(&task), "{path}: {orders:?}");
                    assert!(orders.contains(&to_strings(&["name", "id"])), "{orders:?}");
                    assert!(
                        orders.contains(&to_strings(&["author", "body"])),
                        "{orders:?}"
                    );
                }
                _ => {
                    let expected: Vec<String> = (0..60).map(|i| format!("a{i}")).collect();
                    assert_eq!(orders[1], expected, "{path}: aliases in query order");
                }
            }
        }
    }
    app.finish().await;
}

fn to_strings(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| k.to_string()).collect()
}
