//! The auditor: what must hold across the three services once every saga has finished.
//!
//! No service can check these — each sees only its own schema. A reconciliation job that
//! reads all three can, and so does the lab, with one query per invariant on the scratch
//! database (the three schemas side by side).

use sqlx::PgPool;

/// One invariant and how many rows break it.
#[derive(Debug, Clone)]
pub struct Check {
    pub key: &'static str,
    pub rule: &'static str,
    pub violations: i64,
}

const CHECKS: &[(&str, &str, &str)] = &[
    (
        "confirmed_without_payment",
        "no confirmed order without a payment (charged, not refunded)",
        "SELECT count(*) FROM orders.orders o WHERE o.status = 'confirmed'
           AND (NOT EXISTS (SELECT 1 FROM payments.charges c
                            WHERE c.order_id = o.id AND c.status = 'charged')
                OR EXISTS (SELECT 1 FROM payments.refunds r WHERE r.order_id = o.id))",
    ),
    (
        "stock_held_for_cancelled",
        "no stock held for a cancelled order",
        "SELECT count(*) FROM orders.orders o
           JOIN warehouse.reservations r ON r.order_id = o.id
          WHERE o.status = 'cancelled' AND r.status = 'held'",
    ),
    (
        "refund_without_charge",
        "no refund without a charge",
        "SELECT count(*) FROM payments.refunds r WHERE NOT EXISTS
           (SELECT 1 FROM payments.charges c WHERE c.order_id = r.order_id AND c.status = 'charged')",
    ),
    (
        "money_kept_for_cancelled",
        "no cancelled order keeps the customer's money",
        "SELECT count(*) FROM orders.orders o WHERE o.status = 'cancelled'
           AND (SELECT count(*) FROM payments.charges c WHERE c.order_id = o.id AND c.status = 'charged')
             > (SELECT count(*) FROM payments.refunds r WHERE r.order_id = o.id)",
    ),
    (
        "charged_twice",
        "no order charged twice",
        "SELECT count(*) FROM (SELECT order_id FROM payments.charges
           GROUP BY order_id HAVING count(*) > 1) d",
    ),
    (
        "compensated_twice",
        "no compensation ran twice (refund or stock release)",
        "SELECT (SELECT count(*) FROM (SELECT order_id FROM payments.refunds
                   GROUP BY order_id HAVING count(*) > 1) r)
              + (SELECT count(*) FROM (SELECT order_id FROM warehouse.stock_movements
                   WHERE kind = 'release' GROUP BY order_id HAVING count(*) > 1) s)",
    ),
    (
        "stock_not_conserved",
        "stock on the shelf + held = what the warehouse started with",
        "SELECT count(*) FROM warehouse.stock s WHERE s.initial <> s.on_hand
           + coalesce((SELECT sum(quantity) FROM warehouse.reservations r
                       WHERE r.sku = s.sku AND r.status = 'held'), 0)",
    ),
    (
        "saga_unfinished",
        "every saga finished (confirmed or cancelled)",
        "SELECT count(*) FROM orders.saga WHERE finished_at IS NULL",
    ),
];

/// Run every check.
pub async fn audit(db: &PgPool) -> Result<Vec<Check>, sqlx::Error> {
    let mut out = Vec::new();
    for (key, rule, sql) in CHECKS {
        let violations: i64 = sqlx::query_scalar(*sql).fetch_one(db).await?;
        out.push(Check {
            key,
            rule,
            violations,
        });
    }
    Ok(out)
}

pub fn total(checks: &[Check]) -> i64 {
    checks.iter().map(|c| c.violations).sum()
}

/// What the compensations did, counted from their effects.
#[derive(Debug, Clone, Copy, Default)]
pub struct Compensations {
    pub stock_releases: i64,
    pub refunds: i64,
}

pub async fn compensations(db: &PgPool) -> Result<Compensations, sqlx::Error> {
    let (stock_releases, refunds): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM warehouse.stock_movements WHERE kind = 'release'),
                (SELECT count(*) FROM payments.refunds)",
    )
    .fetch_one(db)
    .await?;
    Ok(Compensations {
        stock_releases,
        refunds,
    })
}
