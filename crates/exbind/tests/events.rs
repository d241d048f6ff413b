//! `GET /_exbind/v1/events`: binding and request events as Server-Sent Events.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const ID: fn() -> String = || binding_id("exadmin@acme.example", "alice@acme.example");

#[tokio::test]
async fn a_binding_is_seen_created_moved_and_deleted_with_the_requests_that_did_it() {
    let s = Server::full();
    let mut ev = s.events("").await;
    let token = s.boss().await;
    let created = s
        .create(
            &token,
            "exadmin@acme.example",
            "alice@acme.example",
            "alice",
            Some("user_id"),
        )
        .await;
    created.assert(200, 0);
    let is_binding = |action: &'static str| {
        move |name: &str, d: &Value| name == "binding" && d["action"] == action
    };
    let b = ev.until(is_binding("created")).await;
    assert_eq!(b["exchange_binding_id"], ID().as_str());
    assert_eq!(
        (&b["tenant_key"], &b["user_id"], &b["status"]),
        (&json!("acme"), &json!("alice"), &json!("doing"))
    );
    let log_id = created.log_id();
    let r = ev
        .until(|name, d| name == "request" && d["log_id"] == log_id.as_str())
        .await;
    assert_eq!((&r["method"], &r["code"]), (&json!("POST"), &json!(0)));

    s.admin(
        Method::POST,
        &format!("/_exbind/v1/tenants/acme/bindings/{}/advance", ID()),
        None,
    )
    .await
    .assert(200, 0);
    let moved = ev.until(is_binding("status")).await;
    assert_eq!(
        (&moved["from"], &moved["status"]),
        (&json!("doing"), &json!("cal_done"))
    );

    s.admin(
        Method::PATCH,
        &format!("/_exbind/v1/tenants/acme/bindings/{}", ID()),
        Some(&json!({"status": "err", "reason": "mailbox gone"})),
    )
    .await
    .assert(200, 0);
    let failed = ev.until(is_binding("status")).await;
    assert_eq!(
        (&failed["status"], &failed["reason"]),
        (&json!("err"), &json!("mailbox gone"))
    );

    s.delete(&token, &pct(&ID())).await.assert(200, 0);
    let gone = ev.until(is_binding("deleted")).await;
    assert_eq!(gone["exchange_binding_id"], ID().as_str());

    s.admin(Method::POST, "/_exbind/v1/reset", None)
        .await
        .assert(200, 0);
    let reload = ev.until(is_binding("reload")).await;
    assert_eq!(reload["tenant_key"], Value::Null);
}

#[tokio::test]
async fn the_sync_engine_s_steps_are_events_too() {
    let s = Server::builder()
        .seed(FULL_SEED)
        .args(&["--sync-stage-durations", "50ms,50ms,50ms"])
        .start();
    let mut ev = s.events("types=binding").await;
    let token = s.boss().await;
    s.bind(
        &token,
        "exadmin@acme.example",
        "alice@acme.example",
        "alice",
    )
    .await;
    // A late engine steps over several stages in one change (one event, from where it was):
    // the events chain up from the create to `done`, and the history holds every stage.
    let created = ev.until(|name, _| name == "binding").await;
    assert_eq!(
        (&created["action"], &created["status"]),
        (&json!("created"), &json!("doing"))
    );
    let mut at = "doing".to_string();
    while at != "done" {
        let d = ev.until(|name, _| name == "binding").await;
        assert_eq!(
            d["from"],
            at.as_str(),
            "each change starts where the last ended: {d}"
        );
        at = d["status"].as_str().unwrap().to_string();
    }
    let row = s.wait_binding("acme", &ID(), "done").await;
    assert_eq!(
        history_statuses(&row),
        ["doing", "cal_done", "timespan_done", "done"]
    );
}

#[tokio::test]
async fn types_and_tenant_narrow_the_stream() {
    let s = Server::full();
    let mut ev = s.events("types=binding&tenant_key=acme").await;
    // globex's wipe comes first, but only acme's reaches this stream.
    for t in ["globex", "acme"] {
        s.admin(
            Method::DELETE,
            &format!("/_exbind/v1/tenants/{t}/bindings"),
            None,
        )
        .await
        .assert(200, 0);
    }
    let (name, d) = ev.next().await;
    assert_eq!(
        (name.as_str(), &d["tenant_key"]),
        ("binding", &json!("acme"))
    );

    let r = s
        .admin(Method::GET, "/_exbind/v1/events?types=binding,bogus", None)
        .await;
    r.assert(400, 190002);
    assert_eq!(r.violation("types")["value"], "bogus");
}

#[tokio::test]
async fn the_stream_needs_the_admin_token() {
    let s = Server::full();
    s.call(Method::GET, "/_exbind/v1/events", None, None)
        .await
        .assert(401, 99991661);
    s.call(Method::GET, "/_exbind/v1/events", Some("nope"), None)
        .await
        .assert(401, 99991663);
}

#[tokio::test]
async fn streams_are_bounded_and_a_closed_one_frees_its_slot() {
    let s = Server::full();
    let mut open = Vec::new();
    // 16 a server: a round-robin front spreads the streams evenly over its members.
    for _ in 0..16 * cluster::members() {
        open.push(s.events("").await);
    }
    let r = s.admin(Method::GET, "/_exbind/v1/events", None).await;
    r.assert(429, 190010);
    drop(open.pop());
    // The server notices the closed connection at its next write (a keep-alive at most
    // 2 s later); ask until it has.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = s
            .http
            .get(s.url("/_exbind/v1/events"))
            .bearer_auth(&s.admin_token)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_stream_that_cannot_keep_up_is_told_it_fell_behind() {
    // A journal of 20: any 21 requests between two looks of the stream (a quarter second)
    // leave some out of its reach.
    let s = Server::builder()
        .seed(FULL_SEED)
        .args(&["--journal-size", "20", "--rate-limits", "off"])
        .start();
    let mut ev = s.events("types=request").await;
    let token = s.boss().await;
    let path = format!("/open-apis/calendar/v4/exchange_bindings/{}", pct(&ID()));
    for _ in 0..20 {
        s.burst(50, Method::GET, &path, Some(&token), None).await;
    }
    let lag = ev.until(|name, _| name == "lagged").await;
    assert!(lag["requests"].as_u64().unwrap() > 0, "{lag}");
}
