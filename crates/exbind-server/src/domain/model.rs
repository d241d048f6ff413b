//! The entities of the platform (contract §2) as the store keeps them.

use exbind_api::BindingStatus;
use serde::{Deserialize, Serialize};

use super::sync::Scenario;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub tenant_key: String,
    pub name: String,
    pub unit: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Dismissed,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Dismissed => "dismissed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(UserStatus::Active),
            "dismissed" => Some(UserStatus::Dismissed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub tenant_key: String,
    pub user_id: String,
    pub name: String,
    pub email: Option<String>,
    pub status: UserStatus,
    pub super_admin: bool,
    pub profile: UserProfile,
}

/// What user info shows of a user beyond the basics (oauth.md §1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserProfile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub en_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub employee_no: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    Custom,
    Store,
}

impl AppKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::Custom => "custom",
            AppKind::Store => "store",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "custom" => Some(AppKind::Custom),
            "store" => Some(AppKind::Store),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub app_id: String,
    pub app_secret: String,
    pub kind: AppKind,
    pub developer: String,
    pub bot: bool,
    pub unit: String,
    pub scopes: Vec<String>,
    pub tenants: Vec<String>,
    pub login: LoginSettings,
    /// Store apps: where `app_ticket` events are pushed.
    pub event_url: Option<String>,
    /// The `token` field of pushed events.
    pub verification_token: Option<String>,
    /// Encrypts and signs pushed events.
    pub encrypt_key: Option<String>,
}

/// The app settings the login flows use (oauth.md §1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoginSettings {
    /// Shown on the consent page; the app id when not set.
    pub name: Option<String>,
    /// `[]`: loopback URIs only.
    pub redirect_uris: Vec<String>,
    pub refresh_tokens: bool,
    /// `None`: every user; else `{tenant_key}/{user_id}` or a bare `user_id`.
    pub available_to: Option<Vec<String>>,
    pub auto_consent: bool,
    pub enabled: bool,
}

impl Default for LoginSettings {
    fn default() -> Self {
        LoginSettings {
            name: None,
            redirect_uris: Vec::new(),
            refresh_tokens: true,
            available_to: None,
            auto_consent: false,
            enabled: true,
        }
    }
}

impl App {
    pub fn name(&self) -> &str {
        self.login.name.as_deref().unwrap_or(&self.app_id)
    }
    /// Whether the app's `available_to` lets this user in.
    pub fn available_to(&self, tenant_key: &str, user_id: &str) -> bool {
        self.login.available_to.as_ref().is_none_or(|list| {
            list.iter().any(|e| match e.split_once('/') {
                Some((t, u)) => t == tenant_key && u == user_id,
                None => e == user_id,
            })
        })
    }
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
    pub fn installed_in(&self, tenant_key: &str) -> bool {
        self.tenants.iter().any(|t| t == tenant_key)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    Ok,
    Failed,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ok => "ok",
            AdminState::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(AdminState::Ok),
            "failed" => Some(AdminState::Failed),
            _ => None,
        }
    }
}

/// An Exchange admin account registered in a tenant's admin console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminAccount {
    pub account: String,
    pub tenant_key: String,
    pub state: AdminState,
}

/// How the sync of an Exchange account's future bindings behaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExchangeScenario {
    pub account: String,
    pub tenant_key: String,
    pub scenario: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One status a binding went through and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub status: BindingStatus,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// A binding as stored: both accounts in the spelling of the create that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRecord {
    pub seq: i64,
    pub admin_account: String,
    pub exchange_account: String,
    pub tenant_key: String,
    pub user_id: String,
    pub status: BindingStatus,
    pub reason: Option<String>,
    pub scenario: Scenario,
    /// When the sync takes its next step; `None` when it is over or stalled.
    pub next_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl BindingRecord {
    pub fn id(&self) -> String {
        exbind_api::id::encode(&self.admin_account, &self.exchange_account)
    }
}

/// A sync step to record: the binding (by `seq`) moves from `from` to `status`, taking
/// `steps`. Applied only if the binding is still at `from`.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub seq: i64,
    /// The binding's Exchange account, folded: its key.
    pub exchange_folded: String,
    pub from: BindingStatus,
    pub status: BindingStatus,
    pub reason: Option<String>,
    pub next_at: Option<i64>,
    pub steps: Vec<Step>,
}

/// What a Feishu GET shows of a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingView {
    pub admin_account: String,
    pub exchange_account: String,
    pub tenant_key: String,
    pub user_id: String,
    pub status: BindingStatus,
}

impl From<BindingRecord> for BindingView {
    fn from(b: BindingRecord) -> Self {
        BindingView {
            admin_account: b.admin_account,
            exchange_account: b.exchange_account,
            tenant_key: b.tenant_key,
            user_id: b.user_id,
            status: b.status,
        }
    }
}

/// A binding to be made.
#[derive(Debug, Clone)]
pub struct NewBinding {
    pub admin_account: String,
    pub exchange_account: String,
    pub tenant_key: String,
    pub user_id: String,
    pub scenario: Scenario,
    pub next_at: Option<i64>,
    pub now: i64,
}

/// What a create did.
#[derive(Debug, Clone)]
pub enum CreateOutcome {
    Created(BindingRecord),
    /// The same (admin, exchange, user) was already bound: answered as is.
    Existing(BindingRecord),
    /// The Exchange account is bound elsewhere (another user or admin account, any tenant).
    ExchangeTaken,
    /// The user already has another Exchange account.
    UserTaken,
}

/// A user access token as the store keeps it (only its hash identifies it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserToken {
    pub app_id: String,
    pub tenant_key: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub expires_at: i64,
    pub revoked: bool,
    /// The OAuth grant it was issued from; revoking one token of a grant revokes it all.
    pub grant_id: Option<String>,
}

/// What a user consented to, for one app (oauth.md §2): every code, access token and
/// refresh token issued from one authorization shares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub app_id: String,
    pub tenant_key: String,
    pub user_id: String,
    pub scopes: Vec<String>,
}

/// A PKCE challenge (RFC 7636).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// `S256` or `plain`.
    pub method: String,
    pub value: String,
}

/// An authorization code as the store keeps it (only its hash identifies it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthCode {
    pub grant: Grant,
    pub redirect_uri: String,
    pub challenge: Option<Challenge>,
    pub expires_at: i64,
    pub used: bool,
}

/// A refresh token as the store keeps it (only its hash identifies it). It carries the
/// grant's full scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub grant: Grant,
    pub expires_at: i64,
    pub used: bool,
    pub revoked: bool,
}

/// What a token exchange spends: each can be spent once.
#[derive(Debug, Clone)]
pub enum Spent {
    Code(String),
    RefreshToken(String),
}

/// A tenant (and, for custom apps, app) access token; a store app's `a-…` app token has no
/// tenant, its tenant tokens have one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppToken {
    pub token: String,
    pub app_id: String,
    pub tenant_key: Option<String>,
    pub expires_at: i64,
}
