//! Sliding window counter: the fixed window's two counters (this window and the previous one),
//! blended by how much of the previous window the sliding window still overlaps.
//!
//! `estimate = previous × (period − elapsed) / period + current` — Cloudflare's approximation.
//! It costs two integers per client, like the fixed window, and smooths the fixed window's
//! edge. But it *assumes the previous window's requests were spread evenly*. When they were
//! not — a burst at the very end of the previous window — the estimate undercounts, and the
//! lab's accuracy scenario shows the algorithm admitting far more than the quota inside one
//! period. Approximate, not exact; fine for smooth traffic, weak against a burst at the edge.

use std::sync::LazyLock;

use redis::Script;

use crate::limiter::{Algorithm, Decision, Limiter, LimiterError, RedisStore};
use crate::policy::Policy;

// KEYS[1]: this window's counter, KEYS[2]: the previous window's.
// ARGV: period, limit, elapsed ms in this window, ttl ms.
// Integer form of `estimate + 1 <= limit`, multiplied through by the period so no division
// (and no float rounding) decides admission.
static SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local period, limit, elapsed = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local curr = tonumber(redis.call('GET', KEYS[1]) or '0')
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
local left_in_window = period - elapsed
if prev * left_in_window + (curr + 1) * period <= limit * period then
  curr = redis.call('INCR', KEYS[1])
  if curr == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
  local remaining = math.floor((limit * period - prev * left_in_window - curr * period) / period)
  return {1, remaining, 0, left_in_window + period}
end
-- Earliest moment the estimate drops low enough, if nothing else is admitted meanwhile.
local retry
local slots = limit - curr - 1
if slots >= 0 and prev > 0 then
  -- Still in this window: need prev * (period - e) <= slots * period.
  local e = period - math.floor(slots * period / prev)
  if e < period then retry = e - elapsed end
end
if not retry then
  -- Next window: its previous counter is today's `curr`, its current counter starts at 0.
  local e = 0
  if curr > 0 then e = math.max(0, period - math.floor((limit - 1) * period / curr)) end
  retry = left_in_window + e
end
local reset = left_in_window
if curr > 0 then reset = left_in_window + period end
return {0, 0, retry, reset}
",
    )
});

pub struct SlidingCounter {
    store: RedisStore,
    policy: Policy,
}

impl SlidingCounter {
    pub fn new(store: RedisStore, policy: Policy) -> Self {
        Self { store, policy }
    }
}

#[async_trait::async_trait]
impl Limiter for SlidingCounter {
    fn algorithm(&self) -> Algorithm {
        Algorithm::SlidingCounter
    }

    fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn check(&self, key: &str, now_ms: u64) -> Result<Decision, LimiterError> {
        let period = self.policy.period_ms();
        let window = now_ms / period;
        let base = self.store.key("sc", key);
        let current = format!("{base}:{window}");
        let previous = format!("{base}:{}", window.saturating_sub(1));
        // A counter is read as "previous" during the next window: it must outlive two periods.
        let ttl = 3 * period;
        self.store
            .decide(
                SCRIPT
                    .key(current)
                    .key(previous)
                    .arg(period)
                    .arg(self.policy.quota())
                    .arg(now_ms - window * period)
                    .arg(ttl),
            )
            .await
    }
}
