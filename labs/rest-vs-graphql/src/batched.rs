//! One statement per *level*: the parents' ids travel as one array parameter. DataLoader
//! and the BFF endpoint both run these; what differs is who collects the ids.
//!
//! Two shapes:
//! - by id: `WHERE id = ANY($1)` — one index probe per id, one round trip for all of them;
//! - "the latest K children of each parent": `project_id = ANY($1) ORDER BY id DESC LIMIT K`
//!   would be wrong (the LIMIT is global, so one busy parent starves the rest), and a window
//!   function (`row_number() OVER (PARTITION BY project_id ...)`) reads every child of every
//!   parent before filtering. `unnest($1) CROSS JOIN LATERAL (... LIMIT K)` runs the same
//!   short backward index scan per parent as the one-by-one query, inside one statement.

use sqlx::PgPool;

use crate::model::{Comment, Project, Task, User};

const USERS_BY_ID: &str = "SELECT id, name FROM users WHERE id = ANY($1)";
const PROJECTS_BY_ID: &str = "SELECT id, name, owner_id FROM projects WHERE id = ANY($1)";
const TASKS_OF_PROJECTS: &str = r#"
SELECT t.id, t.project_id, t.title, t.status, t.assignee_id
FROM unnest($1::bigint[]) AS parent(id)
CROSS JOIN LATERAL (
    SELECT id, project_id, title, status, assignee_id FROM tasks
    WHERE project_id = parent.id ORDER BY id DESC LIMIT $2
) t"#;
const TASKS_OF_ASSIGNEES: &str = r#"
SELECT t.id, t.project_id, t.title, t.status, t.assignee_id
FROM unnest($1::bigint[]) AS parent(id)
CROSS JOIN LATERAL (
    SELECT id, project_id, title, status, assignee_id FROM tasks
    WHERE assignee_id = parent.id ORDER BY id DESC LIMIT $2
) t"#;
const COMMENTS_OF_TASKS: &str = r#"
SELECT c.id, c.task_id, c.author_id, c.body
FROM unnest($1::bigint[]) AS parent(id)
CROSS JOIN LATERAL (
    SELECT id, task_id, author_id, body FROM comments
    WHERE task_id = parent.id ORDER BY id DESC LIMIT $2
) c"#;

pub async fn users_by_id(pool: &PgPool, ids: &[i64]) -> Result<Vec<User>, sqlx::Error> {
    sqlx::query_as(USERS_BY_ID).bind(ids).fetch_all(pool).await
}

pub async fn projects_by_id(pool: &PgPool, ids: &[i64]) -> Result<Vec<Project>, sqlx::Error> {
    sqlx::query_as(PROJECTS_BY_ID)
        .bind(ids)
        .fetch_all(pool)
        .await
}

/// The latest `per_parent` tasks of each project, newest first within a project.
pub async fn tasks_of_projects(
    pool: &PgPool,
    project_ids: &[i64],
    per_parent: i64,
) -> Result<Vec<Task>, sqlx::Error> {
    sqlx::query_as(TASKS_OF_PROJECTS)
        .bind(project_ids)
        .bind(per_parent)
        .fetch_all(pool)
        .await
}

/// The latest `per_parent` tasks assigned to each user.
pub async fn tasks_of_assignees(
    pool: &PgPool,
    user_ids: &[i64],
    per_parent: i64,
) -> Result<Vec<Task>, sqlx::Error> {
    sqlx::query_as(TASKS_OF_ASSIGNEES)
        .bind(user_ids)
        .bind(per_parent)
        .fetch_all(pool)
        .await
}

/// The latest `per_parent` comments of each task, newest first within a task.
pub async fn comments_of_tasks(
    pool: &PgPool,
    task_ids: &[i64],
    per_parent: i64,
) -> Result<Vec<Comment>, sqlx::Error> {
    sqlx::query_as(COMMENTS_OF_TASKS)
        .bind(task_ids)
        .bind(per_parent)
        .fetch_all(pool)
        .await
}
