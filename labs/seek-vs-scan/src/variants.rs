//! The index variants, one at a time, on the same table and the same query.
//!
//! Only the variant's own index exists while it is measured (plus the primary key, which
//! the query cannot use), so the plan is the planner's answer to *that* index and nothing
//! else. The order matters once: VACUUM fills the visibility map and nothing here empties
//! it again, so "covering, before VACUUM" must come before "covering, after VACUUM" —
//! [`Variant::ALL`] is in that order.

use std::time::Duration;

use sqlx::PgPool;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// No index: every row of the table is read and filtered.
    NoIndex,
    /// `(created_at, tenant_id)`: range first. The scan walks every tenant's invoices in
    /// the window and throws away the other tenants' entries.
    WrongOrder,
    /// `(tenant_id)`: finds the tenant, then reads *all* its rows from the heap to filter
    /// on the date and sort — a year of a big tenant to return a week.
    TenantOnly,
    /// `(tenant_id, created_at DESC)`: equality first, range second. The scan starts at
    /// (tenant, newest) and stops at the window's edge, already in order.
    Composite,
    /// The composite plus `INCLUDE (id, amount_cents)`, right after the load: the index
    /// holds every column the query needs, but the visibility map is empty, so each row
    /// is still checked in the heap.
    CoveringBeforeVacuum,
    /// The same index after `VACUUM`: pages are all-visible, the heap is skipped.
    CoveringAfterVacuum,
}

/// (index name, DROP statement) for every index a variant may leave behind.
const VARIANT_INDEXES: [(&str, &str); 4] = [
    (
        "invoices_created_tenant_idx",
        "DROP INDEX IF EXISTS invoices_created_tenant_idx",
    ),
    (
        "invoices_tenant_idx",
        "DROP INDEX IF EXISTS invoices_tenant_idx",
    ),
    (
        "invoices_tenant_created_idx",
        "DROP INDEX IF EXISTS invoices_tenant_created_idx",
    ),
    (
        "invoices_tenant_created_incl_idx",
        "DROP INDEX IF EXISTS invoices_tenant_created_incl_idx",
    ),
];

impl Variant {
    /// Measurement order (see the module docs).
    pub const ALL: [Variant; 6] = [
        Variant::NoIndex,
        Variant::WrongOrder,
        Variant::TenantOnly,
        Variant::Composite,
        Variant::CoveringBeforeVacuum,
        Variant::CoveringAfterVacuum,
    ];

    /// Finding-key stem: `<key>_p95_ms`, `buffers_<key>`.
    pub fn key(self) -> &'static str {
        match self {
            Variant::NoIndex => "seq_scan",
            Variant::WrongOrder => "wrong_order",
            Variant::TenantOnly => "tenant_only",
            Variant::Composite => "composite",
            Variant::CoveringBeforeVacuum => "covering_before_vacuum",
            Variant::CoveringAfterVacuum => "covering",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Variant::NoIndex => "no index",
            Variant::WrongOrder => "(created_at, tenant_id)",
            Variant::TenantOnly => "(tenant_id)",
            Variant::Composite => "(tenant_id, created_at DESC)",
            Variant::CoveringBeforeVacuum => "… INCLUDE (id, amount_cents), before VACUUM",
            Variant::CoveringAfterVacuum => "… INCLUDE (id, amount_cents), after VACUUM",
        }
    }

    pub fn index_name(self) -> Option<&'static str> {
        match self {
            Variant::NoIndex => None,
            Variant::WrongOrder => Some("invoices_created_tenant_idx"),
            Variant::TenantOnly => Some("invoices_tenant_idx"),
            Variant::Composite => Some("invoices_tenant_created_idx"),
            Variant::CoveringBeforeVacuum | Variant::CoveringAfterVacuum => {
                Some("invoices_tenant_created_incl_idx")
            }
        }
    }

    fn create_index(self) -> Option<&'static str> {
        match self {
            Variant::NoIndex => None,
            Variant::WrongOrder => Some(
                "CREATE INDEX IF NOT EXISTS invoices_created_tenant_idx \
                 ON invoices (created_at, tenant_id)",
            ),
            Variant::TenantOnly => Some(
                "CREATE INDEX IF NOT EXISTS invoices_tenant_idx \
                 ON invoices (tenant_id)",
            ),
            Variant::Composite => Some(
                "CREATE INDEX IF NOT EXISTS invoices_tenant_created_idx \
                 ON invoices (tenant_id, created_at DESC)",
            ),
            Variant::CoveringBeforeVacuum | Variant::CoveringAfterVacuum => Some(
                "CREATE INDEX IF NOT EXISTS invoices_tenant_created_incl_idx \
                 ON invoices (tenant_id, created_at DESC) INCLUDE (id, amount_cents)",
            ),
        }
    }
}

/// What setting up a variant cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Applied {
    pub index_build: Duration,
    pub vacuum: Duration,
}

/// Leave exactly this variant's index on `invoices` (building it if needed), and VACUUM
/// for [`Variant::CoveringAfterVacuum`].
pub async fn apply(pool: &PgPool, variant: Variant) -> Result<Applied, sqlx::Error> {
    for (name, drop) in VARIANT_INDEXES {
        if Some(name) != variant.index_name() {
            sqlx::query(drop).execute(pool).await?;
        }
    }
    let mut applied = Applied::default();
    if let Some(create) = variant.create_index() {
        applied.index_build = labkit::seed::step(pool, variant.label(), create).await?;
    }
    if variant == Variant::CoveringAfterVacuum {
        // VACUUM (not ANALYZE alone) sets the all-visible bits an Index Only Scan checks
        // before it may skip the heap, and updates pg_class.relallvisible, which the
        // planner reads to price the index-only scan.
        applied.vacuum = labkit::seed::step(pool, "vacuum", "VACUUM invoices").await?;
    }
    Ok(applied)
}
