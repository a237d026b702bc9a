//! The dashboard screen every approach renders: the first N projects, each with its latest
//! T tasks, each task's assignee and its latest C comments with their authors.
//!
//! The view types below are what the screen needs, nothing more. The BFF returns exactly
//! this JSON, the GraphQL query asks for exactly these fields (so `data` deserializes into
//! the same types), and the chatty REST client assembles it from resources, so tests can
//! check that all four approaches render the same screen.

use serde::{Deserialize, Serialize};

/// The screen's shape: N projects × T tasks × C comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Screen {
    pub projects: usize,
    pub tasks: usize,
    pub comments: usize,
}

impl Screen {
    /// The dashboard as the product shows it: 10 tasks per project, 3 comments per task.
    pub fn dashboard(projects: usize) -> Self {
        Self {
            projects,
            tasks: 10,
            comments: 3,
        }
    }

    /// Statements naive resolvers run for this screen: 1 (projects) + N (tasks per project)
    /// + N·T (assignee per task) + N·T (comments per task) + N·T·C (author per comment).
    pub fn naive_statements(&self) -> u64 {
        let (n, t, c) = (
            self.projects as u64,
            self.tasks as u64,
            self.comments as u64,
        );
        1 + n + 2 * n * t + n * t * c
    }

    /// GraphQL variables for [`DASHBOARD_QUERY`].
    pub fn variables(&self) -> serde_json::Value {
        serde_json::json!({
            "projects": self.projects,
            "tasks": self.tasks,
            "comments": self.comments,
        })
    }
}

/// The one GraphQL request the dashboard sends.
pub const DASHBOARD_QUERY: &str = r#"query Dashboard($projects: Int!, $tasks: Int!, $comments: Int!) {
  projects(first: $projects) {
    id
    name
    tasks(first: $tasks) {
      id
      title
      status
      assignee { id name }
      comments(first: $comments) {
        id
        body
        author { id name }
      }
    }
  }
}"#;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dashboard {
    pub projects: Vec<ProjectView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectView {
    pub id: i64,
    pub name: String,
    pub tasks: Vec<TaskView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    pub id: i64,
    pub title: String,
    pub status: String,
    pub assignee: UserView,
    pub comments: Vec<CommentView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentView {
    pub id: i64,
    pub body: String,
    pub author: UserView,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub id: i64,
    pub name: String,
}

impl Dashboard {
    pub fn task_count(&self) -> usize {
        self.projects.iter().map(|p| p.tasks.len()).sum()
    }

    pub fn comment_count(&self) -> usize {
        self.projects
            .iter()
            .flat_map(|p| &p.tasks)
            .map(|t| t.comments.len())
            .sum()
    }
}
