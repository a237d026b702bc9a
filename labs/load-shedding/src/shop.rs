//! The two endpoints' database work: a critical checkout write and a non-critical read.
//!
//! Both are real Postgres work, sized so the whole service does a few hundred requests a
//! second on two cores: the recommendations read walks about four thousand orders and
//! aggregates them (several ms of CPU in Postgres); the checkout is a four-statement
//! transaction that holds a product's row lock across three round trips — harmless at four
//! connections, a lock convoy at sixty-four (see the pool-size scenario).

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// How many recent buyers of a product "bought together" looks at: the knob that sets the
/// read's cost (200 buyers × ~20 orders each ≈ 4,000 rows).
pub const RECENT_BUYERS: i64 = 200;

/// `POST /checkout` body.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    pub customer_id: i64,
    pub product_id: i64,
    pub qty: i32,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Order {
    pub order_id: i64,
    pub total_cents: i64,
}

#[derive(Debug, Clone, Copy, Serialize, sqlx::FromRow)]
pub struct Recommendation {
    pub product_id: i64,
    pub bought_together: i64,
}

/// What a checkout can end in, besides an order.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("no such product, or not enough stock")]
    Unavailable,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Statements one checkout runs (three, plus the COMMIT).
pub const CHECKOUT_STATEMENTS: u64 = 4;
/// Statements one recommendations read runs.
pub const RECOMMENDATIONS_STATEMENTS: u64 = 1;

/// The critical write: reserve stock, check the customer's recent spend (a velocity check
/// every shop has), record the order — one transaction.
pub async fn checkout(pool: &PgPool, req: CheckoutRequest) -> Result<Order, CheckoutError> {
    let mut tx = pool.begin().await?;
    // Takes the product's row lock until COMMIT.
    let price: Option<i64> = sqlx::query_scalar(
        "UPDATE products SET stock = stock - $2 \
         WHERE id = $1 AND stock >= $2 \
         RETURNING price_cents",
    )
    .bind(req.product_id)
    .bind(i64::from(req.qty))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(price) = price else {
        return Err(CheckoutError::Unavailable);
    };
    let (_recent_orders, _recent_spend): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(total_cents), 0)::bigint FROM orders \
         WHERE customer_id = $1 AND created_at > now() - interval '30 days'",
    )
    .bind(req.customer_id)
    .fetch_one(&mut *tx)
    .await?;
    let total = price * i64::from(req.qty);
    let order_id: i64 = sqlx::query_scalar(
        "INSERT INTO orders (customer_id, product_id, qty, total_cents) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(req.customer_id)
    .bind(req.product_id)
    .bind(req.qty)
    .bind(total)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Order {
        order_id,
        total_cents: total,
    })
}

/// "Customers who bought this also bought": the recent buyers of a product, every order
/// of each of them, counted by product.
pub const RECOMMENDATIONS_SQL: &str = "\
WITH recent_buyers AS (
    SELECT customer_id FROM orders
    WHERE product_id = $1
    ORDER BY created_at DESC
    LIMIT $2
)
SELECT o.product_id, count(*)::bigint AS bought_together
FROM recent_buyers b
JOIN orders o ON o.customer_id = b.customer_id
WHERE o.product_id <> $1
GROUP BY o.product_id
ORDER BY bought_together DESC, o.product_id
LIMIT 5";

/// The non-critical read: [`RECOMMENDATIONS_SQL`].
pub async fn recommendations(
    pool: &PgPool,
    product_id: i64,
) -> Result<Vec<Recommendation>, sqlx::Error> {
    sqlx::query_as(RECOMMENDATIONS_SQL)
        .bind(product_id)
        .bind(RECENT_BUYERS)
        .fetch_all(pool)
        .await
}

/// The plan of one recommendations read (for the report: what "real work" means here).
pub async fn explain_recommendations(
    pool: &PgPool,
    product_id: i64,
) -> Result<labkit::explain::Plan, sqlx::Error> {
    labkit::explain::analyze(pool, RECOMMENDATIONS_SQL, |q| {
        q.bind(product_id).bind(RECENT_BUYERS)
    })
    .await
}
