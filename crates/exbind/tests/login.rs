//! `exbind login`, `whoami`, `logout` and the stored login (oauth.md §6): the authorize URL
//! with PKCE and state, the loopback redirect and its checks, the credentials file, and the
//! stored login used (and refreshed) by the client subcommands, after flag, environment and
//! config file.
mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use reqwest::Url;
use serde_json::json;

/// A CLI command with its own config directory.
fn cmd(xdg: &Path, args: &[&str]) -> Command {
    let mut c = cli_command(args);
    c.env("XDG_CONFIG_HOME", xdg);
    c
}

/// `exbind login --no-browser …` running, with the URL it printed.
struct Login {
    child: Child,
    url: Url,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Login {
    fn start(xdg: &Path, base: &str, extra: &[&str]) -> Login {
        let mut args = vec![
            "login",
            "--no-browser",
            "--base-url",
            base,
            "--app-id",
            "cli_acme",
            "--app-secret",
            "acme-secret",
        ];
        args.extend_from_slice(extra);
        let mut child = cmd(xdg, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, stderr) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = stderr.recv_timeout(PATIENCE).expect("a line on stderr");
        let url = first
            .strip_prefix("Open this URL to log in: ")
            .unwrap_or_else(|| panic!("the URL line, got {first:?}"));
        Login {
            child,
            url: Url::parse(url).unwrap(),
            stderr,
        }
    }

    fn query(&self) -> HashMap<String, String> {
        self.url.query_pairs().into_owned().collect()
    }

    /// Waits for the exit; returns the status, stdout and the rest of stderr.
    fn finish(mut self) -> (Option<i32>, String, String) {
        let status = self.child.wait().unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut self.child.stdout.take().unwrap(), &mut out).unwrap();
        let err: Vec<String> = self.stderr.try_iter().collect();
        (status.code(), out, err.join("\n"))
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

#[tokio::test]
async fn login_asks_with_pkce_and_state_and_refuses_an_answer_with_another_state() {
    let s = Server::basic();
    let xdg = tempfile::tempdir().unwrap();
    let login = Login::start(xdg.path(), &s.base, &[]);
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
        let login = Login::start(xdg.path(), base, &["--scope", "offline_access"]);
        assert_eq!(login.url.scheme(), "https");
        assert_eq!(login.url.host_str(), Some(host));
        assert_eq!(login.url.path(), "/open-apis/authen/v1/authorize");
        assert_eq!(login.query()["scope"], "offline_access");
    }
}

#[tokio::test]
async fn login_needs_an_app() {
    let xdg = tempfile::tempdir().unwrap();
    let out = run(cmd(xdg.path(), &["login", "--no-browser"]));
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
        cmd(xdg.path(), &args)
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
    let out = run(cmd(xdg.path(), &["logout", "--base-url", &s.base]));
    out.success();
    assert!(out.stdout.contains("logged out of"), "{out:#?}");
    let mode = std::fs::metadata(credentials(xdg.path()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = run(cmd(xdg.path(), &["logout", "--base-url", &s.base]));
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
    let out = run(cmd(xdg.path(), &["get", DOC_ID, "--base-url", &s.base]));
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr
            .contains("has expired and holds no refresh token: run exbind login"),
        "{out:#?}"
    );
    // Revoked while it should still live: the call answers 99991668, and the refresh token
    // is no good either.
    let token = s.mint("cli_acme", "acme", "boss").await;
    s.admin(
        reqwest::Method::POST,
        "/_exbind/v1/user_access_tokens/revoke",
        Some(&json!({"access_token": token})),
    )
    .await
    .assert(200, 0);
    store_login(
        xdg.path(),
        &s.base,
        &token,
        now_s() + 3600,
        Some("ur-no-such-refresh-token"),
    );
    let out = run(cmd(xdg.path(), &["get", DOC_ID, "--base-url", &s.base]));
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("cannot be refreshed"), "{out:#?}");
    assert!(out.stderr.contains("run exbind login"), "{out:#?}");
}
