//! The authorize page over plain HTTP (oauth.md §2): its error pages and error redirects,
//! the form contract step by step (the browser test walks the same pages in chromium),
//! `login_hint`, `auto_consent`, PKCE and the tamper-proof, expiring `request` handle.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

const AUTHORIZE: &str = "/open-apis/authen/v1/authorize";

/// An answer of the page: status, Location, body text.
struct Page {
    status: StatusCode,
    location: Option<String>,
    content_type: String,
    text: String,
}

impl Page {
    /// A parameter of the redirect's query.
    fn param(&self, k: &str) -> Option<String> {
        let loc = self.location.as_deref().expect("a redirect");
        reqwest::Url::parse(loc)
            .unwrap()
            .query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    }
    /// The value of the page's hidden `request` input.
    fn handle(&self) -> String {
        let at = self
            .text
            .find("name=\"request\" value=\"")
            .expect("a request handle");
        let rest = &self.text[at + "name=\"request\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn open(s: &Server, path_and_query: &str) -> Page {
    page(client().get(s.url(path_and_query))).await
}

async fn post(s: &Server, form: &[(&str, &str)]) -> Page {
    page(client().post(s.url(AUTHORIZE)).form(form)).await
}

async fn page(req: reqwest::RequestBuilder) -> Page {
    let r = req.send().await.unwrap();
    let status = r.status();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    Page {
        status,
        location,
        content_type,
        text: r.text().await.unwrap(),
    }
}

fn authorize(params: &[(&str, &str)]) -> String {
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", pct(v)))
        .collect();
    format!("{AUTHORIZE}?{}", q.join("&"))
}

#[track_caller]
fn assert_error_page(p: &Page, heading: &str) {
    assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.text);
    assert!(p.location.is_none(), "an error page never redirects");
    assert_eq!(p.content_type, "text/html; charset=utf-8");
    assert!(p.text.contains(heading), "{heading:?} in {}", p.text);
    assert!(p.text.starts_with("<!DOCTYPE html><html lang=\"en\">"));
}

async fn exchange(s: &Server, code: &str, extra: Value) -> Resp {
    let mut body = json!({"grant_type": "authorization_code", "client_id": "cli_login",
                          "client_secret": "login-secret", "code": code});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    s.oauth_token(&body).await
}

#[tokio::test]
async fn the_two_steps_follow_the_form_contract_and_redirect_with_code_and_state() {
    let s = Server::builder().seed(LOGIN_SEED).start();
    let first = open(
        &s,
        &authorize(&[
            ("client_id", "cli_login"),
            ("redirect_uri", "https://app.example/callback?keep=1"),
            ("response_type", "code"),
            ("scope", "calendar:calendar:readonly offline_access"),
            ("state", "st&ate"),
        ]),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.content_type, "text/html; charset=utf-8");
    let t = &first.text;
    assert!(
        t.contains(r#"<form method="post" action="/open-apis/authen/v1/authorize""#),
        "{t}"
    );
    assert!(t.contains(r#"name="user" value="acme/boss""#), "{t}");
    assert!(t.contains(r#"name="user" value="acme/alice""#), "{t}");
    assert!(!t.contains("acme/gone"), "a dismissed user is not offered");
    assert!(t.contains("Acme Calendar Sync"));
    let consent = post(&s, &[("request", &first.handle()), ("user", "acme/boss")]).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.text);
    let t = &consent.text;
    assert!(
        t.contains(r#"name="decision" value="allow">Authorize</button>"#),
        "{t}"
    );
    assert!(
        t.contains(r#"name="decision" value="deny">Cancel</button>"#),
        "{t}"
    );
    assert!(t.contains("calendar:calendar:readonly") && t.contains("offline_access"));
    assert!(
        !t.contains("contact:user.email:readonly"),
        "only the asked scopes"
    );
    let done = post(&s, &[("request", &consent.handle()), ("decision", "allow")]).await;
    assert_eq!(done.status, StatusCode::FOUND);
    let loc = done.location.clone().unwrap();
    assert!(
        loc.starts_with("https://app.example/callback?keep=1&code="),
        "{loc}"
    );
    assert_eq!(done.param("state").as_deref(), Some("st&ate"));
    let code = done.param("code").unwrap();
    assert!(code.len() >= 32);
    let r = exchange(
        &s,
        &code,
        json!({"redirect_uri": "https://app.example/callback?keep=1"}),
    )
    .await;
    assert_eq!(r.body["code"], 0, "{}", r.text);
    assert_eq!(r.body["scope"], "calendar:calendar:readonly offline_access");
    assert!(r.body["refresh_token"].is_string());
}

#[tokio::test]
async fn cancel_redirects_with_access_denied_and_state() {
    let s = Server::builder().seed(LOGIN_SEED).start();
    let first = open(
        &s,
        &authorize(&[
            ("client_id", "cli_login"),
            ("redirect_uri", "https://app.example/callback"),
            ("state", "s1"),
        ]),
    )
    .await;
    // From the account step…
    let p = post(&s, &[("request", &first.handle()), ("decision", "deny")]).await;
    assert_eq!(p.status, StatusCode::FOUND);
    assert_eq!(p.param("error").as_deref(), Some("access_denied"));
    assert_eq!(p.param("state").as_deref(), Some("s1"));
    assert!(p.param("code").is_none());
    // …and from consent.
    let consent = post(&s, &[("request", &first.handle()), ("user", "acme/alice")]).await;
    let p = post(&s, &[("request", &consent.handle()), ("decision", "deny")]).await;
    assert_eq!(p.param("error").as_deref(), Some("access_denied"));
}

#[tokio::test]
async fn requests_that_cannot_redirect_get_an_error_page() {
    let s = Server::builder().seed(LOGIN_SEED).start();
    for (q, heading) in [
        (
            authorize(&[("redirect_uri", "https://app.example/callback")]),
            "Missing app",
        ),
        (
            authorize(&[
                ("client_id", "cli_nope"),
                ("redirect_uri", "https://app.example/callback"),
            ]),
            "Unknown app",
        ),
        (
            authorize(&[
                ("client_id", "cli_off"),
                ("redirect_uri", "http://127.0.0.1:9/cb"),
            ]),
            "App disabled",
        ),
        (
            authorize(&[("client_id", "cli_login")]),
            "Missing redirect URI",
        ),
        (
            authorize(&[
                ("client_id", "cli_login"),
                ("redirect_uri", "https://evil.example/callback"),
            ]),
            "Redirect URI not allowed",
        ),
        (
            authorize(&[
                ("client_id", "cli_login"),
                ("redirect_uri", "https://app.example:8443/callback"),
            ]),
            "Redirect URI not allowed",
        ),
        // An app with no redirect URIs takes loopback ones only.
        (
            authorize(&[
                ("client_id", "cli_auto"),
                ("redirect_uri", "https://app.example/callback"),
            ]),
            "Redirect URI not allowed",
        ),
    ] {
        assert_error_page(&open(&s, &q).await, heading);
    }
    // A tampered, or missing, request handle.
    let first = open(
        &s,
        &authorize(&[
            ("client_id", "cli_login"),
            ("redirect_uri", "https://app.example/callback"),
        ]),
    )
    .await;
    let mut tampered = first.handle();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    assert_error_page(
        &post(&s, &[("request", &tampered), ("user", "acme/boss")]).await,
        "expired",
    );
    assert_error_page(&post(&s, &[("user", "acme/boss")]).await, "expired");
    // An account that is not offered.
    assert_error_page(
        &post(&s, &[("request", &first.handle()), ("user", "acme/gone")]).await,
        "Account not available",
    );
}

#[tokio::test]
async fn bad_parameters_redirect_with_an_error_and_state() {
    let s = Server::builder().seed(LOGIN_SEED).start();
    let base = [
        ("client_id", "cli_login"),
        ("redirect_uri", "https://app.example/callback"),
        ("state", "z"),
    ];
    for (extra, error) in [
        (("response_type", "token"), "unsupported_response_type"),
        (("scope", "calendar:nope"), "invalid_scope"),
        (("scope", "contact:user.phone:readonly"), "invalid_scope"),
        (("code_challenge_method", "S512"), "invalid_request"),
        (("code_challenge", "short"), "invalid_request"),
    ] {
        let mut q = base.to_vec();
        q.push(extra);
        let p = open(&s, &authorize(&q)).await;
        assert_eq!(p.status, StatusCode::FOUND, "{extra:?}: {}", p.text);
        assert!(p
            .location
            .as_deref()
            .unwrap()
            .starts_with("https://app.example/callback?"));
        assert_eq!(p.param("error").as_deref(), Some(error), "{extra:?}");
        assert!(p.param("error_description").is_some_and(|d| !d.is_empty()));
        assert_eq!(p.param("state").as_deref(), Some("z"));
    }
}

#[tokio::test]
async fn login_hint_skips_the_account_step_and_with_auto_consent_no_page_is_shown() {
    let s = Server::builder().seed(LOGIN_SEED).start();
    // The legacy route serves the same page; a hint naming the user skips step 1.
    let p = open(
        &s,
        &format!(
            "/open-apis/authen/v1/index?app_id=cli_login&redirect_uri={}&login_hint=acme/alice",
            pct("https://app.example/callback")
        ),
    )
    .await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(
        p.text.contains(r#"value="allow">Authorize</button>"#),
        "{}",
        p.text
    );
    assert!(p.text.contains("(alice)"), "{}", p.text);
    // A hint naming no offered user is ignored.
    let p = open(
        &s,
        &authorize(&[
            ("client_id", "cli_login"),
            ("redirect_uri", "https://app.example/callback"),
            ("login_hint", "gone"),
        ]),
    )
    .await;
    assert!(p.text.contains(r#"name="user" value="acme/boss""#));
    // auto_consent + login_hint: the code at once, PKCE kept.
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let p = open(
        &s,
        &authorize(&[
            ("client_id", "cli_auto"),
            ("redirect_uri", "http://127.0.0.1:4567/cb"),
            ("login_hint", "boss"),
            ("state", "ci"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ]),
    )
    .await;
    assert_eq!(p.status, StatusCode::FOUND, "{}", p.text);
    assert!(p
        .location
        .as_deref()
        .unwrap()
        .starts_with("http://127.0.0.1:4567/cb?code="));
    assert_eq!(p.param("state").as_deref(), Some("ci"));
    let body = json!({"grant_type": "authorization_code", "client_id": "cli_auto",
                      "client_secret": "auto-secret", "code": p.param("code").unwrap(),
                      "code_verifier": verifier});
    let r = s.oauth_token(&body).await;
    assert_eq!(r.body["code"], 0, "{}", r.text);
    assert_eq!(r.body["scope"], "offline_access");
    // auto_consent without a hint: choosing the account is the last step.
    let first = open(
        &s,
        &authorize(&[
            ("client_id", "cli_auto"),
            ("redirect_uri", "http://[::1]:80/x"),
        ]),
    )
    .await;
    let p = post(&s, &[("request", &first.handle()), ("user", "acme/alice")]).await;
    assert_eq!(p.status, StatusCode::FOUND);
    assert!(
        p.location
            .as_deref()
            .unwrap()
            .starts_with("http://[::1]:80/x?code="),
        "{:?}",
        p.location
    );
}

/// Bytes that are no UTF-8 in the query or the form: a readable page or a redirect, never
/// the API's JSON and never a 5xx.
#[tokio::test]
async fn bytes_that_are_no_utf8_get_a_page() {
    let s = Server::builder().seed(LOGIN_SEED).start();
    let is_page = |what: &str, r: &RawResp| {
        let status = r.status();
        assert!((200..500).contains(&status), "{what}: {}", r.body);
        if (300..400).contains(&status) {
            assert!(r.exact("Location").is_some(), "{what}");
            return;
        }
        assert_eq!(
            r.exact("Content-Type").unwrap(),
            "text/html; charset=utf-8",
            "{what}: {}",
            r.body
        );
        assert!(r.body.starts_with("<!DOCTYPE html>"), "{what}: {}", r.body);
    };
    let redirect = pct("https://app.example/callback");
    for query in [
        "client_id=%FF".to_string(),
        "client_id=cli_lo%C3gin".to_string(),
        format!("client_id=cli_login&redirect_uri={redirect}%FF"),
        format!("client_id=cli_login&redirect_uri={redirect}&state=%FF%FE"),
        format!("client_id=cli_login&redirect_uri={redirect}&scope=%FF"),
        format!("client_id=cli_login&redirect_uri={redirect}&login_hint=%FF"),
        format!("client_id=cli_login&redirect_uri={redirect}&code_challenge=%FF"),
        format!("client_id=cli_login&%FF=%FF&redirect_uri={redirect}"),
    ] {
        for route in [AUTHORIZE, "/open-apis/authen/v1/index"] {
            let query = if route == AUTHORIZE {
                query.clone()
            } else {
                query.replace("client_id=", "app_id=")
            };
            let target = format!("{route}?{query}");
            is_page(&target, &s.raw_request("GET", &target, None, None));
        }
    }
    // A form whose fields are no UTF-8, raw or percent-encoded, around a real handle.
    let first = open(
        &s,
        &authorize(&[
            ("client_id", "cli_login"),
            ("redirect_uri", "https://app.example/callback"),
        ]),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let handle = first.handle();
    let forms: Vec<Vec<u8>> = vec![
        format!("request={handle}&user=%FF").into_bytes(),
        [
            format!("request={handle}&user=acme/boss").as_bytes(),
            b"\xff",
        ]
        .concat(),
        format!("request={handle}%FF&user=acme/boss").into_bytes(),
        format!("request={handle}&decision=%FF").into_bytes(),
        b"request=\xff\xfe&decision=allow".to_vec(),
        format!("%FF={handle}&user=acme/boss").into_bytes(),
    ];
    for form in forms {
        let what = String::from_utf8_lossy(&form).into_owned();
        let r = s.raw_with(
            "POST",
            AUTHORIZE,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &form,
        );
        is_page(&what, &r);
        assert_eq!(r.status(), 400, "{what}: {}", r.body);
    }
}
