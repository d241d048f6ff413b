//! A cache for a store that several servers change: what every request reads (user tokens,
//! apps, tenants, users, admin accounts, fault rules, bindings), each entry tagged with the
//! store's generation.
//!
//! The generation is two PostgreSQL sequences, read together in one query as each request
//! arrives: `generation`, which every change to the rows above but bindings (a patch, a
//! seed, a revoke, a user deleted, a fault rule armed, a reset) advances, and
//! `binding_generation`, which every change to an existing binding (a delete, a status step,
//! a wipe) advances. Each is advanced after the change commits and before it is
//! acknowledged. A request serves an entry only if it was cached under the same value of
//! its sequence. So a change acknowledged by any server before a request arrived has
//! advanced what the request reads, and the request cannot see the entry cached before it:
//! read-your-writes across servers holds (cluster.md §2). Two sequences, so that the sync
//! engine stepping bindings does not empty the token and app caches. Only found values are
//! cached, so a row that appears (a token minted, a binding created) needs no advance.
//! Entries also lapse after `MAX_AGE`, which bounds what a server killed between its commit
//! and its advance could leave stale.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::StoreResult;
use crate::domain::ids::UserKey;
use crate::domain::model::{AdminAccount, App, BindingView, Tenant, User, UserToken};

/// The values of both sequences a request read when it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    pub rows: i64,
    pub bindings: i64,
}

tokio::task_local! {
    /// The generation the current request read when it arrived.
    static GENERATION: Generation;
}

/// Runs `f` as a request that read generation `g` (uncached when `None`).
pub async fn scope<F: Future>(g: Option<Generation>, f: F) -> F::Output {
    match g {
        Some(g) => GENERATION.scope(g, f).await,
        None => f.await,
    }
}

const MAX_AGE: Duration = Duration::from_secs(1);
/// Entries one map keeps before it starts over.
const MAX_ENTRIES: usize = 100_000;

/// Entries under one of the two sequences (`pick`).
pub struct Map<K, V> {
    entries: DashMap<K, (i64, Instant, V)>,
    pick: fn(&Generation) -> i64,
}

impl<K: Hash + Eq, V: Clone> Map<K, V> {
    /// A map of rows that `generation` covers.
    pub fn rows() -> Self {
        Map {
            entries: DashMap::new(),
            pick: |g| g.rows,
        }
    }

    /// A map of bindings, which `binding_generation` covers.
    pub fn bindings() -> Self {
        Map {
            entries: DashMap::new(),
            pick: |g| g.bindings,
        }
    }

    /// Only found values are kept: a row that appears later needs no advance.
    pub async fn get_or_load(
        &self,
        key: K,
        load: impl Future<Output = StoreResult<Option<V>>>,
    ) -> StoreResult<Option<V>> {
        let Ok(g) = GENERATION.try_with(self.pick) else {
            return load.await;
        };
        if let Some(e) = self.entries.get(&key) {
            if e.0 == g && e.1.elapsed() < MAX_AGE {
                return Ok(Some(e.2.clone()));
            }
        }
        let v = load.await?;
        if let Some(v) = &v {
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
            self.entries.insert(key, (g, Instant::now(), v.clone()));
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
    /// What a Feishu GET shows, by folded Exchange address.
    pub bindings: Map<String, Arc<BindingView>>,
}

impl Default for GenCache {
    fn default() -> Self {
        GenCache {
            tokens: Map::rows(),
            apps: Map::rows(),
            tenants: Map::rows(),
            users: Map::rows(),
            users_by_key: Map::rows(),
            admins: Map::rows(),
            bindings: Map::bindings(),
        }
    }
}
