//! The search box: one query per approach, the four terms the lab searches for, and the
//! app's pool.
//!
//! | approach | the query (first page of 20) | index it can use |
//! |---|---|---|
//! | `like` | `description ILIKE '%term%' ORDER BY created_at DESC` | none: a sequential scan |
//! | `trgm` | the same `ILIKE`; for the typo `term <% description ORDER BY term <<-> description` | `gin (description gin_trgm_ops)` |
//! | `fts` | `search @@ websearch_to_tsquery('english', term) ORDER BY ts_rank(search, q) DESC` | `gin (search)` |
//!
//! The trigram index serves the *same* `ILIKE` the app already sends, which is why it is the
//! quick fix; full-text search changes what a match means (words and stems, not substrings),
//! which is why it needs a migration with dual reads. For the misspelling the trigram path
//! uses word similarity (`<%`, threshold `pg_trgm.word_similarity_threshold` = 0.6): plain
//! `%` compares the term with the *whole* description, and a 9-letter word is never 60 %
//! similar to a 50-character line.

use labkit::LabCtx;
use labkit::explain::Plan;
use sqlx::PgPool;

/// How a search is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Approach {
    /// `ILIKE '%term%'` with no index: what the app does today.
    Like,
    /// The same `ILIKE` (and `<%` for typos) on a pg_trgm GIN index.
    Trigram,
    /// `@@ websearch_to_tsquery` on the stored tsvector column's GIN index, ranked.
    FullText,
}

impl Approach {
    pub const ALL: [Approach; 3] = [Approach::Like, Approach::Trigram, Approach::FullText];

    /// The finding-key prefix: `like`, `trgm`, `fts`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Like => "like",
            Self::Trigram => "trgm",
            Self::FullText => "fts",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Like => "ILIKE '%…%', no index",
            Self::Trigram => "ILIKE '%…%' on a pg_trgm GIN index (<% for the typo)",
            Self::FullText => "@@ websearch_to_tsquery on a tsvector GIN index, ts_rank order",
        }
    }
}

/// Which kind of search term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TermKind {
    /// In about one order in seven.
    Common,
    /// A tail brand: a few dozen orders in 200,000.
    Rare,
    /// Two letters: no trigram can be taken from `%xl%`.
    Short,
    /// "heaphones" for "headphones": what people type into search boxes.
    Typo,
}

/// A term the lab searches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    pub kind: TermKind,
    pub text: &'static str,
}

impl Term {
    pub fn key(self) -> &'static str {
        match self.kind {
            TermKind::Common => "common",
            TermKind::Rare => "rare",
            TermKind::Short => "short",
            TermKind::Typo => "typo",
        }
    }

    pub fn label(self) -> String {
        let what = match self.kind {
            TermKind::Common => "common term",
            TermKind::Rare => "rare term",
            TermKind::Short => "2-letter pattern",
            TermKind::Typo => "misspelling",
        };
        format!("{what} '{}'", self.text)
    }
}

pub const COMMON: Term = Term {
    kind: TermKind::Common,
    text: "black",
};
/// Brand number 395 of 400 in rank order ([`crate::vocabulary::brands`]).
pub const RARE: Term = Term {
    kind: TermKind::Rare,
    text: "quinira",
};
pub const SHORT: Term = Term {
    kind: TermKind::Short,
    text: "xl",
};
pub const TYPO: Term = Term {
    kind: TermKind::Typo,
    text: "heaphones",
};
pub const TERMS: [Term; 4] = [COMMON, RARE, SHORT, TYPO];

/// The first page of a search.
pub const LIKE_PAGE: &str = "SELECT id, description FROM orders \
     WHERE description ILIKE $1 ORDER BY created_at DESC LIMIT 20";

/// Word similarity: the term against the closest stretch of each description.
const FUZZY_PAGE: &str = "SELECT id, description FROM orders \
     WHERE $1 <% description ORDER BY $1 <<-> description, id LIMIT 20";

const FTS_PAGE: &str = "SELECT id, description \
     FROM orders, websearch_to_tsquery('english', $1) AS q \
     WHERE search @@ q ORDER BY ts_rank(search, q) DESC, id LIMIT 20";

/// One result row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Hit {
    pub id: i64,
    pub description: String,
}

/// `%term%` with the user's `%`, `_` and `\` escaped: a search box must not let a user's
/// underscore match any character.
pub fn like_pattern(term: &str) -> String {
    let mut p = String::with_capacity(term.len() + 2);
    p.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The statement an approach sends for a term, and its one parameter.
pub fn statement(approach: Approach, term: Term) -> (&'static str, String) {
    match (approach, term.kind) {
        (Approach::Trigram, TermKind::Typo) => (FUZZY_PAGE, term.text.to_string()),
        (Approach::Like | Approach::Trigram, _) => (LIKE_PAGE, like_pattern(term.text)),
        (Approach::FullText, _) => (FTS_PAGE, term.text.to_string()),
    }
}

/// Run one search: the first page of results.
pub async fn search(
    pool: &PgPool,
    approach: Approach,
    term: Term,
) -> Result<Vec<Hit>, sqlx::Error> {
    let (sql, param) = statement(approach, term);
    sqlx::query_as(sql).bind(param).fetch_all(pool).await
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of one search.
pub async fn explain(pool: &PgPool, approach: Approach, term: Term) -> Result<Plan, sqlx::Error> {
    let (sql, param) = statement(approach, term);
    labkit::explain::analyze(pool, sql, |q| q.bind(param)).await
}

/// The app's pool. `plan_cache_mode = force_custom_plan`: sqlx prepares statements, and
/// after five runs Postgres may switch to a generic plan built without the pattern — for
/// `ILIKE $1` that plan cannot know whether the pattern has trigrams in it. A custom plan
/// per search is what the EXPLAIN rows show, so it is what the load measures.
pub async fn app_pool(ctx: &LabCtx, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    ctx.new_pool_with(
        labkit::pool_options(max_connections),
        ctx.connect_options()
            .options([("plan_cache_mode", "force_custom_plan")]),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_wildcards_are_searched_for_literally() {
        assert_eq!(like_pattern("cat"), "%cat%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn the_rare_term_is_a_tail_brand() {
        let brands = crate::vocabulary::brands();
        let rank = brands
            .iter()
            .position(|b| b.eq_ignore_ascii_case(RARE.text));
        assert_eq!(rank, Some(394), "brand rank 395 of {}", brands.len());
        let unique: std::collections::HashSet<_> = brands.iter().collect();
        assert_eq!(unique.len(), 400);
    }
}
