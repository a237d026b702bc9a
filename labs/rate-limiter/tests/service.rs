//! The service around the algorithms: identity and errors over real HTTP, several instances
//! on one Redis, Redis going away, startup validation, and the lab run's report.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{T0, app, header};
use lab_rate_limiter::api::{AppState, router};
use lab_rate_limiter::clock::ManualClock;
use lab_rate_limiter::config::LimitConfig;
use lab_rate_limiter::limiter::{self, Algorithm, RedisStore};
use lab_rate_limiter::middleware::{FailMode, Limits};
use lab_rate_limiter::scenario::instances::one_vs_four;
use labkit::Lab;
use labkit::backend::local::{LocalBins, LocalRedis, RedisOptions};
use reqwest::StatusCode;

async fn error_code(r: reqwest::Response) -> String {
    let body: serde_json::Value = r.json().await.expect("JSON error body");
    body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_string()
}

#[tokio::test]
async fn missing_api_key_is_401_and_malformed_key_is_400_with_a_json_error() {
    let t = labkit::testing::ctx("rate-limiter").await;
    let clock = ManualClock::at(T0);
    let srv = app(&t.ctx, Algorithm::Gcra, "5/60s burst=3", &clock).await;
    let http = labkit::http::client();

    // Anonymous on a public route: served, counted per client IP.
    let r = http.get(srv.url("/v1/quote")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["client"], "ip:127.0.0.1");

    // Anonymous on a route that needs a key: 401 with a challenge.
    let r = http.get(srv.url("/v1/account")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&r, "www-authenticate").as_deref(), Some("Bearer"));
    assert_eq!(error_code(r).await, "missing_api_key");

    // A key by either header works.
    for (name, value) in [
        ("x-api-key", "good-key-1234"),
        ("authorization", "Bearer good-key-1234"),
    ] {
        let r = http
            .get(srv.url("/v1/account"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{name}");
    }

    // Malformed keys: 400, never silently downgraded to per-IP.
    let bad: [&[(&str, &str)]; 5] = [
        &[("x-api-key", "short")],
        &[("x-api-key", "has spaces in it")],
        &[("authorization", "Basic dXNlcjpwYXNz")],
        &[("authorization", "Bearer")],
        &[
            ("x-api-key", "key-number-one"),
            ("authorization", "Bearer key-number-two"),
        ],
    ];
    for headers in bad {
        let mut req = http.get(srv.url("/v1/quote"));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{headers:?}");
        assert_eq!(error_code(r).await, "malformed_api_key");
    }

    // Unknown route and wrong method: JSON too.
    let r = http.get(srv.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "not_found");
    let r = http.post(srv.url("/v1/quote")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(r).await, "method_not_allowed");

    srv.stop().await;
    t.finish().await;
}

#[tokio::test]
async fn four_instances_sharing_redis_admit_the_same_as_one() {
    let t = labkit::testing::ctx("rate-limiter").await;
    let policy = "10/60s burst=4".parse().unwrap();
    let client = t.ctx.redis_client();
    for algorithm in Algorithm::SHARED {
        let row = one_vs_four(algorithm, policy, &client, t.ctx.redis_prefix(), 2)
            .await
            .unwrap();
        assert_eq!(row.four_instances, row.one_instance, "{algorithm}: {row:?}");
    }
    // The contrast: four unshared limiters, four allowances.
    let row = one_vs_four(
        Algorithm::InMemory,
        policy,
        &client,
        t.ctx.redis_prefix(),
        2,
    )
    .await
    .unwrap();
    assert_eq!(row.four_instances, 4 * row.one_instance, "{row:?}");
    t.finish().await;
}

#[tokio::test]
async fn redis_down_follows_the_configured_fail_mode_and_counts_it() {
    let bins = match LocalBins::find() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("skipped: needs a local redis-server to stop ({e})");
            return;
        }
    };
    let mut redis = LocalRedis::start(&bins, &RedisOptions::default())
        .await
        .unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let clock = ManualClock::at(T0);
    let policy = "100/60s burst=50".parse().unwrap();
    let mut apps = Vec::new();
    for mode in [FailMode::Open, FailMode::Closed] {
        let store = RedisStore::connect(client.clone(), format!("{mode}:"))
            .await
            .unwrap();
        let limits = Limits::new(
            limiter::build(Algorithm::Gcra, policy, &store),
            Arc::new(clock.clone()),
            mode,
        );
        let srv = labkit::http::spawn(router(AppState {
            instance: format!("fail-{mode}"),
            limits: Some(limits.clone()),
        }))
        .await
        .unwrap();
        apps.push((mode, limits, srv));
    }
    let http = labkit::http::client();
    let quote = |srv: &labkit::http::TestServer| {
        http.get(srv.url("/v1/quote"))
            .header("x-api-key", "outage-client")
            .send()
    };

    // t1: Redis up — both instances limit normally.
    for (_, _, srv) in &apps {
        let r = quote(srv).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(header(&r, "ratelimit").is_some());
    }
    // t2: Redis goes away.
    redis.stop();
    for _ in 0..5 {
        let (open, closed) = (&apps[0].2, &apps[1].2);
        // fail-open: served, but unmetered — so no RateLimit fields to promise anything.
        let r = quote(open).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(header(&r, "ratelimit").is_none());
        // fail-closed: 503 with a JSON error, not a 429 (the client did nothing wrong).
        let r = quote(closed).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error_code(r).await, "rate_limiter_unavailable");
    }
    // t3: both counted every failure, and both still answer.
    let open = apps[0].1.stats.snapshot();
    let closed = apps[1].1.stats.snapshot();
    assert_eq!(
        (open.admitted, open.failed_open, open.failed_closed),
        (1, 5, 0)
    );
    assert_eq!(
        (closed.admitted, closed.failed_open, closed.failed_closed),
        (1, 0, 5)
    );
    for (_, _, srv) in apps {
        let r = http.get(srv.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        srv.stop().await;
    }
}

#[test]
fn bad_configuration_is_rejected_at_startup_with_a_clear_message() {
    let config = |pairs: &[(&str, &str)]| {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LimitConfig::from_lookup(|name| env.get(name).cloned())
    };
    let defaults = config(&[]).unwrap();
    assert_eq!(defaults.algorithm, Algorithm::Gcra);

    let err = config(&[("RATE_LIMIT_POLICY", "100/0s")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("RATE_LIMIT_POLICY") && err.contains("period"),
        "{err}"
    );
    let err = config(&[("RATE_LIMIT_POLICY", "100/60s burst=-5")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("burst") && err.contains("-5"), "{err}");
    let err = config(&[("RATE_LIMIT_ALGORITHM", "leaky")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("RATE_LIMIT_ALGORITHM") && err.contains("gcra"),
        "{err}"
    );
    let err = config(&[("RATE_LIMIT_FAIL_MODE", "sometimes")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("open or closed"), "{err}");
}

#[tokio::test]
async fn the_lab_run_reproduces_each_war_story_at_smoke_scale() {
    let t = labkit::testing::ctx("rate-limiter").await;
    let report = lab_rate_limiter::RateLimiter.run(&t.ctx).await.unwrap();
    let get = |k: &str| {
        report
            .get(k)
            .unwrap_or_else(|| panic!("finding `{k}` missing"))
    };
    for a in Algorithm::SHARED {
        let (most, promise) = (
            get(&format!("{a}_max_admitted_in_any_window")),
            get(&format!("{a}_promised_max")),
        );
        match a {
            // The edge burst: both window-counter algorithms break the promise.
            Algorithm::FixedWindow => assert_eq!(most, 2.0 * promise),
            Algorithm::SlidingCounter => assert!(most > promise, "{most} vs {promise}"),
            _ => assert!(most <= promise, "{a}: {most} vs {promise}"),
        }
    }
    assert_eq!(get("retry_after_truthful_ratio"), 100.0);
    assert_eq!(get("shared_4_instances_admitted_ratio"), 1.0);
    assert_eq!(get("in_memory_4_instances_admitted_ratio"), 4.0);
    assert_eq!(get("gcra_redis_commands_per_decision"), 2.0);
    assert!(get("sliding_log_bytes_per_key") > get("gcra_bytes_per_key"));
    assert!(get("gcra_overhead_p95_ms").is_finite());
    if LocalBins::find().is_ok() {
        assert_eq!(get("redis_down_fail_open_rejected"), 0.0);
        assert_eq!(get("redis_down_fail_closed_admitted"), 0.0);
        assert_eq!(get("redis_down_servers_healthy"), 1.0);
    }
    t.finish().await;
}
