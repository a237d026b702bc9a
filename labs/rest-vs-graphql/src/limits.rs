//! Query limits: a GraphQL endpoint lets the *client* write the query, so the server must
//! price it before running it. Three guards, all applied before a resolver runs:
//!
//! - **depth**: how many fields deep the selection goes. The schema has cycles
//!   (task → assignee → assignedTasks → comments → author → assignedTasks ...), so without a
//!   cap one request can walk the graph until the database gives up.
//! - **complexity**: an estimate of the objects the query will touch. List fields multiply
//!   their children by their `first` argument, so `projects(first: 100) { tasks(first: 100)
//!   { comments(first: 100) ... } }` prices at millions even though it is only 4 deep.
//! - **page size**: `first` is at most 100 (an argument validator on every list field); a
//!   larger value is rejected, not capped, like REST's `limit`.
//!
//! async-graphql has `limit_depth`/`limit_complexity` on the schema builder; they answer
//! "Query is nested too deep." without the numbers. This extension enforces the same two
//! limits in the same place (after validation, before execution) and says by how much the
//! query is over, so a client developer can fix it without reading server code.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::{ErrorExtensionValues, ServerError, ValidationResult};

/// The limits a schema enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_depth: usize,
    pub max_complexity: usize,
}

impl Limits {
    /// What the served endpoint enforces. The dashboard query is depth 5 and complexity
    /// 212 per project (21 200 at 100 projects, the largest screen the chart asks for).
    pub const SERVED: Limits = Limits {
        max_depth: 6,
        max_complexity: 50_000,
    };
}

/// The extension factory: `Schema::build(..).extension(QueryLimits(Limits::SERVED))`.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits(pub Limits);

impl ExtensionFactory for QueryLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(QueryLimitsExtension(self.0))
    }
}

struct QueryLimitsExtension(Limits);

#[async_trait::async_trait]
impl Extension for QueryLimitsExtension {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let measured = next.run(ctx).await?;
        let mut errors = Vec::new();
        if measured.depth > self.0.max_depth {
            errors.push(limit_error(
                "DEPTH_LIMIT_EXCEEDED",
                format!(
                    "query depth {} exceeds the limit of {}; split the query or fetch the nested part separately",
                    measured.depth, self.0.max_depth
                ),
            ));
        }
        if measured.complexity > self.0.max_complexity {
            errors.push(limit_error(
                "COMPLEXITY_LIMIT_EXCEEDED",
                format!(
                    "query complexity {} exceeds the limit of {}; lower the `first` arguments or select fewer nested lists",
                    measured.complexity, self.0.max_complexity
                ),
            ));
        }
        if errors.is_empty() {
            Ok(measured)
        } else {
            Err(errors)
        }
    }
}

/// `projects(first: k) { tasks(first: k) { assignee { assignedTasks(first: k) { comments(first: k)
/// { author { assignedTasks(first: k) { title } } } } } } }` — depth 8, rows growing like k⁵.
pub fn nested_query(k: usize) -> String {
    format!(
        "{{ projects(first: {k}) {{ id tasks(first: {k}) {{ id assignee {{ id assignedTasks(first: {k}) \
         {{ id comments(first: {k}) {{ id author {{ id assignedTasks(first: {k}) {{ id title }} }} }} }} }} }} }} }}"
    )
}

fn limit_error(code: &str, message: String) -> ServerError {
    let mut e = ServerError::new(message, None);
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", code);
    e.extensions = Some(ext);
    e
}
