//! create / get / delete behaviour (contract §4.2–4.5): the binding object, user ids per
//! `user_id_type`, body validation, one-to-one rules, delete, and contention.
mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn is_hex_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|h| {
        h.len() == 32
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Positions of the binding keys in the raw text; panics when one is missing.
fn key_positions(text: &str, keys: &[&str]) -> Vec<usize> {
    keys.iter()
        .map(|k| {
            text.find(&format!("\"{k}\""))
                .unwrap_or_else(|| panic!("no key {k} in {text}"))
        })
        .collect()
}

#[tokio::test]
async fn create_answers_the_binding_in_wire_order() {
    let s = Server::full();
    let tok = s.boss().await;
    let alice = s.user_ids("acme", "alice", "cli_acme").await;
    let open_id = alice["open_id"].as_str().unwrap();
    let r = s
        .create(&tok, ACME_ADMIN, "alice.ex@acme.example", open_id, None)
        .await;
    let data = r.ok();
    r.assert_json_content_type();
    assert_eq!(
        *data,
        json!({
            "admin_account": ACME_ADMIN,
            "exchange_account": "alice.ex@acme.example",
            "user_id": open_id,
            "status": "doing",
            "exchange_binding_id": binding_id(ACME_ADMIN, "alice.ex@acme.example"),
        })
    );
    let keys = [
        "admin_account",
        "exchange_account",
        "user_id",
        "status",
        "exchange_binding_id",
    ];
    let data_start = r.text.find("\"data\"").unwrap();
    let pos = key_positions(&r.text[data_start..], &keys);
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "key order in {}",
        r.text
    );

    // get answers the same object, in the same order.
    let id = data["exchange_binding_id"].as_str().unwrap();
    let g = s.get(&tok, id, None).await;
    assert_eq!(g.ok(), data);
    let pos = key_positions(&g.text[g.text.find("\"data\"").unwrap()..], &keys);
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "key order in {}",
        g.text
    );
}

#[tokio::test]
async fn accounts_are_hidden_without_the_email_scope() {
    let s = Server::full();
    let tok = s.mint("cli_noemail", "acme", "boss").await;
    let alice = s.user_ids("acme", "alice", "cli_noemail").await;
    let r = s
        .create(
            &tok,
            ACME_ADMIN,
            "alice.ex@acme.example",
            alice["open_id"].as_str().unwrap(),
            None,
        )
        .await;
    let data = r.ok().as_object().unwrap().clone();
    assert!(!data.contains_key("admin_account"), "{}", r.text);
    assert!(!data.contains_key("exchange_account"), "{}", r.text);
    assert_eq!(data["user_id"], alice["open_id"]);
    assert_eq!(data["status"], "doing");
    let id = data["exchange_binding_id"].as_str().unwrap();
    assert_eq!(id, binding_id(ACME_ADMIN, "alice.ex@acme.example"));
    let g = s.get(&tok, id, None).await;
    let gd = g.ok().as_object().unwrap();
    assert!(!gd.contains_key("admin_account") && !gd.contains_key("exchange_account"));
    // The same binding seen by an app with the scope shows them.
    let full = s.boss().await;
    let g = s.get(&full, id, None).await;
    assert_eq!(g.ok()["exchange_account"], "alice.ex@acme.example");
}

#[tokio::test]
async fn user_id_follows_user_id_type() {
    let s = Server::full();
    let tok = s.boss().await;
    let ids = s.user_ids("acme", "alice", "cli_acme").await;
    let open_id = ids["open_id"].as_str().unwrap();
    let union_id = ids["union_id"].as_str().unwrap();
    assert!(is_hex_id(open_id, "ou_"), "{open_id}");
    assert!(is_hex_id(union_id, "on_"), "{union_id}");

    // Create reads user_id in the requested type.
    let r = s
        .create(
            &tok,
            ACME_ADMIN,
            "alice.ex@acme.example",
            union_id,
            Some("union_id"),
        )
        .await;
    assert_eq!(r.ok()["user_id"], union_id);
    let id = r.ok()["exchange_binding_id"].as_str().unwrap().to_string();

    assert_eq!(s.get(&tok, &id, None).await.ok()["user_id"], open_id);
    assert_eq!(
        s.get(&tok, &id, Some("open_id")).await.ok()["user_id"],
        open_id
    );
    assert_eq!(
        s.get(&tok, &id, Some("union_id")).await.ok()["user_id"],
        union_id
    );
    assert_eq!(
        s.get(&tok, &id, Some("user_id")).await.ok()["user_id"],
        "alice"
    );

    // Another app of the same developer: another open_id, the same union_id.
    let tok2 = s.mint("cli_acme2", "acme", "boss").await;
    let g2 = s.get(&tok2, &id, None).await;
    let open2 = g2.ok()["user_id"].as_str().unwrap().to_string();
    assert!(is_hex_id(&open2, "ou_"));
    assert_ne!(open2, open_id);
    assert_eq!(
        s.get(&tok2, &id, Some("union_id")).await.ok()["user_id"],
        union_id
    );
    // Another developer: another union_id.
    let tok3 = s.mint("cli_other", "acme", "boss").await;
    let u3 = s.get(&tok3, &id, Some("union_id")).await;
    assert_ne!(u3.ok()["user_id"], union_id);
    assert!(is_hex_id(u3.ok()["user_id"].as_str().unwrap(), "on_"));

    // The control plane agrees with what the API shows.
    let ids2 = s.user_ids("acme", "alice", "cli_acme2").await;
    assert_eq!(ids2["open_id"].as_str(), Some(open2.as_str()));
    assert_eq!(ids2["union_id"], union_id);
}

#[tokio::test]
async fn create_with_user_id_type_user_id() {
    let s = Server::full();
    let tok = s.boss().await;
    let r = s
        .create(
            &tok,
            ACME_ADMIN,
            "bob.ex@acme.example",
            "bob",
            Some("user_id"),
        )
        .await;
    let d = r.ok();
    assert_eq!(d["user_id"], "bob");
    assert_eq!(d["status"], "doing");
}

#[tokio::test]
async fn mint_answers_ids_matching_the_api() {
    let s = Server::full();
    let r = s
        .admin(
            Method::POST,
            "/_exbind/v1/user_access_tokens",
            Some(&json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "boss"})),
        )
        .await;
    let d = r.ok();
    let ids = s.user_ids("acme", "boss", "cli_acme").await;
    assert_eq!(d["open_id"], ids["open_id"]);
    assert_eq!(d["union_id"], ids["union_id"]);
    assert_eq!(d["user_id"], "boss");
}

#[tokio::test]
async fn idempotent_create_returns_the_same_binding() {
    let s = Server::full();
    let tok = s.boss().await;
    let first = s
        .bind(&tok, ACME_ADMIN, "alice.ex@acme.example", "alice")
        .await;
    let again = s
        .bind(&tok, ACME_ADMIN, "alice.ex@acme.example", "alice")
        .await;
    assert_eq!(first, again);
    // Also when the user is named by another id type, and the accounts by another case.
    let ids = s.user_ids("acme", "alice", "cli_acme").await;
    let r = s
        .create(
            &tok,
            "EXADMIN@acme.example",
            "Alice.Ex@ACME.example",
            ids["open_id"].as_str().unwrap(),
            None,
        )
        .await;
    let d = r.ok();
    assert_eq!(d["exchange_binding_id"], first["exchange_binding_id"]);
    assert_eq!(
        d["exchange_account"], "alice.ex@acme.example",
        "spelling of the create that made it"
    );
    assert_eq!(s.list_bindings("acme").await.len(), 1);
}

#[tokio::test]
async fn one_to_one_conflicts_are_190002() {
    let s = Server::full();
    let tok = s.boss().await;
    s.bind(&tok, ACME_ADMIN, "alice.ex@acme.example", "alice")
        .await;

    // The Exchange account to another user (any spelling).
    for spelling in ["alice.ex@acme.example", "ALICE.EX@acme.example"] {
        let r = s
            .create(&tok, ACME_ADMIN, spelling, "bob", Some("user_id"))
            .await;
        r.assert_err(400, 190002);
        let v = r.violation("exchange_account");
        assert!(!v["description"].as_str().unwrap_or_default().is_empty());
    }
    // The same Exchange account under another admin account of the tenant.
    let r = s
        .create(
            &tok,
            "exadmin2@acme.example",
            "alice.ex@acme.example",
            "alice",
            Some("user_id"),
        )
        .await;
    r.assert_err(400, 190002);
    r.violation("exchange_account");
    // The user already has another Exchange account.
    let r = s
        .create(
            &tok,
            ACME_ADMIN,
            "alice.other@acme.example",
            "alice",
            Some("user_id"),
        )
        .await;
    r.assert_err(400, 190002);
    r.violation("user_id");
    // Nothing was added.
    assert_eq!(s.list_bindings("acme").await.len(), 1);
}

#[tokio::test]
async fn cross_tenant_conflict_reveals_nothing() {
    let s = Server::full();
    let tok = s.boss().await;
    s.bind(&tok, ACME_ADMIN, "shared@mail.example", "alice")
        .await;
    let g = s.mint("cli_globex", "globex", "gboss").await;
    let r = s
        .create(
            &g,
            GLOBEX_ADMIN,
            "shared@mail.example",
            "gina",
            Some("user_id"),
        )
        .await;
    r.assert_err(400, 190002);
    r.violation("exchange_account");
    for secret in ["acme", "alice", ACME_ADMIN, "Acme Corp"] {
        assert!(
            !r.text.to_lowercase().contains(&secret.to_lowercase()),
            "answer reveals {secret:?}: {}",
            r.text
        );
    }
    // And globex cannot read acme's binding with its own admin either.
    s.get(&g, &binding_id(GLOBEX_ADMIN, "shared@mail.example"), None)
        .await
        .assert_err(404, 195103);
}

#[tokio::test]
async fn body_violations_are_reported_together() {
    let s = Server::full();
    let tok = s.boss().await;
    let r = s
        .call(
            Method::POST,
            &format!("{BINDINGS}?user_id_type=user_id"),
            Some(&tok),
            Some(&json!({"admin_account": "", "exchange_account": "no-at-sign", "user_id": ""})),
        )
        .await;
    r.assert_err(400, 190002);
    let fv = r.field_violations();
    assert_eq!(fv.len(), 3, "{}", r.text);
    assert_eq!(r.violation("admin_account")["value"], "");
    assert_eq!(r.violation("exchange_account")["value"], "no-at-sign");
    assert_eq!(r.violation("user_id")["value"], "");
    for v in &fv {
        assert!(
            v["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{v}"
        );
    }

    // Missing fields.
    let r = s
        .call(Method::POST, BINDINGS, Some(&tok), Some(&json!({})))
        .await;
    r.assert_err(400, 190002);
    for f in ["admin_account", "exchange_account", "user_id"] {
        r.violation(f);
    }
    // Wrong types.
    let r = s
        .call(
            Method::POST,
            BINDINGS,
            Some(&tok),
            Some(&json!({"admin_account": 7, "exchange_account": ["a@b"], "user_id": null})),
        )
        .await;
    r.assert_err(400, 190002);
    assert_eq!(r.field_violations().len(), 3, "{}", r.text);
}

#[tokio::test]
async fn body_that_is_not_an_object_is_a_body_violation() {
    let s = Server::full();
    let tok = s.boss().await;
    for body in ["[1,2]", "\"text\"", "{", "", "null", "42"] {
        let r = s
            .request(
                Method::POST,
                BINDINGS,
                &[
                    ("Authorization", &format!("Bearer {tok}")),
                    ("Content-Type", "application/json"),
                ],
                Some(body.as_bytes().to_vec()),
            )
            .await;
        r.assert_err(400, 190002);
        let v = r.violation("body");
        assert!(v["description"].is_string(), "{}", r.text);
    }
}

#[tokio::test]
async fn account_rules() {
    let s = Server::full();
    let tok = s.boss().await;
    let bad = [
        "two@at@acme.example".to_string(),
        "has space@acme.example".to_string(),
        "tab\t@acme.example".to_string(),
        "bell\u{7}@acme.example".to_string(),
        "noat.acme.example".to_string(),
        format!("{}@acme.example", "a".repeat(488)), // 501 characters
        format!("{}@x", "é".repeat(499)),            // 501 characters
    ];
    for (i, account) in bad.iter().enumerate() {
        let r = s
            .create(&tok, ACME_ADMIN, account, "alice", Some("user_id"))
            .await;
        r.assert_err(400, 190002);
        let v = r.violation("exchange_account");
        assert_eq!(
            v["value"].as_str(),
            Some(account.as_str()),
            "case {i}: {}",
            r.text
        );
        // The same rules apply to the admin account.
        let r = s
            .create(&tok, account, "fine@acme.example", "alice", Some("user_id"))
            .await;
        r.assert_err(400, 190002);
        r.violation("admin_account");
    }
    // 500 Unicode characters (1000 bytes) is fine.
    let long = format!("{}@x", "é".repeat(498));
    assert_eq!(long.chars().count(), 500);
    let d = s.bind(&tok, ACME_ADMIN, &long, "alice").await;
    assert_eq!(d["exchange_account"].as_str(), Some(long.as_str()));
    let g = s
        .get(&tok, &pct(d["exchange_binding_id"].as_str().unwrap()), None)
        .await;
    assert_eq!(g.ok()["exchange_account"].as_str(), Some(long.as_str()));
}

#[tokio::test]
async fn delete_then_get_then_rebind() {
    let s = Server::full();
    let tok = s.boss().await;
    let d = s
        .bind(&tok, ACME_ADMIN, "alice.ex@acme.example", "alice")
        .await;
    let id = d["exchange_binding_id"].as_str().unwrap().to_string();
    let r = s.delete(&tok, &id).await;
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(
        r.body,
        json!({"code": 0, "msg": "success", "data": {}}),
        "{}",
        r.text
    );
    r.assert_json_content_type();
    s.get(&tok, &id, None).await.assert_err(404, 195103);
    s.delete(&tok, &id).await.assert_err(404, 195103);
    // Free at once: another user takes the account; alice can take another one.
    let b = s
        .bind(&tok, ACME_ADMIN, "alice.ex@acme.example", "bob")
        .await;
    assert_eq!(b["user_id"], "bob");
    assert_eq!(b["status"], "doing");
    assert_eq!(
        b["exchange_binding_id"],
        id.as_str(),
        "same spelling, same id"
    );
    s.bind(&tok, ACME_ADMIN, "alice.new@acme.example", "alice")
        .await;
    assert_eq!(s.list_bindings("acme").await.len(), 2);
}

#[tokio::test]
async fn other_tenant_cannot_see_or_delete() {
    let s = Server::full();
    let tok = s.boss().await;
    let d = s
        .bind(&tok, ACME_ADMIN, "alice.ex@acme.example", "alice")
        .await;
    let id = d["exchange_binding_id"].as_str().unwrap();
    let g = s.mint("cli_globex", "globex", "gboss").await;
    s.get(&g, id, None).await.assert_err(403, 195104);
    s.delete(&g, id).await.assert_err(403, 195104);
    s.get(&tok, id, None).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deletes_one_success() {
    // Quotas off: contention (190010) is not a rate limit and stays on.
    let s = Server::full_with(&["--rate-limits", "off"]);
    let tok = s.boss().await;
    for round in 0..3 {
        let d = s
            .bind(&tok, ACME_ADMIN, "alice.ex@acme.example", "alice")
            .await;
        let id = d["exchange_binding_id"].as_str().unwrap();
        let rs = s
            .burst(
                32,
                Method::DELETE,
                &format!("{BINDINGS}/{id}"),
                Some(&tok),
                None,
            )
            .await;
        let ok = rs.iter().filter(|r| r.body["code"] == 0).count();
        assert_eq!(ok, 1, "round {round}: exactly one delete succeeds");
        for r in &rs {
            assert!(r.status.as_u16() < 500, "5xx: {}", r.text);
            match r.body["code"].as_i64().unwrap() {
                0 => assert_eq!(r.body, json!({"code": 0, "msg": "success", "data": {}})),
                190010 => {
                    r.assert_err(429, 190010);
                }
                195103 => {
                    r.assert_err(404, 195103);
                }
                other => panic!("unexpected code {other}: {}", r.text),
            }
        }
        s.get(&tok, id, None).await.assert_err(404, 195103);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_duplicate() {
    let s = Server::full_with(&["--rate-limits", "off"]);
    let tok = s.boss().await;
    let users = ["alice", "bob", "carol", "dave", "erin"];
    for round in 0..3 {
        let exchange = format!("contested{round}@acme.example");
        let mut tasks = Vec::new();
        for i in 0..20 {
            let user = users[i % users.len()];
            let body =
                json!({"admin_account": ACME_ADMIN, "exchange_account": exchange, "user_id": user});
            let headers = vec![("Authorization".to_string(), format!("Bearer {tok}"))];
            let http = s.http.clone();
            let url = s.url(&format!("{BINDINGS}?user_id_type=user_id"));
            tasks.push(tokio::spawn(async move {
                send(
                    &http,
                    Method::POST,
                    &url,
                    &headers,
                    Some(serde_json::to_vec(&body).unwrap()),
                )
                .await
            }));
        }
        let mut winners = std::collections::HashSet::new();
        for t in tasks {
            let r = t.await.unwrap();
            assert!(r.status.as_u16() < 500, "5xx: {}", r.text);
            match r.body["code"].as_i64().unwrap() {
                0 => {
                    winners.insert(r.body["data"]["user_id"].as_str().unwrap().to_string());
                }
                190010 => {
                    r.assert_err(429, 190010);
                }
                190002 => {
                    r.assert_err(400, 190002);
                }
                other => panic!("unexpected code {other}: {}", r.text),
            }
        }
        assert!(winners.len() <= 1, "two users got {exchange}: {winners:?}");
        let bound: Vec<Value> = s
            .list_bindings("acme")
            .await
            .into_iter()
            .filter(|b| b["exchange_account"] == exchange.as_str())
            .collect();
        assert!(bound.len() <= 1, "duplicate bindings: {bound:?}");
        assert_eq!(bound.len(), winners.len());
        // Clean up so the users are free for the next round.
        for b in bound {
            let id = b["exchange_binding_id"].as_str().unwrap().to_string();
            s.delete(&tok, &id).await.ok();
        }
    }
}

#[tokio::test]
async fn store_app_works_in_each_tenant_without_field_scopes() {
    let s = Server::full();
    let tok = s.mint("cli_store", "acme", "boss").await;
    let alice = s.user_ids("acme", "alice", "cli_store").await;
    let r = s
        .create(
            &tok,
            ACME_ADMIN,
            "alice.ex@acme.example",
            alice["open_id"].as_str().unwrap(),
            None,
        )
        .await;
    let d = r.ok().as_object().unwrap().clone();
    assert!(!d.contains_key("exchange_account"), "{}", r.text);
    assert_eq!(d["user_id"], alice["open_id"]);
    let id = d["exchange_binding_id"].as_str().unwrap();
    s.get(&tok, id, Some("user_id")).await.assert_err_msg(
        400,
        99991672,
        &scope_msg(&[EMPLOYEE_ID_SCOPE]),
    );
    // The same app in globex sees its own tenant only.
    let g = s.mint("cli_store", "globex", "gboss").await;
    s.get(&g, id, None).await.assert_err(403, 195104);
    let gina = s.user_ids("globex", "gina", "cli_store").await;
    let r = s
        .create(
            &g,
            GLOBEX_ADMIN,
            "gina.ex@globex.example",
            gina["open_id"].as_str().unwrap(),
            None,
        )
        .await;
    r.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_for_one_user_never_give_two_accounts() {
    let s = Server::full_with(&["--rate-limits", "off"]);
    let tok = s.boss().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let body = json!({"admin_account": ACME_ADMIN, "exchange_account": format!("many{i}@acme.example"), "user_id": "carol"});
        let headers = vec![("Authorization".to_string(), format!("Bearer {tok}"))];
        let http = s.http.clone();
        let url = s.url(&format!("{BINDINGS}?user_id_type=user_id"));
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
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.body["code"].as_i64().unwrap() {
            0 => ok += 1,
            190010 => {
                r.assert_err(429, 190010);
            }
            190002 => {
                r.violation("user_id");
            }
            other => panic!("unexpected code {other}: {}", r.text),
        }
    }
    assert_eq!(ok, 1, "exactly one account for carol");
    let carol: Vec<Value> = s
        .list_bindings("acme")
        .await
        .into_iter()
        .filter(|b| b["user_id"] == "carol")
        .collect();
    assert_eq!(carol.len(), 1, "{carol:?}");
}
