//! Reset, wiping one tenant's bindings, and the in-memory store (product.md "Sync, faults,
//! journal, reset").
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const ITEM_ROUTE: &str = "/open-apis/calendar/v4/exchange_bindings/{exchange_binding_id}";

async fn reset(s: &Server) -> Value {
    let r = s.admin(Method::POST, "/_exbind/v1/reset", None).await;
    r.ok().clone()
}

async fn reseed(s: &Server, doc: &str) {
    let auth = format!("Bearer {}", s.admin_token);
    let r = s
        .request(
            Method::POST,
            "/_exbind/v1/seed",
            &[("Authorization", auth.as_str())],
            Some(doc.as_bytes().to_vec()),
        )
        .await;
    r.ok();
}

#[tokio::test]
async fn reset_wipes_state_and_revokes_tokens_but_keeps_the_admin_token_and_ids() {
    let s = Server::full_with(&[
        "--sync-stage-durations",
        "300ms,300ms,300ms",
        "--quota-per-minute",
        "6",
    ]);
    let before_ids = s.user_ids("acme", "boss", "cli_acme").await;
    let alice_ids = s.user_ids("acme", "alice", "cli_acme").await;
    let boss = s.boss().await;
    let tenant_tok = s.tenant_token("cli_acme", "acme-secret").await;

    // State of every kind: bindings (two tenants), a scenario, a fault, journal entries,
    // spent quota.
    let b = s.bind(&boss, ACME_ADMIN, "r1@acme.example", "alice").await;
    let bid = b["exchange_binding_id"].as_str().unwrap().to_string();
    let gtok = s.mint("cli_globex", "globex", "gboss").await;
    s.bind(&gtok, GLOBEX_ADMIN, "g@globex.example", "gina")
        .await;
    s.admin(
        Method::PUT,
        "/_exbind/v1/tenants/acme/exchange_accounts/stuck@acme.example/scenario",
        Some(&json!({"scenario": "stall"})),
    )
    .await
    .ok();
    s.admin(
        Method::POST,
        "/_exbind/v1/faults",
        Some(&json!({"method": "POST", "route": BINDINGS, "times": 1, "error": {"code": 190003}})),
    )
    .await
    .ok();
    assert!(!s.journal_all("").await.0.is_empty());
    // Spend the per-minute GET quota of (GET, cli_acme, acme): 6 admitted, the 7th refused;
    // the check after the reset happens in the same minute.
    ensure_minute_room(20).await;
    let minute = now_ms() / 60_000;
    for _ in 0..6 {
        s.get(&boss, &bid, None).await.ok();
    }
    s.get(&boss, &bid, None).await.assert_err(429, 99991400);

    let r = s.admin(Method::POST, "/_exbind/v1/reset", None).await;
    r.ok();
    reseed(&s, FULL_SEED).await;
    let boss2 = s.boss().await;
    // Quota counters start over.
    s.get(&boss2, &bid, None).await.assert_err(404, 195103);
    assert_eq!(
        now_ms() / 60_000,
        minute,
        "the box is too slow for this check"
    );
    s.admin(Method::POST, "/_exbind/v1/reset", None).await.ok();

    // Everything is gone; the admin token still works.
    let t = s.admin(Method::GET, "/_exbind/v1/tenants", None).await;
    assert_eq!(t.ok()["items"], json!([]), "{}", t.text);
    for tenant in ["acme", "globex", "demo"] {
        s.admin(Method::GET, &format!("/_exbind/v1/tenants/{tenant}"), None)
            .await
            .assert_err(404, 99991201);
    }
    s.admin(Method::GET, "/_exbind/v1/apps/cli_acme", None)
        .await
        .assert_err(404, 99991201);
    let f = s.admin(Method::GET, "/_exbind/v1/faults", None).await;
    assert_eq!(f.ok()["items"], json!([]));
    let (journal, _) = s.journal_all("").await;
    assert!(
        journal.is_empty(),
        "journal survived the reset: {journal:?}"
    );

    // Old tokens are revoked, even after the same world is seeded again.
    s.get(&boss, &bid, None).await.assert_err(400, 99991668);
    reseed(&s, FULL_SEED).await;
    s.get(&boss, &bid, None).await.assert_err(400, 99991668);
    s.get(&boss2, &bid, None).await.assert_err(400, 99991668);
    s.get(&gtok, &bid, None).await.assert_err(400, 99991668);
    let new_tenant_tok = s.tenant_token("cli_acme", "acme-secret").await;
    assert_ne!(
        new_tenant_tok, tenant_tok,
        "a revoked tenant token came back"
    );

    // Same id secret: the same user has the same ids for the same app.
    assert_eq!(
        s.user_ids("acme", "boss", "cli_acme").await["open_id"],
        before_ids["open_id"]
    );
    assert_eq!(
        s.user_ids("acme", "boss", "cli_acme").await["union_id"],
        before_ids["union_id"]
    );
    assert_eq!(
        s.user_ids("acme", "alice", "cli_acme").await["open_id"],
        alice_ids["open_id"]
    );

    // The reseeded world is empty of bindings, and quota, faults and scenarios start over.
    assert!(s.list_bindings("acme").await.is_empty());
    assert!(s.list_bindings("globex").await.is_empty());
    let boss2 = s.boss().await;
    s.get(&boss2, &bid, None).await.assert_err(404, 195103);
    let again = s.bind(&boss2, ACME_ADMIN, "r1@acme.example", "alice").await;
    assert_eq!(again["status"], "doing");
    assert_eq!(again["exchange_binding_id"], bid);
    let stuck = s
        .bind(&boss2, ACME_ADMIN, "stuck@acme.example", "bob")
        .await;
    let sid = stuck["exchange_binding_id"].as_str().unwrap();
    s.wait_binding("acme", sid, "done").await;
    let tenant = s.admin(Method::GET, "/_exbind/v1/tenants/acme", None).await;
    assert!(
        !tenant.text.contains("stuck@acme.example"),
        "scenario survived the reset: {}",
        tenant.text
    );
    // The history is fresh.
    let row = s.binding_row("acme", &bid).await.unwrap();
    assert_eq!(history_statuses(&row)[0], "doing");
    assert_eq!(row["user_id"], "alice");
}

#[tokio::test]
async fn reset_clears_the_journal_and_faults_then_both_work_again() {
    let s = Server::full();
    let boss = s.boss().await;
    s.get(&boss, &binding_id(ACME_ADMIN, "x@acme.example"), None)
        .await;
    assert!(reset(&s).await.is_object());
    reseed(&s, FULL_SEED).await;
    let boss = s.boss().await;
    let r = s
        .get(&boss, &binding_id(ACME_ADMIN, "x@acme.example"), None)
        .await;
    r.assert_err(404, 195103);
    let (items, _) = s.journal_all("").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["log_id"], r.log_id());
    s.admin(
        Method::POST,
        "/_exbind/v1/faults",
        Some(&json!({"method": "GET", "route": ITEM_ROUTE, "times": 1, "error": {"code": 190003}})),
    )
    .await
    .ok();
    s.get(&boss, &binding_id(ACME_ADMIN, "x@acme.example"), None)
        .await
        .assert_err(500, 190003);

    // Reset requires the admin token, and a wrong one changes nothing.
    s.call(Method::POST, "/_exbind/v1/reset", Some("nope"), None)
        .await
        .assert_err(401, 99991663);
    s.call(Method::POST, "/_exbind/v1/reset", None, None)
        .await
        .assert_err(401, 99991661);
    assert_eq!(s.journal_all("").await.0.len(), 2);
}

#[tokio::test]
async fn reset_persists_across_a_restart() {
    let mut s = Server::full();
    let boss = s.boss().await;
    s.bind(&boss, ACME_ADMIN, "p@acme.example", "alice").await;
    let before = s.user_ids("acme", "alice", "cli_acme").await;
    reset(&s).await;
    // kill -9 after the acknowledged reset; the seed flag loads acme again at start, but no
    // binding and no token come back.
    s.restart();
    s.get(&boss, &binding_id(ACME_ADMIN, "p@acme.example"), None)
        .await
        .assert_err(400, 99991668);
    assert!(s.list_bindings("acme").await.is_empty());
    assert_eq!(
        s.user_ids("acme", "alice", "cli_acme").await["open_id"],
        before["open_id"]
    );
    // The admin token is the same.
    s.admin(Method::GET, "/_exbind/v1/tenants", None).await.ok();
}

#[tokio::test]
async fn deleting_a_tenants_bindings_leaves_other_tenants_alone() {
    let s = Server::full_with(&["--sync-stage-durations", "10m,10m,10m"]);
    let boss = s.boss().await;
    let a1 = s.bind(&boss, ACME_ADMIN, "d1@acme.example", "alice").await;
    let a1 = a1["exchange_binding_id"].as_str().unwrap().to_string();
    s.bind(&boss, "exadmin2@acme.example", "d2@acme.example", "bob")
        .await;
    let gtok = s.mint("cli_globex", "globex", "gboss").await;
    let g = s
        .bind(&gtok, GLOBEX_ADMIN, "d3@globex.example", "gina")
        .await;
    let gid = g["exchange_binding_id"].as_str().unwrap().to_string();

    let r = s
        .admin(Method::DELETE, "/_exbind/v1/tenants/acme/bindings", None)
        .await;
    assert_eq!(r.ok(), &json!({"deleted": 2}));
    assert!(s.list_bindings("acme").await.is_empty());
    s.get(&boss, &a1, None).await.assert_err(404, 195103);
    s.delete(&boss, &a1).await.assert_err(404, 195103);
    let gl = s.list_bindings("globex").await;
    assert_eq!(gl.len(), 1);
    assert_eq!(s.get(&gtok, &gid, None).await.ok()["status"], "doing");

    // The accounts and users are free again; tenant, users, tokens untouched.
    let again = s.bind(&boss, ACME_ADMIN, "d1@acme.example", "bob").await;
    assert_eq!(again["status"], "doing");
    let row = s.binding_row("acme", &a1).await.unwrap();
    assert_eq!(row["user_id"], "bob");
    assert_eq!(history_statuses(&row), vec!["doing"]);

    let r = s
        .admin(Method::DELETE, "/_exbind/v1/tenants/acme/bindings", None)
        .await;
    assert_eq!(r.ok(), &json!({"deleted": 1}));
    let r = s
        .admin(Method::DELETE, "/_exbind/v1/tenants/acme/bindings", None)
        .await;
    assert_eq!(r.ok(), &json!({"deleted": 0}));
    s.admin(Method::DELETE, "/_exbind/v1/tenants/nope/bindings", None)
        .await
        .assert_err(404, 99991201);
    assert_eq!(s.list_bindings("globex").await.len(), 1);
}

#[tokio::test]
async fn deleted_bindings_stop_syncing() {
    let s = Server::full_with(&["--sync-stage-durations", "200ms,200ms,200ms"]);
    let boss = s.boss().await;
    let b = s.bind(&boss, ACME_ADMIN, "w@acme.example", "alice").await;
    let id = b["exchange_binding_id"].as_str().unwrap().to_string();
    s.admin(Method::DELETE, "/_exbind/v1/tenants/acme/bindings", None)
        .await
        .ok();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(s.list_bindings("acme").await.is_empty());
    s.get(&boss, &id, None).await.assert_err(404, 195103);
}

#[tokio::test]
async fn a_reset_during_sync_leaves_nothing_to_come_back() {
    let s = Server::full_with(&["--sync-stage-durations", "200ms,200ms,200ms"]);
    let boss = s.boss().await;
    let b = s.bind(&boss, ACME_ADMIN, "mid@acme.example", "alice").await;
    let id = b["exchange_binding_id"].as_str().unwrap().to_string();
    reset(&s).await;
    reseed(&s, FULL_SEED).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(s.list_bindings("acme").await.is_empty());
    let boss = s.boss().await;
    s.get(&boss, &id, None).await.assert_err(404, 195103);
}

// ---------------------------------------------------------------------------------------
// --data-dir :memory:
// ---------------------------------------------------------------------------------------

/// A server started by hand so its working directory and temp dir are ours to inspect.
struct MemServer {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl MemServer {
    fn start(cwd: &Path, tmpdir: &Path, seed: &Path) -> MemServer {
        let mut cmd = serve_command(
            Path::new(":memory:"),
            &[
                "--admin-token",
                ADMIN_TOKEN,
                "--seed",
                seed.to_str().unwrap(),
                "--sync-stage-durations",
                "100ms,100ms,100ms",
            ],
        );
        cmd.current_dir(cwd)
            .env("TMPDIR", tmpdir)
            .env("TMP", tmpdir)
            .env("TEMP", tmpdir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn exbind");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("listening on ") {
                    let _ = tx.send(a.trim().to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("listening line");
        MemServer {
            child,
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: Method, path: &str, bearer: &str, body: Option<Value>) -> Resp {
        let mut headers = vec![("Authorization".to_string(), format!("Bearer {bearer}"))];
        let bytes = body.map(|b| {
            headers.push(("Content-Type".into(), "application/json".into()));
            serde_json::to_vec(&b).unwrap()
        });
        send(
            &self.http,
            method,
            &format!("{}{path}", self.base),
            &headers,
            bytes,
        )
        .await
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.call(method, path, ADMIN_TOKEN, body).await
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MemServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn memory_store_runs_the_full_flow_and_writes_nothing() {
    let outside = tempfile::tempdir().unwrap();
    let seed = outside.path().join("seed.toml");
    std::fs::write(&seed, FULL_SEED).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();

    let mut s = MemServer::start(cwd.path(), tmp.path(), &seed);
    let r = s
        .admin(
            Method::POST,
            "/_exbind/v1/user_access_tokens",
            Some(json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "boss"})),
        )
        .await;
    let tok = r.ok()["access_token"].as_str().unwrap().to_string();
    let body = json!({"admin_account": ACME_ADMIN, "exchange_account": "mem@acme.example",
                      "user_id": "alice"});
    let r = s
        .call(
            Method::POST,
            &format!("{BINDINGS}?user_id_type=user_id"),
            &tok,
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.ok()["status"], "doing");
    let id = binding_id(ACME_ADMIN, "mem@acme.example");
    let item = format!("{BINDINGS}/{id}");

    // The sync runs.
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let r = s.call(Method::GET, &item, &tok, None).await;
        if r.ok()["status"] == "done" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never done");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let list = s
        .admin(Method::GET, "/_exbind/v1/tenants/acme/bindings", None)
        .await;
    let items = list.ok()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(history_statuses(&items[0]).len(), 4);

    // Control plane bits work too: journal, faults, scenario, reset + reseed.
    let j = s.admin(Method::GET, "/_exbind/v1/requests", None).await;
    assert!(!j.ok()["items"].as_array().unwrap().is_empty());
    s.admin(
        Method::PUT,
        "/_exbind/v1/tenants/acme/exchange_accounts/m2@acme.example/scenario",
        Some(json!({"scenario": "fail"})),
    )
    .await
    .ok();

    let r = s.call(Method::DELETE, &item, &tok, None).await;
    r.ok();
    let r = s.call(Method::GET, &item, &tok, None).await;
    r.assert_err(404, 195103);
    let r = s
        .call(
            Method::POST,
            &format!("{BINDINGS}?user_id_type=user_id"),
            &tok,
            Some(body),
        )
        .await;
    r.ok();

    // Concurrent traffic works on the in-memory store too (no 500s).
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (base, http, tok, item) = (s.base.clone(), s.http.clone(), tok.clone(), item.clone());
        tasks.push(tokio::spawn(async move {
            let auth = vec![("Authorization".to_string(), format!("Bearer {tok}"))];
            let r = if i % 2 == 0 {
                send(&http, Method::GET, &format!("{base}{item}"), &auth, None).await
            } else {
                let body = json!({"admin_account": ACME_ADMIN,
                                  "exchange_account": format!("c{i}@acme.example"),
                                  "user_id": "dave"});
                send(
                    &http,
                    Method::POST,
                    &format!("{base}{BINDINGS}?user_id_type=user_id"),
                    &auth,
                    Some(serde_json::to_vec(&body).unwrap()),
                )
                .await
            };
            assert_ne!(r.status.as_u16(), 500, "{}", r.text);
            r.body["code"].as_i64().unwrap()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert!(codes.iter().filter(|c| **c == 0).count() >= 12, "{codes:?}");

    s.admin(Method::POST, "/_exbind/v1/reset", None).await.ok();
    s.call(Method::GET, &item, &tok, None)
        .await
        .assert_err(400, 99991668);

    // Nothing on disk: not in the working directory, not in the temp dir, and no
    // directory literally called ":memory:".
    assert_eq!(entries(cwd.path()), Vec::<String>::new());
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
    assert_eq!(entries(outside.path()), vec!["seed.toml".to_string()]);

    // Everything is lost at exit: a new process starts from the seed alone.
    s.kill();
    let s2 = MemServer::start(cwd.path(), tmp.path(), &seed);
    let list = s2
        .admin(Method::GET, "/_exbind/v1/tenants/acme/bindings", None)
        .await;
    assert_eq!(list.ok()["items"], json!([]));
    s2.call(Method::GET, &item, &tok, None)
        .await
        .assert_err(400, 99991668);
    assert_eq!(entries(cwd.path()), Vec::<String>::new());
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}
