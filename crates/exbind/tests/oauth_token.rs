//! `POST /open-apis/authen/v2/oauth/token` (oauth.md §3) and the control-plane routes it
//! leans on: codes from `POST /_exbind/v1/oauth/codes`, both grants, both body kinds, both
//! client authentications, down-scoping, refresh rotation, JWT access tokens, and every row
//! of the error table reached by a request a user could make.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const TOKEN: &str = common::fixtures::OAUTH_TOKEN_PATH;
const CODES: &str = "/_exbind/v1/oauth/codes";
const REDIRECT: &str = "https://app.example/callback";

const SEED: &str = r#"
[[tenants]]
tenant_key = "acme"

[[tenants.users]]
user_id = "boss"
name = "Boss"
email = "boss@acme.example"
super_admin = true
en_name = "The Boss"
mobile = "+86 138 0000 0000"
employee_no = "E-001"
avatar_url = "https://avatars.example/boss.png"

[[tenants.users]]
user_id = "alice"

[[tenants.users]]
user_id = "gone"
status = "dismissed"

[[tenants.exchange_admins]]
account = "exadmin@acme.example"

[[apps]]
app_id = "cli_login"
app_secret = "login-secret"
name = "Acme Calendar Sync"
tenants = ["acme"]
redirect_uris = ["https://app.example/callback"]
scopes = ["calendar:calendar", "calendar:calendar:readonly", "calendar:exchange.bindings:create",
          "calendar:exchange.bindings:read", "calendar:exchange.bindings:delete",
          "contact:user.email:readonly", "offline_access"]

[[apps]]
app_id = "cli_other"
app_secret = "other-secret"
tenants = ["acme"]
redirect_uris = ["https://app.example/callback"]
scopes = ["calendar:calendar:readonly", "offline_access"]

[[apps]]
app_id = "cli_off"
app_secret = "off-secret"
tenants = ["acme"]
enabled = false

[[apps]]
app_id = "cli_few"
app_secret = "few-secret"
tenants = ["acme"]
available_to = ["acme/boss"]
scopes = ["offline_access"]
"#;

fn server() -> Server {
    Server::builder().seed(SEED).start()
}

fn server_with(args: &[&str]) -> Server {
    Server::builder().seed(SEED).args(args).start()
}

/// The control plane's code request for `user` of `app` in acme, with `extra` fields.
fn code_request(app: &str, user: &str, extra: Value) -> Value {
    let mut body = json!({"app_id": app, "tenant_key": "acme", "user_id": user,
                          "redirect_uri": REDIRECT});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

/// A code for `user` of `app` from the control plane, with `extra` fields.
async fn code_for(s: &Server, app: &str, user: &str, extra: Value) -> String {
    let d = s.issue_code(&code_request(app, user, extra)).await;
    assert_eq!(d["expires_in"], 300);
    let code = d["code"].as_str().unwrap().to_string();
    assert!(code.len() >= 32, "{code}");
    code
}

async fn code(s: &Server) -> String {
    code_for(s, "cli_login", "boss", json!({})).await
}

/// A JSON token request.
async fn token(s: &Server, body: Value) -> Resp {
    s.oauth_token(&body).await
}

/// A token request with its own headers and body bytes.
async fn token_raw(s: &Server, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Resp {
    s.request(Method::POST, TOKEN, headers, Some(body.into()))
        .await
}

/// The exchange of a fresh code for `boss`, with `key` set to `value` (or removed).
async fn exchange_with(s: &Server, key: &str, value: Value) -> Resp {
    token(s, with(exchange_body(&code(s).await), key, value)).await
}

/// The exchange of `code` with `verifier` as its PKCE verifier (none, for `Value::Null`).
async fn exchange_pkce(s: &Server, code: &str, verifier: Value) -> Resp {
    token(s, with(exchange_body(code), "code_verifier", verifier)).await
}

/// What the exchange of a fresh code for `boss` grants.
async fn fresh_grant(s: &Server) -> Value {
    granted(&token(s, exchange_body(&code(s).await)).await).clone()
}

fn exchange_body(code: &str) -> Value {
    json!({"grant_type": "authorization_code", "client_id": "cli_login",
           "client_secret": "login-secret", "code": code})
}

fn refresh_body(refresh_token: &str) -> Value {
    json!({"grant_type": "refresh_token", "client_id": "cli_login",
           "client_secret": "login-secret", "refresh_token": refresh_token})
}

/// Body `body` with `key` set to `value` (or removed, for `Value::Null`).
fn with(mut body: Value, key: &str, value: Value) -> Value {
    let o = body.as_object_mut().unwrap();
    if value.is_null() {
        o.remove(key);
    } else {
        o.insert(key.to_string(), value);
    }
    body
}

/// A flat OAuth error: status, code, RFC 6749 error, a description, JSON, nothing else.
#[track_caller]
fn assert_oauth(r: &Resp, status: u16, code: i64, error: &str) {
    assert_eq!(
        (
            r.status.as_u16(),
            r.body["code"].as_i64(),
            r.body["error"].as_str()
        ),
        (status, Some(code), Some(error)),
        "unexpected answer: {}",
        r.text
    );
    assert!(
        r.body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{}",
        r.text
    );
    assert!(r.body.get("access_token").is_none(), "{}", r.text);
    r.assert_json_content_type();
}

#[track_caller]
fn granted(r: &Resp) -> &Value {
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_i64()),
        (200, Some(0)),
        "unexpected answer: {}",
        r.text
    );
    r.assert_json_content_type();
    &r.body
}

/// A binding GET with `token`: `ACCEPTED` when the token passed (the documented example id
/// names an admin account this seed does not have), an auth code if not.
async fn token_works(s: &Server, token: &str) -> i64 {
    s.get(token, DOC_ID, None).await.code()
}

/// `token_works` for the access token of a grant.
async fn access_works(s: &Server, grant: &Value) -> i64 {
    token_works(s, grant["access_token"].as_str().unwrap()).await
}
const ACCEPTED: i64 = 195106;

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

// ---- success ----------------------------------------------------------------------------

#[tokio::test]
async fn a_code_exchanges_for_a_jwt_access_token_and_a_refresh_token() {
    let s = server();
    let r = token(&s, exchange_body(&code(&s).await)).await;
    let b = granted(&r);
    let access = b["access_token"].as_str().unwrap();
    assert!(access.starts_with("eyJ"), "{access}");
    let parts: Vec<&str> = access.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["aud"], "cli_login");
    assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 64);
    assert_eq!(b["expires_in"], 7200);
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["refresh_token_expires_in"], 604800);
    assert!(b["refresh_token"].as_str().unwrap().len() >= 32);
    // No scope asked for: every scope enabled on the app.
    let scopes: Vec<&str> = b["scope"].as_str().unwrap().split(' ').collect();
    assert_eq!(scopes.len(), 7, "{scopes:?}");
    assert!(scopes.contains(&"offline_access"));
    // It works on the API like any user token.
    assert_eq!(token_works(&s, access).await, ACCEPTED);
}

#[tokio::test]
async fn a_form_body_with_basic_client_auth_works_and_the_query_of_the_redirect_may_differ() {
    let s = server();
    let with_query = code_for(
        &s,
        "cli_login",
        "boss",
        json!({"redirect_uri": "https://app.example:443/callback?from=test"}),
    )
    .await;
    let basic = format!("Basic {}", STANDARD.encode("cli_login:login-secret"));
    let form = format!(
        "grant_type=authorization_code&code={with_query}&redirect_uri={}",
        pct("https://app.example:443/callback?from=test")
    );
    let r = token_raw(
        &s,
        &[
            ("Authorization", &basic),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        form,
    )
    .await;
    assert!(granted(&r)["access_token"]
        .as_str()
        .unwrap()
        .starts_with("eyJ"));
    // A JSON body labelled a form (what `curl -d` sends) is read as JSON.
    let labelled = code(&s).await;
    let r = token_raw(
        &s,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        exchange_body(&labelled).to_string(),
    )
    .await;
    granted(&r);
    // A client_id in the body beside Basic is fine when it is the same.
    let plain = code(&s).await;
    let r = token_raw(
        &s,
        &[
            ("Authorization", &basic),
            ("Content-Type", "application/json"),
        ],
        json!({"grant_type": "authorization_code", "code": plain, "client_id": "cli_login"})
            .to_string(),
    )
    .await;
    granted(&r);
}

#[tokio::test]
async fn down_scoping_narrows_the_access_token_and_without_offline_access_there_is_no_refresh_token(
) {
    let s = server();
    let code = code_for(
        &s,
        "cli_login",
        "boss",
        json!({"scope": "calendar:calendar:readonly calendar:exchange.bindings:read offline_access"}),
    )
    .await;
    let r = token(
        &s,
        with(
            exchange_body(&code),
            "scope",
            json!("calendar:exchange.bindings:read"),
        ),
    )
    .await;
    let b = granted(&r);
    assert_eq!(b["scope"], "calendar:exchange.bindings:read");
    assert!(b.get("refresh_token").is_none(), "{b}");
    assert!(b.get("refresh_token_expires_in").is_none(), "{b}");
    // The narrowed token cannot create (it holds no create scope): 99991679.
    let t = b["access_token"].as_str().unwrap();
    let r = s
        .create(
            t,
            "exadmin@acme.example",
            "boss@acme.example",
            "boss",
            Some("user_id"),
        )
        .await;
    assert_eq!(r.code(), 99991679, "{}", r.text);
}

#[tokio::test]
async fn a_refresh_rotates_the_refresh_token_keeps_the_full_grant_and_the_old_access_token_works() {
    let s = server();
    let code = code_for(
        &s,
        "cli_login",
        "boss",
        json!({"scope": "calendar:exchange.bindings:read offline_access"}),
    )
    .await;
    let first = token(&s, exchange_body(&code)).await;
    let first = granted(&first).clone();
    let r = token(
        &s,
        with(
            refresh_body(first["refresh_token"].as_str().unwrap()),
            "scope",
            json!("offline_access calendar:exchange.bindings:read"),
        ),
    )
    .await;
    let second = granted(&r).clone();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(
        second["scope"],
        "offline_access calendar:exchange.bindings:read"
    );
    // Down-scoped without offline_access: an access token only; the refresh token is spent.
    let r = token(
        &s,
        with(
            refresh_body(second["refresh_token"].as_str().unwrap()),
            "scope",
            json!("calendar:exchange.bindings:read"),
        ),
    )
    .await;
    let third = granted(&r);
    assert!(third.get("refresh_token").is_none(), "{third}");
    for t in [&first, &second, third] {
        assert_eq!(access_works(&s, t).await, ACCEPTED);
    }
}

#[tokio::test]
async fn access_tokens_and_refresh_tokens_survive_a_restart() {
    let mut s = server();
    let b = fresh_grant(&s).await;
    let kid = |t: &str| -> Value {
        let h = t.split('.').next().unwrap();
        serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()["kid"].clone()
    };
    let pending = code(&s).await;
    s.restart();
    assert_eq!(access_works(&s, &b).await, ACCEPTED);
    let r = token(&s, refresh_body(b["refresh_token"].as_str().unwrap())).await;
    let after = granted(&r);
    // The same signing key: the data dir keeps it.
    assert_eq!(
        kid(after["access_token"].as_str().unwrap()),
        kid(b["access_token"].as_str().unwrap())
    );
    // A code issued before the restart is still good.
    granted(&token(&s, exchange_body(&pending)).await);
}

#[tokio::test]
async fn pkce_s256_and_plain_codes_exchange_with_their_verifier() {
    let s = server();
    let code = code_for(
        &s,
        "cli_login",
        "boss",
        json!({"code_challenge": s256(VERIFIER), "code_challenge_method": "S256"}),
    )
    .await;
    granted(&exchange_pkce(&s, &code, json!(VERIFIER)).await);
    // A challenge without a method is plain.
    let code = code_for(&s, "cli_login", "boss", json!({"code_challenge": VERIFIER})).await;
    granted(&exchange_pkce(&s, &code, json!(VERIFIER)).await);
}

#[tokio::test]
async fn an_unknown_jwt_shaped_token_is_an_invalid_token() {
    let s = server();
    let fake = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#),
        URL_SAFE_NO_PAD.encode([7u8; 64])
    );
    assert_eq!(token_works(&s, &fake).await, 99991668);
}

#[tokio::test]
async fn revoking_an_access_token_revokes_the_whole_grant() {
    let s = server();
    let b = fresh_grant(&s).await;
    let rotated = token(&s, refresh_body(b["refresh_token"].as_str().unwrap())).await;
    let rotated = granted(&rotated).clone();
    s.revoke(json!({"access_token": b["access_token"]})).await;
    // Both access tokens of the grant, and its current refresh token.
    assert_eq!(access_works(&s, &b).await, 99991668);
    assert_eq!(access_works(&s, &rotated).await, 99991668);
    let r = token(&s, refresh_body(rotated["refresh_token"].as_str().unwrap())).await;
    assert_oauth(&r, 400, 20064, "invalid_grant");
}

#[tokio::test]
async fn a_deleted_user_loses_its_tokens_and_its_codes() {
    let s = server();
    let b = fresh_grant(&s).await;
    let minted = s.mint("cli_login", "acme", "boss").await;
    let pending = code(&s).await;
    s.admin(Method::DELETE, "/_exbind/v1/tenants/acme/users/boss", None)
        .await
        .ok();
    assert_eq!(access_works(&s, &b).await, 99991668);
    assert_eq!(token_works(&s, &minted).await, 99991668);
    let again = s
        .admin(Method::DELETE, "/_exbind/v1/tenants/acme/users/boss", None)
        .await;
    assert_eq!(again.status.as_u16(), 404);
    assert_eq!(again.code(), 99991201);
    // 20008: the code's user was deleted.
    assert_oauth(
        &token(&s, exchange_body(&pending)).await,
        400,
        20008,
        "invalid_grant",
    );
}

#[tokio::test]
async fn the_gateway_quota_answers_flat() {
    let s = server_with(&["--quota-per-minute", "2"]);
    ensure_minute_room(10).await;
    let bad = exchange_body(&"x".repeat(40));
    for _ in 0..2 {
        assert_oauth(&token(&s, bad.clone()).await, 400, 20003, "invalid_grant");
    }
    let r = token(&s, bad).await;
    assert_eq!(r.status.as_u16(), 429, "{}", r.text);
    assert_eq!(
        r.body,
        json!({"code": 99991400, "error": "temporarily_unavailable",
               "error_description": "request trigger frequency limit"})
    );
    assert_eq!(r.header("x-ogw-ratelimit-limit").as_deref(), Some("2"));
    assert!(r.header("retry-after").is_some());
    // Another app has its own quota.
    let r = token(
        &s,
        json!({"grant_type": "authorization_code", "client_id": "cli_other",
               "client_secret": "other-secret", "code": "z"}),
    )
    .await;
    assert_oauth(&r, 400, 20003, "invalid_grant");
}

#[tokio::test]
async fn codes_from_the_control_plane_are_checked_like_the_page_checks_them() {
    let s = server();
    let bad = |extra: Value| code_request("cli_login", "boss", extra);
    for (extra, field) in [
        (
            json!({"redirect_uri": "https://evil.example/callback"}),
            "redirect_uri",
        ),
        (json!({"scope": "calendar:nope"}), "scope"),
        (json!({"scope": "contact:user.phone:readonly"}), "scope"),
        (json!({"code_challenge": "short"}), "code_challenge"),
        (
            json!({"code_challenge": VERIFIER, "code_challenge_method": "S512"}),
            "code_challenge_method",
        ),
    ] {
        let r = s.admin(Method::POST, CODES, Some(&bad(extra))).await;
        r.assert(400, 190002);
        r.violation(field);
    }
    let r = s
        .admin(
            Method::POST,
            CODES,
            Some(&bad(json!({"user_id": "nobody"}))),
        )
        .await;
    r.assert(404, 99991201);
    // Without a token: the control plane's 401.
    let r = s
        .call(Method::POST, CODES, None, Some(&bad(json!({}))))
        .await;
    r.assert(401, 99991661);
}

// ---- the error table, one row each -----------------------------------------------------

#[tokio::test]
async fn e20001_a_required_parameter_is_missing() {
    let s = server();
    for missing in ["grant_type", "client_id", "client_secret", "code"] {
        let r = exchange_with(&s, missing, Value::Null).await;
        assert_oauth(&r, 400, 20001, "invalid_request");
        assert!(
            r.body["error_description"]
                .as_str()
                .unwrap()
                .contains(missing),
            "{}",
            r.text
        );
    }
    let r = token(&s, with(refresh_body("x"), "refresh_token", Value::Null)).await;
    assert_oauth(&r, 400, 20001, "invalid_request");
}

#[tokio::test]
async fn e20002_wrong_client_secret() {
    let s = server();
    let r = exchange_with(&s, "client_secret", json!("nope")).await;
    assert_oauth(&r, 400, 20002, "invalid_client");
}

#[tokio::test]
async fn e20003_no_such_code() {
    let s = server();
    let r = token(&s, exchange_body(&"0".repeat(48))).await;
    assert_oauth(&r, 400, 20003, "invalid_grant");
}

#[tokio::test]
async fn e20004_code_expired() {
    let s = server_with(&["--oauth-code-ttl", "1"]);
    let d = s
        .issue_code(&code_request("cli_login", "boss", json!({})))
        .await;
    assert_eq!(d["expires_in"], 1);
    let code = d["code"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_oauth(
        &token(&s, exchange_body(&code)).await,
        400,
        20004,
        "invalid_grant",
    );
}

#[tokio::test]
async fn e20008_the_codes_user_was_deleted() {
    let s = server();
    let code = code_for(&s, "cli_login", "alice", json!({})).await;
    s.admin(Method::DELETE, "/_exbind/v1/tenants/acme/users/alice", None)
        .await
        .ok();
    assert_oauth(
        &token(&s, exchange_body(&code)).await,
        400,
        20008,
        "invalid_grant",
    );
}

#[tokio::test]
async fn e20009_the_app_is_no_longer_installed_in_the_users_tenant() {
    let s = server();
    let code = code(&s).await;
    s.patch_ok("/_exbind/v1/apps/cli_login", json!({"tenants": []}))
        .await;
    assert_oauth(
        &token(&s, exchange_body(&code)).await,
        400,
        20009,
        "unauthorized_client",
    );
}

#[tokio::test]
async fn e20010_the_user_is_outside_available_to() {
    let s = server();
    const LOOPBACK: &str = "http://127.0.0.1:9/cb";
    let few = |code: &str| {
        json!({"grant_type": "authorization_code", "client_id": "cli_few",
               "client_secret": "few-secret", "code": code, "redirect_uri": LOOPBACK})
    };
    let code_of =
        |user: &'static str| code_for(&s, "cli_few", user, json!({"redirect_uri": LOOPBACK}));
    assert_oauth(
        &token(&s, few(&code_of("alice").await)).await,
        400,
        20010,
        "invalid_grant",
    );
    granted(&token(&s, few(&code_of("boss").await)).await);
    // A bare user id means that user in any of the app's tenants; null lets everyone in.
    s.patch_ok(
        "/_exbind/v1/apps/cli_few",
        json!({"available_to": ["alice"]}),
    )
    .await;
    granted(&token(&s, few(&code_of("alice").await)).await);
    let app = s
        .patch_ok("/_exbind/v1/apps/cli_few", json!({"available_to": null}))
        .await;
    assert_eq!(app["available_to"], Value::Null);
    granted(&token(&s, few(&code_of("boss").await)).await);
}

#[tokio::test]
async fn e20024_a_code_or_refresh_token_of_another_app() {
    let s = server();
    let other = |b: Value| {
        with(
            with(b, "client_id", json!("cli_other")),
            "client_secret",
            json!("other-secret"),
        )
    };
    let code = code(&s).await;
    assert_oauth(
        &token(&s, other(exchange_body(&code))).await,
        400,
        20024,
        "invalid_grant",
    );
    // The code was not spent by the other app's attempt.
    let b = granted(&token(&s, exchange_body(&code)).await).clone();
    let r = token(
        &s,
        other(refresh_body(b["refresh_token"].as_str().unwrap())),
    )
    .await;
    assert_oauth(&r, 400, 20024, "invalid_grant");
}

#[tokio::test]
async fn e20026_no_such_refresh_token() {
    let s = server();
    assert_oauth(
        &token(&s, refresh_body("ur-nothing")).await,
        400,
        20026,
        "invalid_grant",
    );
}

#[tokio::test]
async fn e20036_another_grant_type() {
    let s = server();
    let r = token(
        &s,
        with(exchange_body("x"), "grant_type", json!("password")),
    )
    .await;
    assert_oauth(&r, 400, 20036, "unsupported_grant_type");
}

#[tokio::test]
async fn e20037_refresh_token_expired() {
    let s = server_with(&["--refresh-token-ttl", "1"]);
    let b = fresh_grant(&s).await;
    assert_eq!(b["refresh_token_expires_in"], 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = token(&s, refresh_body(b["refresh_token"].as_str().unwrap())).await;
    assert_oauth(&r, 400, 20037, "invalid_grant");
}

#[tokio::test]
async fn e20048_no_such_app() {
    let s = server();
    let r = token(&s, with(exchange_body("x"), "client_id", json!("cli_nope"))).await;
    assert_oauth(&r, 400, 20048, "invalid_client");
}

#[tokio::test]
async fn e20049_pkce_verifier_missing_malformed_or_not_matching() {
    let s = server();
    let challenge = json!({"code_challenge": s256(VERIFIER), "code_challenge_method": "S256"});
    let code = code_for(&s, "cli_login", "boss", challenge).await;
    for verifier in [
        Value::Null,
        json!("too-short"),
        json!(format!("{}!", "a".repeat(50))),
        json!("x".repeat(43)),
    ] {
        let r = exchange_pkce(&s, &code, verifier).await;
        assert_oauth(&r, 400, 20049, "invalid_grant");
    }
    // Failed attempts do not spend the code.
    granted(&exchange_pkce(&s, &code, json!(VERIFIER)).await);
}

#[tokio::test]
async fn e20050_internal_failure_from_a_fault_rule() {
    let s = server();
    s.add_fault(json!({"method": "POST", "route": TOKEN, "times": 1, "error": {"code": 190003}}))
        .await;
    let code = code(&s).await;
    let r = token(&s, exchange_body(&code)).await;
    assert_oauth(&r, 500, 20050, "server_error");
    // The rule fired before the code was looked at: it is still good.
    granted(&token(&s, exchange_body(&code)).await);
}

#[tokio::test]
async fn e20063_body_not_json_or_form_or_a_field_of_the_wrong_type() {
    let s = server();
    for (ct, body) in [
        (
            "application/json",
            "grant_type=authorization_code".to_string(),
        ),
        ("text/plain", "{not json".to_string()),
        ("application/json", "[1, 2]".to_string()),
        (
            "application/json",
            json!({"grant_type": "authorization_code", "code": 5}).to_string(),
        ),
        (
            "application/x-www-form-urlencoded",
            "code=a&code=b&grant_type=authorization_code".to_string(),
        ),
    ] {
        let r = token_raw(&s, &[("Content-Type", ct)], body).await;
        assert_oauth(&r, 400, 20063, "invalid_request");
    }
    // A body over the 64 KiB cap is not read at all: 20063 too, flat.
    let big = json!({"grant_type": "authorization_code", "code": "x".repeat(70_000)});
    let r = token(&s, big).await;
    assert_oauth(&r, 400, 20063, "invalid_request");
    assert!(
        r.body["error_description"]
            .as_str()
            .unwrap()
            .contains("exceeds"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn e20064_refresh_token_revoked() {
    let s = server();
    let b = fresh_grant(&s).await;
    s.revoke(json!({"refresh_token": b["refresh_token"]})).await;
    let r = token(&s, refresh_body(b["refresh_token"].as_str().unwrap())).await;
    assert_oauth(&r, 400, 20064, "invalid_grant");
    // The grant's access token went with it.
    assert_eq!(access_works(&s, &b).await, 99991668);
}

#[tokio::test]
async fn e20065_code_already_used_revokes_what_it_issued() {
    let s = server();
    let code = code(&s).await;
    let b = granted(&token(&s, exchange_body(&code)).await).clone();
    assert_eq!(access_works(&s, &b).await, ACCEPTED);
    assert_oauth(
        &token(&s, exchange_body(&code)).await,
        400,
        20065,
        "invalid_grant",
    );
    assert_eq!(access_works(&s, &b).await, 99991668);
    let r = token(&s, refresh_body(b["refresh_token"].as_str().unwrap())).await;
    assert_oauth(&r, 400, 20064, "invalid_grant");
}

#[tokio::test]
async fn e20066_the_user_is_dismissed() {
    let s = server();
    let code = code_for(&s, "cli_login", "gone", json!({})).await;
    assert_oauth(
        &token(&s, exchange_body(&code)).await,
        400,
        20066,
        "invalid_grant",
    );
}

#[tokio::test]
async fn e20067_scope_lists_a_scope_twice() {
    let s = server();
    let r = exchange_with(&s, "scope", json!("offline_access offline_access")).await;
    assert_oauth(&r, 400, 20067, "invalid_scope");
}

#[tokio::test]
async fn e20068_scope_asks_for_a_scope_not_granted() {
    let s = server();
    let code = code_for(
        &s,
        "cli_login",
        "boss",
        json!({"scope": "calendar:calendar:readonly"}),
    )
    .await;
    let r = token(
        &s,
        with(exchange_body(&code), "scope", json!("calendar:calendar")),
    )
    .await;
    assert_oauth(&r, 400, 20068, "invalid_scope");
}

#[tokio::test]
async fn e20069_the_app_is_disabled() {
    let s = server();
    let off = json!({"grant_type": "authorization_code", "client_id": "cli_off",
                     "client_secret": "off-secret", "code": "x"});
    let r = token(&s, off.clone()).await;
    assert_oauth(&r, 400, 20069, "unauthorized_client");
    // Enabled again through PATCH, it gets as far as the code.
    let app = s
        .patch_ok("/_exbind/v1/apps/cli_off", json!({"enabled": true}))
        .await;
    assert_eq!(app["enabled"], true);
    let r = token(&s, off).await;
    assert_oauth(&r, 400, 20003, "invalid_grant");
}

#[tokio::test]
async fn e20070_client_credentials_in_basic_and_body() {
    let s = server();
    let basic = format!("Basic {}", STANDARD.encode("cli_login:login-secret"));
    for body in [
        exchange_body(&code(&s).await),
        json!({"grant_type": "authorization_code", "client_id": "cli_other", "code": "x"}),
    ] {
        let r = token_raw(
            &s,
            &[
                ("Authorization", &basic),
                ("Content-Type", "application/json"),
            ],
            body.to_string(),
        )
        .await;
        assert_oauth(&r, 400, 20070, "invalid_client");
    }
}

#[tokio::test]
async fn e20071_redirect_uri_differs() {
    let s = server();
    let r = exchange_with(&s, "redirect_uri", json!("https://app.example/other")).await;
    assert_oauth(&r, 400, 20071, "invalid_grant");
}

#[tokio::test]
async fn e20072_temporarily_unavailable_from_a_fault_rule() {
    let s = server();
    s.add_fault(
        json!({"method": "POST", "route": TOKEN, "app_id": "cli_login", "times": 1,
               "error": {"code": 190010}}),
    )
    .await;
    let r = token(&s, exchange_body(&code(&s).await)).await;
    assert_oauth(&r, 503, 20072, "temporarily_unavailable");
}

#[tokio::test]
async fn e20073_refresh_token_already_used() {
    let s = server();
    let b = fresh_grant(&s).await;
    let rt = b["refresh_token"].as_str().unwrap();
    granted(&token(&s, refresh_body(rt)).await);
    assert_oauth(
        &token(&s, refresh_body(rt)).await,
        400,
        20073,
        "invalid_grant",
    );
}

#[tokio::test]
async fn e20074_the_app_does_not_allow_refresh_tokens() {
    let s = server();
    let b = fresh_grant(&s).await;
    let app = s
        .patch_ok(
            "/_exbind/v1/apps/cli_login",
            json!({"refresh_tokens": false}),
        )
        .await;
    assert_eq!(app["refresh_tokens"], false);
    let r = token(&s, refresh_body(b["refresh_token"].as_str().unwrap())).await;
    assert_oauth(&r, 400, 20074, "unauthorized_client");
    // And a new exchange issues no refresh token.
    let b = fresh_grant(&s).await;
    assert!(b.get("refresh_token").is_none(), "{b}");
}
