//! GraphQL over HTTP, following the GraphQL-over-HTTP spec's rules for status codes:
//!
//! - `POST` with `application/json` `{"query", "variables", "operationName", "extensions"}`;
//!   `GET` with the same fields in the query string. `GET` with no query string serves GraphiQL.
//! - A request that is not a well-formed GraphQL request (no JSON `Content-Type`, broken JSON,
//!   no `query` string, unparsable `variables`, a NUL character, a body over the limit) is a
//!   4xx whatever the client accepts: 415, 413 or 400, with labkit's JSON error body
//!   `{"error": {"code", "message"}}`. The spec leaves that body open (there is no GraphQL
//!   request to answer yet), so it is the same one every other endpoint of the project sends.
//! - A request error (syntax error, unknown field, a limit exceeded — nothing executed, no
//!   `data`) is a GraphQL response, `{"errors": [...]}`, as the spec requires: `400` when the
//!   client accepts `application/graphql-response+json`, and `200` under plain
//!   `application/json` (the legacy rule every older client expects). Field errors during
//!   execution are `200` with `data` and `errors` either way.
//! - Never a 500 for something the client sent; resolver failures say "internal database
//!   error" and log the detail.
//!
//! Persisted queries: with `extensions={"persistedQuery":{"version":1,"sha256Hash":"..."}}` a
//! client sends the hash instead of the text (Apollo APQ; the first miss answers
//! `PersistedQueryNotFound` and the client retries once with the text). A successful `GET`
//! then gets the same `ETag`/`304` treatment as a REST resource; the body is byte-stable
//! because responses keep query order (`field_order.rs`).

use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use labkit::http::error_response;

use crate::etag;
use crate::graphql::{Fetch, Resolvers};
use crate::server::AppState;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json; charset=utf-8";
const JSON: &str = "application/json";

/// The media type the client will get, from its `Accept` header. No `Accept`, or one that
/// does not name the new type, gets `application/json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaType {
    GraphQLResponseJson,
    Json,
}

fn negotiate(headers: &HeaderMap) -> MediaType {
    let accepts_new = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/graphql-response+json"));
    if accepts_new {
        MediaType::GraphQLResponseJson
    } else {
        MediaType::Json
    }
}

impl MediaType {
    fn content_type(self) -> &'static str {
        match self {
            Self::GraphQLResponseJson => GRAPHQL_RESPONSE_JSON,
            Self::Json => JSON,
        }
    }
}

/// `GET /graphql[/naive]`: GraphiQL without a query string, otherwise execute.
pub async fn get(
    app: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    path: &str,
    resolvers: Resolvers,
) -> Response {
    let Some(query) = uri.query().filter(|q| !q.is_empty()) else {
        return Html(
            async_graphql::http::GraphiQLSource::build()
                .endpoint(path)
                .finish(),
        )
        .into_response();
    };
    let request = match async_graphql::http::parse_query_string(query) {
        Ok(r) => r,
        Err(e) => return not_a_graphql_request("invalid_graphql_request", e),
    };
    if request.query.is_empty() && !request.extensions.0.contains_key("persistedQuery") {
        return not_a_graphql_request("missing_query", MISSING_QUERY);
    }
    if request.query.contains('\0') {
        return not_a_graphql_request(
            "invalid_text",
            "query: text must not contain a NUL character",
        );
    }
    execute(app, headers, negotiate(headers), request, resolvers, true).await
}

const MISSING_QUERY: &str =
    "a GraphQL request needs a `query` string (or a persisted query's hash in `extensions`)";

/// `POST /graphql[/naive]`: `body` is labkit's JSON extractor, so a missing or wrong
/// `Content-Type` (415), a body over the limit (413), malformed JSON or a NUL in any string
/// (400) never reach GraphQL.
pub async fn post(
    app: &AppState,
    headers: &HeaderMap,
    body: serde_json::Value,
    resolvers: Resolvers,
) -> Response {
    let request = match graphql_request(body) {
        Ok(r) => r,
        Err((code, message)) => return not_a_graphql_request(code, message),
    };
    execute(app, headers, negotiate(headers), request, resolvers, false).await
}

/// A JSON body → a GraphQL request, or (error code, message) saying why it is not one.
fn graphql_request(
    mut body: serde_json::Value,
) -> Result<async_graphql::Request, (&'static str, String)> {
    let invalid = |message: &str| ("invalid_graphql_request", message.to_string());
    let Some(fields) = body.as_object_mut() else {
        return Err(invalid(
            "the body must be a JSON object: {\"query\": \"...\", \"variables\": {...}}",
        ));
    };
    let persisted = fields
        .get("extensions")
        .is_some_and(|e| e.get("persistedQuery").is_some());
    match fields.get("query") {
        Some(serde_json::Value::String(_)) => {}
        None | Some(serde_json::Value::Null) if persisted => {
            fields.remove("query");
        }
        None | Some(serde_json::Value::Null) => {
            return Err(("missing_query", MISSING_QUERY.to_string()));
        }
        Some(_) => return Err(invalid("`query` must be a string")),
    }
    serde_json::from_value(body).map_err(|e| invalid(&format!("not a GraphQL request: {e}")))
}

async fn execute(
    app: &AppState,
    headers: &HeaderMap,
    media: MediaType,
    request: async_graphql::Request,
    resolvers: Resolvers,
    cacheable: bool,
) -> Response {
    let request = request.data(Fetch::new(resolvers, &app.pool));
    let response = app.schema.execute(request).await;
    // A request error stops before execution: no data, and no error has a path into it.
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let body = if request_error {
        // The spec: a request error has no `data` entry at all.
        serde_json::to_vec(&serde_json::json!({ "errors": response.errors }))
    } else {
        serde_json::to_vec(&response)
    }
    .expect("GraphQL responses serialize");
    if cacheable && response.errors.is_empty() {
        return etag::respond(headers, media.content_type(), body);
    }
    let status = match (request_error, media) {
        (true, MediaType::GraphQLResponseJson) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    (status, [(header::CONTENT_TYPE, media.content_type())], body).into_response()
}

/// Not a GraphQL request at all: 400 with labkit's JSON error body.
fn not_a_graphql_request(code: &str, message: impl std::fmt::Display) -> Response {
    error_response(StatusCode::BAD_REQUEST, code, message)
}
