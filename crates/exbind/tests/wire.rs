//! Wire conventions (contract §1): JSON everywhere, Title-Case header names, log ids, body
//! size cap, SDK request shapes.
mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

fn is_log_id(s: &str) -> bool {
    s.len() == 34
        && s[..14].bytes().all(|b| b.is_ascii_digit())
        && s[14..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

#[tokio::test]
async fn unknown_route_is_json_404() {
    let s = Server::full();
    for path in [
        "/open-apis/nope",
        "/nope",
        "/",
        "/open-apis/calendar/v4/exchange_binding",
        "/open-apis/calendar/v3/exchange_bindings",
        "/_exbind/v1/nope",
    ] {
        let r = s.call(Method::GET, path, None, None).await;
        r.assert_err(404, 99991201);
        let r = s.call(Method::POST, path, None, Some(&json!({}))).await;
        r.assert_err(404, 99991201);
    }
}

#[tokio::test]
async fn wrong_method_is_json_405() {
    let s = Server::full();
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    let tok = s.boss().await;
    for (m, path) in [
        (Method::PUT, format!("{BINDINGS}/{id}")),
        (Method::PATCH, format!("{BINDINGS}/{id}")),
        (Method::POST, format!("{BINDINGS}/{id}")),
        (Method::GET, BINDINGS.to_string()),
        (Method::DELETE, BINDINGS.to_string()),
        (Method::GET, TENANT_TOKEN_PATH.to_string()),
        (Method::PUT, APP_TOKEN_PATH.to_string()),
        (Method::DELETE, "/_exbind/v1/tenants".to_string()),
        (Method::PUT, "/_exbind/v1/seed".to_string()),
        (Method::POST, "/_exbind/healthz".to_string()),
    ] {
        // With or without a token: the route is matched first.
        s.call(m.clone(), &path, None, None)
            .await
            .assert_err(405, 99991301);
        s.call(m, &path, Some(&tok), Some(&json!({})))
            .await
            .assert_err(405, 99991301);
    }
}

#[tokio::test]
async fn oversize_body_is_rejected_before_auth() {
    let s = Server::full();
    let tok = s.boss().await;
    let auth = format!("Bearer {tok}");
    let big = vec![b' '; 64 * 1024 + 1];
    // Each on a fresh connection, the whole body written before reading.
    let json_of = |r: &RawResp| -> serde_json::Value {
        assert_eq!(
            r.exact("Content-Type").as_deref(),
            Some("application/json; charset=utf-8"),
            "{r:?}"
        );
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON body");
        assert_eq!(
            v["error"]["log_id"].as_str(),
            r.exact("X-Tt-Logid").as_deref(),
            "{r:?}"
        );
        v
    };
    // No Authorization at all: the size cap comes first.
    let r = s.raw_with("POST", BINDINGS, &[], &big);
    assert_eq!(r.status(), 400, "{r:?}");
    let v = json_of(&r);
    assert_eq!(
        (v["code"].as_i64(), v["msg"].as_str()),
        (Some(190002), Some(table_msg(190002)))
    );
    let r = s.raw_with("POST", BINDINGS, &[("Authorization", &auth)], &big);
    assert_eq!(r.status(), 400, "{r:?}");
    assert_eq!(json_of(&r)["code"], 190002);
    // Token endpoints answer 200 10003.
    for path in [TENANT_TOKEN_PATH, APP_TOKEN_PATH] {
        let r = s.raw_with("POST", path, &[], &big);
        assert_eq!(r.status(), 200, "{r:?}");
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON body");
        assert_eq!(v, json!({"code": 10003, "msg": "invalid param"}));
    }
    // The route is matched first.
    let r = s.raw_with("POST", "/open-apis/nope", &[], &big);
    assert_eq!(r.status(), 404, "{r:?}");
    assert_eq!(json_of(&r)["code"], 99991201);
    let r = s.raw_with("PUT", &format!("{BINDINGS}/abc"), &[], &big);
    assert_eq!(r.status(), 405, "{r:?}");
    assert_eq!(json_of(&r)["code"], 99991301);
}

#[tokio::test]
async fn oversize_answer_reaches_a_keep_alive_client() {
    // A pooled HTTP client (as the SDKs use) must see the 400 too, every time: the server
    // may close the connection afterwards, but not so that the answer is lost.
    let s = Server::full();
    for _ in 0..10 {
        s.call(Method::GET, "/_exbind/healthz", None, None).await;
        let r = s
            .request(Method::POST, BINDINGS, &[], Some(vec![b' '; 64 * 1024 + 1]))
            .await;
        r.assert_err(400, 190002);
    }
}

#[tokio::test]
async fn body_of_exactly_64_kib_is_accepted() {
    let s = Server::full();
    let tok = s.boss().await;
    let pad = |json: String| {
        let mut b = json.into_bytes();
        b.resize(64 * 1024, b' ');
        b
    };
    let body = pad(
        json!({"admin_account": ACME_ADMIN, "exchange_account": "big@acme.example", "user_id": "alice"})
            .to_string(),
    );
    let r = s
        .request(
            Method::POST,
            &format!("{BINDINGS}?user_id_type=user_id"),
            &[("Authorization", &format!("Bearer {tok}"))],
            Some(body),
        )
        .await;
    assert_eq!(r.ok()["status"], "doing");
    let body = pad(json!({"app_id": "cli_acme", "app_secret": "acme-secret"}).to_string());
    let r = s
        .request(Method::POST, TENANT_TOKEN_PATH, &[], Some(body))
        .await;
    assert_eq!(r.body["code"], 0, "{}", r.text);
}

#[tokio::test]
async fn control_plane_takes_large_bodies() {
    let s = Server::full();
    // A 200 KiB seed document (mostly a comment) is fine on the control plane.
    let mut seed = String::from("# padding ");
    seed.push_str(&"x".repeat(200 * 1024));
    seed.push_str("\n[[tenants]]\ntenant_key = \"big\"\n");
    let r = s
        .request(
            Method::POST,
            "/_exbind/v1/seed",
            &[
                ("Authorization", &format!("Bearer {ADMIN_TOKEN}")),
                ("Content-Type", "application/toml"),
            ],
            Some(seed.into_bytes()),
        )
        .await;
    assert_eq!(r.ok()["added"], 1, "{}", r.text);
}

#[tokio::test]
async fn header_names_are_title_case_on_the_wire() {
    let s = Server::full_with(&["--quota-per-second", "1"]);
    let tok = s.boss().await;
    let id = binding_id(ACME_ADMIN, "x@acme.example");

    let check = |r: &RawResp| {
        assert_eq!(
            r.exact("Content-Type").as_deref(),
            Some("application/json; charset=utf-8"),
            "{r:?}"
        );
        let log_id = r
            .exact("X-Tt-Logid")
            .unwrap_or_else(|| panic!("no X-Tt-Logid in {r:?}"));
        assert!(is_log_id(&log_id), "{log_id}");
        for name in r.names() {
            assert!(
                is_title_case(&name),
                "header name {name:?} is not Title-Case: {r:?}"
            );
        }
    };
    // 404, 405, an error, a success, a token answer.
    let r = s.raw_request("GET", "/open-apis/nope", None, None);
    assert_eq!(r.status(), 404);
    check(&r);
    let r = s.raw_request("PUT", &format!("{BINDINGS}/{id}"), None, None);
    assert_eq!(r.status(), 405);
    check(&r);
    let r = s.raw_request(
        "POST",
        TENANT_TOKEN_PATH,
        None,
        Some(r#"{"app_id":"cli_acme","app_secret":"acme-secret"}"#),
    );
    assert_eq!(r.status(), 200);
    check(&r);
    let r = s.raw_request("GET", "/_exbind/healthz", None, None);
    check(&r);

    // The quota headers, within one second.
    let (a, b) = within_one_second(|| {
        let a = s.raw_request("GET", &format!("{BINDINGS}/{id}"), Some(&tok), None);
        let b = s.raw_request("GET", &format!("{BINDINGS}/{id}"), Some(&tok), None);
        std::future::ready((a, b))
    })
    .await;
    assert_eq!(a.status(), 404, "{a:?}");
    check(&a);
    assert_eq!(b.status(), 429, "{b:?}");
    check(&b);
    assert_eq!(
        b.exact("X-Ogw-Ratelimit-Limit").as_deref(),
        Some("1"),
        "{b:?}"
    );
    assert_eq!(
        b.exact("X-Ogw-Ratelimit-Reset").as_deref(),
        Some("1"),
        "{b:?}"
    );
    assert_eq!(b.exact("Retry-After").as_deref(), Some("1"), "{b:?}");
}

#[tokio::test]
async fn log_ids_are_well_formed_unique_and_logged() {
    let s = Server::full();
    let tok = s.boss().await;
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    let mut seen = std::collections::HashSet::new();
    for i in 0..30 {
        let before = (now_ms() / 1000) as u64;
        let r = match i % 3 {
            0 => s.get(&tok, &id, None).await,
            1 => s.call(Method::GET, "/open-apis/nope", None, None).await,
            _ => {
                s.token_call(TENANT_TOKEN_PATH, "cli_acme", "acme-secret")
                    .await
            }
        };
        let after = (now_ms() / 1000) as u64;
        let log_id = r.log_id();
        assert!(is_log_id(&log_id), "{log_id}");
        let stamp = &log_id[..14];
        assert!(
            (before.saturating_sub(1)..=after + 1).any(|t| utc_stamp(t) == stamp),
            "{log_id} is not the UTC time of the request ({})",
            utc_stamp(after)
        );
        assert!(seen.insert(log_id), "log ids are unique");
    }

    // The log line of a request carries its log id (and its code).
    let r = s.get(&tok, &id, None).await;
    r.assert_err(404, 195103);
    let log_id = r.log_id();
    assert!(
        s.wait_stderr(&log_id).await,
        "log id {log_id} not in stderr"
    );
    let line = s
        .stderr_text()
        .lines()
        .find(|l| l.contains(&log_id))
        .unwrap()
        .to_string();
    assert!(line.contains("195103"), "log line lacks the code: {line}");
    assert!(line.contains("404"), "log line lacks the status: {line}");
    assert!(line.contains("GET"), "log line lacks the method: {line}");
}

#[tokio::test]
async fn no_token_or_secret_in_the_log() {
    let s = Server::full();
    let tenant = s.tenant_token("cli_acme", "acme-secret").await;
    let user = s.boss().await;
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    s.get(&user, &id, None).await;
    s.get(&tenant, &id, None).await;
    s.get("u-forged-token-value-1234567890", &id, None).await;
    s.token_call(TENANT_TOKEN_PATH, "cli_acme", "wrong-secret-value")
        .await;
    s.admin(
        Method::POST,
        "/_exbind/v1/user_access_tokens/revoke",
        Some(&json!({"access_token": user})),
    )
    .await;
    let r = s
        .call(
            Method::GET,
            "/_exbind/v1/tenants",
            Some("wrong-admin-token-xyz"),
            None,
        )
        .await;
    let last = r.log_id();
    assert!(s.wait_stderr(&last).await, "request log lines on stderr");
    let log = s.stderr_text();
    for secret in [
        tenant.as_str(),
        user.as_str(),
        "acme-secret",
        "wrong-secret-value",
        "u-forged-token-value-1234567890",
        ADMIN_TOKEN,
        "wrong-admin-token-xyz",
    ] {
        assert!(!log.contains(secret), "{secret:?} appears in the log");
    }
}

#[tokio::test]
async fn node_sdk_shapes_work() {
    let s = Server::full();
    let tok = s.boss().await;
    let d = s
        .bind(&tok, ACME_ADMIN, "alice.ex@acme.example", "alice")
        .await;
    let id = d["exchange_binding_id"].as_str().unwrap().to_string();
    let auth = format!("Bearer {tok}");
    let node = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/plain, */*"),
        ("User-Agent", "oapi-node-sdk/1.74.0"),
    ];
    // GET with a `{}` body and the raw id.
    let r = s
        .request(
            Method::GET,
            &format!("{BINDINGS}/{id}?user_id_type=open_id"),
            &node,
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(r.ok()["exchange_binding_id"], id.as_str());
    // A body that is not even JSON is ignored on GET.
    let r = s
        .request(
            Method::GET,
            &format!("{BINDINGS}/{id}"),
            &node,
            Some(b"not json".to_vec()),
        )
        .await;
    r.ok();
    // Create with compact JSON.
    let r = s
        .request(
            Method::POST,
            &format!("{BINDINGS}?user_id_type=user_id"),
            &node,
            Some(br#"{"admin_account":"exadmin@acme.example","exchange_account":"bob.ex@acme.example","user_id":"bob"}"#.to_vec()),
        )
        .await;
    r.ok();
    // DELETE with a `{}` body.
    let r = s
        .request(
            Method::DELETE,
            &format!("{BINDINGS}/{id}"),
            &node,
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(r.body, json!({"code": 0, "msg": "success", "data": {}}));
}

#[tokio::test]
async fn python_sdk_shapes_work() {
    let s = Server::full();
    let tok = s.boss().await;
    let auth = format!("Bearer {tok}");
    let ua = ("User-Agent", "oapi-sdk-python/v1.7.5");
    // Create: spaced JSON, UTF-8, the documented content type.
    let body = "{\"admin_account\": \"exadmin@acme.example\", \"exchange_account\": \"zoë@acme.example\", \"user_id\": \"alice\"}";
    let r = s
        .request(
            Method::POST,
            &format!("{BINDINGS}?user_id_type=user_id"),
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json; charset=utf-8"),
                ua,
            ],
            Some(body.as_bytes().to_vec()),
        )
        .await;
    let id = r.ok()["exchange_binding_id"].as_str().unwrap().to_string();
    assert_eq!(r.ok()["exchange_account"], "zoë@acme.example");
    // GET: no Content-Type, no body, the id percent-encoded.
    let r = s
        .request(
            Method::GET,
            &format!("{BINDINGS}/{}?user_id_type=open_id", pct(&id)),
            &[("Authorization", auth.as_str()), ua],
            None,
        )
        .await;
    assert_eq!(r.ok()["exchange_binding_id"], id.as_str());
    // DELETE: Content-Length: 0.
    let r = s
        .request(
            Method::DELETE,
            &format!("{BINDINGS}/{}", pct(&id)),
            &[
                ("Authorization", auth.as_str()),
                ("Content-Length", "0"),
                ua,
            ],
            None,
        )
        .await;
    assert_eq!(r.body, json!({"code": 0, "msg": "success", "data": {}}));
}

#[tokio::test]
async fn create_parses_json_without_content_type() {
    let s = Server::full();
    let tok = s.boss().await;
    let auth = format!("Bearer {tok}");
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let exchange = format!("ct{}@acme.example", ct.map_or(0, |c| c.len()));
        let body =
            json!({"admin_account": ACME_ADMIN, "exchange_account": exchange, "user_id": "alice"});
        let mut headers = vec![("Authorization", auth.as_str())];
        if let Some(c) = ct {
            headers.push(("Content-Type", c));
        }
        let r = s
            .request(
                Method::POST,
                &format!("{BINDINGS}?user_id_type=user_id"),
                &headers,
                Some(body.to_string().into_bytes()),
            )
            .await;
        r.ok();
        // Free alice again for the next spelling.
        s.delete(&tok, &pct(r.ok()["exchange_binding_id"].as_str().unwrap()))
            .await
            .ok();
    }
}

#[tokio::test]
async fn errors_have_the_envelope_everywhere() {
    let s = Server::full();
    // Control-plane errors too.
    let r = s.call(Method::GET, "/_exbind/v1/tenants", None, None).await;
    r.assert_err(401, 99991661);
    let r = s.admin(Method::GET, "/_exbind/v1/tenants/nope", None).await;
    r.assert_err(404, 99991201);
    // Query rejection: a query string that cannot be parsed as such still gets JSON.
    let r = s
        .call(
            Method::GET,
            &format!("{BINDINGS}/abc?user_id_type=%ZZ"),
            Some("u-x"),
            None,
        )
        .await;
    assert!(
        r.body["code"].is_i64() && r.body["msg"].is_string(),
        "{}",
        r.text
    );
    r.assert_json_content_type();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_ids_are_unique_under_concurrency() {
    let s = Server::full_with(&["--rate-limits", "off"]);
    let tok = s.boss().await;
    let path = format!("{BINDINGS}/{}", binding_id(ACME_ADMIN, "x@acme.example"));
    let rs = s.burst(100, Method::GET, &path, Some(&tok), None).await;
    let mut ids: Vec<String> = rs.iter().map(|r| r.log_id()).collect();
    assert!(ids.iter().all(|i| is_log_id(i)), "{ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100);
}
