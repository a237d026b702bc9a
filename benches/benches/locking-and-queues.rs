//! Bench for the locking-and-queues lab (being built).

fn main() {}
