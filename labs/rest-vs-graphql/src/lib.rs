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
//!
//! The lab serves all of it from one axum app on real Postgres, loads the same screen four
//! ways over real HTTP, and counts SQL statements exactly (labkit::SqlCounter around the
//! router), HTTP requests, bytes received and latency under a closed-loop load.
//!
//! Module map, in reading order:
//! - [`model`] — the tables, row types and the seed (skewed assignees and authors).
//! - [`screen`] — the dashboard: its view types, its GraphQL query, the naive formula.
//! - [`one_by_one`] — one statement per parent (REST handlers, naive resolvers).
//! - [`batched`] — one statement per level: `= ANY($1)` and `unnest … LATERAL` for top-K per parent.
//! - [`rest`] — resources, 404s, page-size cap; [`bff`] — the one-request screen endpoint.
//! - [`etag`] — `ETag`/`If-None-Match`/`304` for every GET; [`error`] — REST's JSON errors.
//! - [`graphql`] — the schema with naive and DataLoader resolvers side by side.
//! - [`dataloader`] — the per-request loader; [`limits`] — depth and complexity checked before execution.
//! - [`graphql_http`] — GraphQL over HTTP: status codes, GraphiQL, persisted queries via GET.
//! - [`server`] — the router; [`client`] — the four ways a front end loads the screen.
//! - [`run`] — the scenarios and the report.

pub mod batched;
pub mod bff;
pub mod client;
pub mod dataloader;
pub mod error;
pub mod etag;
pub mod graphql;
pub mod graphql_http;
pub mod limits;
pub mod model;
pub mod one_by_one;
pub mod rest;
pub mod run;
pub mod screen;
pub mod server;

use labkit::{LabCtx, Report, ServeApp};

pub use server::{AppState, router};

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

const BANNER: &str = r#"REST:
  curl -s '{base}/v1/projects?limit=2'
  curl -s '{base}/v1/projects/1/tasks?limit=3'
  curl -si '{base}/v1/users/1'                      # note the ETag; send it back:
  curl -si '{base}/v1/users/1' -H 'If-None-Match: "<etag>"'   # -> 304
  curl -s '{base}/v1/dashboard?projects=2'          # the BFF: whole screen, 4 statements
GraphQL (DataLoader at /graphql, naive resolvers at /graphql/naive; GraphiQL: open {base}/graphql):
  curl -s '{base}/graphql' -H 'content-type: application/json' \
    -d '{"query":"{ projects(first: 2) { name tasks(first: 2) { title assignee { name } } } }"}'
  curl -s '{base}/graphql' -H 'content-type: application/json' \
    -d '{"query":"{ projects(first: 1) { tasks { assignee { assignedTasks { comments { author { assignedTasks { title } } } } } } } }"}'
    # -> rejected before execution: query depth 8 exceeds the limit of 6"#;
