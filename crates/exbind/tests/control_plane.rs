//! The control plane's entity routes, health and metrics (product.md).
mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't')
        && b[13] == b':'
        && b[16] == b':'
        && (s.ends_with('Z') || s.ends_with('z') || s[19..].contains(['+', '-']))
}

async fn post_seed(s: &Server, content_type: Option<&str>, doc: &str) -> Resp {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(ct) = content_type {
        headers.push(("Content-Type", ct));
    }
    s.request(
        Method::POST,
        "/_exbind/v1/seed",
        &headers,
        Some(doc.as_bytes().to_vec()),
    )
    .await
}

#[tokio::test]
async fn admin_token_is_required() {
    let s = Server::full();
    let routes = [
        (Method::GET, "/_exbind/v1/tenants"),
        (Method::GET, "/_exbind/v1/tenants/acme"),
        (Method::GET, "/_exbind/v1/tenants/acme/users/boss"),
        (Method::GET, "/_exbind/v1/apps/cli_acme"),
        (Method::GET, "/_exbind/v1/tenants/acme/bindings"),
        (Method::POST, "/_exbind/v1/seed"),
        (Method::POST, "/_exbind/v1/user_access_tokens"),
        (Method::PATCH, "/_exbind/v1/apps/cli_acme"),
    ];
    let user = s.boss().await;
    for (m, path) in routes {
        s.call(m.clone(), path, None, Some(&json!({})))
            .await
            .assert_err(401, 99991661);
        for wrong in ["wrong-token", user.as_str(), "test-admin-token-x"] {
            s.call(m.clone(), path, Some(wrong), Some(&json!({})))
                .await
                .assert_err(401, 99991663);
        }
    }
    // Health is open.
    let r = s.call(Method::GET, "/_exbind/healthz", None, None).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(r.body["code"], 0);
}

#[tokio::test]
async fn seed_upsert_toml_and_json() {
    let s = Server::full();
    let toml = r#"
[[tenants]]
tenant_key = "initech"
name = "Initech"

[[tenants.users]]
user_id = "peter"
super_admin = true

[[tenants.users]]
user_id = "milton"
email = "milton@initech.example"

[[tenants.exchange_admins]]
account = "exadmin@initech.example"

[[apps]]
app_id = "cli_initech"
app_secret = "initech-secret"
tenants = ["initech"]
scopes = ["calendar:calendar", "calendar:calendar:readonly"]
"#;
    let r = post_seed(&s, None, toml).await;
    let d = r.ok();
    assert_eq!(
        (d["added"].as_i64(), d["updated"].as_i64()),
        (Some(5), Some(0)),
        "{}",
        r.text
    );

    // The new entities are live at once.
    let tok = s.mint("cli_initech", "initech", "peter").await;
    let b = s
        .create(
            &tok,
            "exadmin@initech.example",
            "milton@mail.example",
            "milton",
            None,
        )
        .await;
    // cli_initech has no employee-id scope: the open_id of milton is needed.
    b.assert_err(404, 195100);
    let ids = s.user_ids("initech", "milton", "cli_initech").await;
    let b = s
        .create(
            &tok,
            "exadmin@initech.example",
            "milton@mail.example",
            ids["open_id"].as_str().unwrap(),
            None,
        )
        .await;
    b.ok();

    // The same document again adds nothing.
    let r = post_seed(&s, Some("text/plain"), toml).await;
    assert_eq!(r.ok()["added"], 0, "{}", r.text);

    // JSON: update one user, add one.
    let doc = json!({"tenants": [{"tenant_key": "initech", "name": "Initech",
        "users": [{"user_id": "milton", "name": "Milton W"}, {"user_id": "bill"}]}]});
    let r = post_seed(&s, Some("application/json"), &doc.to_string()).await;
    let d = r.ok();
    assert_eq!(d["added"], 1, "{}", r.text);
    assert!(d["updated"].as_i64().unwrap() >= 1, "{}", r.text);
    let u = s
        .admin(
            Method::GET,
            "/_exbind/v1/tenants/initech/users/milton",
            None,
        )
        .await;
    let u = u.ok();
    assert_eq!(u["name"], "Milton W");
    // An optional field left out resets to its default.
    assert!(u["email"].is_null(), "{u}");
    // Other users are left alone.
    s.admin(Method::GET, "/_exbind/v1/tenants/initech/users/peter", None)
        .await
        .ok();
}

#[tokio::test]
async fn invalid_seed_applies_nothing_and_lists_violations() {
    let s = Server::full();
    let toml = r#"
[[tenants]]
tenant_key = "newco"

[[tenants.users]]
user_id = "amy"

[[tenants.users]]
user_id = "amy"

[[apps]]
app_id = "cli_newco"
app_secret = "newco-secret"
tenants = ["newco"]
scopes = ["calendar:calendar", "calendar:teleport"]
"#;
    let r = post_seed(&s, None, toml).await;
    r.assert_err(400, 190002);
    let fields: Vec<String> = r
        .field_violations()
        .iter()
        .map(|v| v["field"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        fields.iter().any(|f| f == "tenants[0].users[1].user_id"),
        "{fields:?}"
    );
    assert!(
        fields.iter().any(|f| f.starts_with("apps[0].scopes")),
        "{fields:?}"
    );
    s.admin(Method::GET, "/_exbind/v1/tenants/newco", None)
        .await
        .assert_err(404, 99991201);
    s.admin(Method::GET, "/_exbind/v1/apps/cli_newco", None)
        .await
        .assert_err(404, 99991201);

    // JSON: an unknown key.
    let doc = json!({"tenants": [{"tenant_key": "other", "colour": "red"}]});
    let r = post_seed(&s, Some("application/json"), &doc.to_string()).await;
    r.assert_err(400, 190002);
    assert!(
        r.field_violations().iter().any(|v| v["field"]
            .as_str()
            .unwrap_or_default()
            .starts_with("tenants[0]")),
        "{}",
        r.text
    );
    s.admin(Method::GET, "/_exbind/v1/tenants/other", None)
        .await
        .assert_err(404, 99991201);
    // A custom app in two tenants.
    let doc = json!({"tenants": [{"tenant_key": "other"}],
        "apps": [{"app_id": "cli_two", "app_secret": "x", "tenants": ["acme", "other"]}]});
    let r = post_seed(&s, Some("application/json"), &doc.to_string()).await;
    r.assert_err(400, 190002);
    assert!(
        r.field_violations().iter().any(|v| v["field"]
            .as_str()
            .unwrap_or_default()
            .starts_with("apps[0].tenants")),
        "{}",
        r.text
    );
    s.admin(Method::GET, "/_exbind/v1/tenants/other", None)
        .await
        .assert_err(404, 99991201);

    // A NUL character in any string, which no store keeps.
    let doc = json!({"tenants": [{"tenant_key": "nul", "users": [{"user_id": "a\u{0}b"}]}]});
    let r = post_seed(&s, Some("application/json"), &doc.to_string()).await;
    r.assert_err(400, 190002);
    r.violation("tenants[0].users[0].user_id");
    let r = post_seed(&s, None, "[[tenants]]\ntenant_key = \"nul\\u0000\"\n").await;
    r.assert_err(400, 190002);
    r.violation("tenants[0].tenant_key");
    s.admin(Method::GET, "/_exbind/v1/tenants/nul", None)
        .await
        .assert_err(404, 99991201);

    // An admin address already registered to another tenant.
    let doc = json!({"tenants": [{"tenant_key": "thief", "exchange_admins": [{"account": "EXADMIN@acme.example"}]}]});
    let r = post_seed(&s, Some("application/json"), &doc.to_string()).await;
    r.assert_err(400, 190002);
    r.violation("tenants[0].exchange_admins[0].account");
    // A field scope on a store app.
    let doc = json!({"apps": [{"app_id": "cli_store", "app_secret": "store-secret", "type": "store",
        "tenants": ["acme"], "scopes": ["contact:user.email:readonly"]}]});
    let r = post_seed(&s, Some("application/json"), &doc.to_string()).await;
    r.assert_err(400, 190002);
    assert!(
        r.field_violations().iter().any(|v| v["field"]
            .as_str()
            .unwrap_or_default()
            .starts_with("apps[0].scopes")),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn tenants_and_tenant() {
    let s = Server::full();
    let r = s.admin(Method::GET, "/_exbind/v1/tenants", None).await;
    let mut keys = Vec::new();
    find_all(r.ok(), "tenant_key", &mut keys);
    let keys: Vec<&str> = keys.iter().filter_map(|v| v.as_str()).collect();
    assert!(
        keys.contains(&"acme") && keys.contains(&"globex"),
        "{}",
        r.text
    );

    let r = s.admin(Method::GET, "/_exbind/v1/tenants/acme", None).await;
    let t = r.ok();
    assert_eq!(t["tenant_key"], "acme", "{}", r.text);
    assert_eq!(t["name"], "Acme Corp");
    assert_eq!(t["unit"], "cn");

    let r = s.admin(Method::GET, "/_exbind/v1/tenants/nope", None).await;
    r.assert_err(404, 99991201);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nope"),
        "the missing thing is named: {}",
        r.text
    );
}

#[tokio::test]
async fn user_with_and_without_app() {
    let s = Server::full();
    let r = s
        .admin(Method::GET, "/_exbind/v1/tenants/acme/users/boss", None)
        .await;
    let u = r.ok();
    assert_eq!(u["user_id"], "boss");
    assert_eq!(u["name"], "Boss");
    assert_eq!(u["email"], "boss@acme.example");
    assert_eq!(u["status"], "active");
    assert_eq!(u["super_admin"], true);
    assert!(u.get("open_id").is_none() || u["open_id"].is_null(), "{u}");

    let u = s.user_ids("acme", "bob", "cli_acme").await;
    assert_eq!(u["name"], "bob", "name defaults to the key");
    assert_eq!(u["super_admin"], false);
    let open = u["open_id"].as_str().unwrap();
    let union = u["union_id"].as_str().unwrap();
    assert!(open.starts_with("ou_") && open.len() == 35, "{open}");
    assert!(union.starts_with("on_") && union.len() == 35, "{union}");
    // Stable across calls.
    assert_eq!(s.user_ids("acme", "bob", "cli_acme").await, u);

    let g = s
        .admin(Method::GET, "/_exbind/v1/tenants/acme/users/gone", None)
        .await;
    assert_eq!(g.ok()["status"], "dismissed");

    s.admin(Method::GET, "/_exbind/v1/tenants/acme/users/ghost", None)
        .await
        .assert_err(404, 99991201);
    s.admin(Method::GET, "/_exbind/v1/tenants/nope/users/boss", None)
        .await
        .assert_err(404, 99991201);
    s.admin(
        Method::GET,
        "/_exbind/v1/tenants/acme/users/boss?app_id=cli_nope",
        None,
    )
    .await
    .assert_err(404, 99991201);
}

#[tokio::test]
async fn patch_user() {
    let s = Server::full();
    let path = "/_exbind/v1/tenants/acme/users/alice";
    let u = s
        .patch_ok(path, json!({"super_admin": true, "status": "dismissed"}))
        .await;
    assert_eq!(
        (u["super_admin"].as_bool(), u["status"].as_str()),
        (Some(true), Some("dismissed"))
    );
    let u = s.patch_ok(path, json!({"status": "active"})).await;
    assert_eq!(u["status"], "active");
    assert_eq!(u["super_admin"], true, "fields not named stay");
    let r = s
        .admin(Method::PATCH, path, Some(&json!({"status": "retired"})))
        .await;
    r.assert_err(400, 190002);
    r.violation("status");
    let r = s
        .admin(Method::PATCH, path, Some(&json!({"super_admin": "yes"})))
        .await;
    r.assert_err(400, 190002);
    r.violation("super_admin");
    s.admin(
        Method::PATCH,
        "/_exbind/v1/tenants/acme/users/ghost",
        Some(&json!({"status": "active"})),
    )
    .await
    .assert_err(404, 99991201);
}

#[tokio::test]
async fn get_and_patch_app_never_show_the_secret() {
    let s = Server::full();
    let r = s
        .admin(Method::GET, "/_exbind/v1/apps/cli_acme", None)
        .await;
    let a = r.ok();
    assert_eq!(a["app_id"], "cli_acme");
    assert_eq!(a["bot"], true);
    assert!(!r.text.contains("acme-secret"), "{}", r.text);
    let r = s
        .admin(
            Method::PATCH,
            "/_exbind/v1/apps/cli_acme",
            Some(&json!({"bot": false, "scopes": ["calendar:calendar"], "tenants": []})),
        )
        .await;
    let a = r.ok();
    assert!(!r.text.contains("acme-secret"), "{}", r.text);
    assert_eq!(a["bot"], false);
    assert_eq!(a["scopes"], json!(["calendar:calendar"]));
    assert_eq!(a["tenants"], json!([]));
    // Bad values.
    for body in [
        json!({"scopes": ["calendar:teleport"]}),
        json!({"tenants": ["acme", "globex"]}),
        json!({"bot": "maybe"}),
        json!({"unit": 5}),
    ] {
        s.admin(Method::PATCH, "/_exbind/v1/apps/cli_acme", Some(&body))
            .await
            .assert_err(400, 190002);
    }
    // An unknown tenant in the body: a bad body, or an unknown thing; never applied.
    let r = s
        .admin(
            Method::PATCH,
            "/_exbind/v1/apps/cli_acme",
            Some(&json!({"tenants": ["nope"]})),
        )
        .await;
    if r.status.as_u16() == 404 {
        r.assert_err(404, 99991201);
    } else {
        r.assert_err(400, 190002);
    }
    let r = s
        .admin(Method::GET, "/_exbind/v1/apps/cli_acme", None)
        .await;
    assert_eq!(r.ok()["tenants"], json!([]));
    s.admin(Method::GET, "/_exbind/v1/apps/cli_nope", None)
        .await
        .assert_err(404, 99991201);
}

#[tokio::test]
async fn patch_exchange_admin() {
    let s = Server::full();
    let path = "/_exbind/v1/tenants/acme/exchange_admins/exadmin@acme.example";
    let a = s.patch_ok(path, json!({"state": "failed"})).await;
    assert_eq!(a["state"], "failed");
    let a = s.patch_ok(path, json!({"state": "ok"})).await;
    assert_eq!(a["state"], "ok");
    // Addresses compare case-insensitively, in the path too.
    let a = s
        .patch_ok(
            "/_exbind/v1/tenants/acme/exchange_admins/ExAdmin@ACME.example",
            json!({"state": "failed"}),
        )
        .await;
    assert_eq!(a["state"], "failed");
    let tok = s.boss().await;
    s.get(&tok, &binding_id(ACME_ADMIN, "x@acme.example"), None)
        .await
        .assert_err(403, 195105);
    s.patch_ok(path, json!({"state": "ok"})).await;
    s.admin(Method::PATCH, path, Some(&json!({"state": "broken"})))
        .await
        .assert_err(400, 190002);
    s.admin(
        Method::PATCH,
        "/_exbind/v1/tenants/acme/exchange_admins/nobody@acme.example",
        Some(&json!({"state": "ok"})),
    )
    .await
    .assert_err(404, 99991201);
    // Another tenant's admin account is not found under this tenant.
    s.admin(
        Method::PATCH,
        "/_exbind/v1/tenants/acme/exchange_admins/exadmin@globex.example",
        Some(&json!({"state": "failed"})),
    )
    .await
    .assert_err(404, 99991201);
}

#[tokio::test]
async fn mint_rules() {
    let s = Server::full();
    let mint = |body: Value| {
        let s = &s;
        async move {
            s.admin(Method::POST, "/_exbind/v1/user_access_tokens", Some(&body))
                .await
        }
    };
    let r = mint(
        json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "alice", "expires_in": 60}),
    )
    .await;
    let d = r.ok();
    assert!(d["access_token"].as_str().unwrap().starts_with("u-"));
    assert_eq!(d["expires_in"], 60);
    assert_eq!(d["user_id"], "alice");
    assert!(d["open_id"].as_str().unwrap().starts_with("ou_"));
    assert!(d["union_id"].as_str().unwrap().starts_with("on_"));
    // Default lifetime is the token TTL.
    let r = mint(json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "alice"})).await;
    assert_eq!(r.ok()["expires_in"], 7200);
    // Dismissed users and non-admins get tokens too.
    mint(json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "gone"}))
        .await
        .ok();

    for body in [
        json!({"app_id": "cli_nope", "tenant_key": "acme", "user_id": "alice"}),
        json!({"app_id": "cli_acme", "tenant_key": "nope", "user_id": "alice"}),
        json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "ghost"}),
        // No store holds a NUL character (PostgreSQL cannot), so nothing matches one.
        json!({"app_id": "cli_acme", "tenant_key": "ac\u{0}me", "user_id": "alice"}),
        json!({"app_id": "cli_acme\u{0}", "tenant_key": "acme", "user_id": "alice"}),
    ] {
        mint(body).await.assert_err(404, 99991201);
    }
    for body in [
        // Not installed there.
        json!({"app_id": "cli_globex", "tenant_key": "acme", "user_id": "alice"}),
        // Scopes not a subset of the app's.
        json!({"app_id": "cli_readonly", "tenant_key": "acme", "user_id": "alice", "scopes": ["calendar:calendar"]}),
        json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "alice", "scopes": ["calendar:teleport"]}),
        json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "alice", "expires_in": 0}),
        json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "alice", "expires_in": -5}),
        json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "alice", "expires_in": "60"}),
        json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "alice", "expires_in": 1.5}),
        json!({"tenant_key": "acme", "user_id": "alice"}),
    ] {
        mint(body).await.assert_err(400, 190002);
    }
}

#[tokio::test]
async fn bindings_list_pages_in_a_stable_order() {
    let s = Server::full();
    let tok = s.boss().await;
    let users = ["alice", "bob", "carol", "dave", "erin"];
    for u in users {
        s.bind(&tok, ACME_ADMIN, &format!("{u}.ex@acme.example"), u)
            .await;
    }
    let page = |q: String| {
        let s = &s;
        async move {
            let r = s
                .admin(
                    Method::GET,
                    &format!("/_exbind/v1/tenants/acme/bindings{q}"),
                    None,
                )
                .await;
            r.ok().clone()
        }
    };
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let q = match &token {
            None => "?page_size=2".to_string(),
            Some(t) => format!("?page_size=2&page_token={}", pct(t)),
        };
        let d = page(q).await;
        let items = d["items"].as_array().unwrap().clone();
        sizes.push(items.len());
        for it in &items {
            seen.push(it["exchange_binding_id"].as_str().unwrap().to_string());
            let ex = it["exchange_account"].as_str().unwrap();
            let user = ex.split('.').next().unwrap();
            assert_eq!(it["user_id"], user, "the configured user id: {it}");
            assert_eq!(it["admin_account"], ACME_ADMIN);
            assert_eq!(it["status"], "doing");
            assert_eq!(
                it["exchange_binding_id"],
                binding_id(ACME_ADMIN, ex).as_str()
            );
            assert!(is_rfc3339(it["created_at"].as_str().unwrap()), "{it}");
            assert!(is_rfc3339(it["updated_at"].as_str().unwrap()), "{it}");
            assert!(it.get("reason").is_none() || it["reason"].is_null(), "{it}");
        }
        if d["has_more"] == true {
            token = Some(d["page_token"].as_str().unwrap().to_string());
        } else {
            assert_eq!(d["has_more"], false);
            break;
        }
    }
    assert_eq!(sizes, [2, 2, 1]);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "{seen:?}");
    // Stable order: a single big page lists them the same way.
    let all = page("?page_size=500".to_string()).await;
    let order: Vec<String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["exchange_binding_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order, seen);
    assert_eq!(all["has_more"], false);
    // The other tenant's list is empty.
    assert!(s.list_bindings("globex").await.is_empty());
    s.admin(Method::GET, "/_exbind/v1/tenants/nope/bindings", None)
        .await
        .assert_err(404, 99991201);
}

#[tokio::test]
async fn bindings_list_page_size_limits() {
    let s = Server::full();
    for q in ["?page_size=-1", "?page_size=abc"] {
        s.admin(
            Method::GET,
            &format!("/_exbind/v1/tenants/acme/bindings{q}"),
            None,
        )
        .await
        .assert_err(400, 190002);
    }
    let r = s
        .admin(
            Method::GET,
            "/_exbind/v1/tenants/acme/bindings?page_size=501",
            None,
        )
        .await;
    // At most 500: either rejected or clamped, never more.
    if r.status.as_u16() != 200 {
        r.assert_err(400, 190002);
    }
    let r = s
        .admin(
            Method::GET,
            "/_exbind/v1/tenants/acme/bindings?page_token=garbage!!",
            None,
        )
        .await;
    r.assert_err(400, 190002);
}

#[tokio::test]
async fn health_and_metrics() {
    let s = Server::full();
    for path in ["/_exbind/healthz", "/_exbind/readyz"] {
        let r = s.call(Method::GET, path, None, None).await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text);
        assert_eq!(r.body["code"], 0, "{}", r.text);
        r.assert_json_content_type();
    }
    // Make something to count.
    let tok = s.boss().await;
    s.get(&tok, &binding_id(ACME_ADMIN, "x@acme.example"), None)
        .await
        .assert_err(404, 195103);
    let resp = s.http.get(s.url("/_exbind/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers().contains_key("x-tt-logid"),
        "every response carries X-Tt-Logid"
    );
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        ct.starts_with("text/plain") || ct.starts_with("application/openmetrics-text"),
        "{ct}"
    );
    let text = resp.text().await.unwrap();
    assert!(text.contains("# TYPE"), "{text}");
    assert!(text.contains("# HELP"), "{text}");
    assert!(serde_json::from_str::<Value>(&text).is_err());
    if skip_in_cluster("metrics are per server; this scrape may reach another one") {
        return;
    }
    assert!(
        text.contains("195103"),
        "requests are counted by code: {text}"
    );
}

#[tokio::test]
async fn lifetimes_too_long_to_represent_are_rejected_not_overflowed() {
    let s = Server::basic();
    for expires_in in [i64::MAX, 9_223_372_036_854_775, 10 * 365 * 24 * 3600 + 1] {
        let r = s
            .admin(
                Method::POST,
                "/_exbind/v1/user_access_tokens",
                Some(&json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "boss", "expires_in": expires_in})),
            )
            .await;
        r.assert_err(400, 190002);
        assert_eq!(
            r.body["error"]["field_violations"][0]["field"],
            "expires_in"
        );
        let r = s
            .admin(
                Method::POST,
                "/_exbind/v1/faults",
                Some(
                    &json!({"method": "GET", "route": "/open-apis/calendar/v4/exchange_bindings",
                             "latency_ms": 1, "expires_in": expires_in}),
                ),
            )
            .await;
        r.assert_err(400, 190002);
    }
    // Ten years is still fine.
    s.mint_with(json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "boss", "expires_in": 10 * 365 * 24 * 3600}))
        .await;
}
