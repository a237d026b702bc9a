//! The contrast: GCRA in process memory (the `governor` crate), state NOT shared.
//!
//! Same algorithm as `gcra.rs`, no network hop, nanosecond-fast — and each app instance keeps
//! its own counts. Behind a load balancer with N instances a client gets up to N times its
//! quota; the instances scenario measures exactly that. Fine for protecting one process from
//! itself; wrong for "100 requests per minute per API key" across a fleet.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock as GovernorClock;
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::limiter::{Algorithm, Decision, Limiter, LimiterError};
use crate::policy::Policy;

/// governor reads time from its own clock type. This one reports the latest `now` passed to
/// [`Limiter::check`], so the in-memory limiter obeys the same (possibly manual) clock as the
/// Redis ones. `fetch_max` keeps it monotonic, which governor requires.
#[derive(Debug, Clone, Default)]
struct LatestNow(Arc<AtomicU64>);

impl GovernorClock for LatestNow {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, LatestNow, StateInformationMiddleware>;

pub struct InMemory {
    limiter: Keyed,
    now: LatestNow,
    policy: Policy,
}

impl InMemory {
    pub fn new(policy: Policy) -> Self {
        let now = LatestNow::default();
        let interval = Duration::from_secs_f64(policy.emission_interval_ms() / 1000.0);
        let quota = Quota::with_period(interval)
            .expect("a validated policy has a non-zero interval")
            .allow_burst(NonZeroU32::new(policy.burst()).expect("validated burst >= 1"));
        let limiter = RateLimiter::<_, _, _, NoOpMiddleware<Duration>>::new(
            quota,
            DefaultKeyedStateStore::default(),
            now.clone(),
        )
        .with_middleware::<StateInformationMiddleware>();
        Self {
            limiter,
            now,
            policy,
        }
    }
}

#[async_trait::async_trait]
impl Limiter for InMemory {
    fn algorithm(&self) -> Algorithm {
        Algorithm::InMemory
    }

    fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn check(&self, key: &str, now_ms: u64) -> Result<Decision, LimiterError> {
        self.now.0.fetch_max(now_ms, Ordering::SeqCst);
        let t = self.policy.emission_interval_ms();
        let burst = self.policy.burst();
        // governor does not expose its TAT, so `reset` is derived from what it does expose:
        // (burst - remaining) emission intervals until the bucket is full again.
        Ok(match self.limiter.check_key(&key.to_string()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    remaining,
                    retry_after: Duration::ZERO,
                    reset: ms_ceil(t * (burst - remaining) as f64),
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.now.now());
                let retry_after = Duration::from_millis(wait.as_nanos().div_ceil(1_000_000) as u64);
                Decision {
                    allowed: false,
                    remaining: 0,
                    retry_after,
                    reset: retry_after + ms_ceil(t * (burst - 1) as f64),
                }
            }
        })
    }
}

/// Round up to whole milliseconds: a retry time rounded down would be a lie.
fn ms_ceil(ms: f64) -> Duration {
    Duration::from_millis(ms.ceil() as u64)
}
