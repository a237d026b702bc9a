//! Token bucket: a bucket of `burst` tokens, refilled continuously at quota / period; each
//! request takes one token.
//!
//! State is two numbers per client (tokens, time of last refill) in a hash. The refill is
//! computed lazily from the elapsed time on each call — no background refiller. Promise: at
//! most `burst + quota` in any window of one period (a full bucket, plus a period of refill).
//! Counting trick: the script counts in units of 1/period of a token, so one request costs
//! `period` units and a millisecond refills `quota` units — integer arithmetic throughout, no
//! float drift in what Redis stores.

use std::sync::LazyLock;

use redis::Script;

use crate::limiter::{Algorithm, Decision, Limiter, LimiterError, RedisStore};
use crate::policy::Policy;

// KEYS[1]: hash {tokens, ts}. ARGV: now, capacity (burst × period), refill per ms (quota),
// cost of one request (period), ttl ms.
// A rejected request writes nothing: the next call recomputes the same refill from `ts`.
// If `now` is older than `ts` (a lagging instance), no refill and `ts` stays: state never
// moves backwards.
static SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now, cap, rate, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or cap
local ts = tonumber(state[2]) or now
if now > ts then
  tokens = math.min(cap, tokens + (now - ts) * rate)
  ts = now
end
if tokens >= cost then
  tokens = tokens - cost
  redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', ts)
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return {1, math.floor(tokens / cost), 0, math.ceil((cap - tokens) / rate)}
end
return {0, 0, math.ceil((cost - tokens) / rate), math.ceil((cap - tokens) / rate)}
",
    )
});

pub struct TokenBucket {
    store: RedisStore,
    policy: Policy,
}

impl TokenBucket {
    pub fn new(store: RedisStore, policy: Policy) -> Self {
        Self { store, policy }
    }
}

#[async_trait::async_trait]
impl Limiter for TokenBucket {
    fn algorithm(&self) -> Algorithm {
        Algorithm::TokenBucket
    }

    fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn check(&self, key: &str, now_ms: u64) -> Result<Decision, LimiterError> {
        let p = &self.policy;
        let period = p.period_ms();
        let capacity = p.burst() as u64 * period;
        // An untouched bucket refills completely in capacity / rate ms, after which a missing
        // key means the same thing as a full bucket. One period of slack for clock skew.
        let ttl = capacity.div_ceil(p.quota() as u64) + period;
        self.store
            .decide(
                SCRIPT
                    .key(self.store.key("tb", key))
                    .arg(now_ms)
                    .arg(capacity)
                    .arg(p.quota())
                    .arg(period)
                    .arg(ttl),
            )
            .await
    }
}
