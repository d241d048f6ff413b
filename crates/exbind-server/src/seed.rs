//! Seed documents (product.md): parsing from TOML or JSON, validation against the document
//! plus the store, and the plan the store upserts in one transaction.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use crate::domain::ids::IdSecret;
use crate::domain::model::*;
use crate::domain::scopes;
use crate::store::{SeedCounts, SeedPlan, Store, StoreError, UserRow};
use crate::tickets;
use exbind_api::accounts::{address_problem, fold};

/// The built-in demo, loaded when no seed is given and the store is empty.
pub const DEMO_SEED: &str = r#"
[[tenants]]
tenant_key = "demo"
name = "Demo Corp"

[[tenants.users]]
user_id = "admin"
name = "Demo Admin"
email = "admin@demo.example"
super_admin = true

[[tenants.users]]
user_id = "alice"
name = "Alice"
email = "alice@demo.example"

[[tenants.users]]
user_id = "bob"
name = "Bob"
email = "bob@demo.example"

[[tenants.users]]
user_id = "carol"
name = "Carol"
email = "carol@demo.example"

[[tenants.exchange_admins]]
account = "exadmin@demo.example"

[[apps]]
app_id = "cli_demo"
app_secret = "demo-secret"
tenants = ["demo"]
scopes = ["calendar:calendar", "calendar:calendar:readonly", "calendar:exchange.bindings:create",
          "calendar:exchange.bindings:read", "calendar:exchange.bindings:delete",
          "contact:user.email:readonly", "contact:user.employee_id:readonly", "offline_access"]
"#;

pub const DEMO_TENANT: &str = "demo";
pub const DEMO_APP: &str = "cli_demo";
pub const DEMO_ADMIN_USER: &str = "admin";
pub const DEMO_EXCHANGE_ADMIN: &str = "exadmin@demo.example";

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SeedDoc {
    #[serde(default)]
    pub tenants: Vec<SeedTenant>,
    #[serde(default)]
    pub apps: Vec<SeedApp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedTenant {
    pub tenant_key: String,
    pub name: Option<String>,
    pub unit: Option<String>,
    #[serde(default)]
    pub users: Vec<SeedUser>,
    #[serde(default)]
    pub exchange_admins: Vec<SeedAdmin>,
    #[serde(default)]
    pub exchange_accounts: Vec<SeedScenario>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    pub user_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub super_admin: Option<bool>,
    pub status: Option<String>,
    pub en_name: Option<String>,
    pub mobile: Option<String>,
    pub employee_no: Option<String>,
    pub avatar_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedAdmin {
    pub account: String,
    pub state: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedScenario {
    pub account: String,
    pub scenario: Option<String>,
    pub stage: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedApp {
    pub app_id: String,
    pub app_secret: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub developer: Option<String>,
    #[serde(default)]
    pub tenants: Vec<String>,
    pub bot: Option<bool>,
    pub unit: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    // The login settings (oauth.md §1).
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub refresh_tokens: Option<bool>,
    pub available_to: Option<Vec<String>>,
    pub auto_consent: Option<bool>,
    pub enabled: Option<bool>,
    pub event_url: Option<String>,
    pub verification_token: Option<String>,
    pub encrypt_key: Option<String>,
}

/// One thing wrong with a seed: where (`tenants[0].users[3].user_id`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{}", .0.first().map(ToString::to_string).unwrap_or_default())]
    Invalid(Vec<Violation>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Vec<Violation> {
    vec![Violation {
        path: path.into(),
        reason: reason.into(),
    }]
}

/// How a seed document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

/// Parses, validates and upserts a seed document, all or nothing.
pub async fn load(
    text: &str,
    format: Format,
    store: &dyn Store,
    ids: &IdSecret,
) -> Result<SeedCounts, SeedError> {
    let doc = match format {
        Format::Toml => parse_toml(text),
        Format::Json => parse_json(text),
    }
    .map_err(SeedError::Invalid)?;
    let plan = plan(doc, store, ids).await?;
    Ok(store.apply_seed(plan).await?)
}

pub fn parse_toml(text: &str) -> Result<SeedDoc, Vec<Violation>> {
    let de = toml::Deserializer::parse(text).map_err(|e| invalid("", toml_reason(&e, text)))?;
    let doc = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let reason = toml_reason(e.inner(), text);
        invalid(if path == "." { String::new() } else { path }, reason)
    })?;
    refuse_nul(toml::from_str(text).map_err(|e| invalid("", toml_reason(&e, text)))?)?;
    Ok(doc)
}

pub fn parse_json(text: &str) -> Result<SeedDoc, Vec<Violation>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let doc = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        invalid(
            if path == "." { String::new() } else { path },
            e.inner().to_string(),
        )
    })?;
    refuse_nul(serde_json::from_str(text).map_err(|e| invalid("", e.to_string()))?)?;
    Ok(doc)
}

/// A NUL character in any string of a parsed seed is refused: PostgreSQL cannot store one,
/// and every store must take the same seeds.
fn refuse_nul(doc: serde_json::Value) -> Result<(), Vec<Violation>> {
    fn walk(v: &serde_json::Value, path: &mut String, out: &mut Vec<Violation>) {
        let len = path.len();
        match v {
            serde_json::Value::String(s) if s.contains('\0') => out.push(Violation {
                path: path.clone(),
                reason: "must not contain a NUL character".into(),
            }),
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push_str(&format!("[{i}]"));
                    walk(item, path, out);
                    path.truncate(len);
                }
            }
            serde_json::Value::Object(fields) => {
                for (k, item) in fields {
                    if k.contains('\0') {
                        out.push(Violation {
                            path: path.clone(),
                            reason: "a key must not contain a NUL character".into(),
                        });
                        continue;
                    }
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    walk(item, path, out);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&doc, &mut String::new(), &mut out);
    if out.is_empty() {
        Ok(())
    } else {
        Err(out)
    }
}

/// A TOML error in one line: its message and, when known, the line it is on.
fn toml_reason(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("{msg} (line {line})")
        }
        None => msg,
    }
}

const STAGES: [&str; 4] = ["doing", "cal_done", "timespan_done", "done"];

/// Checks a scenario's fields; returns (scenario, stage) with defaults filled in.
pub fn check_scenario(
    scenario: Option<&str>,
    stage: Option<&str>,
    reason: Option<&str>,
) -> Result<(String, Option<String>), (&'static str, String)> {
    let scenario = scenario.unwrap_or("normal");
    let stage = match (scenario, stage) {
        ("normal" | "instant", None) => None,
        ("normal" | "instant", Some(_)) => {
            return Err(("stage", format!("scenario {scenario:?} takes no stage")))
        }
        ("fail", None) => Some("cal_done"),
        ("fail", Some(s @ ("cal_done" | "timespan_done" | "done"))) => Some(s),
        ("fail", Some(s)) => {
            return Err((
                "stage",
                format!("a fail scenario fails at cal_done, timespan_done or done, not {s:?}"),
            ))
        }
        ("stall", None) => Some("doing"),
        ("stall", Some(s @ ("doing" | "cal_done" | "timespan_done"))) => Some(s),
        ("stall", Some(s)) => {
            return Err((
                "stage",
                format!("a stall scenario stalls at doing, cal_done or timespan_done, not {s:?}"),
            ))
        }
        (other, _) => {
            return Err((
                "scenario",
                format!("unknown scenario {other:?} (normal, fail, stall or instant)"),
            ))
        }
    };
    if reason.is_some() && scenario != "fail" {
        return Err(("reason", "only a fail scenario takes a reason".into()));
    }
    debug_assert!(stage.is_none_or(|s| STAGES.contains(&s)));
    Ok((scenario.to_string(), stage.map(str::to_string)))
}

/// Validates `doc` against itself and the store; all violations are reported together.
pub async fn plan(doc: SeedDoc, store: &dyn Store, ids: &IdSecret) -> Result<SeedPlan, SeedError> {
    let mut v: Vec<Violation> = Vec::new();
    let mut bad = |path: String, reason: String| v.push(Violation { path, reason });
    let mut plan = SeedPlan::default();
    let mut tenant_keys: HashSet<String> = HashSet::new();
    let mut admin_addrs: HashMap<String, String> = HashMap::new();
    let mut scenario_addrs: HashSet<String> = HashSet::new();

    for (ti, t) in doc.tenants.into_iter().enumerate() {
        let tp = format!("tenants[{ti}]");
        if t.tenant_key.is_empty() {
            bad(format!("{tp}.tenant_key"), "must not be empty".into());
        } else if !tenant_keys.insert(t.tenant_key.clone()) {
            bad(
                format!("{tp}.tenant_key"),
                format!("tenant {:?} appears twice", t.tenant_key),
            );
        }
        if t.unit.as_deref() == Some("") {
            bad(format!("{tp}.unit"), "must not be empty".into());
        }
        plan.tenants.push(Tenant {
            name: t.name.unwrap_or_else(|| t.tenant_key.clone()),
            unit: t.unit.unwrap_or_else(|| "cn".into()),
            tenant_key: t.tenant_key.clone(),
        });
        let mut user_ids = HashSet::new();
        for (ui, u) in t.users.into_iter().enumerate() {
            let up = format!("{tp}.users[{ui}]");
            if u.user_id.is_empty() {
                bad(format!("{up}.user_id"), "must not be empty".into());
            } else if !user_ids.insert(u.user_id.clone()) {
                bad(
                    format!("{up}.user_id"),
                    format!(
                        "user {:?} appears twice in tenant {:?}",
                        u.user_id, t.tenant_key
                    ),
                );
            }
            if let Some(problem) = u.email.as_deref().and_then(address_problem) {
                bad(format!("{up}.email"), format!("email {problem}"));
            }
            let status = match u.status.as_deref() {
                None => UserStatus::Active,
                Some(s) => UserStatus::parse(s).unwrap_or_else(|| {
                    bad(
                        format!("{up}.status"),
                        format!("unknown status {s:?} (active or dismissed)"),
                    );
                    UserStatus::Active
                }),
            };
            plan.users.push(UserRow {
                key: ids.user_key(&t.tenant_key, &u.user_id),
                user: User {
                    tenant_key: t.tenant_key.clone(),
                    name: u.name.unwrap_or_else(|| u.user_id.clone()),
                    user_id: u.user_id,
                    email: u.email,
                    status,
                    super_admin: u.super_admin.unwrap_or(false),
                    profile: UserProfile {
                        en_name: u.en_name,
                        mobile: u.mobile,
                        employee_no: u.employee_no,
                        avatar_url: u.avatar_url,
                    },
                },
            });
        }
        for (ai, a) in t.exchange_admins.into_iter().enumerate() {
            let ap = format!("{tp}.exchange_admins[{ai}]");
            if let Some(problem) = address_problem(&a.account) {
                bad(format!("{ap}.account"), format!("account {problem}"));
            } else if let Some(prev) = admin_addrs.insert(fold(&a.account), ap.clone()) {
                bad(
                    format!("{ap}.account"),
                    format!("{:?} is already listed at {prev}", a.account),
                );
            } else if let Some(existing) = store.admin_account(&fold(&a.account)).await? {
                if existing.tenant_key != t.tenant_key {
                    bad(
                        format!("{ap}.account"),
                        format!("{:?} is already registered to another tenant", a.account),
                    );
                }
            }
            let state = match a.state.as_deref() {
                None => AdminState::Ok,
                Some(s) => AdminState::parse(s).unwrap_or_else(|| {
                    bad(
                        format!("{ap}.state"),
                        format!("unknown state {s:?} (ok or failed)"),
                    );
                    AdminState::Ok
                }),
            };
            plan.admins.push(AdminAccount {
                account: a.account,
                tenant_key: t.tenant_key.clone(),
                state,
            });
        }
        for (si, s) in t.exchange_accounts.into_iter().enumerate() {
            let sp = format!("{tp}.exchange_accounts[{si}]");
            if let Some(problem) = address_problem(&s.account) {
                bad(format!("{sp}.account"), format!("account {problem}"));
            } else if !scenario_addrs.insert(fold(&s.account)) {
                bad(
                    format!("{sp}.account"),
                    format!("{:?} appears twice", s.account),
                );
            }
            match check_scenario(
                s.scenario.as_deref(),
                s.stage.as_deref(),
                s.reason.as_deref(),
            ) {
                Ok((scenario, stage)) => plan.scenarios.push(ExchangeScenario {
                    account: s.account,
                    tenant_key: t.tenant_key.clone(),
                    scenario,
                    stage,
                    reason: s.reason,
                }),
                Err((field, reason)) => bad(format!("{sp}.{field}"), reason),
            }
        }
    }

    let mut app_ids = HashSet::new();
    for (i, a) in doc.apps.into_iter().enumerate() {
        let p = format!("apps[{i}]");
        if a.app_id.is_empty() {
            bad(format!("{p}.app_id"), "must not be empty".into());
        } else if !app_ids.insert(a.app_id.clone()) {
            bad(
                format!("{p}.app_id"),
                format!("app {:?} appears twice", a.app_id),
            );
        }
        if a.app_secret.is_empty() {
            bad(format!("{p}.app_secret"), "must not be empty".into());
        }
        let kind = match a.kind.as_deref() {
            None => AppKind::Custom,
            Some(k) => AppKind::parse(k).unwrap_or_else(|| {
                bad(
                    format!("{p}.type"),
                    format!("unknown app type {k:?} (custom or store)"),
                );
                AppKind::Custom
            }),
        };
        if kind == AppKind::Custom && a.tenants.len() > 1 {
            bad(
                format!("{p}.tenants"),
                "a custom app can be installed in at most one tenant".into(),
            );
        }
        let mut seen = HashSet::new();
        for (j, t) in a.tenants.iter().enumerate() {
            if !seen.insert(t) {
                bad(
                    format!("{p}.tenants[{j}]"),
                    format!("tenant {t:?} is listed twice"),
                );
            } else if !tenant_keys.contains(t) && store.tenant(t).await?.is_none() {
                bad(format!("{p}.tenants[{j}]"), format!("unknown tenant {t:?}"));
            }
        }
        let mut seen = HashSet::new();
        for (j, s) in a.scopes.iter().enumerate() {
            if !scopes::is_known(s) {
                bad(format!("{p}.scopes[{j}]"), format!("unknown scope {s:?}"));
            } else if kind == AppKind::Store && scopes::is_field_scope(s) {
                bad(
                    format!("{p}.scopes[{j}]"),
                    format!("field scope {s:?} can be held by custom apps only"),
                );
            } else if !seen.insert(s) {
                bad(
                    format!("{p}.scopes[{j}]"),
                    format!("scope {s:?} is listed twice"),
                );
            }
        }
        if a.unit.as_deref() == Some("") {
            bad(format!("{p}.unit"), "must not be empty".into());
        }
        let login = LoginSettings {
            name: a.name,
            redirect_uris: a.redirect_uris.unwrap_or_default(),
            refresh_tokens: a.refresh_tokens.unwrap_or(true),
            available_to: a.available_to,
            auto_consent: a.auto_consent.unwrap_or(false),
            enabled: a.enabled.unwrap_or(true),
        };
        for (field, reason) in login_problems(&login) {
            bad(format!("{p}.{field}"), reason);
        }
        if let Some(problem) = a.event_url.as_deref().and_then(tickets::event_url_problem) {
            bad(format!("{p}.event_url"), problem.into());
        }
        for (key, value) in [
            ("verification_token", &a.verification_token),
            ("encrypt_key", &a.encrypt_key),
        ] {
            if value.as_deref() == Some("") {
                bad(format!("{p}.{key}"), "must not be empty".into());
            }
        }
        plan.apps.push(App {
            developer: a.developer.unwrap_or_else(|| a.app_id.clone()),
            app_id: a.app_id,
            app_secret: a.app_secret,
            kind,
            bot: a.bot.unwrap_or(true),
            unit: a.unit.unwrap_or_else(|| "cn".into()),
            scopes: a.scopes,
            tenants: a.tenants,
            login,
            event_url: a.event_url,
            verification_token: a.verification_token,
            encrypt_key: a.encrypt_key,
        });
    }
    if v.is_empty() {
        Ok(plan)
    } else {
        Err(SeedError::Invalid(v))
    }
}

/// What is wrong with login settings, as (field path, reason): a redirect URI that is not an
/// absolute URI without a fragment, an `available_to` entry that is empty or has more than
/// one `/`, an empty name.
pub fn login_problems(l: &LoginSettings) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if l.name.as_deref() == Some("") {
        out.push(("name".into(), "must not be empty".into()));
    }
    for (i, u) in l.redirect_uris.iter().enumerate() {
        if let Err(reason) = crate::oauth::redirect::parse_registered(u) {
            out.push((format!("redirect_uris[{i}]"), reason));
        }
    }
    for (i, e) in l.available_to.iter().flatten().enumerate() {
        let ok = match e.split_once('/') {
            Some((t, u)) => !t.is_empty() && !u.is_empty() && !u.contains('/'),
            None => !e.is_empty(),
        };
        if !ok {
            out.push((
                format!("available_to[{i}]"),
                format!("{e:?} is neither {{tenant_key}}/{{user_id}} nor a user_id"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_seed_parses() {
        let doc = parse_toml(DEMO_SEED).unwrap();
        assert_eq!(doc.tenants[0].users.len(), 4);
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let e = parse_toml(
            "[[tenants]]\ntenant_key = \"a\"\n[[tenants.users]]\nuser_id = \"x\"\nnick = 1\n",
        )
        .unwrap_err();
        assert!(e[0].path.starts_with("tenants[0].users[0]"), "{:?}", e);
        assert!(e[0].reason.contains("nick"), "{:?}", e);
        let e = parse_toml("[[tenants]\n").unwrap_err();
        assert!(e[0].reason.contains("line 1"), "{:?}", e);
    }

    #[test]
    fn scenario_rules() {
        assert_eq!(
            check_scenario(None, None, None).unwrap(),
            ("normal".into(), None)
        );
        assert_eq!(
            check_scenario(Some("fail"), None, Some("x"))
                .unwrap()
                .1
                .as_deref(),
            Some("cal_done")
        );
        assert_eq!(
            check_scenario(Some("stall"), None, None)
                .unwrap()
                .1
                .as_deref(),
            Some("doing")
        );
        assert!(check_scenario(Some("stall"), Some("done"), None).is_err());
        assert!(check_scenario(Some("fail"), Some("doing"), None).is_err());
        assert!(check_scenario(Some("instant"), Some("done"), None).is_err());
        assert!(check_scenario(Some("normal"), None, Some("r")).is_err());
        assert!(check_scenario(Some("weird"), None, None).is_err());
    }
}
