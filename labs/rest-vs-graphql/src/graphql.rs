//! The GraphQL schema, with both kinds of resolvers side by side.
//!
//! Every edge resolver (`Project.tasks`, `Task.assignee`, `Comment.author`, ...) asks for
//! *one* parent's data; that is how GraphQL resolvers are written. What happens next depends
//! on the request's [`Fetch`]:
//! - [`Fetch::OneByOne`]: the resolver runs its own statement. Natural, and the N+1 moved
//!   from the client to the server: a list of 200 tasks resolves `assignee` 200 times.
//! - [`Fetch::Batched`]: the resolver hands its key to the request's DataLoader. The root
//!   resolvers first walk the query and load each level for all its parents in one batch
//!   (`prefetch.rs`), so the field resolvers find their keys in the loader's cache: one
//!   statement per level, at any screen size.
//!
//! One schema, one set of types; the HTTP layer picks the mode per request (`/graphql` is
//! DataLoader, `/graphql/naive` the naive one), so both are measured on identical queries.
//! The third mode, DataLoader without the prefetch (batches by time window only), is never
//! served: the lab runs it in process to show how a level splits.
//!
//! Complexity: every field that reaches the database costs [`STATEMENT_COST`] plus what it
//! returns (`first` × one item for lists); scalars cost 1 (see `limits.rs`).

use async_graphql::extensions::apollo_persisted_queries::{
    ApolloPersistedQueries, LruCacheStorage,
};
use async_graphql::{ComplexObject, Context, EmptyMutation, EmptySubscription, Object, Schema};
use sqlx::PgPool;

use crate::dataloader::{
    self, CommentsOfTask, ProjectId, RequestLoader, TasksOfAssignee, TasksOfProject, UserId,
};
use crate::field_order::QueryOrder;
use crate::limits::{Limits, QueryLimits, STATEMENT_COST};
use crate::model::{Comment, Project, Task, User};
use crate::prefetch::{self, Parents};
use crate::{error, one_by_one};

/// Page sizes when a query leaves `first` out (the prefetch keys must use the same).
pub const DEFAULT_PROJECTS: i32 = 20;
pub const DEFAULT_TASKS: i32 = 10;
pub const DEFAULT_COMMENTS: i32 = 3;

pub type LabSchema = Schema<QueryRoot, EmptyMutation, EmptySubscription>;

/// Which resolvers a request runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolvers {
    /// One statement per field per parent.
    Naive,
    /// One batched statement per level: a per-request DataLoader, each level prefetched.
    DataLoader,
    /// The same DataLoader without the prefetch: batches close on a time window, so a long
    /// list can split a level. Never served; the lab measures it in process.
    DataLoaderWindowOnly,
}

/// Per-request data: how resolvers reach the database.
pub enum Fetch {
    OneByOne(PgPool),
    Batched {
        loader: RequestLoader,
        /// Load each level for all its parents up front (`prefetch.rs`).
        prefetch: bool,
    },
}

impl Fetch {
    pub fn new(resolvers: Resolvers, pool: &PgPool) -> Self {
        let batched = |prefetch| Self::Batched {
            loader: dataloader::per_request(pool.clone()),
            prefetch,
        };
        match resolvers {
            Resolvers::Naive => Self::OneByOne(pool.clone()),
            Resolvers::DataLoader => batched(true),
            Resolvers::DataLoaderWindowOnly => batched(false),
        }
    }
}

/// Build the schema. `limits: None` is the unprotected schema the lab uses to show what an
/// unbounded nested query costs; it is never served.
pub fn build_schema(limits: Option<Limits>) -> LabSchema {
    let mut builder = Schema::build(QueryRoot, EmptyMutation, EmptySubscription)
        // Responses in query order, byte for byte the same for the same data (`field_order.rs`).
        .extension(QueryOrder)
        // Persisted queries (Apollo APQ): a client sends a query's sha256 instead of its
        // text, so a read can be a plain cacheable GET. The store is per process.
        .extension(ApolloPersistedQueries::new(LruCacheStorage::new(1024)));
    if let Some(limits) = limits {
        builder = builder.extension(QueryLimits(limits));
    }
    builder.finish()
}

/// Resolver failures reach the client as "internal database error"; the detail goes to the
/// log — at `error` for a real failure, at `debug` when the run or server is shutting down
/// (cancelled work is not an error).
fn internal(e: impl std::borrow::Borrow<sqlx::Error>) -> async_graphql::Error {
    error::log_db_error(e.borrow(), "a resolver");
    async_graphql::Error::new("internal database error")
}

/// Loader errors are `Arc<sqlx::Error>` (one failure answers many waiters).
fn internal_arc(e: dataloader::LoadError) -> async_graphql::Error {
    internal(&*e)
}

fn fetch<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Fetch> {
    ctx.data::<Fetch>()
}

fn missing(what: &str, id: i64) -> async_graphql::Error {
    async_graphql::Error::new(format!("{what} {id} does not exist"))
}

/// At a root field, with DataLoader and prefetch on: load every level of this field's
/// selection for all its parents now, one batch per level, into the loader's cache.
async fn prefetch_below(ctx: &Context<'_>, parents: Parents) -> async_graphql::Result<()> {
    if let Fetch::Batched {
        loader,
        prefetch: true,
    } = fetch(ctx)?
    {
        prefetch::levels(loader, ctx.field(), parents)
            .await
            .map_err(internal_arc)?;
    }
    Ok(())
}

pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// The first `first` projects by id.
    #[graphql(
        complexity = "STATEMENT_COST + (first.max(0) as usize).saturating_mul(child_complexity)"
    )]
    async fn projects(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            default_with = "DEFAULT_PROJECTS",
            validator(minimum = 1, maximum = 100)
        )]
        first: i32,
    ) -> async_graphql::Result<Vec<Project>> {
        let pool = match fetch(ctx)? {
            Fetch::OneByOne(pool) => pool,
            Fetch::Batched { loader, .. } => &loader.loader().pool,
        };
        let projects = one_by_one::projects(pool, first.into())
            .await
            .map_err(internal)?;
        prefetch_below(ctx, Parents::Projects(projects.clone())).await?;
        Ok(projects)
    }

    #[graphql(complexity = "STATEMENT_COST + child_complexity")]
    async fn project(&self, ctx: &Context<'_>, id: i64) -> async_graphql::Result<Option<Project>> {
        let found = match fetch(ctx)? {
            Fetch::OneByOne(pool) => one_by_one::project(pool, id).await.map_err(internal)?,
            Fetch::Batched { loader, .. } => {
                loader.load_one(ProjectId(id)).await.map_err(internal_arc)?
            }
        };
        if let Some(p) = &found {
            prefetch_below(ctx, Parents::Projects(vec![p.clone()])).await?;
        }
        Ok(found)
    }

    #[graphql(complexity = "STATEMENT_COST + child_complexity")]
    async fn user(&self, ctx: &Context<'_>, id: i64) -> async_graphql::Result<Option<User>> {
        let found = match fetch(ctx)? {
            Fetch::OneByOne(pool) => one_by_one::user(pool, id).await.map_err(internal)?,
            Fetch::Batched { loader, .. } => {
                loader.load_one(UserId(id)).await.map_err(internal_arc)?
            }
        };
        if let Some(u) = &found {
            prefetch_below(ctx, Parents::Users(vec![u.clone()])).await?;
        }
        Ok(found)
    }
}

#[ComplexObject]
impl Project {
    /// The project's latest `first` tasks.
    #[graphql(
        complexity = "STATEMENT_COST + (first.max(0) as usize).saturating_mul(child_complexity)"
    )]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "DEFAULT_TASKS", validator(minimum = 1, maximum = 100))]
        first: i32,
    ) -> async_graphql::Result<Vec<Task>> {
        match fetch(ctx)? {
            Fetch::OneByOne(pool) => one_by_one::tasks_of_project(pool, self.id, first.into())
                .await
                .map_err(internal),
            Fetch::Batched { loader, .. } => {
                let key = TasksOfProject {
                    project_id: self.id,
                    first,
                };
                Ok(loader
                    .load_one(key)
                    .await
                    .map_err(internal_arc)?
                    .unwrap_or_default())
            }
        }
    }

    #[graphql(complexity = "STATEMENT_COST + child_complexity")]
    async fn owner(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        user_by_id(ctx, self.owner_id).await
    }
}

#[ComplexObject]
impl Task {
    #[graphql(complexity = "STATEMENT_COST + child_complexity")]
    async fn project(&self, ctx: &Context<'_>) -> async_graphql::Result<Project> {
        let found = match fetch(ctx)? {
            Fetch::OneByOne(pool) => one_by_one::project(pool, self.project_id)
                .await
                .map_err(internal)?,
            Fetch::Batched { loader, .. } => loader
                .load_one(ProjectId(self.project_id))
                .await
                .map_err(internal_arc)?,
        };
        found.ok_or_else(|| missing("project", self.project_id))
    }

    #[graphql(complexity = "STATEMENT_COST + child_complexity")]
    async fn assignee(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        user_by_id(ctx, self.assignee_id).await
    }

    /// The task's latest `first` comments.
    #[graphql(
        complexity = "STATEMENT_COST + (first.max(0) as usize).saturating_mul(child_complexity)"
    )]
    async fn comments(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            default_with = "DEFAULT_COMMENTS",
            validator(minimum = 1, maximum = 100)
        )]
        first: i32,
    ) -> async_graphql::Result<Vec<Comment>> {
        match fetch(ctx)? {
            Fetch::OneByOne(pool) => one_by_one::comments_of_task(pool, self.id, first.into())
                .await
                .map_err(internal),
            Fetch::Batched { loader, .. } => {
                let key = CommentsOfTask {
                    task_id: self.id,
                    first,
                };
                Ok(loader
                    .load_one(key)
                    .await
                    .map_err(internal_arc)?
                    .unwrap_or_default())
            }
        }
    }
}

#[ComplexObject]
impl Comment {
    #[graphql(complexity = "STATEMENT_COST + child_complexity")]
    async fn author(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        user_by_id(ctx, self.author_id).await
    }
}

#[ComplexObject]
impl User {
    /// The user's latest `first` assigned tasks. This edge closes a cycle in the graph
    /// (task → assignee → assignedTasks → ...), which is what the depth limit is for.
    #[graphql(
        complexity = "STATEMENT_COST + (first.max(0) as usize).saturating_mul(child_complexity)"
    )]
    async fn assigned_tasks(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "DEFAULT_TASKS", validator(minimum = 1, maximum = 100))]
        first: i32,
    ) -> async_graphql::Result<Vec<Task>> {
        match fetch(ctx)? {
            Fetch::OneByOne(pool) => one_by_one::tasks_of_assignee(pool, self.id, first.into())
                .await
                .map_err(internal),
            Fetch::Batched { loader, .. } => {
                let key = TasksOfAssignee {
                    user_id: self.id,
                    first,
                };
                Ok(loader
                    .load_one(key)
                    .await
                    .map_err(internal_arc)?
                    .unwrap_or_default())
            }
        }
    }
}

async fn user_by_id(ctx: &Context<'_>, id: i64) -> async_graphql::Result<User> {
    let found = match fetch(ctx)? {
        Fetch::OneByOne(pool) => one_by_one::user(pool, id).await.map_err(internal)?,
        Fetch::Batched { loader, .. } => loader.load_one(UserId(id)).await.map_err(internal_arc)?,
    };
    found.ok_or_else(|| missing("user", id))
}
