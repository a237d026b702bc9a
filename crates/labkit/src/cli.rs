//! The command line shared by the `lab` binary and each lab's own `main.rs`.
//!
//! stdout carries only the report (so `--format json | jq` works); progress bars, logs and
//! hints go to stderr. Ctrl-C / SIGTERM drop the running lab, whose guards stop throwaway
//! servers, delete temp dirs and drop the scratch database, then exit 130.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

use crate::backend::{BackendChoice, Backends, local};
use crate::ctx::{LabCtx, LoadKnobs, RunOptions, Scale};
use crate::lab::{Lab, run_lab};
use crate::report::Report;

#[derive(Parser, Debug)]
#[command(
    name = "lab",
    version,
    about = "Backend Labs: runnable backend war stories on real Postgres and Redis"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the labs.
    List(ListArgs),
    /// Run labs and print their reports.
    Run(RunArgs),
    /// Serve a lab's HTTP app so you can point curl, wrk or a GraphQL client at it.
    Serve(ServeArgs),
    /// Compare two runs finding by finding (each a report.json or a `run --out` directory).
    Compare(CompareArgs),
    /// Show which backends are available and how fast the local ones start.
    Doctor(BackendArgs),
    /// Print a shell completion script: `lab completions bash > ~/.local/share/bash-completion/completions/lab`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value = "text")]
    pub format: ListFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// The reference run (e.g. a lab's baseline.json, or last week's --out directory).
    pub a: PathBuf,
    /// The run to judge against it.
    pub b: PathBuf,
    /// Exit 1 when a latency or throughput finding of B is worse than A's by more than PCT percent.
    #[arg(long, value_name = "PCT", value_parser = parse_pct)]
    pub fail_on_regression: Option<f64>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

fn parse_pct(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok(p),
        _ => Err("expected a percentage, e.g. 20".into()),
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct BackendArgs {
    /// Where Postgres and Redis come from.
    #[arg(long, value_enum, default_value = "auto", env = "LAB_BACKEND")]
    pub backend: BackendChoice,
}

/// The load knobs (pgbench/oha habits). Each overrides the scale's default in every load
/// phase of the lab; a lab that cannot honour one says so in its report notes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LoadArgs {
    /// Concurrent clients in each load phase.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub clients: Option<u32>,
    /// Length of each measured load phase (e.g. 500ms, 10s, 2m).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Open-loop arrival rate, requests per second.
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Unmeasured warm-up before each measured phase (e.g. 1s).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub warmup: Option<Duration>,
}

impl LoadArgs {
    pub fn knobs(&self) -> LoadKnobs {
        LoadKnobs {
            clients: self.clients.map(|c| c as usize),
            duration: self.duration,
            rate: self.rate,
            warmup: self.warmup,
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = match s.trim().parse::<f64>() {
        // A bare number is seconds, as in pgbench -T.
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::from_secs_f64(secs),
        _ => humantime::parse_duration(s.trim())
            .map_err(|e| format!("{e} (expected e.g. 500ms, 10s, 2m)"))?,
    };
    if d.is_zero() {
        return Err("must be more than zero (e.g. 500ms, 10s)".into());
    }
    Ok(d)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1_000_000.0 => Ok(r),
        _ => Err("expected requests per second, a number above 0 (e.g. 500)".into()),
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Lab ids, or `all` (may be omitted in a single lab's own binary).
    pub labs: Vec<String>,
    #[arg(long, value_enum, default_value = "default")]
    pub scale: Scale,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub load: LoadArgs,
    /// No progress bars on stderr (they are never drawn when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Write report.md, report.json and charts per lab into DIR/<lab>/, plus DIR/index.md.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Keep the scratch database and print its URL.
    #[arg(long)]
    pub keep: bool,
    /// After the run, compare it with the lab's committed baseline (the README's numbers).
    #[arg(long)]
    pub baseline: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// The lab to serve (may be omitted in a single lab's own binary).
    pub lab: Option<String>,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    #[arg(long, value_enum, default_value = "smoke")]
    pub scale: Scale,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Md,
    Json,
}

/// Entry point for a binary holding `labs`. In a binary with one lab (a lab's own
/// `main.rs`), `run` may omit the id and no subcommand at all means `run`.
pub fn main(labs: Vec<Box<dyn Lab>>) -> ExitCode {
    crate::telemetry::init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async {
        tokio::select! {
            code = dispatch(cli, &labs) => code,
            sig = shutdown_signal() => {
                // Returning drops `dispatch`'s future: every guard in it (servers, temp dirs,
                // scratch database) cleans up on the way out.
                eprintln!("\n{sig}: stopping, cleaning up throwaway servers and scratch data");
                ExitCode::from(signal_exit_code(sig))
            }
        }
    });
    // Wait for cleanup threads/tasks spawned by guards, bounded.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    code
}

/// The shell's convention: 128 + the signal's number (SIGINT 130, SIGTERM 143).
pub fn signal_exit_code(sig: &str) -> u8 {
    match sig {
        "SIGTERM" => 143,
        _ => 130,
    }
}

/// Resolve after SIGINT or SIGTERM, naming the signal.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

async fn dispatch(cli: Cli, labs: &[Box<dyn Lab>]) -> ExitCode {
    let command = match cli.command {
        Some(c) => c,
        None if labs.len() == 1 => Command::Run(RunArgs {
            labs: vec![labs[0].id().to_string()],
            scale: Scale::Default,
            seed: 42,
            format: Format::Text,
            load: LoadArgs::default(),
            no_progress: false,
            out: None,
            keep: false,
            baseline: false,
            backend: BackendArgs {
                backend: BackendChoice::from_env().unwrap_or_default(),
            },
        }),
        None => {
            eprintln!("usage: lab <list|run|serve|doctor> (try `lab --help`)");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::List(args) => {
            list(args, labs);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run(args, labs).await,
        Command::Serve(args) => serve(args, labs).await,
        Command::Compare(args) => Ok(compare(args)),
        Command::Doctor(args) => doctor(args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "lab", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn list(args: ListArgs, labs: &[Box<dyn Lab>]) {
    match args.format {
        ListFormat::Text => {
            for lab in labs {
                println!("{:<26} {}", lab.id(), lab.title());
            }
        }
        ListFormat::Json => {
            let list: Vec<_> = labs
                .iter()
                .map(|l| {
                    serde_json::json!({
                        "id": l.id(),
                        "title": l.title(),
                        "finding_keys": l.finding_keys(),
                        "has_baseline": l.baseline().is_some(),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "labs": list }))
                    .expect("lab list serializes")
            );
        }
    }
}

fn compare(args: CompareArgs) -> ExitCode {
    let load = |p: &Path| crate::compare::load(p);
    let (a, b) = match (load(&args.a), load(&args.b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let c = crate::compare::compare(
        &args.a.display().to_string(),
        &a,
        &args.b.display().to_string(),
        &b,
    );
    if c.rows.is_empty() {
        eprintln!(
            "error: the two runs share no lab and finding (A has {}, B has {})",
            a.len(),
            b.len()
        );
        return ExitCode::from(2);
    }
    match args.format {
        Format::Text => print!("{}", crate::compare::to_text(&c)),
        Format::Md => print!("{}", crate::compare::to_markdown(&c)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&c).expect("comparison serializes")
        ),
    }
    for w in &c.environment_warnings {
        eprintln!("warning: not comparable — {w}");
    }
    if let Some(pct) = args.fail_on_regression {
        let bad = c.regressions(pct);
        if !bad.is_empty() {
            for r in &bad {
                eprintln!(
                    "regression: {} {} is {:.0} % worse ({} → {})",
                    r.lab,
                    r.key,
                    r.worse_pct,
                    crate::report::format_value(r.a, &r.unit),
                    crate::report::format_value(r.b, &r.unit)
                );
            }
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// "your laptop vs the README": the fresh run against the lab's committed baseline.
fn compare_with_baseline(lab: &dyn Lab, report: &Report, format: Format) -> String {
    let Some(base) = lab.baseline().and_then(crate::compare::parse_report) else {
        return format!("no baseline is committed for {} yet\n", lab.id());
    };
    let env = &base["environment"];
    let machine = format!(
        "{} cores, {}, {:.0} GiB, {} backend, measured {}",
        env["cores"],
        env["cpu"].as_str().unwrap_or("?"),
        env["memory_gib"].as_f64().unwrap_or(0.0),
        env["backend"].as_str().unwrap_or("?"),
        base["started_at"].as_str().unwrap_or("?")
    );
    let fresh =
        serde_json::from_str::<serde_json::Value>(&report.to_json()).expect("a report is JSON");
    let c = crate::compare::compare(
        &format!("the README (baseline.json: {machine})"),
        &[base],
        "your machine (this run)",
        &[fresh],
    );
    let mut out = format!("\n━━ {}: your machine vs the README ━━\n", lab.id());
    out.push_str(&match format {
        Format::Md => crate::compare::to_markdown(&c),
        _ => crate::compare::to_text(&c),
    });
    out
}

fn pick<'a>(labs: &'a [Box<dyn Lab>], ids: &[String]) -> Result<Vec<&'a dyn Lab>, String> {
    if ids.is_empty() {
        return match labs {
            [only] => Ok(vec![only.as_ref()]),
            _ => Err(format!(
                "name a lab or `all`; known labs: {}",
                labs.iter().map(|l| l.id()).collect::<Vec<_>>().join(", ")
            )),
        };
    }
    if ids.iter().any(|i| i == "all") {
        return Ok(labs.iter().map(|l| l.as_ref()).collect());
    }
    ids.iter()
        .map(|id| {
            labs.iter()
                .find(|l| l.id() == id)
                .map(|l| l.as_ref())
                .ok_or_else(|| {
                    let known: Vec<&str> = labs.iter().map(|l| l.id()).collect();
                    format!("unknown lab `{id}`; known labs: {}", known.join(", "))
                })
        })
        .collect()
}

async fn run(args: RunArgs, labs: &[Box<dyn Lab>]) -> anyhow::Result<ExitCode> {
    let chosen = match pick(labs, &args.labs) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(2));
        }
    };
    let backends = Backends::resolve(args.backend.backend).await?;
    eprintln!(
        "backend: {} (postgres {}, redis {})",
        backends.kind,
        crate::backend::redact(&backends.admin_url),
        crate::backend::redact(&backends.redis_url)
    );
    crate::progress::set_enabled(!args.no_progress);
    let opts = RunOptions {
        scale: args.scale,
        seed: args.seed,
        keep: args.keep,
        load: args.load.knobs(),
    };
    let mut reports = Vec::new();
    let mut kept = Vec::new();
    for lab in chosen {
        eprintln!("running {} at scale {} ...", lab.id(), opts.scale);
        let outcome = run_lab(lab, &backends, opts).await?;
        if let Some(url) = outcome.kept_database {
            kept.push(url);
        }
        if args.format != Format::Json {
            print!("{}", render(&outcome.report, args.format));
        }
        if args.baseline {
            let table = compare_with_baseline(lab, &outcome.report, args.format);
            // stdout stays one JSON document with --format json; the table goes to stderr.
            if args.format == Format::Json {
                eprint!("{table}");
            } else {
                print!("{table}");
            }
        }
        if let Some(dir) = &args.out {
            write_out(dir, &outcome.report)?;
        }
        reports.push(outcome.report);
    }
    if args.format == Format::Json {
        // One document on stdout: the report itself for one lab, a list for several.
        if reports.len() == 1 {
            println!("{}", reports[0].to_json());
        } else {
            let doc = serde_json::json!({ "schema_version": crate::report::SCHEMA_VERSION, "reports": reports });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
    }
    if let Some(dir) = &args.out {
        write_index(dir, &reports)?;
        eprintln!(
            "wrote {} (open it in a browser) and {}",
            dir.join("index.html").display(),
            dir.join("index.md").display()
        );
    }
    if !kept.is_empty() {
        for url in &kept {
            eprintln!("kept scratch database: psql '{url}'");
        }
        if backends.kind != crate::backend::BackendKind::Env {
            eprintln!(
                "the {} backend stops when this process ends: press Ctrl-C when you are done",
                backends.kind
            );
            std::future::pending::<()>().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Text => report.to_text(),
        Format::Md => report.to_markdown(),
        Format::Json => report.to_json(),
    }
}

fn write_out(dir: &Path, report: &Report) -> anyhow::Result<()> {
    let d = dir.join(&report.lab);
    std::fs::create_dir_all(&d)?;
    std::fs::write(d.join("report.md"), report.to_markdown())?;
    std::fs::write(d.join("report.json"), report.to_json())?;
    for chart in &report.charts {
        match crate::chart::render_svg(chart) {
            Ok(svg) => std::fs::write(d.join(format!("{}.svg", chart.id)), svg)?,
            Err(e) => eprintln!("warning: chart {} not drawn: {e}", chart.id),
        }
    }
    Ok(())
}

fn write_index(dir: &Path, reports: &[Report]) -> anyhow::Result<()> {
    let mut md =
        String::from("# Backend Labs — reports\n\n| lab | title | headline |\n|---|---|---|\n");
    for r in reports {
        md.push_str(&format!(
            "| [{}]({}/report.md) | {} | {} |\n",
            r.lab, r.lab, r.title, r.sentence
        ));
    }
    std::fs::write(dir.join("index.md"), md)?;
    std::fs::write(dir.join("index.html"), crate::html::index(reports))?;
    Ok(())
}

async fn serve(args: ServeArgs, labs: &[Box<dyn Lab>]) -> anyhow::Result<ExitCode> {
    let ids: Vec<String> = args.lab.iter().cloned().collect();
    let lab = match pick(labs, &ids) {
        Ok(l) if l.len() == 1 => l[0],
        Ok(_) => {
            eprintln!("error: `lab serve` takes one lab id");
            return Ok(ExitCode::from(2));
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(2));
        }
    };
    let backends = Backends::resolve(args.backend.backend).await?;
    let ctx = LabCtx::new(
        &backends,
        lab.id(),
        RunOptions {
            scale: args.scale,
            seed: args.seed,
            ..RunOptions::default()
        },
    )
    .await?;
    let app = match lab.serve(&ctx).await {
        Ok(app) => app,
        Err(e) => {
            // Close the pools before the servers go, so the error is the last word.
            ctx.finish().await;
            return Err(e);
        }
    };
    let Some(app) = app else {
        eprintln!(
            "lab `{}` has no HTTP server; `lab run {}` runs it",
            lab.id(),
            lab.id()
        );
        ctx.finish().await;
        return Ok(ExitCode::from(2));
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on 127.0.0.1:{}: {e} (hint: --port 0 picks a free port)",
                args.port
            )
        })?;
    let base = format!("http://{}", listener.local_addr()?);
    eprintln!(
        "{} listening on {base} (backend: {}); Ctrl-C to stop\n",
        lab.id(),
        backends.kind
    );
    println!("{}", app.banner.replace("{base}", &base));
    let keep_alive = app.keep_alive;
    // The signal that ends the server decides the exit code (130 SIGINT, 143 SIGTERM): the
    // server may finish its graceful shutdown before `main` sees the same signal, and a
    // stopped server must not exit 0.
    let (sig_tx, sig_rx) = tokio::sync::oneshot::channel();
    crate::http::serve(listener, app.router, async move {
        let _ = sig_tx.send(shutdown_signal().await);
    })
    .await?;
    drop(keep_alive);
    ctx.finish().await;
    let sig = sig_rx.await.unwrap_or("SIGINT");
    eprintln!("{sig}: stopped {}", lab.id());
    Ok(ExitCode::from(signal_exit_code(sig)))
}

async fn doctor(args: BackendArgs) -> anyhow::Result<ExitCode> {
    println!("Backend Labs doctor\n");
    let db = std::env::var("DATABASE_URL").ok().filter(|v| !v.is_empty());
    let redis = std::env::var("REDIS_URL").ok().filter(|v| !v.is_empty());
    println!(
        "env:    DATABASE_URL {}, REDIS_URL {}",
        db.as_deref()
            .map(crate::backend::redact)
            .unwrap_or_else(|| "unset".into()),
        redis
            .as_deref()
            .map(crate::backend::redact)
            .unwrap_or_else(|| "unset".into())
    );
    match crate::backend::docker::engine_answers().await {
        Ok(()) => println!("docker: engine answers (testcontainers can start postgres and redis)"),
        Err(e) => println!("docker: unavailable — {e}"),
    }
    match local::LocalBins::find() {
        Ok(b) => {
            println!(
                "local:  postgres binaries in {}, redis-server at {}",
                b.pg_bin_dir.display(),
                b.redis_server.display()
            );
            let t0 = Instant::now();
            match Backends::resolve(BackendChoice::Local).await {
                Ok(be) => {
                    if let Some(r) = be.ready {
                        println!(
                            "        started both in {:.2} s: initdb {:.2} s, postgres ready {:.3} s after start, redis ready {:.3} s",
                            t0.elapsed().as_secs_f64(),
                            r.postgres_init.as_secs_f64(),
                            r.postgres_ready.as_secs_f64(),
                            r.redis_ready.as_secs_f64()
                        );
                    }
                    // A streaming replica, as the replica-lag lab starts one.
                    if let Some(primary) = be.local_postgres() {
                        let t2 = Instant::now();
                        match primary.standby(&Default::default()).await {
                            Ok(standby) => {
                                println!(
                                    "        replica: pg_basebackup + hot standby streaming in {:.2} s (backup {:.2} s, ready {:.3} s)",
                                    t2.elapsed().as_secs_f64(),
                                    standby.init_time.as_secs_f64(),
                                    standby.ready_time.as_secs_f64()
                                );
                                drop(standby);
                            }
                            Err(e) => println!("        replica: could not start — {e}"),
                        }
                    }
                    let t1 = Instant::now();
                    drop(be);
                    println!(
                        "        stopped and deleted in {:.3} s",
                        t1.elapsed().as_secs_f64()
                    );
                }
                Err(e) => println!("        could not start: {e}"),
            }
        }
        Err(e) => println!("local:  unavailable — {e}"),
    }
    let (dirs, procs) = local::leftovers();
    println!(
        "        this machine now: {dirs} labkit temp dirs, {procs} postgres/redis-server processes (yours included)"
    );
    let replica = match std::env::var("REPLICA_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        Some(u) => {
            use sqlx::Connection;
            let check = async {
                let mut c = sqlx::PgConnection::connect(&u).await?;
                let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                    .fetch_one(&mut c)
                    .await?;
                let _ = c.close().await;
                Ok::<_, sqlx::Error>(standby)
            };
            let state = match tokio::time::timeout(Duration::from_secs(5), check).await {
                Ok(Ok(true)) => "answers and is a hot standby (pg_is_in_recovery)".to_string(),
                Ok(Ok(false)) => {
                    "answers but is NOT in recovery: a primary, not a replica".to_string()
                }
                Ok(Err(e)) => format!("does not answer: {e}"),
                Err(_) => "did not answer within 5 s".to_string(),
            };
            format!(
                "REPLICA_URL {} {state} (used by the env backend)",
                crate::backend::redact(&u)
            )
        }
        None => "REPLICA_URL unset: on the env backend, replica scenarios are skipped; \
                 the local backend starts its own standby"
            .into(),
    };
    println!("replica: {replica}");
    println!();
    match Backends::resolve(args.backend).await {
        Ok(be) => {
            if be.kind == crate::backend::BackendKind::Env {
                let swept = crate::ctx::sweep_now(&be.admin_url, &be.redis_url).await;
                println!(
                    "swept {} scratch database(s) of runs on this host that died without cleaning up{}",
                    swept.len(),
                    if swept.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", swept.join(", "))
                    }
                );
            }
            let ctx = LabCtx::new(&be, "doctor", RunOptions::default()).await?;
            println!(
                "selected ({:?}): {}",
                args.backend,
                ctx.environment.one_line()
            );
            ctx.finish().await;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("selected ({:?}): none — {e}", args.backend);
            Ok(ExitCode::FAILURE)
        }
    }
}
