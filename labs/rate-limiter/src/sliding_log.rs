//! Sliding window log: a sorted set of the times of admitted requests, trimmed to the last
//! period on every call.
//!
//! Exact: at most `quota` admitted in *any* window of one period, because every decision
//! counts precisely the requests in `(now - period, now]`. The price is memory: one sorted-set
//! entry per admitted request, per client — `quota` entries for a busy client, where the
//! counters keep one or two integers. The lab measures the bytes with `MEMORY USAGE`.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use redis::Script;

use crate::limiter::{Algorithm, Decision, Limiter, LimiterError, RedisStore};
use crate::policy::Policy;

// KEYS[1]: sorted set, score = admission time (ms). ARGV: now, period, limit, member, ttl.
// Only admitted requests are logged: logging rejections too would let a client that keeps
// hammering push its own retry time forward forever.
static SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now, period, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return {1, limit - count - 1, 0, period}
end
-- The next slot opens when the (count - limit + 1)-th oldest entry leaves the window.
local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]) + period - now, tonumber(newest[2]) + period - now}
",
    )
});

pub struct SlidingLog {
    store: RedisStore,
    policy: Policy,
    /// Sorted-set members must be unique, or two requests in the same millisecond collapse
    /// into one entry. A random per-instance tag plus a counter is unique across instances.
    tag: u32,
    seq: AtomicU64,
}

impl SlidingLog {
    pub fn new(store: RedisStore, policy: Policy) -> Self {
        Self {
            store,
            policy,
            tag: rand::random(),
            seq: AtomicU64::new(0),
        }
    }
}

#[async_trait::async_trait]
impl Limiter for SlidingLog {
    fn algorithm(&self) -> Algorithm {
        Algorithm::SlidingLog
    }

    fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn check(&self, key: &str, now_ms: u64) -> Result<Decision, LimiterError> {
        let period = self.policy.period_ms();
        let member = format!(
            "{:x}-{:x}",
            self.tag,
            self.seq.fetch_add(1, Ordering::Relaxed)
        );
        self.store
            .decide(
                SCRIPT
                    .key(self.store.key("log", key))
                    .arg(now_ms)
                    .arg(period)
                    .arg(self.policy.quota())
                    .arg(member)
                    .arg(2 * period),
            )
            .await
    }
}
