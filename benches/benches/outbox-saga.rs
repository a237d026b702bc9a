//! outbox-saga: what the outbox costs on the write path. One order, one client, three ways:
//! a plain INSERT of the order (autocommit); the order and its `OrderPlaced` outbox row in one
//! transaction, with the statement trigger that NOTIFYs the relays (what the lab runs); and
//! the same transaction with that trigger disabled (a relay that polls instead).
//!
//! The tables hold a history first (100,000 orders, 100,000 sent outbox rows), so the inserts
//! land in indexes of a realistic depth. What a sample inserted (the bench's orders, customer
//! 0, and their unsent outbox rows) is deleted after the sample, outside the timing, so the
//! tables stay the history's size and every variant starts from an empty unsent backlog.
//!
//! Run with `cargo bench -p benches --bench outbox-saga`. The load-shaped numbers (relay lag
//! under write load, duplicates under crashes) come from `lab run outbox-saga`.

use std::time::Duration;

use benches::Bench;
use benches::iters::then_reset;
use criterion::{Criterion, criterion_group, criterion_main};
use lab_outbox_saga::orders::{self, NewOrder};
use lab_outbox_saga::schema::{self, Services};
use labkit::Scale;

const HISTORY: u64 = 100_000;
const GROUP: &str = "outbox-saga/place-one-order";
/// The bench's orders: the history's customers are 1 … 50,001.
const BENCH_CUSTOMER: i64 = 0;

/// What a sample wrote: the bench's orders and the unsent outbox rows (the history's are
/// all sent).
async fn delete_written(svc: &Services) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DELETE FROM outbox WHERE sent_at IS NULL; \
         DELETE FROM orders WHERE customer_id = {BENCH_CUSTOMER}"
    )))
    .execute(&svc.orders)
    .await
    .expect("delete what the sample wrote");
}

async fn notify_trigger(svc: &Services, on: bool) {
    let sql = if on {
        "ALTER TABLE outbox ENABLE TRIGGER outbox_notify"
    } else {
        "ALTER TABLE outbox DISABLE TRIGGER outbox_notify"
    };
    sqlx::query(sql)
        .execute(&svc.orders)
        .await
        .expect("toggle trigger");
}

fn bench(c: &mut Criterion) {
    let b = Bench::throwaway("outbox-saga", Scale::Smoke);
    let t = &b;
    let svc = b.block_on(async {
        let svc = Services::connect(t.ctx(), 2).await.expect("pools");
        schema::create(&t.ctx().pg, &svc).await.expect("schema");
        labkit::seed::generate(
            &t.ctx().pg,
            "orders history",
            HISTORY,
            t.ctx().seed,
            "INSERT INTO orders.orders (id, customer_id, sku, quantity, amount_cents, card, status)
             SELECT md5(g::text || ':' || $3::text)::uuid, 1 + (labkit_uniform(g, $3, 1) * 50000)::bigint,
                    'book', 1, 1299, 'tok_visa', 'confirmed'
             FROM generate_series($1::bigint, $2::bigint) g",
            |q| q,
        )
        .await
        .expect("seed orders");
        labkit::seed::generate(
            &t.ctx().pg,
            "outbox history",
            HISTORY,
            t.ctx().seed,
            "INSERT INTO orders.outbox (id, aggregatetype, aggregateid, type, payload, created_at, sent_at)
             SELECT md5('outbox:' || g::text || ':' || $3::text)::uuid, 'order',
                    md5(g::text || ':' || $3::text)::uuid::text, 'OrderPlaced',
                    jsonb_build_object('order_id', md5(g::text || ':' || $3::text)::uuid),
                    now(), now()
             FROM generate_series($1::bigint, $2::bigint) g",
            |q| q,
        )
        .await
        .expect("seed outbox");
        sqlx::query("VACUUM ANALYZE orders.orders, orders.outbox")
            .execute(&t.ctx().pg)
            .await
            .expect("vacuum");
        svc
    });
    let order = || NewOrder::new(BENCH_CUSTOMER, "book", 1, "tok_visa");
    let (pool, svc) = (&svc.orders, &svc);
    let reset = async || delete_written(svc).await;
    let reset = &reset;

    let mut g = c.benchmark_group(GROUP);
    g.sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    g.bench_function("plain_insert", |bench| {
        bench.to_async(&b.rt).iter_custom(|iters| {
            let op = async move |_| orders::place_plain(pool, &order()).await.expect("insert");
            async move { then_reset(iters, &op, reset).await }
        })
    });
    let with_outbox = async move |_| {
        orders::place_with_outbox(pool, &order())
            .await
            .expect("outbox insert")
    };
    let with_outbox = &with_outbox;
    g.bench_function("outbox_with_notify", |bench| {
        bench
            .to_async(&b.rt)
            .iter_custom(|iters| async move { then_reset(iters, with_outbox, reset).await })
    });
    b.block_on(notify_trigger(svc, false));
    g.bench_function("outbox_without_notify", |bench| {
        bench
            .to_async(&b.rt)
            .iter_custom(|iters| async move { then_reset(iters, with_outbox, reset).await })
    });
    g.finish();
    b.block_on(notify_trigger(svc, true));

    b.summary(
        GROUP,
        format!("{HISTORY} orders and {HISTORY} sent outbox rows of history, one client"),
    )
    .label("plain_insert", "INSERT the order, autocommit")
    .label(
        "outbox_with_notify",
        "order + outbox row in one transaction, NOTIFY trigger (the lab)",
    )
    .label(
        "outbox_without_notify",
        "order + outbox row in one transaction, no trigger (a polling relay)",
    )
    .when(&["outbox_with_notify", "plain_insert"], |e| {
        format!(
            "the order and its outbox row in one transaction cost {} vs {} for the plain \
             insert ({:.2}×): the price of never losing the event",
            e[0],
            e[1],
            e[0].ns / e[1].ns
        )
    })
    .when(
        &[
            "outbox_without_notify",
            "outbox_with_notify",
            "plain_insert",
        ],
        |e| {
            let (without, with) = (e[0], e[1]);
            // Overlapping 95 % intervals: the trigger's cost is below what this run resolves.
            let notify = if with.lo <= without.hi && without.lo <= with.hi {
                "NOTIFY's own cost is within this run's noise (the intervals overlap)".to_string()
            } else {
                format!(
                    "NOTIFY adds {}",
                    benches::summary::fmt_time(with.ns - without.ns)
                )
            };
            format!(
                "without the NOTIFY trigger the outbox write costs {without} ({:.2}× plain) vs \
                 {with} with it; {notify}",
                without.ns / e[2].ns,
            )
        },
    )
    .finish();

    b.block_on(svc.close());
    b.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
