//! `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`, parsed into the numbers a lab quotes: the
//! access path (node type, index), rows examined vs returned, buffers, heap fetches, time.
//!
//! ANALYZE really runs the statement: wrap data-changing statements in a transaction you
//! roll back.

use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;

/// One plan node, with the actual (not estimated) numbers.
#[derive(Debug, Clone, Serialize)]
pub struct PlanNode {
    pub node_type: String,
    pub relation: Option<String>,
    pub index: Option<String>,
    /// Rows per loop, as Postgres reports them.
    pub actual_rows: f64,
    pub loops: f64,
    pub rows_removed_by_filter: f64,
    pub rows_removed_by_index_recheck: f64,
    /// Buffers are cumulative: a node's count includes its children's.
    pub shared_hit: u64,
    pub shared_read: u64,
    /// Index Only Scan: rows it had to check in the heap (visibility map not all-visible).
    pub heap_fetches: Option<u64>,
    pub children: Vec<PlanNode>,
}

impl PlanNode {
    fn from_json(v: &Value) -> Self {
        let f = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let u = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Self {
            node_type: s("Node Type").unwrap_or_default(),
            relation: s("Relation Name"),
            index: s("Index Name"),
            actual_rows: f("Actual Rows"),
            loops: f("Actual Loops"),
            rows_removed_by_filter: f("Rows Removed by Filter"),
            rows_removed_by_index_recheck: f("Rows Removed by Index Recheck"),
            shared_hit: u("Shared Hit Blocks"),
            shared_read: u("Shared Read Blocks"),
            heap_fetches: v.get("Heap Fetches").and_then(Value::as_u64),
            children: v
                .get("Plans")
                .and_then(Value::as_array)
                .map(|ps| ps.iter().map(Self::from_json).collect())
                .unwrap_or_default(),
        }
    }

    fn walk<'a>(&'a self, out: &mut Vec<&'a PlanNode>) {
        out.push(self);
        for c in &self.children {
            c.walk(out);
        }
    }

    /// Is this node a way of reading a table (Seq Scan, Index Scan, Bitmap Heap Scan ...)?
    pub fn is_scan(&self) -> bool {
        self.node_type.ends_with("Scan") && self.node_type != "Subquery Scan"
    }
}

/// A whole analysed plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub root: PlanNode,
    pub planning_ms: f64,
    pub execution_ms: f64,
}

impl Plan {
    /// Parse the single JSON value `EXPLAIN (FORMAT JSON)` returns.
    pub fn from_json(v: &Value) -> Option<Self> {
        let top = v.as_array()?.first()?;
        Some(Self {
            root: PlanNode::from_json(top.get("Plan")?),
            planning_ms: top
                .get("Planning Time")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            execution_ms: top
                .get("Execution Time")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
        })
    }

    /// Every node, parents before children.
    pub fn nodes(&self) -> Vec<&PlanNode> {
        let mut out = Vec::new();
        self.root.walk(&mut out);
        out
    }

    pub fn node_types(&self) -> Vec<&str> {
        self.nodes()
            .into_iter()
            .map(|n| n.node_type.as_str())
            .collect()
    }

    pub fn has_node(&self, node_type: &str) -> bool {
        self.nodes().iter().any(|n| n.node_type == node_type)
    }

    /// The scan nodes (how tables were read).
    pub fn scans(&self) -> Vec<&PlanNode> {
        self.nodes().into_iter().filter(|n| n.is_scan()).collect()
    }

    /// The first scan node's type, e.g. "Index Only Scan" — the access path, in one word.
    pub fn access_path(&self) -> &str {
        self.scans()
            .first()
            .map(|n| n.node_type.as_str())
            .unwrap_or("")
    }

    /// The first index any node used.
    pub fn index_used(&self) -> Option<&str> {
        self.nodes().into_iter().find_map(|n| n.index.as_deref())
    }

    /// Shared buffers touched by the whole statement (hit + read, from the root).
    pub fn buffers(&self) -> u64 {
        self.root.shared_hit + self.root.shared_read
    }

    pub fn shared_hit(&self) -> u64 {
        self.root.shared_hit
    }

    pub fn shared_read(&self) -> u64 {
        self.root.shared_read
    }

    pub fn heap_fetches(&self) -> u64 {
        self.nodes().iter().filter_map(|n| n.heap_fetches).sum()
    }

    /// Rows the scans looked at: what they produced plus what their filters threw away.
    /// A Bitmap Index Scan only collects row pointers for the Bitmap Heap Scan above it,
    /// which reports the rows themselves; counting both would count each row twice. (An
    /// index scan's Index Cond skips non-matching entries without counting them, e.g.
    /// other tenants' entries in a wrong-order index: those show up in buffers, not here.)
    pub fn rows_examined(&self) -> u64 {
        self.scans()
            .iter()
            .filter(|n| n.node_type != "Bitmap Index Scan")
            .map(|n| {
                ((n.actual_rows + n.rows_removed_by_filter + n.rows_removed_by_index_recheck)
                    * n.loops.max(1.0)) as u64
            })
            .sum()
    }

    pub fn rows_removed_by_filter(&self) -> u64 {
        self.nodes()
            .iter()
            .map(|n| (n.rows_removed_by_filter * n.loops.max(1.0)) as u64)
            .sum()
    }

    /// Rows the statement returned.
    pub fn rows_returned(&self) -> u64 {
        (self.root.actual_rows * self.root.loops.max(1.0)) as u64
    }

    /// "Index Only Scan using invoices_tenant_created_idx on invoices"
    pub fn describe_access(&self) -> String {
        match self.scans().first() {
            Some(n) => {
                let mut s = n.node_type.clone();
                if let Some(i) = &n.index {
                    s.push_str(&format!(" using {i}"));
                }
                if let Some(r) = &n.relation {
                    s.push_str(&format!(" on {r}"));
                }
                s
            }
            None => self.root.node_type.clone(),
        }
    }
}

/// Run `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) <sql>` with the binds `bind` adds.
///
/// ```no_run
/// # async fn f(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
/// let plan = labkit::explain::analyze(&pool, "SELECT * FROM t WHERE id = $1", |q| q.bind(7_i64)).await?;
/// println!("{} — {} buffers", plan.describe_access(), plan.buffers());
/// # Ok(()) }
/// ```
pub async fn analyze<'q, 'c, E>(
    executor: E,
    sql: &str,
    bind: impl FnOnce(Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments>,
) -> Result<Plan, sqlx::Error>
where
    E: sqlx::PgExecutor<'c>,
{
    use sqlx::Row;
    let text = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}");
    let row = bind(sqlx::query(sqlx::AssertSqlSafe(text)))
        .fetch_one(executor)
        .await?;
    let v: Value = row.try_get(0)?;
    Plan::from_json(&v).ok_or_else(|| sqlx::Error::Protocol("unexpected EXPLAIN JSON shape".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_index_only_scan_plan() {
        let v: Value = serde_json::from_str(
            r#"[{"Plan": {"Node Type": "Limit", "Actual Rows": 10, "Actual Loops": 1,
                 "Shared Hit Blocks": 4, "Shared Read Blocks": 1,
                 "Plans": [{"Node Type": "Index Only Scan", "Index Name": "i", "Relation Name": "t",
                            "Actual Rows": 10, "Actual Loops": 1, "Heap Fetches": 3,
                            "Rows Removed by Filter": 2,
                            "Shared Hit Blocks": 4, "Shared Read Blocks": 1}]},
                 "Planning Time": 0.1, "Execution Time": 0.2}]"#,
        )
        .unwrap();
        let p = Plan::from_json(&v).unwrap();
        assert_eq!(p.node_types(), vec!["Limit", "Index Only Scan"]);
        assert_eq!(p.access_path(), "Index Only Scan");
        assert_eq!(p.index_used(), Some("i"));
        assert_eq!(p.buffers(), 5);
        assert_eq!(p.heap_fetches(), 3);
        assert_eq!(p.rows_examined(), 12);
        assert_eq!(p.rows_returned(), 10);
        assert_eq!(p.describe_access(), "Index Only Scan using i on t");
    }
}
