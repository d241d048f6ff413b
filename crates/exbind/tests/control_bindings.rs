//! The control plane's own binding create and delete, the users and apps lists, the journal's
//! binding ids, and `--console off`.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

const BINDINGS: &str = "/_exbind/v1/tenants/acme/bindings";

fn body(admin: &str, exchange: &str, user: &str) -> serde_json::Value {
    json!({"admin_account": admin, "exchange_account": exchange, "user_id": user})
}

#[tokio::test]
async fn a_binding_made_and_deleted_by_the_control_plane_is_the_api_s() {
    let s = Server::full();
    let r = s
        .admin(
            Method::POST,
            BINDINGS,
            Some(&body("exadmin@acme.example", "alice@acme.example", "alice")),
        )
        .await;
    let b = r.ok().clone();
    assert_eq!(
        (&b["status"], &b["user_id"]),
        (&json!("doing"), &json!("alice"))
    );
    let id = binding_id("exadmin@acme.example", "alice@acme.example");
    assert_eq!(b["exchange_binding_id"], id.as_str());
    let token = s.boss().await;
    s.get(&token, &pct(&id), None).await.assert(200, 0);
    // The same again answers it; the account under another user is a conflict.
    s.admin(
        Method::POST,
        BINDINGS,
        Some(&body("exadmin@acme.example", "alice@acme.example", "alice")),
    )
    .await
    .assert(200, 0);
    let r = s
        .admin(
            Method::POST,
            BINDINGS,
            Some(&body("exadmin@acme.example", "alice@acme.example", "bob")),
        )
        .await;
    r.assert_err(400, 190002);
    r.violation("exchange_account");

    let path = format!("{BINDINGS}/{id}");
    let r = s.admin(Method::DELETE, &path, None).await;
    assert_eq!(r.ok()["deleted"], id.as_str());
    s.get(&token, &pct(&id), None).await.assert_err(404, 195103);
    s.admin(Method::DELETE, &path, None)
        .await
        .assert_err(404, 99991201);
}

#[tokio::test]
async fn the_control_plane_create_checks_as_the_feishu_create_does() {
    let s = Server::full();
    let cases = [
        (
            body("nobody@acme.example", "a@x.example", "alice"),
            404,
            195106,
        ),
        (
            body("exadmin@globex.example", "a@x.example", "alice"),
            403,
            195104,
        ),
        (
            body("broken@acme.example", "a@x.example", "alice"),
            403,
            195105,
        ),
        (
            body("exadmin@acme.example", "a@x.example", "gone"),
            404,
            195100,
        ),
        (
            body("exadmin@acme.example", "a@x.example", "nobody"),
            404,
            195100,
        ),
        (json!({"admin_account": "x", "user_id": ""}), 400, 190002),
    ];
    for (b, status, code) in cases {
        s.admin(Method::POST, BINDINGS, Some(&b))
            .await
            .assert_err(status, code);
    }
    s.admin(
        Method::POST,
        "/_exbind/v1/tenants/nope/bindings",
        Some(&body("a@b", "c@d", "e")),
    )
    .await
    .assert_err(404, 99991201);
}

#[tokio::test]
async fn users_and_apps_are_listed() {
    let s = Server::full();
    let page = s
        .admin(
            Method::GET,
            "/_exbind/v1/tenants/acme/users?page_size=3",
            None,
        )
        .await;
    let data = page.ok();
    let ids: Vec<&str> = data["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alice", "bob", "boss"]);
    assert_eq!(data["has_more"], true);
    let next = s
        .admin(
            Method::GET,
            &format!(
                "/_exbind/v1/tenants/acme/users?page_size=500&page_token={}",
                data["page_token"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(next.ok()["items"][0]["user_id"], "carol");
    s.admin(
        Method::GET,
        "/_exbind/v1/tenants/acme/users?page_size=0",
        None,
    )
    .await
    .assert_err(400, 190002);
    s.admin(Method::GET, "/_exbind/v1/tenants/nope/users", None)
        .await
        .assert_err(404, 99991201);

    let apps = s.admin(Method::GET, "/_exbind/v1/apps", None).await;
    let ids: Vec<&str> = apps.ok()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["app_id"].as_str().unwrap())
        .collect();
    assert!(ids.starts_with(&["cli_acme", "cli_acme2"]), "{ids:?}");
    assert!(
        apps.text.find("secret").is_none(),
        "no secret in {}",
        apps.text
    );
}

#[tokio::test]
async fn journal_entries_name_the_binding_they_made_or_read() {
    let s = Server::full();
    let token = s.boss().await;
    let made = s
        .create(
            &token,
            "exadmin@acme.example",
            "alice@acme.example",
            "alice",
            Some("user_id"),
        )
        .await;
    // Read with another spelling of the same pair: the entry names the id as it was sent.
    let spelled = binding_id("EXADMIN@acme.example", "alice@acme.example");
    let read = s.get(&token, &pct(&spelled), None).await;
    read.assert(200, 0);
    let id = binding_id("exadmin@acme.example", "alice@acme.example");
    for (log_id, want) in [(made.log_id(), &id), (read.log_id(), &spelled)] {
        let e = s
            .admin(Method::GET, &format!("/_exbind/v1/requests/{log_id}"), None)
            .await;
        assert_eq!(e.ok()["exchange_binding_id"], want.as_str(), "{}", e.text);
    }
    s.tenant_token("cli_acme", "acme-secret").await;
    let listed = s
        .admin(Method::GET, "/_exbind/v1/requests?method=POST&route=%2Fopen-apis%2Fauth%2Fv3%2Ftenant_access_token%2Finternal", None)
        .await;
    assert!(
        listed.ok()["items"][0].get("exchange_binding_id").is_none(),
        "{}",
        listed.text
    );
}

#[tokio::test]
async fn the_console_can_be_switched_off() {
    let on = Server::full();
    let r = on.raw_request("GET", "/_exbind/console/", None, None);
    assert_eq!(r.status(), 303);
    let off = Server::full_with(&["--console", "off"]);
    let r = off.call(Method::GET, "/_exbind/console/", None, None).await;
    r.assert_err(404, 99991201);
    // The event stream is the control plane's, console or not.
    let mut ev = off.events("").await;
    off.admin(Method::DELETE, BINDINGS, None)
        .await
        .assert(200, 0);
    assert_eq!(ev.next().await.0, "binding");
}
