//! The lab's own run, at smoke scale: the report keeps its contract (every promised finding
//! key, latencies with their sample counts, the load knobs honoured or declared ignored) and
//! the effects the story depends on. Effects only, never timings.

use std::time::Duration;

use lab_keyset_pagination::scenario::api_load::{KEYSET_PHASE, OFFSET_PHASE};
use lab_keyset_pagination::{FINDING_KEYS, KeysetPagination};
use labkit::{Lab, LoadKnobs};

#[tokio::test]
async fn a_smoke_run_keeps_its_contract_and_the_exact_effects_hold() {
    let t = labkit::testing::ctx("keyset-pagination").await;
    let load = LoadKnobs {
        clients: Some(2),
        duration: Some(Duration::from_millis(400)),
        ..LoadKnobs::default()
    };
    let report = labkit::testing::smoke_run_with(&KeysetPagination, &t, load).await;
    let get = |key: &str| {
        report
            .get(key)
            .unwrap_or_else(|| panic!("finding `{key}` missing"))
    };
    // The contract checks the keys `KeysetPagination` promises: they are its FINDING_KEYS,
    // and nothing is reported that is not promised.
    assert_eq!(KeysetPagination.finding_keys(), FINDING_KEYS);
    for f in &report.findings {
        assert!(
            FINDING_KEYS.contains(&f.key.as_str()),
            "unpromised {}",
            f.key
        );
    }
    for key in [
        "offset_p95_ms_page_1",
        "offset_p95_ms_deepest",
        "keyset_p95_ms_page_1",
        "keyset_p95_ms_deepest",
        "count_exact_ms",
        "count_estimate_ms",
        "api_offset_deepest_p95_ms",
        "api_keyset_deepest_p95_ms",
    ] {
        assert!(get(key) > 0.0, "{key}");
    }
    assert_eq!(get("deepest_page"), 1_000.0, "50,000 rows / 50");
    assert!(get("offset_buffers_deepest") > 50.0 * get("keyset_buffers_deepest"));

    // The deepest page through the service under load: every answer a 200.
    assert_eq!(get("api_load_errors"), 0.0);

    // Writes during the walk: keyset neither repeats nor skips; offset does, exactly as
    // scripted (10 rounds of +3 inserts, 10 rounds of -2 deletes behind the reader).
    assert_eq!(get("keyset_duplicates_under_writes"), 0.0);
    assert_eq!(get("keyset_misses_under_writes"), 0.0);
    assert_eq!(get("scripted_offset_duplicates"), 30.0);
    assert_eq!(get("scripted_offset_misses"), 20.0);
    assert_eq!(get("scripted_keyset_anomalies"), 0.0);

    // Ties: the created_at-only cursor loses rows, the tie-broken one none.
    assert!(get("naive_keyset_rows_lost_on_ties") > 0.0);
    assert_eq!(get("tiebroken_keyset_rows_lost_on_ties"), 0.0);

    // The knobs: the two HTTP phases ran with 2 clients for 0.4 s; the scenarios that do
    // not follow them say so.
    assert_eq!(report.load["clients"], 2);
    let names: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, [OFFSET_PHASE, KEYSET_PHASE]);
    for p in &report.phases {
        assert_eq!(p.clients, 2, "{}", p.describe());
        assert_eq!(p.planned_s, Some(0.4), "{}", p.describe());
        assert!(p.samples > 0 && p.errors == 0, "{}", p.describe());
    }
    for flag in ["--clients", "--duration"] {
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.starts_with(&format!("{flag} was ignored: by every scenario but"))),
            "{flag}: {:?}",
            report.notes
        );
    }

    assert!(!report.sentence.is_empty());
    assert_eq!(report.charts.len(), 1);
    t.finish().await;
}
