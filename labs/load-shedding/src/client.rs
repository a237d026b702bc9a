//! The client population: real HTTP requests with a client-side timeout, sent by labkit's
//! open-loop driver (or its closed loop, to find capacity), each numbered with a
//! `Request-Id` so its outcome can be joined with the server's [`Ledger`].
//!
//! Goodput is counted here, on the client's side of the wire: a 2xx that arrived within
//! the SLO (and so before the client's timeout), measured from when the request was *due*
//! — a late driver is charged, not forgiven.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use labkit::measure::{Call, Schedule};
use labkit::{Bound, ClosedLoop, LatencySummary, LoadResult, OpenLoop, Recorder};
use reqwest::StatusCode;

use crate::app::REQUEST_TIMEOUT_MS;
use crate::ledger::{Ledger, REJECTED_BY, REQUEST_ID, ServerOutcome, Stats};
use crate::schema::Shape;
use crate::shop::CheckoutRequest;

/// Which endpoint a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Checkout,
    Recommendations,
}

/// The traffic: one request in `CHECKOUT_EVERY` is a checkout (on a skewed product — the
/// sale's best sellers), the rest are recommendation reads (uniform products).
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub seed: u64,
    pub shape: Shape,
}

pub const CHECKOUT_EVERY: u64 = 5;

impl Mix {
    pub fn endpoint(&self, id: u64) -> Endpoint {
        if mix64(self.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)).is_multiple_of(CHECKOUT_EVERY)
        {
            Endpoint::Checkout
        } else {
            Endpoint::Recommendations
        }
    }

    fn uniform(&self, id: u64, stream: u64) -> f64 {
        (mix64(self.seed ^ mix64(id ^ (stream << 56))) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn checkout(&self, id: u64) -> CheckoutRequest {
        let n = self.shape.products as f64;
        CheckoutRequest {
            customer_id: 1 + (self.uniform(id, 1) * self.shape.customers as f64) as i64,
            // P(product ≤ k) = (k/n)^(1/3): the top product takes ~6 % of checkouts.
            product_id: (1 + (n * self.uniform(id, 2).powi(3)) as i64).min(self.shape.products),
            qty: 1,
        }
    }

    pub fn recommendations_for(&self, id: u64) -> i64 {
        1 + (self.uniform(id, 3) * self.shape.products as f64) as i64
    }
}

/// splitmix64's finaliser: a good 64-bit mix for deterministic per-request choices.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How one request ended, for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx, body read.
    Ok,
    /// 503 from the load-shed layer; `retry_after`: the header was there.
    Shed { retry_after: bool },
    /// 503 `deadline_exceeded` from the deadline queue.
    Expired,
    /// Any other status.
    Status(u16),
    /// The client's timeout fired first: it gave up.
    Timeout,
    /// Connection-level failure.
    Failed,
}

#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub id: u64,
    pub endpoint: Endpoint,
    pub outcome: Outcome,
}

/// An HTTP client of the service, with its timeout.
#[derive(Debug, Clone)]
pub struct LoadClient {
    http: reqwest::Client,
    base: String,
    mix: Mix,
    timeout: Duration,
}

impl LoadClient {
    pub fn new(base: String, mix: Mix, timeout: Duration) -> Self {
        Self {
            http: labkit::http::client(),
            base,
            mix,
            timeout,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Send request `id` (its endpoint and arguments follow from the id).
    pub async fn send(&self, id: u64) -> Answer {
        let endpoint = self.mix.endpoint(id);
        let req = match endpoint {
            Endpoint::Checkout => self
                .http
                .post(format!("{}/checkout", self.base))
                .json(&self.mix.checkout(id)),
            Endpoint::Recommendations => self.http.get(format!(
                "{}/recommendations?product_id={}",
                self.base,
                self.mix.recommendations_for(id)
            )),
        };
        let sent = req
            .header(REQUEST_ID, id)
            .header(REQUEST_TIMEOUT_MS, self.timeout.as_millis() as u64)
            .timeout(self.timeout)
            .send()
            .await;
        let outcome = match sent {
            Err(e) if e.is_timeout() => Outcome::Timeout,
            Err(_) => Outcome::Failed,
            Ok(resp) => {
                let status = resp.status();
                let retry_after = resp.headers().contains_key(reqwest::header::RETRY_AFTER);
                let deadline = resp
                    .headers()
                    .get(REJECTED_BY)
                    .is_some_and(|v| v.as_bytes() == b"deadline");
                // Read the body: a response is not received until it is.
                match resp.bytes().await {
                    Err(e) if e.is_timeout() => Outcome::Timeout,
                    Err(_) => Outcome::Failed,
                    Ok(_) if status.is_success() => Outcome::Ok,
                    Ok(_) if status == StatusCode::SERVICE_UNAVAILABLE && deadline => {
                        Outcome::Expired
                    }
                    Ok(_) if status == StatusCode::SERVICE_UNAVAILABLE => {
                        Outcome::Shed { retry_after }
                    }
                    Ok(_) => Outcome::Status(status.as_u16()),
                }
            }
        };
        Answer {
            id,
            endpoint,
            outcome,
        }
    }
}

/// One open-loop step.
#[derive(Debug, Clone)]
pub struct StepPlan {
    pub label: String,
    pub rate: f64,
    pub duration: Duration,
    pub max_in_flight: usize,
    pub slo: Duration,
}

/// Per endpoint: what the clients got.
#[derive(Debug, Clone, Default)]
pub struct EndpointResult {
    pub sent: u64,
    pub ok: u64,
    pub good: u64,
    pub ok_latency: Recorder,
}

impl EndpointResult {
    pub fn success_ratio(&self) -> f64 {
        ratio(self.ok, self.sent)
    }
}

/// One step, both sides of the wire.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub label: String,
    pub offered_rps: f64,
    pub duration: Duration,
    pub schedule: Schedule,
    pub slo: Duration,
    pub sent: u64,
    pub ok: u64,
    /// 2xx within the SLO.
    pub good: u64,
    pub shed: u64,
    pub shed_with_retry_after: u64,
    pub expired: u64,
    pub other_status: u64,
    pub timeouts: u64,
    pub failed: u64,
    /// Latency of the 2xx answers, from when each request was due.
    pub ok_latency: LatencySummary,
    pub by_endpoint: HashMap<Endpoint, EndpointResult>,
    /// The server's counters for the step, including what it did after the clients left.
    pub server: Stats,
    /// Requests the server finished (2xx, SQL run) whose client had already given up.
    pub wasted: u64,
    /// Requests the server dropped at the front of the deadline queue with no SQL.
    pub expired_without_sql: u64,
    /// How long the server kept working after the last client answer.
    pub drain: Duration,
    /// Cores this process (service + driver) used while the clients were sending.
    pub process_cores: Option<f64>,
    pub first_error: Option<String>,
}

impl StepResult {
    pub fn goodput_rps(&self) -> f64 {
        self.good as f64 / self.duration.as_secs_f64()
    }

    pub fn ok_rps(&self) -> f64 {
        self.ok as f64 / self.duration.as_secs_f64()
    }

    pub fn shed_ratio(&self) -> f64 {
        ratio(self.shed + self.expired, self.sent)
    }

    pub fn timeout_ratio(&self) -> f64 {
        ratio(self.timeouts, self.sent)
    }

    /// Of everything the server finished with a 2xx, the share no client was waiting for.
    pub fn wasted_ratio(&self) -> f64 {
        ratio(self.wasted, self.server.completed)
    }

    pub fn endpoint(&self, e: Endpoint) -> EndpointResult {
        self.by_endpoint.get(&e).cloned().unwrap_or_default()
    }
}

pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Offer `plan.rate` requests/s for `plan.duration`, open loop; then wait until the server
/// has finished everything the clients sent (abandoned work included) and join both sides.
pub async fn open_step(client: &LoadClient, ledger: &Ledger, plan: &StepPlan) -> StepResult {
    ledger.take();
    let c = client.clone();
    let cfg = OpenLoop::new(plan.rate, plan.duration)
        .max_in_flight(plan.max_in_flight)
        .label(plan.label.clone())
        .with_timeline();
    let (cpu0, t0) = (process_cpu_s(), Instant::now());
    let run: LoadResult<Answer> = labkit::open_loop(cfg, move |call: Call| {
        let c = c.clone();
        async move { Ok::<_, std::convert::Infallible>(c.send(call.seq).await) }
    })
    .await;
    let clients_done = Instant::now();
    let process_cores = cpu0
        .zip(process_cpu_s())
        .map(|(a, b)| (b - a) / t0.elapsed().as_secs_f64());
    ledger.until_idle().await;
    let drain = clients_done.elapsed();
    let (server, by_id) = ledger.take();
    let schedule = run.schedule.expect("open loop reports its schedule");

    let mut r = StepResult {
        label: plan.label.clone(),
        offered_rps: plan.rate,
        duration: plan.duration,
        schedule,
        slo: plan.slo,
        sent: run.timeline.len() as u64,
        ok: 0,
        good: 0,
        shed: 0,
        shed_with_retry_after: 0,
        expired: 0,
        other_status: 0,
        timeouts: 0,
        failed: 0,
        ok_latency: Recorder::new().summary(plan.duration),
        by_endpoint: HashMap::new(),
        server,
        wasted: 0,
        expired_without_sql: 0,
        drain,
        process_cores,
        first_error: run.first_error.clone(),
    };
    let mut ok_latency = Recorder::new();
    for s in &run.timeline {
        let Some(a) = s.out else { continue };
        let e = r.by_endpoint.entry(a.endpoint).or_default();
        e.sent += 1;
        let server_side: Option<ServerOutcome> = by_id.get(&a.id).copied();
        match a.outcome {
            Outcome::Ok => {
                r.ok += 1;
                e.ok += 1;
                ok_latency.record(s.latency);
                e.ok_latency.record(s.latency);
                if s.latency <= plan.slo {
                    r.good += 1;
                    e.good += 1;
                }
            }
            Outcome::Shed { retry_after } => {
                r.shed += 1;
                r.shed_with_retry_after += u64::from(retry_after);
            }
            Outcome::Expired => r.expired += 1,
            Outcome::Status(_) => r.other_status += 1,
            Outcome::Timeout | Outcome::Failed => {
                if a.outcome == Outcome::Timeout {
                    r.timeouts += 1;
                } else {
                    r.failed += 1;
                }
                // The client gave up; did the server finish the work anyway?
                if server_side.is_some_and(|o| (200..300).contains(&o.status)) {
                    r.wasted += 1;
                }
            }
        }
    }
    r.expired_without_sql = by_id
        .values()
        .filter(|o| o.expired && o.statements == 0)
        .count() as u64;
    r.ok_latency = ok_latency.summary(plan.duration);
    r
}

/// Closed loop: `workers` clients, each sending its next request when the last returned.
/// Success = a 2xx.
pub async fn closed_step(
    client: &LoadClient,
    ledger: &Ledger,
    workers: usize,
    duration: Duration,
    warmup: Duration,
    label: &str,
) -> LoadResult<()> {
    let c = Arc::new(client.clone());
    let cfg = ClosedLoop::new(workers, Bound::Duration(duration))
        .warmup(warmup)
        .label(label);
    let r = labkit::closed_loop(cfg, move |call: Call| {
        let c = c.clone();
        async move {
            match c.send(call.seq).await.outcome {
                Outcome::Ok => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    ledger.until_idle().await;
    ledger.take();
    r
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat`; `None` where
/// there is no procfs.
pub fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux whatever the kernel's tick rate.
    Some(ticks / 100.0)
}
