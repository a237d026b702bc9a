//! The optional filters a page request may carry (`status`, `tenant_id`), parsed once at the
//! boundary. A cursor remembers the filter it was issued for (see `cursor.rs`).

use std::fmt;
use std::str::FromStr;

/// An order's status. Unknown strings are rejected at the boundary, not sent to SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Pending,
    Paid,
    Shipped,
    Refunded,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::Paid,
        Status::Shipped,
        Status::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Paid => "paid",
            Status::Shipped => "shipped",
            Status::Refunded => "refunded",
        }
    }

    /// A stable one-byte code for the cursor (0 means "no status filter").
    pub(crate) fn code(self) -> u8 {
        match self {
            Status::Pending => 1,
            Status::Paid => 2,
            Status::Shipped => 3,
            Status::Refunded => 4,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `status=...` was not one of the four statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status must be one of pending, paid, shipped, refunded")]
pub struct UnknownStatus;

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or(UnknownStatus)
    }
}

/// Which orders a listing covers. Each combination has its own SQL and its own index
/// (see `offset.rs`, `keyset.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Filter {
    pub status: Option<Status>,
    pub tenant_id: Option<i32>,
}

impl Filter {
    /// Every order.
    pub const ALL: Filter = Filter {
        status: None,
        tenant_id: None,
    };

    pub fn status(status: Status) -> Self {
        Self {
            status: Some(status),
            tenant_id: None,
        }
    }

    pub fn tenant(tenant_id: i32) -> Self {
        Self {
            status: None,
            tenant_id: Some(tenant_id),
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.status, self.tenant_id) {
            (None, None) => f.write_str("all orders"),
            (Some(s), None) => write!(f, "status={s}"),
            (None, Some(t)) => write!(f, "tenant_id={t}"),
            (Some(s), Some(t)) => write!(f, "tenant_id={t}&status={s}"),
        }
    }
}

/// One statement written out once per filter shape. Four plain statements instead of one
/// `WHERE ($1 IS NULL OR status = $1)`: with the catch-all form a cached generic plan cannot
/// use the `(status, created_at, id)` index, and the page becomes a scan with a filter.
#[derive(Debug)]
pub(crate) struct PerFilter {
    pub all: &'static str,
    pub by_status: &'static str,
    pub by_tenant: &'static str,
    pub by_tenant_status: &'static str,
}

impl Filter {
    pub(crate) fn sql(&self, v: &PerFilter) -> &'static str {
        match (self.status, self.tenant_id) {
            (None, None) => v.all,
            (Some(_), None) => v.by_status,
            (None, Some(_)) => v.by_tenant,
            (Some(_), Some(_)) => v.by_tenant_status,
        }
    }
}

/// Bind the filter's values after a statement's own parameters: tenant first, then status,
/// matching the numbering in every [`PerFilter`] statement.
macro_rules! bind_filter {
    ($query:expr, $filter:expr) => {{
        let mut q = $query;
        if let Some(tenant_id) = $filter.tenant_id {
            q = q.bind(tenant_id);
        }
        if let Some(status) = $filter.status {
            q = q.bind(status.as_str());
        }
        q
    }};
}
pub(crate) use bind_filter;
