//! Three services, three schemas, three pools: they share no transaction.
//!
//! Each service owns a schema in the run's scratch database and reaches it through its own
//! pool whose connections have `search_path` set to that schema — so the SQL below says
//! `outbox`, not `orders.outbox`, and a service cannot write another's tables in its own
//! transaction (the whole point: no two-phase commit). Separate databases would behave the
//! same; schemas keep the lab to one scratch database. Only the auditor
//! ([`crate::invariants`]) reads across schemas, as a reconciliation job would.
//!
//! Every service has the same messaging tables:
//! - `outbox`, shaped after Debezium's outbox event router (`id uuid`, `aggregatetype`,
//!   `aggregateid`, `type`, `payload jsonb`), plus what a polling relay needs and Debezium does
//!   not (it tails the WAL instead): `seq` (insertion position), `created_at`, `sent_at`;
//! - `inbox`: the message ids a consumer has applied, in the same transaction as the effect;
//! - a statement trigger that `NOTIFY`s `<schema>_outbox`, so relays wake on commit instead of
//!   polling in a tight loop.

use sqlx::PgPool;

use crate::crash::Service;

/// Each service's pool.
#[derive(Debug, Clone)]
pub struct Services {
    pub orders: PgPool,
    pub warehouse: PgPool,
    pub payments: PgPool,
}

impl Services {
    /// One pool per service, each with `search_path` = its schema.
    pub async fn connect(ctx: &labkit::LabCtx, per_service: u32) -> Result<Self, sqlx::Error> {
        let pool = |s: Service| {
            ctx.new_pool_with(
                labkit::pool_options(per_service),
                ctx.connect_options()
                    .options([("search_path", s.schema())])
                    .application_name(s.schema()),
            )
        };
        Ok(Self {
            orders: pool(Service::Orders).await?,
            warehouse: pool(Service::Warehouse).await?,
            payments: pool(Service::Payments).await?,
        })
    }

    pub fn pool(&self, s: Service) -> &PgPool {
        match s {
            Service::Orders => &self.orders,
            Service::Warehouse => &self.warehouse,
            Service::Payments => &self.payments,
        }
    }

    pub async fn close(&self) {
        for s in Service::ALL {
            self.pool(s).close().await;
        }
    }
}

/// The messaging tables every service has (run with that service's `search_path`).
const MESSAGING: &str = r#"
CREATE TABLE outbox (
    id            uuid PRIMARY KEY,
    aggregatetype text NOT NULL,      -- Debezium routes on this: the stream is outbox.event.<aggregatetype>
    aggregateid   text NOT NULL,      -- the aggregate's id (the Kafka message key, for Debezium)
    type          text NOT NULL,      -- OrderPlaced, ReserveStock, PaymentCharged, ...
    payload       jsonb NOT NULL,
    -- not in Debezium's table (it reads commit order from the WAL); a polling relay needs:
    seq           bigserial NOT NULL UNIQUE,  -- insertion position; NOT commit order (the pitfall)
    created_at    timestamptz NOT NULL,       -- the writer's clock, for relay lag
    sent_at       timestamptz                 -- NULL until a relay published the row
);
-- What the relay claims: the unsent rows, oldest first; the index shrinks as rows are sent.
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;

CREATE TABLE inbox (
    message_id  uuid PRIMARY KEY,     -- the outbox id of the producer: the dedupe key
    stream_id   text NOT NULL,        -- the broker's id of the first delivery
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Delivered at COMMIT, once per transaction and channel: relays LISTEN on it.
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
"#;

const ORDERS: &str = r#"
CREATE TABLE orders (
    id               uuid PRIMARY KEY,
    customer_id      bigint NOT NULL,
    sku              text NOT NULL,
    quantity         int NOT NULL CHECK (quantity > 0),
    amount_cents     bigint NOT NULL,
    card             text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'confirmed', 'cancelled')),
    cancel_requested boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The orchestrator's saga log: the current state per saga, and every step it took.
CREATE TABLE saga (
    saga_id     uuid PRIMARY KEY REFERENCES orders (id),   -- one saga per order
    state       text NOT NULL CHECK (state IN
                ('reserving', 'charging', 'refunding', 'releasing', 'confirmed', 'cancelled')),
    reason      text,                                      -- why it was cancelled
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz
);
CREATE INDEX saga_in_flight ON saga (saga_id) WHERE finished_at IS NULL;

CREATE TABLE saga_log (
    saga_id    uuid NOT NULL REFERENCES saga (saga_id),
    step       int NOT NULL,
    state      text NOT NULL,       -- the state after this step
    event      text NOT NULL,       -- what caused it: OrderPlaced, StockReserved, resumed, ...
    by_process text NOT NULL,       -- which orchestrator generation (or the API) wrote it
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (saga_id, step)
);
"#;

const WAREHOUSE: &str = r#"
CREATE TABLE stock (
    sku     text PRIMARY KEY,
    on_hand int NOT NULL CHECK (on_hand >= 0),
    initial int NOT NULL
);

CREATE TABLE reservations (
    order_id    uuid PRIMARY KEY,
    sku         text NOT NULL REFERENCES stock (sku),
    quantity    int NOT NULL,
    status      text NOT NULL CHECK (status IN ('held', 'released')),
    released_at timestamptz
);

-- Every stock change, so "released exactly once" is a count, not a belief.
CREATE TABLE stock_movements (
    order_id uuid NOT NULL,
    sku      text NOT NULL,
    delta    int NOT NULL,
    kind     text NOT NULL CHECK (kind IN ('reserve', 'release')),
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Scenario 2's effect of OrderPlaced: one pick-list line per order, with and without an inbox.
-- No unique constraint on purpose: duplicates must be visible, not turned into errors.
CREATE TABLE pick_list (
    order_id   uuid NOT NULL,
    message_id uuid NOT NULL
);
CREATE TABLE pick_list_no_inbox (
    order_id   uuid NOT NULL,
    message_id uuid NOT NULL
);
"#;

const PAYMENTS: &str = r#"
-- No unique constraint on order_id: a double charge must be countable (the inbox prevents it).
CREATE TABLE charges (
    order_id     uuid NOT NULL,
    amount_cents bigint NOT NULL,
    status       text NOT NULL CHECK (status IN ('charged', 'declined')),
    at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX charges_order ON charges (order_id);

CREATE TABLE refunds (
    order_id     uuid NOT NULL,
    amount_cents bigint NOT NULL,
    at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX refunds_order ON refunds (order_id);
"#;

/// Create the three schemas and their tables (idempotent per scratch database: run once).
pub async fn create(admin: &PgPool, svc: &Services) -> Result<(), sqlx::Error> {
    for s in Service::ALL {
        // Identifiers cannot be bound; these are three fixed names.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {}", s.schema())))
            .execute(admin)
            .await?;
        let own = match s {
            Service::Orders => ORDERS,
            Service::Warehouse => WAREHOUSE,
            Service::Payments => PAYMENTS,
        };
        // Each service runs its own migration on its own pool: unqualified names land in
        // its schema through search_path.
        let mut conn = svc.pool(s).acquire().await?;
        sqlx::raw_sql(MESSAGING).execute(&mut *conn).await?;
        sqlx::raw_sql(own).execute(&mut *conn).await?;
    }
    Ok(())
}

/// A product: what it costs and how many the warehouse holds at the start.
#[derive(Debug, Clone, Copy)]
pub struct Product {
    pub sku: &'static str,
    pub price_cents: i64,
}

/// The catalogue. `rare-vinyl` is the scarce one: its stock runs out under load, so some
/// sagas fail at the reserve step for a real reason.
pub const CATALOGUE: [Product; 3] = [
    Product {
        sku: "book",
        price_cents: 1299,
    },
    Product {
        sku: "lamp",
        price_cents: 4599,
    },
    Product {
        sku: "rare-vinyl",
        price_cents: 9999,
    },
];

pub fn product(sku: &str) -> Option<Product> {
    CATALOGUE.iter().copied().find(|p| p.sku == sku)
}

/// Put `plenty` of `book` and `lamp` and `scarce` of `rare-vinyl` on the warehouse's shelves.
pub async fn stock(warehouse: &PgPool, plenty: i32, scarce: i32) -> Result<(), sqlx::Error> {
    for p in CATALOGUE {
        let n = if p.sku == "rare-vinyl" {
            scarce
        } else {
            plenty
        };
        sqlx::query(
            "INSERT INTO stock (sku, on_hand, initial) VALUES ($1, $2, $2)
             ON CONFLICT (sku) DO UPDATE SET on_hand = $2, initial = $2",
        )
        .bind(p.sku)
        .bind(n)
        .execute(warehouse)
        .await?;
    }
    Ok(())
}
