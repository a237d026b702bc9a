//! The registry of every Backend Labs lab, in catalogue order: the `lab` binary runs it,
//! and the workspace tests check every lab through it (each baseline keeps its lab's contract).

use labkit::Lab;

/// Every registered lab, in catalogue order. A new lab adds one line here.
pub fn labs() -> Vec<Box<dyn Lab>> {
    vec![
        Box::new(lab_seek_vs_scan::SeekVsScan),
        Box::new(lab_cache_stampede::CacheStampede),
        Box::new(lab_idempotency_keys::IdempotencyKeys),
        Box::new(lab_keyset_pagination::KeysetPagination),
        Box::new(lab_rest_vs_graphql::RestVsGraphql),
        Box::new(lab_isolation_levels::IsolationLevels),
        Box::new(lab_rate_limiter::RateLimiter),
        Box::new(lab_zero_downtime_migrations::ZeroDowntimeMigrations),
        Box::new(lab_retry_storm::RetryStorm),
        Box::new(lab_load_shedding::LoadShedding),
        Box::new(lab_locking_and_queues::LockingAndQueues),
        Box::new(lab_outbox_saga::OutboxSaga),
        Box::new(lab_replica_lag::ReplicaLag),
        Box::new(lab_full_text_search::FullTextSearch),
        Box::new(lab_write_path::WritePath),
    ]
}
