//! Bench for the replica-lag lab (being built).

fn main() {}
