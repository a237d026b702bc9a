//! rest-vs-graphql: one dashboard screen (20 projects × their tasks × their comments),
//! loaded over real HTTP four ways, one client — chatty REST, the REST BFF endpoint, GraphQL
//! with naive resolvers, GraphQL with DataLoader.
//!
//! Data: the lab's default scale (2,000 projects, 40,000 tasks, 200,000 comments), seeded
//! once into the bench database and copied per run. Reads only, so every iteration measures
//! the same thing.
//!
//! Run with `cargo bench -p benches --bench rest-vs-graphql`. Round trips, queries per
//! screen and p95 under load come from `lab run rest-vs-graphql`.

use std::time::Duration;

use benches::Bench;
use criterion::{Criterion, criterion_group, criterion_main};
use lab_rest_vs_graphql::client::{Approach, ScreenClient};
use lab_rest_vs_graphql::model::{self, DataSize};
use lab_rest_vs_graphql::screen::Screen;
use lab_rest_vs_graphql::{AppState, router};
use labkit::{LabCtx, Scale};

/// Bump when the seed below (or the lab's `model::seed_size`) changes: the bench database
/// is rebuilt.
const DATA_VERSION: u32 = 1;
const GROUP: &str = "rest-vs-graphql/dashboard-20-projects";

fn bench(c: &mut Criterion) {
    let scale = benches::scale(Scale::Default);
    let size = DataSize::for_scale(scale);
    let b = Bench::cached(
        "rest-vs-graphql",
        scale,
        DATA_VERSION,
        async |ctx: &LabCtx| {
            model::seed_size(&ctx.pg, size, ctx.seed).await?;
            Ok(())
        },
    );
    let server = b.block_on(async {
        labkit::http::spawn(router(AppState::new(b.ctx().pg.clone())))
            .await
            .expect("bind")
    });
    let client = ScreenClient::new(server.base_url());
    let screen = Screen::dashboard(20);

    let mut group = c.benchmark_group(GROUP);
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for approach in Approach::ALL {
        group.bench_function(approach.key(), |bench| {
            bench.to_async(&b.rt).iter(|| async {
                client.load(approach, screen).await.expect("screen loads");
            })
        });
    }
    group.finish();

    let mut s = b.summary(
        GROUP,
        format!(
            "{} projects, {} tasks, {} comments ({scale} scale), one client over loopback HTTP",
            size.projects,
            size.tasks(),
            size.comments()
        ),
    );
    for a in Approach::ALL {
        s = s.label(a.key(), a.label());
    }
    let key = |a: Approach| a.key();
    let [chatty, bff, naive, loader] = Approach::ALL.map(key);
    s.faster(
        "the REST BFF endpoint vs chatty REST",
        "per screen",
        bff,
        chatty,
    )
    .faster(
        "GraphQL with DataLoader vs naive resolvers",
        "per screen",
        loader,
        naive,
    )
    .when(&[loader, bff], |e| {
        format!(
            "GraphQL with DataLoader {} vs the BFF {} ({:.2}×): batching, not the protocol, \
                 is what made the screen fast",
            e[0],
            e[1],
            e[0].ns / e[1].ns
        )
    })
    .finish();

    b.block_on(server.stop());
    b.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
