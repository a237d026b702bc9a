//! Admission control, deterministically: a test-controlled gate holds admitted requests just
//! before their SQL, so "the limit is full" and "the deadline passed while it queued" are
//! states the test builds, never races it hopes to win. SQL is counted with labkit's
//! SqlCounter (exact statements, per router).

use std::sync::Arc;
use std::time::Duration;

use lab_load_shedding::deadline::Clock;
use lab_load_shedding::ledger::REQUEST_ID;
use lab_load_shedding::schema::{self, Shape};
use lab_load_shedding::shop::RECOMMENDATIONS_STATEMENTS;
use lab_load_shedding::{AppState, Gate, Limits, router};
use labkit::testing::TestCtx;
use labkit::{Scale, SqlCounter};
use serde_json::Value;

struct App {
    t: TestCtx,
    state: AppState,
    gate: Arc<Gate>,
    counter: SqlCounter,
    server: labkit::http::TestServer,
    http: reqwest::Client,
}

async fn app(limits: Limits, clock: Clock) -> App {
    let t = labkit::testing::ctx("load-shedding").await;
    schema::setup(&t.ctx.pg, Shape::for_scale(Scale::Smoke), 42)
        .await
        .expect("seed");
    let pool = t.ctx.new_pool(limits.pool).await.expect("pool");
    let gate = Arc::new(Gate::default());
    let state = AppState::with_clock(pool, limits, clock).gated(gate.clone());
    let counter = SqlCounter::new();
    let server = labkit::http::spawn(counter.count_router(router(state.clone())))
        .await
        .expect("server");
    App {
        t,
        state,
        gate,
        counter,
        server,
        http: labkit::http::client(),
    }
}

impl App {
    /// A recommendations read, sent in its own task (it may wait at the gate).
    fn recs(&self, id: u64) -> tokio::task::JoinHandle<reqwest::Response> {
        let req = self
            .http
            .get(self.server.url("/recommendations?product_id=7"))
            .header(REQUEST_ID, id);
        tokio::spawn(async move { req.send().await.expect("response") })
    }

    fn checkout(&self, id: u64) -> tokio::task::JoinHandle<reqwest::Response> {
        let req = self
            .http
            .post(self.server.url("/checkout"))
            .header(REQUEST_ID, id)
            .json(&serde_json::json!({"customer_id": 1, "product_id": 1, "qty": 1}));
        tokio::spawn(async move { req.send().await.expect("response") })
    }

    async fn finish(self) {
        self.server.stop().await;
        self.state.pool.close().await;
        self.t.finish().await;
    }
}

async fn error_code(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.expect("JSON error body");
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn at_the_limit_the_next_request_gets_503_with_retry_after_at_once_and_runs_no_sql() {
    let a = app(Limits::shed(2, 1), Clock::system()).await;

    // t1: GET /recommendations — admitted (the one permit), held at the gate before its SQL
    let t1 = a.recs(1);
    a.gate.until_entered(1).await;
    // t2: GET /recommendations — the limit is full: LoadShed answers at once
    let t2 = a.recs(2).await.unwrap();
    assert_eq!(t2.status(), 503);
    assert_eq!(
        t2.headers().get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert_eq!(error_code(t2).await, "overloaded");
    assert_eq!(a.counter.get(), 0, "the shed request ran no SQL");

    // t1: through the gate — runs its one statement
    a.gate.release(1);
    assert_eq!(t1.await.unwrap().status(), 200);
    assert_eq!(a.counter.get(), RECOMMENDATIONS_STATEMENTS);
    assert_eq!(a.gate.entered(), 1, "t2 never reached a handler");
    a.finish().await;
}

#[tokio::test]
async fn a_concurrency_limit_without_shedding_makes_the_extra_request_wait_not_fail() {
    let a = app(Limits::limit_only(2, 1), Clock::system()).await;

    // t1: admitted, held at the gate
    let t1 = a.recs(1);
    a.gate.until_entered(1).await;
    // t2: inside the server (in flight = 2) but not in a handler: it WAITS for t1's permit
    let t2 = a.recs(2);
    a.state.ledger.until_in_flight(|n| n == 2).await;
    assert_eq!(a.gate.entered(), 1);
    assert!(!t2.is_finished());

    // t1 finishes → t2 gets the permit, reaches the gate, and succeeds too
    a.gate.release(1);
    assert_eq!(t1.await.unwrap().status(), 200);
    a.gate.until_entered(2).await;
    a.gate.release(1);
    assert_eq!(t2.await.unwrap().status(), 200);
    assert_eq!(
        a.state.ledger.stats().shed,
        0,
        "nothing was rejected: it queued"
    );
    a.finish().await;
}

#[tokio::test]
async fn a_request_whose_deadline_passed_while_it_queued_is_dropped_at_the_front_without_sql() {
    let clock = Clock::manual();
    let a = app(
        Limits::deadline(1, Duration::from_millis(100)),
        clock.clone(),
    )
    .await;
    let queue = a.state.queue.clone().expect("deadline queue on");

    // t1: takes the only slot at t = 0, held at the gate
    let t1 = a.recs(1);
    a.gate.until_entered(1).await;
    // t2: arrives at t = 0 saying it will wait 50 ms; queues behind t1
    let req = a
        .http
        .get(a.server.url("/recommendations?product_id=8"))
        .header(REQUEST_ID, 2)
        .header("request-timeout-ms", 50);
    let t2 = tokio::spawn(async move { req.send().await.expect("response") });
    queue.until_waiting(1).await;
    // the clock moves past t2's deadline while it waits
    clock.advance(Duration::from_millis(200));

    // t1 finishes → t2 reaches the front, 150 ms late: dropped with 503 deadline_exceeded
    a.gate.release(1);
    assert_eq!(t1.await.unwrap().status(), 200);
    let t2 = t2.await.unwrap();
    assert_eq!(t2.status(), 503);
    assert!(t2.headers().contains_key("retry-after"));
    assert_eq!(error_code(t2).await, "deadline_exceeded");
    assert_eq!(
        a.counter.get(),
        RECOMMENDATIONS_STATEMENTS,
        "only t1's SQL ran"
    );
    assert_eq!(a.gate.entered(), 1, "t2 never got past the queue");
    let outcome = a.state.ledger.outcome(2).expect("t2 recorded");
    assert!(outcome.expired);
    assert_eq!(outcome.statements, 0);
    a.finish().await;
}

#[tokio::test]
async fn with_the_recommendations_budget_full_a_checkout_is_still_admitted() {
    let a = app(Limits::priority(2, 1, 1), Clock::system()).await;

    // t1: GET /recommendations — takes the recommendations budget (1), held at the gate
    let t1 = a.recs(1);
    a.gate.until_entered(1).await;
    // t2: GET /recommendations — budget full: shed
    assert_eq!(a.recs(2).await.unwrap().status(), 503);
    // t3: POST /checkout — its own budget is free: admitted, reaches the gate
    let t3 = a.checkout(3);
    a.gate.until_entered(2).await;

    a.gate.release(2);
    assert_eq!(t1.await.unwrap().status(), 200);
    assert_eq!(t3.await.unwrap().status(), 201);
    a.finish().await;
}

#[tokio::test]
async fn the_server_finishes_work_whose_client_already_hung_up() {
    let a = app(Limits::unprotected(1), Clock::system()).await;

    // t1: admitted, held at the gate; then its client gives up and closes the connection
    let t1 = a.recs(41);
    a.gate.until_entered(1).await;
    t1.abort();
    assert!(t1.await.unwrap_err().is_cancelled());

    // the server does not know: the work goes on, its SQL runs, for nobody. (Without
    // ledger::track's own task per request, hyper drops the handler when the connection
    // closes and this outcome is never recorded — checked while writing this lab.)
    a.gate.release(1);
    a.state.ledger.until_idle().await;
    let outcome = a.state.ledger.outcome(41).expect("recorded");
    assert_eq!(outcome.status, 200);
    assert_eq!(outcome.statements, RECOMMENDATIONS_STATEMENTS);
    assert_eq!(a.counter.get(), RECOMMENDATIONS_STATEMENTS);
    a.finish().await;
}

#[tokio::test]
async fn bad_input_is_a_4xx_with_a_json_error_body_and_never_reaches_the_database() {
    let a = app(Limits::serve_default(), Clock::system()).await;
    a.gate.release(1_000);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            a.http.get(a.server.url("/recommendations?product_id=abc")),
            400,
            "invalid_query",
        ),
        (
            a.http.get(a.server.url("/recommendations?product_id=-3")),
            400,
            "invalid_product_id",
        ),
        (
            a.http.get(a.server.url("/recommendations")),
            400,
            "invalid_query",
        ),
        (
            a.http
                .get(a.server.url("/recommendations?product_id=3"))
                .header("request-timeout-ms", "soon"),
            400,
            "invalid_request_timeout",
        ),
        (
            a.http.post(a.server.url("/checkout")).body("{}"),
            415,
            "unsupported_media_type",
        ),
        (
            a.http
                .post(a.server.url("/checkout"))
                .header("content-type", "application/json")
                .body("{\"customer_id\": 1,"),
            400,
            "malformed_json",
        ),
        (
            a.http
                .post(a.server.url("/checkout"))
                .json(&serde_json::json!({"customer_id": 1, "product_id": "x", "qty": 1})),
            422,
            "invalid_body",
        ),
        (
            a.http
                .post(a.server.url("/checkout"))
                .json(&serde_json::json!({"customer_id": 1, "product_id": 2, "qty": 0})),
            422,
            "invalid_checkout",
        ),
        (a.http.get(a.server.url("/nope")), 404, "not_found"),
        (
            a.http.delete(a.server.url("/checkout")),
            405,
            "method_not_allowed",
        ),
    ];
    for (req, status, code) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{code}");
        assert_eq!(error_code(resp).await, code);
    }
    assert_eq!(a.counter.get(), 0);
    // And a good checkout on a missing product is a 409, not a 500.
    let resp = a
        .http
        .post(a.server.url("/checkout"))
        .json(&serde_json::json!({"customer_id": 1, "product_id": 999_999, "qty": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    a.finish().await;
}
