//! The whole lab at smoke scale: it runs, its report carries every promised key, and the
//! numbers that are invariants (not timings) hold.

use lab_load_shedding::{FINDING_KEYS, LoadShedding};
use labkit::{RunOptions, Scale};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_run_reports_every_promised_key_and_the_invariants_hold() {
    let t = labkit::testing::ctx("load-shedding").await;
    let outcome = labkit::run_lab(
        &LoadShedding,
        &t.backends,
        RunOptions {
            scale: Scale::Smoke,
            ..RunOptions::default()
        },
    )
    .await
    .expect("lab run");
    let report = outcome.report;
    for key in FINDING_KEYS {
        let f = report
            .finding_by_key(key)
            .unwrap_or_else(|| panic!("missing {key}"));
        assert!(f.value.is_finite(), "{key} = {}", f.value);
        if f.unit == "ms" {
            assert!(f.samples.is_some_and(|n| n > 0), "{key} has no samples");
        }
    }
    // Whatever the machine's speed: every 503 from the shed layer says when to retry, and
    // no request that the deadline queue dropped ran a statement.
    assert_eq!(report.get("shed_503_without_retry_after"), Some(0.0));
    assert_eq!(report.get("deadline_statements_for_uncompleted"), Some(0.0));
    assert!(!report.sentence.is_empty());
    assert_eq!(report.charts.len(), 2);
    t.finish().await;
}
