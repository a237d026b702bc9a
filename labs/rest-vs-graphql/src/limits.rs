//! Query limits: a GraphQL endpoint lets the *client* write the query, so the server must
//! price it before running it. Three guards, all applied before a resolver runs:
//!
//! - **depth**: how many fields deep the selection goes. The schema has cycles
//!   (task → assignee → assignedTasks → comments → author → assignedTasks ...), so without a
//!   cap one request can walk the graph until the database gives up.
//! - **complexity (cost)**: an upper bound on the work, priced field by field over the whole
//!   document — every alias is a field of its own, so 800 aliases cost 800 times one. A
//!   scalar costs 1; a field that reaches the database (a list, or an edge to one object)
//!   costs [`STATEMENT_COST`] plus what it returns: `first` × one item for a list. Depth
//!   cannot see an alias bomb (`a1: projects(first: 30) { tasks(first: 1) { id } } a2: ...`
//!   is 3 deep at any width); the cost does. Because every statement costs at least
//!   [`STATEMENT_COST`], an admitted query runs at most `max_complexity / STATEMENT_COST`
//!   statements even with naive resolvers.
//! - **page size**: `first` is at most 100 (an argument validator on every list field); a
//!   larger value is rejected, not capped, like REST's `limit`.
//!
//! async-graphql computes depth and complexity during validation (the per-field prices are
//! `#[graphql(complexity = ...)]` in `graphql.rs`); its own `limit_depth`/`limit_complexity`
//! answer "Query is nested too deep." without the numbers. This extension enforces the same
//! two limits in the same place (after validation, before execution) and says by how much the
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

/// What one database round trip costs in the complexity sum, against 1 for a scalar field:
/// a statement is worth about ten fields of JSON, and the weight is what bounds statements.
pub const STATEMENT_COST: usize = 10;

impl Limits {
    /// What the served endpoint enforces. The dashboard query is depth 5 and costs 682 per
    /// project (68 210 at 100 projects, the largest screen the lab shows), so the limit sits
    /// just above it: at most 7 500 statements per request, whatever the aliases.
    pub const SERVED: Limits = Limits {
        max_depth: 6,
        max_complexity: 75_000,
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

/// `aliases` copies of `projects(first: 30) { tasks(first: 1) { id } }`, each under its own
/// alias: three deep, so the depth limit passes it, yet each copy is 31 statements on naive
/// resolvers (800 copies, 42 KB of query text: 24 800 statements in one request).
pub fn alias_bomb(aliases: usize) -> String {
    let mut q = String::with_capacity(aliases * 52 + 4);
    q.push('{');
    for i in 0..aliases {
        q.push_str(&format!(
            " a{i}: projects(first: 30) {{ tasks(first: 1) {{ id }} }}"
        ));
    }
    q.push_str(" }");
    q
}

fn limit_error(code: &str, message: String) -> ServerError {
    let mut e = ServerError::new(message, None);
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", code);
    e.extensions = Some(ext);
    e
}
