//! The AWS blog's simulator, ported: a discrete-event model in virtual time, so the lab can
//! put the anchor's own numbers next to the real run's.
//!
//! `aws-samples/aws-arch-backoff-simulator` (`backoff_simulator.py`) models one row with a
//! version, N clients that each read it and write it back with a version check (optimistic
//! concurrency), and a network where every message takes `|Normal(10 ms, 2 ms)|`. A client
//! whose write lost waits one network delay plus its backoff, then reads again. Backoff
//! `base = 5 ms`, `cap = 2000 ms`; clients 10…50; 100 runs averaged. "Calls" are writes.
//!
//! This port keeps that model and uses the lab's own [`Backoff`] formulas, so the same code
//! that sleeps in the real run draws the simulated waits. It runs at the anchor's parameters
//! ([`SimParams::AWS`]) and at the lab's compressed ones, to check that compressing time kept
//! the orderings (and to say where the real run differs from the model).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::jitter::{Backoff, Strategy};

/// The model's knobs (all times in ms of virtual time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimParams {
    pub base: Duration,
    pub cap: Duration,
    pub net_mean_ms: f64,
    pub net_sd_ms: f64,
}

impl SimParams {
    /// The parameters of the blog's simulator.
    pub const AWS: Self = Self {
        base: Duration::from_millis(5),
        cap: Duration::from_millis(2000),
        net_mean_ms: 10.0,
        net_sd_ms: 2.0,
    };
}

/// Averages over the runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimResult {
    /// Writes issued until every client had succeeded.
    pub calls: f64,
    /// Virtual time until the last client succeeded, ms.
    pub time_ms: f64,
}

#[derive(Debug, Clone, Copy)]
enum Msg {
    /// A read request reaches the server.
    Read,
    /// The read's reply (the version) reaches the client.
    ReadReply(u64),
    /// A write with the version the client read reaches the server.
    Write(u64),
    /// The write's reply reaches the client.
    WriteReply(bool),
}

#[derive(Debug, Clone, Copy)]
struct Event {
    at: f64,
    seq: u64,
    client: usize,
    msg: Msg,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest event goes first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .at
            .total_cmp(&self.at)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// Average calls and time of `runs` simulations of `clients` racing for one row.
pub fn simulate(
    clients: usize,
    strategy: Strategy,
    p: &SimParams,
    runs: u32,
    seed: u64,
) -> SimResult {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut calls, mut time) = (0u64, 0.0f64);
    for _ in 0..runs.max(1) {
        let (c, t) = one_run(clients, strategy, p, &mut rng);
        calls += c;
        time += t;
    }
    let n = f64::from(runs.max(1));
    SimResult {
        calls: calls as f64 / n,
        time_ms: time / n,
    }
}

fn one_run(clients: usize, strategy: Strategy, p: &SimParams, rng: &mut StdRng) -> (u64, f64) {
    let net = |rng: &mut StdRng| normal(rng, p.net_mean_ms, p.net_sd_ms).abs();
    let mut backoffs: Vec<Backoff> = (0..clients)
        .map(|_| Backoff::new(strategy, p.base, p.cap))
        .collect();
    let mut attempts = vec![0u32; clients];
    let mut queue = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BinaryHeap<Event>, at: f64, client: usize, msg: Msg| {
        seq += 1;
        queue.push(Event {
            at,
            seq,
            client,
            msg,
        });
    };
    for c in 0..clients {
        let at = net(rng);
        push(&mut queue, at, c, Msg::Read);
    }
    let (mut version, mut calls, mut now) = (0u64, 0u64, 0.0f64);
    while let Some(ev) = queue.pop() {
        now = ev.at;
        let c = ev.client;
        match ev.msg {
            Msg::Read => push(&mut queue, now + net(rng), c, Msg::ReadReply(version)),
            Msg::ReadReply(v) => push(&mut queue, now + net(rng), c, Msg::Write(v)),
            Msg::Write(v) => {
                calls += 1;
                let won = v == version;
                if won {
                    version += 1;
                }
                push(&mut queue, now + net(rng), c, Msg::WriteReply(won));
            }
            Msg::WriteReply(true) => {}
            Msg::WriteReply(false) => {
                attempts[c] += 1;
                let wait = backoffs[c].next(attempts[c], rng).as_secs_f64() * 1000.0;
                push(&mut queue, now + net(rng) + wait, c, Msg::Read);
            }
        }
    }
    (calls, now)
}

/// A normal draw (Box–Muller), as the simulator's `random.normalvariate`.
fn normal(rng: &mut StdRng, mean: f64, sd: f64) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2: f64 = rng.random();
    mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
