//! The data behind the dashboard: users, projects, tasks (status, assignee) and comments
//! (author), seeded server-side, and the row types every approach serves.
//!
//! Shape on purpose: every project has exactly `tasks_per_project` tasks and every task
//! `comments_per_task` comments, so a screen of N projects × T tasks × C comments always has
//! N·T tasks and N·T·C comments and the naive statement count has a closed formula. Who is
//! assigned and who comments is skewed (a few busy people, a long tail), so a screen repeats
//! users and batching by id has something to deduplicate.

use async_graphql::SimpleObject;
use labkit::{LabCtx, Scale};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// How much data a run seeds.
#[derive(Debug, Clone, Copy)]
pub struct DataSize {
    pub users: u64,
    pub projects: u64,
    pub tasks_per_project: u64,
    pub comments_per_task: u64,
}

impl DataSize {
    pub fn for_scale(scale: Scale) -> Self {
        scale.pick(
            // smoke: enough projects for the N = 100 point of the chart, seeded in well under a second
            Self {
                users: 300,
                projects: 120,
                tasks_per_project: 12,
                comments_per_task: 4,
            },
            // default: 2 000 projects, 40 000 tasks, 200 000 comments
            Self {
                users: 5_000,
                projects: 2_000,
                tasks_per_project: 20,
                comments_per_task: 5,
            },
            // large: 2 M tasks, 10 M comments
            Self {
                users: 200_000,
                projects: 100_000,
                tasks_per_project: 20,
                comments_per_task: 5,
            },
        )
    }

    pub fn tasks(&self) -> u64 {
        self.projects * self.tasks_per_project
    }

    pub fn comments(&self) -> u64 {
        self.tasks() * self.comments_per_task
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, SimpleObject)]
#[graphql(complex)]
pub struct User {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, SimpleObject)]
#[graphql(complex)]
pub struct Project {
    pub id: i64,
    pub name: String,
    /// REST exposes foreign keys as ids (the client follows them); GraphQL exposes the edge.
    #[graphql(skip)]
    pub owner_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, SimpleObject)]
#[graphql(complex)]
pub struct Task {
    pub id: i64,
    #[graphql(skip)]
    pub project_id: i64,
    pub title: String,
    /// `todo`, `doing` or `done`.
    pub status: String,
    #[graphql(skip)]
    pub assignee_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, SimpleObject)]
#[graphql(complex)]
pub struct Comment {
    pub id: i64,
    #[graphql(skip)]
    pub task_id: i64,
    #[graphql(skip)]
    pub author_id: i64,
    pub body: String,
}

/// Tables without foreign keys: they would only slow the seed down, and no approach here
/// writes.
const CREATE_TABLES: &str = r#"
CREATE TABLE users    (id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL);
CREATE TABLE projects (id bigint PRIMARY KEY, name text NOT NULL, owner_id bigint NOT NULL);
CREATE TABLE tasks    (id bigint PRIMARY KEY, project_id bigint NOT NULL, title text NOT NULL,
                       status text NOT NULL, assignee_id bigint NOT NULL);
CREATE TABLE comments (id bigint PRIMARY KEY, task_id bigint NOT NULL, author_id bigint NOT NULL,
                       body text NOT NULL);
"#;

/// Each screen query is "the latest K children of this parent": (parent, id) indexes serve
/// them as a short backward index scan, one per parent.
const CREATE_INDEXES: &str = r#"
CREATE INDEX tasks_project_id_id  ON tasks (project_id, id);
CREATE INDEX tasks_assignee_id_id ON tasks (assignee_id, id);
CREATE INDEX comments_task_id_id  ON comments (task_id, id);
ANALYZE users, projects, tasks, comments;
"#;

// `$1..$2` is the chunk of row numbers, `$3` the seed (see labkit::seed); `$4`, `$5` are the
// shape (user count, fan-outs), bound per statement. The parent of row g is arithmetic, so
// every project gets exactly tasks_per_project tasks, in id order.
const SEED_USERS: &str = r#"
INSERT INTO users (id, name, email)
SELECT g, 'User ' || g, 'user' || g || '@example.com'
FROM generate_series($1::bigint, $2::bigint) g"#;

// $4 = users
const SEED_PROJECTS: &str = r#"
INSERT INTO projects (id, name, owner_id)
SELECT g, 'Project ' || g, labkit_skewed(g, $3, 10, $4::bigint, 2.0)
FROM generate_series($1::bigint, $2::bigint) g"#;

// $4 = tasks per project, $5 = users
const SEED_TASKS: &str = r#"
INSERT INTO tasks (id, project_id, title, status, assignee_id)
SELECT g,
       (g - 1) / $4::bigint + 1,
       'Task ' || g || ': ' || left(md5(g::text), 8 + floor(labkit_uniform(g, $3, 20) * 24)::int),
       (ARRAY['todo', 'doing', 'done'])[1 + floor(labkit_uniform(g, $3, 21) * 3)::int],
       labkit_skewed(g, $3, 22, $5::bigint, 2.0)
FROM generate_series($1::bigint, $2::bigint) g"#;

// $4 = comments per task, $5 = users
const SEED_COMMENTS: &str = r#"
INSERT INTO comments (id, task_id, author_id, body)
SELECT g,
       (g - 1) / $4::bigint + 1,
       labkit_skewed(g, $3, 30, $5::bigint, 2.0),
       'Comment ' || g || ': ' || repeat('looks good, ', 1 + floor(labkit_uniform(g, $3, 31) * 8)::int)
FROM generate_series($1::bigint, $2::bigint) g"#;

/// Create and fill the tables for `ctx.scale`.
pub async fn seed(ctx: &LabCtx) -> Result<DataSize, sqlx::Error> {
    let size = DataSize::for_scale(ctx.scale);
    seed_size(&ctx.pg, size, ctx.seed).await?;
    Ok(size)
}

/// Create and fill the tables with an explicit size.
pub async fn seed_size(pool: &PgPool, size: DataSize, seed: u64) -> Result<(), sqlx::Error> {
    let users = size.users as i64;
    let tasks_per_project = size.tasks_per_project as i64;
    let comments_per_task = size.comments_per_task as i64;
    sqlx::raw_sql(CREATE_TABLES).execute(pool).await?;
    labkit::seed::generate(pool, "users", size.users, seed, SEED_USERS, |q| q).await?;
    labkit::seed::generate(pool, "projects", size.projects, seed, SEED_PROJECTS, |q| {
        q.bind(users)
    })
    .await?;
    labkit::seed::generate(pool, "tasks", size.tasks(), seed, SEED_TASKS, |q| {
        q.bind(tasks_per_project).bind(users)
    })
    .await?;
    labkit::seed::generate(
        pool,
        "comments",
        size.comments(),
        seed,
        SEED_COMMENTS,
        |q| q.bind(comments_per_task).bind(users),
    )
    .await?;
    labkit::seed::step(pool, "indexes", CREATE_INDEXES).await?;
    Ok(())
}
