//! GCRA (generic cell rate algorithm): a token bucket stored as a single timestamp.
//!
//! Each request "costs" the emission interval T = period / quota. The key holds the
//! theoretical arrival time (TAT): when the client's allowance would be back to empty if it
//! kept sending at exactly the allowed rate. A request at `now` conforms if
//! `TAT − τ <= now`, where the tolerance τ = (burst − 1) × T lets `burst` requests through at
//! once. Same promise as the token bucket (burst + quota per period), one number per client,
//! and the exact retry time falls out for free: `TAT − τ − now`. This is what
//! redis-cell, governor and many API gateways implement.

use std::sync::LazyLock;

use redis::Script;

use crate::limiter::{Algorithm, Decision, Limiter, LimiterError, RedisStore};
use crate::policy::Policy;

// KEYS[1]: the TAT, in ms (a float when T is fractional). ARGV: now, T, tau, slack ms.
// `%.17g` stores the double exactly; Lua's default `tostring` keeps 14 digits, and rounding
// the TAT on every write would drift the rate. Retry times are rounded *up* to whole ms, so a
// retry at the advertised time always conforms.
static SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now, t, tau = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then tat = now end
local allow_at = tat - tau
if now < allow_at then
  return {0, 0, math.ceil(allow_at - now), math.ceil(tat - now)}
end
local new_tat = tat + t
redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX', math.ceil(new_tat - now) + tonumber(ARGV[4]))
local remaining = math.floor((now + tau - new_tat) / t + 1e-9) + 1
if remaining < 0 then remaining = 0 end
return {1, remaining, 0, math.ceil(new_tat - now)}
",
    )
});

pub struct Gcra {
    store: RedisStore,
    policy: Policy,
}

impl Gcra {
    pub fn new(store: RedisStore, policy: Policy) -> Self {
        Self { store, policy }
    }
}

#[async_trait::async_trait]
impl Limiter for Gcra {
    fn algorithm(&self) -> Algorithm {
        Algorithm::Gcra
    }

    fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn check(&self, key: &str, now_ms: u64) -> Result<Decision, LimiterError> {
        let t = self.policy.emission_interval_ms();
        let tau = t * (self.policy.burst() - 1) as f64;
        self.store
            .decide(
                SCRIPT
                    .key(self.store.key("gcra", key))
                    .arg(now_ms)
                    .arg(t)
                    .arg(tau)
                    // Once TAT <= now the key means "full burst available", same as missing;
                    // keep it one period longer for clock skew.
                    .arg(self.policy.period_ms()),
            )
            .await
    }
}
