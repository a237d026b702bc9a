//! One dashboard screen (20 projects × 10 tasks × 3 comments), loaded over real HTTP four
//! ways: chatty REST, the REST BFF endpoint, GraphQL with naive resolvers, GraphQL with
//! DataLoader. One client, nothing else running; p95 under load comes from the lab run.
//!
//! `cargo bench -p benches --bench rest-vs-graphql`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lab_rest_vs_graphql::client::{Approach, ScreenClient};
use lab_rest_vs_graphql::screen::Screen;
use lab_rest_vs_graphql::{AppState, model, router};
use labkit::Scale;

fn bench(c: &mut Criterion) {
    let rt = benches::runtime();
    let t = benches::ctx(&rt, "rest-vs-graphql", Scale::Smoke);
    let server = rt.block_on(async {
        model::seed(&t.ctx).await.expect("seed");
        labkit::http::spawn(router(AppState::new(t.ctx.pg.clone())))
            .await
            .expect("bind")
    });
    let client = ScreenClient::new(server.base_url());
    let screen = Screen::dashboard(20);

    let mut group = c.benchmark_group("rest-vs-graphql/dashboard-20-projects");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for approach in Approach::ALL {
        group.bench_function(approach.key(), |b| {
            b.to_async(&rt).iter(|| async {
                client.load(approach, screen).await.expect("screen loads");
            })
        });
    }
    group.finish();

    rt.block_on(async {
        server.stop().await;
        t.finish().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
