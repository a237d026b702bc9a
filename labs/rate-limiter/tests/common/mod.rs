//! Shared test helpers: a one-instance app on a manual clock, and header readers.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;

use lab_rate_limiter::api::{AppState, router};
use lab_rate_limiter::clock::ManualClock;
use lab_rate_limiter::limiter::{self, Algorithm, Limiter, RedisStore};
use lab_rate_limiter::middleware::{FailMode, Limits};
use lab_rate_limiter::policy::Policy;
use lab_rate_limiter::scenario::MEASUREMENT_DEADLINE;
use labkit::LabCtx;

/// A clock-aligned start: a multiple of one minute, so window arithmetic in tests is plain.
pub const T0: u64 = 1_700_000_040_000;

/// A store with the lab's measurement deadline: on busy test machines a slow decision must
/// not turn into a fail-closed 503 and a flaky test.
pub async fn store(ctx: &LabCtx) -> RedisStore {
    RedisStore::connect_with_deadline(ctx.redis_client(), ctx.redis_prefix(), MEASUREMENT_DEADLINE)
        .await
        .expect("redis store")
}

pub async fn limiter(ctx: &LabCtx, algorithm: Algorithm, policy: &str) -> Arc<dyn Limiter> {
    let policy: Policy = policy.parse().expect("valid test policy");
    limiter::build(algorithm, policy, &store(ctx).await)
}

/// One app instance for `algorithm` on a manual clock, served on a real socket.
pub async fn app(
    ctx: &LabCtx,
    algorithm: Algorithm,
    policy: &str,
    clock: &ManualClock,
) -> labkit::http::TestServer {
    let limits = Limits::new(
        limiter(ctx, algorithm, policy).await,
        Arc::new(clock.clone()),
        FailMode::Closed,
    );
    labkit::http::spawn(router(AppState {
        instance: "test".into(),
        limits: Some(limits),
    }))
    .await
    .expect("server starts")
}

pub fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_string())
}

/// `t` from a `RateLimit: "default";r=<n>;t=<s>` header.
pub fn ratelimit_t(value: &str) -> u64 {
    value
        .split(';')
        .find_map(|p| p.strip_prefix("t="))
        .expect("t= parameter")
        .parse()
        .expect("integer t")
}
