//! `TestApp::spawn()`: a scratch database, the provider, and the payments service, each on
//! its own loopback port.

use lab_idempotency_keys::key::Caller;
use lab_idempotency_keys::provider::{self, Provider};
use lab_idempotency_keys::scenarios::{Reply, post_payment};
use lab_idempotency_keys::{AppState, Clock, Policy, router, schema};
use labkit::http::TestServer;
use labkit::testing::TestCtx;

pub use lab_idempotency_keys::scenarios::payment_body;

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
        let (provider, provider_server) = provider::spawn().await.expect("provider");
        let state = AppState::new(
            t.ctx.pg.clone(),
            &provider_server.base_url(),
            Policy::default(),
            Clock::system(),
        );
        let server = labkit::http::spawn(router(state.clone()))
            .await
            .expect("service");
        Self {
            provider,
            state,
            http: labkit::http::client(),
            server,
            provider_server,
            t,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
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
