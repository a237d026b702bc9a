//! The lab run: the story in four steps. Each step is a call into [`crate::scenarios`]; the
//! report is assembled in [`crate::report`].

use labkit::{Knob, LabCtx, Report};

use crate::scenarios::{self, Delivery, DualWriteRow, Pitfall, SagaRun};
use crate::schema::{self, Services};

/// How big each step is, by scale.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Orders per write path in the dual-write step.
    pub dual_orders: u64,
    /// A crash between the two writes every this many orders.
    pub dual_crash_every: u64,
    /// In the outbox step: a relay crash every this many batches, a consumer crash every this
    /// many messages.
    pub relay_crash_every: u64,
    pub consumer_crash_every: u64,
}

impl Shape {
    pub fn for_scale(scale: labkit::Scale) -> Self {
        Self {
            dual_orders: scale.pick(100, 500, 5000),
            dual_crash_every: 10,
            relay_crash_every: scale.pick(10, 25, 50),
            consumer_crash_every: scale.pick(20, 100, 200),
        }
    }
}

/// What the four steps measured.
#[derive(Debug, Clone)]
pub struct Results {
    pub shape: Shape,
    pub dual: Vec<DualWriteRow>,
    pub delivery: Delivery,
    pub pitfall: Pitfall,
    pub saga: SagaRun,
}

pub async fn run(ctx: &LabCtx, title: &str) -> anyhow::Result<Report> {
    let shape = Shape::for_scale(ctx.scale);
    ctx.ignores(
        Knob::Warmup,
        "every phase counts events from its first write (a warm-up would leave rows the \
         lost/duplicate counts must include), and relay lag is measured from an idle relay",
    );

    // Three services, three schemas, three pools: nothing below shares a transaction
    // across services.
    let svc = Services::connect(ctx, 16).await?;
    schema::create(&ctx.pg, &svc).await?;

    // 1. The dual write. N orders per write path, a crash between the two writes every k-th:
    //    commit-then-publish loses events, publish-then-commit invents them, the outbox
    //    (order + event row in one transaction, a relay afterwards) does neither.
    let dual = scenarios::dual_write(ctx, &svc, shape.dual_orders, shape.dual_crash_every).await?;

    // 2. The outbox under write load. First healthy, for the relay lag (outbox insert →
    //    consumer received). Then with relays dying after publish and before marking sent,
    //    and the consumer dying after commit and before XACK: nothing is lost, some events
    //    arrive twice, and the inbox keeps the pick list free of duplicates (a consumer
    //    without one is not).
    let delivery = scenarios::delivery(
        ctx,
        &svc,
        shape.relay_crash_every,
        shape.consumer_crash_every,
    )
    .await?;

    // 3. The relay pitfall. A relay that reads `seq > last_seen` skips rows whose
    //    transaction commits after a later seq: forced once with an open transaction, then
    //    counted under real concurrent writes, beside the claiming relay on the same rows.
    let pitfall = scenarios::pitfall(ctx, &svc).await?;

    // 4. The saga. Orders arrive over HTTP at a steady rate (the saga's latency), then a
    //    flash sale puts hundreds in flight at once. Some run out of stock, some cards are
    //    declined, some customers cancel; the orchestrator, a relay and the payments
    //    consumer crash along the way. At the end the auditor checks the invariants across
    //    the three services.
    let saga = scenarios::saga(ctx, &svc).await?;

    svc.close().await;
    let results = Results {
        shape,
        dual,
        delivery,
        pitfall,
        saga,
    };
    Ok(crate::report::build(ctx, title, &results))
}
