//! Fault rules (product.md "Sync, faults, journal, reset"): documented errors and latency
//! injected into matching requests, after the token check and before everything else.
mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const ITEM_ROUTE: &str = "/open-apis/calendar/v4/exchange_bindings/{exchange_binding_id}";

async fn add_fault(s: &Server, rule: Value) -> Value {
    let r = s
        .admin(Method::POST, "/_exbind/v1/faults", Some(&rule))
        .await;
    let d = r.ok().clone();
    assert!(d["id"].is_string(), "a rule has an id: {d}");
    d
}

async fn faults(s: &Server) -> Vec<Value> {
    let r = s.admin(Method::GET, "/_exbind/v1/faults", None).await;
    r.ok()["items"].as_array().expect("items").clone()
}

async fn fault(s: &Server, id: &Value) -> Option<Value> {
    faults(s).await.into_iter().find(|f| f["id"] == *id)
}

/// A GET of a binding that does not exist: 404 195103 when nothing interferes.
async fn get_missing(s: &Server, tok: &str) -> Resp {
    s.get(tok, &binding_id(ACME_ADMIN, "missing@acme.example"), None)
        .await
}

#[tokio::test]
async fn error_rule_answers_its_code_for_the_next_n_matches() {
    let s = Server::full();
    let tok = s.boss().await;
    let rule = add_fault(
        &s,
        json!({"method": "POST", "route": BINDINGS, "times": 2, "error": {"code": 190003}}),
    )
    .await;
    assert_eq!(rule["times"], 2);
    assert_eq!(rule["hits"], 0);

    let r = s
        .create(&tok, ACME_ADMIN, "f@acme.example", "alice", Some("user_id"))
        .await;
    r.assert_err(500, 190003);
    let left = fault(&s, &rule["id"]).await.expect("still listed");
    assert_eq!(left["hits"], 1, "{left}");
    assert_eq!(left["times"], 1, "{left}");

    s.create(&tok, ACME_ADMIN, "f@acme.example", "alice", Some("user_id"))
        .await
        .assert_err(500, 190003);
    // The faulted creates made nothing.
    assert!(s.list_bindings("acme").await.is_empty());
    if let Some(f) = fault(&s, &rule["id"]).await {
        assert_eq!(f["hits"], 2, "{f}");
        assert_eq!(f["times"], 0, "{f}");
    }

    // Used up: the next create goes through.
    let d = s.bind(&tok, ACME_ADMIN, "f@acme.example", "alice").await;
    assert_eq!(d["status"], "doing");
    assert_eq!(s.list_bindings("acme").await.len(), 1);
    // Other methods and routes were never affected.
    get_missing(&s, &tok).await.assert_err(404, 195103);
}

#[tokio::test]
async fn each_code_answers_with_the_contract_status_and_msg() {
    let s = Server::full();
    let tok = s.boss().await;
    for (code, status) in [
        (190002, 400),
        (190004, 429),
        (190005, 429),
        (190010, 429),
        (195100, 404),
        (195101, 403),
        (195104, 403),
        (195105, 403),
        (195106, 404),
        (99991400, 429),
        (99991663, 400),
        (99991677, 400),
        (99991201, 404),
    ] {
        add_fault(
            &s,
            json!({"method": "GET", "route": ITEM_ROUTE, "times": 1, "error": {"code": code}}),
        )
        .await;
        get_missing(&s, &tok).await.assert_err(status, code);
        // One time only.
        get_missing(&s, &tok).await.assert_err(404, 195103);
    }
    // DELETE on the item route too.
    add_fault(
        &s,
        json!({"method": "DELETE", "route": ITEM_ROUTE, "times": 1, "error": {"code": 195102}}),
    )
    .await;
    s.delete(&tok, &binding_id(ACME_ADMIN, "x@acme.example"))
        .await
        .assert_err(400, 195102);
}

#[tokio::test]
async fn a_bad_token_still_gets_the_token_error() {
    let s = Server::full();
    let tok = s.boss().await;
    let rule = add_fault(
        &s,
        json!({"method": "GET", "route": ITEM_ROUTE, "times": 1, "error": {"code": 190003}}),
    )
    .await;
    let id = binding_id(ACME_ADMIN, "missing@acme.example");
    s.get("u-forged-token", &id, None)
        .await
        .assert_err(400, 99991668);
    let tenant = s.tenant_token("cli_acme", "acme-secret").await;
    s.get(&tenant, &id, None).await.assert_err(400, 99991663);
    s.get("garbage", &id, None).await.assert_err(400, 99991671);
    let path = format!("{BINDINGS}/{id}");
    s.call(Method::GET, &path, None, None)
        .await
        .assert_err(400, 99991661);
    let f = fault(&s, &rule["id"]).await.expect("unused rule listed");
    assert_eq!(f["hits"], 0, "{f}");
    assert_eq!(f["times"], 1, "{f}");
    // A good token meets the rule.
    s.get(&tok, &id, None).await.assert_err(500, 190003);

    // Nor does a latency rule slow down a request whose token fails (a rule of 20 s: an
    // answer in less than half of it did not wait for it, however loaded the machine).
    add_fault(
        &s,
        json!({"method": "GET", "route": ITEM_ROUTE, "latency_ms": 20_000}),
    )
    .await;
    let t = Instant::now();
    s.get("u-forged-token", &id, None)
        .await
        .assert_err(400, 99991668);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "a bad token waited for the latency rule"
    );
}

#[tokio::test]
async fn a_fault_comes_before_scopes_bot_and_caller_checks() {
    let s = Server::full();
    let id = binding_id(ACME_ADMIN, "missing@acme.example");
    let noscope = s
        .mint_with(
            json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "boss", "scopes": []}),
        )
        .await;
    s.get(&noscope, &id, None).await.assert_err_msg(
        400,
        99991679,
        &privilege_msg(&[
            "calendar:calendar:readonly",
            "calendar:exchange.bindings:read",
        ]),
    );
    let nobot = s.mint("cli_nobot", "acme", "boss").await;
    s.get(&nobot, &id, None).await.assert_err(404, 190007);
    let plain = s.mint("cli_acme", "acme", "alice").await;
    s.get(&plain, &id, None).await.assert_err(403, 195101);

    add_fault(
        &s,
        json!({"method": "GET", "route": ITEM_ROUTE, "error": {"code": 195106}}),
    )
    .await;
    for tok in [&noscope, &nobot, &plain] {
        s.get(tok, &id, None).await.assert_err(404, 195106);
    }
    // A bad user_id_type loses to the fault as well.
    s.get(&plain, &id, Some("bogus"))
        .await
        .assert_err(404, 195106);
    // So does an invalid create body, an uninstalled app and an undecodable id.
    add_fault(
        &s,
        json!({"method": "POST", "route": BINDINGS, "error": {"code": 190010}}),
    )
    .await;
    let boss = s.boss().await;
    s.call(
        Method::POST,
        BINDINGS,
        Some(&boss),
        Some(&json!({"nonsense": 1})),
    )
    .await
    .assert_err(429, 190010);
    s.get(&boss, "%%%not-an-id", None)
        .await
        .assert_err(404, 195106);
    let acme2 = s.mint("cli_acme2", "acme", "boss").await;
    s.patch_ok("/_exbind/v1/apps/cli_acme2", json!({"tenants": []}))
        .await;
    s.get(&acme2, &id, None).await.assert_err(404, 195106);
}

#[tokio::test]
async fn faulted_requests_count_against_no_app_budget() {
    let s = &Server::full_with(&["--app-budget-per-second", "3"]);
    let tok = &s.boss().await;
    let answers = within_one_second(|| async move {
        s.admin(Method::DELETE, "/_exbind/v1/faults", None)
            .await
            .ok();
        add_fault(
            s,
            json!({"method": "GET", "route": ITEM_ROUTE, "times": 4, "error": {"code": 190003}}),
        )
        .await;
        let mut answers = Vec::new();
        for _ in 0..8 {
            answers.push(get_missing(s, tok).await);
        }
        answers
    })
    .await;
    for a in &answers[..4] {
        a.assert_err(500, 190003);
    }
    for a in &answers[4..7] {
        a.assert_err(404, 195103);
    }
    answers[7].assert_err(429, 190005);
}

#[tokio::test]
async fn faulted_requests_count_against_no_quota_and_beat_the_quota() {
    let s = &Server::full_with(&["--quota-per-second", "3"]);
    let tok = &s.boss().await;
    // Everything must happen inside one clock-aligned second.
    let answers = within_one_second(|| async move {
        s.admin(Method::DELETE, "/_exbind/v1/faults", None)
            .await
            .ok();
        add_fault(
            s,
            json!({"method": "GET", "route": ITEM_ROUTE, "times": 5, "error": {"code": 190003}}),
        )
        .await;
        let mut answers = Vec::new();
        for _ in 0..9 {
            answers.push(get_missing(s, tok).await);
        }
        add_fault(
            s,
            json!({"method": "GET", "route": ITEM_ROUTE, "times": 1, "error": {"code": 195101}}),
        )
        .await;
        answers.push(get_missing(s, tok).await);
        answers
    })
    .await;
    for a in &answers[..5] {
        a.assert_err(500, 190003);
    }
    for a in &answers[5..8] {
        a.assert_err(404, 195103);
    }
    answers[8].assert_err(429, 99991400);
    // Quota spent, yet the fault still answers first.
    answers[9].assert_err(403, 195101);
}

#[tokio::test]
async fn rules_match_method_route_app_and_tenant() {
    let s = Server::full();
    let acme = s.boss().await;
    let acme2 = s.mint("cli_acme2", "acme", "boss").await;
    let globex = s.mint("cli_globex", "globex", "gboss").await;
    let gid = binding_id(GLOBEX_ADMIN, "missing@globex.example");

    add_fault(
        &s,
        json!({"method": "GET", "route": ITEM_ROUTE, "app_id": "cli_acme2", "error": {"code": 190004}}),
    )
    .await;
    get_missing(&s, &acme).await.assert_err(404, 195103);
    get_missing(&s, &acme2).await.assert_err(429, 190004);
    s.get(&globex, &gid, None).await.assert_err(404, 195103);
    s.admin(Method::DELETE, "/_exbind/v1/faults", None)
        .await
        .ok();

    add_fault(
        &s,
        json!({"method": "GET", "route": ITEM_ROUTE, "tenant_key": "globex", "error": {"code": 190004}}),
    )
    .await;
    get_missing(&s, &acme).await.assert_err(404, 195103);
    get_missing(&s, &acme2).await.assert_err(404, 195103);
    s.get(&globex, &gid, None).await.assert_err(429, 190004);
    s.admin(Method::DELETE, "/_exbind/v1/faults", None)
        .await
        .ok();

    // Method and route must both match.
    add_fault(
        &s,
        json!({"method": "DELETE", "route": ITEM_ROUTE, "error": {"code": 190004}}),
    )
    .await;
    add_fault(
        &s,
        json!({"method": "GET", "route": BINDINGS, "error": {"code": 190004}}),
    )
    .await;
    get_missing(&s, &acme).await.assert_err(404, 195103);
    let d = s.bind(&acme, ACME_ADMIN, "m@acme.example", "alice").await;
    let id = d["exchange_binding_id"].as_str().unwrap().to_string();
    s.delete(&acme, &id).await.assert_err(429, 190004);
    assert_eq!(s.list_bindings("acme").await.len(), 1);
}

#[tokio::test]
async fn latency_rules_delay_the_answer() {
    let s = Server::full();
    let tok = s.boss().await;
    // Long enough that an answer in half the time did not wait for it, whatever the load.
    let rule = add_fault(
        &s,
        json!({"method": "GET", "route": ITEM_ROUTE, "times": 1, "latency_ms": 4000}),
    )
    .await;
    let t = Instant::now();
    get_missing(&s, &tok).await.assert_err(404, 195103);
    let slow = t.elapsed();
    assert!(
        slow >= Duration::from_millis(4000),
        "latency rule: {slow:?}"
    );
    // Used up.
    let t = Instant::now();
    get_missing(&s, &tok).await.assert_err(404, 195103);
    assert!(
        t.elapsed() < Duration::from_millis(2000),
        "the latency rule outlived its times"
    );
    if let Some(f) = fault(&s, &rule["id"]).await {
        assert_eq!(f["hits"], 1, "{f}");
    }

    // Latency and an error together.
    add_fault(
        &s,
        json!({"method": "POST", "route": BINDINGS, "times": 1, "latency_ms": 300, "error": {"code": 190010}}),
    )
    .await;
    let t = Instant::now();
    s.create(&tok, ACME_ADMIN, "l@acme.example", "alice", Some("user_id"))
        .await
        .assert_err(429, 190010);
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(s.list_bindings("acme").await.is_empty());
}

#[tokio::test]
async fn token_endpoints_can_be_faulted() {
    let s = Server::full();
    add_fault(
        &s,
        json!({"method": "POST", "route": TENANT_TOKEN_PATH, "times": 1, "error": {"code": 190003}}),
    )
    .await;
    let r = s
        .token_call(TENANT_TOKEN_PATH, "cli_acme", "acme-secret")
        .await;
    r.assert_err(500, 190003);
    let r = s
        .token_call(TENANT_TOKEN_PATH, "cli_acme", "acme-secret")
        .await;
    assert_eq!(r.body["code"], 0, "{}", r.text);
    assert!(r.body["tenant_access_token"].is_string());

    add_fault(
        &s,
        json!({"method": "POST", "route": APP_TOKEN_PATH, "times": 1, "error": {"code": 99991400}}),
    )
    .await;
    // The tenant-token route is not affected by the app-token rule.
    let r = s
        .token_call(TENANT_TOKEN_PATH, "cli_acme", "acme-secret")
        .await;
    assert_eq!(r.body["code"], 0, "{}", r.text);
    s.token_call(APP_TOKEN_PATH, "cli_acme", "acme-secret")
        .await
        .assert_err(429, 99991400);
    let r = s
        .token_call(APP_TOKEN_PATH, "cli_acme", "acme-secret")
        .await;
    assert_eq!(r.body["code"], 0, "{}", r.text);

    add_fault(
        &s,
        json!({"method": "POST", "route": TENANT_TOKEN_PATH, "times": 1, "latency_ms": 300}),
    )
    .await;
    let t = Instant::now();
    let r = s
        .token_call(TENANT_TOKEN_PATH, "cli_acme", "acme-secret")
        .await;
    assert_eq!(r.body["code"], 0, "{}", r.text);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn fraction_rules_hit_about_that_share() {
    let s = Server::full();
    let tok = s.boss().await;
    let all = add_fault(
        &s,
        json!({"method": "GET", "route": ITEM_ROUTE, "fraction": 1.0, "error": {"code": 190003}}),
    )
    .await;
    for _ in 0..5 {
        get_missing(&s, &tok).await.assert_err(500, 190003);
    }
    assert_eq!(fault(&s, &all["id"]).await.unwrap()["hits"], 5);
    s.admin(Method::DELETE, "/_exbind/v1/faults", None)
        .await
        .ok();

    let half = add_fault(
        &s,
        json!({"method": "GET", "route": ITEM_ROUTE, "fraction": 0.5, "error": {"code": 190003}}),
    )
    .await;
    let (mut faulted, mut normal) = (0, 0);
    for _ in 0..60 {
        let r = get_missing(&s, &tok).await;
        match r.code() {
            190003 => faulted += 1,
            195103 => normal += 1,
            c => panic!("unexpected code {c}: {}", r.text),
        }
    }
    assert!(
        (10..=50).contains(&faulted),
        "fraction 0.5 faulted {faulted} of 60"
    );
    assert_eq!(faulted + normal, 60);
    // A fraction rule stays until removed and counts its hits.
    let f = fault(&s, &half["id"]).await.expect("still listed");
    assert_eq!(f["hits"], faulted, "{f}");
}

#[tokio::test]
async fn rules_expire() {
    let s = Server::full();
    let tok = s.boss().await;
    let short = add_fault(
        &s,
        json!({"method": "GET", "route": ITEM_ROUTE, "expires_in": 3, "error": {"code": 190003}}),
    )
    .await;
    let long = add_fault(
        &s,
        json!({"method": "POST", "route": BINDINGS, "expires_in": 60, "error": {"code": 190003}}),
    )
    .await;
    get_missing(&s, &tok).await.assert_err(500, 190003);
    let deadline = Instant::now() + PATIENCE;
    while fault(&s, &short["id"]).await.is_some() {
        assert!(Instant::now() < deadline, "rule did not expire");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    get_missing(&s, &tok).await.assert_err(404, 195103);
    assert!(fault(&s, &long["id"]).await.is_some());
    s.create(&tok, ACME_ADMIN, "e@acme.example", "alice", Some("user_id"))
        .await
        .assert_err(500, 190003);
}

#[tokio::test]
async fn rules_are_listed_and_deleted() {
    let s = Server::full();
    let tok = s.boss().await;
    let a = add_fault(
        &s,
        json!({"method": "GET", "route": ITEM_ROUTE, "times": 3, "error": {"code": 190003}}),
    )
    .await;
    let b = add_fault(
        &s,
        json!({"method": "POST", "route": BINDINGS, "app_id": "cli_acme", "tenant_key": "acme", "latency_ms": 10}),
    )
    .await;
    assert_ne!(a["id"], b["id"]);
    let list = faults(&s).await;
    assert_eq!(list.len(), 2);
    let la = list.iter().find(|f| f["id"] == a["id"]).unwrap();
    assert_eq!(la["method"], "GET");
    assert_eq!(la["route"], ITEM_ROUTE);
    assert_eq!(la["times"], 3);
    assert_eq!(la["hits"], 0);
    let lb = list.iter().find(|f| f["id"] == b["id"]).unwrap();
    assert_eq!(lb["app_id"], "cli_acme");
    assert_eq!(lb["tenant_key"], "acme");

    let id = a["id"].as_str().unwrap();
    s.admin(Method::DELETE, &format!("/_exbind/v1/faults/{id}"), None)
        .await
        .ok();
    get_missing(&s, &tok).await.assert_err(404, 195103);
    assert_eq!(faults(&s).await.len(), 1);
    s.admin(Method::DELETE, &format!("/_exbind/v1/faults/{id}"), None)
        .await
        .assert_err(404, 99991201);
    s.admin(Method::DELETE, "/_exbind/v1/faults/fault-nope", None)
        .await
        .assert_err(404, 99991201);

    add_fault(
        &s,
        json!({"method": "GET", "route": ITEM_ROUTE, "error": {"code": 190003}}),
    )
    .await;
    s.admin(Method::DELETE, "/_exbind/v1/faults", None)
        .await
        .ok();
    assert!(faults(&s).await.is_empty());
    get_missing(&s, &tok).await.assert_err(404, 195103);

    // The admin token guards the routes.
    s.call(Method::GET, "/_exbind/v1/faults", None, None)
        .await
        .assert_err(401, 99991661);
    s.call(
        Method::POST,
        "/_exbind/v1/faults",
        Some("wrong-token"),
        Some(&json!({"method": "GET", "route": ITEM_ROUTE, "error": {"code": 190003}})),
    )
    .await
    .assert_err(401, 99991663);
    assert!(faults(&s).await.is_empty());
}

#[tokio::test]
async fn bad_rule_bodies_are_rejected() {
    let s = Server::full();
    for body in [
        json!({"method": "GET", "route": ITEM_ROUTE, "error": {"code": 123}}),
        json!({"method": "GET", "route": ITEM_ROUTE, "error": {"code": 0}}),
        json!({"method": "GET", "route": ITEM_ROUTE, "times": 2, "fraction": 0.5, "error": {"code": 190003}}),
        json!({"method": "GET", "route": ITEM_ROUTE}),
        json!({"method": "GET", "route": ITEM_ROUTE, "times": 1}),
        json!({"method": "GET", "route": "/open-apis/calendar/v4/calendars", "error": {"code": 190003}}),
        json!({"method": "GET", "route": "/_exbind/v1/faults", "error": {"code": 190003}}),
        json!({"route": ITEM_ROUTE, "error": {"code": 190003}}),
        json!({"method": "GET", "error": {"code": 190003}}),
        json!([]),
    ] {
        let r = s
            .admin(Method::POST, "/_exbind/v1/faults", Some(&body))
            .await;
        r.assert_err(400, 190002);
        assert!(
            !r.field_violations().is_empty() || body.is_array(),
            "violations expected for {body}: {}",
            r.text
        );
    }
    assert!(faults(&s).await.is_empty());
}
