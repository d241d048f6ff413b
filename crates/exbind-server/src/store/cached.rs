//! A read-through cache in front of a store, for what every request reads: user tokens, apps,
//! tenants, users and admin accounts. Writes go through to the store and drop what they
//! change from the cache, so a read after an acknowledged write sees it. Valid while this
//! process is the store's only writer; each map is bounded.

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use exbind_api::BindingStatus;

use super::index::{BindingIndex, Lookup};
use super::*;

/// Entries one map keeps before it starts over.
const MAX_ENTRIES: usize = 100_000;

/// A map with a generation count: a value loaded before a write dropped its key is not
/// cached, so a slow read cannot put back what a write just changed. Each thread keeps a
/// front of the entries it read, valid while the generation is unchanged: every request reads
/// the same few hot keys, and reading them from the shared map would have the threads
/// contend on one shard lock.
struct Map<V> {
    id: usize,
    entries: DashMap<String, V>,
    generation: AtomicU64,
}

/// Entries one thread's front keeps per map before it starts over.
const MAX_FRONT: usize = 4096;

/// Hashed with foldhash (randomly seeded, like std's SipHash, and several times faster on
/// these short keys): each request makes five lookups here.
type Front = foldhash::HashMap<usize, foldhash::HashMap<String, (u64, Box<dyn Any>)>>;

thread_local! {
    static FRONT: RefCell<Front> = RefCell::new(Front::default());
}

impl<V: Clone + 'static> Map<V> {
    fn new() -> Self {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
        Map {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            entries: DashMap::new(),
            generation: AtomicU64::new(0),
        }
    }

    fn front_get(&self, key: &str, generation: u64) -> Option<V> {
        FRONT.with_borrow(|f| {
            let (g, v) = f.get(&self.id)?.get(key)?;
            (*g == generation)
                .then(|| v.downcast_ref::<V>().cloned())
                .flatten()
        })
    }

    fn front_put(&self, key: &str, generation: u64, v: &V) {
        FRONT.with_borrow_mut(|f| {
            let mine = f.entry(self.id).or_default();
            if mine.len() >= MAX_FRONT {
                mine.clear();
            }
            mine.insert(key.to_string(), (generation, Box::new(v.clone())));
        });
    }

    /// The cached value, without loading; a hit costs no allocation (the key is borrowed).
    fn peek(&self, key: &str) -> Option<V> {
        let generation = self.generation.load(Ordering::Acquire);
        self.peek_at(key, generation)
    }

    fn peek_at(&self, key: &str, generation: u64) -> Option<V> {
        if let Some(v) = self.front_get(key, generation) {
            return Some(v);
        }
        let v = self.entries.get(key).map(|v| v.clone())?;
        self.front_put(key, generation, &v);
        Some(v)
    }

    /// The loader is only called on a miss.
    async fn get_or_load<F, Fut>(&self, key: &str, load: F) -> StoreResult<Option<V>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = StoreResult<Option<V>>>,
    {
        let before = self.generation.load(Ordering::Acquire);
        if let Some(v) = self.peek_at(key, before) {
            return Ok(Some(v));
        }
        let v = load().await?;
        if let Some(v) = &v {
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
            self.entries.insert(key.to_string(), v.clone());
            // A write finished while we read: what we read may be older than it.
            if self.generation.load(Ordering::Acquire) != before {
                self.entries.remove(key);
            }
        }
        Ok(v)
    }

    /// Called after a write to `key` is durable.
    fn forget(&self, key: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.remove(key);
    }

    fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }
}

/// The users cache's key: tenant and user id, the tenant length-prefixed so no two pairs
/// share a key.
fn user_key(tenant_key: &str, user_id: &str) -> String {
    let mut len = itoa::Buffer::new();
    let len = len.format(tenant_key.len());
    let mut key = String::with_capacity(len.len() + 1 + tenant_key.len() + user_id.len());
    key.push_str(len);
    key.push(':');
    key.push_str(tenant_key);
    key.push_str(user_id);
    key
}

/// The store and its caches; shared with the tasks that finish writes.
pub struct Caches {
    inner: Arc<dyn Store>,
    bindings: Arc<BindingIndex>,
    /// Keyed by the token itself, so a hit costs no hashing.
    tokens: Map<Arc<UserToken>>,
    apps: Map<Arc<App>>,
    tenants: Map<Arc<Tenant>>,
    /// Keyed by `user_key`.
    users: Map<Arc<User>>,
    admins: Map<Arc<AdminAccount>>,
}

pub struct CachedStore(Arc<Caches>);

impl std::ops::Deref for CachedStore {
    type Target = Caches;
    fn deref(&self) -> &Caches {
        &self.0
    }
}

impl CachedStore {
    /// Wraps `inner`; the binding index answers `Unknown` until `fill_index` has run.
    pub fn new(inner: Arc<dyn Store>) -> CachedStore {
        CachedStore(Arc::new(Caches {
            bindings: Arc::default(),
            inner,
            tokens: Map::new(),
            apps: Map::new(),
            tenants: Map::new(),
            users: Map::new(),
            admins: Map::new(),
        }))
    }

    /// Fills the binding index from the store, in the background.
    pub fn fill_index(&self) {
        self.refill_bindings();
    }

    /// Runs a write and the cache upkeep after it to the end, in a task of its own: a
    /// client that goes away mid-request must not leave the caches behind the store.
    async fn finish<T, Fut>(&self, f: impl FnOnce(Arc<Caches>) -> Fut) -> T
    where
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        match tokio::spawn(f(self.0.clone())).await {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

impl Caches {
    /// Empties the binding index and fills it again from the store, in the background.
    fn refill_bindings(&self) {
        let (index, store) = (self.bindings.clone(), self.inner.clone());
        let epoch = index.invalidate();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut after = 0;
            loop {
                if index.epoch() != epoch {
                    return;
                }
                let batch = match store.scan_bindings(after, 2000).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot fill the binding index; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let Some(last) = batch.last() else { break };
                after = last.seq;
                if !index.load(epoch, &batch) {
                    return;
                }
                tokio::task::yield_now().await;
            }
            index.finish(epoch);
            tracing::info!(
                bindings = index.len(),
                ms = started.elapsed().as_millis() as u64,
                "binding index filled"
            );
        });
    }

    fn clear(&self) {
        self.tokens.clear();
        self.apps.clear();
        self.tenants.clear();
        self.users.clear();
        self.admins.clear();
    }

    // What the request path reads, from memory alone: `None` when the caches cannot say
    // (then the `Store` method answers). A hit makes no boxed future, as a trait call does.

    pub fn peek_user_token(&self, token: &str) -> Option<Arc<UserToken>> {
        self.tokens.peek(token)
    }
    pub fn peek_app(&self, app_id: &str) -> Option<Arc<App>> {
        self.apps.peek(app_id)
    }
    pub fn peek_tenant(&self, tenant_key: &str) -> Option<Arc<Tenant>> {
        self.tenants.peek(tenant_key)
    }
    pub fn peek_user(&self, tenant_key: &str, user_id: &str) -> Option<Arc<User>> {
        self.users.peek(&user_key(tenant_key, user_id))
    }
    pub fn peek_admin_account(&self, account_folded: &str) -> Option<Arc<AdminAccount>> {
        self.admins.peek(account_folded)
    }
    /// `Some(None)`: the index knows there is no such binding.
    pub fn peek_binding_view(&self, exchange_folded: &str) -> Option<Option<BindingView>> {
        match self.bindings.lookup(exchange_folded) {
            Lookup::Hit(v) => Some(Some(v)),
            Lookup::Absent => Some(None),
            Lookup::Unknown => None,
        }
    }
}

#[async_trait]
impl Store for CachedStore {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    fn warm(&self) -> bool {
        self.bindings.is_complete()
    }
    fn caches(&self) -> Option<&Caches> {
        Some(&self.0)
    }
    async fn meta_init(&self, key: &str, value: Vec<u8>) -> StoreResult<Vec<u8>> {
        self.inner.meta_init(key, value).await
    }

    async fn tenant(&self, tenant_key: &str) -> StoreResult<Option<Arc<Tenant>>> {
        self.tenants
            .get_or_load(tenant_key, || self.inner.tenant(tenant_key))
            .await
    }
    async fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.inner.tenants().await
    }
    async fn users(&self, tenant_key: &str, after: &str, limit: usize) -> StoreResult<Vec<User>> {
        self.inner.users(tenant_key, after, limit).await
    }
    async fn apps(&self) -> StoreResult<Vec<App>> {
        self.inner.apps().await
    }
    async fn user_count(&self, tenant_key: &str) -> StoreResult<u64> {
        self.inner.user_count(tenant_key).await
    }
    async fn user(&self, tenant_key: &str, user_id: &str) -> StoreResult<Option<Arc<User>>> {
        self.users
            .get_or_load(&user_key(tenant_key, user_id), || {
                self.inner.user(tenant_key, user_id)
            })
            .await
    }
    async fn user_by_key(&self, key: &UserKey) -> StoreResult<Option<Arc<User>>> {
        self.inner.user_by_key(key).await
    }
    async fn app(&self, app_id: &str) -> StoreResult<Option<Arc<App>>> {
        self.apps
            .get_or_load(app_id, || self.inner.app(app_id))
            .await
    }
    async fn admin_account(&self, account_folded: &str) -> StoreResult<Option<Arc<AdminAccount>>> {
        self.admins
            .get_or_load(account_folded, || self.inner.admin_account(account_folded))
            .await
    }
    async fn admin_accounts(&self, tenant_key: &str) -> StoreResult<Vec<AdminAccount>> {
        self.inner.admin_accounts(tenant_key).await
    }
    async fn scenarios(&self, tenant_key: &str) -> StoreResult<Vec<ExchangeScenario>> {
        self.inner.scenarios(tenant_key).await
    }

    async fn apply_seed(&self, plan: SeedPlan) -> StoreResult<SeedCounts> {
        self.finish(move |c| async move {
            let r = c.inner.apply_seed(plan).await;
            c.clear();
            r
        })
        .await
    }
    async fn patch_user(
        &self,
        tenant_key: &str,
        user_id: &str,
        patch: UserPatch,
    ) -> StoreResult<Option<User>> {
        let (t, u) = (tenant_key.to_string(), user_id.to_string());
        self.finish(move |c| async move {
            let r = c.inner.patch_user(&t, &u, patch).await;
            c.users.forget(&user_key(&t, &u));
            r
        })
        .await
    }
    async fn patch_app(&self, app_id: &str, patch: AppPatch) -> StoreResult<Option<App>> {
        let id = app_id.to_string();
        self.finish(move |c| async move {
            let r = c.inner.patch_app(&id, patch).await;
            c.apps.forget(&id);
            r
        })
        .await
    }
    async fn set_admin_state(
        &self,
        account_folded: &str,
        state: AdminState,
        now: i64,
    ) -> StoreResult<Option<AdminAccount>> {
        let key = account_folded.to_string();
        self.finish(move |c| async move {
            let r = c.inner.set_admin_state(&key, state, now).await;
            c.admins.forget(&key);
            if state == AdminState::Failed {
                // It may have moved any number of bindings to err.
                c.refill_bindings();
            }
            r
        })
        .await
    }

    async fn issue_app_token(
        &self,
        candidate: AppToken,
        now: i64,
        min_left_ms: i64,
    ) -> StoreResult<AppToken> {
        self.inner
            .issue_app_token(candidate, now, min_left_ms)
            .await
    }
    async fn app_token(&self, token: &str) -> StoreResult<Option<AppToken>> {
        self.inner.app_token(token).await
    }
    async fn add_app_ticket(&self, app_id: &str, ticket: &str, now: i64) -> StoreResult<()> {
        self.inner.add_app_ticket(app_id, ticket, now).await
    }
    async fn app_ticket_valid(&self, app_id: &str, ticket: &str) -> StoreResult<bool> {
        self.inner.app_ticket_valid(app_id, ticket).await
    }
    async fn insert_user_token(&self, token: &str, record: UserToken) -> StoreResult<()> {
        self.inner.insert_user_token(token, record).await
    }
    async fn user_token(&self, token: &str) -> StoreResult<Option<Arc<UserToken>>> {
        self.tokens
            .get_or_load(token, || self.inner.user_token(token))
            .await
    }
    async fn revoke_user_token(&self, token: &str) -> StoreResult<bool> {
        let token = token.to_string();
        self.finish(move |c| async move {
            let r = c.inner.revoke_user_token(&token).await;
            c.tokens.forget(&token);
            r
        })
        .await
    }

    async fn insert_oauth_code(&self, code: &str, record: OAuthCode, now: i64) -> StoreResult<()> {
        self.inner.insert_oauth_code(code, record, now).await
    }
    async fn oauth_code(&self, code: &str) -> StoreResult<Option<OAuthCode>> {
        self.inner.oauth_code(code).await
    }
    async fn refresh_token(&self, token: &str) -> StoreResult<Option<RefreshToken>> {
        self.inner.refresh_token(token).await
    }
    async fn redeem(&self, spent: Spent, issued: Issued) -> StoreResult<bool> {
        self.inner.redeem(spent, issued).await
    }
    // The token cache is keyed by token, and a grant's or user's tokens are known only by
    // hash: these rare writes drop the whole cache.
    async fn revoke_grant(&self, grant_id: &str) -> StoreResult<()> {
        let g = grant_id.to_string();
        self.finish(move |c| async move {
            let r = c.inner.revoke_grant(&g).await;
            c.tokens.clear();
            r
        })
        .await
    }
    async fn delete_user(&self, tenant_key: &str, user_id: &str) -> StoreResult<bool> {
        let (t, u) = (tenant_key.to_string(), user_id.to_string());
        self.finish(move |c| async move {
            let r = c.inner.delete_user(&t, &u).await;
            c.users.forget(&user_key(&t, &u));
            c.tokens.clear();
            r
        })
        .await
    }

    async fn revoke_console_session(
        &self,
        id: [u8; 16],
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        self.inner.revoke_console_session(id, expires_at, now).await
    }
    async fn console_session_revoked(&self, id: [u8; 16]) -> StoreResult<bool> {
        self.inner.console_session_revoked(id).await
    }

    async fn binding(&self, exchange_folded: &str) -> StoreResult<Option<BindingRecord>> {
        self.inner.binding(exchange_folded).await
    }
    async fn binding_view(&self, exchange_folded: &str) -> StoreResult<Option<BindingView>> {
        match self.peek_binding_view(exchange_folded) {
            Some(v) => Ok(v),
            None => self.inner.binding_view(exchange_folded).await,
        }
    }
    async fn scan_bindings(&self, after: i64, limit: usize) -> StoreResult<Vec<BindingRecord>> {
        self.inner.scan_bindings(after, limit).await
    }
    async fn create_binding(&self, new: NewBinding) -> StoreResult<CreateOutcome> {
        self.finish(move |c| async move {
            let r = c.inner.create_binding(new).await;
            if let Ok(CreateOutcome::Created(b)) = &r {
                c.bindings.put(&BindingView::from(b.clone()));
            }
            r
        })
        .await
    }
    async fn delete_binding(
        &self,
        tenant_key: &str,
        admin_folded: &str,
        exchange_folded: &str,
    ) -> StoreResult<Option<BindingRecord>> {
        let (t, a, e) = (
            tenant_key.to_string(),
            admin_folded.to_string(),
            exchange_folded.to_string(),
        );
        self.finish(move |c| async move {
            let r = c.inner.delete_binding(&t, &a, &e).await;
            if let Ok(Some(_)) = &r {
                c.bindings.remove(&e);
            }
            r
        })
        .await
    }
    async fn list_bindings(
        &self,
        tenant_key: &str,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<BindingRecord>> {
        self.inner.list_bindings(tenant_key, after, limit).await
    }
    async fn binding_counts(&self) -> StoreResult<Vec<(BindingStatus, u64)>> {
        self.inner.binding_counts().await
    }
    async fn with_histories(&self, seqs: &[i64]) -> StoreResult<Vec<(BindingRecord, Vec<Step>)>> {
        self.inner.with_histories(seqs).await
    }
    async fn due_bindings(&self, now: i64, limit: usize) -> StoreResult<Vec<BindingRecord>> {
        self.inner.due_bindings(now, limit).await
    }
    async fn next_deadline(&self) -> StoreResult<Option<i64>> {
        self.inner.next_deadline().await
    }
    async fn change_status(&self, changes: Vec<StatusChange>, now: i64) -> StoreResult<Vec<bool>> {
        self.finish(move |c| async move {
            let moved: Vec<(String, BindingStatus)> = changes
                .iter()
                .map(|ch| (ch.exchange_folded.clone(), ch.status))
                .collect();
            let applied = c.inner.change_status(changes, now).await?;
            for ((key, status), ok) in moved.iter().zip(&applied) {
                if *ok {
                    c.bindings.set_status(key, *status);
                }
            }
            Ok(applied)
        })
        .await
    }
    async fn scenario(&self, account_folded: &str) -> StoreResult<Option<ExchangeScenario>> {
        self.inner.scenario(account_folded).await
    }
    async fn put_scenario(&self, scenario: ExchangeScenario) -> StoreResult<()> {
        self.inner.put_scenario(scenario).await
    }
    async fn delete_scenario(&self, tenant_key: &str, account_folded: &str) -> StoreResult<bool> {
        self.inner.delete_scenario(tenant_key, account_folded).await
    }
    async fn delete_tenant_bindings(&self, tenant_key: &str) -> StoreResult<u64> {
        let t = tenant_key.to_string();
        self.finish(move |c| async move {
            let r = c.inner.delete_tenant_bindings(&t).await;
            c.refill_bindings();
            r
        })
        .await
    }
    async fn reset(&self) -> StoreResult<()> {
        self.finish(move |c| async move {
            let r = c.inner.reset().await;
            c.clear();
            c.refill_bindings();
            r
        })
        .await
    }
}
