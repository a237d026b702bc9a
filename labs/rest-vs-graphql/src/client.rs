//! The front end's side: four ways to load the same dashboard over real HTTP, counting
//! requests and bytes received as they go.
//!
//! - **REST, chatty**: follow the resources level by level — projects, each project's tasks,
//!   each task's comments, then every user the screen mentions — with at most 6 requests in
//!   flight, like a browser's connection limit per host on HTTP/1.1. The client remembers
//!   users within a screen, so each user is fetched once (a client without that cache pays
//!   one request per assignee and per author).
//! - **REST, BFF**: `GET /v1/dashboard`, one request.
//! - **GraphQL, naive / DataLoader**: one `POST` of [`DASHBOARD_QUERY`] to `/graphql/naive`
//!   or `/graphql`.
//!
//! "Bytes received" is what arrives over the socket for each response as HTTP/1.1 frames it:
//! status line, headers and body (bodies are sent with `content-length`, uncompressed).
//!
//! Two transports, the same requests: reqwest for one-off loads (tests, the quiet
//! measurements, the caching step), and, in load phases, the worker's own keep-alive
//! connections from `labkit::http::Connections` — [`BROWSER_CONNECTIONS`] per worker, so
//! the chatty client keeps its six in flight — which cost the driver a few microseconds per
//! request instead of reqwest's tens, so the driver is not what the load phase measures.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::Method;
use futures::{StreamExt, TryStreamExt};
use labkit::http::Connections;
use reqwest::{RequestBuilder, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::model::{Comment, Project, Task, User};
use crate::screen::{
    CommentView, DASHBOARD_QUERY, Dashboard, ProjectView, Screen, TaskView, UserView,
};

/// How many requests a browser keeps in flight to one host over HTTP/1.1.
pub const BROWSER_CONNECTIONS: usize = 6;

/// The four ways to load the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approach {
    RestChatty,
    RestBff,
    GraphQLNaive,
    GraphQLDataLoader,
}

impl Approach {
    pub const ALL: [Approach; 4] = [
        Self::RestChatty,
        Self::RestBff,
        Self::GraphQLNaive,
        Self::GraphQLDataLoader,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::RestChatty => "REST, chatty client",
            Self::RestBff => "REST, BFF endpoint",
            Self::GraphQLNaive => "GraphQL, naive resolvers",
            Self::GraphQLDataLoader => "GraphQL, DataLoader",
        }
    }

    /// Prefix of this approach's finding keys (`rest_chatty_p95_ms`, ...).
    pub fn key(self) -> &'static str {
        match self {
            Self::RestChatty => "rest_chatty",
            Self::RestBff => "rest_bff",
            Self::GraphQLNaive => "graphql_naive",
            Self::GraphQLDataLoader => "graphql_dataloader",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("HTTP request failed: {0}")]
    Conn(#[from] labkit::http::ConnError),
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{url}: unexpected JSON: {source}")]
    Decode {
        url: String,
        source: serde_json::Error,
    },
    #[error("304 for {0} without a cached body")]
    NotCached(String),
    #[error("GraphQL errors: {0}")]
    GraphQL(String),
}

/// One loaded screen and what it cost on the wire.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub dashboard: Dashboard,
    pub http_requests: u64,
    pub bytes_received: u64,
    /// Responses that were `304 Not Modified` (only with an [`HttpCache`]).
    pub not_modified: u64,
}

/// What one HTTP exchange looked like.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub status: StatusCode,
    pub headers: header::HeaderMap,
    pub body: Bytes,
    /// Status line + headers + body, as HTTP/1.1 frames them.
    pub wire_bytes: u64,
}

impl Exchange {
    pub fn etag(&self) -> Option<&str> {
        self.headers.get(header::ETAG).and_then(|v| v.to_str().ok())
    }
}

/// A client-side HTTP cache keyed by URL: remembers each response's `ETag` and body and
/// revalidates with `If-None-Match`. A std `Mutex`: never held across an await.
#[derive(Debug, Default)]
pub struct HttpCache {
    entries: Mutex<HashMap<String, (String, Bytes)>>,
}

/// Counters for one screen load, shared by its concurrent requests.
#[derive(Debug, Default)]
struct Tally {
    requests: AtomicU64,
    bytes: AtomicU64,
    not_modified: AtomicU64,
}

/// A front end pointed at one server.
#[derive(Debug, Clone)]
pub struct ScreenClient {
    http: reqwest::Client,
    base: String,
    /// In a load phase: this worker's connections, `first .. first + BROWSER_CONNECTIONS`.
    conns: Option<(Arc<Connections>, usize)>,
}

impl ScreenClient {
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            http: labkit::http::client(),
            base: base.into(),
            conns: None,
        }
    }

    /// The connections a load phase needs for `workers` clients.
    pub fn connections(addr: std::net::SocketAddr, workers: usize) -> Arc<Connections> {
        Connections::new(addr, workers * BROWSER_CONNECTIONS)
    }

    /// The same front end, sending over load worker `worker`'s own keep-alive connections.
    pub fn on_connections(&self, conns: Arc<Connections>, worker: usize) -> Self {
        Self {
            conns: Some((conns, worker * BROWSER_CONNECTIONS)),
            ..self.clone()
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Load the screen the way `approach` does, with a cold client cache.
    pub async fn load(&self, approach: Approach, screen: Screen) -> Result<Loaded, ClientError> {
        match approach {
            Approach::RestChatty => self.rest_chatty(screen, None).await,
            Approach::RestBff => self.rest_bff(screen, None).await,
            Approach::GraphQLNaive => self.graphql("/graphql/naive", screen).await,
            Approach::GraphQLDataLoader => self.graphql("/graphql", screen).await,
        }
    }

    /// Send one request and measure its response.
    pub async fn exchange(&self, request: RequestBuilder) -> Result<Exchange, ClientError> {
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        let wire_bytes = wire_size(status, &headers, body.len());
        Ok(Exchange {
            status,
            headers,
            body,
            wire_bytes,
        })
    }

    /// Send `method path` on in-flight slot `slot` (its own connection in a load phase).
    async fn send(
        &self,
        slot: usize,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        json: Option<Bytes>,
    ) -> Result<Exchange, ClientError> {
        let Some((conns, first)) = &self.conns else {
            let mut request = self.http.request(method, self.url(path));
            for (k, v) in headers {
                request = request.header(*k, *v);
            }
            if let Some(body) = json {
                request = request
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body);
            }
            return self.exchange(request).await;
        };
        let reply = conns
            .get(first + slot % BROWSER_CONNECTIONS)
            .await
            .send(method, path, headers, json)
            .await?;
        let wire_bytes = wire_size(reply.status, &reply.headers, reply.body.len());
        Ok(Exchange {
            status: reply.status,
            headers: reply.headers,
            body: reply.body,
            wire_bytes,
        })
    }

    /// GET a JSON resource, revalidating through `cache` when given one.
    async fn get_json<T: DeserializeOwned>(
        &self,
        slot: usize,
        path: &str,
        tally: &Tally,
        cache: Option<&HttpCache>,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let cached = cache.and_then(|c| c.entries.lock().expect("cache lock").get(&url).cloned());
        let if_none_match = cached.as_ref().map(|(etag, _)| etag.as_str());
        let headers: Vec<(&str, &str)> = if_none_match
            .map(|etag| ("if-none-match", etag))
            .into_iter()
            .collect();
        let ex = self.send(slot, Method::GET, path, &headers, None).await?;
        tally.requests.fetch_add(1, Ordering::Relaxed);
        tally.bytes.fetch_add(ex.wire_bytes, Ordering::Relaxed);
        let body = match ex.status {
            StatusCode::NOT_MODIFIED => {
                tally.not_modified.fetch_add(1, Ordering::Relaxed);
                cached.ok_or_else(|| ClientError::NotCached(url.clone()))?.1
            }
            StatusCode::OK => {
                if let (Some(cache), Some(etag)) = (cache, ex.etag()) {
                    cache
                        .entries
                        .lock()
                        .expect("cache lock")
                        .insert(url.clone(), (etag.to_string(), ex.body.clone()));
                }
                ex.body
            }
            status => {
                return Err(ClientError::Status {
                    url,
                    status,
                    body: String::from_utf8_lossy(&ex.body)
                        .chars()
                        .take(200)
                        .collect(),
                });
            }
        };
        serde_json::from_slice(&body).map_err(|source| ClientError::Decode { url, source })
    }

    /// Resource by resource, level by level, at most [`BROWSER_CONNECTIONS`] in flight.
    pub async fn rest_chatty(
        &self,
        screen: Screen,
        cache: Option<&HttpCache>,
    ) -> Result<Loaded, ClientError> {
        let tally = Tally::default();
        let t = &tally;
        // 1 request: the projects
        let projects: Vec<Project> = self
            .get_json(
                0,
                &format!("/v1/projects?limit={}", screen.projects),
                t,
                cache,
            )
            .await?;
        // N requests: each project's tasks
        // (Streams over owned ids, not `&Project`: closures taking references make the
        // future lose `Send` through a higher-ranked lifetime.)
        let project_ids: Vec<i64> = projects.iter().map(|p| p.id).collect();
        // (`slot`: the request's place among the six in flight, i.e. its connection.)
        let task_lists: Vec<Vec<Task>> = futures::stream::iter(project_ids.into_iter().enumerate())
            .map(|(slot, id)| {
                let path = format!("/v1/projects/{id}/tasks?limit={}", screen.tasks);
                async move { self.get_json(slot, &path, t, cache).await }
            })
            .buffered(BROWSER_CONNECTIONS)
            .try_collect()
            .await?;
        // N·T requests: each task's comments
        let task_ids: Vec<i64> = task_lists.iter().flatten().map(|t| t.id).collect();
        let comment_lists: Vec<Vec<Comment>> =
            futures::stream::iter(task_ids.into_iter().enumerate())
                .map(|(slot, id)| {
                    let path = format!("/v1/tasks/{id}/comments?limit={}", screen.comments);
                    async move { self.get_json(slot, &path, t, cache).await }
                })
                .buffered(BROWSER_CONNECTIONS)
                .try_collect()
                .await?;
        // One request per distinct user on the screen (assignees and authors)
        let user_ids: BTreeSet<i64> = task_lists
            .iter()
            .flatten()
            .map(|task| task.assignee_id)
            .chain(comment_lists.iter().flatten().map(|c| c.author_id))
            .collect();
        // In order (`buffered`), so the six in flight are six consecutive slots: six connections.
        let users: HashMap<i64, User> = futures::stream::iter(user_ids.into_iter().enumerate())
            .map(|(slot, id)| {
                let path = format!("/v1/users/{id}");
                async move { self.get_json::<User>(slot, &path, t, cache).await }
            })
            .buffered(BROWSER_CONNECTIONS)
            .map_ok(|u| (u.id, u))
            .try_collect()
            .await?;

        // Assemble the screen, exactly as the BFF does on the server.
        let user_view = |id: i64| UserView {
            id,
            name: users.get(&id).map(|u| u.name.clone()).unwrap_or_default(),
        };
        let mut comment_lists = comment_lists.into_iter();
        let dashboard = Dashboard {
            projects: projects
                .into_iter()
                .zip(task_lists)
                .map(|(p, tasks)| ProjectView {
                    id: p.id,
                    name: p.name,
                    tasks: tasks
                        .into_iter()
                        .map(|task| TaskView {
                            assignee: user_view(task.assignee_id),
                            comments: comment_lists
                                .next()
                                .unwrap_or_default()
                                .into_iter()
                                .map(|c| CommentView {
                                    author: user_view(c.author_id),
                                    id: c.id,
                                    body: c.body,
                                })
                                .collect(),
                            id: task.id,
                            title: task.title,
                            status: task.status,
                        })
                        .collect(),
                })
                .collect(),
        };
        Ok(tally.finish(dashboard))
    }

    /// One request to the BFF endpoint.
    pub async fn rest_bff(
        &self,
        screen: Screen,
        cache: Option<&HttpCache>,
    ) -> Result<Loaded, ClientError> {
        let tally = Tally::default();
        let path = format!(
            "/v1/dashboard?projects={}&tasks={}&comments={}",
            screen.projects, screen.tasks, screen.comments
        );
        let dashboard: Dashboard = self.get_json(0, &path, &tally, cache).await?;
        Ok(tally.finish(dashboard))
    }

    /// One POST of the dashboard query to `path` (`/graphql` or `/graphql/naive`).
    pub async fn graphql(&self, path: &str, screen: Screen) -> Result<Loaded, ClientError> {
        let tally = Tally::default();
        let url = self.url(path);
        let body = serde_json::json!({ "query": DASHBOARD_QUERY, "variables": screen.variables() });
        let body = Bytes::from(serde_json::to_vec(&body).expect("JSON serializes"));
        let ex = self.send(0, Method::POST, path, &[], Some(body)).await?;
        tally.requests.fetch_add(1, Ordering::Relaxed);
        tally.bytes.fetch_add(ex.wire_bytes, Ordering::Relaxed);
        let dashboard = decode_graphql(&url, &ex)?;
        Ok(tally.finish(dashboard))
    }
}

/// `{"data": {"projects": [...]}}` → the screen; any `errors` → an error.
pub fn decode_graphql(url: &str, ex: &Exchange) -> Result<Dashboard, ClientError> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        data: Option<Dashboard>,
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    }
    if ex.status != StatusCode::OK {
        return Err(ClientError::Status {
            url: url.to_string(),
            status: ex.status,
            body: String::from_utf8_lossy(&ex.body)
                .chars()
                .take(200)
                .collect(),
        });
    }
    let env: Envelope = serde_json::from_slice(&ex.body).map_err(|source| ClientError::Decode {
        url: url.to_string(),
        source,
    })?;
    match env.data {
        Some(d) if env.errors.is_empty() => Ok(d),
        _ => Err(ClientError::GraphQL(
            serde_json::to_string(&env.errors).unwrap_or_default(),
        )),
    }
}

impl Tally {
    fn finish(self, dashboard: Dashboard) -> Loaded {
        Loaded {
            dashboard,
            http_requests: self.requests.into_inner(),
            bytes_received: self.bytes.into_inner(),
            not_modified: self.not_modified.into_inner(),
        }
    }
}

/// `HTTP/1.1 200 OK\r\n` + `name: value\r\n` per header + `\r\n` + body.
fn wire_size(status: StatusCode, headers: &header::HeaderMap, body_len: usize) -> u64 {
    let reason = status.canonical_reason().unwrap_or("");
    let status_line = "HTTP/1.1 ".len() + 3 + 1 + reason.len() + 2;
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    (status_line + header_bytes + 2 + body_len) as u64
}
