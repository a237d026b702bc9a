//! REST, resource oriented: each resource is one URL and one statement, foreign keys are
//! ids the client follows. Clean, cacheable, and chatty: the dashboard becomes hundreds of
//! requests. `GET /v1/dashboard` is the BFF shortcut next to them.
//!
//! | route | statements |
//! |---|---|
//! | `GET /v1/projects?limit=N` | 1 |
//! | `GET /v1/projects/{id}` | 1 |
//! | `GET /v1/projects/{id}/tasks?limit=T` | 1 (2 when the list is empty: 404 or `[]`?) |
//! | `GET /v1/tasks/{id}/comments?limit=C` | 1 (2 when empty) |
//! | `GET /v1/users/{id}` | 1 |
//! | `GET /v1/dashboard?projects=N&tasks=T&comments=C` (BFF) | 4 |
//!
//! Every GET carries an `ETag` and honours `If-None-Match` (see `etag.rs`). Page sizes are
//! capped at [`MAX_PAGE`]: a larger `limit` is a 400, the same rule GraphQL's `first` follows.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use crate::error::{ApiError, parse_id};
use crate::screen::Screen;
use crate::server::AppState;
use crate::{bff, etag, one_by_one};

/// The largest page any list returns, in REST and GraphQL alike.
pub const MAX_PAGE: i64 = 100;

#[derive(Debug, Deserialize)]
pub struct ListParams {
    limit: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct DashboardParams {
    projects: Option<i64>,
    tasks: Option<i64>,
    comments: Option<i64>,
}

/// Validate a page size: absent → `default`, 1..=MAX_PAGE → itself, anything else → 400.
/// Rejected rather than silently capped: a client asking for 1000 rows and getting 100
/// would believe it has them all.
fn page(name: &str, value: Option<i64>, default: i64) -> Result<i64, ApiError> {
    match value.unwrap_or(default) {
        n @ 1..=MAX_PAGE => Ok(n),
        n => Err(ApiError::BadQuery(format!(
            "`{name}` must be between 1 and {MAX_PAGE}, got {n}"
        ))),
    }
}

/// axum's query rejection is plain text; ours is the JSON error shape.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::BadQuery(e.body_text()))
}

pub async fn list_projects(
    State(app): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let limit = page("limit", query(q)?.limit, 20)?;
    let projects = one_by_one::projects(&app.pool, limit).await?;
    Ok(etag::json(&headers, &projects))
}

pub async fn get_project(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id("project", &id)?;
    let project = one_by_one::project(&app.pool, id)
        .await?
        .ok_or(ApiError::NotFound {
            resource: "project",
            id,
        })?;
    Ok(etag::json(&headers, &project))
}

pub async fn project_tasks(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id("project", &id)?;
    let limit = page("limit", query(q)?.limit, 10)?;
    let tasks = one_by_one::tasks_of_project(&app.pool, id, limit).await?;
    if tasks.is_empty() && !one_by_one::project_exists(&app.pool, id).await? {
        return Err(ApiError::NotFound {
            resource: "project",
            id,
        });
    }
    Ok(etag::json(&headers, &tasks))
}

pub async fn task_comments(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id("task", &id)?;
    let limit = page("limit", query(q)?.limit, 3)?;
    let comments = one_by_one::comments_of_task(&app.pool, id, limit).await?;
    if comments.is_empty() && !one_by_one::task_exists(&app.pool, id).await? {
        return Err(ApiError::NotFound {
            resource: "task",
            id,
        });
    }
    Ok(etag::json(&headers, &comments))
}

pub async fn get_user(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id("user", &id)?;
    let user = one_by_one::user(&app.pool, id)
        .await?
        .ok_or(ApiError::NotFound {
            resource: "user",
            id,
        })?;
    Ok(etag::json(&headers, &user))
}

/// The BFF: the whole dashboard in one response, four statements (see `bff.rs`).
pub async fn dashboard(
    State(app): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<DashboardParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = query(q)?;
    let defaults = Screen::dashboard(20);
    let screen = Screen {
        projects: page("projects", p.projects, defaults.projects as i64)? as usize,
        tasks: page("tasks", p.tasks, defaults.tasks as i64)? as usize,
        comments: page("comments", p.comments, defaults.comments as i64)? as usize,
    };
    let view = bff::dashboard(&app.pool, screen).await?;
    Ok(etag::json(&headers, &view))
}
