//! Scenario 2: what each approach finds — substring matches that are wrong, stems that are
//! right, and the misspelling only trigrams forgive.
//!
//! Counts run over the whole table; the example orders (ids 1..=11, [`crate::orders::EXAMPLES`])
//! show the same thing row by row, small enough to judge by eye.

use sqlx::PgPool;

use crate::orders::RESERVED_IDS;
use crate::search::{self, Approach, Hit, Term, TermKind};

/// "cat": `ILIKE '%cat%'` also finds "certificate", "educational", "location"…
pub const SUBSTRING: Term = Term {
    kind: TermKind::Common,
    text: "cat",
};
/// "running": full-text search also finds "run" and "runs" (one stem: `run`).
pub const STEM: Term = Term {
    kind: TermKind::Common,
    text: "running",
};
/// "heaphones": word similarity finds "headphones"; `ILIKE` and full-text search find
/// only the same typo.
pub const MISSPELLING: Term = search::TYPO;

/// How a row is matched, without a LIMIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matcher {
    /// `description ILIKE '%term%'` (what both `like` and `trgm` send).
    Substring,
    /// `term <% description`: pg_trgm word similarity ≥ 0.6.
    WordSimilarity,
    /// `search @@ websearch_to_tsquery('english', term)`.
    FullText,
}

impl Matcher {
    fn param(self, term: Term) -> String {
        match self {
            Self::Substring => search::like_pattern(term.text),
            _ => term.text.to_string(),
        }
    }
}

/// What the trigram approach sends for a term: word similarity for the misspelling, the
/// app's `ILIKE` otherwise.
pub fn trigram_matcher(term: Term) -> Matcher {
    if term.kind == TermKind::Typo {
        Matcher::WordSimilarity
    } else {
        Matcher::Substring
    }
}

/// Rows of the whole table that match.
pub async fn count(pool: &PgPool, m: Matcher, term: Term) -> Result<i64, sqlx::Error> {
    let sql = match m {
        Matcher::Substring => "SELECT count(*) FROM orders WHERE description ILIKE $1",
        Matcher::WordSimilarity => "SELECT count(*) FROM orders WHERE $1 <% description",
        Matcher::FullText => {
            "SELECT count(*) FROM orders WHERE search @@ websearch_to_tsquery('english', $1)"
        }
    };
    sqlx::query_scalar(sql)
        .bind(m.param(term))
        .fetch_one(pool)
        .await
}

/// Which of the example orders match.
pub async fn example_ids(pool: &PgPool, m: Matcher, term: Term) -> Result<Vec<i64>, sqlx::Error> {
    let sql = match m {
        Matcher::Substring => {
            "SELECT id FROM orders WHERE id <= $2 AND description ILIKE $1 ORDER BY id"
        }
        Matcher::WordSimilarity => {
            "SELECT id FROM orders WHERE id <= $2 AND $1 <% description ORDER BY id"
        }
        Matcher::FullText => {
            "SELECT id FROM orders WHERE id <= $2 \
             AND search @@ websearch_to_tsquery('english', $1) ORDER BY id"
        }
    };
    sqlx::query_scalar(sql)
        .bind(m.param(term))
        .bind(RESERVED_IDS)
        .fetch_all(pool)
        .await
}

/// Rows `ILIKE` matches and full-text search does not: for "cat", the substring hits.
pub async fn substring_only(pool: &PgPool, term: Term) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM orders WHERE description ILIKE $1 \
         AND NOT search @@ websearch_to_tsquery('english', $2)",
    )
    .bind(search::like_pattern(term.text))
    .bind(term.text)
    .fetch_one(pool)
    .await
}

/// Rows full-text search matches and `ILIKE` does not: for "running", the other forms.
pub async fn full_text_only(pool: &PgPool, term: Term) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM orders WHERE search @@ websearch_to_tsquery('english', $2) \
         AND description NOT ILIKE $1",
    )
    .bind(search::like_pattern(term.text))
    .bind(term.text)
    .fetch_one(pool)
    .await
}

/// One term: counts per matcher, the example ids each matched, and the first page each
/// approach serves.
#[derive(Debug, Clone)]
pub struct TermFinds {
    pub term: Term,
    pub substring: i64,
    /// What the trigram approach matches: the same `ILIKE`, or word similarity for the
    /// misspelling. `None` without pg_trgm.
    pub trigram: Option<i64>,
    pub full_text: i64,
    pub examples_substring: Vec<i64>,
    pub examples_trigram: Option<Vec<i64>>,
    pub examples_full_text: Vec<i64>,
    pub first_pages: Vec<(Approach, Vec<Hit>)>,
}

/// Everything scenario 2 reports.
#[derive(Debug, Clone)]
pub struct Finds {
    pub terms: Vec<TermFinds>,
    /// "cat": rows `ILIKE` finds that are not about cats.
    pub substring_false_positives: i64,
    /// "running": rows full-text search finds that `ILIKE` misses ("runs", "run").
    pub stemmed_extra_hits: i64,
}

impl Finds {
    pub fn term(&self, t: Term) -> Option<&TermFinds> {
        self.terms.iter().find(|f| f.term == t)
    }
}

/// Run scenario 2 (after the migration: full-text search reads the `search` column).
pub async fn measure(pool: &PgPool, trigram: bool) -> Result<Finds, sqlx::Error> {
    let mut terms = Vec::new();
    for term in [SUBSTRING, STEM, MISSPELLING] {
        let (trigram_count, examples_trigram) = if trigram {
            let m = trigram_matcher(term);
            (
                Some(count(pool, m, term).await?),
                Some(example_ids(pool, m, term).await?),
            )
        } else {
            (None, None)
        };
        let mut first_pages = Vec::new();
        for approach in Approach::ALL {
            if approach == Approach::Trigram && !trigram {
                continue;
            }
            let term = if approach == Approach::Trigram {
                term
            } else {
                // The same text, searched the ordinary way (only the typo goes fuzzy).
                Term {
                    kind: TermKind::Common,
                    ..term
                }
            };
            first_pages.push((approach, search::search(pool, approach, term).await?));
        }
        terms.push(TermFinds {
            term,
            substring: count(pool, Matcher::Substring, term).await?,
            trigram: trigram_count,
            full_text: count(pool, Matcher::FullText, term).await?,
            examples_substring: example_ids(pool, Matcher::Substring, term).await?,
            examples_trigram,
            examples_full_text: example_ids(pool, Matcher::FullText, term).await?,
            first_pages,
        });
    }
    Ok(Finds {
        terms,
        substring_false_positives: substring_only(pool, SUBSTRING).await?,
        stemmed_extra_hits: full_text_only(pool, STEM).await?,
    })
}
