//! `exbind serve` as a process (product.md): bad seeds and flags exit 2 with one line, the
//! demo seed and its `curl` line, the generated admin token, environment twins.
mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;

const GOOD_APP: &str = r#"
[[apps]]
app_id = "cli_acme"
app_secret = "acme-secret"
tenants = ["acme"]
scopes = ["calendar:calendar"]
"#;

/// Runs `exbind serve --seed <seed>` on a fresh data dir, expects exit 2 with exactly one
/// line on stderr naming the file and containing `place`; then checks nothing was loaded.
async fn assert_bad_seed(seed: &str, place: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let seed_path = tmp.path().join("bad-seed.toml");
    std::fs::write(&seed_path, seed).unwrap();
    let data = tmp.path().join("data");
    let cmd = serve_command(
        &data,
        &[
            "--seed",
            seed_path.to_str().unwrap(),
            "--admin-token",
            ADMIN_TOKEN,
        ],
    );
    let (status, _out, err) = run_to_exit(cmd, Duration::from_secs(20));
    assert_eq!(status.code(), Some(2), "seed {seed}\nstderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {err}");
    assert!(lines[0].contains("bad-seed.toml"), "names the file: {err}");
    assert!(lines[0].contains(place), "names the place {place}: {err}");

    // Nothing is half-loaded: a server on the same data dir (which, with an empty store,
    // loads the demo seed) knows nothing of the bad file's tenants and apps.
    let s = Server::builder().data_dir(&data).start();
    s.admin(Method::GET, "/_exbind/v1/tenants/acme", None)
        .await
        .assert_err(404, 99991201);
    s.admin(Method::GET, "/_exbind/v1/apps/cli_acme", None)
        .await
        .assert_err(404, 99991201);
}

#[tokio::test]
async fn seed_with_an_unknown_key_exits_2() {
    let seed = format!(
        "[[tenants]]\ntenant_key = \"acme\"\n\n[[tenants.users]]\nuser_id = \"boss\"\nnickname = \"b\"\n{GOOD_APP}"
    );
    assert_bad_seed(&seed, "nickname").await;
}

#[tokio::test]
async fn seed_with_a_user_twice_exits_2() {
    let seed = format!(
        "[[tenants]]\ntenant_key = \"acme\"\n\n[[tenants.users]]\nuser_id = \"boss\"\n\n[[tenants.users]]\nuser_id = \"boss\"\n{GOOD_APP}"
    );
    assert_bad_seed(&seed, "tenants[0].users[1].user_id").await;
}

#[tokio::test]
async fn seed_with_a_custom_app_in_two_tenants_exits_2() {
    let seed = r#"
[[tenants]]
tenant_key = "acme"

[[tenants]]
tenant_key = "globex"

[[apps]]
app_id = "cli_acme"
app_secret = "acme-secret"
tenants = ["acme", "globex"]
"#;
    assert_bad_seed(seed, "apps[0].tenants").await;
}

#[tokio::test]
async fn seed_with_an_unknown_scope_exits_2() {
    let seed = r#"
[[tenants]]
tenant_key = "acme"

[[apps]]
app_id = "cli_acme"
app_secret = "acme-secret"
tenants = ["acme"]
scopes = ["calendar:calendar", "calendar:teleport"]
"#;
    assert_bad_seed(seed, "apps[0].scopes[1]").await;
}

#[tokio::test]
async fn seed_with_an_unknown_state_exits_2() {
    let seed = format!(
        "[[tenants]]\ntenant_key = \"acme\"\n\n[[tenants.exchange_admins]]\naccount = \"a@acme.example\"\nstate = \"meh\"\n{GOOD_APP}"
    );
    assert_bad_seed(&seed, "tenants[0].exchange_admins[0].state").await;
}

#[tokio::test]
async fn seed_that_is_not_toml_exits_2() {
    assert_bad_seed("[[tenants]\ntenant_key = ", "bad-seed.toml").await;
}

#[tokio::test]
async fn missing_seed_file_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-seed.toml");
    let cmd = serve_command(
        &tmp.path().join("data"),
        &["--seed", missing.to_str().unwrap()],
    );
    let (status, _, err) = run_to_exit(cmd, Duration::from_secs(20));
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("no-such-seed.toml"), "{err}");
}

#[tokio::test]
async fn bad_flags_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for args in [
        &["--rate-limits", "maybe"][..],
        &["--no-such-flag"][..],
        &["--token-ttl", "abc"][..],
        &["--quota-per-second", "lots"][..],
    ] {
        let (status, _, err) = run_to_exit(serve_command(&data, args), Duration::from_secs(20));
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?} says why");
    }
    // A shared store replaces the data dir: both at once is a bad flag.
    let (status, _, err) = run_to_exit(
        serve_command(&data, &["--database-url", "postgres://localhost/exbind"]),
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("--database-url") && err.contains("--data-dir"),
        "{err}"
    );
    // Shared counters without a shared store would count for one server only.
    let (status, _, err) = run_to_exit(
        serve_command(&data, &["--redis-url", "redis://localhost"]),
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("--redis-url needs --database-url"),
        "{err}"
    );
}

#[tokio::test]
async fn demo_seed_curl_line_creates_a_binding() {
    let mut s = Server::builder().start();
    let line = s.wait_stdout_line("curl ").await;
    assert!(
        line.contains(&s.base),
        "the curl line targets this server: {line}"
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&line)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("curl printed non-JSON ({e}): {text}"));
    assert_eq!(v["code"], 0, "{text}");
    assert_eq!(v["msg"], "success");
    assert_eq!(v["data"]["status"], "doing");
    // The demo's entities are there.
    for (tenant, user) in [
        ("demo", "admin"),
        ("demo", "alice"),
        ("demo", "bob"),
        ("demo", "carol"),
    ] {
        s.admin(
            Method::GET,
            &format!("/_exbind/v1/tenants/{tenant}/users/{user}"),
            None,
        )
        .await
        .ok();
    }
    let r = s
        .admin(Method::GET, "/_exbind/v1/tenants/demo/users/alice", None)
        .await;
    assert_eq!(r.ok()["email"], "alice@demo.example");
    assert!(s
        .tenant_token("cli_demo", "demo-secret")
        .await
        .starts_with("t-"));
    assert_eq!(s.list_bindings("demo").await.len(), 1);

    // Printed on every start; the admin token given by flag is never printed.
    s.restart();
    let again = s.wait_stdout_line("curl ").await;
    assert!(again.contains(&s.base), "{again}");
    assert!(
        s.stdout_lines().iter().all(|l| !l.contains(ADMIN_TOKEN)),
        "{:?}",
        s.stdout_lines()
    );
    assert!(
        s.stdout_lines()
            .iter()
            .all(|l| !l.starts_with("admin token:")),
        "{:?}",
        s.stdout_lines()
    );
}

#[tokio::test]
async fn seeded_server_prints_no_curl_line() {
    let s = Server::full();
    // Give the banner a moment to be complete.
    s.call(Method::GET, "/_exbind/healthz", None, None).await;
    assert!(
        s.stdout_lines().iter().all(|l| !l.starts_with("curl ")),
        "{:?}",
        s.stdout_lines()
    );
}

#[tokio::test]
async fn generated_admin_token_is_printed_and_kept() {
    let mut s = Server::builder().seed(FULL_SEED).no_admin_token().start();
    let token = s.admin_token.clone();
    assert!(
        !token.is_empty(),
        "no `admin token:` line in {:?}",
        s.stdout_lines()
    );
    s.admin(Method::GET, "/_exbind/v1/tenants", None).await.ok();
    s.call(Method::GET, "/_exbind/v1/tenants", Some(ADMIN_TOKEN), None)
        .await
        .assert_err(401, 99991663);
    // Kept in the store and printed again on every start.
    s.restart();
    let printed: Vec<String> = s
        .stdout_lines()
        .iter()
        .filter_map(|l| {
            l.strip_prefix("admin token: ")
                .map(|t| t.trim().to_string())
        })
        .collect();
    assert_eq!(printed, vec![token.clone()]);
    s.admin(Method::GET, "/_exbind/v1/tenants", None).await.ok();
    // Never in the log.
    assert!(!s.stderr_text().contains(&token));
}

#[tokio::test]
async fn admin_token_from_env_is_used_and_not_printed() {
    let s = Server::builder()
        .seed(FULL_SEED)
        .no_admin_token()
        .env("EXBIND_ADMIN_TOKEN", "env-admin-token")
        .start();
    assert!(
        s.stdout_lines()
            .iter()
            .all(|l| !l.starts_with("admin token:") && !l.contains("env-admin-token")),
        "{:?}",
        s.stdout_lines()
    );
    s.call(
        Method::GET,
        "/_exbind/v1/tenants",
        Some("env-admin-token"),
        None,
    )
    .await
    .ok();
}

#[tokio::test]
async fn environment_twins_and_flags_win() {
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    // EXBIND_QUOTA_PER_MINUTE=1: the second GET is rejected.
    let s = Server::builder()
        .seed(FULL_SEED)
        .env("EXBIND_QUOTA_PER_MINUTE", "1")
        .start();
    ensure_minute_room(20).await;
    let tok = s.boss().await;
    s.get(&tok, &id, None).await.assert_err(404, 195103);
    s.get(&tok, &id, None).await.assert_err(429, 99991400);
    // The flag wins over the environment.
    let s = Server::builder()
        .seed(FULL_SEED)
        .env("EXBIND_QUOTA_PER_MINUTE", "1")
        .args(&["--quota-per-minute", "100"])
        .start();
    let tok = s.boss().await;
    s.get(&tok, &id, None).await.assert_err(404, 195103);
    s.get(&tok, &id, None).await.assert_err(404, 195103);
    // EXBIND_TOKEN_TTL.
    let s = Server::builder()
        .seed(FULL_SEED)
        .env("EXBIND_TOKEN_TTL", "120")
        .start();
    let r = s
        .admin(
            Method::POST,
            "/_exbind/v1/user_access_tokens",
            Some(
                &serde_json::json!({"app_id": "cli_acme", "tenant_key": "acme", "user_id": "boss"}),
            ),
        )
        .await;
    assert_eq!(r.ok()["expires_in"], 120);
}

#[tokio::test]
async fn port_taken_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(exbind_bin());
    cmd.args([
        "serve",
        "--listen",
        &addr,
        "--admin-token",
        ADMIN_TOKEN,
        "--data-dir",
    ])
    .arg(tmp.path().join("data"))
    .env_remove("RUST_LOG");
    let (status, _, err) = run_to_exit(cmd, Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].contains(&addr), "names the address: {err}");
    drop(taken);
}

#[tokio::test]
async fn listening_beyond_loopback_warns_once_on_stderr() {
    const WARNING: &str = "is not a loopback address";
    let s = Server::builder()
        .seed(BASIC_SEED)
        .listen("0.0.0.0:0")
        .start();
    assert!(s.base.starts_with("http://0.0.0.0:"), "{}", s.base);
    assert!(s.wait_stderr(WARNING).await, "{}", s.stderr_text());
    let lines: Vec<String> = s
        .stderr_text()
        .lines()
        .filter(|l| l.contains(WARNING))
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("the Feishu API and the control plane are reachable from the network"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("0.0.0.0:"),
        "names the address: {}",
        lines[0]
    );
    // It serves all the same; nothing of the warning reaches stdout.
    let r = s.call(Method::GET, "/_exbind/healthz", None, None).await;
    r.ok();
    assert!(s.stdout_lines().iter().all(|l| !l.contains(WARNING)));

    // On loopback: no warning. (The request's log line comes after where it would be.)
    let s = Server::basic();
    let r = s.call(Method::GET, "/_exbind/healthz", None, None).await;
    assert!(s.wait_stderr(&r.log_id()).await);
    assert!(!s.stderr_text().contains(WARNING), "{}", s.stderr_text());
}
