//! The war stories, forced deterministically: every crash is armed at a named point and
//! every interleaving comes from the order of the calls below (one task steps the relays and
//! consumers by hand), never from sleeps.

use std::collections::HashSet;
use std::time::Duration;

use lab_outbox_saga::broker::Broker;
use lab_outbox_saga::crash::{CrashPoint, Crashed, Service};
use lab_outbox_saga::fleet::{Shop, StepError, Stepper};
use lab_outbox_saga::inbox::{ConsumerError, ConsumerStats, Role};
use lab_outbox_saga::orders::{self, NewOrder, ORDER_EVENTS, PlaceError, WritePath};
use lab_outbox_saga::relay::{CursorRelay, Relay, RelayError, max_seq};
use lab_outbox_saga::saga::{self, Cancel};
use lab_outbox_saga::schema::{self, Services};
use lab_outbox_saga::{AppState, OutboxSaga, invariants, outbox, router};
use labkit::testing::TestCtx;
use uuid::Uuid;

/// The three services' schemas on the test's scratch database, and a shop whose streams
/// live under `name`.
async fn shop(t: &TestCtx, name: &str) -> Shop {
    let svc = Services::connect(&t.ctx, 4).await.unwrap();
    schema::create(&t.ctx.pg, &svc).await.unwrap();
    schema::stock(&svc.warehouse, 100, 1).await.unwrap();
    Shop::new(svc, t.ctx.redis_client(), t.ctx.key(&format!("{name}:")))
}

async fn orders_committed(shop: &Shop, id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM orders WHERE id = $1")
        .bind(id)
        .fetch_one(&shop.svc.orders)
        .await
        .unwrap()
}

async fn order_events(shop: &Shop) -> Vec<String> {
    shop.broker()
        .await
        .unwrap()
        .all(ORDER_EVENTS)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.message.aggregateid)
        .collect()
}

async fn count(pool: &sqlx::PgPool, sql: &'static str, id: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn saga_state(shop: &Shop, id: Uuid) -> String {
    saga::view(&shop.svc.orders, id)
        .await
        .unwrap()
        .unwrap()
        .saga_state
}

/// Step the shop until the saga reaches `state`.
async fn step_until(stepper: &mut Stepper, shop: &Shop, id: Uuid, state: &str) {
    for _ in 0..20 {
        if saga_state(shop, id).await == state {
            return;
        }
        stepper.step().await.unwrap();
    }
    panic!(
        "saga never reached {state}: {:#?}",
        saga::view(&shop.svc.orders, id).await
    );
}

fn crashed(e: StepError) -> CrashPoint {
    match e {
        StepError::Relay(RelayError::Crashed(Crashed(p)))
        | StepError::Consumer(ConsumerError::Crashed(Crashed(p))) => p,
        other => panic!("expected a crash, got {other}"),
    }
}

#[tokio::test]
async fn a_crash_between_commit_and_publish_loses_the_event_with_dual_write_and_not_with_the_outbox()
 {
    let t = labkit::testing::ctx("outbox-saga").await;
    let svc = shop(&t, "unused").await.svc;
    for path in WritePath::ALL {
        let shop = Shop::new(
            svc.clone(),
            t.ctx.redis_client(),
            t.ctx.key(&format!("{}:", path.key())),
        );
        let mut broker = shop.broker().await.unwrap();
        let o = NewOrder::new(1, "book", 1, "tok_visa");
        shop.crashes.arm_once(path.crash_point());
        let r = orders::place(&shop.svc.orders, &mut broker, path, &o, &shop.crashes).await;
        assert!(matches!(r, Err(PlaceError::Crashed(_))), "{path:?}: {r:?}");
        if path == WritePath::Outbox {
            // The process is gone; a relay (any relay) finds the committed row.
            shop.relay(Service::Orders)
                .await
                .unwrap()
                .drain()
                .await
                .unwrap();
        }
        let committed = orders_committed(&shop, o.id).await;
        let published = order_events(&shop).await.contains(&o.id.to_string());
        match path {
            // writer: COMMIT; <dies>; XADD never runs — the warehouse never hears of it
            WritePath::CommitThenPublish => assert_eq!((committed, published), (1, false)),
            // writer: XADD; <dies>; COMMIT never runs — the warehouse ships a phantom
            WritePath::PublishThenCommit => assert_eq!((committed, published), (0, true)),
            // writer: INSERT order + outbox row; COMMIT; <dies> — the relay delivers anyway
            WritePath::Outbox => assert_eq!((committed, published), (1, true)),
        }
    }
    svc.close().await;
    t.finish().await;
}

#[tokio::test]
async fn the_relay_crashing_after_publish_and_before_marking_sent_redelivers_and_the_inbox_absorbs_it()
 {
    let t = labkit::testing::ctx("outbox-saga").await;
    let shop = shop(&t, "relay-crash").await;
    let placed: Vec<NewOrder> = (0..3)
        .map(|i| NewOrder::new(i, "book", 1, "tok_visa"))
        .collect();
    for o in &placed {
        orders::place_with_outbox(&shop.svc.orders, o)
            .await
            .unwrap();
    }
    let mut stepper = Stepper::new(
        &shop,
        &[Service::Orders],
        &[Role::PickList, Role::PickListNoInbox],
    )
    .await
    .unwrap();

    // relay-1: BEGIN; SELECT … FOR UPDATE SKIP LOCKED → 3 rows; XADD ×3; <dies> — no UPDATE, no COMMIT
    shop.crashes
        .arm_once(CrashPoint::RelayAfterPublish(Service::Orders));
    let e = stepper.relays[0].pump_once().await.unwrap_err();
    assert!(matches!(e, RelayError::Crashed(_)));
    assert_eq!(order_events(&shop).await.len(), 3, "published before dying");
    assert_eq!(
        outbox::unsent(&shop.svc.orders).await.unwrap(),
        3,
        "…and still unsent"
    );

    // relay-2 (the restart): the same 3 rows are unsent → published again, marked, committed
    stepper.restart_relay(&shop, Service::Orders).await.unwrap();
    assert_eq!(stepper.relays[0].drain().await.unwrap(), 3);
    assert_eq!(outbox::unsent(&shop.svc.orders).await.unwrap(), 0);
    let events = order_events(&shop).await;
    assert_eq!(events.len(), 6, "every event twice on the stream");
    assert_eq!(
        events.iter().collect::<HashSet<_>>().len(),
        3,
        "nothing lost"
    );

    // consumers: the one with an inbox applies 3 and absorbs 3; the one without applies 6
    stepper.settle().await.unwrap();
    let stats = shop.stats(Role::PickList);
    assert_eq!(ConsumerStats::get(&stats.applied), 3);
    assert_eq!(ConsumerStats::get(&stats.duplicates_absorbed), 3);
    let lines = |table: &'static str| {
        let pool = shop.svc.warehouse.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table}"
            )))
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(lines("pick_list").await, 3, "one pick-list line per order");
    assert_eq!(
        lines("pick_list_no_inbox").await,
        6,
        "without an inbox, every duplicate is an effect"
    );
    shop.svc.close().await;
    t.finish().await;
}

#[tokio::test]
async fn a_consumer_dying_before_xack_is_reclaimed_with_xautoclaim_and_the_inbox_absorbs_the_redelivery()
 {
    let t = labkit::testing::ctx("outbox-saga").await;
    let shop = shop(&t, "consumer-crash").await;
    let o = NewOrder::new(1, "book", 1, "tok_visa");
    orders::place_with_outbox(&shop.svc.orders, &o)
        .await
        .unwrap();
    let mut stepper = Stepper::new(&shop, &[Service::Orders], &[Role::PickList])
        .await
        .unwrap();
    stepper.relays[0].drain().await.unwrap();

    // pick-list-1: XREADGROUP → 1 entry; BEGIN; INSERT inbox; INSERT pick_list; COMMIT; <dies> — no XACK
    shop.crashes
        .arm_once(CrashPoint::ConsumerAfterCommit(Service::Warehouse));
    let e = stepper
        .consumer(Role::PickList)
        .poll(None)
        .await
        .unwrap_err();
    assert!(matches!(e, ConsumerError::Crashed(_)));
    let mut broker = shop.broker().await.unwrap();
    assert_eq!(
        broker.backlog(ORDER_EVENTS, "pick-list").await.unwrap(),
        1,
        "pending on the dead consumer"
    );

    // pick-list-2: nothing new to read (the entry was delivered once already)…
    stepper.restart(&shop, Role::PickList, 2).await.unwrap();
    assert_eq!(
        stepper.consumer(Role::PickList).poll(None).await.unwrap(),
        0
    );
    // …so it takes over the dead consumer's pending entry (min idle 0: we know it is dead)
    assert_eq!(
        stepper
            .consumer(Role::PickList)
            .reclaim(Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        broker.backlog(ORDER_EVENTS, "pick-list").await.unwrap(),
        0,
        "acked now"
    );
    let stats = shop.stats(Role::PickList);
    assert_eq!(
        ConsumerStats::get(&stats.duplicates_absorbed),
        1,
        "the inbox knew it"
    );
    let lines = count(
        &shop.svc.warehouse,
        "SELECT count(*) FROM pick_list WHERE order_id = $1",
        o.id,
    )
    .await;
    assert_eq!(lines, 1);
    shop.svc.close().await;
    t.finish().await;
}

#[tokio::test]
async fn two_transactions_committing_out_of_id_order_make_the_id_cursor_relay_miss_one_event_and_the_fixed_relay_none()
 {
    let t = labkit::testing::ctx("outbox-saga").await;
    let shop = shop(&t, "pitfall").await;
    let pool = &shop.svc.orders;
    let redis = t.ctx.redis_client();
    let mut cursor_broker = Broker::connect(&redis, &t.ctx.key("pitfall-cursor:"))
        .await
        .unwrap();
    let mut claim_broker = Broker::connect(&redis, &t.ctx.key("pitfall-claim:"))
        .await
        .unwrap();
    let mut cursor = CursorRelay::new(
        pool.clone(),
        cursor_broker.clone(),
        max_seq(pool).await.unwrap(),
        100,
    );
    let mut claim = Relay::new(
        Service::Orders,
        pool.clone(),
        claim_broker.clone(),
        shop.crashes.clone(),
        100,
    );
    let (o1, o2) = (
        NewOrder::new(1, "book", 1, "tok_visa"),
        NewOrder::new(2, "book", 1, "tok_visa"),
    );

    // t1: BEGIN; INSERT order; INSERT outbox (seq 1) — stays open
    let mut t1 = pool.begin().await.unwrap();
    orders::insert_order(&mut t1, &o1).await.unwrap();
    outbox::write(&mut t1, &o1.placed_event()).await.unwrap();
    // t2: BEGIN; INSERT order; INSERT outbox (seq 2); COMMIT
    orders::place_with_outbox(pool, &o2).await.unwrap();
    // cursor relay: SELECT … WHERE seq > 0 → seq 2 (seq 1 is invisible); last_seen = 2
    assert_eq!(cursor.pump_once().await.unwrap(), 1);
    assert_eq!(cursor.last_seen, 2);
    // claim relay: SELECT … WHERE sent_at IS NULL … → seq 2; marks it sent
    assert_eq!(claim.pump_once().await.unwrap(), 1);
    // t1: COMMIT — seq 1 becomes visible, below the cursor
    t1.commit().await.unwrap();
    // cursor relay: SELECT … WHERE seq > 2 → nothing, now and forever
    assert_eq!(cursor.pump_once().await.unwrap(), 0);
    // claim relay: seq 1 is still unsent → published
    assert_eq!(claim.pump_once().await.unwrap(), 1);

    let want: HashSet<Uuid> = [o1.id, o2.id].into();
    assert_eq!(
        lab_outbox_saga::pitfall::missed(&want, &mut cursor_broker)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        lab_outbox_saga::pitfall::missed(&want, &mut claim_broker)
            .await
            .unwrap(),
        0
    );

    // The run's version of the same script reports the same.
    let forced = lab_outbox_saga::pitfall::forced(pool, &redis, &t.ctx.key("pitfall-run:"))
        .await
        .unwrap();
    assert_eq!((forced.cursor_missed, forced.fixed_missed), (1, 0));
    shop.svc.close().await;
    t.finish().await;
}

#[tokio::test]
async fn a_payment_failure_runs_the_stock_compensation_exactly_once() {
    let t = labkit::testing::ctx("outbox-saga").await;
    let shop = shop(&t, "declined").await;
    let mut stepper = Stepper::whole_shop(&shop).await.unwrap();
    let o = NewOrder::new(1, "lamp", 2, "tok_chargeDeclined");
    saga::place_order(&shop.svc.orders, &o).await.unwrap();

    // reserve → StockReserved → charge → PaymentDeclined → the orchestrator owes ReleaseStock
    step_until(&mut stepper, &shop, o.id, "releasing").await;
    assert_eq!(on_hand(&shop, "lamp").await, 98, "two lamps held");
    // orders relay: XADD ReleaseStock; <dies> before marking it sent
    shop.crashes
        .arm_once(CrashPoint::RelayAfterPublish(Service::Orders));
    assert_eq!(
        crashed(stepper.step().await.unwrap_err()),
        CrashPoint::RelayAfterPublish(Service::Orders)
    );
    // the restarted relay publishes ReleaseStock again: the warehouse gets it twice
    stepper.restart_relay(&shop, Service::Orders).await.unwrap();
    stepper.settle().await.unwrap();

    let v = saga::view(&shop.svc.orders, o.id).await.unwrap().unwrap();
    assert_eq!(
        (v.saga_state.as_str(), v.reason.as_deref()),
        ("cancelled", Some("payment_declined"))
    );
    assert_eq!(v.order_status, "cancelled");
    let releases = count(
        &shop.svc.warehouse,
        "SELECT count(*) FROM stock_movements WHERE order_id = $1 AND kind = 'release'",
        o.id,
    )
    .await;
    assert_eq!(releases, 1, "released exactly once");
    assert_eq!(
        on_hand(&shop, "lamp").await,
        100,
        "both lamps back on the shelf"
    );
    assert_eq!(
        ConsumerStats::get(&shop.stats(Role::Warehouse).duplicates_absorbed),
        1,
        "the duplicate ReleaseStock"
    );
    assert_eq!(
        count(
            &shop.svc.payments,
            "SELECT count(*) FROM refunds WHERE order_id = $1",
            o.id
        )
        .await,
        0,
        "nothing charged, nothing refunded"
    );
    assert_no_violations(&t, &shop).await;
    t.finish().await;
}

#[tokio::test]
async fn an_orchestrator_crash_between_steps_resumes_from_the_saga_log_and_ends_consistent() {
    let t = labkit::testing::ctx("outbox-saga").await;
    let shop = shop(&t, "resume").await;
    let mut stepper = Stepper::whole_shop(&shop).await.unwrap();
    let o = NewOrder::new(1, "book", 1, "tok_visa");
    saga::place_order(&shop.svc.orders, &o).await.unwrap();

    // round 1: ReserveStock published; the warehouse reserves and writes StockReserved to its outbox
    stepper.step().await.unwrap();
    // round 2: StockReserved published; orchestrator-1 reads it, computes reserving → charging,
    //          writes state + log + ChargePayment… <dies> before COMMIT
    shop.crashes
        .arm_once(CrashPoint::ConsumerBeforeCommit(Service::Orders));
    assert_eq!(
        crashed(stepper.step().await.unwrap_err()),
        CrashPoint::ConsumerBeforeCommit(Service::Orders)
    );
    assert_eq!(
        saga_state(&shop, o.id).await,
        "reserving",
        "nothing of the step committed"
    );

    // orchestrator-2 starts: reads the log, resumes the saga in flight…
    stepper.restart(&shop, Role::Orchestrator, 2).await.unwrap();
    // …and takes over the reply orchestrator-1 never acked
    assert_eq!(
        stepper
            .consumer(Role::Orchestrator)
            .reclaim(Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    assert_eq!(saga_state(&shop, o.id).await, "charging");

    // round: ChargePayment → payments charges → PaymentCharged is published; orchestrator-2
    // confirms and COMMITs… <dies> before XACK
    shop.crashes
        .arm_once(CrashPoint::ConsumerAfterCommit(Service::Orders));
    let mut died = false;
    for _ in 0..5 {
        match stepper.step().await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(crashed(e), CrashPoint::ConsumerAfterCommit(Service::Orders));
                died = true;
                break;
            }
        }
    }
    assert!(died, "orchestrator-2 reached the confirm step");
    assert_eq!(
        saga_state(&shop, o.id).await,
        "confirmed",
        "the step committed"
    );
    // orchestrator-3 reclaims the unacked PaymentCharged: its inbox says it was applied
    stepper.restart(&shop, Role::Orchestrator, 3).await.unwrap();
    assert_eq!(
        stepper
            .consumer(Role::Orchestrator)
            .reclaim(Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    stepper.settle().await.unwrap();
    assert_eq!(
        ConsumerStats::get(&shop.stats(Role::Orchestrator).duplicates_absorbed),
        1
    );

    let v = saga::view(&shop.svc.orders, o.id).await.unwrap().unwrap();
    assert_eq!(
        (v.saga_state.as_str(), v.order_status.as_str()),
        ("confirmed", "confirmed")
    );
    let events: Vec<(&str, &str)> = v
        .log
        .iter()
        .map(|l| (l.event.as_str(), l.by_process.as_str()))
        .collect();
    assert_eq!(
        events,
        [
            ("OrderPlaced", "api"),
            ("resumed", "orchestrator-2"),
            ("StockReserved", "orchestrator-2"),
            ("PaymentCharged", "orchestrator-2"),
        ],
        "the log shows who resumed it"
    );
    assert_eq!(
        count(
            &shop.svc.payments,
            "SELECT count(*) FROM charges WHERE order_id = $1",
            o.id
        )
        .await,
        1
    );
    assert_no_violations(&t, &shop).await;
    t.finish().await;
}

#[tokio::test]
async fn a_customer_cancelling_while_the_card_is_charged_gets_one_refund_and_the_stock_back() {
    let t = labkit::testing::ctx("outbox-saga").await;
    let shop = shop(&t, "cancel").await;
    let mut stepper = Stepper::whole_shop(&shop).await.unwrap();
    let o = NewOrder::new(1, "book", 3, "tok_visa");
    saga::place_order(&shop.svc.orders, &o).await.unwrap();
    step_until(&mut stepper, &shop, o.id, "charging").await;
    // customer: POST /orders/{id}/cancel while the charge is in flight
    assert_eq!(
        saga::request_cancel(&shop.svc.orders, o.id).await.unwrap(),
        Cancel::Requested
    );
    // PaymentCharged arrives; the confirm step fails → refund, then release, then cancelled
    stepper.settle().await.unwrap();
    let v = saga::view(&shop.svc.orders, o.id).await.unwrap().unwrap();
    assert_eq!(
        (v.saga_state.as_str(), v.reason.as_deref()),
        ("cancelled", Some("customer_cancelled"))
    );
    let states: Vec<&str> = v.log.iter().map(|l| l.state.as_str()).collect();
    assert_eq!(
        states,
        [
            "reserving",
            "charging",
            "refunding",
            "releasing",
            "cancelled"
        ]
    );
    assert_eq!(
        count(
            &shop.svc.payments,
            "SELECT count(*) FROM refunds WHERE order_id = $1",
            o.id
        )
        .await,
        1
    );
    assert_eq!(on_hand(&shop, "book").await, 100);
    // too late now
    assert_eq!(
        saga::request_cancel(&shop.svc.orders, o.id).await.unwrap(),
        Cancel::Finished(saga::SagaState::Cancelled)
    );
    assert_no_violations(&t, &shop).await;
    t.finish().await;
}

async fn on_hand(shop: &Shop, sku: &str) -> i32 {
    sqlx::query_scalar("SELECT on_hand FROM stock WHERE sku = $1")
        .bind(sku)
        .fetch_one(&shop.svc.warehouse)
        .await
        .unwrap()
}

async fn assert_no_violations(t: &TestCtx, shop: &Shop) {
    let checks = invariants::audit(&t.ctx.pg).await.unwrap();
    for c in &checks {
        assert_eq!(c.violations, 0, "{}", c.rule);
    }
    shop.svc.close().await;
}

#[tokio::test]
async fn placing_an_order_over_http_shows_its_saga_and_bad_input_gets_a_4xx_json_error() {
    let t = labkit::testing::ctx("outbox-saga").await;
    let shop = std::sync::Arc::new(shop(&t, "http").await);
    let mut stepper = Stepper::whole_shop(&shop).await.unwrap();
    let server = labkit::http::spawn(router(AppState { shop: shop.clone() }))
        .await
        .unwrap();
    let http = labkit::http::client();

    let r = http
        .post(server.url("/orders"))
        .json(&serde_json::json!({ "sku": "book", "quantity": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["amount_cents"], 2598);
    let watch = |http: reqwest::Client, url: String| async move {
        http.get(url)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let v = watch(http.clone(), server.url(&location)).await;
    assert_eq!(v["saga_state"], "reserving");
    stepper.settle().await.unwrap();
    let v = watch(http.clone(), server.url(&location)).await;
    assert_eq!(v["saga_state"], "confirmed");
    assert_eq!(v["log"].as_array().unwrap().len(), 3, "{v}");
    let r = http
        .post(server.url(&format!("{location}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    // bad input: the status, and always the JSON error body
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            http.post(server.url("/orders"))
                .json(&serde_json::json!({"sku": "book", "quantity": 0})),
            422,
            "invalid_quantity",
        ),
        (
            http.post(server.url("/orders"))
                .json(&serde_json::json!({"sku": "piano", "quantity": 1})),
            422,
            "unknown_sku",
        ),
        (
            http.post(server.url("/orders"))
                .json(&serde_json::json!({"sku": "book", "quantity": 1, "card": ""})),
            422,
            "invalid_card",
        ),
        (
            http.post(server.url("/orders"))
                .json(&serde_json::json!({"sku": "book", "quantity": 1, "x": 1})),
            422,
            "",
        ),
        (
            http.post(server.url("/orders"))
                .json(&serde_json::json!({"sku": "book"})),
            422,
            "",
        ),
        (
            http.post(server.url("/orders"))
                .header("content-type", "application/json")
                .body("{\"sku\":"),
            400,
            "",
        ),
        (
            http.post(server.url("/orders"))
                .header("content-type", "application/json")
                .body("{\"sku\":\"bo\\u0000ok\",\"quantity\":1}"),
            400,
            "",
        ),
        (http.post(server.url("/orders")).body("sku=book"), 415, ""),
        (
            http.get(server.url("/orders/not-a-uuid")),
            400,
            "invalid_order_id",
        ),
        (
            http.get(server.url(&format!("/orders/{}", Uuid::new_v4()))),
            404,
            "order_not_found",
        ),
        (
            http.post(server.url(&format!("/orders/{}/cancel", Uuid::new_v4()))),
            404,
            "order_not_found",
        ),
        (
            http.post(server.url("/lab/crash"))
                .json(&serde_json::json!({"at": "nowhere"})),
            422,
            "unknown_crash_point",
        ),
        (
            http.delete(server.url("/orders")),
            405,
            "method_not_allowed",
        ),
        (http.get(server.url("/nope")), 404, "not_found"),
    ];
    for (req, status, code) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "{body}");
        if !code.is_empty() {
            assert_eq!(body["error"]["code"], code, "{body}");
            assert_ne!(
                body["error"]["message"], code,
                "a message, not the code again: {body}"
            );
        }
    }
    let r = http
        .post(server.url("/lab/crash"))
        .json(&serde_json::json!({ "at": "orchestrator_before_commit" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
    shop.svc.close().await;
    t.finish().await;
}

#[tokio::test]
async fn a_smoke_run_keeps_its_contract_and_its_invariants() {
    let t = labkit::testing::ctx("outbox-saga").await;
    let report = labkit::testing::smoke_run_keeps_its_contract(&OutboxSaga, &t).await;
    // The effects, which do not depend on timing:
    assert!(report.get("dual_write_lost_events").unwrap() > 0.0);
    assert!(report.get("dual_write_phantom_events").unwrap() > 0.0);
    assert_eq!(report.get("outbox_crash_lost_or_phantom_events"), Some(0.0));
    assert_eq!(report.get("outbox_lost_events"), Some(0.0));
    assert!(report.get("outbox_duplicates_delivered").unwrap() > 0.0);
    assert_eq!(report.get("consumer_duplicate_effects"), Some(0.0));
    assert_eq!(report.get("id_cursor_relay_missed_forced"), Some(1.0));
    assert_eq!(report.get("fixed_relay_missed_events"), Some(0.0));
    assert_eq!(report.get("saga_invariant_violations"), Some(0.0));
    assert!(report.get("saga_orchestrator_crashes").unwrap() > 0.0);
    assert!(!report.sentence.is_empty());
    t.finish().await;
}
