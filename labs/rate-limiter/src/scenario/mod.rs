//! The lab's four measurements, each in its own file, and the sizes they run at.

pub mod accuracy;
pub mod cost;
pub mod instances;
pub mod outage;

use std::time::Duration;

use labkit::Scale;

use crate::policy::Policy;

/// Scenarios measure, they do not serve: they give each decision this long before calling it
/// a failure, so a decision slowed down by a busy machine is counted in the latency rather than
/// turned into an error. (Only the Redis-down scenario uses the serving deadline.)
pub const MEASUREMENT_DEADLINE: Duration = Duration::from_secs(5);

/// How big each scenario is at each scale. Time in the accuracy, instances and outage
/// scenarios is simulated, so the policy's period (a minute) costs no wall time.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub policy: Policy,
    /// Periods of too-fast traffic after the burst (accuracy) and behind the fleet (instances).
    pub accuracy_periods: u64,
    pub instance_periods: u64,
    pub obedient_clients: u32,
    pub obedient_rounds: u32,
    /// The latency phase's defaults; `--clients`, `--duration` and `--warmup` override them.
    pub cost_workers: usize,
    /// Measured time per variant, split over `cost_rounds` interleaved rounds.
    pub cost_duration: Duration,
    pub cost_rounds: u32,
    pub cost_warmup: Duration,
    pub cost_keys: usize,
    pub ops_decisions: u64,
    pub outage_per_phase: u64,
    pub outage_clients: u64,
}

impl Params {
    pub fn for_scale(scale: Scale) -> Self {
        let (quota, burst) = scale.pick((10, 4), (100, 20), (1000, 200));
        Self {
            policy: Policy::new(quota, Duration::from_secs(60), burst)
                .expect("the lab's own policies are valid"),
            accuracy_periods: 4,
            instance_periods: 2,
            obedient_clients: scale.pick(5, 10, 100),
            obedient_rounds: scale.pick(3, 4, 10),
            cost_workers: scale.pick(2, 2, 8),
            cost_duration: Duration::from_millis(scale.pick(150, 2400, 9000)),
            cost_rounds: scale.pick(1, 3, 3),
            cost_warmup: Duration::from_millis(scale.pick(40, 200, 750)),
            cost_keys: scale.pick(100, 1000, 10_000),
            ops_decisions: scale.pick(50, 500, 2000),
            outage_per_phase: scale.pick(30, 200, 1000),
            outage_clients: scale.pick(2, 4, 10),
        }
    }
}
