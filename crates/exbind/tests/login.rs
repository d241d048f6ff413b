//! `exbind login`, `whoami`, `logout` and the stored login (oauth.md §6): the authorize URL
//! with PKCE and state, completed through the authorize pages by their form contract; the
//! loopback redirect and its checks, the credentials file, and the stored login used (and
//! refreshed) by the client subcommands, after flag, environment and config file.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use reqwest::Url;
use serde_json::json;

fn credentials(xdg: &Path) -> PathBuf {
    xdg.join("exbind/credentials.toml")
}

/// A stored login written as `exbind login` writes it.
fn store_login(xdg: &Path, base: &str, token: &str, expires_at: i64, refresh: Option<&str>) {
    let mut entry = toml::Table::new();
    entry.insert("base_url".into(), base.into());
    entry.insert("app_id".into(), "cli_acme".into());
    entry.insert("app_secret".into(), "acme-secret".into());
    entry.insert("access_token".into(), token.into());
    entry.insert("expires_at".into(), expires_at.into());
    if let Some(r) = refresh {
        entry.insert("refresh_token".into(), r.into());
    }
    entry.insert("scope".into(), "".into());
    let mut doc = toml::Table::new();
    doc.insert("logins".into(), toml::Value::Array(vec![entry.into()]));
    std::fs::create_dir_all(xdg.join("exbind")).unwrap();
    std::fs::write(credentials(xdg), toml::to_string(&doc).unwrap()).unwrap();
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn run(c: Command) -> CliOut {
    cli_run(c, Duration::from_secs(60))
}

/// The permission bits of the credentials file.
fn credentials_mode(xdg: &Path) -> u32 {
    std::fs::metadata(credentials(xdg))
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn login_asks_with_pkce_and_state_and_refuses_an_answer_with_another_state() {
    let s = Server::basic();
    let xdg = tempfile::tempdir().unwrap();
    let login = CliLogin::start(xdg.path(), &s.base, &[]);
    assert_eq!(login.url.origin().ascii_serialization(), s.base);
    assert_eq!(login.url.path(), "/open-apis/authen/v1/authorize");
    let q = login.query();
    assert_eq!(q["client_id"], "cli_acme");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43, "{q:?}");
    assert!(q["state"].len() >= 16, "{q:?}");
    assert!(!q.contains_key("scope"), "no scope unless asked: {q:?}");
    let redirect = Url::parse(&q["redirect_uri"]).unwrap();
    assert_eq!(redirect.host_str(), Some("127.0.0.1"));
    assert_eq!(redirect.path(), "/callback");

    let http = reqwest::Client::new();
    // Another state: refused, and the login goes on waiting.
    let page = http
        .get(format!("{redirect}?code=stolen&state=not-this-one"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    assert!(text.contains("<html lang=\"en\">"), "{text}");
    assert!(
        text.contains("does not belong to the login in progress"),
        "{text}"
    );
    // The user cancels on the consent page.
    let page = http
        .get(redirect.clone())
        .query(&[
            ("error", "access_denied"),
            ("error_description", "the user said no"),
            ("state", &q["state"]),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("The login did not complete: the user said no"),
        "{page}"
    );
    let (code, _, err) = tokio::task::spawn_blocking(move || login.finish())
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("login refused: access_denied"), "{err}");
    assert!(!credentials(xdg.path()).exists(), "nothing stored");
}

#[tokio::test]
async fn feishu_and_lark_logins_go_to_their_accounts_hosts() {
    let xdg = tempfile::tempdir().unwrap();
    for (base, host) in [
        ("https://open.feishu.cn", "accounts.feishu.cn"),
        ("https://open.larksuite.com", "accounts.larksuite.com"),
    ] {
        let login = CliLogin::start(xdg.path(), base, &["--scope", "offline_access"]);
        assert_eq!(login.url.scheme(), "https");
        assert_eq!(login.url.host_str(), Some(host));
        assert_eq!(login.url.path(), "/open-apis/authen/v1/authorize");
        assert_eq!(login.query()["scope"], "offline_access");
    }
}

#[tokio::test]
async fn login_needs_an_app() {
    let xdg = tempfile::tempdir().unwrap();
    let out = run(cli_in(xdg.path(), &["login", "--no-browser"]));
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(out.stderr.contains("--app-id"), "{out:#?}");
}

#[tokio::test]
async fn a_stored_login_is_used_last_after_flag_environment_and_config() {
    let s = Server::basic();
    let xdg = tempfile::tempdir().unwrap();
    let token = s.mint("cli_acme", "acme", "boss").await;
    store_login(xdg.path(), &s.base, &token, now_s() + 3600, None);
    let id = binding_id(ACME_ADMIN, "nobody@acme.example");
    let get = |extra: &[&str]| {
        let mut args = vec!["get", id.as_str(), "--json"];
        args.extend_from_slice(extra);
        cli_in(xdg.path(), &args)
    };

    // No token given and no base URL: the stored login's base URL and token.
    let out = run(get(&[]));
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert_eq!(
        out.json()["code"],
        195103,
        "the stored token was accepted: {out:#?}"
    );

    // A flag, the environment, the config file: each wins over the stored login.
    let out = run(get(&["--user-access-token", "u-not-a-token"]));
    assert_eq!(out.json()["code"], 99991668, "{out:#?}");
    let mut c = get(&[]);
    c.env("FEISHU_USER_ACCESS_TOKEN", "u-not-a-token");
    assert_eq!(run(c).json()["code"], 99991668);
    let config = xdg.path().join("exbind/config.toml");
    std::fs::write(&config, "user_access_token = \"u-not-a-token\"\n").unwrap();
    assert_eq!(run(get(&[])).json()["code"], 99991668);
    std::fs::remove_file(&config).unwrap();

    // Another base URL has no login.
    let out = run(get(&["--base-url", "http://127.0.0.1:9"]));
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(out.stderr.contains("run exbind login"), "{out:#?}");

    // Logout forgets it; the file stays owner-only.
    let out = run(cli_in(xdg.path(), &["logout", "--base-url", &s.base]));
    out.success();
    assert!(out.stdout.contains("logged out of"), "{out:#?}");
    assert_eq!(credentials_mode(xdg.path()), 0o600);
    let out = run(cli_in(xdg.path(), &["logout", "--base-url", &s.base]));
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("not logged in"), "{out:#?}");
}

#[tokio::test]
async fn a_stored_login_that_cannot_be_refreshed_says_run_exbind_login() {
    let s = Server::basic();
    let xdg = tempfile::tempdir().unwrap();
    // Expired, with no refresh token.
    let token = s.mint("cli_acme", "acme", "boss").await;
    store_login(xdg.path(), &s.base, &token, now_s() - 10, None);
    let out = run(cli_in(xdg.path(), &["get", DOC_ID, "--base-url", &s.base]));
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr
            .contains("has expired and holds no refresh token: run exbind login"),
        "{out:#?}"
    );
    // Revoked while it should still live: the call answers 99991668, and the refresh token
    // is no good either.
    let token = s.mint("cli_acme", "acme", "boss").await;
    s.revoke(json!({"access_token": token})).await;
    store_login(
        xdg.path(),
        &s.base,
        &token,
        now_s() + 3600,
        Some("ur-no-such-refresh-token"),
    );
    let out = run(cli_in(xdg.path(), &["get", DOC_ID, "--base-url", &s.base]));
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("cannot be refreshed"), "{out:#?}");
    assert!(out.stderr.contains("run exbind login"), "{out:#?}");
}

/// `BASIC_SEED`'s tenant with an app that allows refresh tokens (`offline_access`).
const CLI_LOGIN_SEED: &str = r#"
[[tenants]]
tenant_key = "acme"

[[tenants.users]]
user_id = "boss"
name = "Boss"
email = "boss@acme.example"
super_admin = true

[[tenants.exchange_admins]]
account = "exadmin@acme.example"

[[apps]]
app_id = "cli_acme"
app_secret = "acme-secret"
tenants = ["acme"]
scopes = ["calendar:calendar", "calendar:calendar:readonly", "contact:user.email:readonly",
          "offline_access"]
"#;

/// The credentials file, parsed.
fn stored(xdg: &Path) -> toml::Table {
    std::fs::read_to_string(credentials(xdg))
        .unwrap()
        .parse()
        .unwrap()
}

fn stored_field(xdg: &Path, key: &str) -> toml::Value {
    stored(xdg)["logins"][0][key].clone()
}

/// Rewrites the stored login's local expiry.
fn set_stored_expiry(xdg: &Path, expires_at: i64) {
    let mut doc = stored(xdg);
    let logins = doc.get_mut("logins").unwrap().as_array_mut().unwrap();
    logins[0]
        .as_table_mut()
        .unwrap()
        .insert("expires_at".into(), expires_at.into());
    std::fs::write(credentials(xdg), toml::to_string(&doc).unwrap()).unwrap();
}

/// Completes a running `exbind login` with a code for `boss` from the control plane (a code
/// exactly like the authorize page's), bound to the login's redirect URI and PKCE challenge,
/// delivered to the loopback listener as the browser would. Returns the listener's page.
async fn complete_with_a_code(s: &Server, login: &CliLogin) -> String {
    let q = login.query();
    let d = s
        .issue_code(
            &json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "boss",
                     "redirect_uri": q["redirect_uri"], "code_challenge": q["code_challenge"],
                     "code_challenge_method": "S256"}),
        )
        .await;
    let code = d["code"].as_str().unwrap();
    reqwest::Client::new()
        .get(&q["redirect_uri"])
        .query(&[("code", code), ("state", &q["state"])])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the page's hidden `request` input (the form contract of oauth.md §2).
fn request_handle(page: &str) -> String {
    let at = page
        .find("name=\"request\"")
        .unwrap_or_else(|| panic!("a hidden request input: {page}"));
    let tag_start = page[..at].rfind('<').unwrap();
    let tag = &page[tag_start..tag_start + page[tag_start..].find('>').unwrap()];
    let v = &tag[tag.find("value=\"").expect("its value") + 7..];
    v[..v.find('"').unwrap()].to_string()
}

/// The form of the authorize page after `page`: its request handle and `field`.
async fn submit(
    http: &reqwest::Client,
    form: &str,
    page: &str,
    field: (&str, &str),
) -> reqwest::Response {
    http.post(form)
        .form(&[("request", request_handle(page).as_str()), field])
        .send()
        .await
        .unwrap()
}

/// The text of a page that must answer 200.
async fn page_text(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// Completes a running `exbind login` as a user's browser would, by the pages' form
/// contract: the authorize URL, the account `acme/boss`, Authorize, and the redirect back
/// to the loopback listener. Returns the page the listener answered.
async fn complete_through_the_pages(s: &Server, login: &CliLogin) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = s.url("/open-apis/authen/v1/authorize");
    let page = page_text(http.get(login.url.clone()).send().await.unwrap()).await;
    assert!(
        page.contains("value=\"acme/boss\""),
        "the account is offered: {page}"
    );
    let consent = page_text(submit(&http, &form, &page, ("user", "acme/boss")).await).await;
    assert!(
        consent.contains("value=\"allow\""),
        "the consent step: {consent}"
    );
    let done = submit(&http, &form, &consent, ("decision", "allow")).await;
    assert_eq!(done.status(), 302, "{:?}", done.text().await);
    let back = done.headers()["location"].to_str().unwrap().to_string();
    assert!(back.starts_with(&login.query()["redirect_uri"]), "{back}");
    http.get(back).send().await.unwrap().text().await.unwrap()
}

/// Waits for a login whose listener answered `page`: it must have completed and exit 0.
/// Returns its stdout.
async fn finished(login: CliLogin, page: &str) -> String {
    assert!(
        page.contains("Logged in") && page.contains("You may close this page"),
        "{page}"
    );
    let (code, out, err) = tokio::task::spawn_blocking(move || login.finish())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{out}\n{err}");
    out
}

#[tokio::test]
async fn a_login_completed_through_the_authorize_pages_over_http() {
    let s = Server::builder().seed(CLI_LOGIN_SEED).start();
    let xdg = tempfile::tempdir().unwrap();
    let login = CliLogin::start(xdg.path(), &s.base, &[]);
    let page = complete_through_the_pages(&s, &login).await;
    finished(login, &page).await;
    let who = run(cli_in(xdg.path(), &["whoami"]));
    who.success();
    assert!(who.stdout.contains("Boss"), "{who:#?}");
    let id = binding_id(ACME_ADMIN, "nobody@acme.example");
    assert_eq!(
        run(cli_in(xdg.path(), &["get", &id, "--json"])).json()["code"],
        195103
    );
}

#[tokio::test]
async fn a_login_is_stored_used_refreshed_and_forgotten() {
    let s = Server::builder()
        .seed(CLI_LOGIN_SEED)
        .args(&["--token-ttl", "3"])
        .start();
    let xdg = tempfile::tempdir().unwrap();
    let login = CliLogin::start(xdg.path(), &s.base, &[]);
    let page = complete_with_a_code(&s, &login).await;
    let out = finished(login, &page).await;
    assert!(
        out.contains(&format!(
            "logged in to {} as Boss with app cli_acme",
            s.base
        )),
        "{out}"
    );

    assert_eq!(
        credentials_mode(xdg.path()),
        0o600,
        "the credentials are the owner's only"
    );
    let first = stored_field(xdg.path(), "access_token");
    assert!(
        first.as_str().unwrap().starts_with("eyJ"),
        "a v2 (JWT) token: {first}"
    );
    let refresh = stored_field(xdg.path(), "refresh_token");
    assert!(
        refresh.as_str().is_some(),
        "offline_access brings a refresh token"
    );

    // whoami and get use it; the base URL comes from the stored login too. The token lives
    // 3 s, less than the minute of margin: each run refreshes it first.
    let out = run(cli_in(xdg.path(), &["whoami"]));
    out.success();
    assert!(
        out.stdout.contains("Boss") && out.stdout.contains("cli_acme"),
        "{out:#?}"
    );
    let id = binding_id(ACME_ADMIN, "nobody@acme.example");
    let out = run(cli_in(xdg.path(), &["get", &id, "--json"]));
    assert_eq!(out.json()["code"], 195103, "{out:#?}");
    let second = stored_field(xdg.path(), "access_token");
    assert_ne!(second, first, "refreshed");
    assert_ne!(
        stored_field(xdg.path(), "refresh_token"),
        refresh,
        "a new refresh token"
    );

    // A token the server finds expired though the file says it is fresh: the call answers
    // 99991677, the token is refreshed and the call made again.
    std::thread::sleep(Duration::from_secs(4));
    set_stored_expiry(xdg.path(), now_s() + 3600);
    let out = run(cli_in(xdg.path(), &["get", &id, "--json"]));
    assert_eq!(out.json()["code"], 195103, "{out:#?}");
    assert_ne!(
        stored_field(xdg.path(), "access_token"),
        second,
        "refreshed on 99991677"
    );
    // The token endpoint's successes: the exchange and each refresh.
    let grants = format!("route={}&code=0", common::fixtures::OAUTH_TOKEN_PATH);
    let refreshes = s.journal_entries(&grants).await;
    assert_eq!(
        refreshes.len(),
        1 + 3,
        "the exchange, and the refreshes of whoami, get and the 99991677: {refreshes:#?}"
    );

    // A bulk run whose four workers all meet the expired token at once refreshes it once:
    // a refresh token is single use.
    std::thread::sleep(Duration::from_secs(4));
    set_stored_expiry(xdg.path(), now_s() + 3600);
    let csv = xdg.path().join("ids.csv");
    let ids: Vec<String> = (0..8)
        .map(|n| binding_id(ACME_ADMIN, &format!("nobody{n}@acme.example")))
        .collect();
    std::fs::write(&csv, format!("exchange_binding_id\n{}\n", ids.join("\n"))).unwrap();
    let out = run(cli_in(
        xdg.path(),
        &[
            "bulk",
            "unbind",
            csv.to_str().unwrap(),
            "--concurrency",
            "4",
            "--no-progress",
            "--json",
        ],
    ));
    let summary = out.json();
    assert_eq!(summary["failed"], 8, "{out:#?}");
    let report = std::fs::read_to_string(xdg.path().join("ids.csv.unbind-report.csv")).unwrap();
    assert_eq!(
        report.matches("195103").count(),
        8,
        "every row reached the API: {report}"
    );
    let after = s.journal_entries(&grants).await;
    assert_eq!(
        after.len(),
        refreshes.len() + 1,
        "one refresh for the whole run"
    );

    // Revoked with its grant: refresh is impossible, and the error says what to do.
    let token = stored_field(xdg.path(), "access_token");
    s.revoke(json!({"access_token": token.as_str().unwrap()}))
        .await;
    let out = run(cli_in(xdg.path(), &["get", &id]));
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr.contains("cannot be refreshed") && out.stderr.contains("run exbind login"),
        "{out:#?}"
    );

    run(cli_in(xdg.path(), &["logout"])).success();
    let out = run(cli_in(xdg.path(), &["whoami", "--base-url", &s.base]));
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(out.stderr.contains("run exbind login"), "{out:#?}");
}
