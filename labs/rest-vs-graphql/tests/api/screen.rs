//! The dashboard, four ways: exact statement counts and the same screen every time.

use std::collections::BTreeSet;

use lab_rest_vs_graphql::client::Approach;
use lab_rest_vs_graphql::screen::{Dashboard, Screen};

use crate::helpers::spawn_app;

/// The (distinct) users a screen mentions: assignees and comment authors.
fn users_on(d: &Dashboard) -> usize {
    d.projects
        .iter()
        .flat_map(|p| &p.tasks)
        .flat_map(|t| std::iter::once(t.assignee.id).chain(t.comments.iter().map(|c| c.author.id)))
        .collect::<BTreeSet<_>>()
        .len()
}

// Multi-threaded, like the CLI and the server: the count must not depend on scheduling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataloader_runs_one_statement_per_level_whatever_the_number_of_projects() {
    let app = spawn_app().await;
    // 1 … 100 projects, past async-graphql's 30-item one-pass list limit, three times over:
    // each level is prefetched with one load_many, so no time window can split it.
    for round in 0..3 {
        for n in [1, 20, 30, 31, 50, 100] {
            let screen = Screen::dashboard(n);
            app.sql.take();
            let loaded = app
                .client
                .load(Approach::GraphQLDataLoader, screen)
                .await
                .unwrap();
            // Levels: projects, tasks, assignees, comments, comment authors.
            assert_eq!(app.sql.take(), 5, "N = {n}, round {round}");
            assert_eq!(loaded.dashboard.projects.len(), n);
            assert_eq!(loaded.dashboard.task_count(), n * 10);
            assert_eq!(loaded.http_requests, 1);
        }
    }
    app.finish().await;
}

#[tokio::test]
async fn naive_resolvers_run_one_statement_per_field_per_parent() {
    let app = spawn_app().await;
    for n in [1, 5, 20] {
        let screen = Screen::dashboard(n);
        app.sql.take();
        let loaded = app
            .client
            .load(Approach::GraphQLNaive, screen)
            .await
            .unwrap();
        let statements = app.sql.take();
        let d = &loaded.dashboard;
        // 1 for the projects, 1 per project for its tasks, 2 per task (assignee, comments),
        // 1 per comment for its author.
        let counted = 1 + n + 2 * d.task_count() + d.comment_count();
        assert_eq!(statements, counted as u64, "N = {n}");
        assert_eq!(
            statements,
            screen.naive_statements(),
            "the formula, N = {n}"
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn the_bff_answers_the_whole_screen_with_one_request_and_four_statements() {
    let app = spawn_app().await;
    for n in [1, 20, 100] {
        app.sql.take();
        let loaded = app
            .client
            .load(Approach::RestBff, Screen::dashboard(n))
            .await
            .unwrap();
        assert_eq!(app.sql.take(), 4, "N = {n}");
        assert_eq!(loaded.http_requests, 1);
    }
    app.finish().await;
}

#[tokio::test]
async fn the_chatty_rest_client_pays_a_request_and_a_statement_per_resource() {
    let app = spawn_app().await;
    let screen = Screen::dashboard(5);
    app.sql.take();
    let loaded = app.client.load(Approach::RestChatty, screen).await.unwrap();
    let d = &loaded.dashboard;
    // projects list + one tasks list per project + one comments list per task + each user once.
    let expected = 1 + d.projects.len() + d.task_count() + users_on(d);
    assert_eq!(loaded.http_requests, expected as u64);
    assert_eq!(app.sql.take(), expected as u64, "one statement per request");
    app.finish().await;
}

#[tokio::test]
async fn all_four_approaches_render_the_same_screen() {
    let app = spawn_app().await;
    let screen = Screen::dashboard(7);
    let reference = app.client.load(Approach::RestBff, screen).await.unwrap();
    assert_eq!(reference.dashboard.task_count(), 7 * 10);
    assert_eq!(reference.dashboard.comment_count(), 7 * 10 * 3);
    for approach in Approach::ALL {
        let loaded = app.client.load(approach, screen).await.unwrap();
        assert_eq!(
            loaded.dashboard,
            reference.dashboard,
            "{} differs",
            approach.label()
        );
    }
    app.finish().await;
}
