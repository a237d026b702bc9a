//! Waking workers: LISTEN/NOTIFY vs polling every 100 ms and every second.
//!
//! A poller finds a job, on average, half a polling interval after it was enqueued, and pays
//! a query per interval per worker while the queue is empty. With LISTEN/NOTIFY the enqueuing
//! transaction sends `pg_notify` and Postgres delivers it to listening sessions at COMMIT; the
//! worker wakes and claims at once. Notifications are not stored: one sent while a worker was
//! disconnected is gone, so the listener also drains the queue on every wake-up and falls back
//! to a slow poll ([`SAFETY_NET`]) — the production shape.
//!
//! All three are measured at once on three queues fed by one producer (one INSERT of three
//! jobs per tick), so they see the same arrivals. Enqueue-to-start latency is measured by
//! Postgres's own clock: `clock_timestamp() - enqueued_at` when the claim runs.

use std::sync::Arc;
use std::time::Duration;

use labkit::measure::Call;
use labkit::{LatencySummary, OpenLoop, Recorder};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;

/// The listener's fallback poll, for notifications it could not have received.
pub const SAFETY_NET: Duration = Duration::from_secs(1);

/// The channel the producer notifies.
pub const CHANNEL: &str = "jobs_wake_notify";

/// How a worker learns there is work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeup {
    Notify,
    Poll(Duration),
}

impl Wakeup {
    pub const ALL: [Wakeup; 3] = [
        Self::Notify,
        Self::Poll(Duration::from_millis(100)),
        Self::Poll(Duration::from_secs(1)),
    ];

    pub fn queue(self) -> &'static str {
        match self {
            Self::Notify => "wake_notify",
            Self::Poll(d) if d < Duration::from_secs(1) => "wake_poll_100ms",
            Self::Poll(_) => "wake_poll_1s",
        }
    }

    pub fn label(self) -> String {
        match self {
            Self::Notify => "LISTEN/NOTIFY".into(),
            Self::Poll(d) => format!("poll every {}", humanize(d)),
        }
    }
}

fn humanize(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

pub mod sql {
    /// One job on each queue; the notify queue's job is announced. `pg_notify` in the same
    /// statement is delivered at COMMIT — never before the job is visible.
    pub const ENQUEUE: &str = "WITH j AS ( \
            INSERT INTO jobs (queue, payload) \
            VALUES ('wake_notify', $1), ('wake_poll_100ms', $1), ('wake_poll_1s', $1) \
            RETURNING id, queue) \
        SELECT count(pg_notify('jobs_wake_notify', id::text)) FROM j WHERE queue = 'wake_notify'";
    /// Claim and finish in one statement; the pickup latency by the server's clock.
    pub const CLAIM: &str = "DELETE FROM jobs WHERE id = ( \
            SELECT id FROM jobs WHERE queue = $1 AND visible_at <= now() \
            ORDER BY visible_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
        RETURNING (extract(epoch FROM clock_timestamp() - enqueued_at) * 1000)::float8";
}

/// One wake-up strategy, measured.
#[derive(Debug, Clone)]
pub struct WakeupRun {
    pub wakeup: Wakeup,
    /// Enqueue-to-start latency.
    pub pickup: LatencySummary,
    /// Claim queries sent (polls that found nothing included).
    pub queries: u64,
}

/// Claim everything visible on `queue`, recording pickup latencies. Returns queries sent.
async fn drain(pool: &PgPool, queue: &str, rec: &mut Recorder) -> Result<u64, sqlx::Error> {
    let mut queries = 0;
    loop {
        queries += 1;
        let picked: Option<f64> = sqlx::query_scalar(sql::CLAIM)
            .bind(queue)
            .fetch_optional(pool)
            .await?;
        match picked {
            Some(ms) => rec.record(Duration::from_secs_f64(ms.max(0.0) / 1000.0)),
            None => return Ok(queries),
        }
    }
}

async fn consume(
    pool: PgPool,
    wakeup: Wakeup,
    listener: Option<PgListener>,
    done: Arc<Done>,
) -> Result<(Recorder, u64), sqlx::Error> {
    let mut rec = Recorder::new();
    let mut queries = 0;
    let queue = wakeup.queue();
    let mut listener = listener;
    loop {
        // Register for the wake-up first, then read the flag, so neither can be missed.
        let finished = done.notify.notified();
        tokio::pin!(finished);
        finished.as_mut().enable();
        // Read the flag *before* draining: everything enqueued before the producer finished
        // is committed by then, so this drain is the last one needed.
        let finishing = done.is_set();
        queries += drain(&pool, queue, &mut rec).await?;
        if finishing {
            return Ok((rec, queries));
        }
        match (wakeup, listener.as_mut()) {
            (Wakeup::Notify, Some(l)) => {
                tokio::select! {
                    n = l.recv() => { n?; }
                    _ = tokio::time::sleep(SAFETY_NET) => {}
                    _ = finished => {}
                }
            }
            // Pollers keep their schedule to the end: the last poll comes on time, not early.
            (Wakeup::Poll(every), _) => tokio::time::sleep(every).await,
            (Wakeup::Notify, None) => tokio::time::sleep(SAFETY_NET).await,
        }
    }
}

/// The producer is done (a flag the consumers read, and a wake-up for the listener).
#[derive(Debug, Default)]
struct Done {
    flag: std::sync::atomic::AtomicBool,
    notify: Notify,
}

impl Done {
    fn set(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Enqueue at `rate_per_s` for `duration` and let one worker per strategy pick the jobs up.
pub async fn run(
    pool: &PgPool,
    rate_per_s: f64,
    duration: Duration,
) -> Result<Vec<WakeupRun>, sqlx::Error> {
    let done = Arc::new(Done::default());
    // Subscribe before the first job: a notification sent before LISTEN is not delivered
    // (the safety net would find that job a second later).
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    let mut listener = Some(listener);
    // A JoinSet, not bare spawns: if the run is dropped (Ctrl-C), the consumers go with it.
    let mut consumers = tokio::task::JoinSet::new();
    for w in Wakeup::ALL {
        let l = if w == Wakeup::Notify {
            listener.take()
        } else {
            None
        };
        let (pool, done) = (pool.clone(), done.clone());
        consumers.spawn(async move { (w, consume(pool, w, l, done).await) });
    }
    let producer = {
        let pool = pool.clone();
        labkit::open_loop(
            OpenLoop::new(rate_per_s, duration)
                .max_in_flight(16)
                .label("wake-ups: producer"),
            move |call: Call| {
                let pool = pool.clone();
                async move {
                    sqlx::query(sql::ENQUEUE)
                        .bind(format!("order-{}", call.seq))
                        .execute(&pool)
                        .await
                }
            },
        )
    };
    let produced = producer.await;
    if let Some(e) = produced.first_error {
        return Err(sqlx::Error::Protocol(format!("enqueue failed: {e}")));
    }
    done.set();
    let mut runs = Vec::new();
    while let Some(joined) = consumers.join_next().await {
        let (wakeup, result) =
            joined.map_err(|e| sqlx::Error::Protocol(format!("consumer panicked: {e}")))?;
        let (rec, queries) = result?;
        runs.push(WakeupRun {
            wakeup,
            pickup: rec.summary(duration),
            queries,
        });
    }
    runs.sort_by_key(|r| Wakeup::ALL.iter().position(|w| *w == r.wakeup));
    Ok(runs)
}
