//! Findings, tables, notes and the sentence, from what the run measured.

use labkit::{Better, LabCtx, Report, Table};

use crate::orders::WritePath;
use crate::run::Results;

pub fn build(ctx: &LabCtx, title: &str, r: &Results) -> Report {
    let mut report = ctx.report(title);
    dual_write(&mut report, r);
    delivery(&mut report, r);
    pitfall(&mut report, r);
    saga(&mut report, r);
    notes(&mut report, r);
    sentence(&mut report, r);
    report
}

fn lower(report: &mut Report, key: &str, label: &str, value: f64) {
    report.finding(key, label, value, "count");
    report.better(key, Better::Lower);
}

fn dual_write(report: &mut Report, r: &Results) {
    let row = |p: WritePath| r.dual.iter().find(|d| d.path == p).expect("every path ran");
    let (ctp, ptc, ob) = (
        row(WritePath::CommitThenPublish),
        row(WritePath::PublishThenCommit),
        row(WritePath::Outbox),
    );
    lower(
        report,
        "dual_write_lost_events",
        &format!(
            "commit then publish: orders committed with no event ({} orders)",
            ctp.attempts
        ),
        ctp.lost as f64,
    );
    lower(
        report,
        "dual_write_phantom_events",
        &format!(
            "publish then commit: events for orders that do not exist ({} orders)",
            ptc.attempts
        ),
        ptc.phantom as f64,
    );
    report.finding(
        "dual_write_crashes_injected",
        "crashes injected between the two writes (both dual-write paths)",
        (ctp.crashes + ptc.crashes) as f64,
        "count",
    );
    lower(
        report,
        "outbox_crash_lost_or_phantom_events",
        &format!(
            "outbox: lost + phantom events after {} crashes right after commit",
            ob.crashes
        ),
        (ob.lost + ob.phantom) as f64,
    );
    report.p50(
        "commit_then_publish_write_p50_ms",
        "write latency, commit then XADD (p50)",
        &ctp.write,
    );
    report.p50(
        "outbox_write_p50_ms",
        "write latency, order + outbox row in one transaction (p50)",
        &ob.write,
    );
    let mut t = Table::new(
        format!(
            "1. The dual write: {} orders per path, a crash between the two writes every {}th",
            ctp.attempts, r.shape.dual_crash_every
        ),
        &[
            "write path",
            "orders",
            "crashes",
            "orders committed",
            "events on the stream",
            "lost",
            "phantom",
            "write p50",
        ],
    );
    for d in &r.dual {
        t.row([
            d.path.key().to_string(),
            d.attempts.to_string(),
            d.crashes.to_string(),
            d.committed.to_string(),
            d.events.to_string(),
            d.lost.to_string(),
            d.phantom.to_string(),
            format!("{:.2} ms", d.write.p50_ms),
        ]);
    }
    report.table(t);
}

fn delivery(report: &mut Report, r: &Results) {
    let d = &r.delivery;
    let c = &d.crash;
    report.p50(
        "relay_lag_p50_ms",
        &format!(
            "relay lag, outbox insert → consumer received (p50, {:.0} orders/s, {} relays, \
             {} consumers)",
            d.rate, d.relays, d.consumers
        ),
        &d.lag,
    );
    report.p99("relay_lag_p99_ms", "relay lag (p99)", &d.lag);
    lower(
        report,
        "outbox_lost_events",
        &format!(
            "outbox with crashing relays and consumer: orders never picked ({} orders)",
            c.placed
        ),
        c.lost as f64,
    );
    lower(
        report,
        "outbox_duplicates_delivered",
        "events the relays published more than once",
        c.duplicates_delivered as f64,
    );
    report.finding(
        "outbox_relay_crashes",
        "relay crashes after publish, before marking sent",
        c.relay_crashes as f64,
        "count",
    );
    report.finding(
        "consumer_crashes",
        "consumer crashes after commit, before XACK",
        c.consumer_crashes as f64,
        "count",
    );
    report.finding(
        "consumer_redeliveries_absorbed",
        "redeliveries the inbox recognised and dropped",
        c.absorbed as f64,
        "count",
    );
    lower(
        report,
        "consumer_duplicate_effects",
        "duplicate pick-list lines, consumer with an inbox",
        c.duplicate_effects as f64,
    );
    lower(
        report,
        "consumer_duplicate_effects_without_inbox",
        "duplicate pick-list lines, the same consumer without an inbox",
        c.duplicate_effects_without_inbox as f64,
    );
    let mut t = Table::new(
        "2. The outbox with crashing relays (after publish) and consumer (after commit)",
        &["measure", "value"],
    );
    let crashes = format!("{} / {}", c.relay_crashes, c.consumer_crashes);
    for (k, v) in [
        (
            "orders placed (order + outbox row, one transaction)",
            c.placed.to_string(),
        ),
        ("relay crashes / consumer crashes", crashes),
        ("stream entries", c.stream_entries.to_string()),
        (
            "distinct events on the stream",
            c.distinct_events.to_string(),
        ),
        (
            "events published twice or more (relay duplicates)",
            c.duplicates_delivered.to_string(),
        ),
        (
            "entries reclaimed from dead consumers (XAUTOCLAIM)",
            c.reclaimed.to_string(),
        ),
        ("redeliveries absorbed by the inbox", c.absorbed.to_string()),
        ("orders with no pick-list line (lost)", c.lost.to_string()),
        (
            "duplicate pick-list lines, with inbox",
            c.duplicate_effects.to_string(),
        ),
        (
            "duplicate pick-list lines, without inbox",
            c.duplicate_effects_without_inbox.to_string(),
        ),
    ] {
        t.row([k.to_string(), v]);
    }
    report.table(t);
    if let Some(w) = &d.schedule_warning {
        report.note(w.clone());
    }
    report.finding(
        "relay_backlog_at_end",
        "events still queued (outbox + stream) when the lag phase's writes ended",
        d.backlog_at_end as f64,
        "count",
    );
    report.better("relay_backlog_at_end", Better::Lower);
    if d.backlog_at_end as f64 > d.rate * 0.25 {
        report.note(format!(
            "The relays and consumers fell behind at {:.0} orders/s: {} events were still queued \
             when the writes stopped, so the relay lag above includes that queue. Lower --rate to \
             see the lag of a pipeline that keeps up.",
            d.rate, d.backlog_at_end
        ));
    }
}

fn pitfall(report: &mut Report, r: &Results) {
    let p = &r.pitfall;
    lower(
        report,
        "id_cursor_relay_missed_events",
        &format!(
            "`seq > last_seen` relay: events never published under load ({} events, {} writers)",
            p.events, p.clients
        ),
        p.cursor_missed as f64,
    );
    lower(
        report,
        "id_cursor_relay_missed_forced",
        &format!(
            "`seq > last_seen` relay: missed in the forced interleaving (of {})",
            p.forced.events
        ),
        p.forced.cursor_missed as f64,
    );
    lower(
        report,
        "fixed_relay_missed_events",
        "claiming relay (`sent_at IS NULL`): missed, forced + under load",
        (p.forced.fixed_missed + p.fixed_missed) as f64,
    );
    let mut t = Table::new(
        "3. The relay pitfall, forced: two transactions commit out of seq order",
        &["who", "what happened"],
    );
    for (who, what) in &p.forced.transcript {
        t.row([who.as_str(), what.as_str()]);
    }
    report.table(t);
    let mut t = Table::new(
        "3. The relay pitfall: missed events",
        &["relay", "forced (of 2)", "under load"],
    );
    t.row([
        "cursor: WHERE seq > last_seen".to_string(),
        p.forced.cursor_missed.to_string(),
        format!("{} of {}", p.cursor_missed, p.events),
    ]);
    t.row([
        "claim: WHERE sent_at IS NULL … SKIP LOCKED".to_string(),
        p.forced.fixed_missed.to_string(),
        format!("{} of {}", p.fixed_missed, p.events),
    ]);
    report.table(t);
}

fn saga(report: &mut Report, r: &Results) {
    let s = &r.saga;
    let outcome = |k: &str| {
        s.outcomes
            .iter()
            .find(|(o, _)| o == k)
            .map_or(0, |(_, n)| *n)
    };
    let confirmed = outcome("confirmed");
    report.finding(
        "saga_runs",
        &format!(
            "sagas run ({} at {:.0} orders/s over HTTP, then a flash sale of {} from {} clients)",
            s.steady, s.rate, s.sale, s.sale_clients
        ),
        s.sagas as f64,
        "count",
    );
    report.finding(
        "saga_max_in_flight",
        "most sagas in flight at one moment",
        s.max_in_flight as f64,
        "count",
    );
    report.finding(
        "saga_confirmed",
        "sagas confirmed",
        confirmed as f64,
        "count",
    );
    report.finding(
        "saga_cancelled",
        "sagas cancelled (out of stock, declined, customer)",
        (s.sagas as i64 - confirmed) as f64,
        "count",
    );
    report.finding(
        "saga_compensations_run",
        &format!(
            "compensations run: {} stock releases + {} refunds",
            s.compensations.stock_releases, s.compensations.refunds
        ),
        (s.compensations.stock_releases + s.compensations.refunds) as f64,
        "count",
    );
    lower(
        report,
        "saga_invariant_violations",
        "invariant violations across the three services",
        crate::invariants::total(&s.checks) as f64,
    );
    report.finding(
        "saga_resumed_after_orchestrator_crash",
        "sagas in flight when the orchestrator died, resumed by its successor",
        s.resumed as f64,
        "count",
    );
    report.finding(
        "saga_orchestrator_crashes",
        "orchestrator crashes (before commit / before XACK)",
        s.orchestrator_crashes as f64,
        "count",
    );
    report.finding(
        "saga_crashes_injected",
        "crashes injected in the saga step (all processes)",
        s.crashes as f64,
        "count",
    );
    report.finding(
        "saga_redeliveries_absorbed",
        "redelivered commands/replies absorbed by the inboxes",
        s.redeliveries_absorbed as f64,
        "count",
    );
    report.measured(
        "saga_flash_sale_drain_s",
        "flash sale: first order placed → every saga finished",
        s.sale_drained.as_secs_f64(),
        "s",
        s.sale,
    );
    report.p50(
        "saga_duration_p50_ms",
        "order placed → saga finished, steady orders (p50)",
        &s.duration,
    );
    report.p99(
        "saga_duration_p99_ms",
        "order placed → saga finished, steady orders (p99)",
        &s.duration,
    );

    if let Some(w) = &s.schedule_warning {
        report.note(w.clone());
    }
    let mut t = Table::new("4. Saga outcomes", &["outcome", "sagas"]);
    for (o, n) in &s.outcomes {
        t.row([o.clone(), n.to_string()]);
    }
    report.table(t);
    let mut t = Table::new(
        "4. Invariants after every saga finished",
        &["invariant", "violations"],
    );
    for c in &s.checks {
        t.row([c.rule.to_string(), c.violations.to_string()]);
    }
    report.table(t);
}

fn notes(report: &mut Report, r: &Results) {
    let s = &r.saga;
    report.note(format!(
        "Crash plan: dual write — a crash between the two writes every {}th order; outbox — a relay \
         crash after publishing every {}th batch and a consumer crash after commit every {}th \
         message; saga — {} crashes across the orchestrator (before commit and before XACK), the \
         orders relay and the payments consumer, {} process restarts.",
        r.shape.dual_crash_every,
        r.shape.relay_crash_every,
        r.shape.consumer_crash_every,
        s.crashes,
        s.restarts
    ));
    report.note(
        "Relay lag runs from the writer's clock at INSERT to the consumer's clock at receipt, on \
         one machine. Relays wake on LISTEN/NOTIFY (a statement trigger on the outbox), not a \
         poll interval; a polling relay adds half its interval to p50."
            .to_string(),
    );
    report.note(
        "XAUTOCLAIM's min idle time is compressed to 1 s (production: tens of seconds), so a \
         crashed consumer's entries come back within a second; the mechanism is the same."
            .to_string(),
    );
    report.note(format!(
        "Saga durations (p50 {:.1} ms, p99 {:.1} ms) include four relay hops per happy path and \
         the waits of sagas caught in a crash until their reply was reclaimed.",
        s.duration.p50_ms, s.duration.p99_ms
    ));
}

fn sentence(report: &mut Report, r: &Results) {
    let ctp = r
        .dual
        .iter()
        .find(|d| d.path == WritePath::CommitThenPublish)
        .expect("ran");
    let ptc = r
        .dual
        .iter()
        .find(|d| d.path == WritePath::PublishThenCommit)
        .expect("ran");
    let d = &r.delivery;
    let s = &r.saga;
    report.sentence(format!(
        "With a crash between the two writes, commit-then-publish lost {} of {} events and \
         publish-then-commit invented {} phantoms; the outbox lost {} while its crashing relays \
         delivered {} events twice, the inbox kept duplicate effects at {} (a consumer without one \
         made {}), relay lag was {:.1} ms p50 / {:.1} ms p99, the `id > last_seen` relay missed \
         {} of {} events under load, and {} sagas (up to {} in flight at once) through {} orchestrator \
         crashes ended with {} invariant violations.",
        ctp.lost,
        ctp.attempts,
        ptc.phantom,
        d.crash.lost,
        d.crash.duplicates_delivered,
        d.crash.duplicate_effects,
        d.crash.duplicate_effects_without_inbox,
        d.lag.p50_ms,
        d.lag.p99_ms,
        r.pitfall.cursor_missed,
        r.pitfall.events,
        s.sagas,
        s.max_in_flight,
        s.orchestrator_crashes,
        crate::invariants::total(&s.checks),
    ));
}
