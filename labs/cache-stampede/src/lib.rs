//! Cache stampede: cache-aside with TTL, stampede guards, invalidation and eviction.
//!
//! Placeholder: this lab is not written yet.

use labkit::{LabCtx, Report};

/// The `cache-stampede` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheStampede;

#[labkit::async_trait]
impl labkit::Lab for CacheStampede {
    fn id(&self) -> &'static str {
        "cache-stampede"
    }

    fn title(&self) -> &'static str {
        "Cache stampede: cache-aside with TTL, stampede guards, invalidation and eviction"
    }

    async fn run(&self, _ctx: &LabCtx) -> anyhow::Result<Report> {
        anyhow::bail!("lab `cache-stampede` is not implemented yet")
    }
}
