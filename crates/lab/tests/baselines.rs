//! Each lab's committed `baseline.json` is the run its README shows and the reference
//! `lab run <id> --baseline` and `lab compare` put beside a user's run. A baseline that lost
//! a promised key, or was measured at another scale or schema, would make that comparison
//! silently skip rows: check every lab's, without running anything.

use labkit::report::SCHEMA_VERSION;

#[test]
fn every_labs_baseline_is_a_default_scale_run_with_every_promised_key() {
    let mut problems = Vec::new();
    for lab in lab::labs() {
        let id = lab.id();
        let Some(text) = lab.baseline() else {
            problems.push(format!("{id}: no baseline.json"));
            continue;
        };
        let Some(report) = labkit::compare::parse_report(text) else {
            problems.push(format!("{id}: baseline.json is not a report"));
            continue;
        };
        if report["lab"] != id {
            problems.push(format!("{id}: baseline.json is {}'s report", report["lab"]));
        }
        if report["scale"] != "default" {
            problems.push(format!("{id}: baseline scale {}", report["scale"]));
        }
        if report["schema_version"] != SCHEMA_VERSION {
            problems.push(format!(
                "{id}: baseline schema {} (current {SCHEMA_VERSION})",
                report["schema_version"]
            ));
        }
        for key in lab.finding_keys() {
            if !report["findings"][key]["value"].is_number() {
                problems.push(format!("{id}: baseline lacks finding `{key}`"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "re-measure with scripts/update-readme-numbers.sh <lab>:\n{}",
        problems.join("\n")
    );
}
