//! The one axum app: REST resources, the BFF endpoint and GraphQL (DataLoader at `/graphql`,
//! naive resolvers at `/graphql/naive`). `lab serve rest-vs-graphql`, the lab run, the tests
//! and the bench all serve [`router`].

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::get;
use labkit::http::JsonBody;
use sqlx::PgPool;

use crate::error::ApiError;
use crate::graphql::{LabSchema, Resolvers, build_schema};
use crate::limits::Limits;
use crate::{graphql_http, rest};

/// Largest request body accepted (GraphQL POSTs are the only bodies): a query the limits
/// would accept is a few KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub schema: LabSchema,
}

impl AppState {
    /// The served configuration: limits on.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            schema: build_schema(Some(Limits::SERVED)),
        }
    }
}

pub fn router(state: AppState) -> Router {
    let app = Router::new()
        .route("/v1/projects", get(rest::list_projects))
        .route("/v1/projects/{id}", get(rest::get_project))
        .route("/v1/projects/{id}/tasks", get(rest::project_tasks))
        .route("/v1/tasks/{id}/comments", get(rest::task_comments))
        .route("/v1/users/{id}", get(rest::get_user))
        .route("/v1/dashboard", get(rest::dashboard))
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route(
            "/graphql/naive",
            get(graphql_naive_get).post(graphql_naive_post),
        )
        .fallback(|uri: Uri| async move { ApiError::NoRoute(uri.path().to_string()) })
        .method_not_allowed_fallback(labkit::http::method_not_allowed)
        .with_state(state);
    // 413 with the JSON body, and no connection reset for a client still sending.
    labkit::http::body_limit(app, MAX_BODY_BYTES)
}

async fn graphql_get(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    graphql_http::get(&app, &headers, &uri, "/graphql", Resolvers::DataLoader).await
}

async fn graphql_post(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Response {
    graphql_http::post(&app, &headers, body, Resolvers::DataLoader).await
}

async fn graphql_naive_get(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    graphql_http::get(&app, &headers, &uri, "/graphql/naive", Resolvers::Naive).await
}

async fn graphql_naive_post(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Response {
    graphql_http::post(&app, &headers, body, Resolvers::Naive).await
}
