//! DataLoader, made per level: one `load_many` per level for all its parents, into the
//! request loader's cache, before the field resolvers ask.
//!
//! A DataLoader batch closes on a time window, and a long list registers its keys over many
//! scheduler turns, so on a 100-project screen a level split into several batches (see
//! `dataloader.rs`). Here the root resolver walks the query's own selection (async-graphql's
//! look-ahead: [`SelectionField`], fragments expanded, `@skip`ped fields already removed) and,
//! level by level, hands the loader *all* the level's keys in one call: one batch, one
//! statement, by construction rather than by timing. The field resolvers are unchanged; their
//! `load_one` finds the key in the cache and runs nothing.
//!
//! The walk mirrors the schema's edges (`Project.tasks`, `Task.assignee`, ...) and reads each
//! list's `first` argument (variables resolved), so its keys are exactly the keys the
//! resolvers will ask for. An edge it did not know would still be correct, just not
//! prefetched: that resolver would batch by window, as before.

use std::collections::HashMap;
use std::hash::Hash;

use async_graphql::dataloader::Loader;
use async_graphql::{SelectionField, Value};
use futures::future::BoxFuture;

use crate::dataloader::{
    Batcher, CommentsOfTask, LoadError, ProjectId, RequestLoader, TasksOfAssignee, TasksOfProject,
    UserId,
};
use crate::graphql::{DEFAULT_COMMENTS, DEFAULT_TASKS};
use crate::model::{Comment, Project, Task, User};
use crate::rest::MAX_PAGE;

/// The objects of one level, whose selection is being prefetched.
#[derive(Debug, Clone)]
pub enum Parents {
    Projects(Vec<Project>),
    Tasks(Vec<Task>),
    Comments(Vec<Comment>),
    Users(Vec<User>),
}

/// Load, for all of `parents`, every edge selected under `field`, then recurse one level
/// down. Levels run one after another (each needs the previous level's rows), and the edges of
/// one level one after another too, so the count is the same on every run.
pub fn levels<'a>(
    loader: &'a RequestLoader,
    field: SelectionField<'a>,
    parents: Parents,
) -> BoxFuture<'a, Result<(), LoadError>> {
    Box::pin(async move {
        for child in field.selection_set() {
            let below = match (&parents, child.name()) {
                (Parents::Projects(ps), "tasks") => {
                    let Some(first) = first(child, DEFAULT_TASKS) else {
                        continue;
                    };
                    let keys = ps.iter().map(|p| TasksOfProject {
                        project_id: p.id,
                        first,
                    });
                    Parents::Tasks(flat(load(loader, keys).await?))
                }
                (Parents::Projects(ps), "owner") => {
                    Parents::Users(one(
                        load(loader, ps.iter().map(|p| UserId(p.owner_id))).await?
                    ))
                }
                (Parents::Tasks(ts), "project") => Parents::Projects(one(load(
                    loader,
                    ts.iter().map(|t| ProjectId(t.project_id)),
                )
                .await?)),
                (Parents::Tasks(ts), "assignee") => {
                    Parents::Users(one(
                        load(loader, ts.iter().map(|t| UserId(t.assignee_id))).await?
                    ))
                }
                (Parents::Tasks(ts), "comments") => {
                    let Some(first) = first(child, DEFAULT_COMMENTS) else {
                        continue;
                    };
                    let keys = ts.iter().map(|t| CommentsOfTask {
                        task_id: t.id,
                        first,
                    });
                    Parents::Comments(flat(load(loader, keys).await?))
                }
                (Parents::Comments(cs), "author") => {
                    Parents::Users(one(
                        load(loader, cs.iter().map(|c| UserId(c.author_id))).await?
                    ))
                }
                (Parents::Users(us), "assignedTasks") => {
                    let Some(first) = first(child, DEFAULT_TASKS) else {
                        continue;
                    };
                    let keys = us.iter().map(|u| TasksOfAssignee {
                        user_id: u.id,
                        first,
                    });
                    Parents::Tasks(flat(load(loader, keys).await?))
                }
                // A scalar (or `__typename`): nothing to load.
                _ => continue,
            };
            levels(loader, child, below).await?;
        }
        Ok(())
    })
}

/// One batch for the whole level (an empty level runs nothing).
async fn load<K, I>(
    loader: &RequestLoader,
    keys: I,
) -> Result<HashMap<K, <Batcher as Loader<K>>::Value>, LoadError>
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
    I: IntoIterator<Item = K>,
    Batcher: Loader<K, Error = LoadError>,
{
    loader.load_many(keys).await
}

/// The `first` argument of a list field, or the schema's default when the query leaves it
/// out. `None` when it is out of range or does not resolve: that edge is not prefetched, and
/// its resolver rejects the argument without running a statement.
fn first(field: SelectionField<'_>, default: i32) -> Option<i32> {
    let args = field.arguments().ok()?;
    let given = args.into_iter().find(|(name, _)| name.as_str() == "first");
    let n = match given {
        None => i64::from(default),
        Some((_, Value::Number(n))) => n.as_i64()?,
        Some(_) => return None,
    };
    (1..=MAX_PAGE)
        .contains(&n)
        .then(|| i32::try_from(n).ok())
        .flatten()
}

fn flat<K, T>(lists: HashMap<K, Vec<T>>) -> Vec<T> {
    lists.into_values().flatten().collect()
}

fn one<K, T>(found: HashMap<K, T>) -> Vec<T> {
    found.into_values().collect()
}
