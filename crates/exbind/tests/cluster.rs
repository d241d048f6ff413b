//! Several servers, one state (cluster.md): three real `exbind serve` processes on one fresh
//! PostgreSQL schema and Redis prefix, each test its own, requests spread over the servers.

mod common;

use std::time::Duration;

use common::cluster::{database_url, unique, Cluster};
use common::*;
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};

const ADMIN: &str = "exadmin@acme.example";

/// A seed with `n` super admins `u0…`, so each binding can have its own user.
fn seed_with_admins(n: usize) -> String {
    let mut s = BASIC_SEED.to_string();
    for i in 0..n {
        // Appended to the last `[[tenants]]` entry, acme.
        s.push_str(&format!(
            "\n[[tenants.users]]\nuser_id = \"u{i}\"\nsuper_admin = true\n"
        ));
    }
    s
}

async fn bindings_of(s: &Server, tenant: &str) -> Vec<Value> {
    let r = s
        .admin(
            Method::GET,
            &format!("/_exbind/v1/tenants/{tenant}/bindings?page_size=500"),
            None,
        )
        .await;
    r.assert(200, 0);
    r.body["data"]["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn quota_burst_is_exact_across_servers() {
    let c = Cluster::start(
        3,
        BASIC_SEED,
        &["--quota-per-second", "1000", "--quota-per-minute", "20"],
    );
    let token = c.at(0).mint("cli_acme", "acme", "boss").await;
    let missing = binding_id(ADMIN, "nobody@acme.example");
    ensure_minute_room(30).await;
    let mut calls = Vec::new();
    for i in 0..45 {
        let s = c.at(i);
        let (t, id) = (token.clone(), missing.clone());
        calls.push(async move { s.get(&t, &id, None).await });
    }
    let answers = join_all(calls).await;
    let admitted = answers.iter().filter(|r| r.code() == 195103).count();
    let limited: Vec<&Resp> = answers.iter().filter(|r| r.code() == 99991400).collect();
    assert_eq!(
        admitted, 20,
        "exactly the minute's quota over three servers"
    );
    assert_eq!(limited.len(), 25);
    assert_eq!(
        limited[0].header("x-ogw-ratelimit-limit").as_deref(),
        Some("20")
    );
}

#[tokio::test]
async fn quota_second_window_is_exact_on_postgres_counters() {
    // No Redis: the counters live in PostgreSQL, exact all the same.
    let c = Cluster::start_with(
        3,
        BASIC_SEED,
        &["--quota-per-second", "5", "--app-budget-per-second", "1000"],
        false,
    );
    let token = c.at(0).mint("cli_acme", "acme", "boss").await;
    let missing = binding_id(ADMIN, "nobody@acme.example");
    let answers = within_one_second(|| {
        let calls: Vec<_> = (0..9)
            .map(|i| {
                let (s, t, id) = (c.at(i), token.clone(), missing.clone());
                async move { s.get(&t, &id, None).await }
            })
            .collect();
        join_all(calls)
    })
    .await;
    let admitted = answers.iter().filter(|r| r.code() == 195103).count();
    assert_eq!(
        admitted,
        5,
        "{:?}",
        answers.iter().map(Resp::code).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn one_to_one_holds_under_contention_across_servers() {
    let c = Cluster::start(3, &seed_with_admins(16), &["--rate-limits", "off"]);
    let mut tokens = Vec::new();
    for i in 0..16 {
        tokens.push(c.at(i).mint("cli_acme", "acme", &format!("u{i}")).await);
    }
    // 16 users race for one Exchange account, spread over the servers.
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let (s, t) = (c.at(i), tokens[i].clone());
            async move {
                s.create(
                    &t,
                    ADMIN,
                    "contested@acme.example",
                    &format!("u{i}"),
                    Some("user_id"),
                )
                .await
            }
        })
        .collect();
    let answers = join_all(calls).await;
    let won: Vec<&Resp> = answers.iter().filter(|r| r.code() == 0).collect();
    for r in &answers {
        assert!(
            [0, 190002, 190010].contains(&r.code()),
            "never a 5xx: {}",
            r.body
        );
    }
    assert_eq!(won.len(), 1, "one user got it");
    let items = bindings_of(c.at(1), "acme").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["user_id"], won[0].body["data"]["user_id"]);

    // 32 deletes of that binding over three servers: one success.
    let id = binding_id(ADMIN, "contested@acme.example");
    let owner = won[0].body["data"]["user_id"].as_str().unwrap().to_string();
    let owner_token = c.at(0).mint("cli_acme", "acme", &owner).await;
    let calls: Vec<_> = (0..32)
        .map(|i| {
            let (s, t, id) = (c.at(i), owner_token.clone(), id.clone());
            async move { s.delete(&t, &id).await }
        })
        .collect();
    let answers = join_all(calls).await;
    assert_eq!(answers.iter().filter(|r| r.code() == 0).count(), 1);
    for r in &answers {
        assert!(
            [0, 195103, 190010].contains(&r.code()),
            "never a 5xx: {}",
            r.body
        );
    }
    assert!(bindings_of(c.at(2), "acme").await.is_empty());
}

#[tokio::test]
async fn changes_on_one_server_are_seen_by_the_others() {
    let c = Cluster::start(3, BASIC_SEED, &[]);
    let (a, b, d) = (c.at(0), c.at(1), c.at(2));
    // Same admin token, same id secret: one user's open_id is the same everywhere.
    assert_eq!(
        a.user_ids("acme", "alice", "cli_acme").await["open_id"],
        b.user_ids("acme", "alice", "cli_acme").await["open_id"]
    );
    // A token minted on one is good on another; revoked on a third, dead on all.
    let token = a.mint("cli_acme", "acme", "boss").await;
    b.create(
        &token,
        ADMIN,
        "alice-x@acme.example",
        "alice",
        Some("user_id"),
    )
    .await
    .assert(200, 0);
    let id = binding_id(ADMIN, "alice-x@acme.example");
    d.get(&token, &id, None).await.assert(200, 0);
    d.admin(
        Method::POST,
        "/_exbind/v1/user_access_tokens/revoke",
        Some(&json!({"access_token": token})),
    )
    .await
    .assert(200, 0);
    for s in [a, b, d] {
        s.get(&token, &id, None).await.assert(400, 99991668);
    }
    // Patch on one, the caller's rights change on the others at once.
    let token = b.mint("cli_acme", "acme", "boss").await;
    a.call(
        Method::PATCH,
        "/_exbind/v1/tenants/acme/users/boss",
        Some(&a.admin_token),
        Some(&json!({"super_admin": false})),
    )
    .await
    .assert(200, 0);
    b.get(&token, &id, None).await.assert(403, 195101);
    d.call(
        Method::PATCH,
        "/_exbind/v1/tenants/acme/users/boss",
        Some(&d.admin_token),
        Some(&json!({"super_admin": true})),
    )
    .await
    .assert(200, 0);
    a.admin(
        Method::PATCH,
        "/_exbind/v1/apps/cli_acme",
        Some(&json!({"bot": false})),
    )
    .await
    .assert(200, 0);
    b.get(&token, &id, None).await.assert(404, 190007);
    a.admin(
        Method::PATCH,
        "/_exbind/v1/apps/cli_acme",
        Some(&json!({"bot": true})),
    )
    .await
    .assert(200, 0);
    // Delete on one, gone on the others; the account is free again.
    d.delete(&token, &id).await.assert(200, 0);
    a.get(&token, &id, None).await.assert(404, 195103);
    b.delete(&token, &id).await.assert(404, 195103);
    a.create(
        &token,
        ADMIN,
        "alice-x@acme.example",
        "bob",
        Some("user_id"),
    )
    .await
    .assert(200, 0);
    // The tenant token's 30-minute reuse gives one token whichever server answers.
    let body = json!({"app_id": "cli_acme", "app_secret": "acme-secret"});
    let mut seen = Vec::new();
    for s in [a, b, d] {
        let r = s
            .call(
                Method::POST,
                "/open-apis/auth/v3/tenant_access_token/internal",
                None,
                Some(&body),
            )
            .await;
        seen.push(r.body["tenant_access_token"].as_str().unwrap().to_string());
    }
    assert!(seen.iter().all(|t| *t == seen[0]), "{seen:?}");
    // A reset on one wipes the state of all.
    b.admin(Method::POST, "/_exbind/v1/reset", None)
        .await
        .assert(200, 0);
    let r = d.admin(Method::GET, "/_exbind/v1/tenants", None).await;
    assert_eq!(r.body["data"]["items"], json!([]));
}

#[tokio::test]
async fn a_warm_cache_never_serves_what_another_server_changed() {
    let c = Cluster::start(2, BASIC_SEED, &["--rate-limits", "off"]);
    let (a, b) = (c.at(0), c.at(1));
    let token = a.mint("cli_acme", "acme", "boss").await;
    let missing = binding_id(ADMIN, "nobody@acme.example");
    for round in 0..10 {
        let admin = round % 2 == 1;
        // B's cache is warm with the caller as it is now …
        for _ in 0..3 {
            b.get(&token, &missing, None).await;
        }
        // … A changes it, and B's very next request sees the change.
        a.call(
            Method::PATCH,
            "/_exbind/v1/tenants/acme/users/boss",
            Some(&a.admin_token),
            Some(&json!({"super_admin": admin})),
        )
        .await
        .assert(200, 0);
        let r = b.get(&token, &missing, None).await;
        if admin {
            r.assert(404, 195103);
        } else {
            r.assert(403, 195101);
        }
    }
}

const GET_ROUTE: &str = "/open-apis/calendar/v4/exchange_bindings/{exchange_binding_id}";

/// A rule with `times: 5` answers exactly five of 12 concurrent matches over three servers;
/// its firings count in Redis when given (checked there), else in PostgreSQL.
async fn fault_times_count_over_all_servers(redis: bool) {
    let c = Cluster::start_with(3, BASIC_SEED, &["--rate-limits", "off"], redis);
    let token = c.at(0).mint("cli_acme", "acme", "boss").await;
    let armed = c
        .at(1)
        .admin(
            Method::POST,
            "/_exbind/v1/faults",
            Some(&json!({
                "method": "GET",
                "route": GET_ROUTE,
                "times": 5,
                "error": {"code": 190003}
            })),
        )
        .await;
    armed.assert(200, 0);
    let id = armed.body["data"]["id"].as_str().unwrap().to_string();
    let missing = binding_id(ADMIN, "nobody@acme.example");
    let calls: Vec<_> = (0..12)
        .map(|i| {
            let (s, t, id) = (c.at(i), token.clone(), missing.clone());
            async move { s.get(&t, &id, None).await }
        })
        .collect();
    let answers = join_all(calls).await;
    assert_eq!(answers.iter().filter(|r| r.code() == 190003).count(), 5);
    assert_eq!(answers.iter().filter(|r| r.code() == 195103).count(), 7);
    // Spent everywhere: the list on any server shows no live rule.
    let r = c.at(2).admin(Method::GET, "/_exbind/v1/faults", None).await;
    assert_eq!(r.body["data"]["items"], json!([]));
    if redis {
        let mut r = redis::Client::open(common::cluster::redis_url())
            .and_then(|c| c.get_connection())
            .unwrap();
        let fired: Option<i64> = redis::cmd("GET")
            .arg(format!("{}fault:{id}", c.prefix))
            .query(&mut r)
            .unwrap();
        assert_eq!(fired, Some(5), "counted in Redis");
    }
}

#[tokio::test]
async fn a_fault_with_times_counts_over_all_servers_in_redis() {
    fault_times_count_over_all_servers(true).await;
}

#[tokio::test]
async fn a_fault_with_times_counts_over_all_servers_in_postgres() {
    fault_times_count_over_all_servers(false).await;
}

#[tokio::test]
async fn a_warm_binding_cache_never_serves_what_another_server_changed() {
    // Stages long enough that only the control plane moves the binding.
    let c = Cluster::start(
        2,
        BASIC_SEED,
        &[
            "--rate-limits",
            "off",
            "--sync-stage-durations",
            "3600s,3600s,3600s",
        ],
    );
    let (a, b) = (c.at(0), c.at(1));
    let token = a.mint("cli_acme", "acme", "boss").await;
    let id = binding_id(ADMIN, "cached@acme.example");
    let warm = |want: &'static str| {
        let (token, id) = (token.clone(), id.clone());
        async move {
            for _ in 0..3 {
                let r = b.get(&token, &id, Some("user_id")).await;
                r.assert(200, 0);
                assert_eq!(r.body["data"]["status"], want, "{}", r.body);
            }
        }
    };
    a.create(
        &token,
        ADMIN,
        "cached@acme.example",
        "alice",
        Some("user_id"),
    )
    .await
    .assert(200, 0);
    warm("doing").await;
    // A step made on A is what B answers next.
    a.admin(
        Method::POST,
        &format!("/_exbind/v1/tenants/acme/bindings/{id}/advance"),
        None,
    )
    .await
    .assert(200, 0);
    warm("cal_done").await;
    // A rule armed on A applies to B's next request; spent, it stops there too.
    a.admin(
        Method::POST,
        "/_exbind/v1/faults",
        Some(&json!({"method": "GET", "route": GET_ROUTE, "times": 1, "error": {"code": 190003}})),
    )
    .await
    .assert(200, 0);
    b.get(&token, &id, None).await.assert(500, 190003);
    warm("cal_done").await;
    // Deleted on A: gone on B at once; made again for another user: B shows that one.
    a.delete(&token, &id).await.assert(200, 0);
    b.get(&token, &id, None).await.assert(404, 195103);
    a.create(&token, ADMIN, "cached@acme.example", "bob", Some("user_id"))
        .await
        .assert(200, 0);
    let r = b.get(&token, &id, Some("user_id")).await;
    r.assert(200, 0);
    assert_eq!(r.body["data"]["user_id"], "bob", "{}", r.body);
    // A tenant's wipe on A: gone on B.
    warm("doing").await;
    a.admin(Method::DELETE, "/_exbind/v1/tenants/acme/bindings", None)
        .await
        .assert(200, 0);
    b.get(&token, &id, None).await.assert(404, 195103);
}

#[tokio::test]
async fn an_event_stream_on_one_server_shows_what_the_others_handled() {
    let c = Cluster::start(3, BASIC_SEED, &["--rate-limits", "off"]);
    let mut ev = c.at(0).events("").await;
    let token = c.at(1).mint("cli_acme", "acme", "boss").await;
    let created = c
        .at(1)
        .create(
            &token,
            ADMIN,
            "relayed@acme.example",
            "alice",
            Some("user_id"),
        )
        .await;
    created.assert(200, 0);
    let b = ev
        .until(|name, d| name == "binding" && d["action"] == "created")
        .await;
    assert_eq!(b["exchange_account"], "relayed@acme.example", "{b}");
    let log_id = created.log_id();
    let r = ev
        .until(|name, d| name == "request" && d["log_id"] == log_id.as_str())
        .await;
    assert_eq!((&r["method"], &r["code"]), (&json!("POST"), &json!(0)));
    // A third server's delete, and its step of the sync engine's kind.
    let id = binding_id(ADMIN, "relayed@acme.example");
    c.at(2)
        .admin(
            Method::POST,
            &format!("/_exbind/v1/tenants/acme/bindings/{id}/advance"),
            None,
        )
        .await
        .assert(200, 0);
    let moved = ev
        .until(|name, d| name == "binding" && d["action"] == "status")
        .await;
    assert_eq!(
        (&moved["from"], &moved["status"]),
        (&json!("doing"), &json!("cal_done"))
    );
    let gone = c.at(2).delete(&token, &id).await;
    gone.assert(200, 0);
    ev.until(|name, d| name == "binding" && d["action"] == "deleted")
        .await;
    let log_id = gone.log_id();
    ev.until(|name, d| name == "request" && d["log_id"] == log_id.as_str())
        .await;
}

#[tokio::test]
async fn the_journal_is_one_for_all_servers() {
    let c = Cluster::start(
        3,
        BASIC_SEED,
        &["--journal-size", "6", "--rate-limits", "off"],
    );
    let token = c.at(0).mint("cli_acme", "acme", "boss").await;
    let missing = binding_id(ADMIN, "nobody@acme.example");
    // Answered by one server, in the journal any server returns once the answer is sent.
    let r = c.at(0).get(&token, &missing, None).await;
    r.assert(404, 195103);
    for s in [c.at(1), c.at(2)] {
        let e = s
            .admin(
                Method::GET,
                &format!("/_exbind/v1/requests/{}", r.log_id()),
                None,
            )
            .await;
        e.assert(200, 0);
        assert_eq!(e.body["data"]["code"], 195103);
        assert_eq!(e.body["data"]["tenant_key"], "acme");
        assert_eq!(e.body["data"]["user_id"], "boss");
    }
    // Eight more over three servers: the journal's bound holds over all of them.
    let mut log_ids = Vec::new();
    for i in 0..8 {
        log_ids.push(c.at(i).get(&token, &missing, None).await.log_id());
    }
    let page = c
        .at(2)
        .admin(
            Method::GET,
            "/_exbind/v1/requests?code=195103&page_size=100",
            None,
        )
        .await;
    page.assert(200, 0);
    let items: Vec<&str> = page.body["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["log_id"].as_str().unwrap())
        .collect();
    let newest: Vec<&str> = log_ids.iter().rev().take(6).map(String::as_str).collect();
    assert_eq!(items, newest, "the newest six, newest first");
    // A reset on one server empties it for all.
    c.at(0)
        .admin(Method::POST, "/_exbind/v1/reset", None)
        .await
        .assert(200, 0);
    let page = c
        .at(1)
        .admin(Method::GET, "/_exbind/v1/requests?code=195103", None)
        .await;
    assert_eq!(page.body["data"]["items"], json!([]));
}

#[tokio::test]
async fn sync_steps_each_once_with_a_server_killed() {
    let mut c = Cluster::start(
        3,
        &seed_with_admins(12),
        &["--rate-limits", "off", "--sync-stage-durations", "1s,1s,1s"],
    );
    for i in 0..12 {
        let s = c.at(i);
        let t = s.mint("cli_acme", "acme", &format!("u{i}")).await;
        s.create(
            &t,
            ADMIN,
            &format!("sync{i}@acme.example"),
            &format!("u{i}"),
            Some("user_id"),
        )
        .await
        .assert(200, 0);
    }
    // One server dies mid-run; the others take over its share.
    c.servers[0].kill9();
    let deadline = std::time::Instant::now() + PATIENCE;
    let items = loop {
        let items = bindings_of(c.at(1), "acme").await;
        if items.iter().all(|b| b["status"] == "done") {
            break items;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sync stalled: {items:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(items.len(), 12);
    for b in &items {
        let steps: Vec<&str> = b["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["status"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["doing", "cal_done", "timespan_done", "done"], "{b}");
        // The history reads the same from another server.
        let other = bindings_of(c.at(2), "acme").await;
        let same = other
            .iter()
            .find(|o| o["exchange_binding_id"] == b["exchange_binding_id"])
            .unwrap();
        assert_eq!(same["history"], b["history"]);
    }
}

#[tokio::test]
async fn kill_9_under_write_load_loses_no_acknowledged_change() {
    let mut c = Cluster::start(2, &seed_with_admins(60), &["--rate-limits", "off"]);
    let mut tokens = Vec::new();
    for i in 0..60 {
        tokens.push(c.at(1).mint("cli_acme", "acme", &format!("u{i}")).await);
    }
    let base = c.at(0).base.clone();
    let http = reqwest::Client::new();
    let writers: Vec<_> = (0..60)
        .map(|i| {
            let (http, base, t) = (http.clone(), base.clone(), tokens[i].clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10 * i as u64)).await;
                let body = json!({
                    "admin_account": ADMIN,
                    "exchange_account": format!("load{i}@acme.example"),
                    "user_id": format!("u{i}")
                });
                let r = http
                    .post(format!(
                        "{base}/open-apis/calendar/v4/exchange_bindings?user_id_type=user_id"
                    ))
                    .bearer_auth(t)
                    .json(&body)
                    .send()
                    .await
                    .ok()?;
                let v: Value = r.json().await.ok()?;
                (v["code"] == 0).then(|| format!("load{i}@acme.example"))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(250)).await;
    c.servers[0].kill9();
    let mut acked = Vec::new();
    for w in writers {
        if let Some(a) = w.await.unwrap() {
            acked.push(a);
        }
    }
    let present: Vec<String> = bindings_of(c.at(1), "acme")
        .await
        .iter()
        .map(|b| b["exchange_account"].as_str().unwrap().to_string())
        .collect();
    for a in &acked {
        assert!(present.contains(a), "acknowledged {a} is gone");
    }
    // Every binding that is there is whole: it has its first step.
    for b in bindings_of(c.at(1), "acme").await {
        assert_eq!(b["history"][0]["status"], "doing", "{b}");
    }
}

/// A TCP relay to PostgreSQL that the test can cut (every connection dropped, new ones
/// refused) and restore: an outage of the database as the servers see it.
struct Relay {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c2, k2) = (cut.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c2.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let target = target.clone();
                k2.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                }));
            }
        });
        Relay { port, cut, conns }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

// Two threads: the harness blocks one while a server starts, and the relay must run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_answered_190003_and_recovers_by_itself() {
    let url = database_url();
    let (head, rest) = url.split_once('@').expect("user@host:port/db");
    let (hostport, db) = rest.split_once('/').expect("host:port/db");
    let relay = Relay::start(hostport.to_string()).await;
    let relayed = format!("{head}@127.0.0.1:{}/{db}", relay.port);
    let schema = unique("outage").to_lowercase();
    let s = Server::builder()
        .seed(BASIC_SEED)
        .args(&[
            "--database-url",
            &relayed,
            "--database-schema",
            &schema,
            "--request-timeout",
            "4s",
        ])
        .start();
    let token = s.mint("cli_acme", "acme", "boss").await;
    s.create(&token, ADMIN, "kept@acme.example", "alice", Some("user_id"))
        .await
        .assert(200, 0);
    let id = binding_id(ADMIN, "kept@acme.example");

    relay.cut();
    let started = std::time::Instant::now();
    s.get(&token, &id, None).await.assert(500, 190003);
    s.create(&token, ADMIN, "lost@acme.example", "bob", Some("user_id"))
        .await
        .assert(500, 190003);
    let ready = s.call(Method::GET, "/_exbind/readyz", None, None).await;
    assert_eq!(ready.status.as_u16(), 503, "{}", ready.body);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered within the request timeout each, never a hang"
    );

    relay.restore();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let r = s.call(Method::GET, "/_exbind/readyz", None, None).await;
        if r.status.as_u16() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Everything acknowledged is there, nothing half-applied, and service is back.
    s.get(&token, &id, None).await.assert(200, 0);
    let lost = binding_id(ADMIN, "lost@acme.example");
    s.get(&token, &lost, None).await.assert(404, 195103);
    s.create(&token, ADMIN, "lost@acme.example", "bob", Some("user_id"))
        .await
        .assert(200, 0);
    drop(s);
    common::cluster::drop_shared(&schema, "unused-prefix:");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_answered_190003_never_allow_all() {
    let url = common::cluster::redis_url();
    let hostport = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let relay = Relay::start(hostport).await;
    let schema = unique("redisout").to_lowercase();
    let prefix = format!("{schema}:");
    let relayed = format!("redis://127.0.0.1:{}/", relay.port);
    let s = Server::builder()
        .seed(BASIC_SEED)
        .args(&[
            "--database-url",
            &database_url(),
            "--database-schema",
            &schema,
            "--redis-url",
            &relayed,
            "--redis-prefix",
            &prefix,
            "--request-timeout",
            "4s",
        ])
        .start();
    let token = s.mint("cli_acme", "acme", "boss").await;
    let missing = binding_id(ADMIN, "nobody@acme.example");
    s.get(&token, &missing, None).await.assert(404, 195103);
    relay.cut();
    // The quota cannot be counted: refused, not waved through.
    s.get(&token, &missing, None).await.assert(500, 190003);
    relay.restore();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if s.get(&token, &missing, None).await.code() == 195103 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never counted again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(s);
    common::cluster::drop_shared(&schema, &prefix);
}

#[tokio::test]
async fn start_failures_say_why_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = unique("start").to_lowercase();
    // Nothing listens on port 1.
    let mut cmd = std::process::Command::new(exbind_bin());
    cmd.current_dir(tmp.path()).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        "postgres://postgres@127.0.0.1:1/test",
        "--database-schema",
        &schema,
        "--request-timeout",
        "4s",
    ]);
    let (status, _, err) = run_to_exit(cmd, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("127.0.0.1:1"), "{err}");

    // A schema newer than this binary: exit 2, naming both versions.
    let c = Cluster::start(1, BASIC_SEED, &[]);
    let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "INSERT INTO {}.schema_version (version) VALUES (999)",
            c.schema
        ))
        .await
        .unwrap();
    let mut cmd = std::process::Command::new(exbind_bin());
    cmd.current_dir(tmp.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(c.args(false));
    let (status, _, err) = run_to_exit(cmd, Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("999"), "{err}");
}

/// A PostgreSQL of the test's own, in a temporary directory, so that it can be stopped and
/// started under load without disturbing the shared one. initdb refuses root, so it runs as
/// the `postgres` user.
struct PrivatePg {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePg {
    fn start() -> PrivatePg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's binaries under /usr/lib/postgresql")
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(ok.success(), "chown to postgres");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let pg = PrivatePg { bin, dir, port };
        pg.run(
            "initdb",
            &["-A", "trust", "-U", "postgres", "--no-sync", "-D"],
        );
        pg.ctl(&["start"]);
        pg
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a PostgreSQL program as `postgres`, with the data directory last.
    fn run(&self, program: &str, args: &[&str]) {
        let out = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .arg(self.data())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pg_ctl ACTION`, waiting until it is done.
    fn ctl(&self, action: &[&str]) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let mut args = vec!["-w", "-o", &opts, "-l"];
        let log = log.to_str().unwrap();
        args.push(log);
        args.extend(action);
        args.push("-D");
        self.run("pg_ctl", &args);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-m", "immediate", "stop", "-D"])
            .arg(self.data())
            .output();
    }
}

/// What one writer's request for binding `i` was answered.
#[derive(Default, Clone, Copy)]
struct Outcome {
    created: Option<i64>,
    deleted: Option<i64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_postgres_restart_under_write_load_loses_nothing_acknowledged() {
    let pg = PrivatePg::start();
    const USERS: usize = 600;
    let args = [
        "--database-url",
        &pg.url(),
        "--rate-limits",
        "off",
        "--request-timeout",
        "4s",
    ];
    let servers: Vec<Server> = (0..2)
        .map(|_| {
            Server::builder()
                .seed(&seed_with_admins(USERS))
                .args(&args)
                .start()
        })
        .collect();
    let token = servers[0].mint("cli_acme", "acme", "boss").await;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let acked = std::sync::atomic::AtomicUsize::new(0);
    let outcomes = std::sync::Mutex::new(vec![Outcome::default(); USERS]);
    let account = |i: usize| format!("restart{i}@acme.example");
    // Each writer binds fresh users one after the other; even ones it unbinds again.
    let writer = |w: usize| {
        let (s, token) = (&servers[w % 2], token.clone());
        let (next, stop, acked, outcomes) = (&next, &stop, &acked, &outcomes);
        async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= USERS {
                    break;
                }
                let r = s
                    .create(
                        &token,
                        ADMIN,
                        &account(i),
                        &format!("u{i}"),
                        Some("user_id"),
                    )
                    .await;
                outcomes.lock().unwrap()[i].created = Some(r.code());
                if r.code() != 0 {
                    // Refused at once while the database is down: pace the retries, so
                    // the users last through the outage.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i % 2 == 0 {
                    let r = s.delete(&token, &binding_id(ADMIN, &account(i))).await;
                    outcomes.lock().unwrap()[i].deleted = Some(r.code());
                    if r.code() == 0 {
                        acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
        }
    };
    let controller = async {
        let acked = &acked;
        let wait_acked = |n: usize| async move {
            let deadline = std::time::Instant::now() + PATIENCE;
            while acked.load(std::sync::atomic::Ordering::SeqCst) < n {
                assert!(std::time::Instant::now() < deadline, "the load stalled");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        wait_acked(40).await;
        // Stopped the hard way, as a crash: what was committed comes back from the WAL.
        pg.ctl(&["-m", "immediate", "stop"]);
        for s in &servers {
            let r = s.call(Method::GET, "/_exbind/readyz", None, None).await;
            assert_eq!(r.status.as_u16(), 503, "{}", r.body);
            s.get(&token, &binding_id(ADMIN, &account(1)), None)
                .await
                .assert(500, 190003);
        }
        let during = acked.load(std::sync::atomic::Ordering::SeqCst);
        pg.ctl(&["start"]);
        // Back by themselves: ready again, and the load goes on being acknowledged.
        for s in &servers {
            let deadline = std::time::Instant::now() + PATIENCE;
            while s
                .call(Method::GET, "/_exbind/readyz", None, None)
                .await
                .status
                .as_u16()
                != 200
            {
                assert!(std::time::Instant::now() < deadline, "never ready again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        wait_acked(during + 40).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    tokio::join!(controller, writer(0), writer(1), writer(2), writer(3));

    let outcomes = outcomes.into_inner().unwrap();
    let present: std::collections::HashSet<String> = bindings_of(&servers[1], "acme")
        .await
        .iter()
        .map(|b| b["exchange_account"].as_str().unwrap().to_string())
        .collect();
    let mut failed = 0;
    for (i, o) in outcomes.iter().enumerate() {
        for code in [o.created, o.deleted].into_iter().flatten() {
            // Answered, or refused as the store being out: never anything else.
            assert!([0, 190003].contains(&code), "binding {i}: {code}");
            failed += usize::from(code != 0);
        }
        let here = present.contains(&account(i));
        match (o.created, o.deleted) {
            (Some(0), Some(0)) => assert!(!here, "acknowledged delete of {i} undone"),
            (Some(0), None) => assert!(here, "acknowledged create of {i} lost"),
            // Refused: it may have been applied or not, but wholly.
            _ => {}
        }
    }
    assert!(failed > 0, "some requests met the outage");
    for b in bindings_of(&servers[1], "acme").await {
        assert_eq!(b["history"][0]["status"], "doing", "whole: {b}");
    }
}
