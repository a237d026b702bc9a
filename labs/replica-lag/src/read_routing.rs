//! Where a user's read goes: the replica, or the primary while the replica may not have the
//! user's own write yet. This routing is the lesson, so it is hand-written here; in production
//! it lives in the framework's database selector or in a proxy.
//!
//! - [`ReadPolicy::Replica`]: every read on the replica — the incident.
//! - [`ReadPolicy::PrimaryAfterWrite`]: for `window` after a user's write, that user reads the
//!   primary (time-based stickiness: Rails' `DatabaseSelector` with its `delay: 2.seconds`).
//!   Right only while the lag stays under the window, and every sticky read is load the
//!   replica was meant to take.
//! - [`ReadPolicy::LsnWait`]: after the write, remember the primary's WAL position; read the
//!   replica only once `pg_last_wal_replay_lsn()` has passed it, waiting at most `max_wait`,
//!   else read the primary (LSN-based routing: GitLab's database load balancer). Exact whatever
//!   the lag is; costs one more round trip on the write and on the first read after it.
//!
//! The third fix, `synchronous_commit = remote_apply`, is not routing: COMMIT itself waits for
//! the replica to apply (see [`crate::remote_apply`]).

use std::time::{Duration, Instant};

use sqlx::PgPool;

/// The two servers a request handler can talk to (and a name for reports).
#[derive(Debug, Clone)]
pub struct Db {
    pub name: String,
    pub primary: PgPool,
    pub replica: PgPool,
}

impl Db {
    pub fn new(name: &str, primary: &PgPool, replica: &PgPool) -> Self {
        Self {
            name: name.to_string(),
            primary: primary.clone(),
            replica: replica.clone(),
        }
    }
}

/// Which server reads go to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadPolicy {
    /// Always the replica.
    Replica,
    /// The primary for `window` after the user's last write, the replica otherwise.
    PrimaryAfterWrite { window: Duration },
    /// The replica once it has replayed the user's last write (checked every `poll`, for at
    /// most `max_wait`), else the primary.
    LsnWait { max_wait: Duration, poll: Duration },
}

impl ReadPolicy {
    pub fn label(&self) -> String {
        match self {
            Self::Replica => "no fix".into(),
            Self::PrimaryAfterWrite { window } => {
                format!("primary for {} ms after a write", window.as_millis())
            }
            Self::LsnWait { max_wait, .. } => {
                format!("LSN wait (≤ {} ms, then primary)", max_wait.as_millis())
            }
        }
    }
}

/// A WAL position as Postgres prints it (`0/3000148`), compared on the server as `pg_lsn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lsn(pub String);

/// What a user's session remembers about their own last write (in a web app: the session
/// store or a signed cookie, so every app server routes the user's next request the same way).
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub last_write: Option<Instant>,
    /// Set by a write under [`ReadPolicy::LsnWait`]; cleared once the replica has passed it.
    pub pending_lsn: Option<Lsn>,
}

/// Where a read was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The replica, without waiting.
    Replica,
    /// The replica, after waiting for it to replay the user's write.
    ReplicaAfterWait,
    /// The primary, by policy.
    Primary,
    /// The primary, because the replica did not catch up within the bounded wait.
    PrimaryAfterTimeout,
}

impl Route {
    pub fn on_primary(self) -> bool {
        matches!(self, Self::Primary | Self::PrimaryAfterTimeout)
    }
}

/// A profile as a page shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Profile {
    pub display_name: String,
    pub version: i64,
}

/// A committed save.
#[derive(Debug, Clone, Copy)]
pub struct Saved {
    pub version: i64,
    /// When COMMIT returned to the app.
    pub committed_at: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("on the primary: {0}")]
    Primary(#[source] sqlx::Error),
    #[error("on the replica: {0}")]
    Replica(#[source] sqlx::Error),
    #[error("user {0} has no profile")]
    NoSuchUser(i64),
}

/// Save a user's display name on the primary. Under [`ReadPolicy::LsnWait`] also remember
/// where the primary's WAL stood once COMMIT had returned.
pub async fn save_profile(
    db: &Db,
    policy: ReadPolicy,
    session: &mut Session,
    user_id: i64,
    display_name: &str,
) -> Result<Saved, RoutingError> {
    let version: Option<i64> = sqlx::query_scalar(
        "UPDATE profiles SET display_name = $2, version = version + 1, updated_at = now() \
         WHERE user_id = $1 RETURNING version",
    )
    .bind(user_id)
    .bind(display_name)
    .fetch_optional(&db.primary)
    .await
    .map_err(RoutingError::Primary)?;
    let committed_at = Instant::now();
    let version = version.ok_or(RoutingError::NoSuchUser(user_id))?;
    session.last_write = Some(committed_at);
    if matches!(policy, ReadPolicy::LsnWait { .. }) {
        session.pending_lsn = Some(lsn_after_commit(&db.primary).await?);
    }
    Ok(Saved {
        version,
        committed_at,
    })
}

/// The primary's WAL insert position, asked *after* COMMIT returned, so it is at or past
/// the commit record whatever `synchronous_commit` says. PG 15 has no way to return a
/// transaction's own commit LSN, so this is what GitLab's load balancer asks too. It may be a
/// little past the commit (other sessions' WAL, or a page header on an idle primary): then
/// the wait is a little longer, never wrong.
pub async fn lsn_after_commit(primary: &PgPool) -> Result<Lsn, RoutingError> {
    sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(primary)
        .await
        .map(Lsn)
        .map_err(RoutingError::Primary)
}

/// Read a user's profile where `policy` says. `session` is the user's own.
pub async fn read_profile(
    db: &Db,
    policy: ReadPolicy,
    session: &mut Session,
    user_id: i64,
) -> Result<(Profile, Route), RoutingError> {
    let route = match policy {
        ReadPolicy::Replica => Route::Replica,
        ReadPolicy::PrimaryAfterWrite { window } => {
            if sticky(session.last_write, Instant::now(), window) {
                Route::Primary
            } else {
                Route::Replica
            }
        }
        ReadPolicy::LsnWait { max_wait, poll } => match &session.pending_lsn {
            None => Route::Replica,
            Some(lsn) => match wait_for_replay(&db.replica, lsn, max_wait, poll)
                .await
                .map_err(RoutingError::Replica)?
            {
                // Replayed: later reads need no check until the user writes again.
                Replay::Already => {
                    session.pending_lsn = None;
                    Route::Replica
                }
                Replay::After(_) => {
                    session.pending_lsn = None;
                    Route::ReplicaAfterWait
                }
                Replay::NotWithin => Route::PrimaryAfterTimeout,
            },
        },
    };
    // Check first, read after, in two statements: a statement takes its snapshot before it
    // evaluates anything, so `SELECT ... WHERE pg_last_wal_replay_lsn() >= $2` could pass the
    // check with a snapshot from just before the replay.
    let profile = if route.on_primary() {
        profile(&db.primary, user_id)
            .await
            .map_err(RoutingError::Primary)?
    } else {
        profile(&db.replica, user_id)
            .await
            .map_err(RoutingError::Replica)?
    };
    Ok((profile.ok_or(RoutingError::NoSuchUser(user_id))?, route))
}

/// Time-based stickiness: is `now` within `window` of the user's last write?
pub fn sticky(last_write: Option<Instant>, now: Instant, window: Duration) -> bool {
    last_write.is_some_and(|t| now.saturating_duration_since(t) < window)
}

/// Whether `replica` has replayed WAL up to `lsn` (false on a server that is not a standby).
pub async fn replayed(replica: &PgPool, lsn: &Lsn) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)")
        .bind(&lsn.0)
        .fetch_one(replica)
        .await
}

/// What a bounded wait for replay found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Replayed at the first check.
    Already,
    /// Replayed after waiting this long.
    After(Duration),
    /// Not replayed within the bound.
    NotWithin,
}

/// Poll `replica` (every `poll`, for at most `max_wait`) until it has replayed `lsn`.
/// PG 15 has no server-side "wait for LSN", so the wait is a bounded poll.
pub async fn wait_for_replay(
    replica: &PgPool,
    lsn: &Lsn,
    max_wait: Duration,
    poll: Duration,
) -> Result<Replay, sqlx::Error> {
    let started = Instant::now();
    if replayed(replica, lsn).await? {
        return Ok(Replay::Already);
    }
    while started.elapsed() < max_wait {
        tokio::time::sleep(poll.min(max_wait.saturating_sub(started.elapsed()))).await;
        if replayed(replica, lsn).await? {
            return Ok(Replay::After(started.elapsed()));
        }
    }
    Ok(Replay::NotWithin)
}

/// One profile by id.
pub async fn profile(pool: &PgPool, user_id: i64) -> Result<Option<Profile>, sqlx::Error> {
    sqlx::query_as("SELECT display_name, version FROM profiles WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await
}
