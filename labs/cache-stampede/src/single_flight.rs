//! Single-flight, in process: concurrent misses for one key in *this instance* share one load.
//!
//! The first reader to miss becomes the leader and installs a `OnceCell` for the key; the
//! others find the cell and await it. With N app instances this still lets N loads
//! through per expiry — the cells live in each instance's memory, by design. The Redis
//! lock (`redis_lock.rs`) is the cross-instance version.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use crate::entry::{self, CacheError, Entry, Read, Served};

/// The in-flight loads of one app instance.
pub struct SingleFlight<T> {
    // A std Mutex, not tokio's: it is held only to look up or insert a cell, never across
    // an await.
    inflight: Mutex<HashMap<String, Arc<OnceCell<T>>>>,
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        Self {
            inflight: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> SingleFlight<T>
where
    T: Clone + Serialize + DeserializeOwned + Send + Sync,
{
    /// Cache-aside where concurrent misses in this instance share one load.
    pub async fn read<F, Fut>(
        &self,
        redis: &mut ConnectionManager,
        key: &str,
        ttl: Duration,
        load: F,
    ) -> Result<Read<T>, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        if let Some(hit) = entry::get::<T>(redis, key).await? {
            return Ok(Read::new(hit.value, Served::Hit));
        }
        let cell = self
            .inflight
            .lock()
            .expect("single-flight map")
            .entry(key.to_string())
            .or_default()
            .clone();
        let mut led = false;
        let loaded = AtomicBool::new(false);
        let loaded_flag = &loaded;
        let mut conn = redis.clone();
        let result = cell
            .get_or_try_init(|| {
                led = true;
                async move {
                    // Double-check: a flight that finished between our GET and now has
                    // already filled the cache (and left the map). Loading again would be
                    // the duplicate we exist to prevent.
                    if let Some(hit) = entry::get::<T>(&mut conn, key).await? {
                        return Ok(hit.value);
                    }
                    let t0 = Instant::now();
                    loaded_flag.store(true, Ordering::Relaxed);
                    let value = load().await?;
                    let stored = Entry::new(value, t0.elapsed(), ttl);
                    entry::set(&mut conn, key, &stored, Some(ttl)).await?;
                    Ok::<T, CacheError>(stored.value)
                }
            })
            .await
            .cloned();
        if led {
            // The leader retires the cell (success or failure), so the next expiry starts a
            // new flight. Readers that still hold the old cell get its value at once.
            let mut map = self.inflight.lock().expect("single-flight map");
            if map.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                map.remove(key);
            }
        }
        let value = result?;
        let served = match (led, loaded.load(Ordering::Relaxed)) {
            (true, true) => Served::Loaded,
            (true, false) => Served::Hit, // the double-check found it
            (false, _) => Served::Shared,
        };
        Ok(Read::new(value, served))
    }
}
