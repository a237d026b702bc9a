//! The lab run: serve the app on a real socket, load the dashboard four ways, and report.
//!
//! 1. One quiet screen per approach: exact SQL statements (SqlCounter around the router),
//!    HTTP requests, bytes received — and a check that all four rendered the same screen.
//! 2. Statements per screen as the screen grows (N = 1, 20, 50, 100 projects), and the
//!    DataLoader that batches by time window alone, to see a level split.
//! 3. Latency: one client alone (p50), then a closed loop of several clients (p50/p95/p99).
//! 4. Query limits: a nested query and an alias bomb on a schema without limits (what they
//!    cost), then against the served endpoint (rejected before execution, zero statements).
//! 5. Caching: REST revalidation with ETags, a persisted GraphQL query fetched by GET, and
//!    whether identical requests get identical bytes.

use std::time::Duration;

use anyhow::Context as _;
use labkit::{Knob, LabCtx, Report, SqlCounter};

use crate::client::ScreenClient;
use crate::model;
use crate::report::{self, Measured};
use crate::scenarios::{self, LoadShape};
use crate::screen::Screen;
use crate::server::{AppState, router};

/// Screen sizes for the statements-vs-N chart: DataLoader must be flat across all of them.
pub const CHART_PROJECTS: [usize; 4] = [1, 20, 50, 100];

/// Aliases in the alias bomb: the 42 KB query an outside client sent.
pub const ALIAS_BOMB: usize = 800;

/// How hard a run pushes, per scale (load shape from the knobs).
#[derive(Debug, Clone)]
struct Plan {
    /// Projects on the measured dashboard.
    screen_projects: usize,
    load: LoadShape,
    /// `first` values of the bounded nested queries run without limits, and their timed reps.
    nested_k: Vec<usize>,
    nested_reps: u64,
    /// Aliases in the alias bomb run without limits (the served endpoint always gets
    /// [`ALIAS_BOMB`]).
    alias_bomb_unprotected: usize,
    /// Runs of the window-only DataLoader at 100 projects.
    window_runs: usize,
    /// Identical dashboard POSTs per GraphQL endpoint, to compare their bytes.
    identical_posts: usize,
}

impl Plan {
    fn new(ctx: &LabCtx) -> Self {
        let s = ctx.scale;
        Self {
            screen_projects: s.pick(5, 20, 20),
            load: LoadShape {
                clients: ctx.clients(s.pick(2, 8, 16)),
                duration: ctx.duration(s.pick(
                    Duration::from_millis(300),
                    Duration::from_secs(3),
                    Duration::from_secs(10),
                )),
                warmup: ctx.warmup(s.pick(
                    Duration::ZERO,
                    Duration::from_millis(500),
                    Duration::from_secs(1),
                )),
                solo_screens: s.pick(3, 20, 50),
            },
            nested_k: s.pick(vec![2], vec![2, 3, 4, 5], vec![2, 3, 4, 5, 6]),
            nested_reps: s.pick(1, 3, 3),
            alias_bomb_unprotected: s.pick(100, ALIAS_BOMB, ALIAS_BOMB),
            window_runs: s.pick(2, 5, 5),
            identical_posts: s.pick(3, 10, 10),
        }
    }
}

pub async fn run(ctx: &LabCtx) -> anyhow::Result<Report> {
    ctx.ignores(
        Knob::Rate,
        "every load phase is a closed loop of clients loading screens back to back; no phase \
         has an arrival rate",
    );
    let size = model::seed(ctx).await.context("seeding")?;
    let plan = Plan::new(ctx);
    let screen = Screen::dashboard(plan.screen_projects);

    // The served app, with every statement its handlers run counted (DataLoader batches
    // included: their tasks carry the request's span).
    let sql = SqlCounter::new();
    let server =
        labkit::http::spawn(sql.count_router(router(AppState::new(ctx.pg.clone())))).await?;
    let client = ScreenClient::new(server.base_url());

    // 1. The same screen four ways, quiet: requests, statements, bytes.
    let costs = scenarios::one_screen_each(&client, &sql, screen).await?;

    // 2. As the screen grows: naive grows like N·T·C, DataLoader stays flat (each level
    //    prefetched with one load_many); without the prefetch a 1 ms window splits levels.
    let growth = scenarios::growth(&client, &sql, &CHART_PROJECTS).await?;
    let window_split = scenarios::window_split(&ctx.pg, &sql, 100, plan.window_runs).await?;

    // 3. Latency: one client alone, then the closed loop (each client on its own keep-alive
    //    connections, so the driver is not what is measured).
    let loads = scenarios::under_load(server.addr, &client, &sql, plan.load, screen).await;

    // 4. Limits. Unprotected first (what a nested query and an alias bomb cost when nothing
    //    stops them), then the served endpoint, which prices them before running anything.
    let nested =
        scenarios::nested_unprotected(&ctx.pg, &sql, &plan.nested_k, plan.nested_reps).await?;
    let alias_bomb_unprotected_sql =
        scenarios::alias_bomb_unprotected(&ctx.pg, &sql, plan.alias_bomb_unprotected).await?;
    let attempts = scenarios::served_limits(&client, &sql, ALIAS_BOMB).await?;

    // 5. Caching: ETag revalidation, persisted queries by GET, byte-stable bodies.
    let caching = scenarios::caching(&client, &sql, screen).await?;
    let mut distinct_bodies = Vec::new();
    for path in ["/graphql", "/graphql/naive"] {
        let n = scenarios::distinct_bodies(&client, path, screen, plan.identical_posts).await?;
        distinct_bodies.push((path, n));
    }

    server.stop().await;
    Ok(report::build(
        ctx,
        &Measured {
            size,
            screen,
            costs,
            growth,
            window_split,
            window_split_projects: 100,
            shape: plan.load,
            loads,
            nested,
            alias_bomb_aliases: ALIAS_BOMB,
            alias_bomb_unprotected_aliases: plan.alias_bomb_unprotected,
            alias_bomb_unprotected_sql,
            attempts,
            caching,
            distinct_bodies,
            identical_posts: plan.identical_posts,
        },
    ))
}
