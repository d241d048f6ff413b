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
}

impl App {
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
}

/// A tenant (and, for custom apps, app) access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppToken {
    pub token: String,
    pub app_id: String,
    pub expires_at: i64,
}
