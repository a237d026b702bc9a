//! Full-text search: replacing LIKE '%…%' with trigram and tsvector indexes.
//!
//! (Being built: see the issue for this lab.)

use labkit::{LabCtx, Report};

/// The finding keys this lab promises.
pub const FINDING_KEYS: &[&str] = &[];

/// The `full-text-search` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct FullTextSearch;

#[labkit::async_trait]
impl labkit::Lab for FullTextSearch {
    fn id(&self) -> &'static str {
        "full-text-search"
    }

    fn title(&self) -> &'static str {
        "Full-text search: replacing LIKE '%…%' with trigram and tsvector indexes"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        Ok(ctx.report(self.title()))
    }
}
