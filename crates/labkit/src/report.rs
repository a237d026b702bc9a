//! What a lab returns: findings (stable keys, numbers), tables, charts and one sentence.
//!
//! One [`Report`] renders four ways: a terminal table ([`Report::to_text`]), Markdown
//! ([`Report::to_markdown`]), JSON ([`Report::to_json`], with `schema_version` — the finding
//! keys are a contract with users' scripts) and SVG charts ([`crate::chart`]).
//!
//! JSON shape (schema_version 2):
//! ```text
//! { "schema_version": 2, "lab": "seek-vs-scan", "title": "...", "scale": "default", "seed": 42,
//!   "started_at": "...", "duration_s": 41.2, "environment": {...},
//!   "load": { "clients": 4, "duration_s": 2.5, "rate_per_s": null, "warmup_s": null, "set_by_user": {...} },
//!   "phases": [ { "name": "...", "planned_s": 2.5, "elapsed_s": 2.5, "samples": 9120, ... } ],
//!   "sentence": "...",
//!   "findings": { "<key>": { "label": "...", "value": 1.23, "unit": "ms", "samples": 9120, "better": "lower" }, ... },
//!   "tables": [ { "title": "...", "columns": [...], "rows": [[...]] } ],
//!   "charts": [ { "id": "...", "title": "...", "series": [ { "name": "...", "points": [[x, y]] } ] } ],
//!   "skipped": [ { "scenario": "...", "reason": "..." } ],
//!   "notes": [ "..." ] }
//! ```
//!
//! Version 2 added `samples` (how many measurements a finding rests on; on every latency
//! finding), `better` (which way is an improvement, for `lab compare`), `load`, `phases`
//! and `skipped`. Keys and meanings of version 1 are unchanged.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use comfy_table::{ContentArrangement, Table as Comfy, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::backend::BackendKind;
use crate::ctx::Scale;

pub const SCHEMA_VERSION: u32 = 2;

/// Where the numbers were measured. Filled by [`crate::LabCtx`].
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub backend: BackendKind,
    pub postgres_version: String,
    pub redis_version: String,
    pub cores: usize,
    pub cpu: String,
    pub memory_gib: f64,
    pub os: String,
    /// Settings that change the numbers (fsync, synchronous_commit, shared_buffers, jit...).
    pub postgres_settings: BTreeMap<String, String>,
    pub labkit_version: String,
}

impl Environment {
    pub fn one_line(&self) -> String {
        let s = |k: &str| self.postgres_settings.get(k).map_or("?", String::as_str);
        format!(
            "{} backend · PostgreSQL {} (fsync={}, synchronous_commit={}, shared_buffers={}) · Redis {} · {} cores · {} · {:.0} GiB",
            self.backend,
            self.postgres_version,
            s("fsync"),
            s("synchronous_commit"),
            s("shared_buffers"),
            self.redis_version,
            self.cores,
            self.cpu,
            self.memory_gib
        )
    }
}

/// One measured number with a stable key.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Finding {
    #[serde(skip)]
    pub key: String,
    pub label: String,
    pub value: f64,
    pub unit: String,
    /// How many measurements the value rests on (requests in a histogram, runs of a
    /// query). Every latency finding has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    /// Which way is an improvement; `None` for facts with no direction (rows seeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub better: Option<Better>,
}

/// Which way a finding improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
}

impl Better {
    /// The default direction of a unit: times are better lower, rates higher.
    pub fn for_unit(unit: &str) -> Option<Self> {
        match unit {
            "ms" | "s" | "µs" | "us" => Some(Self::Lower),
            u if u.ends_with("/s") => Some(Self::Higher),
            _ => None,
        }
    }
}

impl Finding {
    pub fn value_text(&self) -> String {
        format_value(self.value, &self.unit)
    }

    /// "1.74 ms (n=9120)" when the sample count is known and more than one.
    pub fn value_with_samples(&self) -> String {
        match self.samples {
            Some(n) if n > 1 => format!("{} (n={n})", self.value_text()),
            _ => self.value_text(),
        }
    }

    /// A latency (a time per operation): compared and gated by `lab compare`.
    pub fn is_latency(&self) -> bool {
        matches!(self.unit.as_str(), "ms" | "s" | "µs" | "us")
    }

    /// A throughput (something per second): compared and gated by `lab compare`.
    pub fn is_throughput(&self) -> bool {
        self.unit.ends_with("/s")
    }
}

/// A load phase a labkit driver ran (recorded automatically into the report).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Phase {
    pub name: String,
    /// "closed" or "open".
    pub driver: String,
    /// Closed loop: workers. Open loop: max in flight.
    pub clients: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_s: Option<f64>,
    pub elapsed_s: f64,
    pub samples: u64,
    pub errors: u64,
    /// Open loop: how late the driver sent, p99, in ms (a driver that cannot keep its rate
    /// is measuring itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_late_p99_ms: Option<f64>,
}

impl Phase {
    /// "naive readers: closed loop, 200 clients, 10.0 s (planned 10.0 s), 5120 samples"
    pub fn describe(&self) -> String {
        let mut s = format!("{}: {} loop, ", self.name, self.driver);
        match self.rate_per_s {
            Some(r) => s.push_str(&format!("{r:.0}/s, up to {} in flight", self.clients)),
            None if self.clients == 1 => s.push_str("1 client"),
            None => s.push_str(&format!("{} clients", self.clients)),
        }
        s.push_str(&format!(", {:.1} s", self.elapsed_s));
        if let Some(p) = self.planned_s {
            s.push_str(&format!(" (planned {p:.1} s)"));
        }
        s.push_str(&format!(", {} samples", self.samples));
        if self.errors > 0 {
            s.push_str(&format!(", {} errors", self.errors));
        }
        if let Some(l) = self.send_late_p99_ms {
            s.push_str(&format!(", sent late by {l:.2} ms at p99"));
        }
        s
    }
}

/// A scenario the run could not do here, and why.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Skipped {
    pub scenario: String,
    pub reason: String,
}

/// Format a number for people: integers plainly, small values with more digits.
pub fn format_value(v: f64, unit: &str) -> String {
    let num = if v.is_nan() {
        "n/a".to_string()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    match unit {
        "" | "count" => num,
        "bool" => (if v != 0.0 { "yes" } else { "no" }).to_string(),
        "x" => format!("{num}×"),
        "%" => format!("{num} %"),
        u => format!("{num} {u}"),
    }
}

/// A table of results.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: impl Into<String>, columns: &[&str]) -> Self {
        Self {
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        self.rows
            .push(cells.into_iter().map(|c| c.to_string()).collect());
        self
    }
}

/// A chart's data; [`crate::chart::render_svg`] draws it.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    /// File stem for `--out` (`<id>.svg`).
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_log: bool,
    pub y_log: bool,
    pub series: Vec<Series>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Chart {
    pub fn new(id: &str, title: &str, x_label: &str, y_label: &str) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_log: false,
            y_log: false,
            series: Vec::new(),
        }
    }

    pub fn log_x(mut self) -> Self {
        self.x_log = true;
        self
    }

    pub fn log_y(mut self) -> Self {
        self.y_log = true;
        self
    }

    pub fn series(mut self, name: &str, points: Vec<(f64, f64)>) -> Self {
        self.series.push(Series {
            name: name.into(),
            points,
        });
        self
    }
}

/// A lab's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub lab: String,
    pub title: String,
    pub scale: Scale,
    pub seed: u64,
    pub started_at: String,
    pub duration_s: f64,
    pub environment: Environment,
    /// One quotable sentence built from measured values.
    pub sentence: String,
    /// What the load knobs were (see [`crate::LabCtx::clients`]).
    pub load: serde_json::Value,
    /// Every load phase a labkit driver ran during the lab.
    pub phases: Vec<Phase>,
    #[serde(serialize_with = "findings_as_map")]
    pub findings: Vec<Finding>,
    pub tables: Vec<Table>,
    pub charts: Vec<Chart>,
    pub skipped: Vec<Skipped>,
    pub notes: Vec<String>,
}

fn findings_as_map<S: serde::Serializer>(f: &[Finding], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(f.len()))?;
    for finding in f {
        map.serialize_entry(&finding.key, finding)?;
    }
    map.end()
}

impl Report {
    pub fn new(lab: &str, title: &str, scale: Scale, seed: u64, environment: Environment) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            lab: lab.into(),
            title: title.into(),
            scale,
            seed,
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            duration_s: 0.0,
            environment,
            sentence: String::new(),
            load: serde_json::Value::Null,
            phases: Vec::new(),
            findings: Vec::new(),
            tables: Vec::new(),
            charts: Vec::new(),
            skipped: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Add a finding. Its direction comes from the unit (times lower, rates higher; see
    /// [`Better::for_unit`]). Keys are a contract: adding the same key twice replaces the
    /// value (and is a bug in debug builds). A latency should use [`measured`](Self::measured)
    /// or [`p95`](Self::p95) so it carries its sample count.
    pub fn finding(&mut self, key: &str, label: &str, value: f64, unit: &str) -> &mut Self {
        self.push(Finding {
            key: key.into(),
            label: label.into(),
            value,
            unit: unit.into(),
            samples: None,
            better: Better::for_unit(unit),
        })
    }

    /// A finding resting on `samples` measurements.
    pub fn measured(
        &mut self,
        key: &str,
        label: &str,
        value: f64,
        unit: &str,
        samples: u64,
    ) -> &mut Self {
        self.finding(key, label, value, unit);
        self.last().samples = Some(samples);
        self
    }

    /// p50 of a latency summary, in ms, with its sample count.
    pub fn p50(&mut self, key: &str, label: &str, s: &crate::LatencySummary) -> &mut Self {
        self.measured(key, label, s.p50_ms, "ms", s.count)
    }

    /// p95 of a latency summary, in ms, with its sample count.
    pub fn p95(&mut self, key: &str, label: &str, s: &crate::LatencySummary) -> &mut Self {
        self.measured(key, label, s.p95_ms, "ms", s.count)
    }

    /// p99 of a latency summary, in ms, with its sample count.
    pub fn p99(&mut self, key: &str, label: &str, s: &crate::LatencySummary) -> &mut Self {
        self.measured(key, label, s.p99_ms, "ms", s.count)
    }

    /// A yes/no finding (1 or 0, unit `bool`).
    pub fn flag(&mut self, key: &str, label: &str, yes: bool) -> &mut Self {
        self.finding(key, label, if yes { 1.0 } else { 0.0 }, "bool")
    }

    /// Declare which way `key` improves (a count of errors or duplicates: lower).
    pub fn better(&mut self, key: &str, better: Better) -> &mut Self {
        if let Some(f) = self.findings.iter_mut().find(|f| f.key == key) {
            f.better = Some(better);
        }
        self
    }

    /// Add a fully built finding.
    pub fn push(&mut self, finding: Finding) -> &mut Self {
        debug_assert!(
            self.get(&finding.key).is_none(),
            "finding `{}` recorded twice",
            finding.key
        );
        self.findings.retain(|f| f.key != finding.key);
        self.findings.push(finding);
        self
    }

    fn last(&mut self) -> &mut Finding {
        self.findings.last_mut().expect("just pushed")
    }

    /// A finding by key.
    pub fn finding_by_key(&self, key: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.key == key)
    }

    /// Record that a scenario was skipped on this backend (also added to the notes).
    pub fn skipped(&mut self, scenario: &str, reason: impl Into<String>) -> &mut Self {
        let reason = reason.into();
        self.notes.push(format!("Skipped — {scenario}: {reason}"));
        self.skipped.push(Skipped {
            scenario: scenario.into(),
            reason,
        });
        self
    }

    /// A finding's value by key.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.findings.iter().find(|f| f.key == key).map(|f| f.value)
    }

    pub fn table(&mut self, table: Table) -> &mut Self {
        self.tables.push(table);
        self
    }

    pub fn chart(&mut self, chart: Chart) -> &mut Self {
        self.charts.push(chart);
        self
    }

    pub fn sentence(&mut self, s: impl Into<String>) -> &mut Self {
        self.sentence = s.into();
        self
    }

    pub fn note(&mut self, s: impl Into<String>) -> &mut Self {
        self.notes.push(s.into());
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize")
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "━━ {} — {} ━━", self.lab, self.title);
        let _ = writeln!(
            out,
            "scale {} · seed {} · {:.1} s",
            self.scale, self.seed, self.duration_s
        );
        let _ = writeln!(out, "{}", self.environment.one_line());
        let mut t = comfy();
        t.set_header(vec!["finding", "value", "key"]);
        for f in &self.findings {
            t.add_row(vec![f.label.clone(), f.value_with_samples(), f.key.clone()]);
        }
        let _ = writeln!(out, "{t}");
        for table in &self.tables {
            let mut t = comfy();
            t.set_header(table.columns.clone());
            for r in &table.rows {
                t.add_row(r.clone());
            }
            let _ = writeln!(out, "\n{}\n{t}", table.title);
        }
        for p in &self.phases {
            let _ = writeln!(out, "phase: {}", p.describe());
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        if !self.sentence.is_empty() {
            let _ = writeln!(out, "\n» {}", self.sentence);
        }
        out
    }

    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## {} — {}\n", self.lab, self.title);
        let _ = writeln!(
            out,
            "Scale `{}`, seed {}, {:.1} s, {}. {}\n",
            self.scale,
            self.seed,
            self.duration_s,
            self.started_at,
            self.environment.one_line()
        );
        if !self.sentence.is_empty() {
            let _ = writeln!(out, "> {}\n", self.sentence);
        }
        out.push_str("| finding | value | key |\n|---|---:|---|\n");
        for f in &self.findings {
            let _ = writeln!(
                out,
                "| {} | {} | `{}` |",
                md_cell(&f.label),
                f.value_with_samples(),
                f.key
            );
        }
        for table in &self.tables {
            let _ = writeln!(out, "\n### {}\n", table.title);
            let _ = writeln!(
                out,
                "| {} |",
                table
                    .columns
                    .iter()
                    .map(|c| md_cell(c))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            let _ = writeln!(out, "|{}", "---|".repeat(table.columns.len()));
            for r in &table.rows {
                let _ = writeln!(
                    out,
                    "| {} |",
                    r.iter().map(|c| md_cell(c)).collect::<Vec<_>>().join(" | ")
                );
            }
        }
        for c in &self.charts {
            let _ = writeln!(out, "\n![{}]({}.svg)", c.title, c.id);
        }
        if !self.phases.is_empty() {
            out.push_str("\n<details><summary>Load phases</summary>\n\n");
            for p in &self.phases {
                let _ = writeln!(out, "- {}", md_cell(&p.describe()));
            }
            out.push_str("\n</details>\n");
        }
        for n in &self.notes {
            let _ = writeln!(out, "\n_Note: {}_", n);
        }
        out
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', "<br>")
}

fn comfy() -> Comfy {
    let mut t = Comfy::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment {
            backend: BackendKind::Local,
            postgres_version: "15".into(),
            redis_version: "7".into(),
            cores: 2,
            cpu: "cpu".into(),
            memory_gib: 24.0,
            os: "linux".into(),
            postgres_settings: BTreeMap::new(),
            labkit_version: "0".into(),
        }
    }

    #[test]
    fn json_has_schema_version_and_findings_keyed_by_key() {
        let mut r = Report::new("demo", "Demo", Scale::Smoke, 1, env());
        r.finding("a_p95_ms", "A p95", 1.5, "ms")
            .finding("b_rows", "B", 3.0, "count");
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["schema_version"], 2);
        assert_eq!(v["findings"]["a_p95_ms"]["value"], 1.5);
        assert_eq!(v["findings"]["b_rows"]["unit"], "count");
        let keys: Vec<_> = v["findings"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, vec!["a_p95_ms", "b_rows"], "insertion order is kept");
    }

    #[test]
    fn values_format_for_people() {
        assert_eq!(format_value(3.0, "count"), "3");
        assert_eq!(format_value(0.1234, "ms"), "0.12 ms");
        assert_eq!(format_value(12.34, "x"), "12.3×");
        assert_eq!(format_value(1.0, "bool"), "yes");
    }
}
