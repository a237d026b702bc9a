//! The circuit breaker's state machine — hand-written, because it is the lesson.
//!
//! (tower has no circuit breaker; in production you would reach for resilience4j on the JVM,
//! Polly on .NET, or a crate such as `failsafe`. The semantics below follow resilience4j's
//! `CircuitBreaker`, and its defaults are [`BreakerConfig::RESILIENCE4J`].)
//!
//! ```text
//!            failure rate >= threshold            wait_in_open elapsed
//!            (once minimum_calls are in)          (checked on the next call)
//!   CLOSED ───────────────────────────────▶ OPEN ───────────────────────▶ HALF_OPEN
//!     ▲                                      ▲                               │
//!     │   probes' failure rate < threshold   │  probes' failure rate >=      │
//!     └──────────────────────────────────────┼───────── threshold ◀──────────┘
//!                                            └───────────────────────────────┘
//! ```
//!
//! - **Closed**: every call is let through and its outcome goes into a sliding window — the
//!   last N calls (count based) or the last T seconds (time based). Nothing is judged until
//!   the window holds `minimum_calls`; from then on a failure rate at or above the threshold
//!   opens the breaker. Like resilience4j, a count-based window clamps `minimum_calls` to its
//!   size; a time-based one does not — which is how a breaker ends up never opening (below).
//! - **Open**: calls fail fast with [`CallNotPermitted`], without touching the dependency,
//!   until `wait_in_open` has passed; the next call then moves the breaker to half-open
//!   (resilience4j's default, `automaticTransitionFromOpenToHalfOpenEnabled = false`).
//! - **Half-open**: exactly `half_open_calls` probes are let through, everything else is
//!   rejected. When all of them have reported, their failure rate decides: closed again, or
//!   back to open for another wait.
//!
//! A call holds a [`Permit`] and reports `success()` or `failure()`. A permit dropped without
//! a report (the request was cancelled) hands its half-open probe slot back, so a cancelled
//! probe cannot wedge the breaker in half-open. Reports from a previous state (a call let
//! through while closed that finishes after the breaker opened) are ignored.
//!
//! The mis-set breaker this lab shows: a **time-based** window of 1 s with resilience4j's
//! `minimumNumberOfCalls = 100`, on an endpoint that sees 50 calls a second. The window never
//! holds 100 calls, so the failure rate is never judged and the breaker never opens, however
//! hard the dependency fails.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::Clock;

/// How the closed state remembers outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// The last `n` calls (resilience4j `COUNT_BASED`, `slidingWindowSize = n`).
    CountBased(u32),
    /// The calls of the last `span` (resilience4j `TIME_BASED`, in 10 buckets).
    TimeBased(#[serde(serialize_with = "crate::clock::as_ms")] Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BreakerConfig {
    /// Percent of failed calls at which the breaker opens (`failureRateThreshold`).
    pub failure_rate_threshold: f64,
    /// Calls the window must hold before the rate is judged (`minimumNumberOfCalls`).
    pub minimum_calls: u32,
    /// `slidingWindowType` + `slidingWindowSize`.
    pub window: Window,
    /// How long the breaker stays open before probing (`waitDurationInOpenState`).
    #[serde(rename = "wait_in_open_ms", serialize_with = "crate::clock::as_ms")]
    pub wait_in_open: Duration,
    /// Probes let through in half-open (`permittedNumberOfCallsInHalfOpenState`).
    pub half_open_calls: u32,
}

impl BreakerConfig {
    /// resilience4j's `CircuitBreakerConfig.ofDefaults()`.
    pub const RESILIENCE4J: Self = Self {
        failure_rate_threshold: 50.0,
        minimum_calls: 100,
        window: Window::CountBased(100),
        wait_in_open: Duration::from_secs(60),
        half_open_calls: 10,
    };

    /// The same breaker with a shorter wait in open (the lab's clock is compressed).
    pub fn wait(mut self, wait_in_open: Duration) -> Self {
        self.wait_in_open = wait_in_open;
        self
    }

    pub fn window(mut self, window: Window) -> Self {
        self.window = window;
        self
    }

    /// `minimum_calls` as the breaker applies it: clamped to a count-based window's size.
    pub fn effective_minimum_calls(&self) -> u32 {
        match self.window {
            Window::CountBased(n) => self.minimum_calls.min(n),
            Window::TimeBased(_) => self.minimum_calls,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// The breaker refused the call: it is open, or half-open with every probe slot taken.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("circuit breaker is {}: call not permitted", state.as_str())]
pub struct CallNotPermitted {
    pub state: State,
}

/// One state change, for the state-over-time chart.
#[derive(Debug, Clone, Copy)]
pub struct Transition {
    pub at: Instant,
    pub to: State,
}

/// What the breaker has done so far.
#[derive(Debug, Clone)]
pub struct BreakerStats {
    pub state: State,
    pub transitions: Vec<Transition>,
    pub permitted: u64,
    pub rejected: u64,
}

pub struct Breaker {
    cfg: BreakerConfig,
    clock: Clock,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("cfg", &self.cfg)
            .field("state", &self.state())
            .finish()
    }
}

struct Inner {
    state: State,
    /// Bumped on every transition; a permit from an older epoch reports into nothing.
    epoch: u64,
    window: Outcomes,
    opened_at: Instant,
    probes_out: u32,
    probe_calls: u32,
    probe_failures: u32,
    transitions: Vec<Transition>,
    permitted: u64,
    rejected: u64,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig, clock: Clock) -> Self {
        let now = clock.now();
        Self {
            inner: Mutex::new(Inner {
                state: State::Closed,
                epoch: 0,
                window: Outcomes::new(cfg.window, now),
                opened_at: now,
                probes_out: 0,
                probe_calls: 0,
                probe_failures: 0,
                transitions: vec![Transition {
                    at: now,
                    to: State::Closed,
                }],
                permitted: 0,
                rejected: 0,
            }),
            cfg,
            clock,
        }
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.cfg
    }

    // A std Mutex, not tokio's: it is held for a few arithmetic steps and never across an
    // await (the bench measures the whole check at tens of nanoseconds).
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> State {
        self.lock().state
    }

    pub fn stats(&self) -> BreakerStats {
        let g = self.lock();
        BreakerStats {
            state: g.state,
            transitions: g.transitions.clone(),
            permitted: g.permitted,
            rejected: g.rejected,
        }
    }

    /// Ask to make a call. Open: refused, unless the wait is over (then half-open, and this
    /// call may be the first probe). Half-open: one of the `half_open_calls` probe slots.
    pub fn try_acquire(&self) -> Result<Permit<'_>, CallNotPermitted> {
        let now = self.clock.now();
        let mut g = self.lock();
        if g.state == State::Open && now.duration_since(g.opened_at) >= self.cfg.wait_in_open {
            g.transition(State::HalfOpen, now);
        }
        let allowed = match g.state {
            State::Closed => true,
            State::Open => false,
            State::HalfOpen if g.probes_out < self.cfg.half_open_calls => {
                g.probes_out += 1;
                true
            }
            State::HalfOpen => false,
        };
        if !allowed {
            g.rejected += 1;
            return Err(CallNotPermitted { state: g.state });
        }
        g.permitted += 1;
        Ok(Permit {
            breaker: self,
            epoch: g.epoch,
            reported: false,
        })
    }

    fn report(&self, epoch: u64, failed: bool) {
        let now = self.clock.now();
        let mut g = self.lock();
        if g.epoch != epoch {
            return;
        }
        match g.state {
            State::Closed => {
                g.window.record(failed, now);
                let (calls, failures) = g.window.totals(now);
                if calls >= self.cfg.effective_minimum_calls()
                    && rate(failures, calls) >= self.cfg.failure_rate_threshold
                {
                    g.transition(State::Open, now);
                }
            }
            State::HalfOpen => {
                g.probe_calls += 1;
                g.probe_failures += u32::from(failed);
                if g.probe_calls >= self.cfg.half_open_calls {
                    let next = if rate(g.probe_failures, g.probe_calls)
                        >= self.cfg.failure_rate_threshold
                    {
                        State::Open
                    } else {
                        State::Closed
                    };
                    g.transition(next, now);
                }
            }
            State::Open => {}
        }
    }

    fn release(&self, epoch: u64) {
        let mut g = self.lock();
        if g.epoch == epoch && g.state == State::HalfOpen {
            g.probes_out = g.probes_out.saturating_sub(1);
        }
    }
}

fn rate(failures: u32, calls: u32) -> f64 {
    if calls == 0 {
        0.0
    } else {
        100.0 * f64::from(failures) / f64::from(calls)
    }
}

impl Inner {
    fn transition(&mut self, to: State, now: Instant) {
        self.state = to;
        self.epoch += 1;
        match to {
            State::Closed => self.window.reset(now),
            State::Open => self.opened_at = now,
            State::HalfOpen => {
                self.probes_out = 0;
                self.probe_calls = 0;
                self.probe_failures = 0;
            }
        }
        self.transitions.push(Transition { at: now, to });
    }
}

/// Permission for one call. Report how it went; dropping it unreported releases the slot.
#[must_use = "report the call's outcome with success() or failure()"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    epoch: u64,
    reported: bool,
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl Permit<'_> {
    pub fn success(mut self) {
        self.reported = true;
        self.breaker.report(self.epoch, false);
    }

    pub fn failure(mut self) {
        self.reported = true;
        self.breaker.report(self.epoch, true);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.release(self.epoch);
        }
    }
}

/// The closed state's sliding window.
enum Outcomes {
    /// A ring of the last `size` outcomes (true = failed) and the running failure count.
    Count {
        size: usize,
        ring: Vec<bool>,
        next: usize,
        failures: u32,
    },
    /// Ten buckets of `span / 10`, each (calls, failures); `head` is the current bucket.
    Time {
        bucket: Duration,
        buckets: [(u32, u32); BUCKETS],
        head: usize,
        head_start: Instant,
    },
}

const BUCKETS: usize = 10;

impl Outcomes {
    fn new(window: Window, now: Instant) -> Self {
        match window {
            Window::CountBased(n) => Self::Count {
                size: n.max(1) as usize,
                ring: Vec::with_capacity(n.max(1) as usize),
                next: 0,
                failures: 0,
            },
            Window::TimeBased(span) => Self::Time {
                bucket: (span / BUCKETS as u32).max(Duration::from_micros(1)),
                buckets: [(0, 0); BUCKETS],
                head: 0,
                head_start: now,
            },
        }
    }

    fn reset(&mut self, now: Instant) {
        match self {
            Self::Count {
                ring,
                next,
                failures,
                ..
            } => {
                ring.clear();
                *next = 0;
                *failures = 0;
            }
            Self::Time {
                buckets,
                head,
                head_start,
                ..
            } => {
                *buckets = [(0, 0); BUCKETS];
                *head = 0;
                *head_start = now;
            }
        }
    }

    /// Rotate a time window so the head bucket covers `now`; older buckets fall out.
    fn advance(&mut self, now: Instant) {
        if let Self::Time {
            bucket,
            buckets,
            head,
            head_start,
        } = self
        {
            let mut steps = 0;
            while now.duration_since(*head_start) >= *bucket {
                *head = (*head + 1) % BUCKETS;
                buckets[*head] = (0, 0);
                *head_start += *bucket;
                steps += 1;
                if steps > BUCKETS {
                    // Idle for longer than the window: everything has aged out.
                    *buckets = [(0, 0); BUCKETS];
                    *head_start = now;
                    break;
                }
            }
        }
    }

    fn record(&mut self, failed: bool, now: Instant) {
        self.advance(now);
        match self {
            Self::Count {
                size,
                ring,
                next,
                failures,
            } => {
                if ring.len() < *size {
                    ring.push(failed);
                } else {
                    *failures -= u32::from(ring[*next]);
                    ring[*next] = failed;
                }
                *next = (*next + 1) % *size;
                *failures += u32::from(failed);
            }
            Self::Time { buckets, head, .. } => {
                buckets[*head].0 += 1;
                buckets[*head].1 += u32::from(failed);
            }
        }
    }

    /// (calls, failures) in the window.
    fn totals(&mut self, now: Instant) -> (u32, u32) {
        self.advance(now);
        match self {
            Self::Count { ring, failures, .. } => (ring.len() as u32, *failures),
            Self::Time { buckets, .. } => buckets
                .iter()
                .fold((0, 0), |(c, f), (bc, bf)| (c + bc, f + bf)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_window_forgets_the_oldest_outcome() {
        let now = Instant::now();
        let mut w = Outcomes::new(Window::CountBased(3), now);
        for failed in [true, true, false, false] {
            w.record(failed, now);
        }
        assert_eq!(w.totals(now), (3, 1));
    }

    #[test]
    fn a_time_window_forgets_calls_older_than_its_span() {
        let t0 = Instant::now();
        let mut w = Outcomes::new(Window::TimeBased(Duration::from_secs(1)), t0);
        w.record(true, t0);
        w.record(false, t0 + Duration::from_millis(500));
        assert_eq!(w.totals(t0 + Duration::from_millis(900)), (2, 1));
        assert_eq!(w.totals(t0 + Duration::from_millis(1_050)), (1, 0));
        assert_eq!(w.totals(t0 + Duration::from_secs(5)), (0, 0));
    }
}
