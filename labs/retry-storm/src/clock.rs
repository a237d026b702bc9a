//! The time the circuit breaker reads: the system clock in the run and `lab serve`, a manual
//! clock in tests, so "wait 60 s in open" is one `advance` call instead of a sleep.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// Time moves only when a test calls [`Clock::advance`].
    Manual(Arc<Mutex<Instant>>),
}

impl Clock {
    pub fn system() -> Self {
        Self::System
    }

    pub fn manual() -> Self {
        Self::Manual(Arc::new(Mutex::new(Instant::now())))
    }

    pub fn now(&self) -> Instant {
        match self {
            Self::System => Instant::now(),
            Self::Manual(t) => *t.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Move a manual clock forward (no effect on the system clock).
    pub fn advance(&self, by: Duration) {
        if let Self::Manual(t) = self {
            *t.lock().unwrap_or_else(|e| e.into_inner()) += by;
        }
    }
}

/// Serialize a duration as milliseconds (`"wait_in_open_ms": 60000`, not `{secs, nanos}`).
pub fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// [`as_ms`] for an optional duration (`null` when absent).
pub fn as_ms_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => as_ms(d, s),
        None => s.serialize_none(),
    }
}
