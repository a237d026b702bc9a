//! REST vs GraphQL: the N+1 in the real world.
//!
//! The war story. A dashboard shows projects, each project's latest tasks, each task's
//! assignee and its latest comments with their authors. The first front end talks to a
//! clean resource-oriented REST API and the page takes hundreds of requests — one per
//! resource. The team moves to GraphQL: now the page is one request, but the resolvers
//! fire one SQL statement per field per parent, so the N+1 has moved from the browser to
//! the database (a thousand statements for one screen). DataLoader fixes that — one
//! batched statement per level, flat as the screen grows — and a hand-written BFF endpoint
//! does it in four. Then someone sends a query that walks task → assignee → assignedTasks →
//! comments → author → assignedTasks …: the graph has cycles, the rows multiply per level,
//! and only query limits (depth, complexity, page size), checked *before* execution, stop it.
//! Depth alone is not enough: 800 aliases of a three-deep query ran 24 800 statements in one
//! request until the complexity limit learned to price statements and count every alias.
//!
//! The lab serves all of it from one axum app on real Postgres, loads the same screen four
//! ways over real HTTP, and counts SQL statements exactly (labkit::SqlCounter around the
//! router), HTTP requests, bytes received and latency under a closed-loop load.
//!
//! Module map, in reading order:
//!
//! | module | what it holds |
//! |---|---|
//! | [`model`] | the tables, row types and the seed (skewed assignees and authors) |
//! | [`screen`] | the dashboard: its view types, its GraphQL query, the naive formula |
//! | [`one_by_one`] | one statement per parent (REST handlers, naive resolvers) |
//! | [`batched`] | one statement per level: `= ANY($1)` and `unnest … LATERAL` for top-K per parent |
//! | [`rest`], [`bff`] | resources, 404s, page-size cap; the one-request screen endpoint |
//! | [`etag`], [`error`] | `ETag`/`If-None-Match`/`304` for every GET; JSON errors, quiet on shutdown |
//! | [`graphql`] | the schema with naive and DataLoader resolvers side by side, priced per field |
//! | [`dataloader`], [`prefetch`] | the per-request loader; each level loaded for all parents at once |
//! | [`limits`] | depth and complexity (statements and aliases priced) checked before execution |
//! | [`field_order`] | responses put back in query order, so identical requests get identical bytes |
//! | [`graphql_http`] | GraphQL over HTTP: status codes, 4xx for non-requests, persisted queries via GET |
//! | [`server`] | the one router: `run`, `serve`, the tests and the bench all use it |
//! | [`client`] | the four ways a front end loads the screen (reqwest, or load-phase connections) |
//! | [`run`] | the story, step by step; [`scenarios`] measures, [`report`] reports |

pub mod batched;
pub mod bff;
pub mod client;
pub mod dataloader;
pub mod error;
pub mod etag;
pub mod field_order;
pub mod graphql;
pub mod graphql_http;
pub mod limits;
pub mod model;
pub mod one_by_one;
pub mod prefetch;
pub mod report;
pub mod rest;
pub mod run;
pub mod scenarios;
pub mod screen;
pub mod server;

use labkit::{LabCtx, Report, ServeApp};

pub use server::{AppState, router};

/// The finding keys this lab promises (users' scripts parse them).
pub const FINDING_KEYS: &[&str] = &[
    // one quiet screen per approach
    "rest_chatty_http_per_screen",
    "rest_chatty_sql_per_screen",
    "rest_bff_sql_per_screen",
    "graphql_naive_sql_per_screen",
    "graphql_dataloader_sql_per_screen",
    "graphql_naive_formula_sql_per_screen",
    "rest_chatty_bytes_per_screen",
    "rest_bff_bytes_per_screen",
    "graphql_naive_bytes_per_screen",
    "graphql_dataloader_bytes_per_screen",
    // as the screen grows
    "graphql_naive_sql_at_100_projects",
    "graphql_dataloader_sql_at_100_projects",
    "graphql_dataloader_flat",
    "graphql_dataloader_window_split_sql_at_100_projects",
    // under load
    "rest_chatty_p95_ms",
    "rest_bff_p95_ms",
    "graphql_naive_p95_ms",
    "graphql_dataloader_p95_ms",
    // query limits
    "deep_query_bounded_naive_sql",
    "deep_query_bounded_naive_ms",
    "deep_query_rejected",
    "alias_bomb_rejected",
    "alias_bomb_unprotected_naive_sql",
    // caching
    "etag_bytes_saved_ratio",
    "rest_revalidation_sql_per_screen",
    "graphql_persisted_get_304",
    "graphql_naive_persisted_get_304",
    "graphql_distinct_bodies_for_identical_posts",
    "graphql_post_request_body_bytes",
    "graphql_persisted_get_url_bytes",
];

/// The `rest-vs-graphql` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestVsGraphql;

pub const TITLE: &str = "REST vs GraphQL: the N+1, DataLoader, BFF and query limits";

#[labkit::async_trait]
impl labkit::Lab for RestVsGraphql {
    fn id(&self) -> &'static str {
        "rest-vs-graphql"
    }

    fn title(&self) -> &'static str {
        TITLE
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(include_str!("../baseline.json"))
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        run::run(ctx).await
    }

    async fn serve(&self, ctx: &LabCtx) -> anyhow::Result<Option<ServeApp>> {
        model::seed(ctx).await?;
        Ok(Some(ServeApp {
            router: router(AppState::new(ctx.pg.clone())),
            banner: BANNER.to_string(),
            keep_alive: Vec::new(),
        }))
    }
}

/// The curl examples, shared with `main.rs` and the README (`{base}` is the served address).
const BANNER: &str = include_str!("../curl.md");
