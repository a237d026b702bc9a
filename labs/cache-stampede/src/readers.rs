//! The crowd: C readers, each reading, pausing a little (a person refreshing a dashboard, a
//! service polling), and reading again, with every read's start, latency and outcome kept.
//!
//! labkit's `closed_loop` has no think time and keeps only ok/error per sample; the
//! scenarios here need "what was served" per read (hit, stale, fell back, which value) to
//! count stale reads and staleness. Percentiles still come from labkit's HDR [`Recorder`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use labkit::{LatencySummary, Recorder};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// How the crowd behaves.
#[derive(Debug, Clone, Copy)]
pub struct Crowd {
    pub readers: usize,
    /// Readers stop starting new reads after this long (reads in flight finish).
    pub duration: Duration,
    /// Mean pause between one reader's reads, jittered uniformly in [0.5, 1.5] × think.
    pub think: Duration,
    pub seed: u64,
}

/// One read.
#[derive(Debug, Clone, Copy)]
pub struct Sample<O> {
    /// Start, from the crowd's start.
    pub at: Duration,
    pub latency: Duration,
    /// What the read returned; `None` if it failed.
    pub out: Option<O>,
}

impl<O> Sample<O> {
    pub fn end(&self) -> Duration {
        self.at + self.latency
    }
}

/// Run the crowd. `read(reader)` performs one read; the crowd starts at `start`.
pub async fn run<O, E, R, Fut>(crowd: Crowd, start: Instant, read: R) -> Vec<Sample<O>>
where
    O: Send + 'static,
    E: Send + 'static,
    R: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send + 'static,
{
    let read = Arc::new(read);
    let deadline = start + crowd.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for reader in 0..crowd.readers {
        let read = read.clone();
        let mut rng = StdRng::seed_from_u64(crowd.seed ^ (reader as u64).wrapping_mul(0x9E37_79B9));
        tasks.spawn(async move {
            let mut samples = Vec::new();
            // Stagger the first reads over one think time so readers do not move in lockstep.
            let first = crowd.think.mul_f64(rng.random::<f64>());
            tokio::time::sleep_until((start + first).into()).await;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let out = read(reader).await.ok();
                samples.push(Sample {
                    at: t0 - start,
                    latency: t0.elapsed(),
                    out,
                });
                let pause = crowd.think.mul_f64(rng.random_range(0.5..1.5));
                tokio::time::sleep(pause).await;
            }
            samples
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("reader task panicked"));
    }
    all.sort_by_key(|s| s.at);
    all
}

/// Latency summary of the samples that pass `keep` (errors count as errors).
pub fn summary<O>(samples: &[Sample<O>], keep: impl Fn(&Sample<O>) -> bool) -> LatencySummary {
    let mut rec = Recorder::new();
    let mut first: Option<Duration> = None;
    let mut last = Duration::ZERO;
    for s in samples.iter().filter(|s| keep(s)) {
        match s.out {
            Some(_) => rec.record(s.latency),
            None => rec.record_error(),
        }
        first = Some(first.map_or(s.at, |f| f.min(s.at)));
        last = last.max(s.end());
    }
    rec.summary(last.saturating_sub(first.unwrap_or_default()))
}

/// p99 latency per time bucket (x in seconds, y in ms), for latency-over-time charts.
pub fn p99_over_time<O>(samples: &[Sample<O>], bucket: Duration) -> Vec<(f64, f64)> {
    let mut buckets: Vec<Recorder> = Vec::new();
    for s in samples.iter().filter(|s| s.out.is_some()) {
        let i = (s.at.as_secs_f64() / bucket.as_secs_f64()) as usize;
        if buckets.len() <= i {
            buckets.resize_with(i + 1, Recorder::new);
        }
        buckets[i].record(s.latency);
    }
    buckets
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.histogram().is_empty())
        .map(|(i, r)| {
            (
                (i as f64 + 0.5) * bucket.as_secs_f64(),
                r.summary(bucket).p99_ms,
            )
        })
        .collect()
}

/// Share of samples per time bucket for which `hit` holds (x in seconds, y in %).
pub fn rate_over_time<O>(
    samples: &[Sample<O>],
    bucket: Duration,
    hit: impl Fn(&O) -> bool,
) -> Vec<(f64, f64)> {
    let mut counts: Vec<(u64, u64)> = Vec::new();
    for s in samples {
        let Some(o) = &s.out else { continue };
        let i = (s.at.as_secs_f64() / bucket.as_secs_f64()) as usize;
        if counts.len() <= i {
            counts.resize(i + 1, (0, 0));
        }
        counts[i].1 += 1;
        if hit(o) {
            counts[i].0 += 1;
        }
    }
    counts
        .iter()
        .enumerate()
        .filter(|(_, (_, n))| *n > 0)
        .map(|(i, (h, n))| {
            (
                (i as f64 + 0.5) * bucket.as_secs_f64(),
                100.0 * *h as f64 / *n as f64,
            )
        })
        .collect()
}
