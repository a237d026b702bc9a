//! outbox-saga: what the outbox costs on the write path. One order, one client, three ways:
//! a plain INSERT of the order (autocommit); the order and its `OrderPlaced` outbox row in one
//! transaction, with the statement trigger that NOTIFYs the relays (what the lab runs); and
//! the same transaction with that trigger disabled (a relay that polls instead).
//!
//! The tables hold a history first (100,000 orders, 100,000 sent outbox rows), so the inserts
//! land in indexes of a realistic depth; between variants the relay's job is done by hand
//! (every row marked sent), so each variant starts from an empty unsent backlog.
//!
//! Run with `cargo bench -p benches --bench outbox-saga`. The load-shaped numbers (relay lag
//! under write load, duplicates under crashes) come from `lab run outbox-saga`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lab_outbox_saga::orders::{self, NewOrder};
use lab_outbox_saga::schema::{self, Services};
use labkit::Scale;
use labkit::measure::sequential;

const HISTORY: u64 = 100_000;

async fn mark_all_sent(svc: &Services) {
    sqlx::query("UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL")
        .execute(&svc.orders)
        .await
        .expect("mark sent");
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
    let rt = benches::runtime();
    let t = benches::ctx(&rt, "outbox-saga", Scale::Smoke);
    let svc = rt.block_on(async {
        let svc = Services::connect(&t.ctx, 2).await.expect("pools");
        schema::create(&t.ctx.pg, &svc).await.expect("schema");
        labkit::seed::generate(
            &t.ctx.pg,
            "orders history",
            HISTORY,
            t.ctx.seed,
            "INSERT INTO orders.orders (id, customer_id, sku, quantity, amount_cents, card, status)
             SELECT md5(g::text || ':' || $3::text)::uuid, 1 + (labkit_uniform(g, $3, 1) * 50000)::bigint,
                    'book', 1, 1299, 'tok_visa', 'confirmed'
             FROM generate_series($1::bigint, $2::bigint) g",
            |q| q,
        )
        .await
        .expect("seed orders");
        labkit::seed::generate(
            &t.ctx.pg,
            "outbox history",
            HISTORY,
            t.ctx.seed,
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
            .execute(&t.ctx.pg)
            .await
            .expect("vacuum");
        svc
    });
    let order = || NewOrder::new(7, "book", 1, "tok_visa");

    let mut g = c.benchmark_group("outbox-saga/place-one-order");
    g.sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    g.bench_function("plain_insert", |b| {
        b.to_async(&rt).iter(|| async {
            orders::place_plain(&svc.orders, &order())
                .await
                .expect("insert")
        })
    });
    g.bench_function("outbox_with_notify", |b| {
        b.to_async(&rt).iter(|| async {
            orders::place_with_outbox(&svc.orders, &order())
                .await
                .expect("outbox insert")
        })
    });
    rt.block_on(mark_all_sent(&svc));
    rt.block_on(notify_trigger(&svc, false));
    g.bench_function("outbox_without_notify", |b| {
        b.to_async(&rt).iter(|| async {
            orders::place_with_outbox(&svc.orders, &order())
                .await
                .expect("outbox insert")
        })
    });
    g.finish();
    rt.block_on(notify_trigger(&svc, true));
    rt.block_on(mark_all_sent(&svc));

    // The ratio a reader would quote, from the same operations timed one after another.
    let n = 2000;
    let pool = &svc.orders;
    let (plain, outbox, quiet) = rt.block_on(async {
        let plain = sequential(
            n,
            |_| async move { orders::place_plain(pool, &order()).await },
        )
        .await;
        let with_outbox = async |_| orders::place_with_outbox(pool, &order()).await;
        let outbox = sequential(n, with_outbox).await;
        mark_all_sent(&svc).await;
        notify_trigger(&svc, false).await;
        let quiet = sequential(n, with_outbox).await;
        notify_trigger(&svc, true).await;
        (plain, outbox, quiet)
    });
    println!(
        "outbox-saga: order + outbox row in one transaction p50 {:.3} ms vs plain insert {:.3} ms ({:.2}x, n={n} each)",
        outbox.p50_ms,
        plain.p50_ms,
        outbox.p50_ms / plain.p50_ms.max(1e-9)
    );
    println!(
        "outbox-saga: without the NOTIFY trigger the outbox write is {:.3} ms p50 ({:.2}x plain); NOTIFY adds {:.3} ms",
        quiet.p50_ms,
        quiet.p50_ms / plain.p50_ms.max(1e-9),
        outbox.p50_ms - quiet.p50_ms
    );

    rt.block_on(async {
        svc.close().await;
        t.finish().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
