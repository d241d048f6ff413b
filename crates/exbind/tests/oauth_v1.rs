//! The v1 routes the official SDKs call (oauth.md §4): `oidc/access_token`,
//! `oidc/refresh_access_token`, the older `access_token` / `refresh_access_token`, all with
//! an app_access_token, and `GET /open-apis/authen/v1/user_info` with its field-scope rule.
//! (tests/sdk.rs drives the same routes through both official SDKs.)

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const SEED: &str = r#"
[[tenants]]
tenant_key = "acme"

[[tenants.users]]
user_id = "boss"
name = "Boss"
email = "boss@acme.example"
en_name = "The Boss"
mobile = "+86 138 0000 0000"
employee_no = "E-001"
avatar_url = "https://avatars.example/boss.png"

[[apps]]
app_id = "cli_all"
app_secret = "all-secret"
tenants = ["acme"]
scopes = ["contact:user.email:readonly", "contact:user.employee_id:readonly",
          "contact:user.phone:readonly", "offline_access"]

[[apps]]
app_id = "cli_other"
app_secret = "other-secret"
tenants = ["acme"]
"#;

const OIDC: &str = "/open-apis/authen/v1/oidc/access_token";
const OIDC_REFRESH: &str = "/open-apis/authen/v1/oidc/refresh_access_token";
const OLD: &str = "/open-apis/authen/v1/access_token";
const OLD_REFRESH: &str = "/open-apis/authen/v1/refresh_access_token";
const USER_INFO: &str = "/open-apis/authen/v1/user_info";

async fn app_token(s: &Server, app: &str, secret: &str) -> String {
    let r = s
        .call(
            Method::POST,
            APP_TOKEN_PATH,
            None,
            Some(&json!({"app_id": app, "app_secret": secret})),
        )
        .await;
    r.body["app_access_token"].as_str().unwrap().to_string()
}

async fn code(s: &Server, scope: Option<&str>) -> String {
    let mut body = json!({"app_id": "cli_all", "tenant_key": "acme", "user_id": "boss",
                          "redirect_uri": "http://127.0.0.1:1/cb"});
    if let Some(sc) = scope {
        body["scope"] = json!(sc);
    }
    s.issue_code(&body).await["code"]
        .as_str()
        .unwrap()
        .to_string()
}

fn by_code(code: &str) -> Value {
    json!({"grant_type": "authorization_code", "code": code})
}

#[tokio::test]
async fn the_oidc_routes_exchange_and_refresh_in_the_envelope() {
    let s = Server::builder().seed(SEED).start();
    let app = app_token(&s, "cli_all", "all-secret").await;
    // A grant without offline_access: the v1 routes issue a refresh token all the same.
    let c = code(&s, Some("contact:user.email:readonly")).await;
    let r = s
        .call(Method::POST, OIDC, Some(&app), Some(&by_code(&c)))
        .await;
    let d = r.ok().clone();
    assert!(d["access_token"].as_str().unwrap().starts_with("u-"), "{d}");
    assert!(
        d["refresh_token"].as_str().unwrap().starts_with("ur-"),
        "{d}"
    );
    assert_eq!(d["token_type"], "Bearer");
    assert_eq!(d["expires_in"], 7200);
    assert_eq!(d["refresh_expires_in"], 604800);
    assert_eq!(d["scope"], "contact:user.email:readonly");
    assert!(
        d.get("open_id").is_none(),
        "the oidc routes carry no user info"
    );
    let body = json!({"grant_type": "refresh_token", "refresh_token": d["refresh_token"]});
    let r = s
        .call(Method::POST, OIDC_REFRESH, Some(&app), Some(&body))
        .await;
    assert_ne!(r.ok()["refresh_token"], d["refresh_token"]);
    // §3's codes in the envelope, with §3's status.
    let r = s
        .call(Method::POST, OIDC_REFRESH, Some(&app), Some(&body))
        .await;
    r.assert_err_msg(400, 20073, "the refresh token has already been used");
    let r = s
        .call(Method::POST, OIDC, Some(&app), Some(&by_code(&c)))
        .await;
    r.assert(400, 20065);
    let r = s
        .call(Method::POST, OIDC, Some(&app), Some(&by_code("nothing")))
        .await;
    r.assert(400, 20003);
    let r = s
        .call(
            Method::POST,
            OIDC,
            Some(&app),
            Some(&json!({"grant_type": "refresh_token", "code": c})),
        )
        .await;
    r.assert(400, 20036);
    let r = s
        .call(
            Method::POST,
            OIDC,
            Some(&app),
            Some(&json!({"grant_type": "authorization_code"})),
        )
        .await;
    r.assert(400, 20001);
    // A code of another app.
    let other = app_token(&s, "cli_other", "other-secret").await;
    let r = s
        .call(
            Method::POST,
            OIDC,
            Some(&other),
            Some(&by_code(&code(&s, None).await)),
        )
        .await;
    r.assert(400, 20024);
}

#[tokio::test]
async fn the_older_routes_carry_user_info_by_scope() {
    let s = Server::builder().seed(SEED).start();
    let app = app_token(&s, "cli_all", "all-secret").await;
    let ids = s.user_ids("acme", "boss", "cli_all").await;
    let r = s
        .call(
            Method::POST,
            OLD,
            Some(&app),
            Some(&by_code(
                &code(&s, Some("contact:user.phone:readonly")).await,
            )),
        )
        .await;
    let d = r.ok().clone();
    assert_eq!(d["open_id"], ids["open_id"]);
    assert_eq!(d["name"], "Boss");
    assert_eq!(d["en_name"], "The Boss");
    assert_eq!(d["mobile"], "+86 138 0000 0000");
    assert!(
        d.get("email").is_none() && d.get("user_id").is_none(),
        "{d}"
    );
    let body = json!({"grant_type": "refresh_token", "refresh_token": d["refresh_token"]});
    let r = s
        .call(Method::POST, OLD_REFRESH, Some(&app), Some(&body))
        .await;
    assert_eq!(r.ok()["tenant_key"], "acme");
}

#[tokio::test]
async fn the_v1_routes_need_a_live_app_access_token() {
    let s = Server::builder().seed(SEED).start();
    let c = code(&s, None).await;
    s.call(Method::POST, OIDC, None, Some(&by_code(&c)))
        .await
        .assert_err(400, 99991661);
    let user = s.mint("cli_all", "acme", "boss").await;
    for bad in ["t-unknown", "a-unknown", user.as_str(), "nonsense"] {
        s.call(Method::POST, OIDC, Some(bad), Some(&by_code(&c)))
            .await
            .assert_err(400, 99991663);
    }
    // The tenant token of a custom app is its app token too.
    let r = s
        .call(
            Method::POST,
            TENANT_TOKEN_PATH,
            None,
            Some(&json!({"app_id": "cli_all", "app_secret": "all-secret"})),
        )
        .await;
    let t = r.body["tenant_access_token"].as_str().unwrap().to_string();
    s.call(Method::POST, OIDC, Some(&t), Some(&by_code(&c)))
        .await
        .ok();
}

#[tokio::test]
async fn user_info_shows_each_field_only_with_its_scope() {
    let s = Server::builder().seed(SEED).start();
    let ids = s.user_ids("acme", "boss", "cli_all").await;
    let info = |scopes: Value| {
        let s = &s;
        async move {
            let t = s
                .mint_with(
                    json!({"app_id": "cli_all", "tenant_key": "acme", "user_id": "boss",
                                  "scopes": scopes}),
                )
                .await;
            s.call(Method::GET, USER_INFO, Some(&t), None)
                .await
                .ok()
                .clone()
        }
    };
    let none = info(json!([])).await;
    assert_eq!(none["open_id"], ids["open_id"]);
    assert_eq!(none["union_id"], ids["union_id"]);
    assert_eq!(none["tenant_key"], "acme");
    assert_eq!(none["avatar_big"], "https://avatars.example/boss.png");
    for f in [
        "email",
        "enterprise_email",
        "user_id",
        "employee_no",
        "mobile",
    ] {
        assert!(none.get(f).is_none(), "{f} without its scope: {none}");
    }
    let email = info(json!(["contact:user.email:readonly"])).await;
    assert_eq!(email["email"], "boss@acme.example");
    assert_eq!(email["enterprise_email"], "boss@acme.example");
    assert!(email.get("user_id").is_none());
    let emp = info(json!(["contact:user.employee_id:readonly"])).await;
    assert_eq!(
        (&emp["user_id"], &emp["employee_no"]),
        (&json!("boss"), &json!("E-001"))
    );
    let phone = info(json!(["contact:user.phone:readonly"])).await;
    assert_eq!(phone["mobile"], "+86 138 0000 0000");
    // The app's current scopes bound the token's.
    let t = s.mint("cli_all", "acme", "boss").await;
    s.admin(
        Method::PATCH,
        "/_exbind/v1/apps/cli_all",
        Some(&json!({"scopes": ["offline_access"]})),
    )
    .await
    .ok();
    let d = s
        .call(Method::GET, USER_INFO, Some(&t), None)
        .await
        .ok()
        .clone();
    assert!(d.get("email").is_none() && d.get("mobile").is_none(), "{d}");
    // A v2 JWT works here too; a deleted user's token does not; a missing one is 99991661.
    s.call(Method::GET, USER_INFO, None, None)
        .await
        .assert_err(400, 99991661);
    s.admin(Method::DELETE, "/_exbind/v1/tenants/acme/users/boss", None)
        .await
        .ok();
    s.call(Method::GET, USER_INFO, Some(&t), None)
        .await
        .assert_err(400, 99991668);
}

#[tokio::test]
async fn user_info_accepts_a_v2_jwt() {
    let s = Server::builder().seed(SEED).start();
    let body = json!({"grant_type": "authorization_code", "client_id": "cli_all",
                      "client_secret": "all-secret", "code": code(&s, None).await});
    let r = s.oauth_token(&body).await;
    let jwt = r.body["access_token"].as_str().unwrap().to_string();
    let d = s
        .call(Method::GET, USER_INFO, Some(&jwt), None)
        .await
        .ok()
        .clone();
    assert_eq!(d["user_id"], "boss");
}

#[tokio::test]
async fn fault_rules_and_the_quota_answer_in_the_envelope() {
    let s = Server::builder()
        .seed(SEED)
        .args(&["--quota-per-minute", "1"])
        .start();
    ensure_minute_room(10).await;
    let app = app_token(&s, "cli_all", "all-secret").await;
    s.admin(
        Method::POST,
        "/_exbind/v1/faults",
        Some(&json!({"method": "POST", "route": OIDC, "times": 1, "error": {"code": 190003}})),
    )
    .await
    .ok();
    let c = code(&s, None).await;
    s.call(Method::POST, OIDC, Some(&app), Some(&by_code(&c)))
        .await
        .assert(500, 20050);
    s.call(Method::POST, OIDC, Some(&app), Some(&by_code(&c)))
        .await
        .ok();
    let r = s
        .call(Method::POST, OIDC, Some(&app), Some(&by_code(&c)))
        .await;
    r.assert_err(429, 99991400);
    assert_eq!(r.header("x-ogw-ratelimit-limit").as_deref(), Some("1"));
}
