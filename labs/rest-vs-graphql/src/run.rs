//! The lab run: serve the app on a real socket, load the dashboard four ways, and report.
//!
//! 1. One quiet screen per approach: exact SQL statements (SqlCounter around the router),
//!    HTTP requests, bytes received — and a check that all four rendered the same screen.
//! 2. Statements per screen as the screen grows (N = 1, 10, 50, 100 projects): the chart.
//! 3. Latency: one client alone (p50), then a closed loop of several clients (p50/p95/p99).
//! 4. The nested query: bounded versions on an unprotected schema (what they cost), the full
//!    one against the served endpoint (rejected before execution, zero statements).
//! 5. Caching: REST revalidation with ETags, and a persisted GraphQL query fetched by GET.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use labkit::measure::sequential;
use labkit::{Bound, Chart, ClosedLoop, LabCtx, Report, Scale, SqlCounter, Table};
use reqwest::{StatusCode, header};
use sha2::{Digest, Sha256};

use crate::client::{Approach, HttpCache, ScreenClient};
use crate::dataloader::BATCH_WINDOW;
use crate::graphql::{Fetch, Resolvers, build_schema};
use crate::limits::{Limits, nested_query};
use crate::model::{self, DataSize};
use crate::screen::{DASHBOARD_QUERY, Screen};
use crate::server::{AppState, router};

/// How hard a run pushes, per scale.
#[derive(Debug, Clone)]
struct Plan {
    /// Projects on the measured dashboard.
    screen_projects: usize,
    /// Screen sizes for the statements-vs-N chart.
    chart_projects: Vec<usize>,
    /// Concurrent clients in the closed loop.
    clients: usize,
    load_duration: Duration,
    /// Screens loaded by one client alone (single-client p50).
    solo_screens: u64,
    /// `first` values of the bounded nested queries run without limits.
    nested_k: Vec<usize>,
    nested_reps: u64,
}

impl Plan {
    fn for_scale(scale: Scale) -> Self {
        let chart_projects = vec![1, 10, 50, 100];
        match scale {
            Scale::Smoke => Self {
                screen_projects: 5,
                chart_projects,
                clients: 2,
                load_duration: Duration::from_millis(200),
                solo_screens: 2,
                nested_k: vec![2],
                nested_reps: 1,
            },
            Scale::Default => Self {
                screen_projects: 20,
                chart_projects,
                clients: 8,
                load_duration: Duration::from_secs(3),
                solo_screens: 20,
                nested_k: vec![2, 3, 4, 5],
                nested_reps: 3,
            },
            Scale::Large => Self {
                screen_projects: 20,
                chart_projects,
                clients: 16,
                load_duration: Duration::from_secs(10),
                solo_screens: 50,
                nested_k: vec![2, 3, 4, 5, 6],
                nested_reps: 3,
            },
        }
    }
}

pub async fn run(ctx: &LabCtx) -> anyhow::Result<Report> {
    let size = model::seed(ctx).await.context("seeding")?;
    let plan = Plan::for_scale(ctx.scale);
    let screen = Screen::dashboard(plan.screen_projects);

    // The served app, with every statement its handlers run counted (DataLoader batches
    // included: their tasks carry the request's span).
    let sql = SqlCounter::new();
    let state = AppState::new(ctx.pg.clone());
    let server = labkit::http::spawn(sql.count_router(router(state))).await?;
    let client = ScreenClient::new(server.base_url());

    let mut report = ctx.report(crate::TITLE);
    describe_data(&mut report, size, screen);

    let per_screen = one_screen_each(&mut report, &client, &sql, screen).await?;
    statements_vs_n(&mut report, &client, &sql, &plan).await?;
    latency(&mut report, &client, &sql, &plan, screen, &per_screen).await?;
    nested_queries(&mut report, ctx, &client, &sql, &plan).await?;
    caching(&mut report, &client, &sql, screen).await?;
    sentence(&mut report, screen, plan.clients);

    server.stop().await;
    Ok(report)
}

fn describe_data(report: &mut Report, size: DataSize, screen: Screen) {
    report.note(format!(
        "Data: {} users, {} projects, {} tasks ({} per project), {} comments ({} per task); \
         assignees and authors skewed toward a few busy users. The dashboard: {} projects × {} \
         tasks × {} comments.",
        size.users,
        size.projects,
        size.tasks(),
        size.tasks_per_project,
        size.comments(),
        size.comments_per_task,
        screen.projects,
        screen.tasks,
        screen.comments
    ));
}

/// What one quiet screen cost, per approach (in [`Approach::ALL`] order).
struct ScreenCost {
    approach: Approach,
    http: u64,
    sql: u64,
    bytes: u64,
}

/// Load the screen once per approach with nothing else running; count exactly.
async fn one_screen_each(
    report: &mut Report,
    client: &ScreenClient,
    sql: &SqlCounter,
    screen: Screen,
) -> anyhow::Result<Vec<ScreenCost>> {
    let mut costs = Vec::new();
    let mut reference = None;
    for approach in Approach::ALL {
        sql.take();
        let loaded = client
            .load(approach, screen)
            .await
            .with_context(|| format!("{} screen", approach.label()))?;
        let statements = sql.take();
        // All four must render the same screen, or the comparison means nothing.
        match &reference {
            None => reference = Some(loaded.dashboard.clone()),
            Some(r) => ensure!(
                *r == loaded.dashboard,
                "{} rendered a different screen",
                approach.label()
            ),
        }
        costs.push(ScreenCost {
            approach,
            http: loaded.http_requests,
            sql: statements,
            bytes: loaded.bytes_received,
        });
    }
    let get = |a: Approach| {
        costs
            .iter()
            .find(|c| c.approach == a)
            .expect("all measured")
    };
    let chatty = get(Approach::RestChatty);
    report.finding(
        "rest_chatty_http_per_screen",
        "REST chatty: HTTP requests per screen",
        chatty.http as f64,
        "count",
    );
    for a in Approach::ALL {
        let c = get(a);
        report.finding(
            &format!("{}_sql_per_screen", a.key()),
            &format!("{}: SQL statements per screen", a.label()),
            c.sql as f64,
            "count",
        );
    }
    report.finding(
        "graphql_naive_formula_sql_per_screen",
        "GraphQL naive: 1 + N + 2·N·T + N·T·C (predicted)",
        screen.naive_statements() as f64,
        "count",
    );
    for a in Approach::ALL {
        report.finding(
            &format!("{}_bytes_per_screen", a.key()),
            &format!("{}: bytes received per screen", a.label()),
            get(a).bytes as f64,
            "bytes",
        );
    }
    Ok(costs)
}

/// Statements (and requests) per screen for N = 1, 10, 50, 100 projects.
async fn statements_vs_n(
    report: &mut Report,
    client: &ScreenClient,
    sql: &SqlCounter,
    plan: &Plan,
) -> anyhow::Result<()> {
    let mut table = Table::new(
        "SQL statements per screen as the dashboard grows (T = 10 tasks, C = 3 comments)",
        &[
            "projects N",
            "REST chatty: HTTP requests",
            "REST chatty: SQL",
            "REST BFF: SQL",
            "GraphQL naive: SQL",
            "naive formula 1+N+2NT+NTC",
            "GraphQL DataLoader: SQL",
        ],
    );
    let mut series: Vec<(Approach, Vec<(f64, f64)>)> =
        Approach::ALL.iter().map(|a| (*a, Vec::new())).collect();
    for &n in &plan.chart_projects {
        let screen = Screen::dashboard(n);
        let mut row = vec![n.to_string()];
        let mut chatty_http = 0;
        let mut counts = Vec::new();
        for (approach, points) in series.iter_mut() {
            sql.take();
            let loaded = client.load(*approach, screen).await?;
            let statements = sql.take();
            if *approach == Approach::RestChatty {
                chatty_http = loaded.http_requests;
            }
            points.push((n as f64, statements as f64));
            counts.push(statements);
        }
        row.push(chatty_http.to_string());
        row.extend(counts[..3].iter().map(u64::to_string));
        row.push(screen.naive_statements().to_string());
        row.push(counts[3].to_string());
        table.row(row);
        if n == 100 {
            report.finding(
                "graphql_naive_sql_at_100_projects",
                "GraphQL naive: SQL statements, 100-project screen",
                counts[2] as f64,
                "count",
            );
            report.finding(
                "graphql_dataloader_sql_at_100_projects",
                "GraphQL DataLoader: SQL statements, 100-project screen",
                counts[3] as f64,
                "count",
            );
        }
    }
    report.table(table);
    let dataloader = &series[3].1;
    if dataloader.iter().any(|&(_, sql)| sql != 5.0) {
        let counts: Vec<String> = dataloader.iter().map(|(_, sql)| sql.to_string()).collect();
        let ns: Vec<String> = dataloader.iter().map(|(n, _)| n.to_string()).collect();
        report.note(format!(
            "DataLoader batches by a {} ms time window, not by level: it ran {} statements at \
             N = {}. Beyond 30 projects async-graphql resolves the list over many scheduler \
             turns, and a batch whose window closes in between splits the level (see \
             dataloader.rs).",
            BATCH_WINDOW.as_millis(),
            counts.join(", "),
            ns.join(", ")
        ));
    }
    let mut chart = Chart::new(
        "sql-per-screen",
        "SQL statements per dashboard screen",
        "projects on the screen (N)",
        "SQL statements per screen",
    )
    .log_x()
    .log_y();
    for (approach, points) in series {
        chart = chart.series(approach.label(), points);
    }
    report.chart(chart);
    Ok(())
}

/// One client alone, then a closed loop of `plan.clients`, per approach.
async fn latency(
    report: &mut Report,
    client: &ScreenClient,
    sql: &SqlCounter,
    plan: &Plan,
    screen: Screen,
    per_screen: &[ScreenCost],
) -> anyhow::Result<()> {
    let mut table = Table::new(
        format!(
            "The dashboard ({} projects), per approach: {} clients in a closed loop for {:.0} s each",
            screen.projects,
            plan.clients,
            plan.load_duration.as_secs_f64()
        ),
        &[
            "approach",
            "HTTP requests",
            "SQL statements",
            "KiB received",
            "1 client p50 ms",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "screens/s",
            "SQL/screen under load",
            "errors",
        ],
    );
    for cost in per_screen {
        let approach = cost.approach;
        // Warm up: connections open, statements prepared on the pool's connections.
        for _ in 0..2 {
            client.load(approach, screen).await?;
        }
        let solo = sequential(plan.solo_screens, |_| client.load(approach, screen)).await;

        let first_error: Arc<Mutex<Option<String>>> = Arc::default();
        sql.take();
        let load = {
            let client = client.clone();
            let first_error = first_error.clone();
            labkit::closed_loop(
                ClosedLoop::new(plan.clients, Bound::Duration(plan.load_duration)),
                move |_| {
                    let client = client.clone();
                    let first_error = first_error.clone();
                    async move {
                        let r = client.load(approach, screen).await;
                        if let Err(e) = &r {
                            first_error
                                .lock()
                                .expect("error slot")
                                .get_or_insert_with(|| e.to_string());
                        }
                        r.map(|_| ())
                    }
                },
            )
            .await
        };
        let statements = sql.take();
        let s = load.summary;
        let screens = (s.count + s.errors).max(1);
        let mean_sql = statements as f64 / screens as f64;
        if approach == Approach::GraphQLDataLoader && mean_sql != cost.sql as f64 {
            report.note(format!(
                "Under load DataLoader averaged {mean_sql:.2} statements per screen against {} \
                 when quiet: with a busy CPU its time windows split a level (more batches) or \
                 let the assignee and comment-author batches of users merge (fewer).",
                cost.sql
            ));
        }
        if let Some(e) = first_error.lock().expect("error slot").take() {
            report.note(format!(
                "{}: {} of {} screens failed under load; first error: {e}",
                approach.label(),
                s.errors,
                screens
            ));
        }
        report.finding(
            &format!("{}_p95_ms", approach.key()),
            &format!(
                "{}: p95 per screen, {} clients",
                approach.label(),
                plan.clients
            ),
            s.p95_ms,
            "ms",
        );
        table.row([
            approach.label().to_string(),
            cost.http.to_string(),
            cost.sql.to_string(),
            format!("{:.1}", cost.bytes as f64 / 1024.0),
            format!("{:.2}", solo.p50_ms),
            format!("{:.2}", s.p50_ms),
            format!("{:.2}", s.p95_ms),
            format!("{:.2}", s.p99_ms),
            format!("{:.1}", s.throughput_per_s),
            format!("{mean_sql:.1}"),
            s.errors.to_string(),
        ]);
    }
    report.table(table);
    report.note(
        "Server, Postgres, the load driver and the clients share the same machine's cores, as on \
         a laptop; the chatty client's cost is mostly per-request overhead on both sides of \
         loopback HTTP.",
    );
    Ok(())
}

/// Objects in a GraphQL `data` tree (every JSON object counts once).
fn count_objects(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::Object(m) => 1 + m.values().map(count_objects).sum::<u64>(),
        serde_json::Value::Array(a) => a.iter().map(count_objects).sum(),
        _ => 0,
    }
}

async fn nested_queries(
    report: &mut Report,
    ctx: &LabCtx,
    client: &ScreenClient,
    sql: &SqlCounter,
    plan: &Plan,
) -> anyhow::Result<()> {
    // Bounded versions run in-process on a schema *without* limits, to see what the query
    // costs when nothing stops it. That schema is never served.
    let unprotected = build_schema(None);
    let mut table = Table::new(
        "The nested query (task → assignee → assignedTasks → comments → author → assignedTasks), \
         bounded by `first: k`, on a schema without limits",
        &[
            "k",
            "objects returned",
            "naive: SQL",
            "naive: p50 ms",
            "DataLoader: SQL",
            "DataLoader: p50 ms",
        ],
    );
    let mut biggest = (0, 0.0);
    for &k in &plan.nested_k {
        let query = nested_query(k);
        let mut row = vec![k.to_string()];
        let mut cells = Vec::new();
        let mut objects = 0;
        for resolvers in [Resolvers::Naive, Resolvers::DataLoader] {
            sql.take();
            let response = sql
                .scope(unprotected.execute(
                    async_graphql::Request::new(query.clone()).data(Fetch::new(resolvers, &ctx.pg)),
                ))
                .await;
            let statements = sql.take();
            if !response.errors.is_empty() {
                bail!("nested query k={k}: {:?}", response.errors);
            }
            objects = count_objects(&response.data.into_json()?);
            let timing = sequential(plan.nested_reps, |_| {
                let request =
                    async_graphql::Request::new(query.clone()).data(Fetch::new(resolvers, &ctx.pg));
                let unprotected = &unprotected;
                async move { Ok::<_, ()>(unprotected.execute(request).await) }
            })
            .await;
            sql.take();
            cells.push(statements.to_string());
            cells.push(format!("{:.1}", timing.p50_ms));
            if resolvers == Resolvers::Naive {
                biggest = (statements, timing.p50_ms);
            }
        }
        row.push(objects.to_string());
        row.extend(cells);
        table.row(row);
    }
    report.table(table);
    report.finding(
        "deep_query_bounded_naive_sql",
        &format!(
            "Nested query, k = {}, no limits: naive SQL statements",
            plan.nested_k.last().copied().unwrap_or(0)
        ),
        biggest.0 as f64,
        "count",
    );
    report.finding(
        "deep_query_bounded_naive_ms",
        &format!(
            "Nested query, k = {}, no limits: naive p50",
            plan.nested_k.last().copied().unwrap_or(0)
        ),
        biggest.1,
        "ms",
    );

    // The served endpoint, limits on: the full query and two other ways to ask too much.
    let mut limits = Table::new(
        format!(
            "Query limits on the served endpoint (depth ≤ {}, complexity ≤ {}, first ≤ 100)",
            Limits::SERVED.max_depth,
            Limits::SERVED.max_complexity
        ),
        &["query", "HTTP status", "error", "SQL statements run"],
    );
    let attempts = [
        ("nested, k = 10 (depth 8)", nested_query(10)),
        (
            "wide: projects(100) × tasks(100) × comments(100)",
            "{ projects(first: 100) { tasks(first: 100) { comments(first: 100) { id } } } }"
                .to_string(),
        ),
        (
            "page too large: projects(first: 1000)",
            "{ projects(first: 1000) { id } }".to_string(),
        ),
    ];
    let mut deep_rejected = false;
    for (i, (label, query)) in attempts.iter().enumerate() {
        sql.take();
        let ex = client
            .exchange(
                client
                    .http()
                    .post(client.url("/graphql"))
                    .header(header::ACCEPT, "application/graphql-response+json")
                    .json(&serde_json::json!({ "query": query })),
            )
            .await?;
        let statements = sql.take();
        let body: serde_json::Value = serde_json::from_slice(&ex.body)?;
        let message = body["errors"][0]["message"]
            .as_str()
            .unwrap_or("(no error)")
            .to_string();
        if i == 0 {
            deep_rejected = body["errors"][0]["extensions"]["code"] == "DEPTH_LIMIT_EXCEEDED"
                && body.get("data").is_none()
                && statements == 0;
        }
        limits.row([
            label.to_string(),
            ex.status.as_u16().to_string(),
            message,
            statements.to_string(),
        ]);
    }
    report.table(limits);
    report.finding(
        "deep_query_rejected",
        "Nested query (k = 10, depth 8) rejected before execution, 0 SQL statements",
        if deep_rejected { 1.0 } else { 0.0 },
        "bool",
    );
    Ok(())
}

async fn caching(
    report: &mut Report,
    client: &ScreenClient,
    sql: &SqlCounter,
    screen: Screen,
) -> anyhow::Result<()> {
    let mut table = Table::new(
        "Caching: load, then revalidate with If-None-Match",
        &[
            "what",
            "HTTP requests",
            "304 Not Modified",
            "bytes received",
            "SQL statements",
        ],
    );
    // REST, chatty: every resource revalidated.
    let cache = HttpCache::default();
    sql.take();
    let first = client.rest_chatty(screen, Some(&cache)).await?;
    let first_sql = sql.take();
    let again = client.rest_chatty(screen, Some(&cache)).await?;
    let again_sql = sql.take();
    ensure!(
        first.dashboard == again.dashboard,
        "revalidated screen differs"
    );
    table.row([
        "REST chatty: first load".to_string(),
        first.http_requests.to_string(),
        first.not_modified.to_string(),
        first.bytes_received.to_string(),
        first_sql.to_string(),
    ]);
    table.row([
        "REST chatty: revalidate".to_string(),
        again.http_requests.to_string(),
        again.not_modified.to_string(),
        again.bytes_received.to_string(),
        again_sql.to_string(),
    ]);
    let saved = 1.0 - again.bytes_received as f64 / first.bytes_received.max(1) as f64;
    report.finding(
        "etag_bytes_saved_ratio",
        "REST chatty screen revalidated with ETags: share of bytes saved (0–1)",
        saved,
        "",
    );
    report.finding(
        "rest_revalidation_sql_per_screen",
        "REST chatty screen revalidated (all 304): SQL statements still run",
        again_sql as f64,
        "count",
    );

    // REST, BFF: one big body, one 304.
    let cache = HttpCache::default();
    let first = client.rest_bff(screen, Some(&cache)).await?;
    let first_sql = sql.take();
    let again = client.rest_bff(screen, Some(&cache)).await?;
    let again_sql = sql.take();
    for (what, l, s) in [
        ("REST BFF: first load", &first, first_sql),
        ("REST BFF: revalidate", &again, again_sql),
    ] {
        table.row([
            what.to_string(),
            l.http_requests.to_string(),
            l.not_modified.to_string(),
            l.bytes_received.to_string(),
            s.to_string(),
        ]);
    }

    // GraphQL: the dashboard as a persisted query, fetched by GET with its hash.
    let post_body = serde_json::to_vec(
        &serde_json::json!({ "query": DASHBOARD_QUERY, "variables": screen.variables() }),
    )?;
    let hash = format!("{:x}", Sha256::digest(DASHBOARD_QUERY.as_bytes()));
    let extensions =
        serde_json::json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } }).to_string();
    let variables = screen.variables().to_string();
    let base = client.url("/graphql");
    let url_with = |params: &[(&str, &str)]| {
        reqwest::Url::parse_with_params(&base, params).expect("a valid URL")
    };
    let hash_url = url_with(&[("variables", &variables), ("extensions", &extensions)]);
    let by_hash = || client.http().get(hash_url.clone());
    // Apollo's protocol: try the hash; on PersistedQueryNotFound send the text once.
    let miss = client.exchange(by_hash()).await?;
    let miss_body = String::from_utf8_lossy(&miss.body).to_string();
    ensure!(
        miss_body.contains("PersistedQueryNotFound"),
        "expected a persisted-query miss, got {miss_body}"
    );
    let register_url = url_with(&[
        ("query", DASHBOARD_QUERY),
        ("variables", &variables),
        ("extensions", &extensions),
    ]);
    let register = client.exchange(client.http().get(register_url)).await?;
    ensure!(register.status == StatusCode::OK, "registering the query");
    sql.take();
    let hit = client.exchange(by_hash()).await?;
    let hit_sql = sql.take();
    ensure!(
        hit.status == StatusCode::OK,
        "persisted GET: {}",
        hit.status
    );
    let etag = hit.etag().context("persisted GET has an ETag")?.to_string();
    let revalidated = client
        .exchange(by_hash().header(header::IF_NONE_MATCH, &etag))
        .await?;
    let revalidated_sql = sql.take();
    let get_url_bytes = hash_url.as_str().len();
    table.row([
        "GraphQL persisted query, GET by hash".to_string(),
        "1".to_string(),
        "0".to_string(),
        hit.wire_bytes.to_string(),
        hit_sql.to_string(),
    ]);
    table.row([
        "GraphQL persisted query, GET + If-None-Match".to_string(),
        "1".to_string(),
        u8::from(revalidated.status == StatusCode::NOT_MODIFIED).to_string(),
        revalidated.wire_bytes.to_string(),
        revalidated_sql.to_string(),
    ]);
    report.table(table);
    report.finding(
        "graphql_persisted_get_304",
        "GraphQL persisted query via GET revalidates to 304",
        if revalidated.status == StatusCode::NOT_MODIFIED {
            1.0
        } else {
            0.0
        },
        "bool",
    );
    report.finding(
        "graphql_post_request_body_bytes",
        "GraphQL dashboard POST: request body (query text + variables)",
        post_body.len() as f64,
        "bytes",
    );
    report.finding(
        "graphql_persisted_get_url_bytes",
        "GraphQL dashboard persisted GET: whole URL (hash + variables)",
        get_url_bytes as f64,
        "bytes",
    );
    report.note(
        "A 304 saves bytes, not work: the server runs the same statements to build the body it \
         hashes into the ETag (the SQL column above). Skipping the queries needs a cheaper \
         validator, such as a version column.",
    );
    Ok(())
}

fn sentence(report: &mut Report, screen: Screen, clients: usize) {
    let v = |k: &str| report.get(k).unwrap_or(f64::NAN);
    let s = format!(
        "On a {n}-project dashboard the chatty REST client made {http:.0} HTTP requests; GraphQL \
         made one, but naive resolvers ran {naive:.0} SQL statements for it, where DataLoader ran \
         {dl:.0} (still {dl100:.0} at 100 projects) and a BFF endpoint {bff:.0}; under {clients} \
         clients the p95 per screen was {p_chatty:.1} ms chatty REST, {p_naive:.1} ms naive \
         GraphQL, {p_dl:.1} ms DataLoader and {p_bff:.1} ms BFF.",
        n = screen.projects,
        http = v("rest_chatty_http_per_screen"),
        naive = v("graphql_naive_sql_per_screen"),
        dl = v("graphql_dataloader_sql_per_screen"),
        dl100 = v("graphql_dataloader_sql_at_100_projects"),
        bff = v("rest_bff_sql_per_screen"),
        p_chatty = v("rest_chatty_p95_ms"),
        p_naive = v("graphql_naive_p95_ms"),
        p_dl = v("graphql_dataloader_p95_ms"),
        p_bff = v("rest_bff_p95_ms"),
    );
    report.sentence(s);
}
