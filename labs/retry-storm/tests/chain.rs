//! The chain over real HTTP (dependency and layers each on a loopback port): exact call
//! counts for retries at every layer, at one layer and within a budget; a bulkhead that
//! keeps an unrelated endpoint alive while the dependency hangs; a breaker that stops
//! calling a failing dependency and probes it again after the wait (manual clock).
//!
//! No sleeps: a hanging call is waited for through the dependency's in-flight gauge.

use std::time::Duration;

use axum::http::StatusCode;
use lab_retry_storm::app::Resilience;
use lab_retry_storm::breaker::{BreakerConfig, State, Window};
use lab_retry_storm::client::{self, Served, UserError};
use lab_retry_storm::clock::Clock;
use lab_retry_storm::dependency::Faults;
use lab_retry_storm::topology::Chain;

const PATIENT: Duration = Duration::from_secs(30);

/// Answers 503 to every call, at once.
fn always_fails() -> Faults {
    Faults {
        capacity: 64,
        latency_ms: 0,
        error_rate: 1.0,
    }
}

fn layer_calls(chain: &Chain) -> Vec<u64> {
    chain
        .layers
        .iter()
        .map(|l| {
            l.app
                .counters
                .downstream_calls
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .collect()
}

#[tokio::test]
async fn three_layers_of_three_attempts_send_27_calls_to_a_failing_dependency_for_one_request() {
    let layer = Resilience::retrying(3, PATIENT);
    let chain = Chain::spawn(always_fails(), 1, &[layer; 3], Clock::system())
        .await
        .unwrap();
    let users = labkit::http::client();
    let got = client::get(&users, &chain.url("/work"), 7, PATIENT).await;
    assert!(
        matches!(got, Err(UserError::Status(StatusCode::SERVICE_UNAVAILABLE))),
        "{got:?}"
    );
    assert_eq!(chain.dependency.dep.stats().arrivals, 27);
    assert_eq!(
        chain.dependency.dep.calls_for(7..8),
        27,
        "all for request 7"
    );
    assert_eq!(layer_calls(&chain), [3, 9, 27]);
}

#[tokio::test]
async fn retrying_at_one_layer_sends_3_calls_for_one_request() {
    let chain = Chain::spawn(
        always_fails(),
        1,
        &[
            Resilience::pass_through(PATIENT),
            Resilience::pass_through(PATIENT),
            Resilience::retrying(3, PATIENT),
        ],
        Clock::system(),
    )
    .await
    .unwrap();
    let users = labkit::http::client();
    assert!(
        client::get(&users, &chain.url("/work"), 1, PATIENT)
            .await
            .is_err()
    );
    assert_eq!(chain.dependency.dep.stats().arrivals, 3);
    assert_eq!(layer_calls(&chain), [1, 1, 3]);
}

#[tokio::test]
async fn a_ten_percent_retry_budget_allows_one_retry_per_ten_requests() {
    let chain = Chain::spawn(
        always_fails(),
        1,
        &[
            Resilience::pass_through(PATIENT),
            Resilience::pass_through(PATIENT),
            Resilience::retrying(3, PATIENT).with_budget(),
        ],
        Clock::system(),
    )
    .await
    .unwrap();
    let users = labkit::http::client();
    for id in 0..100 {
        assert!(
            client::get(&users, &chain.url("/work"), id, PATIENT)
                .await
                .is_err()
        );
    }
    // Each request deposits 1 token, each retry costs 10: requests 10, 20, … 100 get one
    // retry each, and no request ever gets a second.
    assert_eq!(chain.dependency.dep.stats().arrivals, 110);
    assert_eq!(
        chain.dependency.dep.calls_for(9..10),
        2,
        "request 10 (id 9) retried once"
    );
    assert_eq!(
        chain.dependency.dep.calls_for(0..9),
        9,
        "requests 1–9: no tokens yet"
    );
}

#[tokio::test]
async fn with_a_bulkhead_the_unrelated_endpoint_answers_while_the_dependency_hangs() {
    let hangs = Faults {
        capacity: 64,
        latency_ms: 600_000,
        error_rate: 0.0,
    };
    let service = Resilience {
        attempts: 1,
        attempt_timeout: None,
        retry_budget: false,
        bulkhead: Some(2),
        breaker: None,
        fallback: false,
        workers: 3,
    };
    let chain = Chain::spawn(hangs, 1, &[service], Clock::system())
        .await
        .unwrap();
    let dep = chain.dependency.dep.clone();
    let users = labkit::http::client();
    let work = chain.url("/work");
    // t1, t2: GET /work — each takes a worker and a bulkhead slot, and hangs at the dependency.
    let hung: Vec<_> = (0..2)
        .map(|id| {
            let (users, work) = (users.clone(), work.clone());
            tokio::spawn(async move { client::get(&users, &work, id, PATIENT).await })
        })
        .collect();
    dep.wait_in_flight(2).await;
    // t3: GET /work — the bulkhead is full: refused at once, its worker freed.
    let refused = client::get(&users, &work, 3, PATIENT).await;
    assert!(
        matches!(
            refused,
            Err(UserError::Status(StatusCode::SERVICE_UNAVAILABLE))
        ),
        "{refused:?}"
    );
    // t4: GET /unrelated — the third worker is free.
    let unrelated = client::get(&users, &chain.url("/unrelated"), 4, PATIENT).await;
    assert_eq!(unrelated.unwrap(), Served::Dependency);
    assert_eq!(
        dep.stats().arrivals,
        2,
        "the refused call never reached the dependency"
    );
    hung.iter().for_each(|h| h.abort());
}

#[tokio::test]
async fn without_a_bulkhead_or_timeout_hanging_calls_take_every_worker_and_the_unrelated_endpoint_waits()
 {
    let hangs = Faults {
        capacity: 64,
        latency_ms: 600_000,
        error_rate: 0.0,
    };
    let service = Resilience {
        attempts: 1,
        attempt_timeout: None,
        retry_budget: false,
        bulkhead: None,
        breaker: None,
        fallback: false,
        workers: 2,
    };
    let chain = Chain::spawn(hangs, 1, &[service], Clock::system())
        .await
        .unwrap();
    let users = labkit::http::client();
    let hung: Vec<_> = (0..2)
        .map(|id| {
            let (users, work) = (users.clone(), chain.url("/work"));
            tokio::spawn(async move { client::get(&users, &work, id, PATIENT).await })
        })
        .collect();
    chain.dependency.dep.wait_in_flight(2).await; // both workers are now holding a hung call
    let unrelated_url = chain.url("/unrelated");
    let unrelated = client::get(&users, &unrelated_url, 9, PATIENT);
    // It cannot finish while both workers are held; look for a while to show it.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), unrelated)
            .await
            .is_err(),
        "/unrelated answered although every worker was taken"
    );
    hung.iter().for_each(|h| h.abort());
}

#[tokio::test]
async fn an_open_breaker_stops_calling_the_dependency_serves_the_fallback_and_probes_after_the_wait()
 {
    let clock = Clock::manual();
    let breaker = BreakerConfig {
        failure_rate_threshold: 50.0,
        minimum_calls: 10,
        window: Window::CountBased(10),
        wait_in_open: Duration::from_secs(60),
        half_open_calls: 2,
    };
    let service = Resilience {
        attempts: 1,
        attempt_timeout: Some(PATIENT),
        retry_budget: false,
        bulkhead: None,
        breaker: Some(breaker),
        fallback: true,
        workers: 64,
    };
    let chain = Chain::spawn(always_fails(), 1, &[service], clock.clone())
        .await
        .unwrap();
    let (dep, b) = (
        chain.dependency.dep.clone(),
        chain.front().app.breaker.clone().unwrap(),
    );
    let users = labkit::http::client();
    let url = chain.url("/work");
    for id in 0..10 {
        let got = client::get(&users, &url, id, PATIENT).await.unwrap();
        assert_eq!(
            got,
            Served::FallbackFailed,
            "call {id} failed, fallback served"
        );
    }
    assert_eq!(b.state(), State::Open);
    for id in 10..30 {
        let got = client::get(&users, &url, id, PATIENT).await.unwrap();
        assert_eq!(got, Served::FallbackCircuitOpen);
    }
    assert_eq!(
        dep.stats().arrivals,
        10,
        "nothing reached the dependency while open"
    );

    dep.heal();
    clock.advance(Duration::from_secs(60));
    for id in 30..32 {
        assert_eq!(
            client::get(&users, &url, id, PATIENT).await.unwrap(),
            Served::Dependency
        );
    }
    assert_eq!(b.state(), State::Closed, "two good probes close it");
    assert_eq!(dep.stats().arrivals, 12);
}
