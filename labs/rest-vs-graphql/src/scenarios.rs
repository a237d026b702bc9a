//! The measurements the run strings together. Each returns plain numbers; `report.rs` turns
//! them into findings, tables and notes.
//!
//! Statements are counted exactly: `sql` is the `labkit::SqlCounter` wrapped around the
//! served router (DataLoader batch tasks carry the request's span, so they count too), or
//! around an in-process `schema.execute` for the schemas that are never served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use labkit::measure::sequential;
use labkit::{Bound, ClosedLoop, LatencySummary, LoadResult, SqlCounter};
use reqwest::{StatusCode, header};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::client::{Approach, Exchange, HttpCache, Loaded, ScreenClient};
use crate::graphql::{Fetch, LabSchema, Resolvers, build_schema};
use crate::limits::{alias_bomb, nested_query};
use crate::screen::{DASHBOARD_QUERY, Screen};

// ---------------------------------------------------------------------------------------
// 1. One quiet screen per approach, and statements as the screen grows
// ---------------------------------------------------------------------------------------

/// What one quiet screen cost.
#[derive(Debug, Clone, Copy)]
pub struct ScreenCost {
    pub approach: Approach,
    pub http: u64,
    pub sql: u64,
    pub bytes: u64,
}

/// Load `screen` once per approach ([`Approach::ALL`] order) with nothing else running, and
/// check all four rendered the same screen (or the comparison means nothing).
pub async fn one_screen_each(
    client: &ScreenClient,
    sql: &SqlCounter,
    screen: Screen,
) -> anyhow::Result<Vec<ScreenCost>> {
    let mut costs = Vec::new();
    let mut reference: Option<Loaded> = None;
    for approach in Approach::ALL {
        sql.take();
        let loaded = client
            .load(approach, screen)
            .await
            .with_context(|| format!("{} screen", approach.label()))?;
        let statements = sql.take();
        if let Some(r) = &reference {
            ensure!(
                r.dashboard == loaded.dashboard,
                "{} rendered a different screen",
                approach.label()
            );
        }
        costs.push(ScreenCost {
            approach,
            http: loaded.http_requests,
            sql: statements,
            bytes: loaded.bytes_received,
        });
        reference.get_or_insert(loaded);
    }
    Ok(costs)
}

/// Statements per approach at one screen size.
#[derive(Debug, Clone)]
pub struct Growth {
    pub projects: usize,
    pub chatty_http: u64,
    /// In [`Approach::ALL`] order.
    pub sql: Vec<u64>,
}

pub async fn growth(
    client: &ScreenClient,
    sql: &SqlCounter,
    sizes: &[usize],
) -> anyhow::Result<Vec<Growth>> {
    let mut rows = Vec::new();
    for &n in sizes {
        let mut row = Growth {
            projects: n,
            chatty_http: 0,
            sql: Vec::new(),
        };
        for approach in Approach::ALL {
            sql.take();
            let loaded = client.load(approach, Screen::dashboard(n)).await?;
            row.sql.push(sql.take());
            if approach == Approach::RestChatty {
                row.chatty_http = loaded.http_requests;
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The DataLoader *without* the per-level prefetch (batches close on the 1 ms window), on a
/// `projects`-project dashboard, `runs` times: statements per screen each time. In process,
/// on the runtime the run uses; never served.
pub async fn window_split(
    pool: &PgPool,
    sql: &SqlCounter,
    projects: usize,
    runs: usize,
) -> anyhow::Result<Vec<u64>> {
    let schema = build_schema(None);
    let screen = Screen::dashboard(projects);
    let mut counts = Vec::new();
    for _ in 0..runs {
        let request = async_graphql::Request::new(DASHBOARD_QUERY)
            .variables(async_graphql::Variables::from_json(screen.variables()))
            .data(Fetch::new(Resolvers::DataLoaderWindowOnly, pool));
        sql.take();
        let response = sql.scope(schema.execute(request)).await;
        counts.push(sql.take());
        ensure!(response.errors.is_empty(), "{:?}", response.errors);
    }
    Ok(counts)
}

// ---------------------------------------------------------------------------------------
// 2. Latency: one client alone, then a closed loop
// ---------------------------------------------------------------------------------------

/// The load phases' shape, from the knobs.
#[derive(Debug, Clone, Copy)]
pub struct LoadShape {
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Screens loaded by one client alone, for the single-client p50.
    pub solo_screens: u64,
}

/// One approach under load.
#[derive(Debug, Clone)]
pub struct ApproachLoad {
    pub approach: Approach,
    pub solo: LatencySummary,
    pub load: LoadResult,
    /// Statements per screen over the loaded phase (warm-up included on both sides).
    pub sql_per_screen: f64,
}

/// Per approach: `solo_screens` loads by one client, then `clients` in a closed loop, each on
/// its own keep-alive connections (six per client, a browser's per-host limit).
pub async fn under_load(
    addr: SocketAddr,
    client: &ScreenClient,
    sql: &SqlCounter,
    shape: LoadShape,
    screen: Screen,
) -> Vec<ApproachLoad> {
    let conns = ScreenClient::connections(addr, shape.clients);
    let mut out = Vec::new();
    for approach in Approach::ALL {
        let op = |screens: Arc<AtomicU64>| {
            let client = client.clone();
            let conns = conns.clone();
            move |call: labkit::measure::Call| {
                let client = client.on_connections(conns.clone(), call.worker);
                screens.fetch_add(1, Ordering::Relaxed);
                async move { client.load(approach, screen).await.map(|_| ()) }
            }
        };
        let solo = labkit::closed_loop(
            ClosedLoop::new(1, Bound::Count(shape.solo_screens))
                .label(format!("{}: 1 client", approach.label())),
            op(Arc::default()),
        )
        .await
        .summary;
        let screens = Arc::new(AtomicU64::new(0));
        sql.take();
        let load = labkit::closed_loop(
            ClosedLoop::new(shape.clients, Bound::Duration(shape.duration))
                .warmup(shape.warmup)
                .label(format!("{}: {} clients", approach.label(), shape.clients)),
            op(screens.clone()),
        )
        .await;
        let statements = sql.take();
        out.push(ApproachLoad {
            approach,
            solo,
            load,
            sql_per_screen: statements as f64 / screens.load(Ordering::Relaxed).max(1) as f64,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------
// 3. Query limits: what a nested query or an alias bomb costs unprotected, and the served
//    endpoint refusing them
// ---------------------------------------------------------------------------------------

/// The nested query at one `k`, on a schema without limits.
#[derive(Debug, Clone, Copy)]
pub struct Nested {
    pub k: usize,
    pub objects: u64,
    pub naive_sql: u64,
    pub naive: LatencySummary,
    pub dataloader_sql: u64,
    pub dataloader: LatencySummary,
}

/// Run `nested_query(k)` in process on the unprotected schema (never served): statements
/// once, then `reps` timed runs, per resolver kind.
pub async fn nested_unprotected(
    pool: &PgPool,
    sql: &SqlCounter,
    ks: &[usize],
    reps: u64,
) -> anyhow::Result<Vec<Nested>> {
    let unprotected = build_schema(None);
    let mut out = Vec::new();
    for &k in ks {
        let query = nested_query(k);
        let (naive_sql, objects, naive) =
            unprotected_cost(&unprotected, pool, sql, &query, Resolvers::Naive, reps).await?;
        let (dataloader_sql, _, dataloader) =
            unprotected_cost(&unprotected, pool, sql, &query, Resolvers::DataLoader, reps).await?;
        out.push(Nested {
            k,
            objects,
            naive_sql,
            naive,
            dataloader_sql,
            dataloader,
        });
    }
    Ok(out)
}

/// Statements and objects of one run of `query`, then the latency of `reps` more.
async fn unprotected_cost(
    schema: &LabSchema,
    pool: &PgPool,
    sql: &SqlCounter,
    query: &str,
    resolvers: Resolvers,
    reps: u64,
) -> anyhow::Result<(u64, u64, LatencySummary)> {
    let request = || async_graphql::Request::new(query).data(Fetch::new(resolvers, pool));
    sql.take();
    let response = sql.scope(schema.execute(request())).await;
    let statements = sql.take();
    if !response.errors.is_empty() {
        bail!("{query}: {:?}", response.errors);
    }
    let objects = count_objects(&response.data.into_json()?);
    let timing = sequential(reps, |_| async {
        Ok::<_, ()>(schema.execute(request()).await)
    })
    .await;
    sql.take();
    Ok((statements, objects, timing))
}

/// Objects in a GraphQL `data` tree (every JSON object counts once).
fn count_objects(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::Object(m) => 1 + m.values().map(count_objects).sum::<u64>(),
        serde_json::Value::Array(a) => a.iter().map(count_objects).sum(),
        _ => 0,
    }
}

/// The alias bomb with naive resolvers and no limits: how many statements one request ran.
pub async fn alias_bomb_unprotected(
    pool: &PgPool,
    sql: &SqlCounter,
    aliases: usize,
) -> anyhow::Result<u64> {
    let schema = build_schema(None);
    let request =
        async_graphql::Request::new(alias_bomb(aliases)).data(Fetch::new(Resolvers::Naive, pool));
    sql.take();
    let response = sql.scope(schema.execute(request)).await;
    ensure!(response.errors.is_empty(), "{:?}", response.errors);
    Ok(sql.take())
}

/// One query sent to the served endpoint, with the limits on.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub label: String,
    pub query_bytes: usize,
    pub status: u16,
    /// `extensions.code` of the first error, if any.
    pub code: Option<String>,
    pub message: String,
    pub has_data: bool,
    pub sql: u64,
}

impl Attempt {
    /// Rejected before execution: a request error with `code`, no `data`, no statement run.
    pub fn rejected_with(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code) && !self.has_data && self.sql == 0
    }
}

/// The nested query past the depth limit, the alias bomb, a wide query and a page too large,
/// POSTed to `/graphql/naive` (the endpoint with the most to lose) as a modern client would.
pub async fn served_limits(
    client: &ScreenClient,
    sql: &SqlCounter,
    aliases: usize,
) -> anyhow::Result<Vec<Attempt>> {
    let attempts = [
        ("nested, k = 10 (depth 8)".to_string(), nested_query(10)),
        (
            format!("alias bomb: {aliases} × projects(first: 30) {{ tasks(first: 1) {{ id }} }}"),
            alias_bomb(aliases),
        ),
        (
            "wide: projects(100) × tasks(100) × comments(100)".to_string(),
            "{ projects(first: 100) { tasks(first: 100) { comments(first: 100) { id } } } }"
                .to_string(),
        ),
        (
            "page too large: projects(first: 1000)".to_string(),
            "{ projects(first: 1000) { id } }".to_string(),
        ),
    ];
    let mut out = Vec::new();
    for (label, query) in attempts {
        sql.take();
        let ex = client
            .exchange(
                client
                    .http()
                    .post(client.url("/graphql/naive"))
                    .header(header::ACCEPT, "application/graphql-response+json")
                    .json(&serde_json::json!({ "query": query })),
            )
            .await?;
        let statements = sql.take();
        let body: serde_json::Value = serde_json::from_slice(&ex.body)?;
        let error = &body["errors"][0];
        out.push(Attempt {
            label,
            query_bytes: query.len(),
            status: ex.status.as_u16(),
            code: error["extensions"]["code"].as_str().map(str::to_string),
            message: error["message"]
                .as_str()
                .unwrap_or("(no error)")
                .to_string(),
            has_data: body.get("data").is_some(),
            sql: statements,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// 4. Caching: ETags, persisted queries by GET, byte-stable bodies
// ---------------------------------------------------------------------------------------

/// One row of the caching table.
#[derive(Debug, Clone)]
pub struct CacheStep {
    pub what: String,
    pub http: u64,
    pub not_modified: u64,
    pub bytes: u64,
    pub sql: u64,
}

#[derive(Debug, Clone)]
pub struct Caching {
    pub steps: Vec<CacheStep>,
    /// Bytes received on the chatty screen's first load and on its revalidation.
    pub chatty_first_bytes: u64,
    pub chatty_again_bytes: u64,
    pub chatty_again_sql: u64,
    /// The persisted dashboard GET revalidated to 304, on `/graphql` and `/graphql/naive`.
    pub persisted_304: bool,
    pub naive_persisted_304: bool,
    pub post_body_bytes: usize,
    pub get_url_bytes: usize,
}

pub async fn caching(
    client: &ScreenClient,
    sql: &SqlCounter,
    screen: Screen,
) -> anyhow::Result<Caching> {
    let mut steps = Vec::new();
    let mut step = |what: &str, l: &Loaded, sql: u64| {
        steps.push(CacheStep {
            what: what.to_string(),
            http: l.http_requests,
            not_modified: l.not_modified,
            bytes: l.bytes_received,
            sql,
        });
    };
    // REST, chatty: every resource revalidated.
    let cache = HttpCache::default();
    sql.take();
    let first = client.rest_chatty(screen, Some(&cache)).await?;
    step("REST chatty: first load", &first, sql.take());
    let again = client.rest_chatty(screen, Some(&cache)).await?;
    let chatty_again_sql = sql.take();
    step("REST chatty: revalidate", &again, chatty_again_sql);
    ensure!(
        first.dashboard == again.dashboard,
        "revalidated screen differs"
    );
    // REST, BFF: one big body, one 304.
    let cache = HttpCache::default();
    let bff = client.rest_bff(screen, Some(&cache)).await?;
    step("REST BFF: first load", &bff, sql.take());
    let bff_again = client.rest_bff(screen, Some(&cache)).await?;
    step("REST BFF: revalidate", &bff_again, sql.take());

    // GraphQL: the dashboard as a persisted query, fetched by GET with its hash.
    let persisted = PersistedGet::new(client, "/graphql", screen)?;
    let (hit, hit_sql, revalidated, revalidated_sql) =
        persisted.register_and_revalidate(sql).await?;
    for (what, ex, sql) in [
        ("GraphQL persisted query, GET by hash", &hit, hit_sql),
        (
            "GraphQL persisted query, GET + If-None-Match",
            &revalidated,
            revalidated_sql,
        ),
    ] {
        steps.push(CacheStep {
            what: what.to_string(),
            http: 1,
            not_modified: u64::from(ex.status == StatusCode::NOT_MODIFIED),
            bytes: ex.wire_bytes,
            sql,
        });
    }
    // The same on the naive endpoint, whose bodies used to come out in completion order.
    let naive = PersistedGet::new(client, "/graphql/naive", screen)?;
    let (_, _, naive_revalidated, _) = naive.register_and_revalidate(sql).await?;

    let post_body =
        serde_json::json!({ "query": DASHBOARD_QUERY, "variables": screen.variables() });
    Ok(Caching {
        steps,
        chatty_first_bytes: first.bytes_received,
        chatty_again_bytes: again.bytes_received,
        chatty_again_sql,
        persisted_304: revalidated.status == StatusCode::NOT_MODIFIED,
        naive_persisted_304: naive_revalidated.status == StatusCode::NOT_MODIFIED,
        post_body_bytes: serde_json::to_vec(&post_body)?.len(),
        get_url_bytes: persisted.hash_url.as_str().len(),
    })
}

/// Apollo's persisted-query protocol over GET, for the dashboard on one endpoint.
struct PersistedGet<'c> {
    client: &'c ScreenClient,
    hash_url: reqwest::Url,
    register_url: reqwest::Url,
}

impl<'c> PersistedGet<'c> {
    fn new(client: &'c ScreenClient, path: &str, screen: Screen) -> anyhow::Result<Self> {
        let hash = format!("{:x}", Sha256::digest(DASHBOARD_QUERY.as_bytes()));
        let extensions =
            serde_json::json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
                .to_string();
        let variables = screen.variables().to_string();
        let base = client.url(path);
        Ok(Self {
            client,
            hash_url: reqwest::Url::parse_with_params(
                &base,
                &[("variables", &variables), ("extensions", &extensions)],
            )?,
            register_url: reqwest::Url::parse_with_params(
                &base,
                &[
                    ("query", DASHBOARD_QUERY),
                    ("variables", &variables),
                    ("extensions", &extensions),
                ],
            )?,
        })
    }

    /// Send the hash alone (a miss the first time: then register the text once), GET by
    /// hash, and revalidate with the ETag. Returns the hit and the revalidation, each with
    /// the statements it ran.
    async fn register_and_revalidate(
        &self,
        sql: &SqlCounter,
    ) -> anyhow::Result<(Exchange, u64, Exchange, u64)> {
        let http = self.client.http();
        let first = self
            .client
            .exchange(http.get(self.hash_url.clone()))
            .await?;
        if String::from_utf8_lossy(&first.body).contains("PersistedQueryNotFound") {
            let register = self
                .client
                .exchange(http.get(self.register_url.clone()))
                .await?;
            ensure!(register.status == StatusCode::OK, "registering the query");
        }
        sql.take();
        let hit = self
            .client
            .exchange(http.get(self.hash_url.clone()))
            .await?;
        let hit_sql = sql.take();
        ensure!(
            hit.status == StatusCode::OK,
            "persisted GET: {}",
            hit.status
        );
        let etag = hit.etag().context("persisted GET has an ETag")?.to_string();
        let revalidated = self
            .client
            .exchange(
                http.get(self.hash_url.clone())
                    .header(header::IF_NONE_MATCH, &etag),
            )
            .await?;
        Ok((hit, hit_sql, revalidated, sql.take()))
    }
}

/// `posts` identical dashboard POSTs to `path`: how many different bodies came back.
pub async fn distinct_bodies(
    client: &ScreenClient,
    path: &str,
    screen: Screen,
    posts: usize,
) -> anyhow::Result<usize> {
    let body = serde_json::json!({ "query": DASHBOARD_QUERY, "variables": screen.variables() });
    let mut bodies = std::collections::HashSet::new();
    for _ in 0..posts {
        let ex = client
            .exchange(client.http().post(client.url(path)).json(&body))
            .await?;
        ensure!(ex.status == StatusCode::OK, "{path}: {}", ex.status);
        bodies.insert(ex.body);
    }
    Ok(bodies.len())
}
