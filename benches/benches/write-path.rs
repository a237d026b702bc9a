//! Bench for the write-path lab (being built).

fn main() {}
