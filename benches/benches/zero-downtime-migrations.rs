//! Bench for the zero-downtime-migrations lab (being built).

fn main() {}
