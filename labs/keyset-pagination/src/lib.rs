//! Keyset vs offset pagination over millions of rows and concurrent writes.
//!
//! Placeholder: this lab is not written yet.

use labkit::{LabCtx, Report};

/// The `keyset-pagination` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeysetPagination;

#[labkit::async_trait]
impl labkit::Lab for KeysetPagination {
    fn id(&self) -> &'static str {
        "keyset-pagination"
    }

    fn title(&self) -> &'static str {
        "Keyset vs offset pagination over millions of rows and concurrent writes"
    }

    async fn run(&self, _ctx: &LabCtx) -> anyhow::Result<Report> {
        anyhow::bail!("lab `keyset-pagination` is not implemented yet")
    }
}
