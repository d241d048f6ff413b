//! The check pipeline of contract §4.1: each step's error reached as a user would, and the
//! order between steps. (Token steps are in tokens.rs, quotas and budgets in quotas.rs.)
mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

async fn mint_scoped(s: &Server, app: &str, user: &str, scopes: &[&str]) -> String {
    s.mint_with(json!({"app_id": app, "tenant_key": "acme", "user_id": user, "scopes": scopes}))
        .await
}

fn pairs(kind: &str, scopes: &[&str]) -> Vec<(String, String)> {
    scopes
        .iter()
        .map(|s| (kind.to_string(), s.to_string()))
        .collect()
}

// ---------------------------------------------------------------- step 3: install and unit

#[tokio::test]
async fn uninstalled_app_gives_190006() {
    let s = Server::full();
    let tok = s.boss().await;
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    s.get(&tok, &id, None).await.assert_err(404, 195103);
    s.patch_ok("/_exbind/v1/apps/cli_acme", json!({"tenants": []}))
        .await;
    s.get(&tok, &id, None).await.assert_err(403, 190006);
    s.delete(&tok, &id).await.assert_err(403, 190006);
    s.create(&tok, ACME_ADMIN, "x@acme.example", "alice", Some("user_id"))
        .await
        .assert_err(403, 190006);
    // Reinstalled, the same token works again.
    s.patch_ok("/_exbind/v1/apps/cli_acme", json!({"tenants": ["acme"]}))
        .await;
    s.get(&tok, &id, None).await.assert_err(404, 195103);
}

#[tokio::test]
async fn unit_mismatch_gives_190006() {
    let s = Server::full();
    let tok = s.boss().await;
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    let app = s
        .patch_ok("/_exbind/v1/apps/cli_acme", json!({"unit": "sg"}))
        .await;
    assert_eq!(app["unit"], "sg", "{app}");
    s.get(&tok, &id, None).await.assert_err(403, 190006);
    s.create(&tok, ACME_ADMIN, "x@acme.example", "alice", Some("user_id"))
        .await
        .assert_err(403, 190006);
    s.patch_ok("/_exbind/v1/apps/cli_acme", json!({"unit": "cn"}))
        .await;
    s.get(&tok, &id, None).await.assert_err(404, 195103);
}

// ------------------------------------------------------------------- step 5 and 6: scopes

#[tokio::test]
async fn app_without_method_scope_gives_99991672() {
    let s = Server::full();
    let tok = s.mint("cli_readonly", "acme", "boss").await;
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    let r = s.delete(&tok, &id).await;
    r.assert_err_msg(400, 99991672, &scope_msg(&DELETE_SCOPES));
    assert_eq!(
        r.permission_violations(),
        pairs("action_scope_required", &DELETE_SCOPES)
    );
    assert_eq!(
        r.body["msg"],
        "Access denied. One of the following scopes is required: [calendar:calendar, calendar:exchange.bindings:delete]."
    );
    let r = s
        .create(&tok, ACME_ADMIN, "x@acme.example", "alice", Some("user_id"))
        .await;
    r.assert_err_msg(400, 99991672, &scope_msg(&CREATE_SCOPES));
    assert_eq!(
        r.permission_violations(),
        pairs("action_scope_required", &CREATE_SCOPES)
    );
    // The scope it holds lets it read.
    s.get(&tok, &id, None).await.assert_err(404, 195103);

    // `calendar:calendar` alone does not open get (the docs' own list).
    s.patch_ok(
        "/_exbind/v1/apps/cli_readonly",
        json!({"scopes": ["calendar:calendar"]}),
    )
    .await;
    let r = s.get(&tok, &id, None).await;
    r.assert_err_msg(400, 99991672, &scope_msg(&GET_SCOPES));
    assert_eq!(
        r.permission_violations(),
        pairs("action_scope_required", &GET_SCOPES)
    );
}

#[tokio::test]
async fn create_accepts_the_readonly_scope() {
    let s = Server::full();
    s.patch_ok(
        "/_exbind/v1/apps/cli_readonly",
        json!({"scopes": ["calendar:calendar:readonly"]}),
    )
    .await;
    let tok = s.mint("cli_readonly", "acme", "boss").await;
    let alice = s.user_ids("acme", "alice", "cli_readonly").await;
    let r = s
        .create(
            &tok,
            ACME_ADMIN,
            "alice.ro@acme.example",
            alice["open_id"].as_str().unwrap(),
            None,
        )
        .await;
    assert_eq!(r.ok()["status"], "doing");
}

#[tokio::test]
async fn token_without_granted_scope_gives_99991679() {
    let s = Server::full();
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    let none = mint_scoped(&s, "cli_acme", "boss", &[]).await;
    let r = s.get(&none, &id, None).await;
    r.assert_err_msg(400, 99991679, &privilege_msg(&GET_SCOPES));
    assert_eq!(
        r.permission_violations(),
        pairs("action_privilege_required", &GET_SCOPES)
    );
    s.delete(&none, &id)
        .await
        .assert_err_msg(400, 99991679, &privilege_msg(&DELETE_SCOPES));
    s.create(
        &none,
        ACME_ADMIN,
        "x@acme.example",
        "alice",
        Some("user_id"),
    )
    .await
    .assert_err_msg(400, 99991679, &privilege_msg(&CREATE_SCOPES));

    // A subset: read only.
    let read = mint_scoped(&s, "cli_acme", "boss", &["calendar:exchange.bindings:read"]).await;
    s.get(&read, &id, None).await.assert_err(404, 195103);
    let r = s.delete(&read, &id).await;
    r.assert_err_msg(400, 99991679, &privilege_msg(&DELETE_SCOPES));
    assert_eq!(
        r.permission_violations(),
        pairs("action_privilege_required", &DELETE_SCOPES)
    );
}

#[tokio::test]
async fn privileges_listed_are_the_method_scopes_the_app_holds() {
    let s = Server::full();
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    let tok = mint_scoped(&s, "cli_acme", "boss", &["calendar:calendar"]).await;
    // The app now holds, of get's scopes, only `calendar:exchange.bindings:read`.
    s.patch_ok(
        "/_exbind/v1/apps/cli_acme",
        json!({"scopes": ["calendar:calendar", "calendar:exchange.bindings:read"]}),
    )
    .await;
    let r = s.get(&tok, &id, None).await;
    r.assert_err_msg(
        400,
        99991679,
        &privilege_msg(&["calendar:exchange.bindings:read"]),
    );
    assert_eq!(
        r.permission_violations(),
        pairs(
            "action_privilege_required",
            &["calendar:exchange.bindings:read"]
        )
    );
    // Delete: token and app both hold calendar:calendar.
    s.delete(&tok, &id).await.assert_err(404, 195103);
}

#[tokio::test]
async fn granted_scope_removed_from_the_app_no_longer_counts() {
    let s = Server::full();
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    let tok = mint_scoped(&s, "cli_acme", "boss", &["calendar:exchange.bindings:read"]).await;
    s.get(&tok, &id, None).await.assert_err(404, 195103);
    s.patch_ok(
        "/_exbind/v1/apps/cli_acme",
        json!({"scopes": ["calendar:calendar:readonly"]}),
    )
    .await;
    // App holds a get scope (readonly), the token only the removed one.
    s.get(&tok, &id, None).await.assert_err_msg(
        400,
        99991679,
        &privilege_msg(&["calendar:calendar:readonly"]),
    );
}

// ------------------------------------------------------------------- step 7: user_id_type

#[tokio::test]
async fn bad_user_id_type_gives_190002() {
    let s = Server::full();
    let tok = s.boss().await;
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    for (query, value) in [
        ("email", Some("email")),
        ("", Some("")),
        ("OPEN_ID", Some("OPEN_ID")),
    ] {
        let r = s.get(&tok, &id, Some(query)).await;
        r.assert_err(400, 190002);
        let v = r.violation("user_id_type");
        if let Some(value) = value {
            assert_eq!(v["value"], value, "{}", r.text);
        }
        let r = s
            .create(&tok, ACME_ADMIN, "x@acme.example", "alice", Some(query))
            .await;
        r.assert_err(400, 190002);
        r.violation("user_id_type");
    }
    // Given twice, even with the same valid value.
    let r = s
        .call(
            Method::GET,
            &format!("{BINDINGS}/{id}?user_id_type=open_id&user_id_type=open_id"),
            Some(&tok),
            None,
        )
        .await;
    r.assert_err(400, 190002);
    r.violation("user_id_type");
    let r = s
        .call(
            Method::POST,
            &format!("{BINDINGS}?user_id_type=user_id&user_id_type=open_id"),
            Some(&tok),
            Some(&json!({"admin_account": ACME_ADMIN, "exchange_account": "x@acme.example", "user_id": "alice"})),
        )
        .await;
    r.assert_err(400, 190002);
    r.violation("user_id_type");
}

#[tokio::test]
async fn delete_ignores_user_id_type() {
    let s = Server::full();
    let tok = s.boss().await;
    let b = s
        .bind(&tok, ACME_ADMIN, "alice.x@acme.example", "alice")
        .await;
    let id = b["exchange_binding_id"].as_str().unwrap();
    let r = s
        .call(
            Method::DELETE,
            &format!("{BINDINGS}/{id}?user_id_type=bogus&user_id_type=again"),
            Some(&tok),
            None,
        )
        .await;
    r.ok();
}

#[tokio::test]
async fn user_id_type_user_id_needs_employee_id_scope() {
    let s = Server::full();
    let tok = s.mint("cli_noemail", "acme", "boss").await;
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    let r = s.get(&tok, &id, Some("user_id")).await;
    r.assert_err_msg(400, 99991672, &scope_msg(&[EMPLOYEE_ID_SCOPE]));
    assert_eq!(
        r.permission_violations(),
        pairs("field_scope_required", &[EMPLOYEE_ID_SCOPE])
    );
    let r = s
        .create(&tok, ACME_ADMIN, "x@acme.example", "alice", Some("user_id"))
        .await;
    r.assert_err_msg(400, 99991672, &scope_msg(&[EMPLOYEE_ID_SCOPE]));
    // The other types work, and delete ignores the parameter.
    s.get(&tok, &id, Some("open_id"))
        .await
        .assert_err(404, 195103);
    s.get(&tok, &id, Some("union_id"))
        .await
        .assert_err(404, 195103);
    let r = s
        .call(
            Method::DELETE,
            &format!("{BINDINGS}/{id}?user_id_type=user_id"),
            Some(&tok),
            None,
        )
        .await;
    r.assert_err(404, 195103);
}

// --------------------------------------------------------------------------- step 8: bot

#[tokio::test]
async fn app_without_bot_gives_190007() {
    let s = Server::full();
    let tok = s.mint("cli_nobot", "acme", "boss").await;
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    s.get(&tok, &id, None).await.assert_err(404, 190007);
    s.delete(&tok, &id).await.assert_err(404, 190007);

    let tok = s.boss().await;
    s.get(&tok, &id, None).await.assert_err(404, 195103);
    let app = s
        .patch_ok("/_exbind/v1/apps/cli_acme", json!({"bot": false}))
        .await;
    assert_eq!(app["bot"], false, "{app}");
    s.get(&tok, &id, None).await.assert_err(404, 190007);
    s.create(&tok, ACME_ADMIN, "x@acme.example", "alice", Some("user_id"))
        .await
        .assert_err(404, 190007);
    s.patch_ok("/_exbind/v1/apps/cli_acme", json!({"bot": true}))
        .await;
    s.get(&tok, &id, None).await.assert_err(404, 195103);
}

// ------------------------------------------------------------------------ step 10: caller

#[tokio::test]
async fn dismissed_caller_gives_195100() {
    let s = Server::full();
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    let gone = s.mint("cli_acme", "acme", "gone").await;
    s.get(&gone, &id, None).await.assert_err(404, 195100);
    s.delete(&gone, &id).await.assert_err(404, 195100);
    s.create(
        &gone,
        ACME_ADMIN,
        "x@acme.example",
        "alice",
        Some("user_id"),
    )
    .await
    .assert_err(404, 195100);

    // Dismissing a super admin later takes effect on their existing token.
    let boss = s.boss().await;
    s.get(&boss, &id, None).await.assert_err(404, 195103);
    let u = s
        .patch_ok(
            "/_exbind/v1/tenants/acme/users/boss",
            json!({"status": "dismissed"}),
        )
        .await;
    assert_eq!(u["status"], "dismissed", "{u}");
    s.get(&boss, &id, None).await.assert_err(404, 195100);
}

#[tokio::test]
async fn non_admin_caller_gives_195101() {
    let s = Server::full();
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    let alice = s.mint("cli_acme", "acme", "alice").await;
    s.get(&alice, &id, None).await.assert_err(403, 195101);
    s.delete(&alice, &id).await.assert_err(403, 195101);
    s.create(&alice, ACME_ADMIN, "x@acme.example", "bob", Some("user_id"))
        .await
        .assert_err(403, 195101);
    // Promoted, alice may; demoted, the boss may not.
    s.patch_ok(
        "/_exbind/v1/tenants/acme/users/alice",
        json!({"super_admin": true}),
    )
    .await;
    s.get(&alice, &id, None).await.assert_err(404, 195103);
    let boss = s.boss().await;
    s.patch_ok(
        "/_exbind/v1/tenants/acme/users/boss",
        json!({"super_admin": false}),
    )
    .await;
    s.get(&boss, &id, None).await.assert_err(403, 195101);
}

// --------------------------------------------------------- step 11: the methods' own checks

#[tokio::test]
async fn admin_account_checks_on_every_method() {
    let s = Server::full();
    let tok = s.boss().await;
    let cases = [
        ("nobody@nowhere.example", 404, 195106),
        (GLOBEX_ADMIN, 403, 195104),
        ("broken@acme.example", 403, 195105),
    ];
    for (admin, status, code) in cases {
        s.create(&tok, admin, "x@acme.example", "alice", Some("user_id"))
            .await
            .assert_err(status, code);
        let id = binding_id(admin, "x@acme.example");
        s.get(&tok, &id, None).await.assert_err(status, code);
        s.delete(&tok, &id).await.assert_err(status, code);
    }
    // A known admin account, no binding.
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    s.get(&tok, &id, None).await.assert_err(404, 195103);
    s.delete(&tok, &id).await.assert_err(404, 195103);
}

#[tokio::test]
async fn admin_state_failed_via_control_plane_gives_195105() {
    let s = Server::full();
    let tok = s.boss().await;
    let b = s
        .bind(&tok, ACME_ADMIN, "alice.x@acme.example", "alice")
        .await;
    let id = b["exchange_binding_id"].as_str().unwrap().to_string();
    let a = s
        .patch_ok(
            "/_exbind/v1/tenants/acme/exchange_admins/exadmin@acme.example",
            json!({"state": "failed"}),
        )
        .await;
    assert_eq!(a["state"], "failed", "{a}");
    s.get(&tok, &id, None).await.assert_err(403, 195105);
    s.delete(&tok, &id).await.assert_err(403, 195105);
    s.create(
        &tok,
        ACME_ADMIN,
        "bob.x@acme.example",
        "bob",
        Some("user_id"),
    )
    .await
    .assert_err(403, 195105);
    // Back to ok, the account works again.
    s.patch_ok(
        "/_exbind/v1/tenants/acme/exchange_admins/exadmin@acme.example",
        json!({"state": "ok"}),
    )
    .await;
    s.get(&tok, &id, None).await.ok();
}

#[tokio::test]
async fn admin_going_failed_moves_syncing_bindings_to_err() {
    let s = Server::full();
    let tok = s.boss().await;
    let b = s
        .bind(&tok, ACME_ADMIN, "alice.x@acme.example", "alice")
        .await;
    let id = b["exchange_binding_id"].as_str().unwrap().to_string();
    let path = "/_exbind/v1/tenants/acme/exchange_admins/exadmin@acme.example";
    s.patch_ok(path, json!({"state": "failed"})).await;
    s.patch_ok(path, json!({"state": "ok"})).await;
    // Contract §2: its bindings still syncing went to `err`, and stay there.
    let r = s.get(&tok, &id, None).await;
    assert_eq!(r.ok()["status"], "err", "{}", r.text);
    // The control plane shows the reason.
    let items = s.list_bindings("acme").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"], "err");
    assert!(
        items[0]["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{}",
        items[0]
    );
}

#[tokio::test]
async fn seeded_unit_mismatch_gives_190006() {
    let seed = r#"
[[tenants]]
tenant_key = "sgco"
unit = "sg"

[[tenants.users]]
user_id = "boss"
super_admin = true

[[tenants]]
tenant_key = "cnco"

[[tenants.users]]
user_id = "boss"
super_admin = true

[[apps]]
app_id = "cli_sg"
app_secret = "sg-secret"
unit = "sg"
tenants = ["sgco"]
scopes = ["calendar:calendar:readonly"]

[[apps]]
app_id = "cli_cn_in_sg"
app_secret = "cn-secret"
tenants = ["sgco"]
scopes = ["calendar:calendar:readonly"]

[[apps]]
app_id = "cli_sg_in_cn"
app_secret = "sg2-secret"
unit = "sg"
tenants = ["cnco"]
scopes = ["calendar:calendar:readonly"]
"#;
    let s = Server::builder().seed(seed).start();
    let id = binding_id("nobody@x.example", "x@y.example");
    let ok = s.mint("cli_sg", "sgco", "boss").await;
    s.get(&ok, &id, None).await.assert_err(404, 195106);
    let bad = s.mint("cli_cn_in_sg", "sgco", "boss").await;
    s.get(&bad, &id, None).await.assert_err(403, 190006);
    let bad = s.mint("cli_sg_in_cn", "cnco", "boss").await;
    s.get(&bad, &id, None).await.assert_err(403, 190006);
}

#[tokio::test]
async fn target_user_problems_give_195100() {
    let s = Server::full();
    let tok = s.boss().await;
    let other_app = s.user_ids("acme", "alice", "cli_other").await;
    let gina = s.user_ids("globex", "gina", "cli_globex").await;
    let cases: Vec<(String, &str)> = vec![
        ("nobody".into(), "user_id"),
        ("left".into(), "user_id"),
        ("gina".into(), "user_id"),
        // An open_id another app was given.
        (other_app["open_id"].as_str().unwrap().into(), "open_id"),
        // Another developer's union_id.
        (other_app["union_id"].as_str().unwrap().into(), "union_id"),
        // A user of another tenant.
        (gina["open_id"].as_str().unwrap().into(), "open_id"),
        (format!("ou_{}", "0".repeat(32)), "open_id"),
        ("alice".into(), "open_id"),
    ];
    for (i, (user, kind)) in cases.iter().enumerate() {
        let r = s
            .create(
                &tok,
                ACME_ADMIN,
                &format!("t{i}@acme.example"),
                user,
                Some(kind),
            )
            .await;
        r.assert_err(404, 195100);
    }
}

// --------------------------------------------------------------------- order of the steps

#[tokio::test]
async fn order_token_steps_come_first() {
    let s = Server::full();
    let tenant = s.tenant_token("cli_acme", "acme-secret").await;
    // No Authorization and a bad id: 99991661; a tenant token and a bad id: 99991663.
    let r = s
        .call(Method::GET, &format!("{BINDINGS}/!!!"), None, None)
        .await;
    r.assert_err(400, 99991661);
    s.get(&tenant, "!!!", None).await.assert_err(400, 99991663);
    s.delete(&tenant, "!!!").await.assert_err(400, 99991663);
    s.create(&tenant, "", "", "", Some("bogus"))
        .await
        .assert_err(400, 99991663);
    s.get("junk", "!!!", Some("bogus"))
        .await
        .assert_err(400, 99991671);

    // Expired or revoked beats an uninstalled app (step 2 before 3).
    let short = s
        .mint_with(
            json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "boss", "expires_in": 1}),
        )
        .await;
    let revoked = s.boss().await;
    s.admin(
        Method::POST,
        "/_exbind/v1/user_access_tokens/revoke",
        Some(&json!({"access_token": revoked})),
    )
    .await
    .ok();
    s.patch_ok("/_exbind/v1/apps/cli_acme", json!({"tenants": []}))
        .await;
    s.get(&revoked, "!!!", None).await.assert_err(400, 99991668);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    s.get(&short, "!!!", None).await.assert_err(400, 99991677);
}

#[tokio::test]
async fn order_install_before_scope() {
    let s = Server::full();
    let tok = mint_scoped(&s, "cli_readonly", "alice", &[]).await;
    s.patch_ok("/_exbind/v1/apps/cli_readonly", json!({"tenants": []}))
        .await;
    // Fails install, scope, privilege and super-admin checks: the install error wins.
    s.delete(&tok, "!!!").await.assert_err(403, 190006);
}

#[tokio::test]
async fn order_scope_before_privilege_params_bot_and_caller() {
    let s = Server::full();
    // cli_readonly lacks delete scopes; alice is no super admin; the token grants nothing.
    let tok = mint_scoped(&s, "cli_readonly", "alice", &[]).await;
    s.patch_ok("/_exbind/v1/apps/cli_readonly", json!({"bot": false}))
        .await;
    let r = s
        .call(
            Method::POST,
            &format!("{BINDINGS}?user_id_type=bogus"),
            Some(&tok),
            Some(&json!({})),
        )
        .await;
    r.assert_err_msg(400, 99991672, &scope_msg(&CREATE_SCOPES));
    s.delete(&tok, "!!!")
        .await
        .assert_err_msg(400, 99991672, &scope_msg(&DELETE_SCOPES));
    // A scope failure and a non-admin caller: the scope error.
    let alice = s.mint("cli_readonly", "acme", "alice").await;
    s.delete(&alice, &binding_id(ACME_ADMIN, "x@acme.example"))
        .await
        .assert_err_msg(400, 99991672, &scope_msg(&DELETE_SCOPES));
}

#[tokio::test]
async fn order_privilege_before_params_bot_and_caller() {
    let s = Server::full();
    let tok = mint_scoped(&s, "cli_nobot", "alice", &[]).await;
    s.get(&tok, "!!!", Some("bogus")).await.assert_err_msg(
        400,
        99991679,
        &privilege_msg(&GET_SCOPES),
    );
}

#[tokio::test]
async fn order_user_id_type_before_bot_and_caller() {
    let s = Server::full();
    let tok = s.mint("cli_nobot", "acme", "alice").await;
    let r = s.get(&tok, "!!!", Some("bogus")).await;
    r.assert_err(400, 190002);
    r.violation("user_id_type");
    // Missing employee-id scope beats a missing bot, too.
    s.patch_ok(
        "/_exbind/v1/apps/cli_nobot",
        json!({"scopes": ["calendar:calendar:readonly"]}),
    )
    .await;
    let tok = s.mint("cli_nobot", "acme", "alice").await;
    s.get(&tok, "!!!", Some("user_id")).await.assert_err_msg(
        400,
        99991672,
        &scope_msg(&[EMPLOYEE_ID_SCOPE]),
    );
}

#[tokio::test]
async fn order_bot_before_caller() {
    let s = Server::full();
    let gone = s.mint("cli_nobot", "acme", "gone").await;
    s.get(&gone, "!!!", None).await.assert_err(404, 190007);
    let alice = s.mint("cli_nobot", "acme", "alice").await;
    s.delete(&alice, "!!!").await.assert_err(404, 190007);
}

#[tokio::test]
async fn order_caller_before_method_checks() {
    let s = Server::full();
    let alice = s.mint("cli_acme", "acme", "alice").await;
    let left = s.mint("cli_acme", "acme", "left").await;
    // A bad id with a non-admin caller: 195101; with a dismissed one: 195100.
    s.get(&alice, "!!!", None).await.assert_err(403, 195101);
    s.delete(&alice, "%ZZ").await.assert_err(403, 195101);
    s.get(&left, "!!!", None).await.assert_err(404, 195100);
    // A dismissed non-admin is reported as dismissed.
    s.delete(&left, &binding_id(ACME_ADMIN, "x@acme.example"))
        .await
        .assert_err(404, 195100);
    // A bad body or unknown admin with a non-admin caller: 195101.
    let r = s
        .call(
            Method::POST,
            BINDINGS,
            Some(&alice),
            Some(&json!({"admin_account": 1})),
        )
        .await;
    r.assert_err(403, 195101);
    s.create(
        &alice,
        "nobody@nowhere.example",
        "x@acme.example",
        "bob",
        Some("user_id"),
    )
    .await
    .assert_err(403, 195101);
}

#[tokio::test]
async fn order_within_create() {
    let s = Server::full();
    let tok = s.boss().await;
    // A bad body wins over an unknown admin account.
    let r = s
        .create(
            &tok,
            "nobody@nowhere.example",
            "no-at-sign",
            "alice",
            Some("user_id"),
        )
        .await;
    r.assert_err(400, 190002);
    r.violation("exchange_account");
    // Admin checks come before the target user.
    s.create(
        &tok,
        "nobody@nowhere.example",
        "x@acme.example",
        "ghost",
        Some("user_id"),
    )
    .await
    .assert_err(404, 195106);
    s.create(
        &tok,
        GLOBEX_ADMIN,
        "x@acme.example",
        "ghost",
        Some("user_id"),
    )
    .await
    .assert_err(403, 195104);
    s.create(
        &tok,
        "broken@acme.example",
        "x@acme.example",
        "left",
        Some("user_id"),
    )
    .await
    .assert_err(403, 195105);
    // The target user comes before a conflict on the Exchange account.
    s.bind(&tok, ACME_ADMIN, "taken@acme.example", "alice")
        .await;
    s.create(
        &tok,
        ACME_ADMIN,
        "taken@acme.example",
        "left",
        Some("user_id"),
    )
    .await
    .assert_err(404, 195100);
}

#[tokio::test]
async fn order_within_get_and_delete() {
    let s = Server::full();
    let tok = s.boss().await;
    // Decode before admin checks; admin checks before lookup.
    s.get(&tok, &b64(b"onlyonepart"), None)
        .await
        .assert_err(400, 195102);
    s.get(
        &tok,
        &binding_id("nobody@nowhere.example", "x@acme.example"),
        None,
    )
    .await
    .assert_err(404, 195106);
    s.delete(&tok, &binding_id(GLOBEX_ADMIN, "x@acme.example"))
        .await
        .assert_err(403, 195104);
}
