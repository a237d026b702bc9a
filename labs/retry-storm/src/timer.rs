//! A precise sleep for the backoff race.
//!
//! tokio's timer wheel fires on 1 ms ticks: every sleeper whose deadline falls within the same
//! millisecond wakes at the same instant. In a race whose contention window is ~4 ms, that
//! lines clients up on shared ticks and manufactures collisions no real network would — the
//! first version of this lab measured exactly that (full jitter making *more* calls than the
//! model, exponential without jitter fewer). This timer keeps its own deadlines on one OS
//! thread that waits on a condition variable until the earliest one (tens of microseconds of
//! error, not a millisecond) and wakes each sleeper through a oneshot channel.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

struct Sleeper {
    due: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Sleeper {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Sleeper {}
impl PartialOrd for Sleeper {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Sleeper {
    /// Reversed: the earliest deadline on top of the max-heap.
    fn cmp(&self, other: &Self) -> Ordering {
        other.due.cmp(&self.due).then(other.seq.cmp(&self.seq))
    }
}

#[derive(Default)]
struct Queue {
    sleepers: BinaryHeap<Sleeper>,
    seq: u64,
    stop: bool,
}

type Shared = Arc<(Mutex<Queue>, Condvar)>;

/// Stopped (its thread joined) when dropped.
pub struct Timer {
    shared: Shared,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Timer")
    }
}

impl Timer {
    pub fn new() -> Self {
        let shared: Shared = Arc::default();
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("retry-storm-timer".into())
                .spawn(move || run(&shared))
                .expect("spawn the timer thread")
        };
        Self {
            shared,
            thread: Some(thread),
        }
    }

    /// Sleep for `d`, woken within tens of microseconds of the deadline.
    pub async fn sleep(&self, d: Duration) {
        if d.is_zero() {
            return;
        }
        let (wake, woken) = oneshot::channel();
        {
            let (lock, cvar) = &*self.shared;
            let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
            q.seq += 1;
            let seq = q.seq;
            q.sleepers.push(Sleeper {
                due: Instant::now() + d,
                seq,
                wake,
            });
            cvar.notify_one();
        }
        let _ = woken.await;
    }
}

impl Default for Timer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cvar.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared) {
    let (lock, cvar) = &**shared;
    let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if q.stop {
            return;
        }
        let now = Instant::now();
        while q.sleepers.peek().is_some_and(|s| s.due <= now) {
            if let Some(s) = q.sleepers.pop() {
                let _ = s.wake.send(());
            }
        }
        q = match q.sleepers.peek().map(|s| s.due - now) {
            Some(wait) => {
                cvar.wait_timeout(q, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => cvar.wait(q).unwrap_or_else(|e| e.into_inner()),
        };
    }
}
