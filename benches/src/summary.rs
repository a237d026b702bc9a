//! The summary a bench prints after criterion's output: the ratios a reader would quote, in
//! the lab's words, computed from criterion's estimates **of this run**.
//!
//! Criterion writes each benchmark's estimates to
//! `<target>/criterion/<group>/<benchmark>/new/estimates.json` (and also under the baseline
//! name with `--save-baseline`). [`Summary`] reads every one of the group's files written
//! since the bench started — older files are other runs and are ignored — and takes the
//! estimate criterion prints as `time:` (the slope of the linear fit when criterion sampled
//! linearly, otherwise the mean) with its 95 % confidence interval. A ratio's interval is
//! the conservative one: slow low ÷ fast high … slow high ÷ fast low.
//!
//! [`Summary::finish`] prints the lines and writes `<target>/bench-summary/<id>.md`, a
//! Markdown table that `scripts/update-bench-numbers.sh` splices into the lab's README.
//! Under `--test` criterion measures nothing, and the summary says so instead.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One benchmark's time per operation, in nanoseconds, with its 95 % confidence interval.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    pub ns: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Estimate {
    /// How many times faster `self` is than `slow`, with the conservative interval.
    pub fn faster_than(self, slow: Estimate) -> Ratio {
        Ratio {
            x: slow.ns / self.ns,
            lo: slow.lo / self.hi,
            hi: slow.hi / self.lo,
        }
    }

    /// `412 µs`
    pub fn time(self) -> String {
        fmt_time(self.ns)
    }
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&fmt_time(self.ns))
    }
}

/// A ratio of two estimates with its conservative 95 % interval.
#[derive(Debug, Clone, Copy)]
pub struct Ratio {
    pub x: f64,
    pub lo: f64,
    pub hi: f64,
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}× (95 % CI {}–{}×)",
            fmt_x(self.x),
            fmt_x(self.lo),
            fmt_x(self.hi)
        )
    }
}

fn fmt_x(x: f64) -> String {
    if x >= 20.0 {
        format!("{x:.0}")
    } else if x >= 2.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Nanoseconds as criterion prints them: `412 ns`, `41.2 µs`, `4.12 ms`, `1.23 s`.
pub fn fmt_time(ns: f64) -> String {
    let (v, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    if v >= 100.0 {
        format!("{v:.0} {unit}")
    } else if v >= 10.0 {
        format!("{v:.1} {unit}")
    } else {
        format!("{v:.2} {unit}")
    }
}

/// A bench's closing summary. Build it after `group.finish()`, add lines, then
/// [`finish`](Self::finish).
pub struct Summary {
    id: &'static str,
    group: String,
    data: String,
    environment: String,
    /// Benchmarks of the group measured in this run, in the order criterion ran them.
    measured: Vec<(String, Estimate)>,
    labels: BTreeMap<String, String>,
    lines: Vec<String>,
}

impl Summary {
    pub(crate) fn new(
        id: &'static str,
        group: &str,
        started: SystemTime,
        data: String,
        environment: String,
    ) -> Self {
        Self {
            id,
            group: group.to_string(),
            data,
            environment,
            measured: read_group(&criterion_dir(), group, started),
            labels: BTreeMap::new(),
            lines: Vec::new(),
        }
    }

    /// A readable name for a benchmark in the Markdown table.
    pub fn label(mut self, bench: &str, label: &str) -> Self {
        self.labels.insert(bench.to_string(), label.to_string());
        self
    }

    /// This run's estimate for `bench` (its id within the group, e.g. `covering` or
    /// `offset/40000`), if criterion measured it.
    pub fn get(&self, bench: &str) -> Option<Estimate> {
        self.measured
            .iter()
            .find(|(name, _)| name == bench)
            .map(|(_, e)| *e)
    }

    /// `"<what>: 4.3× (95 % CI 4.0–4.6×) faster <per> (412 µs vs 1.77 ms)"`, fast vs slow.
    pub fn faster(&mut self, what: &str, per: &str, fast: &str, slow: &str) -> &mut Self {
        self.when(&[fast, slow], |e| {
            format!(
                "{what}: {} faster {per} ({} vs {})",
                e[0].faster_than(e[1]),
                e[0],
                e[1]
            )
        })
    }

    /// A line built from the estimates of `benches` (in that order), or a line saying which
    /// were not measured in this run (filtered out, or `--test`).
    pub fn when(
        &mut self,
        benches: &[&str],
        line: impl FnOnce(&[Estimate]) -> String,
    ) -> &mut Self {
        let found: Vec<Option<Estimate>> = benches.iter().map(|b| self.get(b)).collect();
        if found.iter().all(Option::is_some) {
            let e: Vec<Estimate> = found.into_iter().flatten().collect();
            self.lines.push(line(&e));
        } else {
            let missing: Vec<&str> = benches
                .iter()
                .zip(&found)
                .filter(|(_, e)| e.is_none())
                .map(|(b, _)| *b)
                .collect();
            self.lines.push(format!(
                "(a line needs {} — not measured in this run)",
                missing.join(", ")
            ));
        }
        self
    }

    /// A line of its own (a count, a plan node, a caveat).
    pub fn line(&mut self, text: impl Into<String>) -> &mut Self {
        self.lines.push(text.into());
        self
    }

    /// Print the summary after criterion's output and write `target/bench-summary/<id>.md`.
    pub fn finish(&mut self) {
        let id = self.id;
        println!();
        if self.measured.is_empty() {
            let why = if crate::test_mode() {
                "--test runs each benchmark once and estimates nothing; run without --test for the numbers"
            } else {
                "criterion measured nothing in this group in this run (a filter, or --list)"
            };
            println!("{id} summary: {why}");
            return;
        }
        println!(
            "{id} summary (criterion's estimates from this run, {}):",
            self.data
        );
        for line in &self.lines {
            println!("  {id}: {line}");
        }
        match self.write_markdown() {
            Ok(path) => println!("  (table for the README: {})", path.display()),
            Err(e) => eprintln!("{id}: could not write the summary table: {e}"),
        }
    }

    fn write_markdown(&self) -> std::io::Result<PathBuf> {
        let id = self.id;
        let mut md = String::new();
        md.push_str(&format!(
            "\n`cargo bench -p benches --bench {id}` (criterion; one client, one operation per \
             iteration) on {}.\nMeasured {} UTC on {}.\n\n",
            self.data,
            chrono::Utc::now().format("%Y-%m-%d %H:%M"),
            self.environment
        ));
        if let Ok(note) = std::env::var("BENCH_NOTE")
            && !note.trim().is_empty()
        {
            md.push_str(&format!("_{}_\n\n", note.trim()));
        }
        md.push_str("| benchmark | what | time per operation | 95 % CI |\n|---|---|---:|---:|\n");
        for (name, e) in &self.measured {
            let what = self.labels.get(name).map_or("", String::as_str);
            md.push_str(&format!(
                "| `{}/{name}` | {what} | {} | {} – {} |\n",
                self.group,
                e,
                fmt_time(e.lo),
                fmt_time(e.hi)
            ));
        }
        md.push('\n');
        for line in &self.lines {
            md.push_str(&format!("- {line}\n"));
        }
        md.push('\n');
        let dir = crate::target_dir().join("bench-summary");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{id}.md"));
        std::fs::write(&path, md)?;
        Ok(path)
    }
}

/// Where criterion writes: `CRITERION_HOME`, else `<target>/criterion` (criterion asks
/// `cargo metadata` for the target dir; [`crate::target_dir`] finds the same one).
pub fn criterion_dir() -> PathBuf {
    match std::env::var_os("CRITERION_HOME") {
        Some(home) => PathBuf::from(home),
        None => crate::target_dir().join("criterion"),
    }
}

/// criterion's `make_filename_safe`.
fn filename_safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if "?\"/\\*<>:|^".contains(c) { '_' } else { c })
        .collect();
    if out.len() > 64 {
        let mut cut = 64;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// Every `new/estimates.json` under the group's directory written since `since`, as
/// (benchmark id within the group, estimate), in the order they were written.
fn read_group(root: &Path, group: &str, since: SystemTime) -> Vec<(String, Estimate)> {
    let mut found = Vec::new();
    let mut stack = vec![root.join(filename_safe(group))];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if entry.file_name() != "new" {
                stack.push(path);
                continue;
            }
            let estimates = path.join("estimates.json");
            let Some(written) = std::fs::metadata(&estimates)
                .and_then(|m| m.modified())
                .ok()
                .filter(|t| *t >= since)
            else {
                continue;
            };
            if let Some(found_one) = read_one(&path, group) {
                found.push((written, found_one));
            }
        }
    }
    found.sort_by_key(|(t, _)| *t);
    found.into_iter().map(|(_, f)| f).collect()
}

fn read_one(new_dir: &Path, group: &str) -> Option<(String, Estimate)> {
    let json = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(new_dir.join(name)).ok()?).ok()
    };
    let id = json("benchmark.json")?;
    let full_id = id.get("full_id")?.as_str()?;
    let name = full_id
        .strip_prefix(group)
        .and_then(|s| s.strip_prefix('/'))
        .unwrap_or(full_id)
        .to_string();
    let est = json("estimates.json")?;
    // What criterion prints as `time:` — the slope when it sampled linearly, else the mean.
    let typical = est
        .get("slope")
        .filter(|s| !s.is_null())
        .or_else(|| est.get("mean"))?;
    let ci = typical.get("confidence_interval")?;
    Some((
        name,
        Estimate {
            ns: typical.get("point_estimate")?.as_f64()?,
            lo: ci.get("lower_bound")?.as_f64()?,
            hi: ci.get("upper_bound")?.as_f64()?,
        },
    ))
}
