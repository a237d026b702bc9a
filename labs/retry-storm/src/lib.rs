//! Retry storms: timeouts, backoff with jitter, retry budgets and circuit breakers.
//!
//! (Being built: see the issue for this lab.)

use labkit::{LabCtx, Report};

/// The finding keys this lab promises.
pub const FINDING_KEYS: &[&str] = &[];

/// The `retry-storm` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryStorm;

#[labkit::async_trait]
impl labkit::Lab for RetryStorm {
    fn id(&self) -> &'static str {
        "retry-storm"
    }

    fn title(&self) -> &'static str {
        "Retry storms: timeouts, backoff with jitter, retry budgets and circuit breakers"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        Ok(ctx.report(self.title()))
    }
}
