//! The backend-for-frontend answer: one endpoint shaped like the screen, four statements
//! whatever N is. It knows the whole tree up front, so unlike DataLoader it can fetch the
//! assignees and the comment authors in *one* users query (DataLoader meets them at two
//! different depths and pays one batch each).
//!
//! The price is coupling: the endpoint is the screen. A second screen wants a second
//! endpoint (or an `?include=` grammar that grows into a query language).

use std::collections::{BTreeSet, HashMap};

use sqlx::PgPool;

use crate::batched;
use crate::model::{Comment, Task, User};
use crate::one_by_one;
use crate::screen::{CommentView, Dashboard, ProjectView, Screen, TaskView, UserView};

/// Build the dashboard with exactly four statements: projects, their tasks, those tasks'
/// comments, and every user the screen mentions.
pub async fn dashboard(pool: &PgPool, screen: Screen) -> Result<Dashboard, sqlx::Error> {
    // 1: the projects
    let projects = one_by_one::projects(pool, screen.projects as i64).await?;
    let project_ids: Vec<i64> = projects.iter().map(|p| p.id).collect();
    // 2: their latest tasks, all projects in one statement
    let tasks = batched::tasks_of_projects(pool, &project_ids, screen.tasks as i64).await?;
    let task_ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
    // 3: those tasks' latest comments
    let comments = batched::comments_of_tasks(pool, &task_ids, screen.comments as i64).await?;
    // 4: assignees and authors together, each user once
    let user_ids: BTreeSet<i64> = tasks
        .iter()
        .map(|t| t.assignee_id)
        .chain(comments.iter().map(|c| c.author_id))
        .collect();
    let user_ids: Vec<i64> = user_ids.into_iter().collect();
    let users: HashMap<i64, User> = batched::users_by_id(pool, &user_ids)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();

    let mut tasks_by_project: HashMap<i64, Vec<Task>> = HashMap::new();
    for t in tasks {
        tasks_by_project.entry(t.project_id).or_default().push(t);
    }
    let mut comments_by_task: HashMap<i64, Vec<Comment>> = HashMap::new();
    for c in comments {
        comments_by_task.entry(c.task_id).or_default().push(c);
    }
    // Every id names a user (the seed draws them from 1..=users); a missing one would render
    // with an empty name rather than fail the screen.
    let user_view = |id: i64| {
        users.get(&id).map_or_else(
            || UserView {
                id,
                name: String::new(),
            },
            |u| UserView {
                id: u.id,
                name: u.name.clone(),
            },
        )
    };
    let projects = projects
        .into_iter()
        .map(|p| ProjectView {
            tasks: tasks_by_project
                .remove(&p.id)
                .unwrap_or_default()
                .into_iter()
                .map(|t| TaskView {
                    assignee: user_view(t.assignee_id),
                    comments: comments_by_task
                        .remove(&t.id)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|c| CommentView {
                            author: user_view(c.author_id),
                            id: c.id,
                            body: c.body,
                        })
                        .collect(),
                    id: t.id,
                    title: t.title,
                    status: t.status,
                })
                .collect(),
            id: p.id,
            name: p.name,
        })
        .collect();
    Ok(Dashboard { projects })
}
