//! Bench for the load-shedding lab (being built).

fn main() {}
