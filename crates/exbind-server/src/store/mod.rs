//! Storage: the `Store` trait the rest of the server sees, and its implementations. SQL lives
//! only in this module. Every write is one transaction, acknowledged only once durable.

pub mod cached;
#[cfg(test)]
pub(crate) mod conformance;
pub mod generation;
mod index;
pub mod postgres;
pub mod redis;
mod rules;
mod schema;
pub mod shared;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use exbind_api::BindingStatus;

use crate::domain::ids::UserKey;
use crate::domain::model::*;

/// A storage failure; answered as 190003 and logged with its cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(format!("sqlite: {e}"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What a store keeps of a user token: its SHA-256, so the store never holds a usable token.
pub fn token_hash(token: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).into()
}

/// A user with the key its open_id and union_id are derived from.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub user: User,
    pub key: UserKey,
}

/// A validated seed, ready to upsert in one transaction.
#[derive(Debug, Clone, Default)]
pub struct SeedPlan {
    pub tenants: Vec<Tenant>,
    pub users: Vec<UserRow>,
    pub admins: Vec<AdminAccount>,
    pub scenarios: Vec<ExchangeScenario>,
    pub apps: Vec<App>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SeedCounts {
    pub added: u64,
    pub updated: u64,
}

#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub status: Option<UserStatus>,
    pub super_admin: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct AppPatch {
    pub bot: Option<bool>,
    pub scopes: Option<Vec<String>>,
    pub tenants: Option<Vec<String>>,
    pub unit: Option<String>,
    /// The login settings, replaced whole (the caller merges what a PATCH leaves out).
    pub login: Option<LoginSettings>,
    /// `Some(None)` clears the setting.
    pub event_url: Option<Option<String>>,
    pub verification_token: Option<Option<String>>,
    pub encrypt_key: Option<Option<String>>,
}

/// Tokens a code or refresh-token exchange issues: an access token and maybe a refresh token.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_token: String,
    pub access: UserToken,
    pub refresh: Option<(String, RefreshToken)>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether the store answers at all (readiness).
    async fn ping(&self) -> StoreResult<()>;
    /// The shared store's generation (see `generation`), read once as each request arrives;
    /// `None` for a store that only this server changes.
    async fn generation(&self) -> StoreResult<Option<generation::Generation>> {
        Ok(None)
    }
    /// Whether in-memory indexes are filled (before that, reads are slower, not wrong).
    fn warm(&self) -> bool {
        true
    }
    /// The in-memory caches in front of the store, read first on the request path.
    fn caches(&self) -> Option<&cached::Caches> {
        None
    }

    /// Sets `key` unless it is already set; returns the value now stored.
    async fn meta_init(&self, key: &str, value: Vec<u8>) -> StoreResult<Vec<u8>>;

    async fn tenant(&self, tenant_key: &str) -> StoreResult<Option<Arc<Tenant>>>;
    async fn tenants(&self) -> StoreResult<Vec<Tenant>>;
    async fn user_count(&self, tenant_key: &str) -> StoreResult<u64>;
    /// A tenant's users by user id, after `after`, at most `limit`.
    async fn users(&self, tenant_key: &str, after: &str, limit: usize) -> StoreResult<Vec<User>>;
    /// Every app, by app id.
    async fn apps(&self) -> StoreResult<Vec<App>>;
    async fn user(&self, tenant_key: &str, user_id: &str) -> StoreResult<Option<Arc<User>>>;
    async fn user_by_key(&self, key: &UserKey) -> StoreResult<Option<Arc<User>>>;
    async fn app(&self, app_id: &str) -> StoreResult<Option<Arc<App>>>;
    /// An admin account by its folded address.
    async fn admin_account(&self, account_folded: &str) -> StoreResult<Option<Arc<AdminAccount>>>;
    async fn admin_accounts(&self, tenant_key: &str) -> StoreResult<Vec<AdminAccount>>;
    async fn scenarios(&self, tenant_key: &str) -> StoreResult<Vec<ExchangeScenario>>;

    async fn apply_seed(&self, plan: SeedPlan) -> StoreResult<SeedCounts>;
    async fn patch_user(
        &self,
        tenant_key: &str,
        user_id: &str,
        patch: UserPatch,
    ) -> StoreResult<Option<User>>;
    async fn patch_app(&self, app_id: &str, patch: AppPatch) -> StoreResult<Option<App>>;
    /// Sets an admin account's state; going `failed` moves its bindings that are still
    /// syncing to `err`.
    async fn set_admin_state(
        &self,
        account_folded: &str,
        state: AdminState,
        now: i64,
    ) -> StoreResult<Option<AdminAccount>>;

    /// The current token of the candidate's holder (its app and tenant) if it has at least
    /// `min_left_ms` to live, else `candidate`, which becomes current.
    async fn issue_app_token(
        &self,
        candidate: AppToken,
        now: i64,
        min_left_ms: i64,
    ) -> StoreResult<AppToken>;
    /// An issued app or tenant token, expired or not.
    async fn app_token(&self, token: &str) -> StoreResult<Option<AppToken>>;
    /// Records a store app's newest `app_ticket`; only it and the one before stay valid.
    async fn add_app_ticket(&self, app_id: &str, ticket: &str, now: i64) -> StoreResult<()>;
    /// Whether `ticket` is one of the app's latest two.
    async fn app_ticket_valid(&self, app_id: &str, ticket: &str) -> StoreResult<bool>;
    /// Keeps a user token; stores keep only its hash (`token_hash`).
    async fn insert_user_token(&self, token: &str, record: UserToken) -> StoreResult<()>;
    async fn user_token(&self, token: &str) -> StoreResult<Option<Arc<UserToken>>>;
    /// Returns whether such a token existed.
    async fn revoke_user_token(&self, token: &str) -> StoreResult<bool>;

    /// Keeps an authorization code (stores keep only its hash), and forgets the codes and
    /// refresh tokens that expired a day before `now`.
    async fn insert_oauth_code(&self, code: &str, record: OAuthCode, now: i64) -> StoreResult<()>;
    async fn oauth_code(&self, code: &str) -> StoreResult<Option<OAuthCode>>;
    async fn refresh_token(&self, token: &str) -> StoreResult<Option<RefreshToken>>;
    /// In one transaction: marks `spent` used and keeps `issued` — unless `spent` was used
    /// already (or is gone or revoked), then does nothing and returns false.
    async fn redeem(&self, spent: Spent, issued: Issued) -> StoreResult<bool>;
    /// Revokes every access and refresh token of a grant.
    async fn revoke_grant(&self, grant_id: &str) -> StoreResult<()>;
    /// Removes a user and revokes its tokens; bindings made for it stay. Returns whether it
    /// existed.
    async fn delete_user(&self, tenant_key: &str, user_id: &str) -> StoreResult<bool>;

    /// The binding of an Exchange account (by folded address), in any tenant.
    async fn binding(&self, exchange_folded: &str) -> StoreResult<Option<BindingRecord>>;
    /// The same, as a Feishu GET shows it (what the hot path reads).
    async fn binding_view(&self, exchange_folded: &str) -> StoreResult<Option<BindingView>> {
        Ok(self.binding(exchange_folded).await?.map(BindingView::from))
    }
    /// All bindings in sequence order, after sequence number `after`.
    async fn scan_bindings(&self, after: i64, limit: usize) -> StoreResult<Vec<BindingRecord>>;
    async fn create_binding(&self, new: NewBinding) -> StoreResult<CreateOutcome>;
    /// Removes the binding of (admin, exchange) in the tenant, if there is one.
    async fn delete_binding(
        &self,
        tenant_key: &str,
        admin_folded: &str,
        exchange_folded: &str,
    ) -> StoreResult<Option<BindingRecord>>;
    /// A tenant's bindings in creation order, after sequence number `after`.
    async fn list_bindings(
        &self,
        tenant_key: &str,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<BindingRecord>>;
    async fn binding_counts(&self) -> StoreResult<Vec<(BindingStatus, u64)>>;
    /// Each binding still there, in the order of `seqs`, with its recorded steps, read as of
    /// one moment: a step's new status and its history entry are never seen apart.
    async fn with_histories(&self, seqs: &[i64]) -> StoreResult<Vec<(BindingRecord, Vec<Step>)>>;

    /// Bindings whose next sync step is due by `now`, earliest first.
    async fn due_bindings(&self, now: i64, limit: usize) -> StoreResult<Vec<BindingRecord>>;
    /// The earliest pending sync deadline.
    async fn next_deadline(&self) -> StoreResult<Option<i64>>;
    /// Applies each change whose binding is still at its `from` status, in one
    /// transaction; says which were applied.
    async fn change_status(&self, changes: Vec<StatusChange>, now: i64) -> StoreResult<Vec<bool>>;

    /// The sync scenario set for an Exchange account (by folded address).
    async fn scenario(&self, account_folded: &str) -> StoreResult<Option<ExchangeScenario>>;
    async fn put_scenario(&self, scenario: ExchangeScenario) -> StoreResult<()>;
    async fn delete_scenario(&self, tenant_key: &str, account_folded: &str) -> StoreResult<bool>;

    /// Records a signed-out console session (until `expires_at`, when its cookie would lapse
    /// anyway), forgetting those already lapsed at `now`. Kept through `reset`: a signed-out
    /// cookie must not come back.
    async fn revoke_console_session(
        &self,
        id: [u8; 16],
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()>;
    async fn console_session_revoked(&self, id: [u8; 16]) -> StoreResult<bool>;

    /// Removes a tenant's bindings; returns how many.
    async fn delete_tenant_bindings(&self, tenant_key: &str) -> StoreResult<u64>;
    /// Removes everything but the server's own secrets (admin token, id secret).
    async fn reset(&self) -> StoreResult<()>;
}
