//! The measurements: each scenario sets up its own instances and keys, runs, and returns
//! numbers; `lib.rs` turns them into the report.

pub mod eviction;
pub mod hot_key;
pub mod invalidation;
pub mod prefix_change;
pub mod redis_down;
