//! Fault injection: make the next payment request "crash" right after a recovery point.
//!
//! A crash here is what a killed process looks like from the database: the handler returns
//! at that point without running any cleanup, so the key stays locked and its recovery point
//! stays where the last committed phase left it. The client sees a 500 (in real life: a
//! reset connection). Faults are one-shot and armed on the service's state — by tests, by
//! the lab run, or with `POST /lab/faults` under `lab serve`.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Where the next request dies, named after what has been committed when it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultPoint {
    /// The key row is inserted (`started`); the provider has not been called.
    AfterKeyStarted,
    /// The provider has charged the card; nothing about it is committed locally. The nasty one.
    AfterProviderCharge,
    /// The payment row is committed (`charge_created`); the receipt and response are not.
    AfterChargeRecorded,
    /// Everything is committed (`finished`); the response never reached the client.
    AfterFinished,
}

impl FaultPoint {
    pub const ALL: [FaultPoint; 4] = [
        Self::AfterKeyStarted,
        Self::AfterProviderCharge,
        Self::AfterChargeRecorded,
        Self::AfterFinished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AfterKeyStarted => "after_key_started",
            Self::AfterProviderCharge => "after_provider_charge",
            Self::AfterChargeRecorded => "after_charge_recorded",
            Self::AfterFinished => "after_finished",
        }
    }
}

/// The armed fault, if any. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<Option<FaultPoint>>>);

impl Faults {
    /// The next request to reach `point` crashes there.
    pub fn arm(&self, point: FaultPoint) {
        *self.0.lock().expect("faults lock") = Some(point);
    }

    /// True (and disarmed) if a fault is armed at `point`.
    pub fn trip(&self, point: FaultPoint) -> bool {
        let mut armed = self.0.lock().expect("faults lock");
        if *armed == Some(point) {
            *armed = None;
            true
        } else {
            false
        }
    }
}
