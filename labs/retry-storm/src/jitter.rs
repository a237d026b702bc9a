//! Backoff with jitter — the five formulas of the AWS Architecture Blog's "Exponential
//! Backoff And Jitter" (Marc Brooker, 2015), hand-written because they are the lesson.
//!
//! With `n` the retry number (1 for the first retry) and `v = min(cap, base · 2ⁿ)`:
//!
//! | strategy | wait before retry `n` | bounds |
//! |---|---|---|
//! | none | 0 | exactly 0 |
//! | exponential | `v` | exactly `v` |
//! | full jitter | `uniform(0, v)` | `[0, v]` |
//! | equal jitter | `v/2 + uniform(0, v/2)` | `[v/2, v]` |
//! | decorrelated jitter | `sleep = min(cap, uniform(base, 3 · sleep))`, `sleep₀ = base` | `[base, min(cap, 3 · previous)]` |
//!
//! Exponential backoff alone spaces the *rounds* out but not the clients within a round: N
//! clients that collided once retry at the same instant and collide again. Jitter spreads
//! each round over the whole interval, so most retries find the row free.

use std::time::Duration;

use rand::RngExt;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    None,
    Exponential,
    Full,
    Equal,
    Decorrelated,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::None,
        Strategy::Exponential,
        Strategy::Full,
        Strategy::Equal,
        Strategy::Decorrelated,
    ];

    /// The key fragment: `jitter_<name>_calls`.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Exponential => "exponential",
            Self::Full => "full",
            Self::Equal => "equal",
            Self::Decorrelated => "decorrelated",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::None => "no backoff",
            Self::Exponential => "exponential, no jitter",
            Self::Full => "full jitter",
            Self::Equal => "equal jitter",
            Self::Decorrelated => "decorrelated jitter",
        }
    }
}

/// One client's backoff: the formula, its base and cap, and decorrelated jitter's memory.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub strategy: Strategy,
    pub base: Duration,
    pub cap: Duration,
    /// Decorrelated jitter's previous sleep (starts at `base`).
    sleep: Duration,
}

impl Backoff {
    pub fn new(strategy: Strategy, base: Duration, cap: Duration) -> Self {
        Self {
            strategy,
            base,
            cap,
            sleep: base,
        }
    }

    /// `min(cap, base · 2ⁿ)`, without overflowing for large `n`.
    pub fn expo(&self, n: u32) -> Duration {
        let v = self.base.as_secs_f64() * 2f64.powi(n.min(62) as i32);
        Duration::from_secs_f64(v.min(self.cap.as_secs_f64()))
    }

    /// How long to wait before retry number `n` (1 = the first retry).
    pub fn next<R: RngExt + ?Sized>(&mut self, n: u32, rng: &mut R) -> Duration {
        match self.strategy {
            Strategy::None => Duration::ZERO,
            Strategy::Exponential => self.expo(n),
            Strategy::Full => uniform(rng, Duration::ZERO, self.expo(n)),
            Strategy::Equal => {
                let half = self.expo(n) / 2;
                half + uniform(rng, Duration::ZERO, half)
            }
            Strategy::Decorrelated => {
                self.sleep = uniform(rng, self.base, self.sleep * 3).min(self.cap);
                self.sleep
            }
        }
    }

    /// The documented bounds of the wait before retry `n`, given the previous wait (only
    /// decorrelated jitter looks at it). For tests and the README table.
    pub fn bounds(&self, n: u32, previous: Duration) -> (Duration, Duration) {
        let v = self.expo(n);
        match self.strategy {
            Strategy::None => (Duration::ZERO, Duration::ZERO),
            Strategy::Exponential => (v, v),
            Strategy::Full => (Duration::ZERO, v),
            Strategy::Equal => (v / 2, v),
            Strategy::Decorrelated => (
                self.base.min(self.cap),
                (previous.max(self.base) * 3).min(self.cap),
            ),
        }
    }
}

/// A uniform draw in `[lo, hi]` (just `lo` when the range is empty).
fn uniform<R: RngExt + ?Sized>(rng: &mut R, lo: Duration, hi: Duration) -> Duration {
    if hi <= lo {
        return lo;
    }
    let x = rng.random_range(lo.as_secs_f64()..hi.as_secs_f64());
    Duration::from_secs_f64(x).clamp(lo, hi)
}
