//! The axum layers: who is calling ([`identify`]), and may they ([`rate_limit`]).
//!
//! - Identity: an API key from `x-api-key` or `Authorization: Bearer`, else the client's IP
//!   (the socket peer). A malformed key is a 400 — never silently downgraded to per-IP, which
//!   would hand a typo'd client someone else's quota.
//! - Limit: one [`Limiter::check`] per request. Admitted and rejected responses both carry
//!   the IETF httpapi draft fields `RateLimit-Policy` and `RateLimit`; a 429 adds
//!   `Retry-After`. When the limiter's store fails, the configured [`FailMode`] decides, and
//!   the failure is counted.
//!
//! The limit runs *before* authentication would (a real API checks the key against a
//! database after this): a flood of requests with one stolen or made-up key is throttled
//! before it reaches the auth store. A flood of *different* made-up keys gets one allowance
//! per key, though — the usual answer is a coarser per-IP limit in front, which this lab
//! leaves out.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api::ApiError;
use crate::clock::Clock;
use crate::limiter::{Decision, Limiter};
use crate::policy::Policy;

/// What to do when the limiter cannot decide (Redis down or too slow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Admit the request: the API stays up, unthrottled, while the limiter is down.
    Open,
    /// Reject with 503: nothing gets through unmetered, and the API is down with the limiter.
    Closed,
}

impl fmt::Display for FailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Closed => "closed",
        })
    }
}

impl FromStr for FailMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            o => Err(format!("unknown fail mode `{o}` (expected open or closed)")),
        }
    }
}

/// Counters an operator would graph. `failed_open + failed_closed` is "limiter errors".
#[derive(Debug, Default)]
pub struct LimitStats {
    admitted: AtomicU64,
    rejected: AtomicU64,
    failed_open: AtomicU64,
    failed_closed: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub admitted: u64,
    pub rejected: u64,
    pub failed_open: u64,
    pub failed_closed: u64,
}

impl LimitStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            admitted: self.admitted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            failed_open: self.failed_open.load(Ordering::Relaxed),
            failed_closed: self.failed_closed.load(Ordering::Relaxed),
        }
    }
}

/// The rate-limit layer's state: a limiter, the clock it is asked with, and the fail mode.
#[derive(Clone)]
pub struct Limits {
    pub limiter: Arc<dyn Limiter>,
    pub clock: Arc<dyn Clock>,
    pub fail_mode: FailMode,
    pub stats: Arc<LimitStats>,
}

impl Limits {
    pub fn new(limiter: Arc<dyn Limiter>, clock: Arc<dyn Clock>, fail_mode: FailMode) -> Self {
        Self {
            limiter,
            clock,
            fail_mode,
            stats: Arc::default(),
        }
    }
}

/// An API key, parsed once at the boundary. 8–64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        if !(8..=64).contains(&s.len()) {
            return Err(ApiError::MalformedApiKey(
                "an API key is 8 to 64 characters long",
            ));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ApiError::MalformedApiKey(
                "an API key contains only letters, digits, `_` and `-`",
            ));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientId {
    ApiKey(ApiKey),
    /// Anonymous: the socket peer's address. (Behind a proxy this would come from a header
    /// the proxy sets — trusted only because the proxy is ours; here there is no proxy.)
    Ip(IpAddr),
}

impl ClientId {
    /// The limiter key. In production, store the key's id or a hash rather than the secret.
    pub fn limiter_key(&self) -> String {
        match self {
            Self::ApiKey(k) => format!("key:{}", k.as_str()),
            Self::Ip(ip) => format!("ip:{ip}"),
        }
    }

    /// From `x-api-key` / `Authorization: Bearer`, else the peer address.
    pub fn from_request(headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<Self, ApiError> {
        let header_key = match headers.get("x-api-key") {
            None => None,
            Some(v) => Some(ApiKey::parse(v.to_str().map_err(|_| {
                ApiError::MalformedApiKey("x-api-key must be visible ASCII")
            })?)?),
        };
        let bearer_key = match headers.get(axum::http::header::AUTHORIZATION) {
            None => None,
            Some(v) => {
                let v = v.to_str().map_err(|_| {
                    ApiError::MalformedApiKey("Authorization must be visible ASCII")
                })?;
                let token = v
                    .split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, token)| token.trim())
                    .ok_or(ApiError::MalformedApiKey(
                        "Authorization must be `Bearer <api key>`",
                    ))?;
                Some(ApiKey::parse(token)?)
            }
        };
        match (header_key, bearer_key) {
            (Some(a), Some(b)) if a != b => Err(ApiError::MalformedApiKey(
                "x-api-key and Authorization carry different keys",
            )),
            (Some(k), _) | (None, Some(k)) => Ok(Self::ApiKey(k)),
            // No ConnectInfo (a router driven without a socket, e.g. in a bench): all such
            // requests share one anonymous bucket rather than escaping the limit.
            (None, None) => Ok(Self::Ip(
                peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip()),
            )),
        }
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.limiter_key())
    }
}

/// Layer 1: identify the caller; a malformed key stops here with a 400.
pub async fn identify(mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match ClientId::from_request(req.headers(), peer) {
        Ok(client) => {
            req.extensions_mut().insert(client);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Layer 2: one admission decision per request.
pub async fn rate_limit(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<ClientId>()
        .cloned()
        .unwrap_or(ClientId::Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
    let now = limits.clock.now_ms();
    let policy = *limits.limiter.policy();
    match limits.limiter.check(&client.limiter_key(), now).await {
        Ok(decision) if decision.allowed => {
            limits.stats.admitted.fetch_add(1, Ordering::Relaxed);
            let mut response = next.run(req).await;
            let headers = response.headers_mut();
            for (name, value) in ratelimit_headers(&policy, &decision) {
                headers.insert(name, value);
            }
            response
        }
        Ok(decision) => {
            limits.stats.rejected.fetch_add(1, Ordering::Relaxed);
            ApiError::RateLimited { decision, policy }.into_response()
        }
        Err(e) => match limits.fail_mode {
            FailMode::Open => {
                limits.stats.failed_open.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(client = %client, "rate limiter unavailable, failing open: {e}");
                next.run(req).await
            }
            FailMode::Closed => {
                limits.stats.failed_closed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(client = %client, "rate limiter unavailable, failing closed: {e}");
                ApiError::LimiterUnavailable.into_response()
            }
        },
    }
}

/// Whole seconds, rounded up: HTTP's delay-seconds cannot say "0.4 s", and rounding down would
/// tell the client to come back before it will be admitted.
pub fn secs_ceil(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}

/// `RateLimit-Policy: "default";q=<quota>;w=<period s>` and `RateLimit: "default";r=<remaining>;t=<s>`
/// (draft-ietf-httpapi-ratelimit-headers-10). On a 429 `t` names the same moment as
/// `Retry-After`, as the draft asks; otherwise it is when the full allowance is back.
pub fn ratelimit_headers(policy: &Policy, decision: &Decision) -> [(HeaderName, HeaderValue); 2] {
    let t = if decision.allowed {
        secs_ceil(decision.reset)
    } else {
        secs_ceil(decision.retry_after).max(1)
    };
    let policy_value = format!(
        "\"default\";q={};w={}",
        policy.quota(),
        policy.period_ms() / 1000
    );
    let state_value = format!("\"default\";r={};t={t}", decision.remaining);
    [
        (
            HeaderName::from_static("ratelimit-policy"),
            HeaderValue::from_str(&policy_value).expect("ASCII digits and quotes"),
        ),
        (
            HeaderName::from_static("ratelimit"),
            HeaderValue::from_str(&state_value).expect("ASCII digits and quotes"),
        ),
    ]
}
