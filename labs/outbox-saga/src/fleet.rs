//! The processes: relays and consumers as tasks, restarted when they crash — and the same
//! parts driven one step at a time for tests.
//!
//! [`Fleet`] is the "deployment": each relay and consumer runs as a task in a loop of
//! generations. A generation is one process lifetime: it connects, works, and when it hits an
//! armed crash point it simply returns — no cleanup — and the supervisor starts the next
//! generation with a new consumer name (`warehouse-2`), the way a new pod gets a new name.
//! The tasks live in a `JoinSet`, so dropping the fleet (Ctrl-C, end of run) aborts them all.
//!
//! [`Stepper`] owns the same relays and consumers but runs them in the caller's task, one
//! round at a time: every interleaving a test needs is then forced by the order of its calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::broker::{Broker, BrokerError};
use crate::crash::{Crashes, Service};
use crate::inbox::{Consumer, ConsumerError, ConsumerStats, Role};
use crate::relay::{Relay, RelayError, Wake};
use crate::saga;
use crate::schema::Services;

/// Rows a relay claims per transaction.
pub const RELAY_BATCH: i64 = 100;
/// How long a relay sleeps without a notification before polling anyway.
const RELAY_FALLBACK_POLL: Duration = Duration::from_millis(250);
/// How long a consumer blocks in `XREADGROUP` (under the client's 500 ms response timeout).
const CONSUMER_BLOCK: Duration = Duration::from_millis(100);

/// Everything the processes of one scenario share: pools, broker, crash plan, counters.
#[derive(Debug)]
pub struct Shop {
    pub svc: Services,
    pub redis: redis::Client,
    /// Stream key prefix of this scenario (from `ctx.key(..)`).
    pub prefix: String,
    pub crashes: Arc<Crashes>,
    /// `XAUTOCLAIM`'s min idle time: when an unacked entry is presumed abandoned.
    pub reclaim_after: Duration,
    /// Process generations started after a crash.
    pub restarts: AtomicU64,
    stats: Mutex<HashMap<Role, Arc<ConsumerStats>>>,
}

impl Shop {
    pub fn new(svc: Services, redis: redis::Client, prefix: String) -> Self {
        Self {
            svc,
            redis,
            prefix,
            crashes: Arc::new(Crashes::new()),
            reclaim_after: Duration::from_secs(1),
            restarts: AtomicU64::new(0),
            stats: Mutex::default(),
        }
    }

    /// One role's counters, shared by all its generations.
    pub fn stats(&self, role: Role) -> Arc<ConsumerStats> {
        self.stats.lock().unwrap().entry(role).or_default().clone()
    }

    pub async fn broker(&self) -> Result<Broker, BrokerError> {
        Broker::connect(&self.redis, &self.prefix).await
    }

    /// A consumer process for `role` called `name` in its group. An orchestrator first
    /// resumes the sagas in flight from its log.
    pub async fn consumer(&self, role: Role, name: String) -> Result<Consumer, ConsumerError> {
        let pool = self.svc.pool(role.service()).clone();
        if role == Role::Orchestrator {
            saga::recover(&pool, &name).await?;
        }
        // A consumer with no crash plan of its own (the no-inbox comparison) gets an empty one.
        let crashes = if role == Role::PickListNoInbox {
            Arc::new(Crashes::new())
        } else {
            self.crashes.clone()
        };
        Consumer::join(
            role,
            name,
            pool,
            self.broker().await?,
            crashes,
            self.stats(role),
        )
        .await
    }

    pub async fn relay(&self, service: Service) -> Result<Relay, BrokerError> {
        Ok(Relay::new(
            service,
            self.svc.pool(service).clone(),
            self.broker().await?,
            self.crashes.clone(),
            RELAY_BATCH,
        ))
    }
}

/// Relays and consumers running as supervised tasks. Dropping it stops them all.
#[derive(Debug)]
pub struct Fleet {
    tasks: JoinSet<()>,
}

impl Fleet {
    /// `relays`: (service, how many relay processes) — more than one shows SKIP LOCKED
    /// splitting the work; `consumers`: (role, how many processes in its consumer group).
    pub fn start(
        shop: &Arc<Shop>,
        relays: &[(Service, usize)],
        consumers: &[(Role, usize)],
    ) -> Self {
        let mut tasks = JoinSet::new();
        for &(service, n) in relays {
            for _ in 0..n {
                tasks.spawn(supervise(shop.clone(), move |shop, _| {
                    relay_process(shop, service)
                }));
            }
        }
        for &(role, n) in consumers {
            for instance in 1..=n {
                // Named like pods: `warehouse-2` is the second process of a singleton,
                // `pick-list-1.2` the second process of instance 1.
                let name = move |generation| match n {
                    1 => format!("{}-{generation}", role.group()),
                    _ => format!("{}-{instance}.{generation}", role.group()),
                };
                tasks.spawn(supervise(shop.clone(), move |shop, generation| {
                    consumer_process(shop, role, name(generation))
                }));
            }
        }
        Self { tasks }
    }

    /// Stop every process and wait until they are gone.
    pub async fn stop(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

#[derive(Debug, thiserror::Error)]
enum ProcessError {
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
}

impl ProcessError {
    fn is_crash(&self) -> bool {
        matches!(
            self,
            Self::Relay(RelayError::Crashed(_)) | Self::Consumer(ConsumerError::Crashed(_))
        )
    }
}

/// Run generation after generation of a process until aborted.
async fn supervise<F, Fut>(shop: Arc<Shop>, process: F)
where
    F: Fn(Arc<Shop>, u64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), ProcessError>> + Send,
{
    for generation in 1.. {
        if let Err(e) = process(shop.clone(), generation).await {
            if e.is_crash() {
                shop.restarts.fetch_add(1, Ordering::Relaxed);
            } else {
                // A real failure (a connection lost): back off a little, then restart.
                tracing::warn!("process failed, restarting: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn relay_process(shop: Arc<Shop>, service: Service) -> Result<(), ProcessError> {
    let pool = shop.svc.pool(service).clone();
    let mut wake = Wake::listen(&pool, service)
        .await
        .map_err(RelayError::from)?;
    let mut relay = shop.relay(service).await.map_err(RelayError::from)?;
    loop {
        if relay.pump_once().await? == 0 {
            wake.wait(RELAY_FALLBACK_POLL)
                .await
                .map_err(RelayError::from)?;
        }
    }
}

async fn consumer_process(shop: Arc<Shop>, role: Role, name: String) -> Result<(), ProcessError> {
    let mut consumer = shop.consumer(role, name).await?;
    let mut last_reclaim = Instant::now();
    loop {
        let n = consumer.poll(Some(CONSUMER_BLOCK)).await?;
        if n == 0 || last_reclaim.elapsed() >= shop.reclaim_after {
            consumer.reclaim(shop.reclaim_after).await?;
            last_reclaim = Instant::now();
        }
    }
}

/// The same processes, stepped by hand in one task (tests; the dual-write scenario).
#[derive(Debug)]
pub struct Stepper {
    pub relays: Vec<Relay>,
    pub consumers: Vec<Consumer>,
}

impl Stepper {
    pub async fn new(shop: &Shop, relays: &[Service], roles: &[Role]) -> anyhow::Result<Self> {
        let mut r = Vec::new();
        for &s in relays {
            r.push(shop.relay(s).await?);
        }
        let mut c = Vec::new();
        for &role in roles {
            c.push(shop.consumer(role, format!("{}-1", role.group())).await?);
        }
        Ok(Self {
            relays: r,
            consumers: c,
        })
    }

    /// Every relay of the shop and the three saga consumers.
    pub async fn whole_shop(shop: &Shop) -> anyhow::Result<Self> {
        Self::new(
            shop,
            &Service::ALL,
            &[Role::Orchestrator, Role::Warehouse, Role::Payments],
        )
        .await
    }

    /// One round: every relay drains its outbox, then every consumer reads what is new.
    /// Returns how much moved.
    pub async fn step(&mut self) -> Result<usize, StepError> {
        let mut moved = 0;
        for r in &mut self.relays {
            moved += r.drain().await?;
        }
        for c in &mut self.consumers {
            moved += c.poll(None).await?;
        }
        Ok(moved)
    }

    /// Step until nothing moves.
    pub async fn settle(&mut self) -> Result<(), StepError> {
        while self.step().await? > 0 {}
        Ok(())
    }

    pub fn consumer(&mut self, role: Role) -> &mut Consumer {
        self.consumers
            .iter_mut()
            .find(|c| c.role == role)
            .expect("the stepper has this role")
    }

    /// Replace `role`'s consumer with a new process (generation `generation`): what the
    /// supervisor does after a crash.
    pub async fn restart(
        &mut self,
        shop: &Shop,
        role: Role,
        generation: u64,
    ) -> Result<(), StepError> {
        let fresh = shop
            .consumer(role, format!("{}-{generation}", role.group()))
            .await?;
        *self.consumer(role) = fresh;
        Ok(())
    }

    pub async fn restart_relay(&mut self, shop: &Shop, service: Service) -> Result<(), StepError> {
        let fresh = shop.relay(service).await.map_err(RelayError::from)?;
        for r in &mut self.relays {
            if r.service() == service {
                *r = fresh;
                return Ok(());
            }
        }
        self.relays.push(fresh);
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
}
