//! The report: findings, tables, the chart, notes and the sentence, built from what the run
//! measured (`scenarios.rs`). Nothing here measures.

use labkit::{Better, Chart, LabCtx, Report, Table};

use crate::client::Approach;
use crate::dataloader::BATCH_WINDOW;
use crate::limits::{Limits, STATEMENT_COST};
use crate::model::DataSize;
use crate::scenarios::{ApproachLoad, Attempt, Caching, Growth, LoadShape, Nested, ScreenCost};
use crate::screen::Screen;

/// Everything the run measured.
#[derive(Debug)]
pub struct Measured {
    pub size: DataSize,
    pub screen: Screen,
    pub costs: Vec<ScreenCost>,
    pub growth: Vec<Growth>,
    /// DataLoader without the prefetch at `window_split_projects`, one count per run.
    pub window_split: Vec<u64>,
    pub window_split_projects: usize,
    pub shape: LoadShape,
    pub loads: Vec<ApproachLoad>,
    pub nested: Vec<Nested>,
    /// Aliases sent to the served endpoint, and in the unprotected run (fewer at smoke scale).
    pub alias_bomb_aliases: usize,
    pub alias_bomb_unprotected_aliases: usize,
    pub alias_bomb_unprotected_sql: u64,
    pub attempts: Vec<Attempt>,
    pub caching: Caching,
    /// (endpoint, distinct bodies) over `identical_posts` identical dashboard POSTs.
    pub distinct_bodies: Vec<(&'static str, usize)>,
    pub identical_posts: usize,
}

pub fn build(ctx: &LabCtx, m: &Measured) -> Report {
    let mut report = ctx.report(crate::TITLE);
    data(&mut report, m);
    one_screen(&mut report, m);
    growth(&mut report, m);
    latency(&mut report, m);
    limits(&mut report, m);
    caching(&mut report, m);
    sentence(&mut report, m);
    report
}

/// A count where fewer is better.
fn count(report: &mut Report, key: &str, label: &str, value: u64) {
    report
        .finding(key, label, value as f64, "count")
        .better(key, Better::Lower);
}

fn data(report: &mut Report, m: &Measured) {
    let (size, screen) = (m.size, m.screen);
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

fn one_screen(report: &mut Report, m: &Measured) {
    let get = |a: Approach| m.costs.iter().find(|c| c.approach == a).expect("measured");
    count(
        report,
        "rest_chatty_http_per_screen",
        "REST chatty: HTTP requests per screen",
        get(Approach::RestChatty).http,
    );
    for a in Approach::ALL {
        count(
            report,
            &format!("{}_sql_per_screen", a.key()),
            &format!("{}: SQL statements per screen", a.label()),
            get(a).sql,
        );
    }
    report.finding(
        "graphql_naive_formula_sql_per_screen",
        "GraphQL naive: 1 + N + 2·N·T + N·T·C (predicted)",
        m.screen.naive_statements() as f64,
        "count",
    );
    for a in Approach::ALL {
        let key = format!("{}_bytes_per_screen", a.key());
        report
            .finding(
                &key,
                &format!("{}: bytes received per screen", a.label()),
                get(a).bytes as f64,
                "bytes",
            )
            .better(&key, Better::Lower);
    }
}

fn growth(report: &mut Report, m: &Measured) {
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
    for g in &m.growth {
        let mut row = vec![g.projects.to_string(), g.chatty_http.to_string()];
        row.extend(g.sql[..3].iter().map(u64::to_string));
        row.push(Screen::dashboard(g.projects).naive_statements().to_string());
        row.push(g.sql[3].to_string());
        table.row(row);
    }
    report.table(table);
    if let Some(g) = m.growth.iter().find(|g| g.projects == 100) {
        count(
            report,
            "graphql_naive_sql_at_100_projects",
            "GraphQL naive: SQL statements, 100-project screen",
            g.sql[2],
        );
        count(
            report,
            "graphql_dataloader_sql_at_100_projects",
            "GraphQL DataLoader: SQL statements, 100-project screen",
            g.sql[3],
        );
    }
    let dataloader: Vec<u64> = m.growth.iter().map(|g| g.sql[3]).collect();
    let sizes: Vec<String> = m.growth.iter().map(|g| g.projects.to_string()).collect();
    report.flag(
        "graphql_dataloader_flat",
        &format!(
            "GraphQL DataLoader: the same SQL statements per screen at N = {}",
            sizes.join(", ")
        ),
        dataloader.windows(2).all(|w| w[0] == w[1]),
    );

    let mut split = m.window_split.clone();
    split.sort_unstable();
    let median = split.get(split.len() / 2).copied().unwrap_or(0);
    count(
        report,
        "graphql_dataloader_window_split_sql_at_100_projects",
        &format!(
            "GraphQL DataLoader without the per-level prefetch (1 ms window only): SQL statements, \
             {}-project screen (median of {})",
            m.window_split_projects,
            split.len()
        ),
        median,
    );
    report.note(format!(
        "DataLoader without the prefetch ran {} statements on the {}-project screen in {} runs, \
         against {} with it: the loader batches by a {} ms time window, and async-graphql \
         resolves a list longer than 30 through a FuturesOrdered that yields to the scheduler \
         every few items, so the window closes before the level has registered all its keys and \
         the level splits. The served endpoint loads each level for all its parents with one \
         load_many into the loader's cache first (prefetch.rs), which is deterministic.",
        m.window_split
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        m.window_split_projects,
        m.window_split.len(),
        dataloader.last().copied().unwrap_or(0),
        BATCH_WINDOW.as_millis(),
    ));

    let mut chart = Chart::new(
        "sql-per-screen",
        "SQL statements per dashboard screen",
        "projects on the screen (N)",
        "SQL statements per screen",
    )
    .log_x()
    .log_y();
    for (i, a) in Approach::ALL.iter().enumerate() {
        let points = m
            .growth
            .iter()
            .map(|g| (g.projects as f64, g.sql[i] as f64))
            .collect();
        chart = chart.series(a.label(), points);
    }
    report.chart(chart);
}

fn latency(report: &mut Report, m: &Measured) {
    let LoadShape {
        clients, duration, ..
    } = m.shape;
    let mut table = Table::new(
        format!(
            "The dashboard ({} projects), per approach: {clients} clients in a closed loop for {:.1} s each",
            m.screen.projects,
            duration.as_secs_f64()
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
    for l in &m.loads {
        let cost = m
            .costs
            .iter()
            .find(|c| c.approach == l.approach)
            .expect("measured");
        let s = &l.load.summary;
        report.p95(
            &format!("{}_p95_ms", l.approach.key()),
            &format!("{}: p95 per screen, {clients} clients", l.approach.label()),
            s,
        );
        if let Some(e) = &l.load.first_error {
            report.note(format!(
                "{}: {} of {} screens failed under load; first error: {e}",
                l.approach.label(),
                s.errors,
                s.count + s.errors
            ));
        }
        table.row([
            l.approach.label().to_string(),
            cost.http.to_string(),
            cost.sql.to_string(),
            format!("{:.1}", cost.bytes as f64 / 1024.0),
            format!("{:.2}", l.solo.p50_ms),
            format!("{:.2}", s.p50_ms),
            format!("{:.2}", s.p95_ms),
            format!("{:.2}", s.p99_ms),
            format!("{:.1}", s.throughput_per_s),
            format!("{:.1}", l.sql_per_screen),
            s.errors.to_string(),
        ]);
    }
    report.table(table);
    report.note(
        "Server, Postgres and the load driver share the same machine's cores, as on a laptop; \
         each client sends over its own keep-alive connections (six, like a browser per host), \
         so the driver costs microseconds per request and the chatty client's cost is mostly \
         per-request work on the server's side of loopback HTTP.",
    );
}

fn limits(report: &mut Report, m: &Measured) {
    let mut nested = Table::new(
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
    for n in &m.nested {
        nested.row([
            n.k.to_string(),
            n.objects.to_string(),
            n.naive_sql.to_string(),
            format!("{:.1}", n.naive.p50_ms),
            n.dataloader_sql.to_string(),
            format!("{:.1}", n.dataloader.p50_ms),
        ]);
    }
    report.table(nested);
    if let Some(biggest) = m.nested.last() {
        count(
            report,
            "deep_query_bounded_naive_sql",
            &format!(
                "Nested query, k = {}, no limits: naive SQL statements",
                biggest.k
            ),
            biggest.naive_sql,
        );
        report.p50(
            "deep_query_bounded_naive_ms",
            &format!("Nested query, k = {}, no limits: naive p50", biggest.k),
            &biggest.naive,
        );
    }

    let mut table = Table::new(
        format!(
            "Query limits on the served endpoint (/graphql/naive): depth ≤ {}, complexity ≤ {} \
             (a statement costs {STATEMENT_COST}), first ≤ 100",
            Limits::SERVED.max_depth,
            Limits::SERVED.max_complexity
        ),
        &[
            "query",
            "query bytes",
            "HTTP status",
            "error",
            "SQL statements run",
        ],
    );
    for a in &m.attempts {
        table.row([
            a.label.clone(),
            a.query_bytes.to_string(),
            a.status.to_string(),
            a.message.clone(),
            a.sql.to_string(),
        ]);
    }
    report.table(table);
    let rejected = |code: &str, label_starts: &str| {
        m.attempts
            .iter()
            .find(|a| a.label.starts_with(label_starts))
            .is_some_and(|a| a.rejected_with(code))
    };
    report.flag(
        "deep_query_rejected",
        "Nested query (k = 10, depth 8) rejected before execution, 0 SQL statements",
        rejected("DEPTH_LIMIT_EXCEEDED", "nested"),
    );
    report.flag(
        "alias_bomb_rejected",
        &format!(
            "Alias bomb ({} aliases, depth 3) rejected by complexity before execution, 0 SQL \
             statements",
            m.alias_bomb_aliases
        ),
        rejected("COMPLEXITY_LIMIT_EXCEEDED", "alias bomb"),
    );
    count(
        report,
        "alias_bomb_unprotected_naive_sql",
        &format!(
            "Alias bomb ({} aliases), no limits: naive SQL statements in one request",
            m.alias_bomb_unprotected_aliases
        ),
        m.alias_bomb_unprotected_sql,
    );
}

fn caching(report: &mut Report, m: &Measured) {
    let c = &m.caching;
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
    for s in &c.steps {
        table.row([
            s.what.clone(),
            s.http.to_string(),
            s.not_modified.to_string(),
            s.bytes.to_string(),
            s.sql.to_string(),
        ]);
    }
    report.table(table);
    report.finding(
        "etag_bytes_saved_ratio",
        "REST chatty screen revalidated with ETags: share of bytes saved (0–1)",
        1.0 - c.chatty_again_bytes as f64 / c.chatty_first_bytes.max(1) as f64,
        "",
    );
    count(
        report,
        "rest_revalidation_sql_per_screen",
        "REST chatty screen revalidated (all 304): SQL statements still run",
        c.chatty_again_sql,
    );
    report.flag(
        "graphql_persisted_get_304",
        "GraphQL persisted query via GET revalidates to 304",
        c.persisted_304,
    );
    report.flag(
        "graphql_naive_persisted_get_304",
        "GraphQL persisted query via GET on /graphql/naive revalidates to 304",
        c.naive_persisted_304,
    );
    let most = m.distinct_bodies.iter().map(|(_, n)| *n).max().unwrap_or(0);
    count(
        report,
        "graphql_distinct_bodies_for_identical_posts",
        &format!(
            "GraphQL: different response bodies for {} identical dashboard POSTs (worst endpoint)",
            m.identical_posts
        ),
        most as u64,
    );
    report.finding(
        "graphql_post_request_body_bytes",
        "GraphQL dashboard POST: request body (query text + variables)",
        c.post_body_bytes as f64,
        "bytes",
    );
    report.finding(
        "graphql_persisted_get_url_bytes",
        "GraphQL dashboard persisted GET: whole URL (hash + variables)",
        c.get_url_bytes as f64,
        "bytes",
    );
    report.note(
        "A 304 saves bytes, not work: the server runs the same statements to build the body it \
         hashes into the ETag (the SQL column above). Skipping the queries needs a cheaper \
         validator, such as a version column. The ETag also needs a byte-stable body: \
         async-graphql assembles objects in the order their fields finish, so the lab puts every \
         response back in query order (field_order.rs).",
    );
}

fn sentence(report: &mut Report, m: &Measured) {
    let v = |k: &str| report.get(k).unwrap_or(f64::NAN);
    let s = format!(
        "On a {n}-project dashboard the chatty REST client made {http:.0} HTTP requests; GraphQL \
         made one, but naive resolvers ran {naive:.0} SQL statements for it, where DataLoader ran \
         {dl:.0} (still {dl100:.0} at 100 projects, once each level is prefetched; {split:.0} when \
         it batched by time window alone) and a BFF endpoint {bff:.0}; under {clients} clients \
         the p95 per screen was {p_chatty:.1} ms chatty REST, {p_naive:.1} ms naive GraphQL, \
         {p_dl:.1} ms DataLoader and {p_bff:.1} ms BFF; with no limits {aliases} aliases of a \
         three-deep query ran {bomb:.0} statements in one request, and the complexity limit \
         refuses {served} before the first.",
        n = m.screen.projects,
        http = v("rest_chatty_http_per_screen"),
        naive = v("graphql_naive_sql_per_screen"),
        dl = v("graphql_dataloader_sql_per_screen"),
        dl100 = v("graphql_dataloader_sql_at_100_projects"),
        split = v("graphql_dataloader_window_split_sql_at_100_projects"),
        bff = v("rest_bff_sql_per_screen"),
        clients = m.shape.clients,
        p_chatty = v("rest_chatty_p95_ms"),
        p_naive = v("graphql_naive_p95_ms"),
        p_dl = v("graphql_dataloader_p95_ms"),
        p_bff = v("rest_bff_p95_ms"),
        aliases = m.alias_bomb_unprotected_aliases,
        bomb = v("alias_bomb_unprotected_naive_sql"),
        served = m.alias_bomb_aliases,
    );
    report.sentence(s);
}
