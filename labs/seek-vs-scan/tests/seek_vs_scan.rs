//! The war story's claims, checked on real Postgres at smoke scale (50,000 invoices).
//!
//! Each test loads its own table in its own scratch database and asserts plan shapes,
//! buffers, heap fetches and index counts: effects that do not depend on timing. Where the
//! planner's choice for the *biggest* tenant is a close call at smoke scale (bitmap or
//! plain index scan), the tests assert the index it used, not the node.

use std::time::Duration;

use lab_seek_vs_scan::query::explain_recent;
use lab_seek_vs_scan::schema::{self, Dataset, Tenants};
use lab_seek_vs_scan::variants::{self, Variant};
use lab_seek_vs_scan::{FINDING_KEYS, SeekVsScan, status_index, write_cost};
use labkit::explain::Plan;
use labkit::testing::TestCtx;
use labkit::{Lab, LoadKnobs};

/// A scratch database with the smoke-scale `invoices` table loaded, and its two tenants.
async fn loaded() -> (TestCtx, Tenants) {
    let t = labkit::testing::ctx("seek-vs-scan").await;
    schema::load(&t.ctx.pg, Dataset::for_scale(t.ctx.scale), t.ctx.seed)
        .await
        .expect("load invoices");
    let tenants = schema::pick_tenants(&t.ctx.pg).await.expect("tenants");
    (t, tenants)
}

/// Put `variant` in place and EXPLAIN the query for the big and the long-tail tenant.
async fn plans(t: &TestCtx, tenants: &Tenants, variant: Variant) -> (Plan, Plan) {
    variants::apply(&t.ctx.pg, variant).await.expect("apply");
    let big = explain_recent(&t.ctx.pg, tenants.big.tenant_id)
        .await
        .expect("explain big");
    let long_tail = explain_recent(&t.ctx.pg, tenants.long_tail.tenant_id)
        .await
        .expect("explain long tail");
    (big, long_tail)
}

#[tokio::test]
async fn each_index_variant_gets_the_plan_its_column_order_allows() {
    let (t, tenants) = loaded().await;
    assert!(
        tenants.big.rows > tenants.long_tail.rows * 10,
        "the data is skewed: {tenants:?}"
    );
    assert!(
        tenants.long_tail.rows_last_7_days > 0,
        "the long-tail tenant has invoices in the window: {tenants:?}"
    );

    // No index: both tenants read the whole table.
    let (big, small) = plans(&t, &tenants, Variant::NoIndex).await;
    for p in [&big, &small] {
        assert!(
            p.access_path().ends_with("Seq Scan"),
            "{:?}",
            p.node_types()
        );
        assert_eq!(p.index_used(), None);
    }

    // (created_at, tenant_id): a range scan over the window's entries, all tenants'.
    let (big, small) = plans(&t, &tenants, Variant::WrongOrder).await;
    for p in [&big, &small] {
        assert_eq!(p.access_path(), "Index Scan", "{:?}", p.node_types());
        assert_eq!(p.index_used(), Some("invoices_created_tenant_idx"));
    }

    // (tenant_id): finds the tenant, filters a year of its rows on the heap, then sorts.
    let (_, small) = plans(&t, &tenants, Variant::TenantOnly).await;
    assert_eq!(small.index_used(), Some("invoices_tenant_idx"));
    assert!(small.has_node("Sort"), "{:?}", small.node_types());
    assert!(
        small.rows_removed_by_filter() > 0,
        "rows outside the window are read, then thrown away"
    );

    // (tenant_id, created_at DESC): a seek to (tenant, newest), no sort for the long tail.
    let (big, small) = plans(&t, &tenants, Variant::Composite).await;
    assert_eq!(big.index_used(), Some("invoices_tenant_created_idx"));
    assert_eq!(
        small.access_path(),
        "Index Scan",
        "{:?}",
        small.node_types()
    );
    assert_eq!(small.index_used(), Some("invoices_tenant_created_idx"));
    assert!(!small.has_node("Sort"), "{:?}", small.node_types());
    assert_eq!(small.rows_removed_by_filter(), 0);

    // Covering, before VACUUM: index-only for the long tail, but the heap is still visited.
    let (big, small) = plans(&t, &tenants, Variant::CoveringBeforeVacuum).await;
    assert_eq!(big.index_used(), Some("invoices_tenant_created_incl_idx"));
    assert_eq!(small.access_path(), "Index Only Scan");

    // Covering, after VACUUM: index-only for both, no sort.
    let (big, small) = plans(&t, &tenants, Variant::CoveringAfterVacuum).await;
    for p in [&big, &small] {
        assert_eq!(p.access_path(), "Index Only Scan", "{:?}", p.node_types());
        assert_eq!(p.index_used(), Some("invoices_tenant_created_incl_idx"));
        assert!(!p.has_node("Sort"), "{:?}", p.node_types());
    }
    t.finish().await;
}

#[tokio::test]
async fn covering_index_still_visits_the_heap_until_vacuum_marks_pages_all_visible() {
    let (t, tenants) = loaded().await;

    // Right after the load (autovacuum is off): the visibility map is empty, so the
    // Index Only Scan checks every row it returns in the heap.
    let (big_before, small) = plans(&t, &tenants, Variant::CoveringBeforeVacuum).await;
    assert_eq!(small.access_path(), "Index Only Scan");
    assert!(
        small.heap_fetches() > 0,
        "heap fetches before VACUUM: {}",
        small.heap_fetches()
    );
    assert_eq!(small.heap_fetches(), small.rows_returned());

    // After VACUUM: every page is all-visible, zero heap fetches for both tenants, and the
    // big tenant reads a fraction of the buffers it read a moment ago with the same index.
    let (big_after, small) = plans(&t, &tenants, Variant::CoveringAfterVacuum).await;
    assert_eq!(small.heap_fetches(), 0);
    assert_eq!(big_after.heap_fetches(), 0);
    assert_eq!(big_after.access_path(), "Index Only Scan");
    assert!(
        big_after.buffers() < big_before.buffers(),
        "after {} vs before {}",
        big_after.buffers(),
        big_before.buffers()
    );
    t.finish().await;
}

#[tokio::test]
async fn biggest_tenant_reads_fewer_buffers_covered_than_wrong_order_than_seq_scan() {
    let (t, tenants) = loaded().await;
    let (seq, _) = plans(&t, &tenants, Variant::NoIndex).await;
    let (wrong_order, _) = plans(&t, &tenants, Variant::WrongOrder).await;
    let (covering, _) = plans(&t, &tenants, Variant::CoveringAfterVacuum).await;

    // All three return the same rows ...
    assert_eq!(seq.rows_returned(), tenants.big.rows_last_7_days as u64);
    assert_eq!(wrong_order.rows_returned(), seq.rows_returned());
    assert_eq!(covering.rows_returned(), seq.rows_returned());
    // ... reading very different amounts of data.
    assert!(
        covering.buffers() < wrong_order.buffers() && wrong_order.buffers() < seq.buffers(),
        "covering {} < wrong order {} < seq scan {}",
        covering.buffers(),
        wrong_order.buffers(),
        seq.buffers()
    );
    t.finish().await;
}

#[tokio::test]
async fn planner_ignores_the_status_index_for_paid_and_uses_it_for_disputed() {
    let (t, _) = loaded().await;
    let plans = status_index::measure(&t.ctx.pg)
        .await
        .expect("status plans");

    // 'paid' is ~90 % of the rows: the index exists, and the planner reads the table instead.
    assert!(
        !plans.index_chosen_for_common(),
        "{:?}",
        plans.common.node_types()
    );
    assert!(plans.common.access_path().ends_with("Seq Scan"));
    // 'disputed' is ~0.1 %: the same index is the right path.
    assert!(
        plans.index_chosen_for_rare(),
        "{:?}",
        plans.rare.node_types()
    );
    // And the planner was right: forced onto the index, 'paid' visits every heap page
    // anyway, plus the index's pages on top.
    assert_eq!(
        plans.common_forced_index.index_used(),
        Some(status_index::INDEX_NAME)
    );
    assert!(
        plans.common_forced_index.buffers() > plans.common.buffers(),
        "forced index {} vs seq scan {}",
        plans.common_forced_index.buffers(),
        plans.common.buffers()
    );
    t.finish().await;
}

#[tokio::test]
async fn write_cost_copies_carry_exactly_the_indexes_they_are_measured_with() {
    let (t, _) = loaded().await;
    let data = Dataset::for_scale(t.ctx.scale);
    for n in write_cost::INDEX_COUNTS {
        let stats = write_cost::insert_rate(&t.ctx.pg, data, n, 2_000, t.ctx.seed)
            .await
            .expect("insert");
        assert_eq!(stats.rows, 2_000);
        assert_eq!(
            write_cost::index_count(&t.ctx.pg).await.expect("count"),
            n as i64
        );
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM invoices_write")
            .fetch_one(&t.ctx.pg)
            .await
            .expect("count rows");
        assert_eq!(rows, 2_000);
    }
    write_cost::drop_copy(&t.ctx.pg).await.expect("drop");
    t.finish().await;
}

#[tokio::test]
async fn the_seed_draws_the_scales_tenants_and_a_year_of_time_ordered_rows() {
    let (t, _) = loaded().await;
    let data = Dataset::for_scale(t.ctx.scale);
    // Sizes reach the generator as binds: no helper table is left behind.
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(&t.ctx.pg)
    .await
    .unwrap();
    assert_eq!(tables, ["invoices"]);
    let (rows, max_tenant, first, last, in_order): (i64, i64, String, String, bool) =
        sqlx::query_as(
            "SELECT count(*), max(tenant_id), min(created_at)::date::text,              max(created_at)::date::text,              bool_and(created_at >= prev) FILTER (WHERE prev IS NOT NULL)              FROM (SELECT tenant_id, created_at, lag(created_at) OVER (ORDER BY id) AS prev                    FROM invoices) s",
        )
        .fetch_one(&t.ctx.pg)
        .await
        .unwrap();
    assert_eq!(rows as u64, data.rows);
    assert!(max_tenant as u64 <= data.tenants, "{max_tenant}");
    assert_eq!(
        (first.as_str(), last.as_str()),
        ("2025-01-01", "2025-12-31")
    );
    assert!(in_order, "rows are stored in time order");
    t.finish().await;
}

#[tokio::test]
async fn the_whole_lab_cleans_up_and_its_invariants_hold() {
    let t = labkit::testing::ctx("seek-vs-scan").await;
    let report = SeekVsScan.run(&t.ctx).await.expect("lab run");
    for key in [
        "seq_scan_p95_ms",
        "wrong_order_p95_ms",
        "tenant_only_p95_ms",
        "composite_p95_ms",
        "covering_p95_ms",
        "speedup_covering_vs_seq_p95",
        "buffers_seq_scan",
        "buffers_wrong_order",
        "buffers_covering",
        "covering_heap_fetches_before_vacuum",
        "covering_heap_fetches_after_vacuum",
        "seed_rows_per_s",
        "insert_rows_per_s_0_idx",
        "insert_rows_per_s_1_idx",
        "insert_rows_per_s_3_idx",
        "insert_rows_per_s_6_idx",
    ] {
        let v = report.get(key).unwrap_or_else(|| panic!("missing {key}"));
        assert!(v.is_finite(), "{key} = {v}");
    }
    assert!(report.get("covering_heap_fetches_before_vacuum").unwrap() > 0.0);
    assert_eq!(report.get("covering_heap_fetches_after_vacuum"), Some(0.0));
    assert_eq!(
        report.get("status_index_chosen_for_common_value"),
        Some(0.0)
    );
    assert_eq!(report.get("status_index_chosen_for_rare_value"), Some(1.0));
    assert!(!report.sentence.is_empty());
    // The run cleans up after itself: only the table and its primary key remain.
    let indexes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'")
            .fetch_one(&t.ctx.pg)
            .await
            .unwrap();
    assert_eq!(indexes, 1, "only invoices_pkey is left");
    t.finish().await;
}

#[tokio::test]
async fn a_smoke_run_keeps_its_contract_and_honours_the_load_knobs() {
    let t = labkit::testing::ctx("seek-vs-scan").await;
    let phase = Duration::from_millis(500);
    let load = LoadKnobs {
        clients: Some(2),
        duration: Some(phase),
        rate: Some(100.0),
        ..LoadKnobs::default()
    };
    let report = labkit::testing::smoke_run_with(&SeekVsScan, &t, load).await;

    // The contract checks the keys `SeekVsScan` promises: they are its FINDING_KEYS, and
    // nothing is reported that is not promised.
    assert_eq!(SeekVsScan.finding_keys(), FINDING_KEYS);
    for f in &report.findings {
        assert!(
            FINDING_KEYS.contains(&f.key.as_str()),
            "unpromised {}",
            f.key
        );
    }

    // The knobs: one labelled phase per variant, each with 2 clients for the planned 0.5 s.
    assert_eq!(report.load["clients"], 2);
    assert_eq!(report.load["duration_s"], 0.5);
    let names: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
    let keys: Vec<&str> = Variant::ALL.iter().map(|v| v.key()).collect();
    assert_eq!(names, keys);
    for p in &report.phases {
        assert_eq!(p.clients, 2, "{}", p.describe());
        assert_eq!(p.planned_s, Some(phase.as_secs_f64()), "{}", p.describe());
        assert!(p.samples > 0 && p.errors == 0, "{}", p.describe());
    }
    // --rate has no meaning for a closed loop: the user who set it is told why, not ignored.
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.starts_with("--rate was ignored: each variant's latency")),
        "{:?}",
        report.notes
    );
    t.finish().await;
}
