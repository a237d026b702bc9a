//! GraphQL over HTTP, following the GraphQL-over-HTTP spec's rules for status codes:
//!
//! - `POST` with `application/json` `{"query", "variables", "operationName", "extensions"}`;
//!   `GET` with the same fields in the query string. `GET` with no query string serves GraphiQL.
//! - A request that is not a well-formed GraphQL request (broken JSON, wrong content type,
//!   unparsable `variables`) is a 4xx whatever the client accepts.
//! - A request error (syntax error, unknown field, a limit exceeded — nothing executed, no
//!   `data`) is `400` when the client accepts `application/graphql-response+json`, and `200`
//!   with `errors` under plain `application/json` (the legacy rule every older client expects).
//!   Field errors during execution are `200` with `data` and `errors` either way.
//! - Never a 500 for something the client sent; resolver failures say "internal database
//!   error" and log the detail.
//!
//! Persisted queries: with `extensions={"persistedQuery":{"version":1,"sha256Hash":"..."}}` a
//! client sends the hash instead of the text (Apollo APQ; the first miss answers
//! `PersistedQueryNotFound` and the client retries once with the text). A successful `GET`
//! then gets the same `ETag`/`304` treatment as a REST resource.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};

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
    let media = negotiate(headers);
    let request = match async_graphql::http::parse_query_string(query) {
        Ok(r) => r,
        Err(e) => return malformed(media, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    execute(app, headers, media, request, resolvers, true).await
}

/// `POST /graphql[/naive]` with a JSON body.
pub async fn post(
    app: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    resolvers: Resolvers,
) -> Response {
    let media = negotiate(headers);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    // Only JSON: accepting `text/plain` would also make the endpoint a target for
    // cross-site form posts, which browsers send without a preflight.
    if !content_type.starts_with("application/json") {
        return malformed(
            media,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST bodies must be application/json",
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => return malformed(media, e.status(), &e.body_text()),
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return malformed(
                media,
                StatusCode::BAD_REQUEST,
                &format!("the body is not a GraphQL request: {e}"),
            );
        }
    };
    execute(app, headers, media, request, resolvers, false).await
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

/// Not a GraphQL request at all: a 4xx with a GraphQL-shaped error body.
fn malformed(media: MediaType, status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": "BAD_REQUEST" } }]
    });
    (
        status,
        [(header::CONTENT_TYPE, media.content_type())],
        body.to_string(),
    )
        .into_response()
}
