//! `lab compare A B`: two runs side by side, finding by finding.
//!
//! A and B are each a `report.json`, a saved `--out` directory (one `<lab>/report.json` per
//! lab), or the JSON that `lab run --format json` printed. For every finding key present in
//! both, the row shows both values, the ratio B/A and whether B is better or worse — in the
//! direction the finding declares (`better`: latency and error counts lower, throughput
//! higher). When the two runs were measured in different environments (backend, fsync,
//! synchronous_commit, cores, server versions) the numbers are not comparable, and the
//! comparison says so first.
//!
//! Reports are read as JSON values, not typed structs, so runs saved by an older labkit
//! (schema_version 1, no `better`) still compare: the direction then comes from the unit.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::report::{Better, format_value};

/// One finding in both runs.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub lab: String,
    pub key: String,
    pub label: String,
    pub unit: String,
    pub a: f64,
    pub b: f64,
    /// B / A (NaN when A is 0).
    pub ratio: f64,
    pub better: Option<Better>,
    /// "better", "worse", "same" or "" (no direction).
    pub verdict: &'static str,
    /// How much worse B is than A, in percent of A (negative: better). 0 without direction.
    pub worse_pct: f64,
    /// A latency or a throughput: the findings `--fail-on-regression` gates on.
    pub gated: bool,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub rows: Vec<Row>,
    /// One line per environment difference, per lab.
    pub environment_warnings: Vec<String>,
    /// Labs in only one of the runs.
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
}

impl Comparison {
    /// Gated findings worse by more than `pct` percent.
    pub fn regressions(&self, pct: f64) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| r.gated && r.worse_pct > pct)
            .collect()
    }
}

/// Errors reading a run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not JSON ({source})")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path}: no report found (expected a report.json, a `lab run --out` directory, or `lab run --format json` output)"
    )]
    NoReport { path: String },
}

/// Read the reports of one run.
pub fn load(path: &Path) -> Result<Vec<Value>, LoadError> {
    let shown = path.display().to_string();
    if path.is_dir() {
        let mut reports = Vec::new();
        let own = path.join("report.json");
        if own.is_file() {
            reports.extend(load(&own)?);
        }
        let mut dirs: Vec<_> = std::fs::read_dir(path)
            .map_err(|source| LoadError::Io {
                path: shown.clone(),
                source,
            })?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("report.json").is_file())
            .collect();
        dirs.sort();
        for d in dirs {
            reports.extend(load(&d.join("report.json"))?);
        }
        if reports.is_empty() {
            return Err(LoadError::NoReport { path: shown });
        }
        return Ok(reports);
    }
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: shown.clone(),
        source,
    })?;
    parse(&text).map_err(|e| match e {
        ParseError::Json(source) => LoadError::Json {
            path: shown.clone(),
            source,
        },
        ParseError::NoReport => LoadError::NoReport { path: shown },
    })
}

enum ParseError {
    Json(serde_json::Error),
    NoReport,
}

fn parse(text: &str) -> Result<Vec<Value>, ParseError> {
    let v: Value = serde_json::from_str(text).map_err(ParseError::Json)?;
    if let Some(list) = v.get("reports").and_then(Value::as_array) {
        return Ok(list.clone());
    }
    if v.get("lab").is_some() && v.get("findings").is_some() {
        return Ok(vec![v]);
    }
    Err(ParseError::NoReport)
}

/// Parse one report from JSON text (a lab's embedded `baseline.json`).
pub fn parse_report(text: &str) -> Option<Value> {
    parse(text).ok()?.into_iter().next()
}

/// Compare run A (the reference) with run B.
pub fn compare(a_name: &str, a: &[Value], b_name: &str, b: &[Value]) -> Comparison {
    let lab = |r: &Value| r["lab"].as_str().unwrap_or("?").to_string();
    let mut rows = Vec::new();
    let mut environment_warnings = Vec::new();
    for ra in a {
        let id = lab(ra);
        let Some(rb) = b.iter().find(|r| lab(r) == id) else {
            continue;
        };
        for w in environment_differences(&ra["environment"], &rb["environment"]) {
            environment_warnings.push(format!("{id}: {w}"));
        }
        if ra["scale"] != rb["scale"] {
            environment_warnings.push(format!(
                "{id}: scale differs ({} vs {})",
                ra["scale"].as_str().unwrap_or("?"),
                rb["scale"].as_str().unwrap_or("?")
            ));
        }
        let (Some(fa), Some(fb)) = (ra["findings"].as_object(), rb["findings"].as_object()) else {
            continue;
        };
        for (key, va) in fa {
            let Some(vb) = fb.get(key) else { continue };
            let (Some(x), Some(y)) = (va["value"].as_f64(), vb["value"].as_f64()) else {
                continue;
            };
            let unit = va["unit"].as_str().unwrap_or("").to_string();
            let better = serde_json::from_value::<Better>(va["better"].clone())
                .ok()
                .or_else(|| Better::for_unit(&unit));
            rows.push(row(&id, key, va, unit, x, y, better));
        }
    }
    let ids = |rs: &[Value]| rs.iter().map(lab).collect::<Vec<_>>();
    let (ia, ib) = (ids(a), ids(b));
    Comparison {
        a: a_name.to_string(),
        b: b_name.to_string(),
        rows,
        environment_warnings,
        only_in_a: ia.iter().filter(|i| !ib.contains(i)).cloned().collect(),
        only_in_b: ib.iter().filter(|i| !ia.contains(i)).cloned().collect(),
    }
}

fn row(
    lab: &str,
    key: &str,
    va: &Value,
    unit: String,
    a: f64,
    b: f64,
    better: Option<Better>,
) -> Row {
    let ratio = if a != 0.0 { b / a } else { f64::NAN };
    // Percent worse, in the finding's own direction.
    let worse_pct = match better {
        _ if a == 0.0 && b == 0.0 => 0.0,
        Some(Better::Lower) if a == 0.0 => f64::INFINITY,
        Some(Better::Higher) if a == 0.0 => f64::NEG_INFINITY,
        Some(Better::Lower) => (b - a) / a.abs() * 100.0,
        Some(Better::Higher) => (a - b) / a.abs() * 100.0,
        None => 0.0,
    };
    let verdict = match better {
        None => "",
        Some(_) if (a - b).abs() <= 1e-9 * a.abs().max(1.0) => "same",
        Some(_) if worse_pct > 0.0 => "worse",
        Some(_) => "better",
    };
    let gated = better.is_some()
        && (matches!(unit.as_str(), "ms" | "s" | "µs" | "us") || unit.ends_with("/s"));
    Row {
        lab: lab.to_string(),
        key: key.to_string(),
        label: va["label"].as_str().unwrap_or(key).to_string(),
        unit,
        a,
        b,
        ratio,
        better,
        verdict,
        worse_pct,
        gated,
    }
}

/// What differs between two environments in ways that change the numbers.
pub fn environment_differences(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: &str, x: &Value, y: &Value| {
        if x != y {
            out.push(format!("{what} differs ({} vs {})", show(x), show(y)));
        }
    };
    check("backend", &a["backend"], &b["backend"]);
    check("cores", &a["cores"], &b["cores"]);
    check("cpu", &a["cpu"], &b["cpu"]);
    check(
        "PostgreSQL version",
        &a["postgres_version"],
        &b["postgres_version"],
    );
    check("Redis version", &a["redis_version"], &b["redis_version"]);
    for s in [
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "shared_buffers",
    ] {
        check(s, &a["postgres_settings"][s], &b["postgres_settings"][s]);
    }
    out
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "unknown".into(),
        other => other.to_string(),
    }
}

fn ratio_text(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}×")
    } else {
        "–".into()
    }
}

fn change_text(row: &Row) -> String {
    match row.verdict {
        "" => String::new(),
        "same" => "same".into(),
        v if row.worse_pct.is_finite() => format!("{v} ({:+.0} %)", -row.worse_pct),
        v => v.to_string(),
    }
}

/// A terminal table.
pub fn to_text(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "A = {}\nB = {}", c.a, c.b);
    for w in &c.environment_warnings {
        let _ = writeln!(out, "warning: not comparable — {w}");
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
        .set_header(vec!["lab", "finding", "A", "B", "B/A", "B vs A"]);
    for r in &c.rows {
        t.add_row(vec![
            r.lab.clone(),
            r.key.clone(),
            format_value(r.a, &r.unit),
            format_value(r.b, &r.unit),
            ratio_text(r.ratio),
            change_text(r),
        ]);
    }
    let _ = writeln!(out, "{t}");
    for id in &c.only_in_a {
        let _ = writeln!(out, "only in A: {id}");
    }
    for id in &c.only_in_b {
        let _ = writeln!(out, "only in B: {id}");
    }
    out
}

/// A Markdown table.
pub fn to_markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "A = `{}`, B = `{}`\n", c.a, c.b);
    for w in &c.environment_warnings {
        let _ = writeln!(out, "> **Not comparable:** {w}\n");
    }
    out.push_str("| lab | finding | A | B | B/A | B vs A |\n|---|---|---:|---:|---:|---|\n");
    for r in &c.rows {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} | {} |",
            r.lab,
            r.key,
            format_value(r.a, &r.unit),
            format_value(r.b, &r.unit),
            ratio_text(r.ratio),
            change_text(r)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(p95: f64, rps: f64, fsync: &str) -> Value {
        json!({
            "schema_version": 2, "lab": "demo", "scale": "default",
            "environment": { "backend": "local", "cores": 2, "cpu": "x",
                "postgres_version": "15", "redis_version": "7",
                "postgres_settings": { "fsync": fsync, "synchronous_commit": "on" } },
            "findings": {
                "q_p95_ms": { "label": "p95", "value": p95, "unit": "ms", "samples": 100, "better": "lower" },
                "rows_per_s": { "label": "speed", "value": rps, "unit": "rows/s" },
                "lost": { "label": "lost", "value": 0.0, "unit": "count" }
            }
        })
    }

    #[test]
    fn ratio_and_direction_follow_the_finding() {
        let c = compare(
            "a",
            &[report(10.0, 1000.0, "off")],
            "b",
            &[report(5.0, 500.0, "off")],
        );
        let p95 = c.rows.iter().find(|r| r.key == "q_p95_ms").unwrap();
        assert_eq!(p95.ratio, 0.5);
        assert_eq!(p95.verdict, "better", "lower latency is better");
        assert_eq!(p95.worse_pct, -50.0);
        let rps = c.rows.iter().find(|r| r.key == "rows_per_s").unwrap();
        assert_eq!(
            rps.verdict, "worse",
            "lower throughput is worse (direction from the unit)"
        );
        assert_eq!(rps.worse_pct, 50.0);
        let lost = c.rows.iter().find(|r| r.key == "lost").unwrap();
        assert_eq!(
            lost.verdict, "",
            "a count with no declared direction has no verdict"
        );
        assert!(!lost.gated);
        assert!(c.environment_warnings.is_empty());
    }

    #[test]
    fn a_doubled_p95_is_a_regression_beyond_20_percent_and_is_named() {
        let c = compare(
            "a",
            &[report(10.0, 1000.0, "off")],
            "b",
            &[report(20.0, 1000.0, "off")],
        );
        let bad = c.regressions(20.0);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].key, "q_p95_ms");
        assert!(c.regressions(150.0).is_empty());
    }

    #[test]
    fn different_fsync_is_flagged_as_not_comparable() {
        let c = compare(
            "a",
            &[report(10.0, 1.0, "off")],
            "b",
            &[report(10.0, 1.0, "on")],
        );
        assert_eq!(c.environment_warnings.len(), 1);
        assert!(c.environment_warnings[0].contains("fsync differs (off vs on)"));
    }

    #[test]
    fn a_run_list_and_a_single_report_both_parse() {
        let one = report(1.0, 1.0, "off").to_string();
        assert_eq!(parse(&one).ok().unwrap().len(), 1);
        let many = json!({"schema_version": 2, "reports": [report(1.0, 1.0, "off"), report(2.0, 1.0, "off")]});
        assert_eq!(parse(&many.to_string()).ok().unwrap().len(), 2);
        assert!(parse("{\"x\":1}").is_err());
    }
}
