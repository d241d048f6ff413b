//! What the harness seeds, and the words the fuzzer picks from: names it could not guess.

use std::sync::OnceLock;

use arbitrary::Arbitrary;

use crate::domain::scopes;

/// What the harness seeds besides the tests' seed (`fixture::FULL_SEED`, loaded first): sync
/// scenarios, a tenant of the `us` unit, and apps for the login flows.
pub const EXTRA_SEED: &str = r#"
[[tenants]]
tenant_key = "acme"
name = "Acme Corp"
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
tenant_key = "beta"
unit = "us"
[[tenants.users]]
user_id = "boss"
super_admin = true
[[tenants.exchange_admins]]
account = "exadmin@beta.example"

[[apps]]
app_id = "cli_beta"
app_secret = "beta-secret"
tenants = ["beta"]
unit = "us"
scopes = ["calendar:calendar", "calendar:calendar:readonly"]

[[apps]]
app_id = "cli_login"
app_secret = "login-secret"
tenants = ["acme"]
scopes = ["calendar:calendar", "contact:user.email:readonly", "offline_access"]

[[apps]]
app_id = "cli_auto"
app_secret = "auto-secret"
tenants = ["acme"]
auto_consent = true
scopes = ["calendar:calendar", "offline_access"]
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

pub const TOKENS: [SeededToken; 11] = [
    token("u-fuzz-acme-boss", "cli_acme", "acme", "boss"),
    token("u-fuzz-acme-alice", "cli_acme", "acme", "alice"),
    token("u-fuzz-acme-gone", "cli_acme", "acme", "gone"),
    SeededToken {
        scopes: Some(&[scopes::BINDINGS_READ]),
        ..token("u-fuzz-acme-readonly", "cli_acme", "acme", "boss")
    },
    SeededToken {
        expired: true,
        ..token("u-fuzz-acme-expired", "cli_acme", "acme", "boss")
    },
    SeededToken {
        revoked: true,
        ..token("u-fuzz-acme-revoked", "cli_acme", "acme", "boss")
    },
    token("u-fuzz-read-boss", "cli_readonly", "acme", "boss"),
    token("u-fuzz-nobot-boss", "cli_nobot", "acme", "boss"),
    token("u-fuzz-globex-gboss", "cli_globex", "globex", "gboss"),
    token("u-fuzz-store-boss", "cli_store", "acme", "boss"),
    token("u-fuzz-beta-boss", "cli_beta", "beta", "boss"),
];

/// The tokens of `TOKENS` that may create and delete bindings: a super admin's, every scope.
pub const WRITERS: [usize; 3] = [0, 8, 9];

/// Bindings the harness creates (admin account, Exchange account, user id) in acme.
pub const BINDINGS: [(&str, &str, &str); 2] = [
    ("exadmin@acme.example", "alice@acme.example", "alice"),
    ("exadmin@acme.example", "stall@acme.example", "bob"),
];

/// Creates that succeed from the seeded state: (tenant, admin account, Exchange account,
/// user id), none of their accounts or users bound yet.
pub const CREATES: [(&str, &str, &str, &str); 6] = [
    (
        "acme",
        "exadmin@acme.example",
        "carol@acme.example",
        "carol",
    ),
    ("acme", "exadmin2@acme.example", "dave@acme.example", "dave"),
    ("acme", "exadmin@acme.example", "fast@acme.example", "erin"),
    ("acme", "exadmin@acme.example", "fail@acme.example", "boss"),
    (
        "globex",
        "exadmin@globex.example",
        "gina@globex.example",
        "gina",
    ),
    (
        "globex",
        "exadmin@globex.example",
        "g2@globex.example",
        "gboss",
    ),
];

pub const TENANTS: [&str; 4] = ["acme", "globex", "beta", "nowhere"];
pub const USERS: [&str; 8] = [
    "boss", "alice", "bob", "carol", "gone", "gboss", "gina", "nobody",
];
/// The custom apps first (`CUSTOM_APPS` of them), then a store app and one that is no app.
pub const APPS: [(&str, &str); 9] = [
    ("cli_acme", "acme-secret"),
    ("cli_readonly", "readonly-secret"),
    ("cli_nobot", "nobot-secret"),
    ("cli_globex", "globex-secret"),
    ("cli_beta", "beta-secret"),
    ("cli_login", "login-secret"),
    ("cli_auto", "auto-secret"),
    ("cli_store", "store-secret"),
    ("cli_none", "none-secret"),
];
pub const CUSTOM_APPS: usize = 7;
/// Apps whose login flow works: (app, secret, a tenant it is installed in).
pub const LOGIN_APPS: [(&str, &str, &str); 3] = [
    ("cli_login", "login-secret", "acme"),
    ("cli_auto", "auto-secret", "acme"),
    ("cli_acme", "acme-secret", "acme"),
];
/// Redirect URIs an app without `redirect_uris` allows (loopback), and one it does not.
pub const REDIRECTS: [&str; 4] = [
    "http://127.0.0.1:3000/callback",
    "http://localhost/cb?keep=1",
    "http://[::1]:8910/callback",
    "https://elsewhere.example/callback",
];
pub const ACCOUNTS: [&str; 12] = [
    "exadmin@acme.example",
    "exadmin2@acme.example",
    "broken@acme.example",
    "exadmin@globex.example",
    "alice@acme.example",
    "stall@acme.example",
    "fail@acme.example",
    "fast@acme.example",
    "carol@acme.example",
    "ALICE@Acme.Example",
    "gina@globex.example",
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
    "/open-apis/authen/v2/oauth/token",
    "/open-apis/authen/v1/authorize",
    "/open-apis/authen/v1/user_info",
    "/_exbind/console/",
    "authorization_code",
    "refresh_token",
    "client_id",
    "client_secret",
    "redirect_uri",
    "grant_type",
    "code_verifier",
    "code_challenge",
    "code_challenge_method",
    "S256",
    "plain",
    "scope",
    "login_hint",
    "response_type",
    "offline_access",
    "allow",
    "deny",
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
