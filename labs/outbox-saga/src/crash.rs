//! Crash injection at named points.
//!
//! A "process" in this lab is a task. When it crashes it simply stops at the named point:
//! the code returns [`Crashed`] from there with `?`, so nothing after the point runs — no
//! publish, no mark-as-sent, no `XACK`, no cleanup. An open transaction is dropped and rolls
//! back, which is what the server does when a killed process's connection goes away.
//!
//! The points are an enum the code checks ([`Crashes::check`]), so tests arm exactly the one
//! they need and the interleaving is forced, never slept into.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

/// A service of the shop. Each has its own schema and pool, its own outbox and relay, and
/// one consumer (the orders service's consumer is the saga orchestrator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Orders,
    Warehouse,
    Payments,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Orders, Service::Warehouse, Service::Payments];

    /// The Postgres schema the service owns.
    pub fn schema(self) -> &'static str {
        match self {
            Self::Orders => "orders",
            Self::Warehouse => "warehouse",
            Self::Payments => "payments",
        }
    }
}

/// Where a process can die.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrashPoint {
    /// An order writer: the order's transaction committed; whatever came next (publishing
    /// the event, for the dual write) never happens.
    WriterAfterCommit,
    /// A publish-first dual writer: the event is on the stream; the commit never happens.
    WriterAfterPublish,
    /// A relay: its claimed batch is on the stream; marking it sent never happens.
    RelayAfterPublish(Service),
    /// A consumer: the effect is applied inside its transaction; the commit never happens.
    /// For the orders service this is the orchestrator dying between two saga steps.
    ConsumerBeforeCommit(Service),
    /// A consumer: the effect committed; the `XACK` never happens.
    ConsumerAfterCommit(Service),
}

impl CrashPoint {
    /// Every point, for `POST /lab/crash` and its error message.
    pub const ALL: [CrashPoint; 11] = [
        Self::WriterAfterCommit,
        Self::WriterAfterPublish,
        Self::RelayAfterPublish(Service::Orders),
        Self::RelayAfterPublish(Service::Warehouse),
        Self::RelayAfterPublish(Service::Payments),
        Self::ConsumerBeforeCommit(Service::Orders),
        Self::ConsumerBeforeCommit(Service::Warehouse),
        Self::ConsumerBeforeCommit(Service::Payments),
        Self::ConsumerAfterCommit(Service::Orders),
        Self::ConsumerAfterCommit(Service::Warehouse),
        Self::ConsumerAfterCommit(Service::Payments),
    ];

    /// A stable snake_case name: `orders_relay_after_publish`, `orchestrator_before_commit`.
    pub fn name(self) -> String {
        let consumer = |s: Service| match s {
            Service::Orders => "orchestrator",
            Service::Warehouse => "warehouse",
            Service::Payments => "payments",
        };
        match self {
            Self::WriterAfterCommit => "writer_after_commit".into(),
            Self::WriterAfterPublish => "writer_after_publish".into(),
            Self::RelayAfterPublish(s) => format!("{}_relay_after_publish", s.schema()),
            Self::ConsumerBeforeCommit(s) => format!("{}_before_commit", consumer(s)),
            Self::ConsumerAfterCommit(s) => format!("{}_after_commit", consumer(s)),
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The process died at this point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("crashed at {0}")]
pub struct Crashed(pub CrashPoint);

#[derive(Debug, Clone, Copy)]
struct Arming {
    /// Fire on every `every`-th pass through the point (1 = the next pass).
    every: u64,
    /// Fire at most this many more times (`None`: forever).
    remaining: Option<u64>,
    passes: u64,
}

/// The armed points of one scenario, shared by every process in it.
#[derive(Debug, Default)]
pub struct Crashes {
    armed: Mutex<HashMap<CrashPoint, Arming>>,
    fired: Mutex<HashMap<CrashPoint, u64>>,
}

impl Crashes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Crash at the next pass through `point`, once.
    pub fn arm_once(&self, point: CrashPoint) {
        self.arm(point, 1, Some(1));
    }

    /// Crash at every `n`-th pass through `point`.
    pub fn arm_every(&self, point: CrashPoint, n: u64) {
        self.arm(point, n, None);
    }

    fn arm(&self, point: CrashPoint, every: u64, remaining: Option<u64>) {
        let arming = Arming {
            every: every.max(1),
            remaining,
            passes: 0,
        };
        self.armed.lock().unwrap().insert(point, arming);
    }

    pub fn disarm_all(&self) {
        self.armed.lock().unwrap().clear();
    }

    /// Called by the code at `point`: `Err(Crashed)` when the process dies here.
    pub fn check(&self, point: CrashPoint) -> Result<(), Crashed> {
        let mut armed = self.armed.lock().unwrap();
        let Some(a) = armed.get_mut(&point) else {
            return Ok(());
        };
        a.passes += 1;
        if a.passes % a.every != 0 {
            return Ok(());
        }
        if let Some(r) = &mut a.remaining {
            *r -= 1;
            if *r == 0 {
                armed.remove(&point);
            }
        }
        drop(armed);
        *self.fired.lock().unwrap().entry(point).or_default() += 1;
        tracing::debug!(%point, "injected crash");
        Err(Crashed(point))
    }

    /// How many times `point` fired.
    pub fn fired(&self, point: CrashPoint) -> u64 {
        self.fired.lock().unwrap().get(&point).copied().unwrap_or(0)
    }

    /// How many crashes fired in total.
    pub fn fired_total(&self) -> u64 {
        self.fired.lock().unwrap().values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_pass_fires_and_once_disarms() {
        let c = Crashes::new();
        c.arm_every(CrashPoint::WriterAfterCommit, 3);
        let fired: Vec<bool> = (0..6)
            .map(|_| c.check(CrashPoint::WriterAfterCommit).is_err())
            .collect();
        assert_eq!(fired, [false, false, true, false, false, true]);
        c.arm_once(CrashPoint::WriterAfterPublish);
        assert!(c.check(CrashPoint::WriterAfterPublish).is_err());
        assert!(c.check(CrashPoint::WriterAfterPublish).is_ok());
        assert_eq!(c.fired_total(), 3);
    }

    #[test]
    fn names_round_trip() {
        for p in CrashPoint::ALL {
            assert_eq!(CrashPoint::parse(&p.name()), Some(p));
        }
    }
}
