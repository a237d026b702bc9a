//! Scenarios 2 and 3: users who save their profile and load pages, under one read policy.
//!
//! Each closed-loop worker is one user with a session of their own. Every `save_every`-th page
//! load is a save followed at once by a read of the profile (the redirect after the form's
//! POST); the others are plain page loads that read it too. A read is **stale** when it shows
//! a version older than the user's own last save; how stale is the age of the first save it
//! missed (time since that save's COMMIT returned).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use labkit::{Bound, ClosedLoop, LatencySummary, Recorder, closed_loop};

use crate::read_routing::{self, Db, ReadPolicy, Route, RoutingError, Session};

/// The users' behaviour.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Concurrent users (closed-loop workers); user `i` is `profiles.user_id = i + 1`.
    pub users: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Time between one user's page loads (jittered ×0.5–1.5 by the driver).
    pub think: Duration,
    /// Every n-th page load is a save (then a read).
    pub save_every: u64,
    pub seed: u64,
}

/// What one policy did with that workload.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub label: String,
    pub policy: ReadPolicy,
    pub reads: u64,
    pub reads_after_save: u64,
    pub stale: u64,
    pub stale_after_save: u64,
    /// The stalest read: how long the save it missed had been committed.
    pub stale_max: Duration,
    pub on_primary: u64,
    pub waited: u64,
    pub fell_back: u64,
    pub read_all: LatencySummary,
    pub read_after_save: LatencySummary,
    pub write: LatencySummary,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Outcome {
    /// Stale reads among the reads right after a save, in %.
    pub fn stale_after_save_pct(&self) -> f64 {
        pct(self.stale_after_save, self.reads_after_save)
    }

    /// Stale reads among all reads, in %.
    pub fn stale_pct(&self) -> f64 {
        pct(self.stale, self.reads)
    }

    /// Reads served by the primary, in %.
    pub fn on_primary_pct(&self) -> f64 {
        pct(self.on_primary, self.reads)
    }

    /// Reads that gave up waiting for the replica, in %.
    pub fn fell_back_pct(&self) -> f64 {
        pct(self.fell_back, self.reads)
    }
}

fn pct(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

/// One page load, as the driver records it.
#[derive(Debug, Clone, Copy)]
struct PageLoad {
    save: Option<Duration>,
    read: Duration,
    route: Route,
    /// `Some(age of the first missed save)` when the read was stale.
    stale_by: Option<Duration>,
}

/// One user's state across page loads.
struct User {
    id: i64,
    page_loads: u64,
    session: Session,
    /// This user's recent saves: (version, when COMMIT returned).
    saves: VecDeque<(i64, Instant)>,
}

impl Workload {
    /// Run the users on `db` with reads routed by `policy`.
    pub async fn run(&self, db: &Db, policy: ReadPolicy) -> Outcome {
        run(
            &format!("{} · {}", db.name, policy.label()),
            db,
            policy,
            self,
        )
        .await
    }
}

/// Run `workload` with reads routed by `policy` over `db`; `label` names the phase.
pub async fn run(label: &str, db: &Db, policy: ReadPolicy, workload: &Workload) -> Outcome {
    let users: Arc<Vec<Mutex<User>>> = Arc::new(
        (0..workload.users)
            .map(|i| {
                Mutex::new(User {
                    id: i as i64 + 1,
                    page_loads: 0,
                    session: Session::default(),
                    saves: VecDeque::new(),
                })
            })
            .collect(),
    );
    let db = db.clone();
    let save_every = workload.save_every.max(1);
    let result = closed_loop(
        ClosedLoop::new(workload.users, Bound::Duration(workload.duration))
            .label(label)
            .warmup(workload.warmup)
            .think(workload.think, workload.seed)
            .with_timeline(),
        move |call| {
            let users = users.clone();
            let db = db.clone();
            async move { page_load(&db, policy, &users[call.worker], save_every).await }
        },
    )
    .await;

    let elapsed = Duration::from_secs_f64(result.summary.elapsed_s);
    let (mut read_all, mut read_after_save, mut write) =
        (Recorder::new(), Recorder::new(), Recorder::new());
    let (mut reads, mut reads_after_save, mut stale, mut stale_after_save) = (0, 0, 0, 0);
    let (mut on_primary, mut waited, mut fell_back) = (0, 0, 0);
    let mut stale_max = Duration::ZERO;
    for p in result.timeline.iter().filter_map(|s| s.out) {
        reads += 1;
        read_all.record(p.read);
        if let Some(save) = p.save {
            reads_after_save += 1;
            read_after_save.record(p.read);
            write.record(save);
        }
        if let Some(by) = p.stale_by {
            stale += 1;
            stale_after_save += u64::from(p.save.is_some());
            stale_max = stale_max.max(by);
        }
        on_primary += u64::from(p.route.on_primary());
        waited += u64::from(p.route == Route::ReplicaAfterWait);
        fell_back += u64::from(p.route == Route::PrimaryAfterTimeout);
    }
    Outcome {
        label: label.to_string(),
        policy,
        reads,
        reads_after_save,
        stale,
        stale_after_save,
        stale_max,
        on_primary,
        waited,
        fell_back,
        read_all: read_all.summary(elapsed),
        read_after_save: read_after_save.summary(elapsed),
        write: write.summary(elapsed),
        errors: result.summary.errors,
        first_error: result.first_error,
    }
}

async fn page_load(
    db: &Db,
    policy: ReadPolicy,
    user: &Mutex<User>,
    save_every: u64,
) -> Result<PageLoad, RoutingError> {
    // The lock is only ever held between awaits (a std Mutex: nothing awaits while it is held);
    // each worker is the only one touching its user.
    let (id, nth, mut session) = {
        let mut u = lock(user);
        u.page_loads += 1;
        (u.id, u.page_loads - 1, u.session.clone())
    };
    let mut save = None;
    if nth % save_every == 0 {
        let t0 = Instant::now();
        let name = format!("user {id}, save {}", nth / save_every);
        let saved = read_routing::save_profile(db, policy, &mut session, id, &name).await?;
        save = Some(t0.elapsed());
        let mut u = lock(user);
        u.saves.push_back((saved.version, saved.committed_at));
        if u.saves.len() > 64 {
            u.saves.pop_front();
        }
    }
    let t0 = Instant::now();
    let (profile, route) = read_routing::read_profile(db, policy, &mut session, id).await?;
    let read = t0.elapsed();
    let mut u = lock(user);
    u.session = session;
    let stale_by = u
        .saves
        .iter()
        .find(|(version, _)| *version > profile.version)
        .map(|(_, committed_at)| committed_at.elapsed());
    Ok(PageLoad {
        save,
        read,
        route,
        stale_by,
    })
}

fn lock(user: &Mutex<User>) -> std::sync::MutexGuard<'_, User> {
    user.lock().unwrap_or_else(|e| e.into_inner())
}
