//! DataLoader: the resolvers still ask for one parent's children at a time, but the loader
//! collects the keys asked for within a short window and sends them as one batched statement
//! (`batched.rs`). One loader per request, so nothing leaks between users and its cache never
//! needs invalidating.
//!
//! The count it should produce is one statement per (depth, entity) the query touches, not
//! per parent: the dashboard is projects, tasks, assignees, comments, comment authors = 5, for
//! 1 project or 100. Assignees and authors are both users but sit at different depths, so they
//! are two batches (the BFF, which sees the whole tree, merges them into one).
//!
//! A batch is a *time window*, not a level, and that is not enough on its own: see
//! [`per_request`] for how a level splits, and `prefetch.rs` for the fix the served endpoint
//! uses (each level loaded for all its parents with one `load_many` into this loader's cache).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use sqlx::PgPool;
use tracing::Instrument;

use crate::batched;
use crate::model::{Comment, Project, Task, User};

/// Keys name what is loaded; `first` is part of the key because "the latest 3 comments of
/// task 7" and "the latest 10" are different answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProjectId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TasksOfProject {
    pub project_id: i64,
    pub first: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TasksOfAssignee {
    pub user_id: i64,
    pub first: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommentsOfTask {
    pub task_id: i64,
    pub first: i32,
}

/// The loader behind every key type: a pool and the batched queries.
pub struct Batcher {
    pub(crate) pool: PgPool,
}

/// Loader errors must be `Clone` (one failure answers many waiters).
pub type LoadError = Arc<sqlx::Error>;

/// How long a batch waits for more keys after its first one: async-graphql's default.
pub const BATCH_WINDOW: Duration = Duration::from_millis(1);

/// The per-request loader, with a cache so a prefetched level is served from memory.
pub type RequestLoader = DataLoader<Batcher, HashMapCache>;

/// A fresh loader for one request.
///
/// - The spawner carries the request's tracing span into the batch task, so the batch's
///   statements are counted against the request that caused them (labkit::SqlCounter).
/// - `max_batch_size` is raised from 1000: at N = 100 projects the comments batch has 1000
///   keys and the authors batch more, and Postgres takes a 10 000-element array in stride.
///
/// Why a time window alone splits a level: a level's keys land in one batch only if every
/// parent registers its key before the window closes. async-graphql resolves a list through
/// futures' `join_all`, which polls up to 30 items in one pass but puts a longer list in a
/// `FuturesOrdered` that yields to the scheduler every couple of items; a 100-project level
/// registers over many scheduler turns, and the batch task, woken by its 1 ms timer, runs in
/// between. Measured before the prefetch: 5 statements at 20 projects, 11–20 at 100. A longer
/// delay only lowers the odds; the prefetch removes them.
pub fn per_request(pool: PgPool) -> RequestLoader {
    DataLoader::with_cache(
        Batcher { pool },
        |f| tokio::spawn(f.in_current_span()),
        HashMapCache::default(),
    )
    .max_batch_size(10_000)
    .delay(BATCH_WINDOW)
}

impl Loader<UserId> for Batcher {
    type Value = User;
    type Error = LoadError;

    async fn load(&self, keys: &[UserId]) -> Result<HashMap<UserId, User>, LoadError> {
        tracing::debug!(keys = keys.len(), "DataLoader batch: users");
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let users = batched::users_by_id(&self.pool, &ids).await?;
        Ok(users.into_iter().map(|u| (UserId(u.id), u)).collect())
    }
}

impl Loader<ProjectId> for Batcher {
    type Value = Project;
    type Error = LoadError;

    async fn load(&self, keys: &[ProjectId]) -> Result<HashMap<ProjectId, Project>, LoadError> {
        tracing::debug!(keys = keys.len(), "DataLoader batch: projects");
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let projects = batched::projects_by_id(&self.pool, &ids).await?;
        Ok(projects.into_iter().map(|p| (ProjectId(p.id), p)).collect())
    }
}

impl Loader<TasksOfProject> for Batcher {
    type Value = Vec<Task>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[TasksOfProject],
    ) -> Result<HashMap<TasksOfProject, Vec<Task>>, LoadError> {
        tracing::debug!(keys = keys.len(), "DataLoader batch: tasks of projects");
        let mut out = HashMap::new();
        // One statement per distinct page size; a real screen asks with one size.
        for (first, parents) in group_by_first(keys, |k| (k.first, k.project_id)) {
            let tasks = batched::tasks_of_projects(&self.pool, &parents, first.into()).await?;
            let mut by_parent = children_by_parent(&parents, tasks, |t| t.project_id);
            for project_id in parents {
                let key = TasksOfProject { project_id, first };
                out.insert(key, by_parent.remove(&project_id).unwrap_or_default());
            }
        }
        Ok(out)
    }
}

impl Loader<TasksOfAssignee> for Batcher {
    type Value = Vec<Task>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[TasksOfAssignee],
    ) -> Result<HashMap<TasksOfAssignee, Vec<Task>>, LoadError> {
        tracing::debug!(keys = keys.len(), "DataLoader batch: tasks of assignees");
        let mut out = HashMap::new();
        for (first, parents) in group_by_first(keys, |k| (k.first, k.user_id)) {
            let tasks = batched::tasks_of_assignees(&self.pool, &parents, first.into()).await?;
            let mut by_parent = children_by_parent(&parents, tasks, |t| t.assignee_id);
            for user_id in parents {
                let key = TasksOfAssignee { user_id, first };
                out.insert(key, by_parent.remove(&user_id).unwrap_or_default());
            }
        }
        Ok(out)
    }
}

impl Loader<CommentsOfTask> for Batcher {
    type Value = Vec<Comment>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[CommentsOfTask],
    ) -> Result<HashMap<CommentsOfTask, Vec<Comment>>, LoadError> {
        tracing::debug!(keys = keys.len(), "DataLoader batch: comments of tasks");
        let mut out = HashMap::new();
        for (first, parents) in group_by_first(keys, |k| (k.first, k.task_id)) {
            let comments = batched::comments_of_tasks(&self.pool, &parents, first.into()).await?;
            let mut by_parent = children_by_parent(&parents, comments, |c| c.task_id);
            for task_id in parents {
                let key = CommentsOfTask { task_id, first };
                out.insert(key, by_parent.remove(&task_id).unwrap_or_default());
            }
        }
        Ok(out)
    }
}

/// `[(first, parent)]` → `{first: [parents]}`, in a stable order.
fn group_by_first<K>(keys: &[K], split: impl Fn(&K) -> (i32, i64)) -> Vec<(i32, Vec<i64>)> {
    let mut groups: Vec<(i32, Vec<i64>)> = Vec::new();
    for k in keys {
        let (first, parent) = split(k);
        match groups.iter_mut().find(|(f, _)| *f == first) {
            Some((_, parents)) => parents.push(parent),
            None => groups.push((first, vec![parent])),
        }
    }
    groups
}

/// Children grouped under their parent id, keeping the statement's order (newest first).
fn children_by_parent<T>(
    parents: &[i64],
    children: Vec<T>,
    parent_of: impl Fn(&T) -> i64,
) -> HashMap<i64, Vec<T>> {
    let mut map: HashMap<i64, Vec<T>> = HashMap::with_capacity(parents.len());
    for c in children {
        map.entry(parent_of(&c)).or_default().push(c);
    }
    map
}
