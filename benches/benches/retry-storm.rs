//! Bench for the retry-storm lab (being built).

fn main() {}
