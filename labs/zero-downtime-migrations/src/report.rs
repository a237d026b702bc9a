//! The report: findings (stable keys), tables, charts, notes and the sentence, all built
//! from the measured [`Results`]. Plumbing only — the story is in `lib.rs` and the
//! scenario modules.

use std::time::Duration;

use labkit::report::format_value;
use labkit::{Better, Chart, LabCtx, LatencySummary, Report, Table};

use crate::Results;
use crate::app::{REQUEST_TIMEOUT, Traffic};
use crate::lock_modes::LockMode;
use crate::lock_watch::{INTERVAL, LockWatch, MIGRATION};
use crate::migration::StepOutcome;
use crate::observed::Observed;
use crate::rename::{V1_APP, V2_APP};

/// Every key the lab reports: the contract first, then the lab's own.
pub const FINDING_KEYS: &[&str] = &[
    // the keys
    "lock_queue_blocked_requests",
    "lock_queue_p99_ms",
    "lock_queue_max_ms",
    "lock_timeout_blocked_requests",
    "lock_timeout_p99_ms",
    "create_index_max_write_stall_ms",
    "create_index_concurrently_max_write_stall_ms",
    "invalid_index_detected",
    "add_column_constant_default_ms",
    "add_column_volatile_default_ms",
    "volatile_default_rewrote_table",
    "validate_constraint_max_write_stall_ms",
    "direct_constraint_max_write_stall_ms",
    "backfill_single_update_writer_p99_ms",
    "backfill_batched_writer_p99_ms",
    "rename_one_step_old_app_errors",
    "expand_contract_app_errors",
    // setup
    "items_rows",
    "seed_rows_per_s",
    "lock_conflict_table_matches_docs",
    "baseline_p99_ms",
    // 1. the lock queue
    "lock_queue_app_errors",
    "lock_queue_max_queue_depth",
    "lock_queue_pool_busy_max",
    "lock_queue_ddl_waited_ms",
    "lock_queue_ddl_ms",
    "lock_queue_recovery_ms",
    "lock_timeout_app_errors",
    "lock_timeout_max_ms",
    "lock_timeout_max_queue_depth",
    "lock_timeout_pool_busy_max",
    "lock_timeout_attempts",
    "lock_timeout_ddl_landed_after_reader_ms",
    // 2. indexes
    "create_index_build_ms",
    "create_index_blocked_requests",
    "create_index_app_errors",
    "create_index_concurrently_build_ms",
    "create_index_concurrently_blocked_requests",
    "create_index_concurrently_app_errors",
    "invalid_index_rebuilt_valid",
    // 3. ADD COLUMN
    "constant_default_rewrote_table",
    "add_column_constant_default_max_write_stall_ms",
    "add_column_volatile_default_max_write_stall_ms",
    "add_column_volatile_default_app_errors",
    // 4. constraints
    "direct_constraint_blocked_requests",
    "validate_constraint_blocked_requests",
    "direct_constraint_app_errors",
    "validate_constraint_app_errors",
    "set_not_null_direct_table_scans",
    "set_not_null_after_check_table_scans",
    // 5. backfill
    "backfill_single_update_s",
    "backfill_batched_s",
    "backfill_single_update_writers_blocked",
    "backfill_batched_writers_blocked",
    "backfill_single_update_app_errors",
    "backfill_batched_app_errors",
    "backfill_single_update_dead_tuples",
    "backfill_batched_dead_tuples",
    "backfill_single_update_wal_bytes",
    "backfill_batched_wal_bytes",
    "backfill_single_update_table_growth_bytes",
    "backfill_batched_table_growth_bytes",
    // 6. rename
    "rename_one_step_new_app_errors",
    "expand_contract_old_app_errors",
    "expand_contract_new_app_errors",
    "expand_contract_out_of_sync_rows",
    "expand_contract_both_versions_live_s",
];

/// Assemble the report.
pub fn build(ctx: &LabCtx, title: &str, r: Results) -> Report {
    let mut report = ctx.report(title);
    let base = r.baseline.app().everyone();
    setup(&mut report, &r, &base);
    lock_queue(&mut report, &r, &base);
    indexes(&mut report, &r);
    add_column(&mut report, &r);
    constraints(&mut report, &r);
    backfill(&mut report, &r);
    rename(&mut report, &r);
    phases_table(&mut report, &r);
    steps_table(&mut report, &r);
    backfill_table(&mut report, &r);
    rename_table(&mut report, &r);
    wait_graph_table(&mut report, &r);
    conflict_table(&mut report, &r);
    charts(&mut report, &r);
    notes(&mut report, &r, &base);
    sentence(&mut report, &r, &base);
    report
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn count(report: &mut Report, key: &str, label: &str, value: f64) {
    report.finding(key, label, value, "count");
    report.better(key, Better::Lower);
}

/// "Slow" for the recovery measure: ten times the baseline p99, at least 50 ms.
fn slow_threshold(base: &LatencySummary) -> Duration {
    Duration::from_secs_f64((base.p99_ms * 10.0).max(50.0) / 1000.0)
}

fn setup(report: &mut Report, r: &Results, base: &LatencySummary) {
    report.finding(
        "items_rows",
        "Rows in items",
        r.plan.data.items as f64,
        "rows",
    );
    report.finding(
        "seed_rows_per_s",
        "Seed speed (server-side INSERT … SELECT generate_series)",
        r.seeded.items.rows_per_s,
        "rows/s",
    );
    report.flag(
        "lock_conflict_table_matches_docs",
        "This server's lock conflicts match the docs' table (64 pairs, LOCK TABLE … NOWAIT)",
        r.conflicts
            .iter()
            .all(|c| c.docs_say_conflict == c.server_said_conflict),
    );
    report.p99(
        "baseline_p99_ms",
        "Baseline p99, no migration running (every request, from its intended start)",
        base,
    );
}

fn lock_queue(report: &mut Report, r: &Results, base: &LatencySummary) {
    let (q, g) = (&r.queue, &r.queue_guarded);
    let qa = q.app().everyone();
    let ga = g.app().everyone();
    count(
        report,
        "lock_queue_blocked_requests",
        "No lock_timeout: app requests seen waiting for a lock (pg_locks)",
        q.locks.blocked_requests() as f64,
    );
    count(
        report,
        "lock_queue_app_errors",
        "No lock_timeout: app requests that failed (client timeout)",
        qa.errors as f64,
    );
    report.p99(
        "lock_queue_p99_ms",
        "No lock_timeout: app p99 (every request; failures at the timeout)",
        &qa,
    );
    report.measured(
        "lock_queue_max_ms",
        "No lock_timeout: app max latency",
        qa.max_ms,
        "ms",
        qa.count,
    );
    count(
        report,
        "lock_queue_max_queue_depth",
        "No lock_timeout: most app requests waiting at once",
        q.locks.max_depth() as f64,
    );
    count(
        report,
        "lock_queue_pool_busy_max",
        "No lock_timeout: most app pool connections checked out at once (the pool drains)",
        q.locks.max_pool_busy() as f64,
    );
    report.measured(
        "lock_queue_ddl_waited_ms",
        "No lock_timeout: the ALTER waited for its lock (seen in pg_locks)",
        ms(q.locks.migration_waited()),
        "ms",
        q.locks.samples.len() as u64,
    );
    report.measured(
        "lock_queue_ddl_ms",
        "No lock_timeout: the ALTER statement, issue to done",
        ms(q.out.ddl.took),
        "ms",
        1,
    );
    let recovery = q
        .app()
        .stall(slow_threshold(base))
        .map(|(_, last)| last.saturating_sub(q.out.ddl.ended))
        .unwrap_or_default();
    report.measured(
        "lock_queue_recovery_ms",
        "No lock_timeout: from the ALTER landing to the last slow or failed request's end",
        ms(recovery),
        "ms",
        qa.count,
    );
    count(
        report,
        "lock_timeout_blocked_requests",
        "lock_timeout + retries: app requests seen waiting for a lock",
        g.locks.blocked_requests() as f64,
    );
    count(
        report,
        "lock_timeout_app_errors",
        "lock_timeout + retries: app requests that failed",
        ga.errors as f64,
    );
    report.p99(
        "lock_timeout_p99_ms",
        "lock_timeout + retries: app p99 (every request)",
        &ga,
    );
    report.measured(
        "lock_timeout_max_ms",
        "lock_timeout + retries: app max latency",
        ga.max_ms,
        "ms",
        ga.count,
    );
    count(
        report,
        "lock_timeout_max_queue_depth",
        "lock_timeout + retries: most app requests waiting at once",
        g.locks.max_depth() as f64,
    );
    count(
        report,
        "lock_timeout_pool_busy_max",
        "lock_timeout + retries: most app pool connections checked out at once",
        g.locks.max_pool_busy() as f64,
    );
    report.finding(
        "lock_timeout_attempts",
        "lock_timeout + retries: attempts until the ALTER landed",
        g.out.ddl.attempts as f64,
        "count",
    );
    report.measured(
        "lock_timeout_ddl_landed_after_reader_ms",
        "lock_timeout + retries: the ALTER landed this long after the reader ended",
        ms(g.out.ddl.ended) - ms(g.out.reader_ended),
        "ms",
        1,
    );
}

fn indexes(report: &mut Report, r: &Results) {
    for (o, key, what) in [
        (&r.index, "create_index", "CREATE INDEX"),
        (
            &r.index_concurrently,
            "create_index_concurrently",
            "CREATE INDEX CONCURRENTLY",
        ),
    ] {
        let w = o.app().writes();
        report.measured(
            &format!("{key}_max_write_stall_ms"),
            &format!("{what}: slowest app write during the phase (failures at the timeout)"),
            w.max_ms,
            "ms",
            w.count,
        );
        report.measured(
            &format!("{key}_build_ms"),
            &format!("{what}: build time"),
            ms(o.out.took),
            "ms",
            1,
        );
        count(
            report,
            &format!("{key}_blocked_requests"),
            &format!("{what}: app requests seen waiting for a lock"),
            o.locks.blocked_requests() as f64,
        );
        count(
            report,
            &format!("{key}_app_errors"),
            &format!("{what}: app requests that failed"),
            o.app().errors() as f64,
        );
    }
    let f = &r.failed_build.out;
    report.flag(
        "invalid_index_detected",
        "A failed CREATE UNIQUE INDEX CONCURRENTLY left an INVALID index, found in pg_index",
        f.build.error.is_some() && f.invalid_found.iter().any(|i| i == "items_ref_key"),
    );
    report.flag(
        "invalid_index_rebuilt_valid",
        "After DROP INDEX CONCURRENTLY, fixing the duplicate and rebuilding, the index is valid",
        f.rebuilt_valid,
    );
}

fn add_column(report: &mut Report, r: &Results) {
    let (c, v) = (&r.add_constant, &r.add_volatile);
    report.measured(
        "add_column_constant_default_ms",
        "ADD COLUMN … DEFAULT 'eu' (constant): statement time",
        ms(c.out.took),
        "ms",
        1,
    );
    report.measured(
        "add_column_volatile_default_ms",
        "ADD COLUMN … DEFAULT clock_timestamp() (volatile): statement time",
        ms(v.out.took),
        "ms",
        1,
    );
    report.flag(
        "constant_default_rewrote_table",
        "Constant default changed the relfilenode (rewrote the table)",
        c.out.rewrote,
    );
    report.flag(
        "volatile_default_rewrote_table",
        "Volatile default changed the relfilenode (rewrote the table)",
        v.out.rewrote,
    );
    for (o, key, what) in [
        (c, "add_column_constant_default", "constant default"),
        (v, "add_column_volatile_default", "volatile default"),
    ] {
        let w = o.app().writes();
        report.measured(
            &format!("{key}_max_write_stall_ms"),
            &format!("ADD COLUMN, {what}: slowest app write during the phase"),
            w.max_ms,
            "ms",
            w.count,
        );
    }
    count(
        report,
        "add_column_volatile_default_app_errors",
        "ADD COLUMN, volatile default: app requests that failed",
        v.app().errors() as f64,
    );
}

fn constraints(report: &mut Report, r: &Results) {
    for (o, key, what) in [
        (&r.direct, "direct_constraint", "constraints added directly"),
        (&r.staged, "validate_constraint", "NOT VALID + VALIDATE"),
    ] {
        let w = o.app().writes();
        report.measured(
            &format!("{key}_max_write_stall_ms"),
            &format!("{what}: slowest app write during the phase"),
            w.max_ms,
            "ms",
            w.count,
        );
        count(
            report,
            &format!("{key}_blocked_requests"),
            &format!("{what}: app requests seen waiting for a lock"),
            o.locks.blocked_requests() as f64,
        );
        count(
            report,
            &format!("{key}_app_errors"),
            &format!("{what}: app requests that failed"),
            o.app().errors() as f64,
        );
    }
    let scans = |steps: &[StepOutcome]| {
        steps
            .iter()
            .find(|s| s.step.sql.ends_with("SET NOT NULL"))
            .and_then(|s| s.table_scans)
            .unwrap_or(-1) as f64
    };
    report.finding(
        "set_not_null_direct_table_scans",
        "SET NOT NULL directly: table scans it did (pg_stat_get_xact_numscans)",
        scans(&r.direct.out),
        "count",
    );
    report.finding(
        "set_not_null_after_check_table_scans",
        "SET NOT NULL after a validated CHECK (status IS NOT NULL): table scans it did",
        scans(&r.staged.out),
        "count",
    );
}

fn backfill(report: &mut Report, r: &Results) {
    for (o, key, what) in [
        (&r.backfill_single, "backfill_single_update", "one UPDATE"),
        (&r.backfill_batched, "backfill_batched", "keyset batches"),
    ] {
        let w = o.app().writes();
        report.p99(
            &format!("{key}_writer_p99_ms"),
            &format!("Backfill, {what}: app writers' p99 (failures at the timeout)"),
            &w,
        );
        report.measured(
            &format!("{key}_s"),
            &format!("Backfill, {what}: time to fill every row"),
            o.out.took.as_secs_f64(),
            "s",
            1,
        );
        count(
            report,
            &format!("{key}_writers_blocked"),
            &format!("Backfill, {what}: app requests seen waiting for a lock"),
            o.locks.blocked_requests() as f64,
        );
        count(
            report,
            &format!("{key}_app_errors"),
            &format!("Backfill, {what}: app requests that failed"),
            o.app().errors() as f64,
        );
        count(
            report,
            &format!("{key}_dead_tuples"),
            &format!("Backfill, {what}: dead tuples right after (n_dead_tup)"),
            o.out.dead_tuples as f64,
        );
        report.finding(
            &format!("{key}_wal_bytes"),
            &format!("Backfill, {what}: WAL written while it ran"),
            o.out.wal_bytes as f64,
            "bytes",
        );
        report.better(&format!("{key}_wal_bytes"), Better::Lower);
        report.finding(
            &format!("{key}_table_growth_bytes"),
            &format!("Backfill, {what}: heap growth"),
            o.out.table_growth_bytes as f64,
            "bytes",
        );
        report.better(&format!("{key}_table_growth_bytes"), Better::Lower);
    }
}

fn rename(report: &mut Report, r: &Results) {
    let one = &r.rename_one_step;
    let ec = &r.expand_contract;
    count(
        report,
        "rename_one_step_old_app_errors",
        "One-step RENAME: failed requests of v1 (the version still serving)",
        one.traffic[0].errors() as f64,
    );
    count(
        report,
        "rename_one_step_new_app_errors",
        "One-step RENAME: failed requests of v2",
        one.traffic[1].errors() as f64,
    );
    let (old, new) = (ec.traffic[0].errors(), ec.traffic[1].errors());
    count(
        report,
        "expand_contract_app_errors",
        "Expand/contract: failed requests, both versions",
        (old + new) as f64,
    );
    count(
        report,
        "expand_contract_old_app_errors",
        "Expand/contract: failed requests of v1",
        old as f64,
    );
    count(
        report,
        "expand_contract_new_app_errors",
        "Expand/contract: failed requests of v2",
        new as f64,
    );
    count(
        report,
        "expand_contract_out_of_sync_rows",
        "Expand/contract: rows where name ≠ full_name before the contract",
        ec.out.out_of_sync_rows as f64,
    );
    report.measured(
        "expand_contract_both_versions_live_s",
        "Expand/contract: both versions served at once for",
        ec.out.overlap().as_secs_f64(),
        "s",
        1,
    );
    report.better("expand_contract_both_versions_live_s", Better::Higher);
}

/// One row of the phases table.
fn phase_row<T>(
    o: &Observed<T>,
    t: &Traffic,
    blocked: usize,
    name: &str,
    migration: &str,
    lock: &str,
    took: Option<Duration>,
) -> Vec<String> {
    let all = t.everyone();
    vec![
        name.to_string(),
        migration.to_string(),
        lock.to_string(),
        took.map_or("–".into(), |d| format!("{:.1}", ms(d))),
        all.count.to_string(),
        all.errors.to_string(),
        format!("{:.2}", all.p50_ms),
        format!("{:.2}", all.p99_ms),
        format!("{:.1}", all.max_ms),
        blocked.to_string(),
        o.locks.max_depth().to_string(),
    ]
}

fn app_of(version: &str) -> &'static str {
    if version == "v1" { V1_APP } else { V2_APP }
}

fn lock_text(s: &StepOutcome) -> String {
    s.lock().map_or("–".into(), |m| m.to_string())
}

fn phases_table(report: &mut Report, r: &Results) {
    let mut t = Table::new(
        "What the users saw, phase by phase (every request, from its intended start; failures count at the 1 s client timeout)",
        &[
            "phase",
            "migration",
            "lock on the table",
            "migration ms",
            "requests",
            "errors",
            "p50 ms",
            "p99 ms",
            "max ms",
            "seen waiting (pg_locks)",
            "max queue",
        ],
    );
    let b = &r.baseline;
    t.row(phase_row(
        b,
        b.app(),
        b.locks.blocked_requests(),
        &b.label,
        "none",
        "–",
        None,
    ));
    for o in [&r.queue, &r.queue_guarded] {
        let d = &o.out.ddl;
        t.row(phase_row(
            o,
            o.app(),
            o.locks.blocked_requests(),
            &o.label,
            d.step.name,
            &lock_text(d),
            Some(d.took),
        ));
    }
    for o in [&r.index, &r.index_concurrently] {
        let d = &o.out;
        t.row(phase_row(
            o,
            o.app(),
            o.locks.blocked_requests(),
            &o.label,
            d.step.name,
            &lock_text(d),
            Some(d.took),
        ));
    }
    let f = &r.failed_build;
    t.row(phase_row(
        f,
        f.app(),
        f.locks.blocked_requests(),
        &f.label,
        "unique build fails → DROP INDEX CONCURRENTLY → rebuild",
        &lock_text(&f.out.rebuild),
        Some(f.out.build.took + f.out.drop.took + f.out.rebuild.took),
    ));
    for o in [&r.add_constant, &r.add_volatile] {
        let d = &o.out;
        t.row(phase_row(
            o,
            o.app(),
            o.locks.blocked_requests(),
            &o.label,
            d.step.name,
            &lock_text(d),
            Some(d.took),
        ));
    }
    for o in [&r.direct, &r.staged] {
        let strongest = o.out.iter().filter_map(|s| s.lock()).max();
        let took: Duration = o.out.iter().map(|s| s.took).sum();
        t.row(phase_row(
            o,
            o.app(),
            o.locks.blocked_requests(),
            &o.label,
            &format!("{} steps", o.out.len()),
            &strongest.map_or("–".into(), |m| format!("up to {m}")),
            Some(took),
        ));
    }
    for o in [&r.backfill_single, &r.backfill_batched] {
        t.row(phase_row(
            o,
            o.app(),
            o.locks.blocked_requests(),
            &o.label,
            &format!("{} rows in {} batch(es)", o.out.rows, o.out.batches),
            "row locks",
            Some(o.out.took),
        ));
    }
    let one = &r.rename_one_step;
    for (tr, v) in one.traffic.iter().zip(["v1", "v2"]) {
        t.row(phase_row(
            one,
            tr,
            one.locks.blocked_requests_of(app_of(v)),
            &format!("{} — {v}", one.label),
            one.out.rename.step.name,
            &lock_text(&one.out.rename),
            Some(one.out.rename.took),
        ));
    }
    let ec = &r.expand_contract;
    for (tr, v) in ec.traffic.iter().zip(["v1", "v2"]) {
        let took: Duration = ec.out.steps.iter().map(|s| s.took).sum();
        t.row(phase_row(
            ec,
            tr,
            ec.locks.blocked_requests_of(app_of(v)),
            &format!("{} — {v}", ec.label),
            "expand, dual-write, backfill, switch, contract",
            "up to ACCESS EXCLUSIVE, guarded",
            Some(took),
        ));
    }
    report.table(t);
}

fn steps_table(report: &mut Report, r: &Results) {
    let mut t = Table::new(
        "Each migration step: the lock it took (pg_locks, inside its transaction), what that lock blocks (the docs' table), and what the app saw while it ran",
        &[
            "phase",
            "step",
            "locks taken",
            "blocks (docs)",
            "table scans",
            "rewrote table",
            "attempts",
            "ms",
            "app requests seen waiting",
            "slowest write ms",
        ],
    );
    let mut add = |label: &str, steps: &[&StepOutcome], o_locks: &LockWatch, tr: &Traffic| {
        for s in steps {
            let until = s.ended + INTERVAL;
            t.row([
                label.to_string(),
                s.step.name.to_string(),
                s.locks_text(),
                s.lock().map_or("–", LockMode::blocks).to_string(),
                s.table_scans.map_or("–".into(), |n| n.to_string()),
                if s.rewrote { "yes" } else { "no" }.to_string(),
                if s.timed_out.is_empty() {
                    s.attempts.to_string()
                } else {
                    format!("{} ({} lock_timeout)", s.attempts, s.timed_out.len())
                },
                format!("{:.1}", ms(s.took)),
                o_locks.blocked_between(s.started, until).to_string(),
                tr.max_write_in(s.started, s.ended)
                    .map_or("–".into(), |d| format!("{:.1}", ms(d))),
            ]);
        }
    };
    add(
        &r.queue.label,
        &[&r.queue.out.ddl],
        &r.queue.locks,
        r.queue.app(),
    );
    let g = &r.queue_guarded;
    add(&g.label, &[&g.out.ddl], &g.locks, g.app());
    for o in [&r.index, &r.index_concurrently] {
        add(&o.label, &[&o.out], &o.locks, o.app());
    }
    let f = &r.failed_build;
    add(
        &f.label,
        &[&f.out.build, &f.out.drop, &f.out.rebuild],
        &f.locks,
        f.app(),
    );
    for o in [&r.add_constant, &r.add_volatile] {
        add(&o.label, &[&o.out], &o.locks, o.app());
    }
    for o in [&r.direct, &r.staged] {
        let steps: Vec<&StepOutcome> = o.out.iter().collect();
        add(&o.label, &steps, &o.locks, o.app());
    }
    let one = &r.rename_one_step;
    add(&one.label, &[&one.out.rename], &one.locks, &one.traffic[0]);
    let ec = &r.expand_contract;
    let steps: Vec<&StepOutcome> = ec.out.steps.iter().collect();
    add(&ec.label, &steps, &ec.locks, &ec.traffic[1]);
    report.table(t);
}

fn backfill_table(report: &mut Report, r: &Results) {
    let mut t = Table::new(
        "Backfilling amount_eur_cents on every row, while the app writes",
        &[
            "method",
            "s",
            "rows",
            "batches",
            "VACUUMs",
            "writer p50 ms",
            "writer p99 ms",
            "writer max ms",
            "seen waiting",
            "errors",
            "dead tuples after",
            "WAL MB",
            "heap growth MB",
        ],
    );
    for (o, name) in [
        (&r.backfill_single, "one UPDATE"),
        (&r.backfill_batched, "keyset batches + pause + VACUUM"),
    ] {
        let w = o.app().writes();
        let b = &o.out;
        t.row([
            name.to_string(),
            format!("{:.2}", b.took.as_secs_f64()),
            b.rows.to_string(),
            b.batches.to_string(),
            b.vacuums.to_string(),
            format!("{:.2}", w.p50_ms),
            format!("{:.2}", w.p99_ms),
            format!("{:.1}", w.max_ms),
            o.locks.blocked_requests().to_string(),
            o.app().errors().to_string(),
            b.dead_tuples.to_string(),
            format!("{:.1}", b.wal_bytes as f64 / 1e6),
            format!("{:.1}", b.table_growth_bytes as f64 / 1e6),
        ]);
    }
    report.table(t);
}

fn rename_table(report: &mut Report, r: &Results) {
    let mut t = Table::new(
        "Renaming customers.name to full_name with two app versions live",
        &[
            "method",
            "version",
            "served from s",
            "requests",
            "errors",
            "p99 ms",
            "first error",
        ],
    );
    for (o, method) in [
        (&r.rename_one_step.traffic, "one step"),
        (&r.expand_contract.traffic, "expand/contract"),
    ] {
        for (tr, v) in o.iter().zip(["v1 (name)", "v2 (full_name)"]) {
            let all = tr.everyone();
            t.row([
                method.to_string(),
                v.to_string(),
                format!("{:.2}", tr.offset.as_secs_f64()),
                all.count.to_string(),
                all.errors.to_string(),
                format!("{:.2}", all.p99_ms),
                tr.first_error().unwrap_or("–").to_string(),
            ]);
        }
    }
    report.table(t);
}

fn wait_graph_table(report: &mut Report, r: &Results) {
    let mut t = Table::new(
        "Who waited for whom (pg_locks not granted, pg_blocking_pids), the most-seen edges per phase",
        &[
            "phase",
            "waiting",
            "for",
            "blocked by",
            "first seen s",
            "samples",
        ],
    );
    let phases: [(&str, &LockWatch); 6] = [
        (&r.queue.label, &r.queue.locks),
        (&r.queue_guarded.label, &r.queue_guarded.locks),
        (&r.index.label, &r.index.locks),
        (&r.add_volatile.label, &r.add_volatile.locks),
        (&r.direct.label, &r.direct.locks),
        (&r.backfill_single.label, &r.backfill_single.locks),
    ];
    for (label, locks) in phases {
        let mut edges: Vec<_> = locks.edges.iter().collect();
        edges.sort_by_key(|(_, seen)| std::cmp::Reverse(seen.samples));
        for (e, seen) in edges.into_iter().take(4) {
            t.row([
                label.to_string(),
                e.waiter.clone(),
                e.wants.clone(),
                if e.blocked_by.is_empty() {
                    "–".into()
                } else {
                    e.blocked_by.join(", ")
                },
                format!("{:.2}", seen.first_seen.as_secs_f64()),
                seen.samples.to_string(),
            ]);
        }
    }
    report.table(t);
}

fn conflict_table(report: &mut Report, r: &Results) {
    let mut t = Table::new(
        "The docs' lock-conflict table, asked of this server (t1 holds the mode, t2 tries each mode with NOWAIT)",
        &["held", "conflicts with (server)", "blocks", "matches docs"],
    );
    for held in LockMode::ALL {
        let row: Vec<_> = r.conflicts.iter().filter(|c| c.held == held).collect();
        let conflicting: Vec<String> = row
            .iter()
            .filter(|c| c.server_said_conflict)
            .map(|c| c.requested.to_string())
            .collect();
        t.row([
            held.to_string(),
            conflicting.join(", "),
            held.blocks().to_string(),
            if row
                .iter()
                .all(|c| c.docs_say_conflict == c.server_said_conflict)
            {
                "yes"
            } else {
                "NO"
            }
            .to_string(),
        ]);
    }
    report.table(t);
}

/// The worst latency per `bucket` of intended start time: a readable line from thousands
/// of requests.
fn worst_per_bucket(
    samples: impl Iterator<Item = (Duration, Duration)>,
    bucket: Duration,
) -> Vec<(f64, f64)> {
    let mut worst: std::collections::BTreeMap<u64, f64> = Default::default();
    for (at, latency) in samples {
        let b = (at.as_nanos() / bucket.as_nanos()) as u64;
        let v = worst.entry(b).or_insert(0.0);
        *v = v.max(ms(latency));
    }
    worst
        .into_iter()
        .map(|(b, v)| ((b as f64) * bucket.as_secs_f64(), v))
        .collect()
}

fn charts(report: &mut Report, r: &Results) {
    let depth = |w: &LockWatch| -> Vec<(f64, f64)> {
        w.samples
            .iter()
            .map(|s| (s.at.as_secs_f64(), s.app_waiting as f64))
            .collect()
    };
    report.chart(
        Chart::new(
            "lock_queue_depth",
            "App requests waiting for a lock behind a 2 ms ALTER (pg_locks, every 10 ms)",
            "seconds into the phase",
            "requests waiting",
        )
        .series("no lock_timeout", depth(&r.queue.locks))
        .series(
            "lock_timeout 50 ms + retries",
            depth(&r.queue_guarded.locks),
        ),
    );
    let bucket = Duration::from_millis(100);
    let lat = |t: &Traffic| worst_per_bucket(t.served.iter().map(|s| (s.at, s.latency)), bucket);
    report.chart(
        Chart::new(
            "lock_queue_latency",
            "Slowest app request per 100 ms while the ALTER waits behind a long reader",
            "seconds into the phase (intended start)",
            "ms (log)",
        )
        .log_y()
        .series("no lock_timeout", lat(r.queue.app()))
        .series("lock_timeout 50 ms + retries", lat(r.queue_guarded.app()))
        .series("baseline", lat(r.baseline.app())),
    );
    let writes = |t: &Traffic| {
        worst_per_bucket(
            t.served
                .iter()
                .filter(|s| s.kind.is_write())
                .map(|s| (s.at, s.latency)),
            Duration::from_millis(250),
        )
    };
    report.chart(
        Chart::new(
            "backfill_writer_latency",
            "Slowest app write per 250 ms during the backfill",
            "seconds into the phase (intended start)",
            "ms (log)",
        )
        .log_y()
        .series("one UPDATE", writes(r.backfill_single.app()))
        .series("keyset batches", writes(r.backfill_batched.app())),
    );
}

/// Per phase: label, planned traffic, when the migration finished, when traffic ended,
/// whether the migration outlasted the traffic, and the traffic.
type PhaseView<'a> = (
    &'a str,
    Duration,
    Duration,
    Duration,
    bool,
    Vec<&'a Traffic>,
);

fn all_phases(r: &Results) -> Vec<PhaseView<'_>> {
    fn p<T>(o: &Observed<T>) -> PhaseView<'_> {
        (
            &o.label,
            o.planned,
            o.migration_done,
            o.traffic_end(),
            o.migration_outlasted_traffic(),
            o.traffic.iter().collect(),
        )
    }
    vec![
        p(&r.baseline),
        p(&r.queue),
        p(&r.queue_guarded),
        p(&r.index),
        p(&r.index_concurrently),
        p(&r.failed_build),
        p(&r.add_constant),
        p(&r.add_volatile),
        p(&r.direct),
        p(&r.staged),
        p(&r.backfill_single),
        p(&r.backfill_batched),
        p(&r.rename_one_step),
        p(&r.expand_contract),
    ]
}

fn notes(report: &mut Report, r: &Results, base: &LatencySummary) {
    let plan = &r.plan;
    report.note(format!(
        "Load: the app sends {:.0} requests/s (60 % point reads, 20 % one-row updates, 20 % inserts) \
         in an open loop through a pool of {} connections, each request with a {} ms client \
         timeout (and statement_timeout); latency runs from each request's intended start. \
         Tables: {} items, {} customers (default scale: 1M rows keeps the dozen full-table \
         rewrites, scans and updates of the run near a minute on 2 cores; --scale large uses 5M).",
        plan.rate,
        plan.connections,
        REQUEST_TIMEOUT.as_millis(),
        plan.data.items,
        plan.data.customers,
    ));
    report.note(format!(
        "\"Seen waiting\" counts app requests whose backend the watcher saw waiting for a lock in \
         pg_locks (granted = false), sampled every {} ms and identified by (pid, query_start): a \
         lower bound, since a wait shorter than the interval can fall between samples. Only \
         requests holding a pool connection reach the server: once every connection waits \
         (\"pool busy\" = the pool size), the rest of the queue waits for a connection in the \
         app and shows up as errors and latency, not in pg_locks. Baseline \
         p99 was {:.2} ms; \"slow\" for the recovery time is 10× that, at least 50 ms.",
        INTERVAL.as_millis(),
        base.p99_ms
    ));
    report.note(
        "Autovacuum is off on items and customers so every lock wait and dead tuple here is the \
         lab's own; in production an autovacuum worker (SHARE UPDATE EXCLUSIVE) is one more \
         lock a migration can queue behind. The throwaway server runs with full_page_writes = \
         off: WAL bytes exclude the full-page images a production server writes on each page's \
         first change after a checkpoint.",
    );
    let q = &r.queue;
    if let Some((e, seen)) = q.locks.edge_from(MIGRATION) {
        let behind = q
            .locks
            .app_behind(MIGRATION)
            .map(|(e, s)| {
                format!(
                    "; app sessions ({}) waited for {}, blocked by [{}], from {:.2} s",
                    e.waiter,
                    e.wants,
                    e.blocked_by.join(", "),
                    s.first_seen.as_secs_f64()
                )
            })
            .unwrap_or_default();
        report.note(format!(
            "The chain in 1a, as pg_blocking_pids showed it: {} waited for {}, blocked by [{}], \
             from {:.2} s{behind}.",
            e.waiter,
            e.wants,
            e.blocked_by.join(", "),
            seen.first_seen.as_secs_f64()
        ));
    }
    let f = &r.failed_build.out;
    report.note(format!(
        "2c: an app transaction inserted a duplicate ref and stayed open; CREATE UNIQUE INDEX \
         CONCURRENTLY waited for it (pg_blocking_pids = {:?}, the writer was pid {}), the \
         writer committed, and the build failed: {}. Invalid indexes on items afterwards: [{}]. \
         Dropped concurrently in {:.1} ms; after the duplicate got a fresh ref, the rebuild took \
         {:.1} ms and is {}. (The lab then drops it, so later rewrites time the table alone.)",
        f.build_waited_for,
        f.writer_pid,
        f.build.error.as_deref().unwrap_or("it did not fail"),
        f.invalid_found.join(", "),
        ms(f.drop.took),
        ms(f.rebuild.took),
        if f.rebuilt_valid {
            "valid"
        } else {
            "NOT valid"
        },
    ));
    let g = &r.queue_guarded.out.ddl;
    if !g.timed_out.is_empty() {
        let tries: Vec<String> = g
            .timed_out
            .iter()
            .map(|(at, w)| format!("{:.2} s (+{:.0} ms)", at.as_secs_f64(), ms(*w)))
            .collect();
        report.note(format!(
            "1b: the ALTER hit lock_timeout at {} and landed on attempt {} at {:.2} s; the reader \
             ended at {:.2} s.",
            tries.join(", "),
            g.attempts,
            g.ended.as_secs_f64(),
            r.queue_guarded.out.reader_ended.as_secs_f64()
        ));
    }
    let b = &r.plan.batching;
    report.note(format!(
        "5b: batches of {} rows by primary key, {} ms pause between batches, a plain VACUUM every \
         {} batches. Both backfills start from a table compacted with VACUUM FULL (not measured), \
         so only the method differs. WAL bytes include the app's own writes during the backfill.",
        b.rows_per_batch,
        b.pause.as_millis(),
        b.vacuum_every
    ));
    let ec = &r.expand_contract.out;
    report.note(format!(
        "6: each app version is its own instance (pool of {} connections) at half the rate. \
         6a: v2 starts right after the rename; v1 keeps serving until the phase ends, as \
         instances drain in a rolling deploy. 6b: v1 serves from the start and retires at \
         {:.2} s, v2 serves from the switch at {:.2} s; the contract (DROP COLUMN name) waits \
         until v1 is gone. Backfill: {} rows in {} batches.",
        (plan.connections / 2).max(2),
        ec.v1_retired_at.as_secs_f64(),
        ec.switched_at.as_secs_f64(),
        ec.backfilled_rows,
        ec.backfill_batches,
    ));
    let mut extended = Vec::new();
    for (label, planned, done, end, outlasted, traffic) in all_phases(r) {
        if outlasted {
            report.note(format!(
                "{label}: the migration finished at {:.2} s, after the traffic's cap ({:.2} s); \
                 what the app would have seen after that was not measured.",
                done.as_secs_f64(),
                end.as_secs_f64()
            ));
        } else if done > planned {
            extended.push(format!(
                "{label} {:.1} s (migration done at {:.1} s)",
                end.as_secs_f64(),
                done.as_secs_f64()
            ));
        }
        for t in traffic {
            for w in t.schedule_warnings() {
                report.note(w);
            }
        }
    }
    if !extended.is_empty() {
        report.note(format!(
            "Traffic runs for the planned time and on, until 0.5 s after the migration finished \
             (labkit's open loop with `until`), so every phase shows the whole migration however \
             long it takes here. Phases whose migration outlasted the planned time: {}.",
            extended.join("; ")
        ));
    }
}

fn sentence(report: &mut Report, r: &Results, base: &LatencySummary) {
    let q = r.queue.app().everyone();
    let g = r.queue_guarded.app().everyone();
    let ec = &r.expand_contract.traffic;
    report.sentence(format!(
        "An ALTER TABLE that needs {} of work waited {} behind one long read, and {} app requests \
         queued behind it ({} timed out, p99 {} against a baseline of {}); with lock_timeout = \
         50ms and retries it landed in {} attempts once the reader was done and p99 stayed at {} \
         — so every migration gets a lock_timeout, indexes are built CONCURRENTLY, constraints go \
         in NOT VALID then VALIDATE, backfills run in batches, and renames are expand/contract \
         ({} errors from two app versions, against {} for the one-step rename).",
        format_value(ms(r.queue_guarded.out.ddl.took), "ms"),
        format_value(ms(r.queue.locks.migration_waited()), "ms"),
        r.queue.locks.blocked_requests(),
        q.errors,
        format_value(q.p99_ms, "ms"),
        format_value(base.p99_ms, "ms"),
        r.queue_guarded.out.ddl.attempts,
        format_value(g.p99_ms, "ms"),
        ec[0].errors() + ec[1].errors(),
        r.rename_one_step.traffic[0].errors(),
    ));
}
