//! Scenario 3b: the expression-index rule — an index is used only by a query that repeats its
//! expression, configuration name included.
//!
//! `to_tsvector(description)` (one argument) reads `default_text_search_config`, a setting,
//! so it is only `STABLE`, and Postgres refuses to index it (SQLSTATE 42P17, "functions in
//! index expression must be marked IMMUTABLE"). The index has to name the configuration:
//! `gin (to_tsvector('english', description))`. And then a query written with the one-argument
//! form does not use it, even when the default configuration *is* english: the planner
//! matches expressions, not meanings. A stored generated column (or the migration's
//! trigger-filled column) sidesteps the rule: queries name the column.
//!
//! Measured on `orders_rule`, a copy of the first orders with the `search` column, so the
//! main table does not pay for two more GIN indexes.

use labkit::explain::Plan;
use sqlx::PgPool;

use crate::search;

/// One-argument: the form the index cannot have.
const ONE_ARG: &str = "SELECT id FROM orders_rule \
     WHERE to_tsvector(description) @@ websearch_to_tsquery('english', $1)";
const TWO_ARG: &str = "SELECT id FROM orders_rule \
     WHERE to_tsvector('english', description) @@ websearch_to_tsquery('english', $1)";
const COLUMN: &str = "SELECT id FROM orders_rule \
     WHERE search @@ websearch_to_tsquery('english', $1)";
/// Ranking through the expression index recomputes `to_tsvector` for every matching row.
const RANKED_EXPRESSION: &str = "SELECT id FROM orders_rule, websearch_to_tsquery('english', $1) AS q \
     WHERE to_tsvector('english', description) @@ q \
     ORDER BY ts_rank(to_tsvector('english', description), q) DESC LIMIT 20";
/// Ranking through the stored column reads the tsvector it already has.
const RANKED_COLUMN: &str = "SELECT id FROM orders_rule, websearch_to_tsquery('english', $1) AS q \
     WHERE search @@ q ORDER BY ts_rank(search, q) DESC LIMIT 20";

pub const TWO_ARG_INDEX: &str = "orders_rule_english_idx";
pub const COLUMN_INDEX: &str = "orders_rule_search_idx";

/// What the rule looked like on this server.
#[derive(Debug, Clone)]
pub struct Rule {
    pub rows: i64,
    /// `CREATE INDEX … (to_tsvector(description))`: the SQLSTATE and message it failed with,
    /// or `None` if this server accepted it.
    pub one_arg_index_error: Option<(String, String)>,
    /// The one-argument query, with the two-argument index in place.
    pub one_arg_query: Plan,
    pub two_arg_query: Plan,
    pub column_query: Plan,
    /// The common term, ranked: through the expression, through the column.
    pub ranked_expression: Plan,
    pub ranked_column: Plan,
}

impl Rule {
    pub fn one_arg_index_used(&self) -> bool {
        self.one_arg_query.index_used().is_some()
    }
}

/// Copy `rows` orders into `orders_rule` and show the rule.
pub async fn measure(pool: &PgPool, rows: i64) -> Result<Rule, sqlx::Error> {
    sqlx::query(
        "CREATE TABLE orders_rule (id bigint PRIMARY KEY, description text, search tsvector)",
    )
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO orders_rule SELECT id, description, search FROM orders \
         ORDER BY id LIMIT $1",
    )
    .bind(rows)
    .execute(pool)
    .await?;
    let one_arg_index_error = match sqlx::query(
        "CREATE INDEX orders_rule_one_arg_idx ON orders_rule USING gin (to_tsvector(description))",
    )
    .execute(pool)
    .await
    {
        Ok(_) => None,
        Err(sqlx::Error::Database(e)) => Some((
            e.code().map(|c| c.to_string()).unwrap_or_default(),
            e.message().to_string(),
        )),
        Err(e) => return Err(e),
    };
    sqlx::raw_sql(
        "CREATE INDEX orders_rule_english_idx ON orders_rule \
             USING gin (to_tsvector('english', description)); \
         CREATE INDEX orders_rule_search_idx ON orders_rule USING gin (search); \
         ANALYZE orders_rule",
    )
    .execute(pool)
    .await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM orders_rule")
        .fetch_one(pool)
        .await?;

    let rare = search::RARE.text;
    let common = search::COMMON.text;
    // The one-argument query with the default configuration set to english, so both
    // expressions mean the same thing and only their spelling differs.
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL default_text_search_config = 'pg_catalog.english'")
        .execute(&mut *tx)
        .await?;
    let one_arg_query = labkit::explain::analyze(&mut *tx, ONE_ARG, |q| q.bind(rare)).await?;
    tx.rollback().await?;
    let two_arg_query = labkit::explain::analyze(pool, TWO_ARG, |q| q.bind(rare)).await?;
    let column_query = labkit::explain::analyze(pool, COLUMN, |q| q.bind(rare)).await?;
    // Warm both before timing either.
    labkit::explain::analyze(pool, RANKED_EXPRESSION, |q| q.bind(common)).await?;
    labkit::explain::analyze(pool, RANKED_COLUMN, |q| q.bind(common)).await?;
    let ranked_expression =
        labkit::explain::analyze(pool, RANKED_EXPRESSION, |q| q.bind(common)).await?;
    let ranked_column = labkit::explain::analyze(pool, RANKED_COLUMN, |q| q.bind(common)).await?;
    Ok(Rule {
        rows,
        one_arg_index_error,
        one_arg_query,
        two_arg_query,
        column_query,
        ranked_expression,
        ranked_column,
    })
}
