//! `TestApp::spawn()`: a scratch database, the provider, and the payments service, each on
//! its own loopback port — assembled by the same `assemble` the lab run and `lab serve` use.

use lab_idempotency_keys::client::{Reply, post_payment};
use lab_idempotency_keys::key::Caller;
use lab_idempotency_keys::provider::Provider;
use lab_idempotency_keys::{AppState, assemble, schema};
use labkit::http::TestServer;
use labkit::testing::TestCtx;

pub use lab_idempotency_keys::client::payment_body;

pub struct TestApp {
    pub provider: Provider,
    pub state: AppState,
    pub http: reqwest::Client,
    server: TestServer,
    provider_server: TestServer,
    t: TestCtx,
}

impl TestApp {
    pub async fn spawn() -> Self {
        let t = labkit::testing::ctx("idempotency-keys").await;
        schema::setup(&t.ctx.pg).await.expect("schema");
        let (app, provider_server) = assemble(t.ctx.pg.clone()).await.expect("provider");
        let server = labkit::http::spawn(app.router()).await.expect("service");
        Self {
            provider: app.provider,
            state: app.state,
            http: labkit::http::client(),
            server,
            provider_server,
            t,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.t.ctx.pg
    }

    /// `POST /v1/payments` as `token` with `key`.
    pub async fn pay(&self, token: &str, key: Option<&str>, body: &serde_json::Value) -> Reply {
        post_payment(&self.http, &self.url("/v1/payments"), token, key, body)
            .await
            .expect("request reaches the service")
    }

    /// How many times the provider charged this caller.
    pub fn charges(&self, token: &str) -> usize {
        self.provider
            .charges_for(Caller::from_token(token).as_str())
    }

    pub async fn count(&self, sql: &'static str, token: &str) -> i64 {
        sqlx::query_scalar(sql)
            .bind(Caller::from_token(token).as_str())
            .fetch_one(self.pool())
            .await
            .expect("count query")
    }

    pub async fn finish(self) {
        self.server.stop().await;
        self.provider_server.stop().await;
        self.t.finish().await;
    }
}

/// The `error.code` of a JSON error body.
pub fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).expect("error bodies are JSON");
    v["error"]["code"].as_str().expect("error.code").to_string()
}
