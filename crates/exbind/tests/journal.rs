//! The request journal (product.md "Sync, faults, journal, reset"): every /open-apis request,
//! newest first, filterable, bounded by `--journal-size`, and never holding a token or secret.
mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const ITEM_ROUTE: &str = "/open-apis/calendar/v4/exchange_bindings/{exchange_binding_id}";

/// RFC 3339 (UTC, milliseconds) for a time in ms since the epoch.
fn rfc3339(ms: u128) -> String {
    let st = utc_stamp((ms / 1000) as u64);
    format!(
        "{}-{}-{}T{}:{}:{}.{:03}Z",
        &st[0..4],
        &st[4..6],
        &st[6..8],
        &st[8..10],
        &st[10..12],
        &st[12..14],
        ms % 1000
    )
}

async fn journal(s: &Server, query: &str) -> Value {
    let r = s
        .admin(Method::GET, &format!("/_exbind/v1/requests?{query}"), None)
        .await;
    r.ok().clone()
}

fn log_ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["log_id"].as_str().expect("log_id").to_string())
        .collect()
}

#[tokio::test]
async fn open_api_requests_are_journaled_newest_first() {
    let s = Server::full();
    let boss = s.boss().await;
    let id = binding_id(ACME_ADMIN, "j@acme.example");

    // A series of calls, each remembered by its log id.
    let t_tok = s
        .token_call(TENANT_TOKEN_PATH, "cli_acme", "acme-secret")
        .await;
    let c = s
        .create(
            &boss,
            ACME_ADMIN,
            "j@acme.example",
            "alice",
            Some("user_id"),
        )
        .await;
    c.ok();
    // Control-plane and health calls are not journaled.
    s.list_bindings("acme").await;
    s.call(Method::GET, "/_exbind/healthz", None, None).await;
    let g = s
        .get(&boss, &binding_id(ACME_ADMIN, "none@acme.example"), None)
        .await;
    g.assert_err(404, 195103);
    let bad = s.delete("u-forged", &id).await;
    bad.assert_err(400, 99991668);
    let d = s.delete(&boss, &id).await;
    d.ok();
    let sent = [&t_tok, &c, &g, &bad, &d];

    let data = journal(&s, "").await;
    assert_eq!(data["enabled"], true);
    assert_eq!(data["has_more"], false);
    let items = data["items"].as_array().unwrap().clone();
    let want: Vec<String> = sent.iter().rev().map(|r| r.log_id()).collect();
    assert_eq!(log_ids(&items), want, "newest first, only /open-apis");
    for i in &items {
        assert!(
            i["path"].as_str().unwrap().starts_with("/open-apis/"),
            "{i}"
        );
        rfc3339_ms(i["time"].as_str().expect("time"));
        assert!(i["latency_ms"].is_number(), "{i}");
    }
    let times: Vec<i64> = items
        .iter()
        .map(|i| rfc3339_ms(i["time"].as_str().unwrap()))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    let by = |r: &Resp| {
        items
            .iter()
            .find(|i| i["log_id"] == r.log_id())
            .unwrap()
            .clone()
    };
    let e = by(&c);
    assert_eq!(e["method"], "POST");
    assert_eq!(e["path"], BINDINGS);
    assert_eq!(e["route"], BINDINGS);
    assert_eq!(e["app_id"], "cli_acme");
    assert_eq!(e["tenant_key"], "acme");
    assert_eq!(e["user_id"], "boss");
    assert_eq!(e["status"], 200);
    assert_eq!(e["code"], 0);

    let e = by(&g);
    assert_eq!(e["method"], "GET");
    assert_eq!(e["route"], ITEM_ROUTE);
    assert_eq!(e["status"], 404);
    assert_eq!(e["code"], 195103);
    assert_eq!(e["user_id"], "boss");

    let e = by(&bad);
    assert_eq!(e["method"], "DELETE");
    assert_eq!(e["route"], ITEM_ROUTE);
    assert_eq!(e["path"], format!("{BINDINGS}/{id}"));
    assert_eq!(e["status"], 400);
    assert_eq!(e["code"], 99991668);

    let e = by(&d);
    assert_eq!(
        (e["status"].clone(), e["code"].clone()),
        (json!(200), json!(0))
    );

    let e = by(&t_tok);
    assert_eq!(e["method"], "POST");
    assert_eq!(e["route"], TENANT_TOKEN_PATH);
    assert_eq!(e["code"], 0);

    // One entry by its log id; an unknown one is 404.
    let r = s
        .admin(
            Method::GET,
            &format!("/_exbind/v1/requests/{}", g.log_id()),
            None,
        )
        .await;
    assert_eq!(r.ok(), &by(&g));
    s.admin(
        Method::GET,
        "/_exbind/v1/requests/20240101000000ABCDEF0123456789ABCDEF",
        None,
    )
    .await
    .assert_err(404, 99991201);
    // The admin token guards it.
    s.call(Method::GET, "/_exbind/v1/requests", None, None)
        .await
        .assert_err(401, 99991661);
}

#[tokio::test]
async fn filters_and_pages() {
    let s = Server::full();
    let boss = s.boss().await;
    let acme2 = s.mint("cli_acme2", "acme", "boss").await;
    let alice = s.mint("cli_acme", "acme", "alice").await;
    let globex = s.mint("cli_globex", "globex", "gboss").await;
    let missing = binding_id(ACME_ADMIN, "none@acme.example");

    let a1 = s.get(&boss, &missing, None).await; // 404 195103
    let a2 = s.get(&acme2, &missing, None).await; // 404 195103
    let a3 = s.get(&alice, &missing, None).await; // 403 195101
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mark = now_ms();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let b1 = s
        .get(&globex, &binding_id(GLOBEX_ADMIN, "x@globex.example"), None)
        .await; // 404 195103
    let b2 = s
        .create(&boss, ACME_ADMIN, "k@acme.example", "bob", Some("user_id"))
        .await; // 200 0
    let b3 = s.delete(&boss, &missing).await; // 404 195103
    a3.assert_err(403, 195101);
    b2.ok();

    let ids = |q: &str| {
        let q = q.to_string();
        let s = &s;
        async move {
            let (items, _) = s.journal_all(&q).await;
            log_ids(&items)
        }
    };
    assert_eq!(
        ids("method=GET").await,
        vec![b1.log_id(), a3.log_id(), a2.log_id(), a1.log_id()]
    );
    assert_eq!(ids("method=POST").await, vec![b2.log_id()]);
    assert_eq!(
        ids(&format!("route={}", pct(ITEM_ROUTE))).await,
        vec![
            b3.log_id(),
            b1.log_id(),
            a3.log_id(),
            a2.log_id(),
            a1.log_id()
        ]
    );
    assert_eq!(
        ids(&format!("route={}", pct(BINDINGS))).await,
        vec![b2.log_id()]
    );
    assert_eq!(ids("app_id=cli_acme2").await, vec![a2.log_id()]);
    assert_eq!(ids("tenant_key=globex").await, vec![b1.log_id()]);
    assert_eq!(ids("user_id=alice").await, vec![a3.log_id()]);
    assert_eq!(
        ids("app_id=cli_acme&user_id=boss").await,
        vec![b3.log_id(), b2.log_id(), a1.log_id()]
    );
    assert_eq!(ids("status=403").await, vec![a3.log_id()]);
    assert_eq!(ids("code=195101").await, vec![a3.log_id()]);
    assert_eq!(
        ids("status=404&code=195103&method=GET").await,
        vec![b1.log_id(), a2.log_id(), a1.log_id()]
    );
    assert_eq!(ids("status=200").await, vec![b2.log_id()]);
    assert!(ids("app_id=cli_nobody").await.is_empty());

    let after = vec![b3.log_id(), b2.log_id(), b1.log_id()];
    assert_eq!(ids(&format!("since={mark}")).await, after);
    assert_eq!(ids(&format!("since={}", pct(&rfc3339(mark)))).await, after);
    assert_eq!(
        ids(&format!("since={}&method=GET", mark)).await,
        vec![b1.log_id()]
    );
    assert!(ids(&format!("since={}", now_ms() + 60_000))
        .await
        .is_empty());

    // Pages of two, newest first, every entry exactly once.
    let everything = ids("").await;
    assert_eq!(everything.len(), 6);
    let mut paged = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = "page_size=2".to_string();
        if let Some(t) = &token {
            q.push_str(&format!("&page_token={}", pct(t)));
        }
        let d = journal(&s, &q).await;
        let items = d["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        paged.extend(log_ids(items));
        pages += 1;
        if d["has_more"] != true {
            break;
        }
        token = Some(d["page_token"].as_str().unwrap().to_string());
        assert!(pages < 10);
    }
    assert_eq!(pages, 3);
    assert_eq!(paged, everything);

    // A page token with a filter keeps the filter.
    let d = journal(&s, "page_size=1&method=GET").await;
    assert_eq!(log_ids(d["items"].as_array().unwrap()), vec![b1.log_id()]);
    let t = d["page_token"].as_str().unwrap().to_string();
    let d = journal(
        &s,
        &format!("page_size=1&method=GET&page_token={}", pct(&t)),
    )
    .await;
    assert_eq!(log_ids(d["items"].as_array().unwrap()), vec![a3.log_id()]);

    // Bad filter values.
    for q in ["since=yesterday", "status=abc", "code=x"] {
        s.admin(Method::GET, &format!("/_exbind/v1/requests?{q}"), None)
            .await
            .assert_err(400, 190002);
    }
}

#[tokio::test]
async fn faulted_and_slow_requests_are_journaled_as_answered() {
    let s = Server::full();
    let boss = s.boss().await;
    let rule = json!({"method": "GET", "route": ITEM_ROUTE, "times": 1, "latency_ms": 300,
                      "error": {"code": 190004}});
    s.admin(Method::POST, "/_exbind/v1/faults", Some(&rule))
        .await
        .ok();
    let r = s
        .get(&boss, &binding_id(ACME_ADMIN, "none@acme.example"), None)
        .await;
    r.assert_err(429, 190004);
    let e = s
        .admin(
            Method::GET,
            &format!("/_exbind/v1/requests/{}", r.log_id()),
            None,
        )
        .await;
    let e = e.ok();
    assert_eq!(e["status"], 429);
    assert_eq!(e["code"], 190004);
    assert_eq!(e["app_id"], "cli_acme");
    assert!(
        e["latency_ms"].as_f64().unwrap() >= 300.0,
        "latency includes the injected delay: {e}"
    );
}

#[tokio::test]
async fn journal_never_holds_tokens_or_secrets() {
    let s = Server::full();
    let boss = s.boss().await;
    let tenant = s.tenant_token("cli_acme", "acme-secret").await;
    let app = s
        .token_call(APP_TOKEN_PATH, "cli_acme2", "acme2-secret")
        .await;
    let app_tok = app.body["app_access_token"].as_str().unwrap().to_string();
    s.token_call(TENANT_TOKEN_PATH, "cli_acme", "wrong-secret-value-123")
        .await;
    let id = binding_id(ACME_ADMIN, "s@acme.example");
    s.bind(&boss, ACME_ADMIN, "s@acme.example", "alice").await;
    s.get(&boss, &id, None).await.ok();
    s.get(&tenant, &id, None).await.assert_err(400, 99991663);
    s.get(&app_tok, &id, None).await.assert_err(400, 99991663);
    let forged = "u-forgedTOKENvalue0123456789";
    s.get(forged, &id, None).await.assert_err(400, 99991668);
    let odd = "not-a-token-at-all-987654";
    s.get(odd, &id, None).await.assert_err(400, 99991671);
    s.delete(&boss, &id).await.ok();

    let (items, texts) = s.journal_all("").await;
    assert!(items.len() >= 9, "{} entries", items.len());
    let mut dump = texts.join("\n");
    for i in &items {
        let r = s
            .admin(
                Method::GET,
                &format!("/_exbind/v1/requests/{}", i["log_id"].as_str().unwrap()),
                None,
            )
            .await;
        dump.push_str(&r.text);
    }
    let secrets = [
        boss.as_str(),
        tenant.as_str(),
        app_tok.as_str(),
        forged,
        odd,
        "acme-secret",
        "acme2-secret",
        "wrong-secret-value-123",
        ADMIN_TOKEN,
    ];
    for secret in secrets {
        assert!(!dump.contains(secret), "journal holds {secret:?}");
        // Nor in the structured log.
        assert!(
            !s.stderr_text().contains(secret),
            "the log holds {secret:?}"
        );
    }
    // A bare "u-…" prefix of a real token would be a leak as well.
    let stem = &boss[..boss.len().min(12)];
    assert!(!dump.contains(stem), "journal holds part of a token");
}

#[tokio::test]
async fn journal_size_keeps_the_newest() {
    let s = Server::full_with(&["--journal-size", "3"]);
    let boss = s.boss().await;
    let missing = binding_id(ACME_ADMIN, "none@acme.example");
    let mut sent = Vec::new();
    for _ in 0..5 {
        sent.push(s.get(&boss, &missing, None).await.log_id());
    }
    let (items, _) = s.journal_all("").await;
    let want: Vec<String> = sent.iter().rev().take(3).cloned().collect();
    assert_eq!(log_ids(&items), want);
    s.admin(
        Method::GET,
        &format!("/_exbind/v1/requests/{}", sent[0]),
        None,
    )
    .await
    .assert_err(404, 99991201);
    s.admin(
        Method::GET,
        &format!("/_exbind/v1/requests/{}", sent[4]),
        None,
    )
    .await
    .ok();
}

#[tokio::test]
async fn journal_size_zero_turns_it_off() {
    let s = Server::full_with(&["--journal-size", "0"]);
    let boss = s.boss().await;
    let r = s
        .get(&boss, &binding_id(ACME_ADMIN, "none@acme.example"), None)
        .await;
    r.assert_err(404, 195103);
    s.bind(&boss, ACME_ADMIN, "z@acme.example", "alice").await;
    let d = journal(&s, "").await;
    assert_eq!(d["enabled"], false, "{d}");
    assert_eq!(d["items"], json!([]), "{d}");
    assert_eq!(d["has_more"], false);
    s.admin(
        Method::GET,
        &format!("/_exbind/v1/requests/{}", r.log_id()),
        None,
    )
    .await
    .assert_err(404, 99991201);
}

#[tokio::test]
async fn pages_stay_put_while_new_requests_arrive() {
    let s = Server::full();
    let boss = s.boss().await;
    let missing = binding_id(ACME_ADMIN, "none@acme.example");
    let mut sent = Vec::new();
    for _ in 0..4 {
        sent.push(s.get(&boss, &missing, None).await.log_id());
    }
    let d = journal(&s, "page_size=2").await;
    assert_eq!(
        log_ids(d["items"].as_array().unwrap()),
        vec![sent[3].clone(), sent[2].clone()]
    );
    let t = d["page_token"].as_str().unwrap().to_string();
    // Newer requests do not shift the next page.
    for _ in 0..3 {
        s.get(&boss, &missing, None).await;
    }
    let d = journal(&s, &format!("page_size=2&page_token={}", pct(&t))).await;
    assert_eq!(
        log_ids(d["items"].as_array().unwrap()),
        vec![sent[1].clone(), sent[0].clone()]
    );
    assert_eq!(d["has_more"], false);
}
