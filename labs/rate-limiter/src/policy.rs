//! A rate-limit policy: a quota per period, plus a burst size, validated once at startup.
//!
//! `"100/60s burst=20"` means: 100 requests per 60 seconds on average, and up to 20 at once.
//! The window algorithms (fixed window, sliding log, sliding counter) read it as "at most 100
//! in a window of 60 s" and ignore the burst; the bucket algorithms (token bucket, GCRA,
//! governor) read it as "refill at 100 per 60 s into a bucket of 20". That difference is the
//! point of the lab's accuracy scenario: each family makes a different promise.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What can be wrong with a policy. Config errors are caught at startup, never per request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("rate-limit quota must be at least 1 request per period, got {0}")]
    ZeroQuota(i64),
    #[error("rate-limit period must be at least 1 s (whole seconds, e.g. `60s` or `1m`), got {0}")]
    BadPeriod(String),
    #[error("rate-limit burst must be a positive whole number, got {0} (use burst=1 for no burst)")]
    BadBurst(i64),
    #[error(
        "rate-limit policy is too large: burst × period must stay under 10^13 request·ms, got {burst} × {period_ms} ms"
    )]
    TooLarge { burst: u32, period_ms: u64 },
    #[error(
        "cannot parse rate-limit policy `{0}`: expected `<quota>/<period> burst=<n>`, e.g. `100/60s burst=20`"
    )]
    Syntax(String),
}

/// A validated policy. Construct with [`Policy::new`] or parse `"100/60s burst=20"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    quota: u32,
    period_ms: u64,
    burst: u32,
}

impl Policy {
    /// Validate raw config values. They arrive as signed integers on purpose: config files and
    /// environment variables can say `-5`, and "negative burst" deserves its own message rather
    /// than a generic parse error.
    pub fn new(quota: i64, period: Duration, burst: i64) -> Result<Self, PolicyError> {
        if quota < 1 {
            return Err(PolicyError::ZeroQuota(quota));
        }
        let quota = u32::try_from(quota).map_err(|_| PolicyError::Syntax(quota.to_string()))?;
        // Whole seconds because `RateLimit-Policy: w=` and `Retry-After` are whole seconds.
        if period < Duration::from_secs(1) || period.subsec_nanos() != 0 {
            return Err(PolicyError::BadPeriod(format!("{}s", period.as_secs_f64())));
        }
        if burst < 1 {
            return Err(PolicyError::BadBurst(burst));
        }
        let burst = u32::try_from(burst).map_err(|_| PolicyError::BadBurst(burst))?;
        let period_ms = period.as_millis() as u64;
        // The token-bucket script counts in integer units of 1/period of a token, so
        // burst × period must stay exact in a Lua double (and printable without an exponent).
        if (burst as u128) * (period_ms as u128) >= 10_u128.pow(13)
            || (quota as u128) * (period_ms as u128) >= 10_u128.pow(13)
        {
            return Err(PolicyError::TooLarge { burst, period_ms });
        }
        Ok(Self {
            quota,
            period_ms,
            burst,
        })
    }

    /// Requests allowed per period.
    pub fn quota(&self) -> u32 {
        self.quota
    }

    /// The period in milliseconds.
    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    pub fn period(&self) -> Duration {
        Duration::from_millis(self.period_ms)
    }

    /// Requests allowed at once by the bucket algorithms.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// GCRA's emission interval T = period / quota: one request "costs" T of time.
    pub fn emission_interval_ms(&self) -> f64 {
        self.period_ms as f64 / self.quota as f64
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}s burst={}",
            self.quota,
            self.period_ms / 1000,
            self.burst
        )
    }
}

impl FromStr for Policy {
    type Err = PolicyError;

    /// `<quota>/<period> burst=<n>`; period is `<n>s`, `<n>m` or `<n>h`. `burst=` is optional
    /// and defaults to the quota (the whole period's allowance at once).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || PolicyError::Syntax(s.to_string());
        let mut parts = s.split_whitespace();
        let rate = parts.next().ok_or_else(syntax)?;
        let (quota, period) = rate.split_once('/').ok_or_else(syntax)?;
        let quota: i64 = quota.parse().map_err(|_| syntax())?;
        let period = parse_period(period).ok_or_else(|| PolicyError::BadPeriod(period.into()))?;
        let burst = match parts.next() {
            None => quota,
            Some(b) => b
                .strip_prefix("burst=")
                .ok_or_else(syntax)?
                .parse::<i64>()
                .map_err(|_| syntax())?,
        };
        if parts.next().is_some() {
            return Err(syntax());
        }
        Self::new(quota, period, burst)
    }
}

fn parse_period(s: &str) -> Option<Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quota_period_and_burst() {
        let p: Policy = "100/1m burst=20".parse().unwrap();
        assert_eq!((p.quota(), p.period_ms(), p.burst()), (100, 60_000, 20));
        assert_eq!(p.to_string(), "100/60s burst=20");
        let p: Policy = "5/1s".parse().unwrap();
        assert_eq!(p.burst(), 5, "burst defaults to the quota");
    }

    #[test]
    fn bad_config_is_rejected_with_a_message_that_names_the_problem() {
        assert_eq!(
            "100/0s".parse::<Policy>(),
            Err(PolicyError::BadPeriod("0s".into()))
        );
        assert_eq!(
            "100/60s burst=-5".parse::<Policy>(),
            Err(PolicyError::BadBurst(-5))
        );
        assert_eq!("0/60s".parse::<Policy>(), Err(PolicyError::ZeroQuota(0)));
        assert!(matches!(
            "100 per minute".parse::<Policy>(),
            Err(PolicyError::Syntax(_))
        ));
        assert!(matches!(
            Policy::new(10, Duration::from_millis(1500), 1),
            Err(PolicyError::BadPeriod(_))
        ));
        let msg = "100/60s burst=-5"
            .parse::<Policy>()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("burst") && msg.contains("-5"), "{msg}");
    }
}
