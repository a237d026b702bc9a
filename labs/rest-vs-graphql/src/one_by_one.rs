//! One statement per parent: what a REST resource handler runs, and what a naive GraphQL
//! resolver runs for *each* parent object it is asked about. Each of these is cheap (a
//! primary-key lookup or a short index scan); the N+1 is in how many times they run.

use sqlx::PgPool;

use crate::model::{Comment, Project, Task, User};

const PROJECTS: &str = "SELECT id, name, owner_id FROM projects ORDER BY id LIMIT $1";
const PROJECT: &str = "SELECT id, name, owner_id FROM projects WHERE id = $1";
const USER: &str = "SELECT id, name FROM users WHERE id = $1";
const TASKS_OF_PROJECT: &str = "SELECT id, project_id, title, status, assignee_id FROM tasks
     WHERE project_id = $1 ORDER BY id DESC LIMIT $2";
const TASKS_OF_ASSIGNEE: &str = "SELECT id, project_id, title, status, assignee_id FROM tasks
     WHERE assignee_id = $1 ORDER BY id DESC LIMIT $2";
const COMMENTS_OF_TASK: &str = "SELECT id, task_id, author_id, body FROM comments
     WHERE task_id = $1 ORDER BY id DESC LIMIT $2";
const TASK_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM tasks WHERE id = $1)";
const PROJECT_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM projects WHERE id = $1)";

/// The first `limit` projects by id (the dashboard's root list).
pub async fn projects(pool: &PgPool, limit: i64) -> Result<Vec<Project>, sqlx::Error> {
    sqlx::query_as(PROJECTS).bind(limit).fetch_all(pool).await
}

pub async fn project(pool: &PgPool, id: i64) -> Result<Option<Project>, sqlx::Error> {
    sqlx::query_as(PROJECT).bind(id).fetch_optional(pool).await
}

pub async fn user(pool: &PgPool, id: i64) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as(USER).bind(id).fetch_optional(pool).await
}

/// A project's latest `limit` tasks.
pub async fn tasks_of_project(
    pool: &PgPool,
    project_id: i64,
    limit: i64,
) -> Result<Vec<Task>, sqlx::Error> {
    sqlx::query_as(TASKS_OF_PROJECT)
        .bind(project_id)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// A user's latest `limit` assigned tasks (the edge that makes the graph cyclic).
pub async fn tasks_of_assignee(
    pool: &PgPool,
    user_id: i64,
    limit: i64,
) -> Result<Vec<Task>, sqlx::Error> {
    sqlx::query_as(TASKS_OF_ASSIGNEE)
        .bind(user_id)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// A task's latest `limit` comments.
pub async fn comments_of_task(
    pool: &PgPool,
    task_id: i64,
    limit: i64,
) -> Result<Vec<Comment>, sqlx::Error> {
    sqlx::query_as(COMMENTS_OF_TASK)
        .bind(task_id)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// REST needs to tell "no children" from "no such parent" (200 `[]` vs 404). Only asked when
/// the child list came back empty, so a screen over seeded data never pays for it.
pub async fn project_exists(pool: &PgPool, id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(PROJECT_EXISTS)
        .bind(id)
        .fetch_one(pool)
        .await
}

pub async fn task_exists(pool: &PgPool, id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(TASK_EXISTS)
        .bind(id)
        .fetch_one(pool)
        .await
}
