//! The HTTP service: `GET /v1/orders`, both ways.
//!
//! - `?page=N` — offset pagination, with `meta.total` from an exact `COUNT(*)`.
//! - no `page` — keyset pagination: the first page, then `?cursor=<meta.next_cursor>`; no
//!   exact total, `meta.total_estimate` from the planner instead.
//! - optional `status` and `tenant_id` filters on both; a cursor only works with the filter
//!   it was issued for.
//!
//! Every bad input is a 4xx with labkit's JSON error body, `{"error": {"code", "message"}}`:
//! a 400 for the query string, which is parsed into strings first and then field by field,
//! so a bad `limit` says "limit", not axum's plain-text "Failed to deserialize query string";
//! 404/405 for unknown routes and methods; 413 for a request body (the API takes none).
//! [`router`] is the one place the service is assembled: `lab serve`, the run's load phase,
//! and the tests all bind it.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use labkit::http::{error_response, method_not_allowed, not_found};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::cursor::{Cursor, CursorCodec, CursorError};
use crate::filter::{Filter, Status, UnknownStatus};
use crate::keyset::SortKey;
use crate::schema::Order;
use crate::{count, keyset, offset};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;
/// Deep pages are allowed (they are the war story); this only keeps `page * limit` far from
/// overflow.
pub const MAX_PAGE: i64 = 10_000_000;
/// The API reads no request body; one larger than this is refused (413) before routing.
pub const MAX_BODY: usize = 1024;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub cursors: CursorCodec,
}

/// The service: its routes, JSON 404/405 for everything else, and the body limit. The
/// run's load phase, `lab serve` and the tests all bind this.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/v1/orders", get(list_orders))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    labkit::http::body_limit(routes, MAX_BODY)
}

/// Everything a request can get wrong, and the one thing we can.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed query string: {0}")]
    Query(String),
    #[error("limit must be an integer from 1 to {MAX_LIMIT}")]
    Limit,
    #[error("page must be an integer from 1 to {MAX_PAGE}")]
    Page,
    #[error(transparent)]
    Status(#[from] UnknownStatus),
    #[error("tenant_id must be a 32-bit integer")]
    Tenant,
    #[error("use either page (offset pagination) or cursor (keyset pagination), not both")]
    CursorWithPage,
    #[error(transparent)]
    Cursor(#[from] CursorError),
    #[error("cursor was issued for {issued}, not for {requested}; start again without a cursor")]
    CursorFilterMismatch { issued: Filter, requested: Filter },
    /// Logged in full, never shown: SQL text and server details stay out of responses.
    #[error("internal error")]
    Database(#[from] sqlx::Error),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Query(_) => "invalid_query",
            ApiError::Limit => "invalid_limit",
            ApiError::Page => "invalid_page",
            ApiError::Status(_) => "invalid_status",
            ApiError::Tenant => "invalid_tenant_id",
            ApiError::CursorWithPage => "cursor_with_page",
            ApiError::Cursor(_) => "invalid_cursor",
            ApiError::CursorFilterMismatch { .. } => "cursor_filter_mismatch",
            ApiError::Database(_) => "internal",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Database(e) = &self {
            tracing::error!(error = %e, "database error while listing orders");
        }
        error_response(self.status(), self.code(), &self)
    }
}

/// The query string as the client sent it: all strings, parsed one by one in
/// [`PageRequest::parse`] so each field gets its own error.
#[derive(Debug, Default, Deserialize)]
pub struct RawQuery {
    pub limit: Option<String>,
    pub page: Option<String>,
    pub cursor: Option<String>,
    pub status: Option<String>,
    pub tenant_id: Option<String>,
}

/// Offset or keyset, and where to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Offset { page: i64 },
    Keyset { after: Option<SortKey> },
}

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    pub filter: Filter,
    pub mode: Mode,
}

impl PageRequest {
    pub fn parse(raw: RawQuery, cursors: &CursorCodec) -> Result<Self, ApiError> {
        let limit = match raw.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or(ApiError::Limit)?,
        };
        let filter = Filter {
            status: raw
                .status
                .as_deref()
                .map(str::parse::<Status>)
                .transpose()?,
            tenant_id: raw
                .tenant_id
                .as_deref()
                .map(|s| s.parse::<i32>().map_err(|_| ApiError::Tenant))
                .transpose()?,
        };
        let mode = match (raw.page.as_deref(), raw.cursor.as_deref()) {
            (Some(_), Some(_)) => return Err(ApiError::CursorWithPage),
            (Some(p), None) => Mode::Offset {
                page: p
                    .parse::<i64>()
                    .ok()
                    .filter(|p| (1..=MAX_PAGE).contains(p))
                    .ok_or(ApiError::Page)?,
            },
            (None, Some(c)) => {
                let cursor = cursors.decode(c)?;
                if cursor.filter != filter {
                    return Err(ApiError::CursorFilterMismatch {
                        issued: cursor.filter,
                        requested: filter,
                    });
                }
                Mode::Keyset {
                    after: Some(cursor.after),
                }
            }
            (None, None) => Mode::Keyset { after: None },
        };
        Ok(Self {
            limit,
            filter,
            mode,
        })
    }
}

/// A page of orders.
#[derive(Debug, Serialize)]
pub struct PageBody {
    pub data: Vec<Order>,
    pub meta: Meta,
}

#[derive(Debug, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Meta {
    Offset {
        page: i64,
        limit: i64,
        /// Exact, from `COUNT(*)` — paid on every request.
        total: i64,
    },
    Keyset {
        limit: i64,
        /// `null` on the last page.
        next_cursor: Option<String>,
        /// The planner's estimate: cheap, approximately right.
        total_estimate: i64,
    },
}

async fn list_orders(
    State(state): State<AppState>,
    query: Result<Query<RawQuery>, QueryRejection>,
) -> Result<Json<PageBody>, ApiError> {
    let Query(raw) = query.map_err(|r| ApiError::Query(r.body_text()))?;
    let req = PageRequest::parse(raw, &state.cursors)?;
    let (limit, filter) = (req.limit, req.filter);
    let body = match req.mode {
        Mode::Offset { page } => {
            let data = offset::page(&state.pool, filter, limit, (page - 1) * limit).await?;
            let total = count::exact(&state.pool, filter).await?;
            PageBody {
                data,
                meta: Meta::Offset { page, limit, total },
            }
        }
        Mode::Keyset { after } => {
            // One row more than asked: if it exists there is a next page, and the last page
            // does not hand out a cursor that leads to an empty one.
            let mut data = keyset::page(&state.pool, filter, after, limit + 1).await?;
            let has_more = data.len() as i64 > limit;
            data.truncate(limit as usize);
            let next_cursor = match data.last() {
                Some(last) if has_more => Some(state.cursors.encode(&Cursor {
                    after: last.sort_key(),
                    filter,
                })),
                _ => None,
            };
            let total_estimate = count::estimate(&state.pool, filter).await?;
            PageBody {
                data,
                meta: Meta::Keyset {
                    limit,
                    next_cursor,
                    total_estimate,
                },
            }
        }
    };
    Ok(Json(body))
}
