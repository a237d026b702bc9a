//! Where "now" comes from: the app server's clock, passed into every limiter call.
//!
//! Every limiter takes `now` (Unix milliseconds) as an argument instead of asking Redis for
//! `TIME` inside the script. Two reasons: tests and the lab's accuracy scenario can drive time
//! by hand (a [`ManualClock`]: minutes of traffic replayed in milliseconds, nothing slept), and
//! the scripts stay pure functions of their inputs. The option turned down, Redis `TIME`, gives
//! every app instance one shared clock; client-supplied time trades that for clock skew: an
//! instance whose clock runs ahead refills buckets early and expires log entries early. With
//! NTP-synced hosts the skew is milliseconds against periods of seconds or more, and the
//! bucket scripts never move state backwards when a lagging instance reports an older `now`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of Unix-millisecond timestamps.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// The wall clock, for the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn at(ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(ms)))
    }

    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
