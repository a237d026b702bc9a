//! Rate limiter: token bucket, sliding window and GCRA on shared Redis.
//!
//! Placeholder: this lab is not written yet.

use labkit::{LabCtx, Report};

/// The `rate-limiter` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateLimiter;

#[labkit::async_trait]
impl labkit::Lab for RateLimiter {
    fn id(&self) -> &'static str {
        "rate-limiter"
    }

    fn title(&self) -> &'static str {
        "Rate limiter: token bucket, sliding window and GCRA on shared Redis"
    }

    async fn run(&self, _ctx: &LabCtx) -> anyhow::Result<Report> {
        anyhow::bail!("lab `rate-limiter` is not implemented yet")
    }
}
