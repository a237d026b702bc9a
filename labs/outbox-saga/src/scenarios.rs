//! The four scenarios, each measured: what the run calls, step by step.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use labkit::{
    Bound, ClosedLoop, LabCtx, LatencySummary, OpenLoop, Recorder, closed_loop, open_loop,
};
use uuid::Uuid;

use crate::app::{AppState, router};
use crate::broker::Broker;
use crate::crash::{CrashPoint, Crashes, Service};
use crate::fleet::{Fleet, Shop};
use crate::inbox::{ConsumerStats, Role};
use crate::invariants::{self, Check, Compensations};
use crate::orders::{self, NewOrder, ORDER_EVENTS, WritePath};
use crate::outbox;
use crate::pitfall::{self, Forced};
use crate::relay::{CursorRelay, Pump, Relay, Wake, max_seq};
use crate::saga;
use crate::schema::{self, Services};

/// How long to wait for a backlog to drain before calling it stuck.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Waiting for background processes to reach a state the run can check (not a sleep
/// standing in for a synchronisation): poll, and give up after [`DRAIN_TIMEOUT`].
struct Deadline {
    what: &'static str,
    start: Instant,
}

impl Deadline {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            start: Instant::now(),
        }
    }

    async fn tick(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.start.elapsed() < DRAIN_TIMEOUT,
            "{} did not finish within {DRAIN_TIMEOUT:?}",
            self.what
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// 1. The dual write
// ---------------------------------------------------------------------------------------

/// One write path, N orders, a crash at the point between its two writes every k-th order.
#[derive(Debug, Clone)]
pub struct DualWriteRow {
    pub path: WritePath,
    pub attempts: u64,
    pub crashes: u64,
    pub committed: u64,
    pub events: u64,
    /// Orders committed with no event.
    pub lost: u64,
    /// Events for orders that do not exist.
    pub phantom: u64,
    pub write: LatencySummary,
}

pub async fn dual_write(
    ctx: &LabCtx,
    svc: &Services,
    orders: u64,
    crash_every: u64,
) -> anyhow::Result<Vec<DualWriteRow>> {
    let clients = ctx.clients(4);
    let mut rows = Vec::new();
    for (i, path) in WritePath::ALL.into_iter().enumerate() {
        let customer = 1000 + i as i64; // marks this path's orders
        let shop = Shop::new(
            svc.clone(),
            ctx.redis_client(),
            ctx.key(&format!("dual-{}:", path.key())),
        );
        shop.crashes.arm_every(path.crash_point(), crash_every);
        let (pool, broker, crashes) = (
            svc.orders.clone(),
            shop.broker().await?,
            shop.crashes.clone(),
        );
        let load = closed_loop(
            ClosedLoop::new(clients, Bound::Count(orders))
                .label(format!("dual write: {}", path.key())),
            move |_| {
                let (pool, mut broker, crashes) = (pool.clone(), broker.clone(), crashes.clone());
                async move {
                    let o = NewOrder::new(customer, "book", 1, "tok_visa");
                    orders::place(&pool, &mut broker, path, &o, &crashes).await
                }
            },
        )
        .await;
        if path == WritePath::Outbox {
            // The relay runs after the crashes: whatever committed is in the outbox.
            shop.relay(Service::Orders).await?.drain().await?;
        }
        let committed: HashSet<Uuid> =
            sqlx::query_scalar::<_, Uuid>("SELECT id FROM orders WHERE customer_id = $1")
                .bind(customer)
                .fetch_all(&svc.orders)
                .await?
                .into_iter()
                .collect();
        let events: HashSet<Uuid> = shop
            .broker()
            .await?
            .all(ORDER_EVENTS)
            .await?
            .into_iter()
            .filter_map(|d| d.message.aggregateid.parse().ok())
            .collect();
        rows.push(DualWriteRow {
            path,
            attempts: orders,
            crashes: shop.crashes.fired(path.crash_point()),
            committed: committed.len() as u64,
            events: events.len() as u64,
            lost: committed.difference(&events).count() as u64,
            phantom: events.difference(&committed).count() as u64,
            write: load.summary,
        });
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------
// 2. The transactional outbox under load: lag, then relay and consumer crashes
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Delivery {
    pub relays: usize,
    pub consumers: usize,
    pub rate: f64,
    /// Events still queued (outbox or stream) when the healthy write phase ended.
    pub backlog_at_end: u64,
    /// Outbox insert → the pick-list consumer received it (first deliveries).
    pub lag: LatencySummary,
    pub write: LatencySummary,
    pub schedule_warning: Option<String>,
    pub crash: CrashPhase,
}

/// The phase with crashes armed.
#[derive(Debug, Clone, Default)]
pub struct CrashPhase {
    pub placed: u64,
    pub relay_crashes: u64,
    pub consumer_crashes: u64,
    pub stream_entries: u64,
    pub distinct_events: u64,
    pub lost: u64,
    /// Stream entries beyond the first for the same event (the relay re-published).
    pub duplicates_delivered: u64,
    /// Deliveries the pick-list's inbox recognised and dropped.
    pub absorbed: u64,
    /// Entries taken over from a crashed consumer with XAUTOCLAIM.
    pub reclaimed: u64,
    pub duplicate_effects: u64,
    pub duplicate_effects_without_inbox: u64,
}

pub async fn delivery(
    ctx: &LabCtx,
    svc: &Services,
    relay_every: u64,
    consumer_every: u64,
) -> anyhow::Result<Delivery> {
    let rate = ctx.rate(ctx.scale.pick(100.0, 200.0, 500.0));
    let duration = ctx.duration(ctx.scale.pick(
        Duration::from_secs(1),
        Duration::from_secs(5),
        Duration::from_secs(20),
    ));
    // Two relays split the backlog (SKIP LOCKED); two consumers share the group.
    let (relays, consumers) = (2, 2);

    // Healthy: the lag a reader should expect.
    let healthy = Arc::new(Shop::new(
        svc.clone(),
        ctx.redis_client(),
        ctx.key("delivery-healthy:"),
    ));
    let fleet = Fleet::start(
        &healthy,
        &[(Service::Orders, relays)],
        &[(Role::PickList, consumers)],
    );
    let load = write_orders(
        svc,
        rate,
        duration,
        2000,
        "outbox writes, healthy relays (relay lag)",
    )
    .await;
    // If the relays or consumers fell behind, the lag measures a queue, and the report says so.
    let backlog_at_end = backlog(&healthy, &[Role::PickList]).await?;
    drain(&healthy, &[Role::PickList]).await?;
    fleet.stop().await;
    let lag = healthy
        .stats(Role::PickList)
        .lag
        .lock()
        .unwrap()
        .summary(duration);

    // Crashing: relays die after publishing, the consumer after committing.
    let shop = Arc::new(Shop::new(
        svc.clone(),
        ctx.redis_client(),
        ctx.key("delivery-crash:"),
    ));
    shop.crashes
        .arm_every(CrashPoint::RelayAfterPublish(Service::Orders), relay_every);
    shop.crashes.arm_every(
        CrashPoint::ConsumerAfterCommit(Service::Warehouse),
        consumer_every,
    );
    let fleet = Fleet::start(
        &shop,
        &[(Service::Orders, relays)],
        &[(Role::PickList, consumers), (Role::PickListNoInbox, 1)],
    );
    let crash_load = write_orders(
        svc,
        rate,
        duration,
        2001,
        "outbox writes, relays and consumer crashing",
    )
    .await;
    drain(&shop, &[Role::PickList, Role::PickListNoInbox]).await?;
    fleet.stop().await;
    let crash = count_crash_phase(&shop, 2001).await?;
    anyhow::ensure!(
        crash_load.summary.errors == 0,
        "writes failed: {:?}",
        crash_load.first_error
    );

    Ok(Delivery {
        relays,
        consumers,
        rate,
        lag,
        backlog_at_end,
        schedule_warning: load
            .schedule
            .and_then(|s| s.warning("outbox writes, healthy relays")),
        write: load.summary,
        crash,
    })
}

/// Events not yet through: unsent outbox rows plus each group's unread and unacked entries.
async fn backlog(shop: &Shop, roles: &[Role]) -> anyhow::Result<u64> {
    let mut broker = shop.broker().await?;
    let mut n = outbox::unsent(&shop.svc.orders).await? as u64;
    for r in roles {
        n += broker.backlog(r.route(), r.group()).await?;
    }
    Ok(n)
}

/// Open-loop order writes (order + outbox row in one transaction) for customer `customer`.
async fn write_orders(
    svc: &Services,
    rate: f64,
    duration: Duration,
    customer: i64,
    label: &str,
) -> labkit::LoadResult {
    let pool = svc.orders.clone();
    open_loop(
        OpenLoop::new(rate, duration).max_in_flight(64).label(label),
        move |_| {
            let pool = pool.clone();
            async move {
                orders::place_with_outbox(&pool, &NewOrder::new(customer, "book", 1, "tok_visa"))
                    .await
            }
        },
    )
    .await
}

/// Wait until the orders outbox is sent and every role's group has consumed everything.
async fn drain(shop: &Shop, roles: &[Role]) -> anyhow::Result<()> {
    let deadline = Deadline::new("draining the relays and consumers");
    while backlog(shop, roles).await? > 0 {
        deadline.tick().await?;
    }
    Ok(())
}

async fn count_crash_phase(shop: &Shop, customer: i64) -> anyhow::Result<CrashPhase> {
    let entries = shop.broker().await?.all(ORDER_EVENTS).await?;
    let distinct: HashSet<Uuid> = entries.iter().map(|d| d.message.id).collect();
    let (placed, lost): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE NOT EXISTS
                (SELECT 1 FROM warehouse.pick_list p WHERE p.order_id = o.id))
         FROM orders.orders o WHERE o.customer_id = $1",
    )
    .bind(customer)
    .fetch_one(&shop.svc.orders)
    .await?;
    let dup = |table: &'static str| {
        let pool = shop.svc.warehouse.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) - count(DISTINCT order_id) FROM {table}"
            )))
            .fetch_one(&pool)
            .await
        }
    };
    let stats = shop.stats(Role::PickList);
    Ok(CrashPhase {
        placed: placed as u64,
        relay_crashes: shop
            .crashes
            .fired(CrashPoint::RelayAfterPublish(Service::Orders)),
        consumer_crashes: shop
            .crashes
            .fired(CrashPoint::ConsumerAfterCommit(Service::Warehouse)),
        stream_entries: entries.len() as u64,
        distinct_events: distinct.len() as u64,
        lost: lost as u64,
        duplicates_delivered: (entries.len() - distinct.len()) as u64,
        absorbed: ConsumerStats::get(&stats.duplicates_absorbed),
        reclaimed: ConsumerStats::get(&stats.reclaimed),
        duplicate_effects: dup("pick_list").await? as u64,
        duplicate_effects_without_inbox: dup("pick_list_no_inbox").await? as u64,
    })
}

// ---------------------------------------------------------------------------------------
// 3. The relay pitfall: forced, then under write load
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Pitfall {
    pub forced: Forced,
    pub clients: usize,
    pub events: u64,
    pub cursor_missed: u64,
    pub fixed_missed: u64,
}

pub async fn pitfall(ctx: &LabCtx, svc: &Services) -> anyhow::Result<Pitfall> {
    let forced = pitfall::forced(
        &svc.orders,
        &ctx.redis_client(),
        &ctx.key("pitfall-forced:"),
    )
    .await?;

    // Under load, nothing forced: writers commit as they will, both relays poll on NOTIFY.
    let clients = ctx.clients(8);
    let duration = ctx.duration(ctx.scale.pick(
        Duration::from_secs(1),
        Duration::from_secs(5),
        Duration::from_secs(20),
    ));
    let (cursor_prefix, claim_prefix) = (
        ctx.key("pitfall-load:cursor:"),
        ctx.key("pitfall-load:claim:"),
    );
    let redis = ctx.redis_client();
    let start = max_seq(&svc.orders).await?;
    let mut cursor = CursorRelay::new(
        svc.orders.clone(),
        Broker::connect(&redis, &cursor_prefix).await?,
        start,
        500,
    );
    let mut claim = Relay::new(
        Service::Orders,
        svc.orders.clone(),
        Broker::connect(&redis, &claim_prefix).await?,
        Arc::new(Crashes::new()),
        500,
    );
    let stop = AtomicBool::new(false);
    let pool = svc.orders.clone();
    let writers = async {
        let r = closed_loop(
            ClosedLoop::new(clients, Bound::Duration(duration))
                .label("outbox writes, cursor relay vs claim relay"),
            move |_| {
                let pool = pool.clone();
                async move {
                    orders::place_with_outbox(&pool, &NewOrder::new(3000, "book", 1, "tok_visa"))
                        .await
                }
            },
        )
        .await;
        stop.store(true, Ordering::SeqCst);
        r
    };
    let (load, c, f) = tokio::join!(
        writers,
        run_relay(&svc.orders, &stop, &mut cursor),
        run_relay(&svc.orders, &stop, &mut claim),
    );
    c?;
    f?;
    anyhow::ensure!(
        load.summary.errors == 0,
        "writes failed: {:?}",
        load.first_error
    );
    let want: HashSet<Uuid> =
        sqlx::query_scalar::<_, String>("SELECT aggregateid FROM outbox WHERE seq > $1")
            .bind(start)
            .fetch_all(&svc.orders)
            .await?
            .into_iter()
            .filter_map(|s| s.parse().ok())
            .collect();
    Ok(Pitfall {
        forced,
        clients,
        events: want.len() as u64,
        cursor_missed: pitfall::missed(&want, &mut Broker::connect(&redis, &cursor_prefix).await?)
            .await?,
        fixed_missed: pitfall::missed(&want, &mut Broker::connect(&redis, &claim_prefix).await?)
            .await?,
    })
}

/// Pump `relay` on every outbox notification until `stop`, then until it finds nothing.
async fn run_relay(
    pool: &sqlx::PgPool,
    stop: &AtomicBool,
    relay: &mut impl Pump,
) -> anyhow::Result<()> {
    let mut wake = Wake::listen(pool, Service::Orders).await?;
    while !stop.load(Ordering::SeqCst) {
        if relay.pump().await? == 0 {
            wake.wait(Duration::from_millis(20)).await?;
        }
    }
    while relay.pump().await? > 0 {}
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. The saga under concurrency, with crashes
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct SagaRun {
    pub sagas: u64,
    /// Sagas of the steady phase, and its orders per second (open loop).
    pub steady: u64,
    pub rate: f64,
    /// The flash sale: orders, clients, and how long until every saga had finished.
    pub sale: u64,
    pub sale_clients: usize,
    pub sale_drained: Duration,
    /// (outcome, count): confirmed, out_of_stock, payment_declined, customer_cancelled.
    pub outcomes: Vec<(String, i64)>,
    pub compensations: Compensations,
    pub checks: Vec<Check>,
    pub resumed: i64,
    /// The most sagas in flight at one moment.
    pub max_in_flight: i64,
    pub orchestrator_crashes: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub redeliveries_absorbed: u64,
    pub placement: LatencySummary,
    pub schedule_warning: Option<String>,
    /// Order placed → saga finished (confirmed or cancelled), steady phase.
    pub duration: LatencySummary,
}

pub async fn saga(ctx: &LabCtx, svc: &Services) -> anyhow::Result<SagaRun> {
    // Orders arrive at a fixed rate (open loop) the shop can sustain, so the saga duration
    // is the pipeline's, not a queue's.
    let rate = ctx.rate(ctx.scale.pick(20.0, 30.0, 60.0));
    let duration = ctx.duration(ctx.scale.pick(
        Duration::from_secs(3),
        Duration::from_secs(8),
        Duration::from_secs(30),
    ));
    let steady = (rate * duration.as_secs_f64()) as u64;
    // Then a flash sale: this many orders from many clients at once, hundreds in flight.
    let (sale_clients, sale) = (ctx.clients(16), ctx.scale.pick(60, 300, 2000));
    let expected = steady + sale;
    // 1 order in 20 wants the scarce record; stock covers about half of them.
    schema::stock(&svc.warehouse, 1_000_000, (expected / 40).max(1) as i32).await?;
    let shop = Arc::new(Shop::new(svc.clone(), ctx.redis_client(), ctx.key("saga:")));
    // A few crashes of each kind over the run (the orchestrator sees ~2.5 replies per saga).
    let every = (expected / 2).max(5);
    shop.crashes
        .arm_every(CrashPoint::ConsumerBeforeCommit(Service::Orders), every);
    shop.crashes
        .arm_every(CrashPoint::ConsumerAfterCommit(Service::Orders), every + 7);
    shop.crashes.arm_every(
        CrashPoint::RelayAfterPublish(Service::Orders),
        every / 2 + 3,
    );
    shop.crashes.arm_every(
        CrashPoint::ConsumerAfterCommit(Service::Payments),
        every / 2 + 5,
    );
    let fleet = Fleet::start(
        &shop,
        &[
            (Service::Orders, 1),
            (Service::Warehouse, 1),
            (Service::Payments, 1),
        ],
        &[
            (Role::Orchestrator, 1),
            (Role::Warehouse, 1),
            (Role::Payments, 1),
        ],
    );
    let server = labkit::http::spawn(router(AppState { shop: shop.clone() })).await?;
    let (http, base) = (labkit::http::client(), server.base_url());
    let placement = open_loop(
        OpenLoop::new(rate, duration)
            .max_in_flight(64)
            .label("orders over HTTP (sagas run behind)"),
        {
            let (http, base) = (http.clone(), base.clone());
            move |call| {
                let (http, base) = (http.clone(), base.clone());
                async move { place_one(&http, &base, call.seq, true).await }
            }
        },
    )
    .await;
    anyhow::ensure!(
        placement.summary.errors == 0,
        "placing orders failed: {:?}",
        placement.first_error
    );
    let sale_started = Instant::now();
    let burst = closed_loop(
        ClosedLoop::new(sale_clients, Bound::Count(sale)).label(format!(
            "flash sale: {sale} orders from {sale_clients} clients at once"
        )),
        move |call| {
            let (http, base) = (http.clone(), base.clone());
            async move { place_one(&http, &base, FLASH_SALE + call.seq, false).await }
        },
    )
    .await;
    anyhow::ensure!(
        burst.summary.errors == 0,
        "placing orders failed: {:?}",
        burst.first_error
    );
    let deadline = Deadline::new("every saga");
    while saga::in_flight(&svc.orders).await? > 0 {
        deadline.tick().await?;
    }
    let sale_drained = sale_started.elapsed();
    fleet.stop().await;
    server.stop().await;

    let outcomes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT coalesce(reason, state), count(*) FROM saga GROUP BY 1 ORDER BY 2 DESC",
    )
    .fetch_all(&svc.orders)
    .await?;
    // How many sagas were running at once, at worst (from the log's own timestamps).
    let max_in_flight: i64 = sqlx::query_scalar(
        "SELECT coalesce(max((SELECT count(*) FROM saga b
                              WHERE b.started_at <= a.started_at AND b.finished_at > a.started_at)), 0)
         FROM saga a",
    )
    .fetch_one(&svc.orders)
    .await?;
    let resumed: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT saga_id) FROM saga_log WHERE event = 'resumed'")
            .fetch_one(&svc.orders)
            .await?;
    // The steady orders' sagas: the pipeline's latency, not the flash sale's queue.
    let micros: Vec<i64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM s.finished_at - s.started_at) * 1e6)::bigint
         FROM saga s JOIN orders o ON o.id = s.saga_id WHERE o.customer_id < $1",
    )
    .bind(FLASH_SALE as i64)
    .fetch_all(&svc.orders)
    .await?;
    let mut rec = Recorder::new();
    for us in &micros {
        rec.record(Duration::from_micros((*us).max(0) as u64));
    }
    let absorbed = |r| ConsumerStats::get(&shop.stats(r).duplicates_absorbed);
    let c = &shop.crashes;
    Ok(SagaRun {
        sagas: steady + sale,
        steady: micros.len() as u64,
        rate,
        sale,
        sale_clients,
        sale_drained,
        outcomes,
        compensations: invariants::compensations(&ctx.pg).await?,
        checks: invariants::audit(&ctx.pg).await?,
        resumed,
        max_in_flight,
        orchestrator_crashes: c.fired(CrashPoint::ConsumerBeforeCommit(Service::Orders))
            + c.fired(CrashPoint::ConsumerAfterCommit(Service::Orders)),
        crashes: c.fired_total(),
        restarts: shop.restarts.load(Ordering::Relaxed),
        redeliveries_absorbed: absorbed(Role::Orchestrator)
            + absorbed(Role::Warehouse)
            + absorbed(Role::Payments),
        schedule_warning: placement
            .schedule
            .and_then(|s| s.warning("orders over HTTP")),
        placement: placement.summary,
        duration: rec.summary(Duration::from_secs_f64(placement.summary.elapsed_s)),
    })
}

/// Sequence numbers (and customer ids) of flash-sale orders start here.
const FLASH_SALE: u64 = 1_000_000;

/// The order mix, by sequence number: 1 in 20 asks for the scarce record (it runs out),
/// 1 in 10 pays with a declined card, and 2 in 10 customers cancel — one right away, one a
/// moment later (in the steady phase).
pub fn order_body(seq: u64) -> serde_json::Value {
    let sku = match seq % 20 {
        0 => "rare-vinyl",
        s if s % 2 == 0 => "book",
        _ => "lamp",
    };
    let card = if seq % 10 == 7 {
        crate::payments::DECLINED_CARD
    } else {
        "tok_visa"
    };
    serde_json::json!({ "sku": sku, "quantity": 1 + (seq % 2), "card": card, "customer_id": seq as i64 })
}

/// Place order `seq`; the customers who cancel do so at once, or — when `later` — a moment
/// after placing it.
async fn place_one(
    http: &reqwest::Client,
    base: &str,
    seq: u64,
    later: bool,
) -> anyhow::Result<()> {
    let r = http
        .post(format!("{base}/orders"))
        .json(&order_body(seq))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 202, "POST /orders: {}", r.status());
    let cancel_now = seq % 10 == 3;
    let cancel_later = later && seq % 10 == 5;
    if !(cancel_now || cancel_later) {
        return Ok(());
    }
    let body: serde_json::Value = r.json().await?;
    let order = format!(
        "{base}/orders/{}",
        body["order_id"].as_str().unwrap_or_default()
    );
    if cancel_later {
        // The customer thinks it over for a moment (10-29 ms): depending on where the saga
        // is by then, the cancel releases the stock, refunds the card too, or is too late.
        tokio::time::sleep(Duration::from_millis(10 + seq % 20)).await;
    }
    let r = http.post(format!("{order}/cancel")).send().await?;
    // 202: noted in time; 409: the saga had already finished (a race the customer lost).
    anyhow::ensure!(
        matches!(r.status().as_u16(), 202 | 409),
        "cancel: {}",
        r.status()
    );
    Ok(())
}
