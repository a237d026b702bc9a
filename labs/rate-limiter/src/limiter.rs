//! The common shape of every algorithm: `check(key, now) -> Decision`, plus the Redis plumbing
//! the five shared algorithms have in common.
//!
//! Each Redis algorithm is one Lua script run with `EVALSHA`: read, decide and write happen
//! inside Redis, atomically, in one round trip. The option turned down is read-modify-write
//! from the app (`GET`, decide, `SET`): two instances reading the same count both admit, and a
//! `WATCH`/`MULTI` retry loop fixes that at the price of extra round trips under contention.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::policy::Policy;

/// One admission decision, in the units the HTTP layer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests this client could still make right now (the `r=` of the `RateLimit` header).
    pub remaining: u32,
    /// When rejected: how long until a request from this client would be admitted, assuming
    /// it sends nothing else meanwhile. Zero when allowed.
    pub retry_after: Duration,
    /// How long until the client's full allowance is back (the `t=` of the `RateLimit` header).
    pub reset: Duration,
}

/// Why a limiter could not decide. The HTTP layer turns every variant into the configured
/// fail-open or fail-closed behaviour; nothing here panics.
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("rate-limit store unavailable: {0}")]
    Unavailable(#[from] redis::RedisError),
    #[error("rate-limit store did not answer within {0:?}")]
    Timeout(Duration),
}

/// A rate limiter: one decision per request, for one client key, at time `now_ms`.
#[async_trait::async_trait]
pub trait Limiter: Send + Sync {
    fn algorithm(&self) -> Algorithm;
    fn policy(&self) -> &Policy;
    /// Decide for `key` at `now_ms` (Unix ms, from a [`crate::clock::Clock`]), and record the
    /// request if it is admitted.
    async fn check(&self, key: &str, now_ms: u64) -> Result<Decision, LimiterError>;
}

/// The algorithms this lab compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    FixedWindow,
    SlidingLog,
    SlidingCounter,
    TokenBucket,
    Gcra,
    /// governor's GCRA in process memory: the "state is not shared" contrast.
    InMemory,
}

impl Algorithm {
    /// The five whose state lives in Redis.
    pub const SHARED: [Algorithm; 5] = [
        Self::FixedWindow,
        Self::SlidingLog,
        Self::SlidingCounter,
        Self::TokenBucket,
        Self::Gcra,
    ];
    pub const ALL: [Algorithm; 6] = [
        Self::FixedWindow,
        Self::SlidingLog,
        Self::SlidingCounter,
        Self::TokenBucket,
        Self::Gcra,
        Self::InMemory,
    ];

    /// Stable id, used in finding keys and Redis keys.
    pub fn id(self) -> &'static str {
        match self {
            Self::FixedWindow => "fixed_window",
            Self::SlidingLog => "sliding_log",
            Self::SlidingCounter => "sliding_counter",
            Self::TokenBucket => "token_bucket",
            Self::Gcra => "gcra",
            Self::InMemory => "in_memory",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::FixedWindow => "fixed window",
            Self::SlidingLog => "sliding log",
            Self::SlidingCounter => "sliding counter",
            Self::TokenBucket => "token bucket",
            Self::Gcra => "GCRA",
            Self::InMemory => "in-memory GCRA (governor)",
        }
    }

    /// Does the algorithm's state live in a store every app instance shares?
    pub fn is_shared(self) -> bool {
        self != Self::InMemory
    }

    /// A window algorithm promises at most `quota` in any window of one period.
    pub fn is_window(self) -> bool {
        matches!(
            self,
            Self::FixedWindow | Self::SlidingLog | Self::SlidingCounter
        )
    }

    /// The most requests the algorithm promises to admit inside any window of one period:
    /// the quota for window algorithms, burst + rate × period for bucket algorithms.
    pub fn promised_max(self, policy: &Policy) -> u32 {
        if self.is_window() {
            policy.quota()
        } else {
            policy.burst() + policy.quota()
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.replace('-', "_");
        Self::ALL.into_iter().find(|a| a.id() == s).ok_or_else(|| {
            let ids: Vec<_> = Self::ALL.iter().map(|a| a.id()).collect();
            format!(
                "unknown algorithm `{s}` (expected one of {})",
                ids.join(", ")
            )
        })
    }
}

/// Build a limiter. `store` is where the shared algorithms keep state; the in-memory one
/// ignores it (that is its whole story).
pub fn build(algorithm: Algorithm, policy: Policy, store: &RedisStore) -> Arc<dyn Limiter> {
    use crate::{fixed_window, gcra, in_memory, sliding_counter, sliding_log, token_bucket};
    let store = store.clone();
    match algorithm {
        Algorithm::FixedWindow => Arc::new(fixed_window::FixedWindow::new(store, policy)),
        Algorithm::SlidingLog => Arc::new(sliding_log::SlidingLog::new(store, policy)),
        Algorithm::SlidingCounter => Arc::new(sliding_counter::SlidingCounter::new(store, policy)),
        Algorithm::TokenBucket => Arc::new(token_bucket::TokenBucket::new(store, policy)),
        Algorithm::Gcra => Arc::new(gcra::Gcra::new(store, policy)),
        Algorithm::InMemory => Arc::new(in_memory::InMemory::new(policy)),
    }
}

/// A Redis connection for limiter scripts, with a key prefix and a deadline per decision.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    deadline: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl RedisStore {
    /// How long one decision may take before the request follows the fail mode. A limiter
    /// that waits for a dead Redis turns an outage of the limiter into an outage of the API.
    pub const DEADLINE: Duration = Duration::from_millis(250);

    /// Connect the way an app instance would: its own connection, failing fast. The
    /// connection manager's defaults retry a lost connection six times with backoff (seconds
    /// of waiting per request while Redis is down); a limiter wants one quick attempt.
    pub async fn connect(
        client: redis::Client,
        prefix: impl Into<String>,
    ) -> Result<Self, redis::RedisError> {
        Self::connect_with_deadline(client, prefix, Self::DEADLINE).await
    }

    /// The same, with another deadline per decision (the lab's measurements wait longer: on a
    /// busy machine a slow decision is data, not an outage).
    pub async fn connect_with_deadline(
        client: redis::Client,
        prefix: impl Into<String>,
        deadline: Duration,
    ) -> Result<Self, redis::RedisError> {
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(deadline))
            .set_response_timeout(Some(deadline));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            conn,
            prefix: prefix.into(),
            deadline,
        })
    }

    /// `<prefix>rl:<algorithm>:<client key>`
    pub fn key(&self, algorithm: &str, client_key: &str) -> String {
        format!("{}rl:{algorithm}:{client_key}", self.prefix)
    }

    /// Run one limiter script. Every script replies `{allowed, remaining, retry_ms, reset_ms}`
    /// as integers (Lua numbers come back from Redis truncated to integers, so the scripts
    /// round explicitly: retry times up, remaining counts down).
    pub(crate) async fn decide(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<Decision, LimiterError> {
        let mut conn = self.conn.clone();
        let reply: (i64, i64, i64, i64) =
            tokio::time::timeout(self.deadline, invocation.invoke_async(&mut conn))
                .await
                .map_err(|_| LimiterError::Timeout(self.deadline))??;
        let (allowed, remaining, retry_ms, reset_ms) = reply;
        Ok(Decision {
            allowed: allowed == 1,
            remaining: remaining.clamp(0, u32::MAX as i64) as u32,
            retry_after: Duration::from_millis(retry_ms.max(0) as u64),
            reset: Duration::from_millis(reset_ms.max(0) as u64),
        })
    }
}
