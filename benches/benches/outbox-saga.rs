//! Bench for the outbox-saga lab (being built).

fn main() {}
