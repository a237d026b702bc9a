//! Bench for the full-text-search lab (being built).

fn main() {}
