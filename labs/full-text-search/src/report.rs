//! The report: findings, tables, notes and the sentence, built from what the run measured.

use labkit::explain::Plan;
use labkit::{Better, Report, Table};

use crate::dual_read::Tally;
use crate::expression_rule::Rule;
use crate::finds::{self, Finds};
use crate::insert_cost::{Inserts, Variant};
use crate::latency::Measured;
use crate::migration::{self, Migration};
use crate::orders::{self, Built, Loaded};
use crate::search::{self, Approach, Term, TermKind};
use crate::{Shape, trigram};

/// Every key the report carries. The first group is the contract.
pub const FINDING_KEYS: &[&str] = &[
    "like_p95_ms",
    "trgm_p95_ms",
    "fts_p95_ms",
    "like_buffers",
    "trgm_buffers",
    "fts_buffers",
    "short_pattern_trgm_uses_index",
    "short_pattern_forced_index_candidates",
    "typo_trgm_hits",
    "typo_fts_hits",
    "substring_false_positives",
    "stemmed_extra_hits",
    "trgm_index_mb",
    "fts_index_mb",
    "insert_rows_per_s_no_search_index",
    "insert_rows_per_s_trgm",
    "insert_rows_per_s_fts",
    "one_arg_tsvector_index_used",
    "migration_writer_p99_ms",
    "dual_read_disagreements",
    // the data
    "rows",
    "seed_rows_per_s",
    // scenario 1, beyond the rare term
    "like_p50_ms",
    "trgm_p50_ms",
    "fts_p50_ms",
    "like_common_p95_ms",
    "trgm_common_p95_ms",
    "fts_common_p95_ms",
    "like_short_p95_ms",
    "trgm_short_p95_ms",
    "fts_short_p95_ms",
    "like_typo_p95_ms",
    "trgm_typo_p95_ms",
    "fts_typo_p95_ms",
    // scenario 2
    "typo_like_hits",
    "cat_like_hits",
    "cat_fts_hits",
    "running_like_hits",
    "running_fts_hits",
    // scenario 3
    "trgm_index_build_s",
    "fts_index_build_s",
    "table_mb_without_search_column",
    "table_mb_with_search_column",
    "insert_rows_per_s_trgm_no_fastupdate",
    "insert_rows_per_s_fts_no_fastupdate",
    "insert_p99_ms_no_search_index",
    "insert_p99_ms_trgm",
    "insert_p99_ms_trgm_no_fastupdate",
    "insert_p99_ms_fts",
    "insert_p99_ms_fts_no_fastupdate",
    "one_arg_tsvector_index_creatable",
    "two_arg_tsvector_index_used",
    "ranked_common_expression_ms",
    "ranked_common_column_ms",
    // scenario 4
    "migration_baseline_writer_p99_ms",
    "migration_add_column_writer_p99_ms",
    "migration_backfill_writer_p99_ms",
    "migration_create_index_writer_p99_ms",
    "migration_dual_read_writer_p99_ms",
    "migration_switch_writer_p99_ms",
    "generated_column_writer_p99_ms",
    "generated_column_writer_max_ms",
    "generated_column_rewrite_s",
    "backfill_s",
    "dual_read_searches",
    "dual_read_rows_only_like",
    "dual_read_rows_only_fts",
    "dual_read_stale_rows",
    "dual_read_search_p95_ms",
    "fts_only_search_p95_ms",
    "migration_unfilled_rows",
    "migration_index_valid",
    "migration_switched",
];

/// Everything the report is built from.
#[derive(Debug)]
pub struct Facts {
    pub shape: Shape,
    pub loaded: Loaded,
    /// Why pg_trgm could not be used, if it could not.
    pub trigram_missing: Option<trigram::Unavailable>,
    pub searches: Vec<Measured>,
    pub trigram_index: Option<Built>,
    /// The 2-letter search with the trigram index forced (`enable_seqscan = off`).
    pub short_forced: Option<Plan>,
    pub migration: Migration,
    pub writer_rows_deleted: u64,
    pub finds: Finds,
    pub rule: Rule,
    pub inserts: Vec<Inserts>,
    /// The orders heap before the migration, and after it (with `search`, compacted).
    pub heap_bytes: (i64, i64),
}

impl Facts {
    fn search(&self, a: Approach, t: Term) -> Option<&Measured> {
        self.searches
            .iter()
            .find(|m| m.approach == a && m.term == t)
    }

    fn inserts(&self, v: Variant) -> Option<&Inserts> {
        self.inserts.iter().find(|i| i.variant == v)
    }
}

const MB: f64 = 1024.0 * 1024.0;

pub fn build(r: &mut Report, f: &Facts) {
    if let Some(why) = &f.trigram_missing {
        r.skipped(
            "the trigram index (scenarios 1–3, trigram parts)",
            why.to_string(),
        );
    }
    r.finding("rows", "Orders seeded", f.loaded.rows as f64, "count");
    r.finding(
        "seed_rows_per_s",
        "Seed speed (server-side INSERT … SELECT generate_series)",
        f.loaded.insert.rows_per_s,
        "rows/s",
    );
    searches(r, f);
    short_forced(r, f);
    found(r, &f.finds);
    costs(r, f);
    rule(r, &f.rule);
    migration_findings(r, &f.migration);

    r.table(plans_table(f));
    r.table(finds_table(&f.finds));
    r.table(examples_table(&f.finds));
    r.table(first_results_table(&f.finds));
    r.table(index_table(f));
    r.table(inserts_table(f));
    r.table(rule_table(&f.rule));
    r.table(migration_table(&f.migration));
    notes(r, f);
    r.sentence(sentence(f));
}

fn searches(r: &mut Report, f: &Facts) {
    let clients = f.shape.search.clients;
    for m in &f.searches {
        let a = m.approach.key();
        if m.term.kind == TermKind::Rare {
            r.p95(
                &format!("{a}_p95_ms"),
                &format!(
                    "p95, {}, {} ({clients} clients)",
                    m.approach.label(),
                    m.term.label()
                ),
                &m.load,
            );
            r.p50(
                &format!("{a}_p50_ms"),
                &format!(
                    "p50, {}, {} ({clients} clients)",
                    m.approach.label(),
                    m.term.label()
                ),
                &m.load,
            );
            r.finding(
                &format!("{a}_buffers"),
                &format!("Buffers, {}, {}", m.approach.label(), m.term.label()),
                m.plan.buffers() as f64,
                "buffers",
            );
        } else {
            r.p95(
                &format!("{a}_{}_p95_ms", m.term.key()),
                &format!(
                    "p95, {}, {} ({clients} clients)",
                    m.approach.label(),
                    m.term.label()
                ),
                &m.load,
            );
        }
    }
    if let Some(short) = f.search(Approach::Trigram, search::SHORT) {
        r.flag(
            "short_pattern_trgm_uses_index",
            &format!(
                "ILIKE '%{}%' uses the trigram index (it has no trigram to look up)",
                search::SHORT.text
            ),
            short.plan.index_used() == Some(trigram::INDEX),
        );
    }
}

fn short_forced(r: &mut Report, f: &Facts) {
    if let Some(plan) = &f.short_forced {
        r.finding(
            "short_pattern_forced_index_candidates",
            &format!(
                "ILIKE '%{}%' with the trigram index forced (enable_seqscan = off): rows the \
                 Bitmap Index Scan returned (the whole table)",
                search::SHORT.text
            ),
            trigram::index_candidates(plan) as f64,
            "count",
        );
    }
}

fn found(r: &mut Report, finds: &Finds) {
    if let Some(t) = finds.term(finds::MISSPELLING) {
        if let Some(n) = t.trigram {
            r.finding(
                "typo_trgm_hits",
                &format!(
                    "'{}': orders trigram word similarity (<%) finds",
                    t.term.text
                ),
                n as f64,
                "count",
            );
        }
        r.finding(
            "typo_fts_hits",
            &format!("'{}': orders full-text search finds", t.term.text),
            t.full_text as f64,
            "count",
        );
        r.finding(
            "typo_like_hits",
            &format!("'{}': orders ILIKE finds", t.term.text),
            t.substring as f64,
            "count",
        );
    }
    for (term, key) in [(finds::SUBSTRING, "cat"), (finds::STEM, "running")] {
        if let Some(t) = finds.term(term) {
            r.finding(
                &format!("{key}_like_hits"),
                &format!("'{}': orders ILIKE '%{}%' finds", term.text, term.text),
                t.substring as f64,
                "count",
            );
            r.finding(
                &format!("{key}_fts_hits"),
                &format!("'{}': orders full-text search finds", term.text),
                t.full_text as f64,
                "count",
            );
        }
    }
    r.finding(
        "substring_false_positives",
        "'cat': orders ILIKE finds that full-text search does not (certificate, educational, location…)",
        finds.substring_false_positives as f64,
        "count",
    );
    r.better("substring_false_positives", Better::Lower);
    r.finding(
        "stemmed_extra_hits",
        "'running': orders full-text search finds that ILIKE misses (run, runs)",
        finds.stemmed_extra_hits as f64,
        "count",
    );
}

fn costs(r: &mut Report, f: &Facts) {
    if let Some(b) = f.trigram_index {
        r.finding(
            "trgm_index_mb",
            "Trigram GIN index size",
            b.bytes as f64 / MB,
            "MB",
        );
        r.finding(
            "trgm_index_build_s",
            "Trigram GIN index build (CREATE INDEX)",
            b.elapsed.as_secs_f64(),
            "s",
        );
    }
    r.finding(
        "table_mb_without_search_column",
        "orders heap before the migration",
        f.heap_bytes.0 as f64 / MB,
        "MB",
    );
    r.finding(
        "table_mb_with_search_column",
        "orders heap with the stored search column (after VACUUM FULL)",
        f.heap_bytes.1 as f64 / MB,
        "MB",
    );
    let fts = f.migration.index;
    r.finding(
        "fts_index_mb",
        "tsvector GIN index size",
        fts.bytes as f64 / MB,
        "MB",
    );
    r.finding(
        "fts_index_build_s",
        "tsvector GIN index build (CREATE INDEX CONCURRENTLY, under writes)",
        fts.elapsed.as_secs_f64(),
        "s",
    );
    for i in &f.inserts {
        let k = i.variant.key();
        r.finding(
            &format!("insert_rows_per_s_{k}"),
            &format!(
                "Insert rows/s, {} (one INSERT … SELECT of {} rows)",
                i.variant.label(),
                i.bulk_rows
            ),
            i.bulk_rows_per_s(),
            "rows/s",
        );
        r.p99(
            &format!("insert_p99_ms_{k}"),
            &format!(
                "Single-row insert p99, {} ({} clients)",
                i.variant.label(),
                f.shape.inserts.clients
            ),
            &i.load,
        );
    }
}

fn rule(r: &mut Report, rule: &Rule) {
    r.flag(
        "one_arg_tsvector_index_used",
        "A query on one-argument to_tsvector(description) uses the to_tsvector('english', …) index",
        rule.one_arg_index_used(),
    );
    r.flag(
        "one_arg_tsvector_index_creatable",
        "An index on one-argument to_tsvector(description) can be created",
        rule.one_arg_index_error.is_none(),
    );
    r.flag(
        "two_arg_tsvector_index_used",
        "A query on to_tsvector('english', description) uses the same-expression index",
        rule.two_arg_query.index_used().is_some(),
    );
    r.measured(
        "ranked_common_expression_ms",
        &format!(
            "Ranked search for '{}' through the expression index (EXPLAIN ANALYZE, {} rows)",
            search::COMMON.text,
            rule.rows
        ),
        rule.ranked_expression.execution_ms,
        "ms",
        1,
    );
    r.measured(
        "ranked_common_column_ms",
        &format!(
            "Ranked search for '{}' through the stored column (EXPLAIN ANALYZE, {} rows)",
            search::COMMON.text,
            rule.rows
        ),
        rule.ranked_column.execution_ms,
        "ms",
        1,
    );
}

fn migration_findings(r: &mut Report, m: &Migration) {
    let zero_downtime = m
        .writers
        .merged(|name| migration::ZERO_DOWNTIME.iter().any(|s| s.name == name));
    r.p99(
        "migration_writer_p99_ms",
        "Writers' p99 across the zero-downtime migration (column + trigger … switch)",
        &zero_downtime,
    );
    for step in migration::STEPS {
        let Some(s) = m.writers.get(step.name) else {
            continue;
        };
        let key = if step == migration::GENERATED {
            "generated_column_writer_p99_ms".to_string()
        } else {
            format!("migration_{}_writer_p99_ms", step.key)
        };
        r.p99(
            &key,
            &format!("Writers' p99 during: {}", step.name),
            &s.summary,
        );
        if step == migration::GENERATED {
            r.measured(
                "generated_column_writer_max_ms",
                "Writers' slowest write during the generated-column table rewrite",
                s.summary.max_ms,
                "ms",
                s.summary.count,
            );
        }
    }
    r.finding(
        "generated_column_rewrite_s",
        "ADD COLUMN … GENERATED … STORED: the table rewrite (ACCESS EXCLUSIVE held)",
        m.generated_rewrite.as_secs_f64(),
        "s",
    );
    r.finding(
        "backfill_s",
        &format!(
            "Backfill: {} rows in {} batches",
            m.backfill.rows, m.backfill.batches
        ),
        m.backfill.elapsed.as_secs_f64(),
        "s",
    );
    r.finding(
        "dual_read_searches",
        "Dual-read searches compared",
        m.dual.searches as f64,
        "count",
    );
    r.finding(
        "dual_read_disagreements",
        "Dual-read searches whose pages held a row one path matched and the other did not",
        m.dual.disagreeing as f64,
        "count",
    );
    r.finding(
        "dual_read_rows_only_like",
        "Dual read: rows on the pages only ILIKE matched (summed over searches)",
        m.dual.rows_only_like as f64,
        "count",
    );
    r.finding(
        "dual_read_rows_only_fts",
        "Dual read: rows on the pages only full-text search matched (summed over searches)",
        m.dual.rows_only_fts as f64,
        "count",
    );
    r.finding(
        "dual_read_stale_rows",
        "Dual read: rows on the pages whose search column was stale (the switch gate)",
        m.dual.stale_rows as f64,
        "count",
    );
    r.better("dual_read_stale_rows", Better::Lower);
    r.p95(
        "dual_read_search_p95_ms",
        "Search p95 in dual-read mode (ILIKE served, full-text compared; 1 reader)",
        &m.dual_searches,
    );
    r.p95(
        "fts_only_search_p95_ms",
        "Search p95 after the switch (full-text only; 1 reader)",
        &m.after_searches,
    );
    r.finding(
        "migration_unfilled_rows",
        "Rows with search IS NULL after the migration",
        m.check.unfilled as f64,
        "count",
    );
    r.better("migration_unfilled_rows", Better::Lower);
    r.flag(
        "migration_index_valid",
        "The concurrently built index is valid (pg_index.indisvalid)",
        m.check.index_valid,
    );
    r.flag(
        "migration_switched",
        "The flag switched to full-text search (no stale row in the dual read)",
        m.switched,
    );
}

fn plans_table(f: &Facts) -> Table {
    let mut t = Table::new(
        format!(
            "Plans and latency: the search box's first page, one term at a time ({} clients, closed loop, {:.1} s each)",
            f.shape.search.clients,
            f.shape.search.duration.as_secs_f64()
        ),
        &[
            "approach",
            "term",
            "plan",
            "buffers",
            "rows examined",
            "first page",
            "p50 ms",
            "p95 ms",
            "searches",
        ],
    );
    for m in &f.searches {
        t.row([
            m.approach.key().to_string(),
            m.term.label(),
            plan_cell(&m.plan),
            m.plan.buffers().to_string(),
            m.plan.rows_examined().to_string(),
            m.first_page.to_string(),
            format!("{:.2}", m.load.p50_ms),
            format!("{:.2}", m.load.p95_ms),
            m.load.count.to_string(),
        ]);
    }
    if let Some(plan) = &f.short_forced {
        t.row([
            "trgm, forced".to_string(),
            format!("{} (enable_seqscan = off)", search::SHORT.label()),
            plan_cell(plan),
            plan.buffers().to_string(),
            plan.rows_examined().to_string(),
            plan.rows_returned().to_string(),
            format!("{:.2} (EXPLAIN)", plan.execution_ms),
            "–".to_string(),
            "1".to_string(),
        ]);
    }
    t
}

fn finds_table(finds: &Finds) -> Table {
    let mut t = Table::new(
        "What each one finds (orders matching, whole table)",
        &[
            "search",
            "ILIKE '%…%'",
            "trigram",
            "full-text",
            "the difference",
        ],
    );
    for tf in &finds.terms {
        let why = match tf.term.kind {
            TermKind::Typo => "only word similarity (<% 0.6) forgives the typo; ILIKE and \
                               full-text find only rows with the same typo"
                .to_string(),
            _ if tf.term == finds::SUBSTRING => format!(
                "{} substring hits are not cats: certificate, educational, location, delicate…",
                finds.substring_false_positives
            ),
            _ => format!(
                "{} full-text hits say run/runs, not running (one stem)",
                finds.stemmed_extra_hits
            ),
        };
        t.row([
            format!("'{}'", tf.term.text),
            tf.substring.to_string(),
            tf.trigram.map_or("–".to_string(), |n| {
                if tf.term.kind == TermKind::Typo {
                    format!("{n} (<%)")
                } else {
                    format!("{n} (same ILIKE)")
                }
            }),
            tf.full_text.to_string(),
            why,
        ]);
    }
    t
}

fn examples_table(finds: &Finds) -> Table {
    let mut cols = vec!["id", "example order"];
    let mut per_term = Vec::new();
    for tf in &finds.terms {
        per_term.push((
            format!("'{}' ILIKE", tf.term.text),
            tf.examples_substring.clone(),
        ));
        if tf.term.kind == TermKind::Typo
            && let Some(ids) = &tf.examples_trigram
        {
            per_term.push((format!("'{}' <%", tf.term.text), ids.clone()));
        }
        per_term.push((
            format!("'{}' full-text", tf.term.text),
            tf.examples_full_text.clone(),
        ));
    }
    cols.extend(per_term.iter().map(|(c, _)| c.as_str()));
    let mut t = Table::new("The example orders, row by row (✓ = matched)", &cols);
    for (id, description) in orders::EXAMPLES {
        let mut row = vec![id.to_string(), description.to_string()];
        for (_, ids) in &per_term {
            row.push(if ids.contains(id) { "✓" } else { "" }.to_string());
        }
        t.row(row);
    }
    t
}

fn first_results_table(finds: &Finds) -> Table {
    let mut t = Table::new(
        "First results: the top two of the page each approach serves",
        &["search", "approach", "#1", "#2"],
    );
    for tf in &finds.terms {
        for (approach, page) in &tf.first_pages {
            let cell = |i: usize| {
                page.get(i).map_or("–".to_string(), |h| {
                    format!("#{} {}", h.id, h.description)
                })
            };
            t.row([
                format!("'{}'", tf.term.text),
                approach.key().to_string(),
                cell(0),
                cell(1),
            ]);
        }
    }
    t
}

fn index_table(f: &Facts) -> Table {
    let mut t = Table::new(
        format!(
            "Index cost (the orders heap: {:.1} MB before the migration, {:.1} MB with its search column)",
            f.heap_bytes.0 as f64 / MB,
            f.heap_bytes.1 as f64 / MB
        ),
        &["index", "how it was built", "build s", "size MB"],
    );
    if let Some(b) = f.trigram_index {
        t.row([
            "gin (description gin_trgm_ops)".to_string(),
            "CREATE INDEX, no writers".to_string(),
            format!("{:.2}", b.elapsed.as_secs_f64()),
            format!("{:.1}", b.bytes as f64 / MB),
        ]);
    }
    let b = f.migration.index;
    t.row([
        "gin (search), search = to_tsvector('english', description)".to_string(),
        "CREATE INDEX CONCURRENTLY, writers running".to_string(),
        format!("{:.2}", b.elapsed.as_secs_f64()),
        format!("{:.1}", b.bytes as f64 / MB),
    ]);
    t
}

fn inserts_table(f: &Facts) -> Table {
    let mut t = Table::new(
        format!(
            "Insert cost: one INSERT … SELECT of {} rows into an empty table, then single-row \
             INSERTs from {} clients for {:.1} s",
            f.shape.inserts.bulk_rows,
            f.shape.inserts.clients,
            f.shape.inserts.duration.as_secs_f64()
        ),
        &[
            "search index",
            "bulk rows/s",
            "vs none",
            "single-row inserts/s",
            "p50 ms",
            "p99 ms",
            "max ms",
        ],
    );
    let base = f
        .inserts(Variant::NoSearchIndex)
        .map_or(f64::NAN, |i| i.bulk_rows_per_s());
    for i in &f.inserts {
        t.row([
            i.variant.label().to_string(),
            format!("{:.0}", i.bulk_rows_per_s()),
            format!("{:.2}×", i.bulk_rows_per_s() / base),
            format!("{:.0}", i.load.throughput_per_s),
            format!("{:.2}", i.load.p50_ms),
            format!("{:.2}", i.load.p99_ms),
            format!("{:.1}", i.load.max_ms),
        ]);
    }
    t
}

fn rule_table(rule: &Rule) -> Table {
    let mut t = Table::new(
        format!(
            "The expression-index rule ({} orders in orders_rule; indexes on to_tsvector('english', description) and on search)",
            rule.rows
        ),
        &["query", "plan", "EXPLAIN ms"],
    );
    let created = match &rule.one_arg_index_error {
        Some((code, msg)) => format!("refused: {msg} (SQLSTATE {code})"),
        None => "created (this server accepted it)".to_string(),
    };
    t.row([
        "CREATE INDEX … USING gin (to_tsvector(description))".to_string(),
        created,
        "–".to_string(),
    ]);
    for (q, plan) in [
        (
            format!(
                "WHERE to_tsvector(description) @@ … '{}' (default config = english)",
                search::RARE.text
            ),
            &rule.one_arg_query,
        ),
        (
            format!(
                "WHERE to_tsvector('english', description) @@ … '{}'",
                search::RARE.text
            ),
            &rule.two_arg_query,
        ),
        (
            format!("WHERE search @@ … '{}'", search::RARE.text),
            &rule.column_query,
        ),
        (
            format!(
                "'{}' ranked: ts_rank(to_tsvector('english', description), q)",
                search::COMMON.text
            ),
            &rule.ranked_expression,
        ),
        (
            format!("'{}' ranked: ts_rank(search, q)", search::COMMON.text),
            &rule.ranked_column,
        ),
    ] {
        t.row([q, plan_cell(plan), format!("{:.2}", plan.execution_ms)]);
    }
    t
}

fn migration_table(m: &Migration) -> Table {
    let mut t = Table::new(
        "The migration under write traffic: writers' latency per step",
        &[
            "step",
            "s",
            "writes",
            "p50 ms",
            "p99 ms",
            "max ms",
            "what happened",
        ],
    );
    for step in migration::STEPS {
        let Some(s) = m.writers.get(step.name) else {
            continue;
        };
        let what = match step.key {
            "generated_column" => format!(
                "table rewritten in {:.2} s under ACCESS EXCLUSIVE, then the column dropped",
                m.generated_rewrite.as_secs_f64()
            ),
            "add_column" => format!(
                "catalog-only ALTER + trigger in {:.1} ms (lock wait included)",
                m.add_column.as_secs_f64() * 1000.0
            ),
            "backfill" => format!("{} rows in {} batches", m.backfill.rows, m.backfill.batches),
            "create_index" => format!(
                "{:.1} MB GIN, valid = {}",
                m.index.bytes as f64 / MB,
                m.check.index_valid
            ),
            "dual_read" => dual_summary(&m.dual),
            "switch" => if m.switched {
                "flag = fts: ILIKE off the hot path"
            } else {
                "NOT switched: stale rows in the dual read"
            }
            .to_string(),
            _ => String::new(),
        };
        t.row([
            step.name.to_string(),
            format!("{:.2}", s.elapsed.as_secs_f64()),
            s.summary.count.to_string(),
            format!("{:.2}", s.summary.p50_ms),
            format!("{:.2}", s.summary.p99_ms),
            format!("{:.1}", s.summary.max_ms),
            what,
        ]);
    }
    t
}

fn dual_summary(d: &Tally) -> String {
    format!(
        "{} searches compared, {} differed: {} rows only ILIKE, {} only full-text, {} stale",
        d.searches, d.disagreeing, d.rows_only_like, d.rows_only_fts, d.stale_rows
    )
}

/// "Bitmap Heap Scan using orders_search_idx" (+ " + Sort").
fn plan_cell(plan: &Plan) -> String {
    let mut s = plan.access_path().to_string();
    if let Some(index) = plan.index_used() {
        s.push_str(&format!(" using {index}"));
    }
    if plan.has_node("Sort") {
        s.push_str(" + Sort");
    }
    s
}

fn notes(r: &mut Report, f: &Facts) {
    r.note(format!(
        "Data: {} seeded orders plus {} hand-written examples (ids 1–{}). Descriptions are \
         generated server-side from the lists in src/vocabulary.rs, every slot drawn by Zipf \
         rank (P(k) ∝ ln(1 + 1/k)); 2 % of rows lose a letter and 1 % have two letters \
         swapped. Same --seed, same rows. Seeding took {:.1} s, the primary key and ANALYZE \
         {:.1} s.",
        f.loaded.rows,
        orders::EXAMPLES.len(),
        orders::EXAMPLES.len(),
        f.loaded.insert.elapsed.as_secs_f64(),
        f.loaded.primary_key.as_secs_f64()
    ));
    r.note(format!(
        "Searches: each (approach, term) is warmed with one search, EXPLAINed, then loaded by {} \
         clients in a closed loop for {:.1} s after {:.1} s of warm-up. The app pool uses \
         plan_cache_mode = force_custom_plan, so the load runs the plan the EXPLAIN shows (a \
         generic plan for ILIKE $1 cannot know whether the pattern has trigrams). All three \
         approaches are measured after the migration, on the same table: the seeded rows with \
         their search column (the migration's {} extra orders deleted, then VACUUM FULL).",
        f.shape.search.clients,
        f.shape.search.duration.as_secs_f64(),
        f.shape.search.warmup.as_secs_f64(),
        f.writer_rows_deleted
    ));
    r.note(format!(
        "Migration: {} writers (re-orders and note edits, ~5 ms think time) run through every \
         step; each write counts against the step in which it completed. The generated-column \
         attempt runs first and is dropped, so the zero-downtime path starts from the same \
         table. Each step stays open at least {:.2} s so that even an instant one has writes \
         to show. Backfill batches: {} rows. Dual read: 1 reader cycling through {} terms; the \
         served ILIKE page and the page full-text search would serve (both newest first) are \
         read in one REPEATABLE READ snapshot and every row on either is judged by both \
         predicates; the switch happens only if no compared row had a stale search column. \
         The trigger path left {} of {} rows unfilled and {} stale.",
        f.shape.migration.writers,
        f.shape.migration.min_step.as_secs_f64(),
        f.shape.migration.batch,
        migration::READER_TERMS.len(),
        f.migration.check.unfilled,
        f.migration.check.rows,
        f.migration.check.stale
    ));
    r.note(
        "Inserts: each index variant gets a fresh, empty table; bulk rows/s is one INSERT … \
         SELECT timed whole, the single-row numbers come from the clients that follow it. The \
         GIN pending list is limited to 256 kB (default 4 MB) so that its merge happens inside \
         the phase. On a large table each insert also walks a deeper index: these ratios are a \
         floor.",
    );
    if let Some(m) = f.search(Approach::Trigram, search::COMMON)
        && m.plan.index_used() != Some(trigram::INDEX)
    {
        r.note(format!(
            "For the common term the planner chose {} over the trigram index: when one row \
             in seven matches, reading the table is cheaper than the bitmap.",
            m.plan.access_path()
        ));
    }
}

fn sentence(f: &Facts) -> String {
    let like = f.search(Approach::Like, search::RARE);
    let trgm = f.search(Approach::Trigram, search::RARE);
    let fts = f.search(Approach::FullText, search::RARE);
    let (Some(like), Some(fts)) = (like, fts) else {
        return String::new();
    };
    let trgm_part = trgm.map_or(String::new(), |t| {
        format!(
            "a pg_trgm GIN index served the same query from {} buffers at p95 {:.2} ms, ",
            t.plan.buffers(),
            t.load.p95_ms
        )
    });
    let typo = f
        .finds
        .term(finds::MISSPELLING)
        .and_then(|t| t.trigram.map(|n| (n, t.full_text)));
    let typo_part = typo.map_or(String::new(), |(trgm_hits, fts_hits)| {
        format!(
            ", and only trigrams forgave '{}' ({trgm_hits} orders vs {fts_hits})",
            search::TYPO.text
        )
    });
    let m = &f.migration;
    let zero = m
        .writers
        .merged(|name| migration::ZERO_DOWNTIME.iter().any(|s| s.name == name));
    let generated = m.writers.get(migration::GENERATED.name);
    format!(
        "On {} orders, ILIKE '%{}%' read {} buffers in a {} (p95 {:.1} ms at {} clients); {}and \
         full-text search on a tsvector GIN index took p95 {:.2} ms — but no trigram index helps \
         a 2-letter pattern, '{}' matched {} orders that are not about cats, full-text search \
         found {} more 'running' orders by stem{}. We added the column with a trigger, \
         backfilled it in batches and built the index concurrently under live writes with \
         writers' p99 at {:.1} ms{}; dual reads found {} stale rows, so we switched.",
        f.loaded.rows,
        search::RARE.text,
        like.plan.buffers(),
        like.plan.access_path(),
        like.load.p95_ms,
        f.shape.search.clients,
        trgm_part,
        fts.load.p95_ms,
        finds::SUBSTRING.text,
        f.finds.substring_false_positives,
        f.finds.stemmed_extra_hits,
        typo_part,
        zero.p99_ms,
        generated.map_or(String::new(), |g| format!(
            " (the one-statement generated column held every write for up to {:.0} ms)",
            g.summary.max_ms
        )),
        m.dual.stale_rows,
    )
}
