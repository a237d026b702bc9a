//! The app whose users the migrations must not hurt: point reads, one-row updates and
//! inserts on `items`, arriving at a fixed rate (labkit's open loop) whatever the database
//! is doing, each with a client timeout.
//!
//! The timeout is what turns a lock queue into errors, as on a real site: a request that
//! has not answered within [`REQUEST_TIMEOUT`] is given up by the client (a tokio timeout
//! around pool checkout and query), and the same value is the app connections'
//! `statement_timeout`, so the server stops waiting too. The pool is small and bounded, as
//! an app's is: while the requests on it wait for a lock, the next ones wait for a
//! connection — "the pool drains".
//!
//! Latency runs from each request's *intended* start (open loop), so the queue a stall
//! causes is charged to every request that arrived during it; a request that timed out is
//! an error, and [`Traffic::everyone`] also counts it at the time its user gave up.

use std::time::Duration;

use labkit::measure::{Call, LoadResult};
use labkit::{LabCtx, LatencySummary, OpenLoop, Recorder};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::lock_watch::APP_PREFIX;
use crate::observed::Clock;
use crate::schema::Dataset;

/// The client's patience: a request slower than this is an error to its user.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("timed out after {0:?} (client timeout)")]
    Timeout(Duration),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// What a request does. 60 % reads, 20 % updates, 20 % inserts, by sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Read,
    Update,
    Insert,
}

impl Request {
    pub fn of(seq: u64) -> Self {
        match seq % 5 {
            0..=2 => Self::Read,
            3 => Self::Update,
            _ => Self::Insert,
        }
    }

    pub fn is_write(self) -> bool {
        self != Self::Read
    }
}

/// The statements one version of the app runs. Every version binds the same shapes:
/// read `($1 id)`, update `($1 id, $2 n)`, insert `($1 customer, $2 n)`.
#[derive(Debug)]
pub struct Queries {
    /// The table whose rows reads and updates pick from (`items` or `customers`).
    pub table: &'static str,
    pub read: &'static str,
    pub update: &'static str,
    pub insert: &'static str,
}

/// The app of scenarios 1–5, on `items`.
pub const ITEMS: Queries = Queries {
    table: "items",
    read: "SELECT id, customer_id, amount_cents, status FROM items WHERE id = $1",
    update: "UPDATE items SET amount_cents = amount_cents + $2 WHERE id = $1",
    insert: "INSERT INTO items (customer_id, amount_cents, status) VALUES ($1, $2, 'open')",
};

/// One app instance: its own pool on the scratch database, one set of queries.
#[derive(Clone)]
pub struct App {
    pub pool: PgPool,
    queries: &'static Queries,
    rows: u64,
    customers: u64,
    seed: u64,
}

impl App {
    /// An app pool of `connections`, `application_name` = `name` (it must start with
    /// `zdm-app`, which is how the lock watcher tells app requests from the rest).
    pub async fn connect(
        ctx: &LabCtx,
        name: &str,
        connections: u32,
        queries: &'static Queries,
        data: Dataset,
    ) -> Result<Self, sqlx::Error> {
        let rows = if queries.table == "customers" {
            data.customers
        } else {
            data.items
        };
        Ok(Self {
            pool: app_pool(ctx, name, connections).await?,
            queries,
            rows,
            customers: data.customers,
            seed: ctx.seed,
        })
    }

    /// A deterministic "random" row for request `seq`.
    fn id_for(&self, seq: u64) -> i64 {
        1 + (mix(seq ^ self.seed) % self.rows) as i64
    }

    fn customer_for(&self, seq: u64) -> i64 {
        1 + (mix(seq.wrapping_mul(31) ^ self.seed) % self.customers) as i64
    }

    /// Request `seq`, within the client timeout.
    pub async fn request(&self, seq: u64) -> Result<Request, RequestError> {
        let kind = Request::of(seq);
        let q = self.queries;
        let n = (seq % 10_000) as i64;
        let work = async {
            match kind {
                Request::Read => {
                    sqlx::query(q.read)
                        .bind(self.id_for(seq))
                        .fetch_optional(&self.pool)
                        .await?;
                }
                Request::Update => {
                    sqlx::query(q.update)
                        .bind(self.id_for(seq))
                        .bind(n)
                        .execute(&self.pool)
                        .await?;
                }
                Request::Insert => {
                    sqlx::query(q.insert)
                        .bind(self.customer_for(seq))
                        .bind(n)
                        .execute(&self.pool)
                        .await?;
                }
            }
            Ok::<_, RequestError>(kind)
        };
        within_timeout(work).await
    }

    /// Requests at `rate` per second from now (on `clock`), each from its intended start:
    /// for at least `at_least`, then on for as long as `until` says the migration is still
    /// running or finished less than [`TAIL`] ago — so the app is watched for the whole
    /// migration however long it takes on this machine (at most [`MAX_TRAFFIC`]). One labkit
    /// open loop, stopped by `OpenLoop::until`: one phase in the report, arrivals never pause.
    pub async fn traffic(
        &self,
        label: &str,
        rate: f64,
        at_least: Duration,
        clock: &Clock,
        until: Option<watch::Receiver<Option<Duration>>>,
    ) -> Traffic {
        let offset = clock.now();
        let mut cfg = OpenLoop::new(rate, at_least)
            .label(label.to_string())
            .with_timeline();
        if let Some(rx) = until {
            let clock = *clock;
            cfg = OpenLoop {
                duration: MAX_TRAFFIC,
                ..cfg
            }
            .until(move |elapsed| {
                elapsed >= at_least
                    && rx
                        .borrow()
                        .is_some_and(|finished| clock.now() >= finished + TAIL)
            });
        }
        let app = self.clone();
        let result = labkit::open_loop(cfg, move |c: Call| {
            let app = app.clone();
            async move { app.request(c.seq).await }
        })
        .await;
        let sent = result.schedule.map_or(0, |s| s.intended);
        let end = offset + Duration::from_secs_f64(sent as f64 / rate);
        let segment = Segment {
            label: label.to_string(),
            result,
            offset,
        };
        Traffic::new(vec![segment], rate, offset, end)
    }
}

/// Traffic continues until this long after the migration finished (the recovery is part of what users saw).
pub const TAIL: Duration = Duration::from_millis(500);
/// … but no longer than this in all.
pub const MAX_TRAFFIC: Duration = Duration::from_secs(300);

/// The app's pool: bounded, checkout bounded by the client timeout, `statement_timeout` =
/// the client timeout so an abandoned statement does not wait on the server forever.
pub async fn app_pool(ctx: &LabCtx, name: &str, connections: u32) -> Result<PgPool, sqlx::Error> {
    debug_assert!(name.starts_with(APP_PREFIX));
    let connect = ctx
        .connect_options()
        .application_name(name)
        .options([("statement_timeout", REQUEST_TIMEOUT.as_millis().to_string())]);
    ctx.new_pool_with(
        labkit::pool_options(connections).acquire_timeout(REQUEST_TIMEOUT),
        connect,
    )
    .await
}

/// Run `work` under the client timeout.
pub async fn within_timeout<T>(
    work: impl Future<Output = Result<T, RequestError>>,
) -> Result<T, RequestError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(RequestError::Timeout(REQUEST_TIMEOUT)),
    }
}

/// splitmix64: spreads sequence numbers over the table without a RNG dependency per call.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One labkit open-loop run, placed on the scenario clock.
#[derive(Debug, Clone)]
pub struct Segment {
    pub label: String,
    pub result: LoadResult<Request>,
    /// When it started on the scenario clock.
    pub offset: Duration,
}

/// One request, on the scenario clock.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    /// Its intended start.
    pub at: Duration,
    /// From its intended start to its answer (or to the client giving up).
    pub latency: Duration,
    pub ok: bool,
    pub kind: Request,
}

impl Served {
    pub fn end(&self) -> Duration {
        self.at + self.latency
    }
}

/// What the app saw during one scenario (one app version).
#[derive(Debug, Clone)]
pub struct Traffic {
    pub served: Vec<Served>,
    pub segments: Vec<Segment>,
    pub rate: f64,
    /// When this traffic started on the scenario's clock (a second app version starts late).
    pub offset: Duration,
    /// When its last segment was planned to end.
    pub end: Duration,
}

impl Traffic {
    pub fn new(segments: Vec<Segment>, rate: f64, offset: Duration, end: Duration) -> Self {
        let interval = Duration::from_secs_f64(1.0 / rate);
        let mut served: Vec<Served> = segments
            .iter()
            .flat_map(|seg| {
                seg.result.timeline.iter().map(move |s| Served {
                    at: s.at + seg.offset,
                    latency: s.latency,
                    ok: s.ok(),
                    // A failed sample has no output, but the open loop sends request `seq`
                    // at `seq × interval`, so its `at` says which request it was.
                    kind: s.out.unwrap_or_else(|| {
                        let seq = (s.at.as_nanos() as f64 / interval.as_nanos() as f64).round();
                        Request::of(seq as u64)
                    }),
                })
            })
            .collect();
        served.sort_by_key(|s| s.at);
        Self {
            served,
            segments,
            rate,
            offset,
            end,
        }
    }

    pub fn errors(&self) -> u64 {
        self.served.iter().filter(|s| !s.ok).count() as u64
    }

    /// The first error a request returned, if any.
    pub fn first_error(&self) -> Option<&str> {
        self.segments
            .iter()
            .find_map(|s| s.result.first_error.as_deref())
    }

    /// Every request a user sent, failed ones at the moment they gave up: "what the users
    /// saw". The sample count is every request.
    pub fn everyone(&self) -> LatencySummary {
        self.summary_of(|_| true)
    }

    /// The writes only (INSERT and UPDATE), failed ones included.
    pub fn writes(&self) -> LatencySummary {
        self.summary_of(|r| r.is_write())
    }

    fn summary_of(&self, keep: impl Fn(Request) -> bool) -> LatencySummary {
        let mut rec = Recorder::new();
        for s in self.served.iter().filter(|s| keep(s.kind)) {
            rec.record(s.latency);
            if !s.ok {
                rec.record_error();
            }
        }
        rec.summary(self.end.saturating_sub(self.offset))
    }

    /// The slowest write whose life overlapped `[from, to]` (failures at give-up time).
    pub fn max_write_in(&self, from: Duration, to: Duration) -> Option<Duration> {
        self.served
            .iter()
            .filter(|s| s.kind.is_write() && s.at <= to && s.end() >= from)
            .map(|s| s.latency)
            .max()
    }

    /// Requests slower than `threshold` or failed: (first one's start, last one's end).
    pub fn stall(&self, threshold: Duration) -> Option<(Duration, Duration)> {
        let slow = || {
            self.served
                .iter()
                .filter(move |s| !s.ok || s.latency > threshold)
        };
        Some((slow().map(|s| s.at).min()?, slow().map(|s| s.end()).max()?))
    }

    /// The driver's own warnings (it could not keep its rate), one per segment that had one.
    pub fn schedule_warnings(&self) -> Vec<String> {
        self.segments
            .iter()
            .filter_map(|s| s.result.schedule.and_then(|sch| sch.warning(&s.label)))
            .collect()
    }
}
