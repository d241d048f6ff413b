//! The `exchange_binding_id` codec as seen on the wire (contract §1, §4.6).
mod common;

use common::*;
use reqwest::Method;

/// An Exchange account under `ACME_ADMIN` whose binding id has both `+` and `/`.
fn plus_slash_account() -> String {
    (0..100_000)
        .map(|i| format!("x{i}?>?>@acme.example"))
        .find(|a| {
            let id = binding_id(ACME_ADMIN, a);
            id.contains('+') && id.contains('/')
        })
        .expect("an account with + and / in its id")
}

#[tokio::test]
async fn documented_example_id_is_what_create_returns() {
    let s = Server::full();
    let tok = s.boss().await;
    let d = s.bind(&tok, DOC_ADMIN, DOC_EXCHANGE, "alice").await;
    assert_eq!(d["exchange_binding_id"], DOC_ID);
    assert_eq!(
        binding_id(DOC_ADMIN, DOC_EXCHANGE),
        DOC_ID,
        "the harness agrees"
    );

    // Raw (Node), percent-encoded (Python), without padding: all find it.
    for id in [
        DOC_ID.to_string(),
        DOC_ID.replace('=', "%3D"),
        DOC_ID.trim_end_matches('=').to_string(),
        pct(DOC_ID),
    ] {
        let r = s.get(&tok, &id, None).await;
        assert_eq!(r.ok()["exchange_binding_id"], DOC_ID, "via {id}");
        assert_eq!(r.ok()["admin_account"], DOC_ADMIN);
        assert_eq!(r.ok()["exchange_account"], DOC_EXCHANGE);
    }
    s.delete(&tok, &DOC_ID.replace('=', "%3D")).await.ok();
    s.get(&tok, DOC_ID, None).await.assert_err(404, 195103);
}

#[tokio::test]
async fn ids_with_plus_and_slash_route_raw_and_encoded() {
    let s = Server::full();
    let tok = s.boss().await;
    let account = plus_slash_account();
    let d = s.bind(&tok, ACME_ADMIN, &account, "alice").await;
    let id = d["exchange_binding_id"].as_str().unwrap().to_string();
    assert_eq!(id, binding_id(ACME_ADMIN, &account));
    assert!(id.contains('+') && id.contains('/'), "{id}");

    let url_safe = id.replace('+', "-").replace('/', "_");
    for form in [
        id.clone(),                                 // raw: `/` inside the path, `+` a plus
        pct(&id),                                   // %2B %2F %3D
        id.replace('/', "%2F"),                     // mixed raw and encoded
        url_safe.clone(),                           // URL-safe alphabet
        url_safe.trim_end_matches('=').to_string(), // URL-safe, unpadded
        id.trim_end_matches('=').to_string(),
    ] {
        let r = s.get(&tok, &form, None).await;
        assert_eq!(r.ok()["exchange_binding_id"], id.as_str(), "via {form}");
        assert_eq!(r.ok()["exchange_account"], account.as_str());
    }
    // Raw delete with `/` in the path.
    s.delete(&tok, &id).await.ok();
    s.get(&tok, &pct(&id), None).await.assert_err(404, 195103);
}

#[tokio::test]
async fn plus_is_not_a_space() {
    let s = Server::full();
    let tok = s.boss().await;
    let account = plus_slash_account();
    let id = binding_id(ACME_ADMIN, &account);
    s.bind(&tok, ACME_ADMIN, &account, "alice").await;
    // `+` read as a space would break the base64; `%20` is a space, which is invalid.
    s.get(&tok, &id.replace('+', "%2B"), None).await.ok();
    s.get(&tok, &id.replace('+', "%20"), None)
        .await
        .assert_err(400, 195102);
}

#[tokio::test]
async fn malformed_ids_give_195102() {
    let s = Server::full();
    let tok = s.boss().await;
    let account = plus_slash_account();
    let mixed = binding_id(ACME_ADMIN, &account).replacen('+', "-", 1);
    let bad: Vec<String> = vec![
        "!!!".into(),
        "not-base64-at-all!".into(),
        b64(b"onlyonepart"),
        b64(b"exadmin@acme.example"),
        b64(b"a@b c@d e@f"),
        b64(b" x@acme.example"),
        b64(b"exadmin@acme.example "),
        "YWJj%ZZ".into(),
        "YWJj%".into(),
        "YWJj%4".into(),
        "%E9%FF".into(),
        // base64 of bytes that are not UTF-8, percent-encoded so `/` routes either way.
        pct(&b64(&[0xff, 0xfe, b' ', b'a', b'@', b'b'])),
        pct(&mixed),
        "ZW1h=aWw".into(),
    ];
    for id in &bad {
        s.get(&tok, id, None).await.assert_err(400, 195102);
        s.delete(&tok, id).await.assert_err(400, 195102);
    }
    // A well-formed id of an unknown admin is not "invalid".
    s.get(&tok, &binding_id("who@nowhere.example", "x@y"), None)
        .await
        .assert_err(404, 195106);
}

#[tokio::test]
async fn another_spelling_finds_the_binding_and_answers_the_canonical_id() {
    let s = Server::full();
    let tok = s.boss().await;
    let made = "Mixed.Case@Acme.Example";
    let canonical = binding_id(ACME_ADMIN, made);
    let d = s.bind(&tok, ACME_ADMIN, made, "alice").await;
    assert_eq!(d["exchange_binding_id"], canonical.as_str());
    for (admin, exchange) in [
        ("EXADMIN@ACME.EXAMPLE", "mixed.case@acme.example"),
        ("ExAdmin@acme.example", "MIXED.CASE@ACME.EXAMPLE"),
    ] {
        let r = s.get(&tok, &pct(&binding_id(admin, exchange)), None).await;
        let g = r.ok();
        assert_eq!(g["exchange_binding_id"], canonical.as_str());
        assert_eq!(g["exchange_account"], made);
        assert_eq!(g["admin_account"], ACME_ADMIN);
    }
    // Delete through another spelling removes it.
    s.delete(
        &tok,
        &pct(&binding_id(
            "EXADMIN@acme.example",
            "mixed.CASE@acme.example",
        )),
    )
    .await
    .ok();
    s.get(&tok, &pct(&canonical), None)
        .await
        .assert_err(404, 195103);
}

#[tokio::test]
async fn unicode_lower_casing_matches_accounts() {
    let s = Server::full();
    let tok = s.boss().await;
    let d = s
        .bind(&tok, ACME_ADMIN, "Élodie@acme.example", "alice")
        .await;
    let canonical = binding_id(ACME_ADMIN, "Élodie@acme.example");
    assert_eq!(d["exchange_binding_id"], canonical.as_str());
    let r = s
        .get(
            &tok,
            &pct(&binding_id(ACME_ADMIN, "élodie@ACME.example")),
            None,
        )
        .await;
    assert_eq!(r.ok()["exchange_binding_id"], canonical.as_str());
    // And it is one account for the one-to-one rule.
    let r = s
        .create(
            &tok,
            ACME_ADMIN,
            "ÉLODIE@acme.example",
            "bob",
            Some("user_id"),
        )
        .await;
    r.assert_err(400, 190002);
}

#[tokio::test]
async fn rebind_with_another_spelling_gets_that_spellings_id() {
    let s = Server::full();
    let tok = s.boss().await;
    let first = s
        .bind(&tok, ACME_ADMIN, "Re.Bind@acme.example", "alice")
        .await;
    let id1 = first["exchange_binding_id"].as_str().unwrap().to_string();
    s.delete(&tok, &pct(&id1)).await.ok();
    let second = s
        .bind(&tok, ACME_ADMIN, "re.bind@acme.example", "bob")
        .await;
    assert_eq!(
        second["exchange_binding_id"],
        binding_id(ACME_ADMIN, "re.bind@acme.example").as_str()
    );
    // The old spelling's id still finds the (new) binding, answering the new canonical id.
    let r = s.get(&tok, &pct(&id1), Some("user_id")).await;
    assert_eq!(r.ok()["user_id"], "bob");
    assert_eq!(r.ok()["exchange_binding_id"], second["exchange_binding_id"]);
}

#[tokio::test]
async fn percent_decoding_applies_to_the_whole_rest_of_the_path() {
    let s = Server::full();
    let tok = s.boss().await;
    s.bind(&tok, DOC_ADMIN, DOC_EXCHANGE, "alice").await;
    // Every character percent-encoded, even the plain ones.
    let all: String = DOC_ID.bytes().map(|b| format!("%{b:02X}")).collect();
    let r = s
        .call(Method::GET, &format!("{BINDINGS}/{all}"), Some(&tok), None)
        .await;
    assert_eq!(r.ok()["exchange_binding_id"], DOC_ID);
}

#[tokio::test]
async fn a_new_binding_keeps_the_spelling_of_its_create() {
    let s = Server::full();
    let tok = s.boss().await;
    let d = s
        .bind(
            &tok,
            "ExAdmin@Acme.Example",
            "New.Person@Acme.Example",
            "alice",
        )
        .await;
    assert_eq!(d["admin_account"], "ExAdmin@Acme.Example");
    assert_eq!(d["exchange_account"], "New.Person@Acme.Example");
    let id = binding_id("ExAdmin@Acme.Example", "New.Person@Acme.Example");
    assert_eq!(d["exchange_binding_id"], id.as_str());
    let g = s.get(&tok, &pct(&id), None).await;
    assert_eq!(g.ok()["admin_account"], "ExAdmin@Acme.Example");
}
