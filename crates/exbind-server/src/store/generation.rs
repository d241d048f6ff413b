//! A cache for a store that several servers change: what every request reads (user tokens,
//! apps, tenants, users, admin accounts), each entry tagged with the store's generation.
//!
//! The generation is a PostgreSQL sequence that every change to those rows (a patch, a seed,
//! a revoke, a user deleted, a reset) advances after it commits and before it is acknowledged. Each request reads it once when it arrives and
//! serves an entry only if it was cached under that same generation. So a change
//! acknowledged by any server before a request arrived has advanced the generation the
//! request reads, and the request cannot see the entry cached before it: read-your-writes
//! across servers holds (cluster.md §2). Bindings are not cached here: the sync engine
//! changes them all the time. Entries also lapse after `MAX_AGE`, which bounds what a server
//! killed between its commit and its advance could leave stale.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::StoreResult;
use crate::domain::ids::UserKey;
use crate::domain::model::{AdminAccount, App, Tenant, User, UserToken};

tokio::task_local! {
    /// The generation the current request read when it arrived.
    static GENERATION: i64;
}

/// Runs `f` as a request that read generation `g` (uncached when `None`).
pub async fn scope<F: Future>(g: Option<i64>, f: F) -> F::Output {
    match g {
        Some(g) => GENERATION.scope(g, f).await,
        None => f.await,
    }
}

const MAX_AGE: Duration = Duration::from_secs(1);
/// Entries one map keeps before it starts over.
const MAX_ENTRIES: usize = 100_000;

pub struct Map<K, V>(DashMap<K, (i64, Instant, V)>);

impl<K: Hash + Eq, V: Clone> Map<K, V> {
    fn new() -> Self {
        Map(DashMap::new())
    }

    /// Only found values are kept: a row that appears later needs no advance.
    pub async fn get_or_load(
        &self,
        key: K,
        load: impl Future<Output = StoreResult<Option<V>>>,
    ) -> StoreResult<Option<V>> {
        let Ok(g) = GENERATION.try_with(|g| *g) else {
            return load.await;
        };
        if let Some(e) = self.0.get(&key) {
            if e.0 == g && e.1.elapsed() < MAX_AGE {
                return Ok(Some(e.2.clone()));
            }
        }
        let v = load.await?;
        if let Some(v) = &v {
            if self.0.len() >= MAX_ENTRIES {
                self.0.clear();
            }
            self.0.insert(key, (g, Instant::now(), v.clone()));
        }
        Ok(v)
    }
}

pub struct GenCache {
    pub tokens: Map<[u8; 32], Arc<UserToken>>,
    pub apps: Map<String, Arc<App>>,
    pub tenants: Map<String, Arc<Tenant>>,
    pub users: Map<(String, String), Arc<User>>,
    pub users_by_key: Map<UserKey, Arc<User>>,
    pub admins: Map<String, Arc<AdminAccount>>,
}

impl Default for GenCache {
    fn default() -> Self {
        GenCache {
            tokens: Map::new(),
            apps: Map::new(),
            tenants: Map::new(),
            users: Map::new(),
            users_by_key: Map::new(),
            admins: Map::new(),
        }
    }
}
