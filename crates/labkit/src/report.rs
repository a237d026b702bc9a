//! What a lab returns: findings (stable keys, numbers), tables, charts and one sentence.
//!
//! One [`Report`] renders four ways: a terminal table ([`Report::to_text`]), Markdown
//! ([`Report::to_markdown`]), JSON ([`Report::to_json`], with `schema_version` — the finding
//! keys are a contract with users' scripts) and SVG charts ([`crate::chart`]).
//!
//! JSON shape (schema_version 1):
//! ```text
//! { "schema_version": 1, "lab": "seek-vs-scan", "title": "...", "scale": "default", "seed": 42,
//!   "started_at": "...", "duration_s": 41.2, "environment": {...},
//!   "sentence": "...",
//!   "findings": { "<key>": { "label": "...", "value": 1.23, "unit": "ms" }, ... },
//!   "tables": [ { "title": "...", "columns": [...], "rows": [[...]] } ],
//!   "charts": [ { "id": "...", "title": "...", "series": [ { "name": "...", "points": [[x, y]] } ] } ],
//!   "notes": [ "..." ] }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use comfy_table::{ContentArrangement, Table as Comfy, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::backend::BackendKind;
use crate::ctx::Scale;

pub const SCHEMA_VERSION: u32 = 1;

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
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    #[serde(skip)]
    pub key: String,
    pub label: String,
    pub value: f64,
    pub unit: String,
}

impl Finding {
    fn value_text(&self) -> String {
        format_value(self.value, &self.unit)
    }
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
    #[serde(serialize_with = "findings_as_map")]
    pub findings: Vec<Finding>,
    pub tables: Vec<Table>,
    pub charts: Vec<Chart>,
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
            findings: Vec::new(),
            tables: Vec::new(),
            charts: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Add a finding. Keys are a contract: adding the same key twice replaces the value
    /// (and is a bug in debug builds).
    pub fn finding(&mut self, key: &str, label: &str, value: f64, unit: &str) -> &mut Self {
        debug_assert!(self.get(key).is_none(), "finding `{key}` recorded twice");
        self.findings.retain(|f| f.key != key);
        self.findings.push(Finding {
            key: key.into(),
            label: label.into(),
            value,
            unit: unit.into(),
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
            t.add_row(vec![f.label.clone(), f.value_text(), f.key.clone()]);
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
                f.value_text(),
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
        assert_eq!(v["schema_version"], 1);
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
