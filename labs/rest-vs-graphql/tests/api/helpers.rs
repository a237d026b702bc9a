//! `spawn_app()`: a throwaway Postgres with the smoke-scale data, the lab's router on a real
//! socket with every SQL statement counted, and a front-end client pointed at it.

use lab_rest_vs_graphql::client::ScreenClient;
use lab_rest_vs_graphql::{AppState, model, router};
use labkit::SqlCounter;
use labkit::http::TestServer;
use labkit::testing::TestCtx;

pub struct App {
    pub client: ScreenClient,
    /// Counts every statement the router's handlers run (DataLoader batches included).
    pub sql: SqlCounter,
    pub server: TestServer,
    pub t: TestCtx,
}

pub async fn spawn_app() -> App {
    let t = labkit::testing::ctx("rest-vs-graphql").await;
    model::seed(&t.ctx).await.expect("seed");
    let sql = SqlCounter::new();
    let state = AppState::new(t.ctx.pg.clone());
    let app = sql.count_router(router(state));
    let server = labkit::http::spawn(app).await.expect("bind");
    App {
        client: ScreenClient::new(server.base_url()),
        sql,
        server,
        t,
    }
}

impl App {
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub fn http(&self) -> &reqwest::Client {
        self.client.http()
    }

    /// POST a GraphQL query to `path`, accepting the new media type; returns (status, body).
    pub async fn graphql(&self, path: &str, query: &str) -> (u16, serde_json::Value) {
        let r = self
            .http()
            .post(self.url(path))
            .header("accept", "application/graphql-response+json")
            .json(&serde_json::json!({ "query": query }))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    pub async fn finish(self) {
        self.server.stop().await;
        self.t.finish().await;
    }
}
