//! Throwaway Postgres and Redis from the binaries installed on this machine.
//!
//! Each server lives in its own temp dir (`/tmp/labkit-*`) on a free 127.0.0.1 port and is
//! stopped and deleted when its handle drops. Three layers make sure nothing outlives us:
//!
//! - `Drop` sends SIGINT (Postgres "fast shutdown", ~20 ms) or SIGTERM, waits, deletes the dir;
//! - children are spawned with `PR_SET_PDEATHSIG`, so even a SIGKILL of the lab stops them;
//! - each dir holds `owner.pid`; the next start sweeps dirs whose owner is gone.
//!
//! Children get their own process group: a terminal Ctrl-C reaches only the lab, which then
//! shuts the servers down in order instead of racing them.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User};

use super::BackendError;

const TEMP_PREFIX: &str = "labkit-";
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the server binaries are.
#[derive(Debug, Clone)]
pub struct LocalBins {
    pub pg_bin_dir: PathBuf,
    pub redis_server: PathBuf,
}

impl LocalBins {
    /// PATH, then `pg_config --bindir`, then the newest `/usr/lib/postgresql/*/bin`.
    pub fn find() -> Result<Self, String> {
        let pg_bin_dir = find_pg_bin_dir().ok_or_else(|| {
            "initdb/postgres not found on PATH, via `pg_config --bindir`, or in /usr/lib/postgresql/*/bin".to_string()
        })?;
        let redis_server = which("redis-server")
            .or_else(|| {
                ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.is_file())
            })
            .ok_or_else(|| "redis-server not found on PATH".to_string())?;
        Ok(Self {
            pg_bin_dir,
            redis_server,
        })
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn find_pg_bin_dir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(initdb) = which("initdb") {
        // Distros symlink initdb into /usr/local/bin; report the real directory.
        let initdb = fs::canonicalize(&initdb).unwrap_or(initdb);
        let dir = initdb.parent()?.to_path_buf();
        if has_both(&dir) {
            return Some(dir);
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_both(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_both(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

/// Postgres refuses to run as root. When we are root, run it as `postgres` (or `nobody`).
fn unprivileged_user() -> Option<User> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    ["postgres", "nobody"]
        .iter()
        .find_map(|name| User::from_name(name).ok().flatten())
}

/// A fresh `/tmp/labkit-<what>-XXXX` dir recording its owner, after sweeping stale ones.
fn make_dir(what: &str) -> io::Result<tempfile::TempDir> {
    sweep_stale_dirs();
    let dir = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{what}-"))
        .tempdir()?;
    fs::write(dir.path().join("owner.pid"), std::process::id().to_string())?;
    Ok(dir)
}

/// Remove temp dirs (and stop servers) left by a lab that was killed with SIGKILL.
fn sweep_stale_dirs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with(TEMP_PREFIX) {
                continue;
            }
            let owner = fs::read_to_string(path.join("owner.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok());
            let Some(owner) = owner else { continue };
            if owner == std::process::id() as i32 || pid_alive(owner) {
                continue;
            }
            // The postmaster writes its pid on the first line of postmaster.pid.
            if let Some(pm) = fs::read_to_string(path.join("data/postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
            {
                let _ = kill(Pid::from_raw(pm), Signal::SIGQUIT);
            }
            let _ = fs::remove_dir_all(&path);
            tracing::info!(dir = %path.display(), "removed a stale labkit dir (owner {owner} is gone)");
        }
    });
}

fn pid_alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Spawn from one long-lived thread, so that `PR_SET_PDEATHSIG` (which fires when the
/// *thread* that forked exits, not the process) only fires when the whole lab dies.
fn spawn_supervised(cmd: Command) -> io::Result<Child> {
    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let tx = SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("labkit-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        set_parent_death_signal(&mut cmd);
                        let _ = reply.send(cmd.spawn());
                    }
                })
                .expect("spawn labkit-spawner thread");
            Mutex::new(tx)
        })
        .lock()
        .expect("spawner lock")
        .clone();
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.send((cmd, reply_tx))
        .map_err(|_| io::Error::other("labkit spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("labkit spawner thread is gone"))?
}

#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only makes one async-signal-safe
    // syscall (prctl). SIGTERM stops redis cleanly and is "smart shutdown" for Postgres;
    // its backends then exit on their own when the postmaster goes.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(io::Error::from)?;
            Ok(())
        });
    }
}

/// Stop a child: `signal`, wait up to 5 s, then SIGKILL. Never blocks forever.
fn stop_child(child: &mut Child, signal: Signal) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = kill(Pid::from_raw(child.id() as i32), signal);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

fn start_err(what: &'static str, reason: impl std::fmt::Display) -> BackendError {
    BackendError::Start {
        what,
        reason: reason.to_string(),
    }
}

/// Extra settings for a throwaway Postgres, on top of [`LocalPostgres`]'s defaults.
#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// `-c name=value` pairs, applied after (and so overriding) the defaults, e.g.
    /// `("fsync", "on")` for a lab whose story is commit cost.
    pub settings: Vec<(String, String)>,
}

impl PostgresOptions {
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }
}

/// The settings every throwaway cluster starts with (see [`LocalPostgres::start`]).
pub(crate) const DEFAULT_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "127.0.0.1"),
    ("fsync", "off"),
    ("full_page_writes", "off"),
    ("max_connections", "400"),
    ("shared_buffers", "256MB"),
    ("max_wal_size", "4GB"),
    ("checkpoint_timeout", "30min"),
];

/// A throwaway PostgreSQL cluster. Stopped and deleted on drop.
pub struct LocalPostgres {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    /// The home of a [`start_kept`](Self::start_kept) cluster (kept on drop); `None` for a
    /// throwaway one, whose home is `dir`.
    kept: Option<PathBuf>,
    pub port: u16,
    pub init_time: Duration,
    pub ready_time: Duration,
    bins: LocalBins,
    user: Option<User>,
    settings: Vec<(String, String)>,
}

impl std::fmt::Debug for LocalPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPostgres")
            .field("port", &self.port)
            .field("dir", &self.dir.as_ref().map(|d| d.path().to_path_buf()))
            .finish()
    }
}

impl LocalPostgres {
    /// `initdb` into a temp dir, then start `postgres` on a free port and wait until a
    /// connection succeeds.
    ///
    /// `fsync` and `full_page_writes` are off: this cluster is deleted at exit, and reports
    /// print these settings because they change write numbers a lot. `synchronous_commit`
    /// stays on: with it off, VACUUM cannot mark just-committed pages all-visible (their
    /// commit record is not flushed yet), and Index Only Scans would show heap fetches that
    /// a real server would not. With fsync off, a synchronous commit costs one write().
    pub async fn start(bins: &LocalBins) -> Result<Self, BackendError> {
        Self::start_with(bins, &PostgresOptions::default()).await
    }

    /// [`start`](Self::start) with extra settings (a dedicated server for one scenario).
    pub async fn start_with(
        bins: &LocalBins,
        opts: &PostgresOptions,
    ) -> Result<Self, BackendError> {
        Self::launch(
            "postgres",
            bins,
            Home::Temp("pg"),
            opts.settings.clone(),
            initdb,
        )
        .await
    }

    /// Make a data dir with `prepare` (initdb, pg_basebackup: blocking work, kept off the
    /// async worker threads) in `home`, start the postmaster on a free port with `settings`,
    /// and wait until it accepts connections. Every way of getting a cluster goes through here.
    async fn launch(
        what: &'static str,
        bins: &LocalBins,
        home: Home,
        settings: Vec<(String, String)>,
        prepare: impl FnOnce(&LocalBins, &Path, Option<&User>) -> Result<(), BackendError>
        + Send
        + 'static,
    ) -> Result<Self, BackendError> {
        let bins = bins.clone();
        let mut this = tokio::task::spawn_blocking(move || {
            let user = unprivileged_user();
            let (dir, kept) = match home {
                Home::Temp(name) => (Some(private_dir(name, user.as_ref())?), None),
                Home::Kept(path) => {
                    fs::create_dir_all(&path).map_err(|e| start_err(what, e))?;
                    make_private(&path, user.as_ref())?;
                    (None, Some(path))
                }
            };
            let data = dir
                .as_ref()
                .map(|d| d.path().to_path_buf())
                .or_else(|| kept.clone())
                .unwrap_or_default()
                .join("data");
            let t0 = Instant::now();
            prepare(&bins, &data, user.as_ref())?;
            let mut this = Self {
                child: None,
                dir,
                kept,
                port: free_port().map_err(|e| start_err(what, e))?,
                init_time: t0.elapsed(),
                ready_time: Duration::ZERO,
                bins,
                user,
                settings,
            };
            this.spawn()?;
            Ok::<_, BackendError>(this)
        })
        .await
        .map_err(|e| start_err(what, e))??;
        this.wait_ready().await?;
        Ok(this)
    }

    fn data_dir(&self) -> PathBuf {
        self.home().map(|d| d.join("data")).unwrap_or_default()
    }

    /// The dir holding `data/` and `postgres.log`: the temp dir, or a kept cluster's home.
    fn home(&self) -> Option<PathBuf> {
        match (&self.dir, &self.kept) {
            (Some(d), _) => Some(d.path().to_path_buf()),
            (None, kept) => kept.clone(),
        }
    }

    /// A cluster whose data dir outlives this process: `home/data` (created with `initdb` if
    /// it has no `PG_VERSION`), log in `home/postgres.log`, the same defaults as
    /// [`start`](Self::start) plus `opts`, TCP only (no Unix socket: `home` may be a path too
    /// long for one), on a free port. Stopped on drop like any [`LocalPostgres`] (and with
    /// this process, however it dies), but never deleted. For caches that are expensive to
    /// rebuild (the benches' seeded databases); the caller makes sure one process at a time
    /// uses `home`.
    pub async fn start_kept(
        bins: &LocalBins,
        home: &Path,
        opts: &PostgresOptions,
    ) -> Result<Self, BackendError> {
        let settings = [("unix_socket_directories".to_string(), String::new())]
            .into_iter()
            .chain(opts.settings.iter().cloned())
            .collect();
        let home = Home::Kept(home.to_path_buf());
        Self::launch("postgres", bins, home, settings, |bins, data, user| {
            if data.join("PG_VERSION").is_file() {
                return Ok(());
            }
            initdb(bins, data, user)
        })
        .await
    }

    /// Start the postmaster on this cluster's data dir and port (blocking; no wait).
    fn spawn(&mut self) -> Result<(), BackendError> {
        let dir = self.home().unwrap_or_default();
        let log_path = dir.join("postgres.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| start_err("postgres", e))?;
        if let Some(u) = &self.user {
            let _ = nix::unistd::chown(&log_path, Some(u.uid), Some(u.gid));
        }
        let mut cmd = Command::new(self.bins.pg_bin_dir.join("postgres"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-c")
            .arg(format!("port={}", self.port))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()));
        let defaults = DEFAULT_SETTINGS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()));
        for (k, v) in defaults.chain(self.settings.iter().cloned()) {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| start_err("postgres", e))?)
            .stderr(log)
            .process_group(0);
        as_user(&mut cmd, self.user.as_ref());
        self.child = Some(spawn_supervised(cmd).map_err(|e| start_err("postgres", e))?);
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<(), BackendError> {
        let started = Instant::now();
        let url = self.url("postgres");
        loop {
            use sqlx::Connection;
            if let Ok(conn) = sqlx::PgConnection::connect(&url).await {
                let _ = conn.close().await;
                break;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || started.elapsed() > READY_TIMEOUT {
                let log = self
                    .home()
                    .map(|d| log_tail(&d.join("postgres.log")))
                    .unwrap_or_default();
                return Err(start_err(
                    "postgres",
                    format!("server did not become ready; log tail:\n{log}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.ready_time = started.elapsed();
        Ok(())
    }

    /// `postgres://postgres@127.0.0.1:PORT/<db>`
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(|d| d.path()).or(self.kept.as_deref())
    }

    /// Crash the server: SIGKILL to the postmaster and every backend at once (they share a
    /// process group). Nothing is flushed; what was only in WAL buffers is gone. The data
    /// dir stays, so [`restart`](Self::restart) runs crash recovery on it.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            // Backends die with the group; give the kernel a moment to release the port.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Start the server again on the same data dir and port (after [`crash`](Self::crash)),
    /// waiting until it answers — crash recovery included.
    pub async fn restart(&mut self) -> Result<Duration, BackendError> {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Signal::SIGINT);
        }
        // A crashed postmaster leaves postmaster.pid; Postgres checks the pid and ignores it.
        self.spawn()?;
        self.wait_ready().await?;
        Ok(self.ready_time)
    }

    /// Change settings on the running server: appended to `postgresql.auto.conf` (where
    /// `ALTER SYSTEM` writes; later lines win) and applied with SIGHUP. Works on a hot
    /// standby too, where `ALTER SYSTEM` cannot run. Only settings Postgres reloads without
    /// a restart take effect (`pg_settings.context` = `sighup` or `user`).
    pub fn reload_with(&mut self, settings: &[(&str, &str)]) -> Result<(), BackendError> {
        use std::io::Write as _;
        let path = self.data_dir().join("postgresql.auto.conf");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| start_err("postgres", format!("{}: {e}", path.display())))?;
        for (k, v) in settings {
            self.settings.retain(|(name, _)| name != k);
            self.settings.push((k.to_string(), v.to_string()));
            writeln!(f, "{k} = '{}'", v.replace('\'', "''"))
                .map_err(|e| start_err("postgres", e))?;
        }
        if let Some(child) = &self.child {
            kill(Pid::from_raw(child.id() as i32), Signal::SIGHUP)
                .map_err(|e| start_err("postgres", e))?;
        }
        Ok(())
    }

    /// A streaming hot standby of this cluster: `pg_basebackup -R -X stream` into a new temp
    /// dir, started on its own port with `settings` (e.g. `recovery_min_apply_delay`,
    /// `hot_standby_feedback`). Stopped and deleted on drop, like any [`LocalPostgres`].
    /// The initdb of the primary (`--auth=trust`) already allows local replication.
    pub async fn standby(&self, opts: &PostgresOptions) -> Result<Self, BackendError> {
        Self::standby_of(&self.bins, self.port, opts).await
    }

    /// [`standby`](Self::standby) of the local cluster listening on `primary_port`.
    pub async fn standby_of(
        bins: &LocalBins,
        primary_port: u16,
        opts: &PostgresOptions,
    ) -> Result<Self, BackendError> {
        let settings = [("hot_standby".to_string(), "on".to_string())]
            .into_iter()
            .chain(opts.settings.iter().cloned())
            .collect();
        let backup = move |bins: &LocalBins, data: &Path, user: Option<&User>| {
            let mut backup = Command::new(bins.pg_bin_dir.join("pg_basebackup"));
            backup
                .arg("-D")
                .arg(data)
                .args(["-h", "127.0.0.1", "-p", &primary_port.to_string()])
                .args(["-U", "postgres", "-R", "-X", "stream", "-c", "fast"])
                .stdin(Stdio::null());
            as_user(&mut backup, user);
            let out = backup.output().map_err(|e| start_err("standby", e))?;
            if !out.status.success() {
                return Err(start_err(
                    "standby",
                    format!(
                        "pg_basebackup failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                ));
            }
            Ok(())
        };
        Self::launch("standby", bins, Home::Temp("standby"), settings, backup).await
    }
}

/// Where a cluster's `data/` and `postgres.log` live.
enum Home {
    /// A new private temp dir named after this, deleted on drop.
    Temp(&'static str),
    /// This dir, created if missing and kept on drop.
    Kept(PathBuf),
}

/// `initdb` into `data`, as `user` (trust auth, UTF8, C locale, no fsync).
fn initdb(bins: &LocalBins, data: &Path, user: Option<&User>) -> Result<(), BackendError> {
    let mut initdb = Command::new(bins.pg_bin_dir.join("initdb"));
    initdb
        .arg("-D")
        .arg(data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "-N",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .stdin(Stdio::null());
    as_user(&mut initdb, user);
    let out = initdb.output().map_err(|e| start_err("postgres", e))?;
    if !out.status.success() {
        return Err(start_err(
            "postgres",
            format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

fn as_user(cmd: &mut Command, user: Option<&User>) {
    if let Some(u) = user {
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
}

/// A fresh temp dir owned by the server's user and private to it (Postgres checks both).
fn private_dir(what: &str, user: Option<&User>) -> Result<tempfile::TempDir, BackendError> {
    let dir = make_dir(what).map_err(|e| start_err("postgres", e))?;
    make_private(dir.path(), user)?;
    Ok(dir)
}

/// Owned by the server's user and closed to everyone else (Postgres insists on 0700).
fn make_private(dir: &Path, user: Option<&User>) -> Result<(), BackendError> {
    if let Some(u) = user {
        nix::unistd::chown(dir, Some(u.uid), Some(u.gid))
            .map_err(|e| start_err("postgres", format!("chown {}: {e}", dir.display())))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| start_err("postgres", e))
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT = fast shutdown: roll back sessions, exit, no checkpoint wait that matters.
            stop_child(&mut child, Signal::SIGINT);
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// Extra settings for a throwaway Redis (the cache-stampede lab uses a small `maxmemory`).
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// e.g. `Some("2mb")`
    pub maxmemory: Option<String>,
    /// e.g. `Some("allkeys-lru")`
    pub maxmemory_policy: Option<String>,
}

/// A throwaway redis-server with no persistence. Stopped and deleted on drop.
pub struct LocalRedis {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    pub port: u16,
    pub ready_time: Duration,
}

impl std::fmt::Debug for LocalRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRedis")
            .field("port", &self.port)
            .finish()
    }
}

impl LocalRedis {
    pub async fn start(bins: &LocalBins, opts: &RedisOptions) -> Result<Self, BackendError> {
        let dir = make_dir("redis").map_err(|e| start_err("redis", e))?;
        let port = free_port().map_err(|e| start_err("redis", e))?;
        let mut cmd = Command::new(&bins.redis_server);
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"));
        if let Some(m) = &opts.maxmemory {
            cmd.args(["--maxmemory", m]);
        }
        if let Some(p) = &opts.maxmemory_policy {
            cmd.args(["--maxmemory-policy", p]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let started = Instant::now();
        let child = spawn_supervised(cmd).map_err(|e| start_err("redis", e))?;
        let mut this = Self {
            child: Some(child),
            dir: Some(dir),
            port,
            ready_time: Duration::ZERO,
        };
        let client = redis::Client::open(this.url()).map_err(|e| start_err("redis", e))?;
        loop {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            {
                break;
            }
            let exited = this
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || started.elapsed() > READY_TIMEOUT {
                let log = this
                    .dir
                    .as_ref()
                    .map(|d| log_tail(&d.path().join("redis.log")))
                    .unwrap_or_default();
                return Err(start_err(
                    "redis",
                    format!("redis-server did not answer PING; log tail:\n{log}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        this.ready_time = started.elapsed();
        Ok(this)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stop the server now (labs use this to show what happens when Redis goes away).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Signal::SIGTERM);
        }
    }

    /// Crash it: SIGKILL, no shutdown of any kind. Without persistence, every key is gone.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// Count this machine's `labkit-*` temp dirs and postgres/redis-server processes; tests and
/// the SIGINT check in the README use it to prove nothing was left behind.
pub fn leftovers() -> (usize, usize) {
    let dirs = fs::read_dir(std::env::temp_dir())
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
                .count()
        })
        .unwrap_or(0);
    let procs = fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                    let comm = comm.trim();
                    comm == "postgres" || comm == "redis-server"
                })
                .count()
        })
        .unwrap_or(0);
    (dirs, procs)
}
