//! What the harness seeds, and the words the fuzzer picks from: names it could not guess.

use std::sync::OnceLock;

use arbitrary::Arbitrary;

use crate::domain::scopes;

/// The harness's seed: two tenants, custom and store apps with and without scopes and bot,
/// super admins, a plain user, a dismissed one, a failed admin account, sync scenarios.
pub const SEED: &str = r#"
[[tenants]]
tenant_key = "t_acme"
name = "Acme"
[[tenants.users]]
user_id = "admin"
email = "admin@acme.example"
super_admin = true
[[tenants.users]]
user_id = "alice"
email = "alice@acme.example"
[[tenants.users]]
user_id = "gone"
status = "dismissed"
super_admin = true
[[tenants.exchange_admins]]
account = "exadmin@acme.example"
[[tenants.exchange_admins]]
account = "broken@acme.example"
state = "failed"
[[tenants.exchange_accounts]]
account = "stall@acme.example"
scenario = "stall"
[[tenants.exchange_accounts]]
account = "fail@acme.example"
scenario = "fail"
stage = "done"
reason = "mailbox full"
[[tenants.exchange_accounts]]
account = "fast@acme.example"
scenario = "instant"

[[tenants]]
tenant_key = "t_beta"
unit = "us"
[[tenants.users]]
user_id = "admin"
super_admin = true
[[tenants.exchange_admins]]
account = "exadmin@beta.example"

[[apps]]
app_id = "cli_acme"
app_secret = "acme-secret"
tenants = ["t_acme"]
scopes = ["calendar:calendar", "calendar:calendar:readonly", "calendar:exchange.bindings:create",
          "calendar:exchange.bindings:read", "calendar:exchange.bindings:delete",
          "contact:user.email:readonly", "contact:user.employee_id:readonly"]

[[apps]]
app_id = "cli_read"
app_secret = "read-secret"
tenants = ["t_acme"]
scopes = ["calendar:exchange.bindings:read"]

[[apps]]
app_id = "cli_nobot"
app_secret = "nobot-secret"
tenants = ["t_acme"]
bot = false
scopes = ["calendar:calendar"]

[[apps]]
app_id = "cli_beta"
app_secret = "beta-secret"
tenants = ["t_beta"]
unit = "us"
scopes = ["calendar:calendar", "calendar:calendar:readonly"]

[[apps]]
app_id = "cli_store"
app_secret = "store-secret"
type = "store"
tenants = ["t_acme", "t_beta"]
scopes = ["calendar:calendar"]
"#;

pub const ADMIN_TOKEN: &str = "fuzz-admin-token";

/// A user token the harness inserts, and what the pipeline answers for it on a read.
pub struct SeededToken {
    pub token: &'static str,
    pub app_id: &'static str,
    pub tenant_key: &'static str,
    pub user_id: &'static str,
    /// `None`: the app's scopes.
    pub scopes: Option<&'static [&'static str]>,
    pub expired: bool,
    pub revoked: bool,
}

const fn token(
    token: &'static str,
    app_id: &'static str,
    tenant_key: &'static str,
    user_id: &'static str,
) -> SeededToken {
    SeededToken {
        token,
        app_id,
        tenant_key,
        user_id,
        scopes: None,
        expired: false,
        revoked: false,
    }
}

pub const TOKENS: [SeededToken; 10] = [
    token("u-fuzz-acme-admin", "cli_acme", "t_acme", "admin"),
    token("u-fuzz-acme-alice", "cli_acme", "t_acme", "alice"),
    token("u-fuzz-acme-gone", "cli_acme", "t_acme", "gone"),
    SeededToken {
        scopes: Some(&[scopes::BINDINGS_READ]),
        ..token("u-fuzz-acme-readonly", "cli_acme", "t_acme", "admin")
    },
    SeededToken {
        expired: true,
        ..token("u-fuzz-acme-expired", "cli_acme", "t_acme", "admin")
    },
    SeededToken {
        revoked: true,
        ..token("u-fuzz-acme-revoked", "cli_acme", "t_acme", "admin")
    },
    token("u-fuzz-read-admin", "cli_read", "t_acme", "admin"),
    token("u-fuzz-nobot-admin", "cli_nobot", "t_acme", "admin"),
    token("u-fuzz-beta-admin", "cli_beta", "t_beta", "admin"),
    token("u-fuzz-store-admin", "cli_store", "t_beta", "admin"),
];

/// Bindings the harness creates (admin account, Exchange account, user id) in t_acme.
pub const BINDINGS: [(&str, &str, &str); 2] = [
    ("exadmin@acme.example", "alice@acme.example", "alice"),
    ("exadmin@acme.example", "stall@acme.example", "admin"),
];

pub const TENANTS: [&str; 3] = ["t_acme", "t_beta", "t_none"];
pub const USERS: [&str; 4] = ["admin", "alice", "gone", "nobody"];
pub const APPS: [(&str, &str); 6] = [
    ("cli_acme", "acme-secret"),
    ("cli_read", "read-secret"),
    ("cli_nobot", "nobot-secret"),
    ("cli_beta", "beta-secret"),
    ("cli_store", "store-secret"),
    ("cli_none", "none-secret"),
];
pub const ACCOUNTS: [&str; 10] = [
    "exadmin@acme.example",
    "broken@acme.example",
    "exadmin@beta.example",
    "alice@acme.example",
    "stall@acme.example",
    "fail@acme.example",
    "fast@acme.example",
    "ALICE@Acme.Example",
    "new@acme.example",
    "nobody@nowhere.example",
];

/// Field names and values of every body and query the server reads.
const WORDS: &[&str] = &[
    "admin_account",
    "exchange_account",
    "user_id",
    "app_id",
    "app_secret",
    "tenant_key",
    "scopes",
    "expires_in",
    "access_token",
    "method",
    "route",
    "times",
    "fraction",
    "error",
    "code",
    "latency_ms",
    "status",
    "super_admin",
    "bot",
    "tenants",
    "unit",
    "scenario",
    "stage",
    "reason",
    "state",
    "user_id_type",
    "page_size",
    "page_token",
    "since",
    "types",
    "csrf",
    "op",
    "id",
    "back",
    "next",
    "token",
    "signin",
    "format",
    "seed",
    "open_id",
    "union_id",
    "active",
    "dismissed",
    "ok",
    "failed",
    "doing",
    "cal_done",
    "timespan_done",
    "done",
    "err",
    "normal",
    "fail",
    "stall",
    "instant",
    "custom",
    "store",
    "GET",
    "POST",
    "DELETE",
    "binding",
    "request",
    "binding,request",
    "cn",
    "us",
    "json",
    "toml",
    "create",
    "delete",
    "force",
    "advance",
    "complete",
    "wipe",
    "mint",
    "add",
    "clear",
    "user",
    "admin_state",
    "put_scenario",
    "delete_scenario",
    "0",
    "1",
    "-1",
    "20",
    "500",
    "501",
    "1000",
    "1001",
    "190003",
    "99991400",
    "2026-01-01T00:00:00Z",
    "true",
    "false",
    "/open-apis/calendar/v4/exchange_bindings",
    "/open-apis/calendar/v4/exchange_bindings/{exchange_binding_id}",
    "/open-apis/auth/v3/tenant_access_token/internal",
    "/open-apis/auth/v3/app_access_token/internal",
    "/_exbind/console/",
    "Bearer",
    "bearer",
    "BEARER",
    "Basic",
    ADMIN_TOKEN,
    "t-fuzz-tenant-token",
    "a-fuzz-app-token",
    scopes::CALENDAR,
    scopes::CALENDAR_READONLY,
    scopes::BINDINGS_CREATE,
    scopes::BINDINGS_READ,
    scopes::BINDINGS_DELETE,
    scopes::EMAIL,
    scopes::EMPLOYEE_ID,
];

fn pick<T: Copy>(items: &[T], i: u8) -> T {
    items[i as usize % items.len()]
}

pub fn tenant(i: u8) -> &'static str {
    pick(&TENANTS, i)
}
pub fn user(i: u8) -> &'static str {
    pick(&USERS, i)
}
pub fn app(i: u8) -> (&'static str, &'static str) {
    pick(&APPS, i)
}
pub fn account(i: u8) -> &'static str {
    pick(&ACCOUNTS, i)
}
pub fn seeded_token(i: u8) -> &'static SeededToken {
    &TOKENS[i as usize % TOKENS.len()]
}

/// The open and union ids of the seeded users as each app sees them: they depend on the
/// store's secret, so the harness fills them in.
pub static OPEN_IDS: OnceLock<Vec<String>> = OnceLock::new();

/// A string: one the server knows, or any.
#[derive(Arbitrary, Debug, Clone)]
pub enum Text {
    Word(u8),
    Tenant(u8),
    User(u8),
    App(u8),
    Secret(u8),
    Account(u8),
    Token(u8),
    OpenId(u8),
    Any(String),
}

impl Text {
    pub fn render(&self) -> String {
        match self {
            Text::Word(i) => pick(WORDS, *i).to_string(),
            Text::Tenant(i) => tenant(*i).to_string(),
            Text::User(i) => user(*i).to_string(),
            Text::App(i) => app(*i).0.to_string(),
            Text::Secret(i) => app(*i).1.to_string(),
            Text::Account(i) => account(*i).to_string(),
            Text::Token(i) => seeded_token(*i).token.to_string(),
            Text::OpenId(i) => OPEN_IDS
                .get()
                .filter(|ids| !ids.is_empty())
                .map(|ids| ids[*i as usize % ids.len()].clone())
                .unwrap_or_default(),
            Text::Any(s) => s.clone(),
        }
    }
}

/// Query pairs as `key=value`: percent-encoded, or (`true`) as they are.
pub fn query_pairs(pairs: &[(Text, Text, bool)]) -> Vec<String> {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    pairs
        .iter()
        .map(|(k, v, verbatim)| {
            let (k, v) = (k.render(), v.render());
            if *verbatim {
                format!("{k}={v}")
            } else {
                format!("{}={}", enc(&k), enc(&v))
            }
        })
        .collect()
}
