//! The GraphQL schema, with both kinds of resolvers side by side.
//!
//! Every edge resolver (`Project.tasks`, `Task.assignee`, `Comment.author`, ...) asks for
//! *one* parent's data; that is how GraphQL resolvers are written. What happens next depends
//! on the request's [`Fetch`]:
//! - [`Fetch::OneByOne`]: the resolver runs its own statement. Natural, and the N+1 moved
//!   from the client to the server: a list of 200 tasks resolves `assignee` 200 times.
//! - [`Fetch::Batched`]: the resolver hands its key to the request's DataLoader, which runs
//!   one statement per level for all parents (`dataloader.rs`).
//!
//! One schema, one set of types; the HTTP layer picks the mode per request (`/graphql` is
//! DataLoader, `/graphql/naive` the naive one), so both are measured on identical queries.

use async_graphql::dataloader::DataLoader;
use async_graphql::extensions::apollo_persisted_queries::{
    ApolloPersistedQueries, LruCacheStorage,
};
use async_graphql::{ComplexObject, Context, EmptyMutation, EmptySubscription, Object, Schema};
use sqlx::PgPool;

use crate::dataloader::{
    self, Batcher, CommentsOfTask, ProjectId, TasksOfAssignee, TasksOfProject, UserId,
};
use crate::limits::{Limits, QueryLimits};
use crate::model::{Comment, Project, Task, User};
use crate::one_by_one;

pub type LabSchema = Schema<QueryRoot, EmptyMutation, EmptySubscription>;

/// Which resolvers a request runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolvers {
    /// One statement per field per parent.
    Naive,
    /// One batched statement per level, through a per-request DataLoader.
    DataLoader,
}

/// Per-request data: how resolvers reach the database.
pub enum Fetch {
    OneByOne(PgPool),
    Batched(DataLoader<Batcher>),
}

impl Fetch {
    pub fn new(resolvers: Resolvers, pool: &PgPool) -> Self {
        match resolvers {
            Resolvers::Naive => Self::OneByOne(pool.clone()),
            Resolvers::DataLoader => Self::Batched(dataloader::per_request(pool.clone())),
        }
    }
}

/// Build the schema. `limits: None` is the unprotected schema the lab uses to show what an
/// unbounded nested query costs; it is never served.
pub fn build_schema(limits: Option<Limits>) -> LabSchema {
    let mut builder = Schema::build(QueryRoot, EmptyMutation, EmptySubscription)
        // Persisted queries (Apollo APQ): a client sends a query's sha256 instead of its
        // text, so a read can be a plain cacheable GET. The store is per process.
        .extension(ApolloPersistedQueries::new(LruCacheStorage::new(1024)));
    if let Some(limits) = limits {
        builder = builder.extension(QueryLimits(limits));
    }
    builder.finish()
}

/// Resolver failures reach the client as "internal database error"; the detail goes to the log.
fn internal(e: impl std::fmt::Display) -> async_graphql::Error {
    tracing::error!(error = %e, "database error in a resolver");
    async_graphql::Error::new("internal database error")
}

fn fetch<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Fetch> {
    ctx.data::<Fetch>()
}

fn missing(what: &str, id: i64) -> async_graphql::Error {
    async_graphql::Error::new(format!("{what} {id} does not exist"))
}

pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// The first `first` projects by id.
    #[graphql(complexity = "(first.max(0) as usize).saturating_mul(child_complexity)")]
    async fn projects(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 100))] first: i32,
    ) -> async_graphql::Result<Vec<Project>> {
        let pool = match fetch(ctx)? {
            Fetch::OneByOne(pool) => pool,
            Fetch::Batched(loader) => &loader.loader().pool,
        };
        one_by_one::projects(pool, first.into())
            .await
            .map_err(internal)
    }

    async fn project(&self, ctx: &Context<'_>, id: i64) -> async_graphql::Result<Option<Project>> {
        match fetch(ctx)? {
            Fetch::OneByOne(pool) => one_by_one::project(pool, id).await.map_err(internal),
            Fetch::Batched(l) => l.load_one(ProjectId(id)).await.map_err(internal),
        }
    }

    async fn user(&self, ctx: &Context<'_>, id: i64) -> async_graphql::Result<Option<User>> {
        match fetch(ctx)? {
            Fetch::OneByOne(pool) => one_by_one::user(pool, id).await.map_err(internal),
            Fetch::Batched(l) => l.load_one(UserId(id)).await.map_err(internal),
        }
    }
}

#[ComplexObject]
impl Project {
    /// The project's latest `first` tasks.
    #[graphql(complexity = "(first.max(0) as usize).saturating_mul(child_complexity)")]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10, validator(minimum = 1, maximum = 100))] first: i32,
    ) -> async_graphql::Result<Vec<Task>> {
        match fetch(ctx)? {
            Fetch::OneByOne(pool) => one_by_one::tasks_of_project(pool, self.id, first.into())
                .await
                .map_err(internal),
            Fetch::Batched(l) => {
                let key = TasksOfProject {
                    project_id: self.id,
                    first,
                };
                Ok(l.load_one(key).await.map_err(internal)?.unwrap_or_default())
            }
        }
    }

    async fn owner(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        user_by_id(ctx, self.owner_id).await
    }
}

#[ComplexObject]
impl Task {
    async fn project(&self, ctx: &Context<'_>) -> async_graphql::Result<Project> {
        let found = match fetch(ctx)? {
            Fetch::OneByOne(pool) => one_by_one::project(pool, self.project_id)
                .await
                .map_err(internal)?,
            Fetch::Batched(l) => l
                .load_one(ProjectId(self.project_id))
                .await
                .map_err(internal)?,
        };
        found.ok_or_else(|| missing("project", self.project_id))
    }

    async fn assignee(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        user_by_id(ctx, self.assignee_id).await
    }

    /// The task's latest `first` comments.
    #[graphql(complexity = "(first.max(0) as usize).saturating_mul(child_complexity)")]
    async fn comments(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 3, validator(minimum = 1, maximum = 100))] first: i32,
    ) -> async_graphql::Result<Vec<Comment>> {
        match fetch(ctx)? {
            Fetch::OneByOne(pool) => one_by_one::comments_of_task(pool, self.id, first.into())
                .await
                .map_err(internal),
            Fetch::Batched(l) => {
                let key = CommentsOfTask {
                    task_id: self.id,
                    first,
                };
                Ok(l.load_one(key).await.map_err(internal)?.unwrap_or_default())
            }
        }
    }
}

#[ComplexObject]
impl Comment {
    async fn author(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        user_by_id(ctx, self.author_id).await
    }
}

#[ComplexObject]
impl User {
    /// The user's latest `first` assigned tasks. This edge closes a cycle in the graph
    /// (task → assignee → assignedTasks → ...), which is what the depth limit is for.
    #[graphql(complexity = "(first.max(0) as usize).saturating_mul(child_complexity)")]
    async fn assigned_tasks(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10, validator(minimum = 1, maximum = 100))] first: i32,
    ) -> async_graphql::Result<Vec<Task>> {
        match fetch(ctx)? {
            Fetch::OneByOne(pool) => one_by_one::tasks_of_assignee(pool, self.id, first.into())
                .await
                .map_err(internal),
            Fetch::Batched(l) => {
                let key = TasksOfAssignee {
                    user_id: self.id,
                    first,
                };
                Ok(l.load_one(key).await.map_err(internal)?.unwrap_or_default())
            }
        }
    }
}

async fn user_by_id(ctx: &Context<'_>, id: i64) -> async_graphql::Result<User> {
    let found = match fetch(ctx)? {
        Fetch::OneByOne(pool) => one_by_one::user(pool, id).await.map_err(internal)?,
        Fetch::Batched(l) => l.load_one(UserId(id)).await.map_err(internal)?,
    };
    found.ok_or_else(|| missing("user", id))
}
