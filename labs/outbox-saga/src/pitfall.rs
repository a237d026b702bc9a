//! The relay pitfall, forced: two transactions commit out of `seq` order and the `seq >
//! last_seen` relay skips the first one for good; the claiming relay does not.
//!
//! The interleaving is not timed: transaction 1 is simply held open (its connection is in
//! our hand, uncommitted) while transaction 2 commits and both relays poll. Then it commits
//! and both relays poll again. Under real write load the same thing happens on its own
//! whenever a transaction takes its `seq` and commits after a later one — see the scenario
//! in [`crate::scenarios`].

use std::collections::HashSet;

use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::broker::Broker;
use crate::crash::{Crashes, Service};
use crate::orders::{self, NewOrder};
use crate::outbox;
use crate::relay::{CursorRelay, Relay, max_seq};

/// What the forced interleaving showed.
#[derive(Debug, Clone)]
pub struct Forced {
    /// Events committed in the interleaving (2).
    pub events: u64,
    pub cursor_missed: u64,
    pub fixed_missed: u64,
    /// The Hermitage-style transcript: (who, what happened).
    pub transcript: Vec<(String, String)>,
}

/// Run the interleaving on the orders outbox. The two relays publish under
/// `<prefix>cursor:` and `<prefix>claim:` so their deliveries can be told apart.
pub async fn forced(
    orders_pool: &PgPool,
    redis: &redis::Client,
    prefix: &str,
) -> anyhow::Result<Forced> {
    let mut cursor_broker = Broker::connect(redis, &format!("{prefix}cursor:")).await?;
    let mut claim_broker = Broker::connect(redis, &format!("{prefix}claim:")).await?;
    let start = max_seq(orders_pool).await?;
    let mut cursor = CursorRelay::new(orders_pool.clone(), cursor_broker.clone(), start, 100);
    let mut claim = Relay::new(
        Service::Orders,
        orders_pool.clone(),
        claim_broker.clone(),
        std::sync::Arc::new(Crashes::new()),
        100,
    );
    let mut log = Vec::new();
    let mut say = |who: &str, what: String| log.push((who.to_string(), what));

    let (o1, o2) = (
        NewOrder::new(1, "book", 1, "tok_visa"),
        NewOrder::new(2, "book", 1, "tok_visa"),
    );
    // t1 takes the lower seq and stays open.
    let mut t1 = orders_pool.begin().await?;
    orders::insert_order(&mut t1, &o1).await?;
    outbox::write(&mut t1, &o1.placed_event()).await?;
    let seq1 = seq_of(&mut t1, o1.id).await?;
    say(
        "t1",
        format!("BEGIN; INSERT order + outbox row (seq {seq1}) — stays open"),
    );
    // t2 takes the higher seq and commits first.
    let mut t2 = orders_pool.begin().await?;
    orders::insert_order(&mut t2, &o2).await?;
    outbox::write(&mut t2, &o2.placed_event()).await?;
    let seq2 = seq_of(&mut t2, o2.id).await?;
    t2.commit().await?;
    say(
        "t2",
        format!("BEGIN; INSERT order + outbox row (seq {seq2}); COMMIT"),
    );

    let n = cursor.pump_once().await?;
    say(
        "cursor relay",
        format!(
            "SELECT … WHERE seq > {start} → {n} row (seq {seq2}); last_seen = {}",
            cursor.last_seen
        ),
    );
    let n = claim.pump_once().await?;
    say(
        "claim relay",
        format!(
            "SELECT … WHERE sent_at IS NULL FOR UPDATE SKIP LOCKED → {n} row (seq {seq2}); marked sent"
        ),
    );
    t1.commit().await?;
    say(
        "t1",
        format!("COMMIT — seq {seq1} is visible now, below the cursor"),
    );
    let before = cursor.last_seen;
    let n = cursor.pump_once().await?;
    say(
        "cursor relay",
        format!("SELECT … WHERE seq > {before} → {n} rows: seq {seq1} is never published"),
    );
    let n = claim.pump_once().await?;
    say(
        "claim relay",
        format!(
            "SELECT … WHERE sent_at IS NULL … → {n} row (seq {seq1}): still unsent, so published"
        ),
    );

    let want: HashSet<Uuid> = [o1.id, o2.id].into_iter().collect();
    let cursor_missed = missed(&want, &mut cursor_broker).await?;
    let fixed_missed = missed(&want, &mut claim_broker).await?;
    Ok(Forced {
        events: 2,
        cursor_missed,
        fixed_missed,
        transcript: log,
    })
}

async fn seq_of(conn: &mut sqlx::PgConnection, order_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT seq FROM outbox WHERE aggregateid = $1")
        .bind(order_id.to_string())
        .fetch_one(conn)
        .await?
        .try_get("seq")
}

/// How many of the orders in `want` have no `OrderPlaced` on the broker's order stream.
pub async fn missed(want: &HashSet<Uuid>, broker: &mut Broker) -> anyhow::Result<u64> {
    let seen: HashSet<Uuid> = broker
        .all(orders::ORDER_EVENTS)
        .await?
        .into_iter()
        .filter_map(|d| d.message.aggregateid.parse().ok())
        .collect();
    Ok(want.difference(&seen).count() as u64)
}
