//! Responses in query order, byte for byte the same for the same data.
//!
//! The GraphQL spec orders a response's fields as the query selected them. async-graphql
//! 7.2 assembles each object from its fields' futures in a `FuturesUnordered`, inserting each
//! result as it *completes*, so with naive resolvers (every edge its own statement) the order
//! followed whichever statement came back first: ten identical dashboard POSTs to
//! `/graphql/naive` gave seven different bodies. That breaks more than the spec: the ETag is a
//! hash of the body, so a persisted GET never revalidated to 304 there, and on `/graphql` it
//! failed whenever two batches of one level finished in the other order (the flaky 304).
//!
//! [`QueryOrder`] keeps the parsed document of each request and, after execution, puts every
//! object's keys back in the order the spec's CollectFields gives: selections in document
//! order, fragments inlined where they are spread, a response key placed at its first
//! occurrence, the sub-selections of fields sharing a key merged. `@skip`/`@include` are
//! honoured the way async-graphql evaluates them. Type conditions are not checked: this
//! schema has no interfaces or unions, so every spread that validates applies.

use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
};
use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, Field, OperationDefinition, Selection,
    SelectionSet,
};
use async_graphql::{Positioned, Response, ServerResult, Value, Variables};

/// The extension factory: `Schema::build(..).extension(QueryOrder)`.
#[derive(Debug, Clone, Copy)]
pub struct QueryOrder;

impl ExtensionFactory for QueryOrder {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(QueryOrderExtension::default())
    }
}

/// One per request: the document and variables, kept from parsing until the response.
#[derive(Default)]
struct QueryOrderExtension {
    parsed: Mutex<Option<(ExecutableDocument, Variables)>>,
}

#[async_trait::async_trait]
impl Extension for QueryOrderExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        *self.parsed.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((document.clone(), variables.clone()));
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        let parsed = self.parsed.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((document, variables)) = parsed
            && let Some(operation) = operation(&document, operation_name)
        {
            let order = Order {
                document: &document,
                variables: &variables,
            };
            order.apply(&mut response.data, &[&operation.selection_set.node]);
        }
        response
    }
}

fn operation<'d>(
    document: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d OperationDefinition> {
    match (&document.operations, name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        _ => None,
    }
}

struct Order<'d> {
    document: &'d ExecutableDocument,
    variables: &'d Variables,
}

impl<'d> Order<'d> {
    /// Reorder `value` (an object, a list of them, or a scalar) as `sets` selected it.
    fn apply(&self, value: &mut Value, sets: &[&'d SelectionSet]) {
        match value {
            Value::List(items) => items.iter_mut().for_each(|item| self.apply(item, sets)),
            Value::Object(map) => {
                let mut fields = Vec::new();
                for set in sets {
                    self.collect(set, &mut fields);
                }
                let mut unplaced = std::mem::take(map);
                for (key, same_key) in fields {
                    if let Some((name, mut v)) = unplaced.swap_remove_entry(key) {
                        let below: Vec<&SelectionSet> = same_key
                            .iter()
                            .map(|f| &f.selection_set.node)
                            .filter(|s| !s.items.is_empty())
                            .collect();
                        if !below.is_empty() {
                            self.apply(&mut v, &below);
                        }
                        map.insert(name, v);
                    }
                }
                // Nothing should be left; if something is, it keeps its value, at the end.
                map.extend(unplaced);
            }
            _ => {}
        }
    }

    /// CollectFields: response keys in first-occurrence order, each with its fields.
    fn collect(&self, set: &'d SelectionSet, out: &mut Vec<(&'d str, Vec<&'d Field>)>) {
        for selection in &set.items {
            if self.skipped(selection.node.directives()) {
                continue;
            }
            match &selection.node {
                Selection::Field(f) => {
                    let key = f.node.response_key().node.as_str();
                    match out.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, fields)) => fields.push(&f.node),
                        None => out.push((key, vec![&f.node])),
                    }
                }
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) =
                        self.document.fragments.get(&spread.node.fragment_name.node)
                    {
                        self.collect(&fragment.node.selection_set.node, out);
                    }
                }
                Selection::InlineFragment(inline) => {
                    self.collect(&inline.node.selection_set.node, out);
                }
            }
        }
    }

    /// `@skip(if: true)` or `@include(if: false)`, evaluated as async-graphql does (an
    /// unresolvable condition counts as false).
    fn skipped(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().any(|d| {
            let include = match d.node.name.node.as_str() {
                "skip" => false,
                "include" => true,
                _ => return false,
            };
            let condition = d.node.get_argument("if").is_some_and(|v| {
                matches!(
                    v.node.clone().into_const_with(|name| self
                        .variables
                        .get(&name)
                        .cloned()
                        .ok_or(())),
                    Ok(Value::Boolean(true))
                )
            });
            d.node.get_argument("if").is_some() && include != condition
        })
    }
}
