//! Fixed window counter: one `INCR` per request on a counter named after the current window.
//!
//! Windows are aligned to the clock (`now / period`), as every `INCR rl:<key>:<minute>`
//! implementation is. Cheap (one small integer per client) and exact *per window*, but the
//! promise is about windows on the clock, not about any stretch of time: a client that spends
//! its quota at the end of one window and again at the start of the next gets twice the quota
//! through inside one period. The accuracy scenario reproduces exactly that edge burst.

use redis::Script;
use std::sync::LazyLock;

use crate::limiter::{Algorithm, Decision, Limiter, LimiterError, RedisStore};
use crate::policy::Policy;

// KEYS[1]: this window's counter. ARGV: limit, ms until the window ends, ttl ms.
// Rejected requests are counted too: harmless (only `count <= limit` matters) and it saves a GET.
static SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
local limit, ends_in = tonumber(ARGV[1]), tonumber(ARGV[2])
if count <= limit then
  return {1, limit - count, 0, ends_in}
end
return {0, 0, ends_in, ends_in}
",
    )
});

pub struct FixedWindow {
    store: RedisStore,
    policy: Policy,
}

impl FixedWindow {
    pub fn new(store: RedisStore, policy: Policy) -> Self {
        Self { store, policy }
    }
}

#[async_trait::async_trait]
impl Limiter for FixedWindow {
    fn algorithm(&self) -> Algorithm {
        Algorithm::FixedWindow
    }

    fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn check(&self, key: &str, now_ms: u64) -> Result<Decision, LimiterError> {
        let period = self.policy.period_ms();
        let window = now_ms / period;
        let ends_in = (window + 1) * period - now_ms;
        let counter = format!("{}:{window}", self.store.key("fw", key));
        // TTLs run on Redis's own clock; one extra period keeps a window's counter alive even
        // when the app clock runs slower than Redis's (skew, or a test's manual clock).
        let ttl = ends_in + period;
        self.store
            .decide(
                SCRIPT
                    .key(counter)
                    .arg(self.policy.quota())
                    .arg(ends_in)
                    .arg(ttl),
            )
            .await
    }
}
