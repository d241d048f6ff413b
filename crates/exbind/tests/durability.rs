//! Durability and process behaviour (contract §7, §3; product.md): acknowledged changes
//! survive kill -9, tokens survive restarts, the data-dir lock, SIGTERM, storage failures.
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn acknowledged_binding_survives_kill9() {
    let mut s = Server::full();
    let tok = s.boss().await;
    let d = s
        .bind(&tok, ACME_ADMIN, "alice.ex@acme.example", "alice")
        .await;
    s.restart();
    // The same user token still works, and the binding is there.
    let r = s
        .get(
            &tok,
            d["exchange_binding_id"].as_str().unwrap(),
            Some("user_id"),
        )
        .await;
    let g = r.ok();
    assert_eq!(g["user_id"], "alice");
    assert_eq!(g["exchange_account"], "alice.ex@acme.example");
}

#[tokio::test]
async fn acknowledged_delete_survives_kill9() {
    let mut s = Server::full();
    let tok = s.boss().await;
    let d = s
        .bind(&tok, ACME_ADMIN, "alice.ex@acme.example", "alice")
        .await;
    let id = d["exchange_binding_id"].as_str().unwrap().to_string();
    s.restart();
    s.delete(&tok, &id).await.ok();
    s.restart();
    s.get(&tok, &id, None).await.assert_err(404, 195103);
    assert!(s.list_bindings("acme").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_acknowledged_creates_all_survive_kill9() {
    let mut s = Server::full();
    let tok = s.boss().await;
    let users = ["alice", "bob", "carol", "dave", "erin"];
    let mut tasks = Vec::new();
    for u in users {
        let http = s.http.clone();
        let url = s.url(&format!("{BINDINGS}?user_id_type=user_id"));
        let headers = vec![("Authorization".to_string(), format!("Bearer {tok}"))];
        let body = json!({"admin_account": ACME_ADMIN, "exchange_account": format!("{u}.ex@acme.example"), "user_id": u});
        tasks.push(tokio::spawn(async move {
            send(
                &http,
                Method::POST,
                &url,
                &headers,
                Some(body.to_string().into_bytes()),
            )
            .await
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        acked.push(r.ok()["exchange_binding_id"].as_str().unwrap().to_string());
    }
    s.kill9();
    s.restart();
    for id in acked {
        s.get(&tok, &pct(&id), None).await.ok();
    }
}

#[tokio::test]
async fn tokens_and_ids_survive_restart() {
    let mut s = Server::full();
    let tenant = s.tenant_token("cli_acme", "acme-secret").await;
    let user = s.boss().await;
    let ids = s.user_ids("acme", "alice", "cli_acme").await;
    let revoked = s.boss().await;
    s.admin(
        Method::POST,
        "/_exbind/v1/user_access_tokens/revoke",
        Some(&json!({"access_token": revoked})),
    )
    .await
    .ok();
    s.restart();
    assert_eq!(s.tenant_token("cli_acme", "acme-secret").await, tenant);
    let r = s
        .token_call(APP_TOKEN_PATH, "cli_acme", "acme-secret")
        .await;
    assert_eq!(r.body["app_access_token"].as_str(), Some(tenant.as_str()));
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    s.get(&user, &id, None).await.assert_err(404, 195103);
    s.get(&tenant, &id, None).await.assert_err(400, 99991663);
    s.get(&revoked, &id, None).await.assert_err(400, 99991668);
    assert_eq!(s.user_ids("acme", "alice", "cli_acme").await, ids);
}

#[tokio::test]
async fn control_plane_changes_survive_restart() {
    let mut s = Server::full();
    // An app the seed file does not name (the file is loaded again at every start and
    // resets what it names).
    let doc = json!({"apps": [{"app_id": "cli_extra", "app_secret": "extra-secret",
        "tenants": ["acme"], "scopes": ["calendar:calendar:readonly"]}]});
    s.admin(Method::POST, "/_exbind/v1/seed", Some(&doc))
        .await
        .ok();
    s.patch_ok("/_exbind/v1/apps/cli_extra", json!({"bot": false}))
        .await;
    let tok = s.mint("cli_extra", "acme", "boss").await;
    s.restart();
    s.get(&tok, &binding_id(ACME_ADMIN, "x@acme.example"), None)
        .await
        .assert_err(404, 190007);
    assert!(s
        .tenant_token("cli_extra", "extra-secret")
        .await
        .starts_with("t-"));
}

#[tokio::test]
async fn second_server_on_the_same_data_dir_exits_2() {
    let s = Server::full();
    let (status, _out, err) = run_to_exit(s.command(), Duration::from_secs(20));
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].to_lowercase().contains("lock"),
        "names the lock: {err}"
    );
    // The first server is unharmed.
    s.call(Method::GET, "/_exbind/healthz", None, None)
        .await
        .ok();
}

#[tokio::test]
async fn sigterm_exits_0_and_keeps_data() {
    let mut s = Server::full();
    let tok = s.boss().await;
    let d = s
        .bind(&tok, ACME_ADMIN, "alice.ex@acme.example", "alice")
        .await;
    let st = s.terminate();
    assert_eq!(st.code(), Some(0));
    s.restart();
    s.get(&tok, d["exchange_binding_id"].as_str().unwrap(), None)
        .await
        .ok();
}

/// Holds the store's write lock from another process (the sqlite3 shell) while alive.
struct DbLock(std::process::Child);

impl DbLock {
    fn take(data_dir: &std::path::Path) -> Option<DbLock> {
        let db = data_dir.join("exbind.sqlite3");
        if !db.exists() {
            eprintln!("no {} — skipping the storage-failure test", db.display());
            return None;
        }
        let mut child = match Command::new("sqlite3")
            .arg(&db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(_) => {
                eprintln!("no sqlite3 shell — skipping the storage-failure test");
                return None;
            }
        };
        let stdin = child.stdin.as_mut().unwrap();
        stdin
            .write_all(b"PRAGMA busy_timeout=10000;\nBEGIN IMMEDIATE;\nSELECT 'locked';\n")
            .unwrap();
        stdin.flush().unwrap();
        let mut out = BufReader::new(child.stdout.as_mut().unwrap());
        loop {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "sqlite3 ended early");
            if line.trim() == "locked" {
                break;
            }
        }
        Some(DbLock(child))
    }
}

impl Drop for DbLock {
    fn drop(&mut self) {
        if let Some(stdin) = self.0.stdin.as_mut() {
            let _ = stdin.write_all(b"ROLLBACK;\n.quit\n");
        }
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_database_gives_190003_and_changes_nothing() {
    let s = Server::full();
    let tok = s.boss().await;
    let d = s.bind(&tok, ACME_ADMIN, "bob.ex@acme.example", "bob").await;
    let bob_id = d["exchange_binding_id"].as_str().unwrap().to_string();
    let Some(lock) = DbLock::take(&s.data_dir) else {
        return;
    };
    let (c, del) = tokio::join!(
        s.create(
            &tok,
            ACME_ADMIN,
            "alice.ex@acme.example",
            "alice",
            Some("user_id")
        ),
        s.delete(&tok, &bob_id),
    );
    c.assert_err(500, 190003);
    del.assert_err(500, 190003);
    drop(lock);
    let alice_id = binding_id(ACME_ADMIN, "alice.ex@acme.example");
    s.get(&tok, &alice_id, None).await.assert_err(404, 195103);
    s.get(&tok, &bob_id, None).await.ok();
    // Once the store is free again, the same create succeeds.
    s.bind(&tok, ACME_ADMIN, "alice.ex@acme.example", "alice")
        .await;
}

#[tokio::test]
async fn sigint_exits_0() {
    let mut s = Server::full();
    s.boss().await;
    assert_eq!(s.signal("INT").code(), Some(0));
}

#[tokio::test]
async fn newer_schema_exits_2() {
    let mut s = Server::full();
    s.boss().await;
    assert_eq!(s.terminate().code(), Some(0));
    let db = s.data_dir.join("exbind.sqlite3");
    // The store records its schema version in SQLite's user_version.
    let st = Command::new("sqlite3")
        .arg(&db)
        .arg("PRAGMA user_version = 999999;")
        .status();
    if !st.is_ok_and(|s| s.success()) {
        eprintln!("no sqlite3 shell — skipping");
        return;
    }
    let (status, _, err) = run_to_exit(s.command(), Duration::from_secs(20));
    assert_eq!(status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("schema"), "{err}");
}

#[tokio::test]
async fn sigterm_right_after_the_banner_exits_0() {
    // The banner says the server is up; a SIGTERM from then on is a clean stop.
    for _ in 0..5 {
        let mut s = Server::full();
        let st = s.terminate();
        assert_eq!(st.code(), Some(0), "{st:?}");
    }
}
