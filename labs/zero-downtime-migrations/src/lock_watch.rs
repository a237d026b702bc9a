//! Watching the lock queue: `pg_locks` joined to `pg_stat_activity`, with
//! `pg_blocking_pids`, sampled every 10 ms from a connection of its own.
//!
//! This is how the lab knows a request was *blocked* rather than merely slow: a request is
//! counted as blocked when the watcher saw its backend waiting for a lock (`granted = false`)
//! while running it — identified by (pid, `query_start`), so two requests on one pooled
//! connection are two requests. It is a sample: a wait shorter than the interval can be
//! missed, so the counts are lower bounds (a lock queue behind a DDL lasts far longer).
//!
//! Who is who comes from `application_name`, set by each connection: the app
//! (`zdm-app`, `zdm-app-v1`, `zdm-app-v2`), the migration (`zdm-migration`), the long
//! reader (`zdm-reader`) and the watcher itself (`zdm-watch`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;

use crate::lock_modes::LockMode;

/// `application_name` of the migration's connection.
pub const MIGRATION: &str = "zdm-migration";
/// `application_name` of the long analytics reader.
pub const READER: &str = "zdm-reader";
/// `application_name` of this watcher.
pub const WATCHER: &str = "zdm-watch";
/// Every app connection's `application_name` starts with this.
pub const APP_PREFIX: &str = "zdm-app";

/// How often the queue is sampled.
pub const INTERVAL: Duration = Duration::from_millis(10);

/// Every lock being waited for in this database, who holds what it waits for, and the
/// relation-level locks the migration holds (granted), in one round trip.
const SAMPLE: &str = r#"
SELECT a.pid,
       a.application_name,
       (extract(epoch FROM a.query_start) * 1000000)::int8 AS query_start_us,
       l.granted,
       l.locktype,
       l.mode,
       coalesce(c.relname, '') AS relation,
       ARRAY(SELECT b.application_name FROM pg_stat_activity b
             WHERE b.pid = ANY (pg_blocking_pids(a.pid))
             ORDER BY b.application_name) AS blocked_by
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
LEFT JOIN pg_class c ON c.oid = l.relation
WHERE a.datname = current_database()
  AND (NOT l.granted
       OR (a.application_name = 'zdm-migration' AND l.locktype = 'relation'
           AND c.relname IN ('items', 'customers')))
"#;

#[derive(Debug, sqlx::FromRow)]
struct Row {
    pid: i32,
    application_name: String,
    query_start_us: Option<i64>,
    granted: bool,
    locktype: String,
    mode: String,
    relation: String,
    blocked_by: Vec<String>,
}

/// The queue at one instant.
#[derive(Debug, Clone, Copy)]
pub struct QueueSample {
    /// Since the scenario's clock started.
    pub at: Duration,
    /// App requests waiting for a lock (any lock: a table lock behind DDL, a row lock
    /// behind a backfill, …).
    pub app_waiting: u32,
    /// The migration itself waiting for a lock.
    pub migration_waiting: bool,
    /// App pool connections checked out (in use or stuck).
    pub pool_busy: u32,
}

/// One request seen waiting.
#[derive(Debug, Clone)]
pub struct BlockedRequest {
    pub app: String,
    pub first_seen: Duration,
    pub last_seen: Duration,
}

/// "X waited for a <mode> lock on <relation>, blocked by Y" — an edge of the wait graph.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Edge {
    pub waiter: String,
    /// `AccessExclusiveLock on items`, `ShareLock on transactionid`, …
    pub wants: String,
    pub blocked_by: Vec<String>,
}

/// How often an edge was seen, and when first.
#[derive(Debug, Clone, Copy)]
pub struct EdgeSeen {
    pub first_seen: Duration,
    pub samples: u32,
}

/// Everything the watcher saw during one scenario.
#[derive(Debug, Clone, Default)]
pub struct LockWatch {
    pub samples: Vec<QueueSample>,
    pub blocked: Vec<BlockedRequest>,
    pub edges: BTreeMap<Edge, EdgeSeen>,
    /// Relation locks the migration's session was seen holding: (relation, strongest mode).
    pub migration_held: BTreeMap<String, LockMode>,
}

impl LockWatch {
    /// App requests seen waiting for a lock.
    pub fn blocked_requests(&self) -> usize {
        self.blocked.len()
    }

    /// App requests of one app (`zdm-app-v1`) seen waiting.
    pub fn blocked_requests_of(&self, app: &str) -> usize {
        self.blocked.iter().filter(|b| b.app == app).count()
    }

    /// App requests first seen waiting inside `[from, to]`.
    pub fn blocked_between(&self, from: Duration, to: Duration) -> usize {
        self.blocked
            .iter()
            .filter(|b| b.first_seen >= from && b.first_seen <= to)
            .count()
    }

    /// The deepest the app's queue got.
    pub fn max_depth(&self) -> u32 {
        self.samples
            .iter()
            .map(|s| s.app_waiting)
            .max()
            .unwrap_or(0)
    }

    /// The most app pool connections checked out at once.
    pub fn max_pool_busy(&self) -> u32 {
        self.samples.iter().map(|s| s.pool_busy).max().unwrap_or(0)
    }

    /// How long the migration was seen waiting for a lock (samples × interval).
    pub fn migration_waited(&self) -> Duration {
        INTERVAL * self.samples.iter().filter(|s| s.migration_waiting).count() as u32
    }

    /// The edge "the migration waited for …", if it was seen.
    pub fn edge_from(&self, waiter: &str) -> Option<(&Edge, &EdgeSeen)> {
        self.edges.iter().find(|(e, _)| e.waiter == waiter)
    }

    /// The edge "an app request waited for the migration", if it was seen.
    pub fn app_behind(&self, holder: &str) -> Option<(&Edge, &EdgeSeen)> {
        self.edges.iter().find(|(e, _)| {
            e.waiter.starts_with(APP_PREFIX) && e.blocked_by.iter().any(|b| b == holder)
        })
    }
}

/// Sample until `stop` turns true (or its sender is dropped). `pools` are the app's pools,
/// whose checked-out connections are sampled alongside.
pub async fn watch(
    mut conn: PgConnection,
    t0: Instant,
    mut stop: watch::Receiver<bool>,
    pools: Vec<PgPool>,
) -> Result<LockWatch, sqlx::Error> {
    let mut out = LockWatch::default();
    let mut seen: HashMap<(i32, i64), usize> = HashMap::new();
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { break },
            _ = tick.tick() => {}
        }
        let at = t0.elapsed();
        let rows: Vec<Row> = sqlx::query_as(SAMPLE).fetch_all(&mut conn).await?;
        let mut app_waiting = HashSet::new();
        let mut migration_waiting = false;
        for r in rows {
            if r.granted {
                if let Some(mode) = LockMode::parse(&r.mode) {
                    let held = out.migration_held.entry(r.relation).or_insert(mode);
                    *held = (*held).max(mode);
                }
                continue;
            }
            let edge = Edge {
                waiter: r.application_name.clone(),
                wants: if r.relation.is_empty() {
                    format!("{} on {}", r.mode, r.locktype)
                } else {
                    format!("{} on {}", r.mode, r.relation)
                },
                blocked_by: r.blocked_by,
            };
            out.edges
                .entry(edge)
                .and_modify(|e| e.samples += 1)
                .or_insert(EdgeSeen {
                    first_seen: at,
                    samples: 1,
                });
            if r.application_name == MIGRATION {
                migration_waiting = true;
            } else if r.application_name.starts_with(APP_PREFIX) {
                let key = (r.pid, r.query_start_us.unwrap_or(0));
                app_waiting.insert(key);
                match seen.get(&key) {
                    Some(&i) => out.blocked[i].last_seen = at,
                    None => {
                        seen.insert(key, out.blocked.len());
                        out.blocked.push(BlockedRequest {
                            app: r.application_name,
                            first_seen: at,
                            last_seen: at,
                        });
                    }
                }
            }
        }
        let pool_busy = pools
            .iter()
            .map(|p| p.size().saturating_sub(p.num_idle() as u32))
            .sum();
        out.samples.push(QueueSample {
            at,
            app_waiting: app_waiting.len() as u32,
            migration_waiting,
            pool_busy,
        });
    }
    Ok(out)
}

/// How long the choreography waits for a lock state it expects before calling it an error.
const PATIENCE: Duration = Duration::from_secs(30);

/// Wait until a session named `application_name` holds a granted lock on `table`.
pub async fn wait_until_holds(
    conn: &mut PgConnection,
    application_name: &str,
    table: &str,
) -> Result<(), WaitError> {
    let what = || format!("{application_name} to hold a lock on {table}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let holds: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE a.application_name = $1 AND a.datname = current_database() \
               AND l.granted AND l.relation = $2::regclass)",
        )
        .bind(application_name)
        .bind(table)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| WaitError::Db(e, what()))?;
        if holds {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(WaitError::Timeout(PATIENCE, what()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Wait until `pg_blocking_pids(waiter)` contains `blocker`; returns the full list.
pub async fn wait_until_blocked_by(
    conn: &mut PgConnection,
    waiter: i32,
    blocker: i32,
) -> Result<Vec<i32>, WaitError> {
    let what = || format!("pid {waiter} to be blocked by pid {blocker}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let pids = blocking_pids(conn, waiter)
            .await
            .map_err(|e| WaitError::Db(e, what()))?;
        if pids.contains(&blocker) {
            return Ok(pids);
        }
        if Instant::now() >= deadline {
            return Err(WaitError::Timeout(PATIENCE, what()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `pg_blocking_pids(pid)`, sorted.
pub async fn blocking_pids(conn: &mut PgConnection, pid: i32) -> Result<Vec<i32>, sqlx::Error> {
    sqlx::query_scalar("SELECT ARRAY(SELECT unnest(pg_blocking_pids($1)) ORDER BY 1)")
        .bind(pid)
        .fetch_one(conn)
        .await
}

/// A lock state the choreography waited for did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("waited {0:?} for {1}, which never happened")]
    Timeout(Duration, String),
    #[error("while waiting for {1}: {0}")]
    Db(#[source] sqlx::Error, String),
}
