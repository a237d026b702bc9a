//! What the run's results say: the findings (keys in [`crate::FINDING_KEYS`]), the tables,
//! the sentence and the notes. Built from the steps' results in [`crate::scenarios`];
//! nothing here measures anything.

use labkit::{Better, Report, Table};

use crate::scenarios::{
    BURST, Cost, Crash, GUARDED_PROVIDER_LATENCY, Guarded, HardEdges, Hooks, NaiveRace, Reaped,
    RetryStory,
};

/// Every step's results.
pub struct Results {
    pub retry: RetryStory,
    pub naive: NaiveRace,
    pub guarded: Guarded,
    pub crash: Crash,
    pub cost: Cost,
    pub hooks: Hooks,
    pub reaped: Reaped,
    pub edges: HardEdges,
}

pub fn build(mut report: Report, r: &Results) -> Report {
    findings(&mut report, r);
    tables(&mut report, r);
    sentence(&mut report, r);
    notes(&mut report, r);
    report
}

fn findings(report: &mut Report, r: &Results) {
    let Results {
        retry,
        naive,
        guarded,
        crash,
        cost,
        hooks,
        reaped,
        edges,
    } = r;
    let count = |report: &mut Report, key: &str, label: &str, v: f64| {
        report.finding(key, label, v, "count");
    };
    // The keys first, then the supporting ones.
    count(
        report,
        "no_key_charges",
        &format!(
            "provider charges after {} timed-out attempts, no idempotency",
            retry.attempts
        ),
        retry.no_key_charges as f64,
    );
    count(
        report,
        "naive_race_charges",
        &format!(
            "provider charges from one burst of {} duplicates, worst of {} bursts (check-then-insert)",
            naive.burst, naive.rounds
        ),
        naive.max_charges as f64,
    );
    count(
        report,
        "naive_race_bursts_with_double_charge",
        "bursts of the naive implementation that charged more than once",
        naive.rounds_with_duplicates as f64,
    );
    count(
        report,
        "naive_race_bursts",
        "bursts sent to the naive implementation",
        naive.rounds as f64,
    );
    count(
        report,
        "guarded_charges",
        "provider charges per key, worst burst (key record + unique index)",
        guarded.max_charges as f64,
    );
    count(
        report,
        "concurrent_duplicates",
        "concurrent duplicate requests in the largest burst",
        guarded.largest as f64,
    );
    count(
        report,
        "guarded_non_conforming_responses",
        "responses that were not the one 201, a 409 or a byte-identical replay",
        guarded.non_conforming as f64,
    );
    count(
        report,
        "crash_retry_charges",
        "provider charges after a crash and retries, worst recovery point",
        crash.max_charges as f64,
    );
    count(
        report,
        "webhook_rows_after_redelivery",
        &format!(
            "inbox rows for one event delivered {} times concurrently",
            hooks.redeliveries
        ),
        hooks.rows as f64,
    );
    count(
        report,
        "webhook_fulfillments_after_redelivery",
        "orders fulfilled for that event",
        hooks.fulfillments as f64,
    );
    count(
        report,
        "webhook_duplicates_removed",
        "pre-existing duplicate webhook rows moved out before adding the constraint",
        hooks.dedupe.rows_removed as f64,
    );
    report.p50(
        "first_request_p50_ms",
        "first request p50, with the idempotency layer",
        &cost.first,
    );
    report.p95(
        "first_request_p95_ms",
        "first request p95, with the idempotency layer",
        &cost.first,
    );
    report.p50(
        "no_idempotency_p50_ms",
        "request p50, without idempotency",
        &cost.none,
    );
    report.p95(
        "no_idempotency_p95_ms",
        "request p95, without idempotency",
        &cost.none,
    );
    report.p50("replay_p50_ms", "replay p50", &cost.replay);
    report.p95("replay_p95_ms", "replay p95", &cost.replay);
    count(
        report,
        "first_request_sql_statements",
        "SQL statements per first request (COMMITs counted; sqlx pipelines BEGIN, uncounted)",
        cost.first_sql,
    );
    count(
        report,
        "no_idempotency_sql_statements",
        "SQL statements per request without idempotency",
        cost.none_sql,
    );
    count(
        report,
        "replay_sql_statements",
        "SQL statements per replay",
        cost.replay_sql,
    );
    count(
        report,
        "reaped_keys",
        "expired keys deleted by the reaper (live keys untouched)",
        reaped.deleted as f64,
    );
    count(
        report,
        "bad_input_requests",
        "bad requests sent (malformed, 10 MB, wrong content type, NUL in every string, tampered keys)",
        edges.requests as f64,
    );
    count(
        report,
        "bad_input_5xx_responses",
        "of those, answered with a 5xx",
        edges.server_errors as f64,
    );
    count(
        report,
        "bad_input_unexpected_responses",
        "of those, not the expected 4xx with its JSON error code",
        edges.unexpected.len() as f64,
    );
    count(
        report,
        "bad_input_side_effects",
        "rows stored or charges made for any of them",
        edges.side_effects as f64,
    );
    // Counts where any increase is a regression of the system (not of the bug it shows).
    for key in [
        "guarded_charges",
        "guarded_non_conforming_responses",
        "crash_retry_charges",
        "webhook_rows_after_redelivery",
        "webhook_fulfillments_after_redelivery",
        "first_request_sql_statements",
        "no_idempotency_sql_statements",
        "replay_sql_statements",
        "bad_input_5xx_responses",
        "bad_input_unexpected_responses",
        "bad_input_side_effects",
    ] {
        report.better(key, Better::Lower);
    }
}

fn tables(report: &mut Report, r: &Results) {
    let Results {
        retry,
        naive,
        guarded,
        crash,
        cost,
        hooks,
        reaped,
        edges,
    } = r;
    let mut t = Table::new(
        format!(
            "A client with a {} ms timeout retries; the provider takes {} ms",
            retry.client_timeout.as_millis(),
            retry.provider_latency.as_millis()
        ),
        &[
            "implementation",
            "what the client saw, attempt by attempt",
            "provider charges",
        ],
    );
    t.row([
        "no idempotency".to_string(),
        retry.no_key_outcomes.join(", "),
        retry.no_key_charges.to_string(),
    ]);
    t.row([
        "Idempotency-Key".to_string(),
        retry.guarded_outcomes.join(", "),
        retry.guarded_charges.to_string(),
    ]);
    report.table(t);

    let mut t = Table::new(
        "Concurrent identical requests (one key per burst, released by a barrier; key-record bursts end with one more retry after they settle)",
        &[
            "implementation",
            "burst size",
            "bursts",
            "bursts that charged > 1",
            "charges per burst (min–max)",
            "409s",
            "identical replays",
            "non-conforming",
        ],
    );
    t.row([
        "check-then-insert".to_string(),
        naive.burst.to_string(),
        naive.rounds.to_string(),
        naive.rounds_with_duplicates.to_string(),
        format!("{}–{}", naive.min_charges, naive.max_charges),
        "—".into(),
        "—".into(),
        "—".into(),
    ]);
    for g in &guarded.rows {
        t.row([
            "key record (INSERT … ON CONFLICT)".to_string(),
            g.size.to_string(),
            g.bursts.to_string(),
            g.bursts_over_one.to_string(),
            format!("{}–{}", g.min_charges, g.max_charges),
            g.outcome.in_flight_409.to_string(),
            g.outcome.identical_replays.to_string(),
            g.outcome.non_conforming.to_string(),
        ]);
    }
    report.table(t);

    let mut t = Table::new(
        format!(
            "A crash or provider failure, then retries (lock timeout {} s, time advanced past it for the last retry)",
            crash.lock_timeout.as_secs()
        ),
        &[
            "failure",
            "first attempt",
            "retry at once",
            "retry after lock timeout",
            "provider charges",
            "payment rows",
            "receipts queued",
        ],
    );
    for c in &crash.rows {
        t.row([
            c.failure.clone(),
            c.first.clone(),
            c.immediate.clone(),
            c.after_timeout.clone(),
            c.charges.to_string(),
            c.payments.to_string(),
            c.receipts.to_string(),
        ]);
    }
    report.table(t);

    let mut t = Table::new(
        format!(
            "Cost per request: {} s closed loop each, {} client{}, provider latency 0",
            cost.duration.as_secs_f64(),
            cost.clients,
            if cost.clients == 1 { "" } else { "s" }
        ),
        &[
            "request",
            "requests",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "SQL statements",
        ],
    );
    for (name, s, q) in [
        (
            "first request, idempotency layer",
            &cost.first,
            cost.first_sql,
        ),
        ("request without idempotency", &cost.none, cost.none_sql),
        ("replay of a finished key", &cost.replay, cost.replay_sql),
    ] {
        t.row([
            name.to_string(),
            s.count.to_string(),
            format!("{:.2}", s.p50_ms),
            format!("{:.2}", s.p95_ms),
            format!("{:.2}", s.p99_ms),
            format!("{q:.1}"),
        ]);
    }
    report.table(t);

    let mut t = Table::new("Webhooks, the reaper and bad input", &["step", "result"]);
    t.row([
        "legacy inbox rows (v1, no constraint)".to_string(),
        hooks.legacy_rows.to_string(),
    ]);
    t.row([
        "event ids with duplicates".to_string(),
        hooks.dedupe.events_with_duplicates.to_string(),
    ]);
    t.row([
        "rows moved to webhook_events_duplicates".to_string(),
        hooks.dedupe.rows_removed.to_string(),
    ]);
    t.row([
        "dedupe + ADD CONSTRAINT, one transaction".to_string(),
        format!("{:.0} ms", hooks.dedupe_ms),
    ]);
    t.row([
        "duplicates left after".to_string(),
        hooks.duplicates_left.to_string(),
    ]);
    t.row([
        format!(
            "one event delivered {} times concurrently",
            hooks.redeliveries
        ),
        format!(
            "{} processed, {} duplicate, {} other; {} inbox row, {} fulfilment",
            hooks.processed, hooks.duplicates, hooks.other, hooks.rows, hooks.fulfillments
        ),
    ]);
    t.row([
        format!(
            "reaper on {} expired + {} live keys",
            reaped.expired_seeded, reaped.live_seeded
        ),
        format!(
            "{} deleted, {} live kept, {:.0} ms",
            reaped.deleted, reaped.live_left, reaped.ms
        ),
    ]);
    t.row([
        format!("{} bad requests (see notes)", edges.requests),
        format!(
            "{} answered 5xx, {} not as expected, {} rows stored or charges",
            edges.server_errors,
            edges.unexpected.len(),
            edges.side_effects
        ),
    ]);
    report.table(t);
}

fn sentence(report: &mut Report, r: &Results) {
    let Results {
        retry,
        naive,
        guarded,
        crash,
        cost,
        ..
    } = r;
    report.sentence(format!(
        "Without a key, {attempts} timed-out retries charged the customer {nk} times; a check-then-insert key check still charged more than once in {nr} of {nt} bursts of {nb} concurrent duplicates (up to {nm} charges); a key record claimed with INSERT … ON CONFLICT charged exactly {gc} time per key in bursts of up to {gl}, and after a crash at every recovery point, for {fp:.2} ms p95 per first request against {np:.2} ms without it, while a replay costs {rp:.2} ms.",
        attempts = retry.attempts,
        nk = retry.no_key_charges,
        nr = naive.rounds_with_duplicates,
        nt = naive.rounds,
        nb = naive.burst,
        nm = naive.max_charges,
        gc = guarded.max_charges.max(crash.max_charges),
        gl = guarded.largest,
        fp = cost.first.p95_ms,
        np = cost.none.p95_ms,
        rp = cost.replay.p95_ms,
    ));
}

/// What was done to make each number happen, honestly.
fn notes(report: &mut Report, r: &Results) {
    report.note(format!(
        "Bursts: the client spawns every request of a burst, holds them at a tokio Barrier and releases them together (the server has no barrier or sleep; the race window of check-then-insert is its own provider call). The naive implementation ran at least {} bursts of {BURST} and kept going (up to 10×) until a double charge showed.",
        r.naive.min_rounds
    ));
    report.note(format!(
        "The provider answers after {} ms in the key-record bursts (so duplicates arrive while the first request is in flight and get 409) and after 0 ms in the naive bursts and the cost measurement.",
        GUARDED_PROVIDER_LATENCY.as_millis()
    ));
    report.note("A simulated crash returns from the handler at the fault point without any cleanup, so the key stays locked as a killed process would leave it; the retry right after gets 409, and the crash rows run on a second service instance whose clock is advanced past the lock timeout instead of sleeping through it.");
    report.note("Cost: closed-loop phases over keep-alive loopback HTTP connections (one per client; p50/p95 from an HDR histogram, after an unmeasured warm-up); the load driver, service, provider and Postgres share this machine's cores. SQL statements are exact counts from labkit's SqlCounter on the service router.");
    report.note("Bad input: every route with a body got malformed JSON, a 10 MB body, no and the wrong content type, the wrong shape and a NUL character in each string field (Postgres cannot store \\u0000; labkit's JsonBody refuses it with 400 invalid_text before any SQL); the payment routes also got tampered, oversized and non-ASCII keys and tokens, and NUL/DEL bytes in headers as raw bytes (refused by the HTTP parser, answered with labkit's JSON error body).");
    for u in &r.edges.unexpected {
        report.note(format!("Bad input answered wrongly: {u}"));
    }
}
