//! Shared setup for the criterion benches lives in labkit; this crate only holds bench targets.
