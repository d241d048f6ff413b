//! Isolation and secrets, as matrices: every Feishu route tried with the token of another
//! tenant, another app and another user (nothing of the other tenant is read or changed);
//! every control-plane route of the OpenAPI document without the admin token and with a
//! wrong one (401, nothing changed); and every token and secret a run handled searched for
//! in the server's log, its journal and every answer (none appear, but for the answer that
//! issued a token). New routes are new rows.
mod common;

use std::collections::BTreeMap;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// Two tenants with names found nowhere else: what one of them must never see of the other.
const ISO_SEED: &str = r#"
[[tenants]]
tenant_key = "north"
name = "North Corp"

[[tenants.users]]
user_id = "n-boss"
super_admin = true

[[tenants.users]]
user_id = "n-plain"

[[tenants.users]]
user_id = "n-victim"
email = "n-victim@north.example"

[[tenants.exchange_admins]]
account = "admin@north.example"

[[tenants]]
tenant_key = "south"
name = "South Corp"

[[tenants.users]]
user_id = "s-boss"
super_admin = true

[[tenants.users]]
user_id = "s-user"

[[tenants.exchange_admins]]
account = "admin@south.example"

[[apps]]
app_id = "cli_north"
app_secret = "north-secret-1f9c"
developer = "north-dev"
tenants = ["north"]
scopes = ["calendar:calendar", "calendar:calendar:readonly", "calendar:exchange.bindings:create",
          "calendar:exchange.bindings:read", "calendar:exchange.bindings:delete",
          "contact:user.email:readonly", "contact:user.employee_id:readonly"]

[[apps]]
app_id = "cli_north_other"
app_secret = "north-other-secret-77aa"
developer = "another-dev"
tenants = ["north"]
scopes = ["calendar:calendar", "calendar:calendar:readonly", "calendar:exchange.bindings:create",
          "calendar:exchange.bindings:read", "calendar:exchange.bindings:delete",
          "contact:user.email:readonly", "contact:user.employee_id:readonly"]

[[apps]]
app_id = "cli_south"
app_secret = "south-secret-3b2e"
tenants = ["south"]
scopes = ["calendar:calendar", "calendar:calendar:readonly", "calendar:exchange.bindings:create",
          "calendar:exchange.bindings:read", "calendar:exchange.bindings:delete",
          "contact:user.email:readonly", "contact:user.employee_id:readonly"]

[[apps]]
app_id = "cli_both"
app_secret = "both-secret-c0de"
type = "store"
tenants = ["north", "south"]
scopes = ["calendar:calendar", "calendar:calendar:readonly", "calendar:exchange.bindings:create",
          "calendar:exchange.bindings:read", "calendar:exchange.bindings:delete"]
"#;

const APP_SECRETS: [&str; 4] = [
    "north-secret-1f9c",
    "north-other-secret-77aa",
    "south-secret-3b2e",
    "both-secret-c0de",
];

const VICTIM_ADMIN: &str = "admin@north.example";
const VICTIM_EXCHANGE: &str = "mailbox-7d1@north.example";
const SOUTH_ADMIN: &str = "admin@south.example";

/// The path of the north tenant's binding the matrices aim at.
fn victim_item() -> String {
    format!("{BINDINGS}/{}", binding_id(VICTIM_ADMIN, VICTIM_EXCHANGE))
}

/// Every answer of a run, kept for the secrets scan: what was asked, and what came back.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<(String, String)>>);

impl Seen {
    fn add(&self, asked: String, r: &Resp) {
        let headers: Vec<String> = r
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
            .collect();
        let answer = format!("{}\n{}\n\n{}", r.status, headers.join("\n"), r.text);
        self.0.lock().unwrap().push((asked, answer));
    }
    fn all(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap().clone()
    }
}

/// One Feishu call, kept.
async fn feishu(
    s: &Server,
    seen: &Seen,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Resp {
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
    let auth = format!("Bearer {token}");
    let r = s
        .request(
            method.clone(),
            path,
            &[("Authorization", &auth)],
            bytes.clone(),
        )
        .await;
    let asked = format!(
        "{method} {path}\n{}",
        String::from_utf8_lossy(&bytes.unwrap_or_default())
    );
    seen.add(asked, &r);
    r
}

/// Everything the control plane shows of both tenants: their views and their bindings.
async fn state(s: &Server, seen: &Seen) -> Value {
    let mut out = BTreeMap::new();
    for t in ["north", "south"] {
        let view = s
            .admin(Method::GET, &format!("/_exbind/v1/tenants/{t}"), None)
            .await;
        seen.add(format!("GET tenant {t}"), &view);
        out.insert(format!("tenant {t}"), view.ok().clone());
        out.insert(format!("bindings {t}"), json!(s.all_bindings(t).await));
    }
    for app in ["cli_north", "cli_north_other", "cli_south", "cli_both"] {
        let r = s
            .admin(Method::GET, &format!("/_exbind/v1/apps/{app}"), None)
            .await;
        seen.add(format!("GET app {app}"), &r);
        out.insert(format!("app {app}"), r.ok().clone());
    }
    json!(out)
}

struct Tokens {
    north_boss: String,
    north_plain: String,
    north_other_app: String,
    south_boss: String,
    south_via_both: String,
}

/// Mints each identity's token through the control plane (kept as issued).
async fn mint_all(s: &Server, seen: &Seen, issued: &mut Vec<String>) -> Tokens {
    let mut mint = async |app: &str, tenant: &str, user: &str| {
        let body = json!({"app_id": app, "tenant_key": tenant, "user_id": user});
        let r = s
            .admin(Method::POST, "/_exbind/v1/user_access_tokens", Some(&body))
            .await;
        seen.add(format!("mint {app} {tenant} {user}"), &r);
        let t = r.ok()["access_token"].as_str().unwrap().to_string();
        issued.push(t.clone());
        t
    };
    Tokens {
        north_boss: mint("cli_north", "north", "n-boss").await,
        north_plain: mint("cli_north", "north", "n-plain").await,
        north_other_app: mint("cli_north_other", "north", "n-boss").await,
        south_boss: mint("cli_south", "south", "s-boss").await,
        south_via_both: mint("cli_both", "south", "s-boss").await,
    }
}

/// The Feishu matrix against the north tenant's binding: each row an identity that must not
/// reach it, a route, and the documented answer; no answer names what the attacker did not
/// send of the victim (its user, mailbox, tenant, open ids).
async fn feishu_matrix(s: &Server, seen: &Seen, t: &Tokens) {
    let item = victim_item();
    let by_user_id = format!("{BINDINGS}?user_id_type=user_id");
    let create = |admin: &str, exchange: &str, user: &str| {
        Some(json!({"admin_account": admin, "exchange_account": exchange, "user_id": user}))
    };
    // The victim's open id as an app of its own tenant sees it, and as the store app (which
    // the attacker also uses) sees it: neither may name it for a south token.
    let victim_open_both = s.user_ids("north", "n-victim", "cli_both").await["open_id"]
        .as_str()
        .unwrap()
        .to_string();
    let by_open_id = format!("{BINDINGS}?user_id_type=open_id");

    type Row<'a> = (&'a str, &'a str, Method, String, Option<Value>, u16, i64);
    let rows: Vec<Row> = vec![
        // Another tenant, through its own app and through the store app both share.
        (
            "south",
            &t.south_boss,
            Method::GET,
            item.clone(),
            None,
            403,
            195104,
        ),
        (
            "south via store app",
            &t.south_via_both,
            Method::GET,
            item.clone(),
            None,
            403,
            195104,
        ),
        (
            "south",
            &t.south_boss,
            Method::DELETE,
            item.clone(),
            None,
            403,
            195104,
        ),
        (
            "south via store app",
            &t.south_via_both,
            Method::DELETE,
            item.clone(),
            None,
            403,
            195104,
        ),
        // Binding under the victim's admin account, or the victim user, or its mailbox.
        (
            "south",
            &t.south_boss,
            Method::POST,
            by_user_id.clone(),
            create(VICTIM_ADMIN, "new-1@south.example", "s-user"),
            403,
            195104,
        ),
        (
            "south",
            &t.south_boss,
            Method::POST,
            by_user_id.clone(),
            create(SOUTH_ADMIN, "new-2@south.example", "n-victim"),
            404,
            195100,
        ),
        (
            "south via store app",
            &t.south_via_both,
            Method::POST,
            by_open_id.clone(),
            create(SOUTH_ADMIN, "new-3@south.example", &victim_open_both),
            404,
            195100,
        ),
        (
            "south",
            &t.south_boss,
            Method::POST,
            by_user_id.clone(),
            create(SOUTH_ADMIN, VICTIM_EXCHANGE, "s-user"),
            400,
            190002,
        ),
        // The same tenant, a user who is no super administrator.
        (
            "north, not an admin",
            &t.north_plain,
            Method::GET,
            item.clone(),
            None,
            403,
            195101,
        ),
        (
            "north, not an admin",
            &t.north_plain,
            Method::DELETE,
            item.clone(),
            None,
            403,
            195101,
        ),
        (
            "north, not an admin",
            &t.north_plain,
            Method::POST,
            by_user_id.clone(),
            create(VICTIM_ADMIN, "new-4@north.example", "n-plain"),
            403,
            195101,
        ),
    ];
    // What an attacker must not learn, unless it sent it itself.
    let victim_ids = s.user_ids("north", "n-victim", "cli_north").await;
    let secrets = [
        "n-victim",
        VICTIM_EXCHANGE,
        "North Corp",
        &victim_open_both,
        victim_ids["open_id"].as_str().unwrap(),
        victim_ids["union_id"].as_str().unwrap(),
    ];
    for (who, token, method, path, body, status, code) in rows {
        let asked = format!(
            "{path} {}",
            body.as_ref().map(Value::to_string).unwrap_or_default()
        );
        let r = feishu(s, seen, method.clone(), &path, token, body).await;
        assert_eq!(
            (r.status.as_u16(), r.body["code"].as_i64()),
            (status, Some(code)),
            "{who}: {method} {asked}: {}",
            r.text
        );
        for secret in secrets {
            if !asked.contains(secret) {
                assert!(
                    !r.text.contains(secret),
                    "{who}: {method} {asked} reveals {secret:?}: {}",
                    r.text
                );
            }
        }
    }
    // The token endpoints: one app's id with another's secret.
    for (app, secret) in [
        ("cli_south", "north-secret-1f9c"),
        ("cli_north", "south-secret-3b2e"),
    ] {
        let r = s.token_call(TENANT_TOKEN_PATH, app, secret).await;
        seen.add(format!("token {app} with another's secret"), &r);
        assert_eq!(
            (r.status.as_u16(), &r.body["code"], &r.body["msg"]),
            (200, &json!(10014), &json!("app secret invalid")),
            "{}",
            r.text
        );
    }
    // Another app of the same tenant may read the tenant's binding (a tenant's bindings are
    // the tenant's), but sees the user by its own open id, never another app's.
    let r = feishu(s, seen, Method::GET, &item, &t.north_other_app, None).await;
    let seen_as = r.ok()["user_id"].as_str().unwrap().to_string();
    let own = s.user_ids("north", "n-victim", "cli_north_other").await;
    assert_eq!(seen_as, own["open_id"].as_str().unwrap());
    for other_app in ["cli_north", "cli_both"] {
        let theirs = s.user_ids("north", "n-victim", other_app).await;
        assert_ne!(seen_as, theirs["open_id"].as_str().unwrap());
        assert!(!r.text.contains(theirs["open_id"].as_str().unwrap()));
    }
    assert_ne!(
        own["union_id"],
        s.user_ids("north", "n-victim", "cli_north").await["union_id"],
        "apps of other developers see other union ids"
    );
}

/// The north tenant's binding the matrix aims at.
async fn victim(s: &Server, seen: &Seen, t: &Tokens) {
    let path = format!("{BINDINGS}?user_id_type=user_id");
    let bind = async |token: &str, admin: &str, exchange: &str, user: &str| {
        let body = json!({"admin_account": admin, "exchange_account": exchange, "user_id": user});
        feishu(s, seen, Method::POST, &path, token, Some(body))
            .await
            .ok()
            .clone()
    };
    bind(&t.north_boss, VICTIM_ADMIN, VICTIM_EXCHANGE, "n-victim").await;
    // And one in the south, so that neither list is empty.
    bind(&t.south_boss, SOUTH_ADMIN, "own@south.example", "s-user").await;
}

fn iso_server() -> Server {
    // Nothing moves on its own while the matrix runs.
    Server::builder()
        .seed(ISO_SEED)
        .args(&["--sync-stage-durations", "60m,60m,60m"])
        .start()
}

/// A server with the victim's binding and every identity's token, and what the control
/// plane shows of both tenants before a matrix runs.
async fn before_a_matrix() -> (Server, Seen, Tokens, Value) {
    let s = iso_server();
    let seen = Seen::default();
    let t = mint_all(&s, &seen, &mut Vec::new()).await;
    victim(&s, &seen, &t).await;
    let before = state(&s, &seen).await;
    (s, seen, t, before)
}

#[tokio::test]
async fn no_token_reaches_another_tenants_data_on_any_feishu_route() {
    let (s, seen, t, before) = before_a_matrix().await;
    feishu_matrix(&s, &seen, &t).await;
    assert_eq!(
        state(&s, &seen).await,
        before,
        "the matrix changed something"
    );
    // The victim's owner still reads it as it was.
    let by_user_id = format!("{}?user_id_type=user_id", victim_item());
    let r = feishu(&s, &seen, Method::GET, &by_user_id, &t.north_boss, None).await;
    assert_eq!(r.ok()["user_id"], "n-victim");
}

/// A value for each path parameter of the control plane's routes; a route with a parameter
/// not named here fails the matrix until it is added.
fn path_value(name: &str) -> String {
    let v = match name {
        "tenant_key" => "north".to_string(),
        "user_id" => "n-boss".to_string(),
        "app_id" => "cli_north".to_string(),
        "account" => VICTIM_ADMIN.to_string(),
        "exchange_binding_id" => binding_id(VICTIM_ADMIN, VICTIM_EXCHANGE),
        "id" => "f-1".to_string(),
        "log_id" => "20260101000000ABCDEF0123456789ABCDEF".to_string(),
        other => panic!("no test value for the path parameter {{{other}}}: add one"),
    };
    pct(&v)
}

/// Every control-plane operation of the served OpenAPI document: method and path.
async fn control_routes(s: &Server, seen: &Seen) -> Vec<(Method, String)> {
    let doc = s
        .call(Method::GET, "/_exbind/openapi.json", None, None)
        .await;
    seen.add("GET openapi".into(), &doc);
    let mut out = Vec::new();
    for (template, ops) in doc.body["paths"].as_object().unwrap() {
        if !template.starts_with("/_exbind/v1/") {
            continue;
        }
        let mut path = String::new();
        let mut rest = template.as_str();
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').unwrap() + open;
            path.push_str(&rest[..open]);
            path.push_str(&path_value(&rest[open + 1..close]));
            rest = &rest[close + 1..];
        }
        path.push_str(rest);
        for method in ops.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                out.push((method.to_uppercase().parse().unwrap(), path.clone()));
            }
        }
    }
    assert!(
        out.len() >= 20,
        "the document lists the control plane: {out:?}"
    );
    out
}

async fn control_matrix(s: &Server, seen: &Seen, t: &Tokens) {
    let routes = control_routes(s, seen).await;
    let wrong_admin = format!("Bearer {}x", s.admin_token);
    let user_token = format!("Bearer {}", t.north_boss);
    // (what is sent as Authorization, or nothing; the code of the 401)
    let cases: [(Option<&str>, i64); 6] = [
        (None, 99991661),
        (Some("Basic dXNlcjpwYXNz"), 99991661),
        (Some("Bearer "), 99991661),
        (Some("Bearer not-the-admin-token"), 99991663),
        (Some(&wrong_admin), 99991663),
        (Some(&user_token), 99991663),
    ];
    for (method, path) in &routes {
        for (auth, code) in cases {
            let headers: Vec<(&str, &str)> =
                auth.map(|a| ("Authorization", a)).into_iter().collect();
            // A body that would be valid for the seed route, and harmless anywhere else.
            let body = matches!(*method, Method::POST | Method::PUT | Method::PATCH)
                .then(|| br#"{"tenants":[{"tenant_key":"intruder"}]}"#.to_vec());
            let r = s.request(method.clone(), path, &headers, body).await;
            seen.add(format!("{method} {path} as {auth:?}"), &r);
            r.assert_err(401, code);
            assert_eq!(r.msg(), table_msg(code), "{method} {path}");
        }
    }
}

#[tokio::test]
async fn every_control_plane_route_refuses_a_missing_or_wrong_admin_token() {
    let (s, seen, t, before) = before_a_matrix().await;
    control_matrix(&s, &seen, &t).await;
    // Nothing was seeded, reset, patched, minted, revoked or faulted.
    assert_eq!(state(&s, &seen).await, before);
    let faults = s.admin(Method::GET, "/_exbind/v1/faults", None).await;
    assert_eq!(faults.ok()["items"], json!([]));
    s.admin(Method::GET, "/_exbind/v1/tenants/intruder", None)
        .await
        .assert_err(404, 99991201);
    feishu(&s, &seen, Method::GET, &victim_item(), &t.north_boss, None)
        .await
        .ok();
}

/// The id secret, from the store itself.
fn id_secret(s: &Server) -> Vec<u8> {
    s.store_meta("id_secret")
}

#[tokio::test]
async fn no_token_or_secret_appears_in_the_log_the_journal_or_any_answer() {
    let s = iso_server();
    let seen = Seen::default();
    // Tokens the run handles, each with the one answer allowed to carry it.
    let mut issued: Vec<String> = Vec::new();
    let t = mint_all(&s, &seen, &mut issued).await;
    for (path, app, secret) in [
        (TENANT_TOKEN_PATH, "cli_north", "north-secret-1f9c"),
        (APP_TOKEN_PATH, "cli_south", "south-secret-3b2e"),
    ] {
        let r = s.token_call(path, app, secret).await;
        seen.add(format!("token {app}"), &r);
        for key in ["tenant_access_token", "app_access_token"] {
            if let Some(tok) = r.body[key].as_str() {
                issued.push(tok.to_string());
            }
        }
    }
    // A tenant token on the binding API, a revoked user token, a forged one.
    let tenant_token = issued.last().unwrap().clone();
    let item = victim_item();
    feishu(&s, &seen, Method::GET, &item, &tenant_token, None)
        .await
        .assert_err(400, 99991663);
    let revoked = s.mint("cli_north", "north", "n-boss").await;
    issued.push(revoked.clone());
    let r = s
        .admin(
            Method::POST,
            "/_exbind/v1/user_access_tokens/revoke",
            Some(&json!({"access_token": revoked})),
        )
        .await;
    seen.add("revoke".into(), &r);
    r.ok();
    feishu(&s, &seen, Method::GET, &item, &revoked, None)
        .await
        .assert_err(400, 99991668);
    // Everything else the matrices do, and a fault and a forced step on the way.
    victim(&s, &seen, &t).await;
    feishu_matrix(&s, &seen, &t).await;
    control_matrix(&s, &seen, &t).await;
    let r = s
        .admin(Method::POST, "/_exbind/v1/faults", Some(&json!({"method": "GET", "route": ONE_ROUTE, "times": 1, "error": {"code": 190003}})))
        .await;
    seen.add("fault".into(), &r);
    feishu(&s, &seen, Method::GET, &item, &t.north_boss, None)
        .await
        .assert_err(500, 190003);
    let r = s
        .admin(
            Method::POST,
            &format!(
                "/_exbind/v1/tenants/north/bindings/{}/advance",
                binding_id(VICTIM_ADMIN, VICTIM_EXCHANGE)
            ),
            None,
        )
        .await;
    seen.add("advance".into(), &r);
    r.ok();
    for path in [
        "/_exbind/v1/tenants",
        "/_exbind/v1/faults",
        "/_exbind/healthz",
        "/_exbind/readyz",
    ] {
        let r = s.admin(Method::GET, path, None).await;
        seen.add(format!("GET {path}"), &r);
    }
    for user in ["n-boss", "n-victim"] {
        let r = s
            .admin(
                Method::GET,
                &format!("/_exbind/v1/tenants/north/users/{user}?app_id=cli_north"),
                None,
            )
            .await;
        seen.add(format!("GET user {user}"), &r);
    }
    state(&s, &seen).await;
    // The journal, all of it, and each entry on its own.
    let (entries, pages) = s.journal_all("").await;
    assert!(entries.len() >= 20, "{}", entries.len());
    let mut journal = pages.join("\n");
    for e in &entries {
        let r = s
            .admin(
                Method::GET,
                &format!("/_exbind/v1/requests/{}", e["log_id"].as_str().unwrap()),
                None,
            )
            .await;
        journal.push_str(&r.text);
    }
    let metrics = s.metrics_text().await;

    let secret = id_secret(&s);
    let mut never: Vec<(String, String)> = vec![("the admin token".into(), s.admin_token.clone())];
    for a in APP_SECRETS {
        never.push((format!("app secret {a}"), a.to_string()));
    }
    for (how, text) in [
        (
            "hex",
            secret
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        ),
        (
            "HEX",
            secret
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<String>(),
        ),
        ("base64", b64(&secret)),
    ] {
        never.push((format!("the id secret ({how})"), text));
    }
    assert!(issued.len() >= 7, "{issued:?}");

    let log = s.stderr_text();
    assert!(log.lines().count() > 50, "the log has the run's lines");
    let answers = seen.all();
    let everything = never.iter().cloned().chain(
        issued
            .iter()
            .map(|t| ("an issued token".to_string(), t.clone())),
    );
    for (what, text) in everything {
        assert!(!log.contains(text.as_str()), "{what} in the server's log");
        assert!(!journal.contains(text.as_str()), "{what} in the journal");
        assert!(!metrics.contains(text.as_str()), "{what} in the metrics");
    }
    for (what, text) in &never {
        for (asked, answer) in &answers {
            assert!(
                !answer.contains(text.as_str()),
                "{what} in the answer to {asked}:\n{answer}"
            );
        }
    }
    // An issued token is in the answer that issued it, and in no other.
    let mut found = 0;
    for tok in &issued {
        let carrying: Vec<&String> = answers
            .iter()
            .filter(|(_, answer)| answer.contains(tok.as_str()))
            .map(|(asked, _)| asked)
            .collect();
        assert!(
            carrying.len() <= 1,
            "a token in several answers: {carrying:?}"
        );
        if let Some(asked) = carrying.first() {
            assert!(
                asked.starts_with("mint ") || asked.starts_with("token "),
                "a token in the answer to {asked}"
            );
            found += 1;
        }
    }
    assert_eq!(
        found,
        issued.len() - 1,
        "each token but the one minted aside was seen issued"
    );
    // The banner is stdout, not a log: it may print the demo token, but this run has none.
    assert!(s
        .stdout_lines()
        .iter()
        .all(|l| !never.iter().any(|(_, t)| l.contains(t.as_str()))));
}
