//! The run's numbers as findings, tables, notes, charts and the sentence.

use labkit::{Better, Chart, LabCtx, Report, Table};

use crate::durability::CommitRate;
use crate::insert_methods::{MAX_BIND_PARAMETERS, Method, MethodRun};
use crate::run::Outcome;
use crate::target::Target;

/// Every key the report may carry (the issue's, then this lab's own).
pub const FINDING_KEYS: &[&str] = &[
    "single_row_rows_per_s",
    "tx_100_rows_per_s",
    "tx_1000_rows_per_s",
    "multi_values_rows_per_s",
    "unnest_rows_per_s",
    "copy_text_rows_per_s",
    "copy_binary_rows_per_s",
    "copy_over_single_row_x",
    "wal_bytes_per_row_single",
    "wal_bytes_per_row_copy",
    "bind_parameter_limit_error",
    "sync_commit_off_speedup_x",
    "pool_size_best_throughput",
    "pool_size_best_p99_ms",
    "pool_size_largest_p99_ms",
    "queue_api_p99_ms",
    "direct_api_p99_ms",
    "queue_end_to_end_p99_ms",
    "queue_lost_on_redis_crash",
    "fsync_on",
    // this lab's own
    "same_rows_every_method",
    "single_row_commits_per_s",
    "pgbench_single_row_tps",
    "sync_commit_on_rows_per_s",
    "sync_commit_off_rows_per_s",
    "sync_on_lost_on_crash",
    "sync_off_lost_on_crash",
    "group_commit_rows_per_s",
    "group_commit_commits_per_flush",
    "commit_delay_rows_per_s",
    "pool_size_offered_rows_per_s",
    "pool_size_best_rows_per_s",
    "queue_acked_before_redis_crash",
    "queue_replayed_after_writer_crash",
    "queue_missing_after_writer_crash",
];

fn method(out: &Outcome, m: Method) -> Option<&MethodRun> {
    out.methods.iter().find(|r| r.method == m)
}

/// Commits per WAL flush, or `?` where the server has no `pg_stat_wal`.
fn flushes(p: &CommitRate) -> String {
    p.commits_per_flush()
        .map_or("?".to_string(), |x| format!("{x:.1}"))
}

fn ms(v: f64) -> String {
    format!("{v:.2}")
}

pub fn build(ctx: &LabCtx, title: &str, target: &Target, out: &Outcome) -> Report {
    let mut r = ctx.report(title);
    settings(&mut r, target);
    insert_methods(&mut r, out);
    durability(&mut r, out);
    pool_sizes(&mut r, out);
    queue(&mut r, out);
    r.note(
        "Index cost per write is not re-measured here: the seek-vs-scan lab inserts the same \
         rows into a table with 0, 1, 3 and 6 indexes (labs/seek-vs-scan, `write_cost`). This \
         table has one index, its primary key.",
    );
    sentence(&mut r, out);
    r
}

fn settings(r: &mut Report, target: &Target) {
    // The environment line describes the server the numbers come from: this lab's own, not
    // the run's throwaway cluster (fsync off) that labkit described.
    for (k, v) in &target.settings {
        r.environment.postgres_settings.insert(k.clone(), v.clone());
    }
    r.flag(
        "fsync_on",
        "fsync was on for the writes measured here",
        target.fsync_on(),
    );
    match &target.fallback_reason {
        None => r.note(format!(
            "Durability settings: {} — on a Postgres started for this lab (the run's throwaway \
             cluster keeps fsync off; commit cost is this lab's story, so it writes to a server \
             of its own that flushes like production).",
            target.settings_line()
        )),
        Some(why) => r.note(format!(
            "Durability settings: {} — measured on the run's own Postgres with that server's \
             settings, because no dedicated server could be started ({why}).{}",
            target.settings_line(),
            if target.fsync_on() {
                ""
            } else {
                " With fsync off a commit costs a write() and no disk flush: the single-row \
                 and synchronous_commit numbers understate what production pays."
            }
        )),
    };
}

fn insert_methods(r: &mut Report, out: &Outcome) {
    let Some(single) = method(out, Method::SingleRow) else {
        return;
    };
    let rows = single.rows;
    let mut t = Table::new(
        format!("Insert methods: the same {rows} rows, one connection"),
        &[
            "method",
            "rows/s",
            "vs single row",
            "statements",
            "commits",
            "commits/s",
            "WAL bytes/row",
            "checksum",
        ],
    );
    for m in &out.methods {
        r.finding(
            &format!("{}_rows_per_s", m.method.key()),
            &format!("{}: rows/s", m.method.label()),
            m.rows_per_s(),
            "rows/s",
        );
        t.row([
            m.method.label().to_string(),
            format!("{:.0}", m.rows_per_s()),
            format!("{:.1}x", m.rows_per_s() / single.rows_per_s()),
            m.method.statements(m.rows).to_string(),
            m.method.commits(m.rows).to_string(),
            format!("{:.0}", m.commits_per_s()),
            format!("{:.0}", m.wal_bytes_per_row()),
            format!(
                "{} ({} rows)",
                &m.checksum.md5[..8.min(m.checksum.md5.len())],
                m.checksum.rows
            ),
        ]);
    }
    r.table(t);
    r.finding(
        "single_row_commits_per_s",
        "single-row autocommit: commits/s (each a WAL flush)",
        single.commits_per_s(),
        "commits/s",
    );
    r.finding(
        "wal_bytes_per_row_single",
        "WAL per row, one INSERT per transaction",
        single.wal_bytes_per_row(),
        "bytes",
    );
    r.better("wal_bytes_per_row_single", Better::Lower);
    if let Some(copy) = method(out, Method::CopyBinary) {
        r.finding(
            "copy_over_single_row_x",
            "COPY (binary) rows/s over single-row autocommit rows/s",
            copy.rows_per_s() / single.rows_per_s(),
            "x",
        );
        r.finding(
            "wal_bytes_per_row_copy",
            "WAL per row, COPY (binary)",
            copy.wal_bytes_per_row(),
            "bytes",
        );
        r.better("wal_bytes_per_row_copy", Better::Lower);
    }
    let same = out
        .methods
        .iter()
        .all(|m| m.checksum == single.checksum && m.checksum.rows as usize == rows);
    r.flag(
        "same_rows_every_method",
        "every method wrote exactly the same rows (equal checksums)",
        same,
    );
    if let Some(b) = &out.bind_limit {
        r.flag(
            "bind_parameter_limit_error",
            "a multi-row INSERT over 65,535 bind parameters failed",
            b.values_error.is_some(),
        );
        r.note(format!(
            "The bind-parameter limit: one multi-row INSERT of {} rows × 6 columns = {} \
             parameters (the protocol's Bind message counts them in 16 bits, max {}) failed \
             with: \"{}\" — sqlx refuses it before sending anything. The same rows as one INSERT ... SELECT FROM UNNEST($1::uuid[], …) — \
             six array parameters — inserted {} rows. COPY has no parameters at all.",
            b.rows,
            b.parameters,
            MAX_BIND_PARAMETERS,
            b.values_error.as_deref().unwrap_or("(no error)"),
            b.unnest_inserted
        ));
    }
    match &out.pgbench_single {
        Some(Ok(p)) => {
            r.finding(
                "pgbench_single_row_tps",
                "pgbench, the same single-row INSERT, 1 client (tps = rows/s)",
                p.tps,
                "tx/s",
            );
            r.note(format!(
                "Anchor: pgbench ran the same single-row autocommit INSERT on the same server \
                 ({}): {:.0} rows/s, against this lab's {:.0} rows/s — the client is not what \
                 limits one-row-per-commit, the flush is.",
                p.command,
                p.tps,
                single.rows_per_s()
            ));
        }
        Some(Err(e)) => {
            r.skipped("pgbench anchor", e.clone());
        }
        None => {}
    }
}

fn durability(r: &mut Report, out: &Outcome) {
    let mut t = Table::new(
        "Commit cost: single-row autocommit INSERTs, closed loop",
        &[
            "phase",
            "writers",
            "rows/s",
            "p50 ms",
            "p99 ms",
            "commits per WAL flush",
        ],
    );
    let phases = out
        .sync_on
        .iter()
        .chain(out.sync_off.iter())
        .chain(out.group_commit.iter());
    for p in phases {
        let s = &p.result.summary;
        t.row([
            p.label.clone(),
            p.writers.to_string(),
            format!("{:.0}", s.throughput_per_s),
            ms(s.p50_ms),
            ms(s.p99_ms),
            flushes(p),
        ]);
    }
    r.table(t);
    if let (Some(on), Some(off)) = (&out.sync_on, &out.sync_off) {
        let (son, soff) = (&on.result.summary, &off.result.summary);
        r.measured(
            "sync_commit_on_rows_per_s",
            "1 writer, synchronous_commit=on: rows/s",
            son.throughput_per_s,
            "rows/s",
            son.count,
        );
        r.measured(
            "sync_commit_off_rows_per_s",
            "1 writer, synchronous_commit=off: rows/s",
            soff.throughput_per_s,
            "rows/s",
            soff.count,
        );
        r.finding(
            "sync_commit_off_speedup_x",
            "synchronous_commit=off over on, 1 writer",
            soff.throughput_per_s / son.throughput_per_s.max(1e-9),
            "x",
        );
    }
    if let Some(no_delay) = out.group_commit.first() {
        let s = &no_delay.result.summary;
        r.measured(
            "group_commit_rows_per_s",
            &format!("{} writers, commit_delay=0: rows/s", no_delay.writers),
            s.throughput_per_s,
            "rows/s",
            s.count,
        );
        if let Some(x) = no_delay.commits_per_flush() {
            r.finding(
                "group_commit_commits_per_flush",
                &format!(
                    "{} writers: commits carried by one WAL flush",
                    no_delay.writers
                ),
                x,
                "x",
            );
        }
        if let Some(delay) = out.group_commit.get(1) {
            let d = &delay.result.summary;
            r.measured(
                "commit_delay_rows_per_s",
                &format!("{} writers, commit_delay=1000us: rows/s", delay.writers),
                d.throughput_per_s,
                "rows/s",
                d.count,
            );
            let (t0, t1) = (s.throughput_per_s, d.throughput_per_s);
            let verdict = if t1 > 1.05 * t0 {
                "it paid here: more commits per flush bought throughput"
            } else if t1 < 0.95 * t0 {
                "it cost throughput here: the waits were not repaid by fuller flushes"
            } else {
                "throughput did not move beyond 5 %: the flushes were already shared"
            };
            r.note(format!(
                "Group commit: with {} writers each WAL flush carried {} commits on average \
                 with no setting at all (a backend's flush covers every commit record queued \
                 behind it); commit_delay=1000us made it {} commits per flush, throughput \
                 {t0:.0} → {t1:.0} rows/s and p99 {:.2} → {:.2} ms — {verdict}.",
                no_delay.writers,
                flushes(no_delay),
                flushes(delay),
                s.p99_ms,
                d.p99_ms
            ));
        }
    }
    if let Some(why) = &out.commit_delay_skipped {
        r.skipped("commit_delay", why.clone());
    }
    if let (Some(Ok(p)), Some(g)) = (&out.pgbench_many, out.group_commit.first()) {
        let ours = g.result.summary.throughput_per_s;
        let reading = if p.tps > 1.3 * ours {
            "pgbench is well ahead: with this many writers the lab's own client (sqlx and \
             tokio, on the same cores as the server) is part of what it measures"
        } else {
            "the lab's client keeps up with pgbench (C over libpq): the server — the flush and \
             the WAL locks — is the limit, not the client"
        };
        r.note(format!(
            "pgbench with {} clients on the same INSERT: {:.0} rows/s against this lab's {:.0} \
             rows/s with {} writers ({}): {reading}.",
            p.clients, p.tps, ours, g.writers, p.command
        ));
    }
    if let Some(why) = &out.crash_skipped {
        r.skipped(
            "crash after acknowledged commits",
            format!("needs a Postgres the lab may kill: {why}"),
        );
    }
    if out.crashes.is_empty() {
        return;
    }
    let mut t = Table::new(
        "Crash (SIGKILL of the whole server) right after acknowledged commits",
        &[
            "synchronous_commit",
            "acknowledged",
            "lost after recovery",
            "restart to ready ms",
            "of which: fsync of the data dir ms",
            "WAL replay ms",
        ],
    );
    for c in &out.crashes {
        let key = if c.synchronous_commit {
            "sync_on_lost_on_crash"
        } else {
            "sync_off_lost_on_crash"
        };
        let mode = if c.synchronous_commit { "on" } else { "off" };
        r.finding(
            key,
            &format!("synchronous_commit={mode}: acknowledged rows lost in a server crash"),
            c.lost as f64,
            "count",
        );
        r.better(key, Better::Lower);
        t.row([
            mode.to_string(),
            c.acknowledged.to_string(),
            c.lost.to_string(),
            format!("{:.0}", c.recovery.as_secs_f64() * 1000.0),
            c.phases.map_or("?".into(), |p| {
                format!("{:.0}", p.sync_data_dir.as_secs_f64() * 1000.0)
            }),
            c.phases.map_or("?".into(), |p| {
                format!("{:.1}", p.replay.as_secs_f64() * 1000.0)
            }),
        ]);
    }
    r.table(t);
    r.note(
        "What synchronous_commit=off risks: COMMIT returns before its WAL is flushed; the WAL \
         writer flushes every wal_writer_delay (200 ms). Killing the server loses the \
         acknowledged commits still in the shared-memory WAL buffers (counted above); an OS \
         crash or power loss would also lose what was written but not flushed — up to 3 × \
         wal_writer_delay of commits, per the docs. This lab can kill processes, not the power, \
         so it measures the first and states the second. The database stays consistent either \
         way: it is the newest acknowledged transactions that vanish. The restart after each \
         crash is mostly Postgres fsyncing every file of the data directory before it replays \
         anything (recovery_init_sync_method = fsync; `syncfs` makes that one call): compare \
         the last two columns.",
    );
}

fn pool_sizes(r: &mut Report, out: &Outcome) {
    if out.pools.is_empty() {
        return;
    }
    r.finding(
        "pool_size_offered_rows_per_s",
        "offered write load in the pool-size sweep (70 % of 8 writers' capacity)",
        out.pool_rate,
        "rows/s",
    );
    let mut t = Table::new(
        format!(
            "Pool size at {:.0} single-row inserts/s offered (open loop)",
            out.pool_rate
        ),
        &[
            "pool",
            "rows/s",
            "p50 ms",
            "p99 ms",
            "L = λ·W",
            "active in Postgres",
            "what active backends did",
        ],
    );
    for p in &out.pools {
        let s = &p.result.summary;
        let waits = p
            .waits
            .top(3)
            .iter()
            .map(|(w, share)| format!("{w} {:.0}%", share * 100.0))
            .collect::<Vec<_>>()
            .join(", ");
        t.row([
            p.size.to_string(),
            format!("{:.0}", s.throughput_per_s),
            ms(s.p50_ms),
            ms(s.p99_ms),
            format!("{:.1}", p.in_system()),
            format!("{:.1}", p.waits.avg_active()),
            waits,
        ]);
    }
    r.table(t);
    r.chart(
        Chart::new(
            "pool_size_p99",
            "p99 of a single-row insert by pool size, same offered load",
            "pool size (connections)",
            "p99 (ms)",
        )
        .log_x()
        .log_y()
        .series(
            "p99",
            out.pools
                .iter()
                .map(|p| (p.size as f64, p.result.summary.p99_ms))
                .collect(),
        ),
    );
    let best = crate::pool_size::best(&out.pools);
    let largest = out.pools.iter().max_by_key(|p| p.size);
    if let (Some(b), Some(l)) = (best, largest) {
        r.finding(
            "pool_size_best_throughput",
            "pool size with the best throughput (lowest p99 among those within 2 % of the best)",
            b.size as f64,
            "connections",
        );
        r.measured(
            "pool_size_best_rows_per_s",
            &format!("pool of {}: rows/s", b.size),
            b.rows_per_s(),
            "rows/s",
            b.result.summary.count,
        );
        r.p99(
            "pool_size_best_p99_ms",
            &format!("pool of {}: p99", b.size),
            &b.result.summary,
        );
        r.p99(
            "pool_size_largest_p99_ms",
            &format!("pool of {}: p99", l.size),
            &l.result.summary,
        );
        let smallest = &out.pools[0];
        let cores = r.environment.cores;
        r.note(format!(
            "Little's law, L = λ·W: at {:.0} rows/s a pool of {} kept {:.1} requests in the \
             system (pool queue + Postgres) on average with p99 {:.2} ms; the pool of {} held \
             {:.1} with p99 {:.2} ms ({:.1} backends active in Postgres on average, on {} \
             cores). A pool smaller than the L the database needs queues in the application \
             (the pool of {}: {:.0} rows/s, p99 {:.2} ms); a much bigger one moves that queue \
             into Postgres, where backends take turns on the CPUs and on the WAL locks. \
             HikariCP's \"About Pool Sizing\" puts the knee at cores × 2 + spindles = {}.",
            out.pool_rate,
            b.size,
            b.in_system(),
            b.result.summary.p99_ms,
            l.size,
            l.in_system(),
            l.result.summary.p99_ms,
            l.waits.avg_active(),
            cores,
            smallest.size,
            smallest.rows_per_s(),
            smallest.result.summary.p99_ms,
            cores * 2 + 1
        ));
    }
}

fn queue(r: &mut Report, out: &Outcome) {
    if let Some(why) = &out.queue_skipped {
        r.skipped(
            "async write queue",
            format!("needs a Redis the lab may stop: {why}"),
        );
        return;
    }
    let (Some(q), Some(c)) = (&out.queue, &out.redis_crash) else {
        return;
    };
    r.p99(
        "direct_api_p99_ms",
        "POST /events (insert + commit per request): p99",
        &q.direct.summary,
    );
    r.p99(
        "queue_api_p99_ms",
        "POST /events/queued (XADD to a Redis stream): p99",
        &q.queued.summary,
    );
    let e2e = q
        .writer
        .end_to_end
        .summary(std::time::Duration::from_secs(1));
    r.measured(
        "queue_end_to_end_p99_ms",
        "queued event: from 202 to its batch's COMMIT, p99",
        e2e.p99_ms,
        "ms",
        e2e.count,
    );
    r.finding(
        "queue_replayed_after_writer_crash",
        "entries replayed after the writer crashed between COMMIT and XACK (skipped by ON CONFLICT)",
        q.writer.skipped_duplicates as f64,
        "count",
    );
    r.finding(
        "queue_missing_after_writer_crash",
        "acknowledged queued events missing after the writer's crash, restart and drain",
        q.missing as f64,
        "count",
    );
    r.better("queue_missing_after_writer_crash", Better::Lower);
    r.finding(
        "queue_acked_before_redis_crash",
        "queued events acknowledged (202) in the Redis-crash phase",
        c.acknowledged as f64,
        "count",
    );
    r.finding(
        "queue_lost_on_redis_crash",
        "acknowledged queued events never written: Redis stopped without persistence",
        c.lost as f64,
        "count",
    );
    r.better("queue_lost_on_redis_crash", Better::Lower);

    let mut t = Table::new(
        format!(
            "Ingestion API at {:.0} requests/s (open loop)",
            out.http_rate
        ),
        &[
            "endpoint",
            "answers",
            "p50 ms",
            "p99 ms",
            "errors",
            "durable when answered",
        ],
    );
    t.row([
        "POST /events (insert per request)".to_string(),
        "201".into(),
        ms(q.direct.summary.p50_ms),
        ms(q.direct.summary.p99_ms),
        q.direct.summary.errors.to_string(),
        "yes".into(),
    ]);
    t.row([
        "POST /events/queued (XADD)".to_string(),
        "202".into(),
        ms(q.queued.summary.p50_ms),
        ms(q.queued.summary.p99_ms),
        q.queued.summary.errors.to_string(),
        format!(
            "no: p50 {:.1} ms / p99 {:.1} ms later",
            e2e.p50_ms, e2e.p99_ms
        ),
    ]);
    r.table(t);
    r.note(format!(
        "The queue's writer batched {} entries in {} batches ({:.0} per batch on average, \
         linger 50 ms, COPY into a staging table then INSERT … ON CONFLICT (event_id) DO \
         NOTHING). It was crashed once between COMMIT and XACK and restarted: {} entries were \
         read again and skipped as already written; {} acknowledged events were missing after \
         the drain.{}",
        q.writer.read,
        q.writer.batches,
        q.writer.mean_batch(),
        q.writer.skipped_duplicates,
        q.missing,
        q.writer_error
            .as_ref()
            .map(|e| format!(" The writer ended with an error: {e}."))
            .unwrap_or_default()
    ));
    r.note(format!(
        "Redis stopped halfway through a queued load (no RDB, no AOF): the API had answered 202 \
         for {} events; {} of them reached Postgres and {} were lost with the stream — roughly \
         what arrives during one linger plus one batch commit. After the stop the API answered \
         {} requests with 503. appendonly yes + appendfsync everysec narrows the loss to about \
         a second of events; appendfsync always pays a flush per XADD.",
        c.acknowledged, c.written, c.lost, c.load.summary.errors
    ));
}

fn sentence(r: &mut Report, out: &Outcome) {
    let (Some(single), Some(copy)) = (
        method(out, Method::SingleRow),
        method(out, Method::CopyBinary),
    ) else {
        return;
    };
    let mut s = format!(
        "With fsync {}, one INSERT per commit wrote {:.0} rows/s and COPY {:.0} rows/s ({:.0}x)",
        if r.get("fsync_on") == Some(1.0) {
            "on"
        } else {
            "off"
        },
        single.rows_per_s(),
        copy.rows_per_s(),
        copy.rows_per_s() / single.rows_per_s()
    );
    if let (Some(x), Some(lost)) = (
        r.get("sync_commit_off_speedup_x"),
        r.get("sync_off_lost_on_crash"),
    ) {
        s.push_str(&format!(
            "; synchronous_commit=off was {x:.1}x faster and a crash lost {lost:.0} acknowledged rows"
        ));
    }
    if let (Some(best), Some(p99b), Some(p99l)) = (
        r.get("pool_size_best_throughput"),
        r.get("pool_size_best_p99_ms"),
        r.get("pool_size_largest_p99_ms"),
    ) {
        let largest = out.pools.iter().map(|p| p.size).max().unwrap_or(0);
        s.push_str(&format!(
            "; {best:.0} connections carried the write load with p99 {p99b:.1} ms where {largest} gave {p99l:.1} ms"
        ));
    }
    s.push('.');
    r.sentence(s);
}
