//! The whole lab at smoke scale: it runs, its report carries every contracted key, and the
//! matrix is Hermitage's for Postgres cell for cell.

use lab_isolation_levels::anomalies::{Anomaly, Level};
use lab_isolation_levels::{FINDING_KEYS, IsolationLevels};

#[tokio::test]
async fn the_report_has_a_verdict_for_every_anomaly_at_every_level_and_the_transfer_numbers() {
    let t = labkit::testing::ctx("isolation-levels").await;
    // Every promised key, finite, and a sample count on every latency.
    let report = labkit::testing::smoke_run_keeps_its_contract(&IsolationLevels, &t).await;
    // The whole matrix is in the contract: a verdict per anomaly per level.
    for anomaly in Anomaly::ALL {
        for level in Level::ALL {
            let key = anomaly.finding_key(level);
            assert!(
                FINDING_KEYS.contains(&key.as_str()),
                "{key} is not promised"
            );
        }
    }
    for anomaly in Anomaly::ALL {
        for level in Level::ALL {
            let v = report.get(&anomaly.finding_key(level)).unwrap();
            assert!(v == 0.0 || v == 1.0);
        }
        // Serializable prevented every one of them.
        assert_eq!(
            report.get(&anomaly.finding_key(Level::Serializable)),
            Some(0.0)
        );
    }
    // Hermitage's Postgres column, cell for cell: which anomalies each level lets through.
    let hermitage: [(Anomaly, [bool; 3]); 11] = [
        // (anomaly, [read committed, repeatable read, serializable])
        (Anomaly::G0, [false, false, false]),
        (Anomaly::G1a, [false, false, false]),
        (Anomaly::G1b, [false, false, false]),
        (Anomaly::G1c, [false, false, false]),
        (Anomaly::Otv, [false, false, false]),
        (Anomaly::PmpRead, [true, false, false]),
        (Anomaly::PmpWrite, [true, false, false]),
        (Anomaly::P4, [true, false, false]),
        (Anomaly::GSingle, [true, false, false]),
        (Anomaly::G2Item, [true, true, false]),
        (Anomaly::G2, [true, true, false]),
    ];
    for (anomaly, cells) in hermitage {
        for (level, happened) in [
            Level::ReadCommitted,
            Level::RepeatableRead,
            Level::Serializable,
        ]
        .into_iter()
        .zip(cells)
        {
            let got = report.get(&anomaly.finding_key(level)) == Some(1.0);
            assert_eq!(got, happened, "{} at {level}", anomaly.name());
        }
    }
    assert_eq!(report.get("anomalies_happened_read_committed"), Some(6.0));
    assert_eq!(report.get("anomalies_happened_repeatable_read"), Some(2.0));
    assert_eq!(report.get("anomalies_happened_serializable"), Some(0.0));
    assert_eq!(
        report.get("transfer_invariant_violations_serializable"),
        Some(0.0)
    );
    assert_eq!(
        report.get("transfer_invariant_violations_for_update"),
        Some(0.0)
    );
    assert_eq!(report.get("deadlocks_with_lock_ordering"), Some(0.0));
    assert_eq!(report.get("deadlock_script_opposite_order"), Some(1.0));
    assert_eq!(report.get("deadlock_script_lower_id_first"), Some(0.0));
    // Transcripts are in the Markdown.
    let md = report.to_markdown();
    assert!(md.contains("Transcript: G2-item write skew"));
    assert!(md.contains("BLOCKED (waits for T1)"));
    t.finish().await;
}

#[tokio::test]
async fn clients_shape_the_transfers_and_the_other_knobs_say_why_they_do_not_apply() {
    let t = labkit::testing::ctx("isolation-levels").await;
    let load = labkit::LoadKnobs {
        clients: Some(3),
        duration: Some(std::time::Duration::from_secs(1)),
        rate: Some(10.0),
        warmup: Some(std::time::Duration::from_millis(10)),
    };
    let report = labkit::testing::smoke_run_with(&IsolationLevels, &t, load).await;
    assert_eq!(report.load["clients"], 3);
    let transfers: Vec<_> = report
        .phases
        .iter()
        .filter(|p| p.name.starts_with("transfers: "))
        .collect();
    assert_eq!(transfers.len(), 5, "{:?}", report.phases);
    assert!(transfers.iter().all(|p| p.clients == 3));
    for flag in ["--duration", "--rate", "--warmup"] {
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.starts_with(&format!("{flag} was ignored: "))),
            "{flag}: {:?}",
            report.notes
        );
    }
    assert!(
        !report
            .notes
            .iter()
            .any(|n| n.starts_with("--clients was ignored"))
    );
    t.finish().await;
}
