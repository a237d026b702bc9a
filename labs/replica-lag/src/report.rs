//! The report: findings (every latency with its sample count), tables, the lag charts, notes
//! and the sentence, built from what the run measured.

use std::time::Duration;

use labkit::{Better, Chart, Recorder, Report, Table};

use crate::Plan;
use crate::ReadYourWrites;
use crate::lag::{LagRun, LagSample, StandbyLag};
use crate::recovery_conflict::{Conflicts, Round};

/// Everything the report is built from.
#[derive(Debug)]
pub struct Facts<'a> {
    pub plan: &'a Plan,
    /// Each standby: label, how long until it streamed, whether labkit started it.
    pub servers: &'a [(String, Duration, bool)],
    pub lag: &'a LagRun,
    pub rw: &'a ReadYourWrites,
    pub conflicts: Option<&'a Conflicts>,
}

/// No replica on this backend: the report says what the lab needs and how to get one.
pub fn needs_a_replica(r: &mut Report, why: &str) {
    r.skipped("every scenario (this lab needs a streaming replica)", why);
    r.note(
        "This lab needs a real streaming replica and never fakes one. Get one with \
         `--backend local` (labkit starts a pg_basebackup -R hot standby of its throwaway \
         primary; needs the Postgres server binaries), or with `--backend env` plus \
         REPLICA_URL pointing at a hot standby of DATABASE_URL's server. The run still exits \
         0: nothing failed, there was nothing to measure.",
    );
    r.sentence("Not measured here: this backend has no streaming replica (see the notes).");
}

/// Findings, tables, charts, notes and the sentence.
pub fn build(r: &mut Report, f: &Facts<'_>) {
    lag_findings(r, f);
    read_your_writes_findings(r, f);
    conflict_findings(r, f);
    notes(r, f);
    sentence(r, f);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A histogram of lag readings in ms (labkit's recorder, so percentiles are HDR, not sorted).
fn lag_recorder<'a>(values: impl Iterator<Item = f64> + 'a) -> Recorder {
    let mut rec = Recorder::new();
    for v in values.filter(|v| v.is_finite() && *v >= 0.0) {
        rec.record(Duration::from_secs_f64(v / 1000.0));
    }
    rec
}

fn replay_ms<'a>(s: impl Iterator<Item = &'a LagSample> + 'a) -> impl Iterator<Item = f64> + 'a {
    s.filter_map(|x| x.replay_ms)
}

fn bytes_max<'a>(s: impl Iterator<Item = &'a LagSample>) -> f64 {
    s.filter_map(|x| x.bytes).fold(0.0, f64::max)
}

fn lag_findings(r: &mut Report, f: &Facts<'_>) {
    let lag = f.lag;
    let natural = &lag.standbys[0];
    let delayed = lag.standbys.get(1);
    let in_steps = |s: &StandbyLag| -> Vec<LagSample> {
        lag.steps
            .iter()
            .flat_map(|step| s.during(step).copied().collect::<Vec<_>>())
            .collect()
    };
    let natural_samples = in_steps(natural);
    let replay = lag_recorder(replay_ms(natural_samples.iter())).summary(Duration::ZERO);
    r.measured(
        "replica_replay_lag_p99_ms",
        "Replay lag p99, streaming replica under the stepped writes (pg_stat_replication.replay_lag)",
        replay.p99_ms,
        "ms",
        replay.count,
    );
    r.finding(
        "replica_lag_bytes_max",
        "WAL not yet replayed, max, streaming replica (pg_wal_lsn_diff)",
        bytes_max(natural_samples.iter()),
        "bytes",
    )
    .better("replica_lag_bytes_max", Better::Lower);
    if let Some(d) = delayed {
        let s = lag_recorder(replay_ms(in_steps(d).iter())).summary(Duration::ZERO);
        r.measured(
            "delayed_replica_replay_lag_p50_ms",
            &format!("Replay lag p50, {}", d.label),
            s.p50_ms,
            "ms",
            s.count,
        );
    }

    let mut t = Table::new(
        "Lag by write-rate step (each write: one transaction of 10 rows)",
        &[
            "writes/s (target)",
            "writes/s (done)",
            "WAL MB/s",
            "write p95 ms",
            "replay lag p50 / p99 / max ms",
            "bytes behind, max",
            "delayed replica: replay lag p50 ms",
        ],
    );
    for step in &lag.steps {
        let n = lag_recorder(replay_ms(natural.during(step))).summary(Duration::ZERO);
        let d = delayed.map_or("—".to_string(), |d| {
            let s = lag_recorder(replay_ms(d.during(step))).summary(Duration::ZERO);
            format!("{:.1}", s.p50_ms)
        });
        let secs = (step.to_s - step.from_s).max(1e-9);
        t.row([
            format!("{:.0}", step.target_rate),
            format!("{:.0}", step.writes.throughput_per_s),
            format!("{:.1}", step.wal_bytes / secs / 1e6),
            format!("{:.2}", step.writes.p95_ms),
            if n.count == 0 {
                "— (no reading)".into()
            } else {
                format!("{:.2} / {:.2} / {:.2}", n.p50_ms, n.p99_ms, n.max_ms)
            },
            format!("{:.0}", bytes_max(natural.during(step))),
            d,
        ]);
    }
    r.table(t);

    let steps = lag
        .steps
        .iter()
        .map(|s| format!("{:.0}", s.target_rate))
        .collect::<Vec<_>>()
        .join(" → ");
    let step_s = lag.steps.first().map_or(0.0, |s| s.to_s - s.from_s);
    let mut time = Chart::new(
        "replica-lag-time",
        &format!("Replication lag, writes/s stepped {steps} ({step_s:.1} s each), then idle"),
        "seconds since the first write",
        "lag (ms, log scale)",
    )
    .log_y();
    let mut bytes = Chart::new(
        "replica-lag-bytes",
        &format!("WAL not yet replayed, writes/s stepped {steps} ({step_s:.1} s each)"),
        "seconds since the first write",
        "KiB behind",
    );
    for s in &lag.standbys {
        let pts = |get: fn(&LagSample) -> Option<f64>| -> Vec<(f64, f64)> {
            s.samples
                .iter()
                .filter_map(|x| get(x).map(|v| (x.at_s, v)))
                .collect()
        };
        time = time.series(
            &format!("{}: replay_lag (primary's view)", s.label),
            pts(|x| x.replay_ms),
        );
        if s.apply_delay.is_zero() {
            time = time.series(
                &format!("{}: now() - last replayed commit", s.label),
                pts(|x| x.since_replayed_commit_ms),
            );
        }
        bytes = bytes.series(&s.label, pts(|x| x.bytes.map(|b| b / 1024.0)));
    }
    r.chart(time).chart(bytes);
}

fn read_your_writes_findings(r: &mut Report, f: &Facts<'_>) {
    let rw = f.rw;
    r.finding(
        "stale_read_ratio_no_fix_undelayed",
        "Stale reads right after a save, no fix, streaming replica as it comes (no delay)",
        rw.natural_no_fix.stale_after_save_pct(),
        "%",
    )
    .better("stale_read_ratio_no_fix_undelayed", Better::Lower);
    r.measured(
        "replica_read_p95_ms",
        "Read p95, streaming replica, no fix (all page loads)",
        rw.natural_no_fix.read_all.p95_ms,
        "ms",
        rw.natural_no_fix.read_all.count,
    );
    r.measured(
        "lsn_wait_read_p95_ms",
        "Read p95, streaming replica, LSN wait (all page loads; the check runs on the first read after a save)",
        rw.natural_lsn_wait.read_all.p95_ms,
        "ms",
        rw.natural_lsn_wait.read_all.count,
    );
    if let Some([no_fix, sticky, lsn]) = &rw.delayed {
        r.finding(
            "stale_read_ratio_no_fix",
            &format!(
                "Stale reads right after a save, no fix, replica delayed {} ms on purpose",
                f.plan.apply_delay.as_millis()
            ),
            no_fix.stale_after_save_pct(),
            "%",
        )
        .better("stale_read_ratio_no_fix", Better::Lower);
        r.measured(
            "stale_read_max_ms",
            "Stalest read, no fix, delayed replica: age of the user's own save it missed",
            ms(no_fix.stale_max),
            "ms",
            no_fix.stale,
        );
        r.finding(
            "stale_read_ratio_primary_after_write",
            &format!(
                "Stale reads right after a save, primary for {} ms after a write, delayed replica",
                f.plan.sticky_window.as_millis()
            ),
            sticky.stale_after_save_pct(),
            "%",
        )
        .better("stale_read_ratio_primary_after_write", Better::Lower);
        r.finding(
            "primary_read_share_after_write",
            "Page loads served by the primary under primary-after-write (offload lost)",
            sticky.on_primary_pct(),
            "%",
        )
        .better("primary_read_share_after_write", Better::Lower);
        r.finding(
            "stale_read_ratio_lsn_wait",
            "Stale reads right after a save, LSN wait, delayed replica",
            lsn.stale_after_save_pct(),
            "%",
        )
        .better("stale_read_ratio_lsn_wait", Better::Lower);
        r.finding(
            "lsn_wait_fallback_share",
            &format!(
                "Page loads that gave up waiting ({} ms) and read the primary, LSN wait, delayed replica",
                f.plan.lsn_max_wait.as_millis()
            ),
            lsn.fell_back_pct(),
            "%",
        )
        .better("lsn_wait_fallback_share", Better::Lower);
    }
    if let Some(([local, remote_apply], _)) = &rw.sync {
        r.p95(
            "local_commit_write_p95_ms",
            "Save p95, synchronous_commit = local (a synchronous standby attached)",
            &local.write,
        );
        r.p95(
            "remote_apply_write_p95_ms",
            "Save p95, synchronous_commit = remote_apply",
            &remote_apply.write,
        );
        r.finding(
            "stale_read_ratio_remote_apply",
            "Stale reads right after a save, remote_apply, plain replica read",
            remote_apply.stale_after_save_pct(),
            "%",
        )
        .better("stale_read_ratio_remote_apply", Better::Lower);
    }

    let mut t = Table::new(
        "Read-your-writes: every policy, the same users",
        &[
            "replica · policy",
            "page loads",
            "stale right after a save",
            "stale, all loads",
            "stalest read ms",
            "on the primary",
            "gave up waiting",
            "read p95 ms (all / after save)",
            "save p95 ms",
        ],
    );
    let delayed = rw.delayed.iter().flatten();
    let sync = rw.sync.iter().flat_map(|(o, _)| o.iter());
    for o in [&rw.natural_no_fix, &rw.natural_lsn_wait]
        .into_iter()
        .chain(delayed)
        .chain(sync)
    {
        t.row([
            o.label.clone(),
            o.reads.to_string(),
            format!(
                "{:.1} % of {}",
                o.stale_after_save_pct(),
                o.reads_after_save
            ),
            format!("{:.1} %", o.stale_pct()),
            format!("{:.1}", ms(o.stale_max)),
            format!("{:.1} %", o.on_primary_pct()),
            format!("{:.1} %", o.fell_back_pct()),
            format!("{:.2} / {:.2}", o.read_all.p95_ms, o.read_after_save.p95_ms),
            format!("{:.2}", o.write.p95_ms),
        ]);
    }
    r.table(t);
}

fn conflict_findings(r: &mut Report, f: &Facts<'_>) {
    let Some(c) = f.conflicts else { return };
    let cancelled = |rounds: &[Round]| rounds.iter().filter(|x| x.cancelled_by_recovery()).count();
    let dead_max = |rounds: &[Round]| {
        rounds
            .iter()
            .map(|x| x.dead_tuples_after_vacuum)
            .max()
            .unwrap_or(0)
    };
    let delay = c.plan.max_standby_streaming_delay.as_millis();
    r.finding(
        "replica_query_cancellations",
        &format!(
            "Reports on the replica cancelled (40001, conflict with recovery), max_standby_streaming_delay = {delay} ms, of {}",
            c.without_feedback.len()
        ),
        cancelled(&c.without_feedback) as f64,
        "count",
    )
    .better("replica_query_cancellations", Better::Lower);
    r.finding(
        "hot_standby_feedback_cancellations",
        &format!(
            "Reports cancelled with hot_standby_feedback = on, of {}",
            c.with_feedback.len()
        ),
        cancelled(&c.with_feedback) as f64,
        "count",
    )
    .better("hot_standby_feedback_cancellations", Better::Lower);
    r.finding(
        "hot_standby_feedback_primary_dead_tuples",
        "Dead tuples VACUUM had to leave on the primary, hot_standby_feedback = on (max per round)",
        dead_max(&c.with_feedback) as f64,
        "count",
    )
    .better("hot_standby_feedback_primary_dead_tuples", Better::Lower);
    r.finding(
        "primary_dead_tuples_without_feedback",
        "Dead tuples VACUUM left on the primary, hot_standby_feedback = off (max per round)",
        dead_max(&c.without_feedback) as f64,
        "count",
    )
    .better("primary_dead_tuples_without_feedback", Better::Lower);

    let mut t = Table::new(
        "Conflict with recovery: a report on the replica while the primary deletes and VACUUMs",
        &[
            "hot_standby_feedback",
            "rows deleted",
            "the report",
            "dead tuples left on the primary",
        ],
    );
    for x in c.without_feedback.iter().chain(&c.with_feedback) {
        let outcome = match (&x.error, x.rows_counted) {
            (Some((code, msg)), _) => format!(
                "cancelled after {:.0} ms: {code} {msg}",
                x.cancelled_after.map_or(0.0, ms)
            ),
            (None, Some(n)) => format!("finished: {n} rows, deleted ones included"),
            (None, None) => "?".into(),
        };
        t.row([
            if x.feedback { "on" } else { "off" }.to_string(),
            x.rows_deleted.to_string(),
            outcome,
            x.dead_tuples_after_vacuum.to_string(),
        ]);
    }
    r.table(t);
}

fn notes(r: &mut Report, f: &Facts<'_>) {
    let p = f.plan;
    let w = &p.workload;
    if f.rw.delayed.is_some() {
        r.note(format!(
            "The delayed replica is delayed on purpose: recovery_min_apply_delay = {} ms (a \
             real setting, used for delayed replicas), so read-your-writes anomalies are \
             certain on a fast machine rather than lucky. The streaming replica has no delay: \
             its numbers are what this machine does on its own, primary and standbys sharing \
             {} cores.",
            p.apply_delay.as_millis(),
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ));
    }
    r.note(format!(
        "Users: {} at once, a page load every ~{} ms each (jittered ×0.5–1.5), every {}th one a \
         save followed at once by a read. 'Stale' = the read showed a version older than the \
         user's own last save; the share of page loads on the primary depends on how often \
         users write relative to the window.",
        w.users,
        w.think.as_millis(),
        w.save_every
    ));
    r.note(
        "After the writes stop (the chart's last half step), now() - \
         pg_last_xact_replay_timestamp() keeps growing although nothing is behind: it is the age \
         of the last replayed commit, so an alert on it fires on an idle primary. \
         pg_stat_replication keeps showing the last measured lag for a while, then NULL.",
    );
    for (label, ready, started_here) in f.servers {
        let how = if *started_here {
            "pg_basebackup -R, start, streaming"
        } else {
            "REPLICA_URL, connected"
        };
        r.note(format!("{label}: {how} in {:.0} ms.", ms(*ready)));
    }
    for step in &f.lag.steps {
        if let Some(w) = &step.warning {
            r.note(w.clone());
        }
    }
    let rw = f.rw;
    let all = [&rw.natural_no_fix, &rw.natural_lsn_wait]
        .into_iter()
        .chain(rw.delayed.iter().flatten())
        .chain(rw.sync.iter().flat_map(|(o, _)| o.iter()));
    for o in all {
        if o.errors > 0 {
            r.note(format!(
                "{}: {} page loads failed; first error: {}",
                o.label,
                o.errors,
                o.first_error.as_deref().unwrap_or("?")
            ));
        }
    }
    if let Some((_, origin)) = &rw.sync {
        r.note(format!("remote_apply ran on {origin}."));
    }
    if let Some(c) = f.conflicts {
        r.note(format!(
            "max_standby_streaming_delay is 30 s by default; the lab sets {} ms so a run does not \
             wait 30 s per cancelled report (the mechanism is the same). The standby counted {} \
             snapshot conflicts (pg_stat_database_conflicts.confl_snapshot).",
            c.plan.max_standby_streaming_delay.as_millis(),
            c.snapshot_conflicts
        ));
    }
}

fn sentence(r: &mut Report, f: &Facts<'_>) {
    let rw = f.rw;
    let mut s = format!(
        "On this machine's undelayed streaming replica {:.0} % of reads right after a save missed it",
        rw.natural_no_fix.stale_after_save_pct(),
    );
    if let Some([no_fix, sticky, _]) = &rw.delayed {
        s.push_str(&format!(
            "; on a replica {} ms behind, {:.0} % did. Reading the primary for {} ms after a \
             write fixed that ({:.0} %) but moved {:.0} % of reads back to the primary",
            f.plan.apply_delay.as_millis(),
            no_fix.stale_after_save_pct(),
            f.plan.sticky_window.as_millis(),
            sticky.stale_after_save_pct(),
            sticky.on_primary_pct(),
        ));
    }
    s.push_str(&format!(
        "; waiting for the write's LSN fixed it ({:.0} %) with a read p95 of {:.2} ms ({:.2} ms without a fix)",
        rw.delayed
            .as_ref()
            .map_or(rw.natural_lsn_wait.stale_after_save_pct(), |[_, _, lsn]| lsn
                .stale_after_save_pct()),
        rw.natural_lsn_wait.read_all.p95_ms,
        rw.natural_no_fix.read_all.p95_ms,
    ));
    if let Some(([local, remote_apply], _)) = &rw.sync {
        s.push_str(&format!(
            "; remote_apply fixed it ({:.0} %) with a save p95 of {:.2} ms ({:.2} ms with a local commit)",
            remote_apply.stale_after_save_pct(),
            remote_apply.write.p95_ms,
            local.write.p95_ms
        ));
    }
    if let Some(c) = f.conflicts {
        let cancelled =
            |rounds: &[Round]| rounds.iter().filter(|x| x.cancelled_by_recovery()).count();
        s.push_str(&format!(
            "; and VACUUM replay cancelled {} of {} long reports on the replica, {} with \
             hot_standby_feedback, which left up to {} dead rows on the primary instead",
            cancelled(&c.without_feedback),
            c.without_feedback.len(),
            cancelled(&c.with_feedback),
            c.with_feedback
                .iter()
                .map(|x| x.dead_tuples_after_vacuum)
                .max()
                .unwrap_or(0),
        ));
    }
    s.push('.');
    r.sentence(s);
}
