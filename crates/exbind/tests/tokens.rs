//! Token endpoints (contract §3) and how each kind of token fares on the binding API
//! (step 1 and 2 of §4.1).
mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// Checks a flat token-endpoint error: HTTP 200, exact code and msg, JSON content type.
#[track_caller]
fn assert_token_err(r: &Resp, code: i64, msg: &str) {
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(r.body["code"].as_i64(), Some(code), "{}", r.text);
    assert_eq!(r.body["msg"].as_str(), Some(msg), "{}", r.text);
    assert!(r.body.get("tenant_access_token").is_none(), "{}", r.text);
    r.assert_json_content_type();
    assert!(
        r.header("x-tt-logid").is_some(),
        "token answers carry a log id too"
    );
}

#[tokio::test]
async fn tenant_token_is_issued_flat_and_reused() {
    let s = Server::full();
    let r1 = s
        .token_call(TENANT_TOKEN_PATH, "cli_acme", "acme-secret")
        .await;
    assert_eq!(r1.status.as_u16(), 200);
    assert_eq!(r1.body["code"], 0, "{}", r1.text);
    assert_eq!(r1.body["msg"], "ok");
    assert!(
        r1.body.get("data").is_none(),
        "token answers are flat: {}",
        r1.text
    );
    r1.assert_json_content_type();
    let t1 = r1.body["tenant_access_token"].as_str().unwrap().to_string();
    assert!(t1.starts_with("t-"), "{t1}");
    let e1 = r1.body["expire"].as_i64().expect("integer expire");
    assert!((7100..=7200).contains(&e1), "expire {e1}");

    let r2 = s
        .token_call(TENANT_TOKEN_PATH, "cli_acme", "acme-secret")
        .await;
    assert_eq!(r2.body["tenant_access_token"].as_str(), Some(t1.as_str()));
    let e2 = r2.body["expire"].as_i64().unwrap();
    assert!(e2 <= e1 && e2 <= 7200, "expire counts down: {e1} then {e2}");

    // Another app gets another token.
    let other = s.tenant_token("cli_acme2", "acme2-secret").await;
    assert_ne!(other, t1);
}

#[tokio::test]
async fn app_token_endpoint_answers_both_tokens() {
    let s = Server::full();
    let r = s
        .token_call(APP_TOKEN_PATH, "cli_acme", "acme-secret")
        .await;
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(r.body["code"], 0, "{}", r.text);
    assert_eq!(r.body["msg"], "ok");
    let app = r.body["app_access_token"]
        .as_str()
        .expect("app_access_token");
    let ten = r.body["tenant_access_token"]
        .as_str()
        .expect("tenant_access_token");
    assert!(app.starts_with("t-"), "{app}");
    assert_eq!(app, ten, "a custom app's app token is its tenant token");
    assert!(r.body["expire"].as_i64().unwrap() <= 7200);
    // And it is the same tenant token the tenant endpoint reuses.
    assert_eq!(s.tenant_token("cli_acme", "acme-secret").await, ten);
}

#[tokio::test]
async fn token_endpoint_errors_are_http_200() {
    let s = Server::full();
    for path in [TENANT_TOKEN_PATH, APP_TOKEN_PATH] {
        // Malformed bodies and empty fields.
        for body in [
            "",
            "not json",
            "{}",
            "[]",
            r#"{"app_id":"","app_secret":""}"#,
            r#"{"app_id":"cli_acme","app_secret":""}"#,
            r#"{"app_id":"cli_acme"}"#,
            r#"{"app_id":123,"app_secret":"acme-secret"}"#,
        ] {
            let r = s
                .request(
                    Method::POST,
                    path,
                    &[("Content-Type", "application/json")],
                    Some(body.as_bytes().to_vec()),
                )
                .await;
            assert_token_err(&r, 10003, "invalid param");
        }
        let r = s.token_call(path, "cli_nope", "whatever").await;
        assert_token_err(&r, 10014, "app id not exists");
        let r = s.token_call(path, "cli_acme", "wrong-secret").await;
        assert_token_err(&r, 10014, "app secret invalid");
        let r = s.token_call(path, "cli_store", "store-secret").await;
        assert_token_err(&r, 10014, "store app cannot use internal token endpoint");
    }
}

#[tokio::test]
async fn token_call_without_content_type_python_style() {
    let s = Server::full();
    // lark-oapi sends json.dumps() with default separators and no Content-Type.
    let body = br#"{"app_id": "cli_acme", "app_secret": "acme-secret"}"#.to_vec();
    let r = s
        .request(Method::POST, TENANT_TOKEN_PATH, &[], Some(body))
        .await;
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(r.body["code"], 0, "{}", r.text);
    assert!(r.body["tenant_access_token"]
        .as_str()
        .unwrap()
        .starts_with("t-"));
    assert!(r.body["expire"].is_i64());
    // A text/plain label does not stop the parse either.
    let r = s
        .request(
            Method::POST,
            TENANT_TOKEN_PATH,
            &[("Content-Type", "text/plain")],
            Some(br#"{"app_id":"cli_acme","app_secret":"acme-secret"}"#.to_vec()),
        )
        .await;
    assert_eq!(r.body["code"], 0, "{}", r.text);
}

#[tokio::test]
async fn authorization_header_problems_give_99991661() {
    let s = Server::full();
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    let path = format!("{BINDINGS}/{id}");
    for auth in [
        None,
        Some(""),
        Some("Bearer"),
        Some("Bearer "),
        Some("Bearer    "),
        Some("Basic dXNlcjpwYXNz"),
        Some("u-something"),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let r = s.request(Method::GET, &path, &headers, None).await;
        r.assert_err(400, 99991661);
    }
    // POST and DELETE alike.
    let r = s.call(Method::DELETE, &path, None, None).await;
    r.assert_err(400, 99991661);
    let r = s
        .call(
            Method::POST,
            BINDINGS,
            None,
            Some(&json!({"admin_account": ACME_ADMIN})),
        )
        .await;
    r.assert_err(400, 99991661);
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive_and_token_trimmed() {
    let s = Server::full();
    let tok = s.boss().await;
    let id = binding_id(ACME_ADMIN, "nobody@acme.example");
    let path = format!("{BINDINGS}/{id}");
    for auth in [
        format!("Bearer {tok}"),
        format!("bearer {tok}"),
        format!("BEARER {tok}"),
        format!("Bearer   {tok}  "),
    ] {
        let r = s
            .request(
                Method::GET,
                &path,
                &[("Authorization", auth.as_str())],
                None,
            )
            .await;
        // Past authentication, the binding simply does not exist.
        r.assert_err(404, 195103);
    }
}

#[tokio::test]
async fn tenant_and_app_tokens_are_rejected_with_99991663() {
    let s = Server::full();
    let t = s.tenant_token("cli_acme", "acme-secret").await;
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    for tok in [t.as_str(), "t-not-a-real-token", "a-some-app-token", "t-"] {
        let r = s.get(tok, &id, None).await;
        r.assert_err(400, 99991663);
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("user_access_token"),
            "error.message should say a user_access_token is needed: {}",
            r.text
        );
        s.delete(tok, &id).await.assert_err(400, 99991663);
        s.create(tok, ACME_ADMIN, "x@acme.example", "alice", Some("user_id"))
            .await
            .assert_err(400, 99991663);
    }
}

#[tokio::test]
async fn bad_user_tokens_give_99991668() {
    let s = Server::full();
    let good = s.boss().await;
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    // Tampered: change one character in the middle and the last one.
    let mut chars: Vec<char> = good.chars().collect();
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'a' { 'b' } else { 'a' };
    let tampered_mid: String = chars.iter().collect();
    let mut chars: Vec<char> = good.chars().collect();
    let last = chars.len() - 1;
    chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
    let tampered_end: String = chars.iter().collect();
    let extended = format!("{good}x");
    for tok in [
        "u-",
        "u-7f1bcd13fc57d46bac21793a18e560",
        "u-forged.token.value",
        tampered_mid.as_str(),
        tampered_end.as_str(),
        extended.as_str(),
    ] {
        s.get(tok, &id, None).await.assert_err(400, 99991668);
    }
    // The genuine one still works.
    s.get(&good, &id, None).await.assert_err(404, 195103);
}

#[tokio::test]
async fn other_tokens_give_99991671() {
    let s = Server::full();
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    for tok in ["abc", "x-123", "U-uppercase"] {
        s.get(tok, &id, None).await.assert_err(400, 99991671);
    }
    // A JWT is a user token (the v2 token endpoint issues them): an unknown one is invalid.
    s.get("eyJhbGciOiJFUzI1NiJ9.e30.sig", &id, None)
        .await
        .assert_err(400, 99991668);
}

#[tokio::test]
async fn revoked_user_token_gives_99991668() {
    let s = Server::full();
    let tok = s.boss().await;
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    s.get(&tok, &id, None).await.assert_err(404, 195103);
    let r = s
        .admin(
            Method::POST,
            "/_exbind/v1/user_access_tokens/revoke",
            Some(&json!({"access_token": tok})),
        )
        .await;
    r.ok();
    s.get(&tok, &id, None).await.assert_err(400, 99991668);
    s.delete(&tok, &id).await.assert_err(400, 99991668);
    // Other tokens of the same user are unaffected.
    let fresh = s.boss().await;
    s.get(&fresh, &id, None).await.assert_err(404, 195103);
}

#[tokio::test]
async fn expired_user_token_gives_99991677() {
    let s = Server::full();
    let short = s
        .mint_with(
            json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "boss", "expires_in": 1}),
        )
        .await;
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    s.get(&short, &id, None).await.assert_err(400, 99991677);
    s.delete(&short, &id).await.assert_err(400, 99991677);
    s.create(
        &short,
        ACME_ADMIN,
        "x@acme.example",
        "alice",
        Some("user_id"),
    )
    .await
    .assert_err(400, 99991677);
}

#[tokio::test]
async fn token_ttl_flag_sets_lifetimes() {
    let s = Server::builder()
        .seed(FULL_SEED)
        .args(&["--token-ttl", "300"])
        .start();
    let r = s
        .admin(
            Method::POST,
            "/_exbind/v1/user_access_tokens",
            Some(&json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "boss"})),
        )
        .await;
    assert_eq!(r.ok()["expires_in"], 300, "{}", r.text);
    let t = s
        .token_call(TENANT_TOKEN_PATH, "cli_acme", "acme-secret")
        .await;
    let e = t.body["expire"].as_i64().unwrap();
    assert!(
        (290..=300).contains(&e),
        "tenant token expire {e} under --token-ttl 300"
    );
    // Under 30 minutes left: every call issues a new token.
    let t2 = s
        .token_call(TENANT_TOKEN_PATH, "cli_acme", "acme-secret")
        .await;
    assert_ne!(
        t2.body["tenant_access_token"],
        t.body["tenant_access_token"]
    );
    assert!(t2.body["expire"].as_i64().unwrap() > 290);
}

#[tokio::test]
async fn tokens_with_bytes_outside_ascii_are_invalid_not_missing() {
    let s = Server::full();
    let item = format!("{BINDINGS}/{}", binding_id(ACME_ADMIN, "x@acme.example"));
    let create = format!("{BINDINGS}?user_id_type=user_id");
    let send = |method: &str, path: &str, auth: &[u8]| {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\nAuthorization: "
        )
        .into_bytes();
        req.extend_from_slice(auth);
        req.extend_from_slice(b"\r\n\r\n");
        let r = s.raw(&req);
        let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|_| panic!("{r:?}"));
        assert_eq!(
            v["error"]["log_id"].as_str(),
            r.exact("X-Tt-Logid").as_deref()
        );
        (
            r.status(),
            v["code"].as_i64().unwrap(),
            v["msg"].as_str().unwrap().to_string(),
        )
    };
    // Contract §4.1 step 2: a `u-` token that is no known token is 99991668; a token of
    // another shape 99991671; `t-`/`a-` 99991663. Only a header that is not `Bearer <token>`
    // at all is missing (99991661).
    let cases: [(&[u8], u16, i64); 6] = [
        (b"Bearer u-\xff\xfe", 400, 99991668),
        ("Bearer u-é".as_bytes(), 400, 99991668),
        (b"Bearer \xff\xfe", 400, 99991671),
        (b"Bearer t-\xff", 400, 99991663),
        (b"Bearer a-\x80", 400, 99991663),
        (b"B\xffarer u-abc", 400, 99991661),
    ];
    for (method, path) in [("GET", item.as_str()), ("DELETE", &item), ("POST", &create)] {
        for (auth, status, code) in cases {
            assert_eq!(
                send(method, path, auth),
                (status, code, table_msg(code).to_string()),
                "{method} {path} with {}",
                String::from_utf8_lossy(auth)
            );
        }
    }
    // The control plane: a wrong admin token, however odd its bytes, is wrong (401
    // 99991663), never missing.
    let admin_odd = format!("Bearer {ADMIN_TOKEN}\u{e9}");
    for auth in [
        &b"Bearer \xff\xfe"[..],
        b"Bearer \x80",
        admin_odd.as_bytes(),
    ] {
        for (method, path) in [
            ("GET", "/_exbind/v1/tenants"),
            ("POST", "/_exbind/v1/reset"),
        ] {
            let (status, code, _) = send(method, path, auth);
            assert_eq!((status, code), (401, 99991663), "{method} {path}");
        }
    }
    assert_eq!(
        s.list_bindings("acme").await.len(),
        0,
        "nothing was reset or made"
    );
    assert!(
        !s.admin(Method::GET, "/_exbind/v1/tenants", None).await.ok()["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}
