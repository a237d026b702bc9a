//! The war story's claims, checked on real Postgres at smoke scale (20,000 orders).
//!
//! Each test seeds its own `orders` in its own scratch database and asserts plan node types,
//! exact example rows, counts and the state the migration leaves — never timings.

use lab_full_text_search::finds::{self, Matcher};
use lab_full_text_search::search::{self, Approach};
use lab_full_text_search::{FullTextSearch, Shape, expression_rule, migration, orders, trigram};
use labkit::testing::TestCtx;

/// A scratch database with pg_trgm and the smoke-scale orders.
async fn seeded() -> TestCtx {
    let t = labkit::testing::ctx("full-text-search").await;
    let trgm = trigram::install(&t.ctx.pg).await.expect("query extensions");
    if let Err(why) = trgm {
        panic!("these tests need pg_trgm: {why}");
    }
    orders::load(&t.ctx.pg, orders::rows_for(t.ctx.scale), t.ctx.seed)
        .await
        .expect("seed orders");
    t
}

/// The search column without writers: add it with its trigger, backfill, index it.
async fn with_search_column(t: &TestCtx) {
    let last = migration::add_column(&t.ctx.pg).await.expect("add column");
    migration::backfill(&t.ctx.pg, last, 5_000)
        .await
        .expect("backfill");
    migration::build_index(&t.ctx.pg).await.expect("index");
}

#[tokio::test]
async fn an_unanchored_ilike_scans_every_row_until_a_trigram_index_serves_it() {
    let t = seeded().await;
    let pg = &t.ctx.pg;

    // No index can serve '%quinira%': every row is read.
    let like = search::explain(pg, Approach::Like, search::RARE)
        .await
        .unwrap();
    assert!(
        like.access_path().ends_with("Seq Scan"),
        "{:?}",
        like.node_types()
    );
    assert_eq!(like.index_used(), None);
    assert!(like.rows_examined() > orders::rows_for(t.ctx.scale));

    trigram::build_index(pg).await.unwrap();

    // The same ILIKE, now a Bitmap Index Scan on the trigram index.
    let trgm = search::explain(pg, Approach::Trigram, search::RARE)
        .await
        .unwrap();
    assert!(
        trgm.has_node("Bitmap Index Scan"),
        "{:?}",
        trgm.node_types()
    );
    assert_eq!(trgm.index_used(), Some(trigram::INDEX));
    assert_eq!(trgm.rows_returned(), like.rows_returned());

    // Two letters hold no trigram: back to reading the table.
    let short = search::explain(pg, Approach::Trigram, search::SHORT)
        .await
        .unwrap();
    assert!(
        short.access_path().ends_with("Seq Scan"),
        "{:?}",
        short.node_types()
    );
    assert_eq!(short.index_used(), None);
    // Forced onto the index, it is a full-index scan: every order comes back as a candidate
    // and the recheck throws away all but the matches.
    let forced = trigram::explain_short_pattern_forced(pg).await.unwrap();
    assert_eq!(forced.index_used(), Some(trigram::INDEX));
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(pg)
        .await
        .unwrap();
    assert_eq!(trigram::index_candidates(&forced), all as u64);

    // The misspelling goes through word similarity (<%), which the index serves too.
    let typo = search::explain(pg, Approach::Trigram, search::TYPO)
        .await
        .unwrap();
    assert_eq!(typo.index_used(), Some(trigram::INDEX));
    assert!(typo.rows_returned() > 0);
    t.finish().await;
}

#[tokio::test]
async fn full_text_search_reads_the_gin_index_on_the_search_column() {
    let t = seeded().await;
    with_search_column(&t).await;
    for term in search::TERMS {
        let plan = search::explain(&t.ctx.pg, Approach::FullText, term)
            .await
            .unwrap();
        assert!(
            plan.has_node("Bitmap Index Scan"),
            "{}: {:?}",
            term.text,
            plan.node_types()
        );
        assert_eq!(plan.index_used(), Some(migration::INDEX), "{}", term.text);
    }
    t.finish().await;
}

#[tokio::test]
async fn the_one_argument_to_tsvector_cannot_be_indexed_and_its_query_ignores_the_english_index() {
    let t = seeded().await;
    with_search_column(&t).await;
    let rule = expression_rule::measure(&t.ctx.pg, 5_000).await.unwrap();

    // to_tsvector(text) is STABLE (it reads default_text_search_config): no index on it.
    let (code, message) = rule
        .one_arg_index_error
        .clone()
        .expect("Postgres refuses the one-argument index");
    assert_eq!(code, "42P17", "{message}");

    // With the default configuration set to english, the one-argument query still does
    // not match the index expression to_tsvector('english', description).
    assert!(
        !rule.one_arg_index_used(),
        "{:?}",
        rule.one_arg_query.node_types()
    );
    assert!(rule.one_arg_query.access_path().ends_with("Seq Scan"));
    assert_eq!(
        rule.two_arg_query.index_used(),
        Some(expression_rule::TWO_ARG_INDEX)
    );
    assert_eq!(
        rule.column_query.index_used(),
        Some(expression_rule::COLUMN_INDEX)
    );
    // The same rows, whichever way the query is spelled.
    assert_eq!(
        rule.one_arg_query.rows_returned(),
        rule.two_arg_query.rows_returned()
    );
    assert_eq!(
        rule.two_arg_query.rows_returned(),
        rule.column_query.rows_returned()
    );
    t.finish().await;
}

#[tokio::test]
async fn cat_running_and_heaphones_find_exactly_the_example_rows_the_readme_claims() {
    let t = seeded().await;
    with_search_column(&t).await;
    let pg = &t.ctx.pg;
    let ids = |m, term| finds::example_ids(pg, m, term);

    // 'cat': ILIKE also matches certificate (3), educational and vacation (4), delicate and
    // location (5); full-text search only the cat tree and the cats.
    let cat = finds::SUBSTRING;
    assert_eq!(ids(Matcher::Substring, cat).await.unwrap(), [1, 2, 3, 4, 5]);
    assert_eq!(ids(Matcher::FullText, cat).await.unwrap(), [1, 2]);

    // 'running': ILIKE finds the running shoes; full-text search also "run" (7) and
    // "runs" (8), one stem — but not "runner" (9), a different one.
    let running = finds::STEM;
    assert_eq!(ids(Matcher::Substring, running).await.unwrap(), [6]);
    assert_eq!(ids(Matcher::FullText, running).await.unwrap(), [6, 7, 8]);

    // 'heaphones': only trigram word similarity forgives the missing letter.
    let typo = finds::MISSPELLING;
    assert!(ids(Matcher::Substring, typo).await.unwrap().is_empty());
    assert!(ids(Matcher::FullText, typo).await.unwrap().is_empty());
    assert_eq!(ids(Matcher::WordSimilarity, typo).await.unwrap(), [10, 11]);

    // And over the whole table, the same three effects.
    assert!(finds::substring_only(pg, cat).await.unwrap() > 1_000);
    assert!(finds::full_text_only(pg, running).await.unwrap() > 500);
    let fuzzy = finds::count(pg, Matcher::WordSimilarity, typo)
        .await
        .unwrap();
    let fts = finds::count(pg, Matcher::FullText, typo).await.unwrap();
    assert!(fuzzy > 100 * (fts + 1), "{fuzzy} vs {fts}");
    t.finish().await;
}

#[tokio::test]
async fn the_same_seed_gives_the_same_orders_with_rare_terms_and_typos() {
    let digest = |t: &TestCtx| {
        let pg = t.ctx.pg.clone();
        async move {
            sqlx::query_as::<_, (String, i64, i64)>(
                "SELECT md5(string_agg(description, '|' ORDER BY id)), \
                        count(*) FILTER (WHERE description ILIKE '%quinira%'), \
                        count(*) FILTER (WHERE description ILIKE '%black%') \
                 FROM orders",
            )
            .fetch_one(&pg)
            .await
            .unwrap()
        }
    };
    let a = seeded().await;
    let b = seeded().await;
    let (da, rare, common) = digest(&a).await;
    let (db, ..) = digest(&b).await;
    assert_eq!(da, db, "same --seed, same descriptions");
    // Zipf: the common term is in thousands of rows, the rare one in a handful.
    assert!(common > 2_000, "{common}");
    assert!((1..=20).contains(&rare), "{rare}");
    a.finish().await;
    b.finish().await;
}

#[tokio::test]
async fn the_migration_under_writers_leaves_every_row_filled_and_the_index_valid() {
    let t = seeded().await;
    let shape = Shape::new(&t.ctx);
    let app = search::app_pool(&t.ctx, 2).await.unwrap();
    let seeded_max = orders::RESERVED_IDS + shape.rows as i64;
    let m = migration::run(&t.ctx, &app, shape.migration, seeded_max)
        .await
        .expect("migration");
    app.close().await;

    // Every row has its search column — the backfilled ones, and the writers' new orders
    // and edited notes, which the trigger filled — and each equals what a generated column
    // would hold.
    assert_eq!(m.check.unfilled, 0, "{:?}", m.check);
    assert_eq!(m.check.stale, 0, "{:?}", m.check);
    assert!(m.check.rows > seeded_max, "the writers added orders");
    assert!(m.check.index_valid, "pg_index.indisvalid");
    assert_eq!(m.dual.stale_rows, 0);
    assert!(m.switched);
    // The writers ran through every step; none of their writes failed (run() bails if so).
    let names: Vec<&str> = m.writers.steps.iter().map(|s| s.name.as_str()).collect();
    let expected: Vec<&str> = migration::STEPS.iter().map(|s| s.name).collect();
    assert_eq!(names, expected);
    let valid: bool = sqlx::query_scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_search_idx'::regclass",
    )
    .fetch_one(&t.ctx.pg)
    .await
    .unwrap();
    assert!(valid);
    t.finish().await;
}

#[tokio::test]
async fn a_smoke_run_keeps_its_contract_and_the_exact_numbers_hold() {
    let t = labkit::testing::ctx("full-text-search").await;
    let report = labkit::testing::smoke_run_keeps_its_contract(&FullTextSearch, &t).await;
    assert_eq!(report.get("short_pattern_trgm_uses_index"), Some(0.0));
    assert_eq!(report.get("one_arg_tsvector_index_used"), Some(0.0));
    assert_eq!(report.get("migration_unfilled_rows"), Some(0.0));
    assert_eq!(report.get("dual_read_stale_rows"), Some(0.0));
    assert!(!report.sentence.is_empty());
    t.finish().await;
}
