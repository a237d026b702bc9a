//! The published idempotency policy, and the clock it is measured on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// How keys behave. Published in every `/v1/payments` response as the `Idempotency-Policy`
/// header and in the README, so client authors don't have to guess.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// A key is remembered this long after its first use, then treated as new (and reaped).
    /// 24 h is Stripe's choice: longer than any sane retry schedule, short enough to keep
    /// the table small.
    pub key_ttl: Duration,
    /// A key locked longer than this is presumed abandoned (its request crashed) and the
    /// next retry takes it over from its recovery point. It must exceed the provider call's
    /// timeout, or a slow-but-alive request could lose its key to a retry.
    pub lock_timeout: Duration,
    /// Request bodies above this are refused with 413 before they are parsed.
    pub max_body_bytes: usize,
    /// Timeout of one call to the payment provider.
    pub provider_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            key_ttl: Duration::from_secs(24 * 3600),
            lock_timeout: Duration::from_secs(60),
            max_body_bytes: 16 * 1024,
            provider_timeout: Duration::from_secs(10),
        }
    }
}

impl Policy {
    /// The `Idempotency-Policy` response header, a Structured Fields dictionary.
    pub fn header_value(&self) -> String {
        format!(
            "required, scope=\"bearer-token\", max-key-length={}, ttl={}, in-flight=409, replay-header=\"Idempotent-Replayed\"",
            crate::key::MAX_KEY_LEN,
            self.key_ttl.as_secs()
        )
    }
}

/// The time the service believes it is. Every expiry and lock decision reads this clock and
/// binds it into SQL (rather than calling `now()` in Postgres), so tests and the lab can move
/// time forward explicitly instead of sleeping through a 60 s lock timeout.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Added to the wall clock; only [`Clock::advance`] changes it.
    skew: Arc<Mutex<chrono::Duration>>,
}

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Self::default()
    }

    pub fn now(&self) -> DateTime<Utc> {
        // A std Mutex: held for one read, never across an await.
        Utc::now() + *self.skew.lock().expect("clock lock")
    }

    /// Move this clock (and its clones) forward.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).expect("duration in range");
        *self.skew.lock().expect("clock lock") += by;
    }
}
