//! The client side against the real server: `exbind bind|get|unbind` (output, exit status,
//! errors with code, msg and log_id, credentials from flags, environment or a config file),
//! `exbind watch`, and the `exbind-client` library's typed calls, retries and token calls.
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use exbind_client::{
    BindingStatus, Client, ControlClient, CreateBinding, Error, RetryPolicy, UserIdType,
};
use reqwest::Method;
use serde_json::{json, Value};

const CLI_TIMEOUT: Duration = Duration::from_secs(60);

fn run(args: &[&str]) -> CliOut {
    cli_run(cli_command(args), CLI_TIMEOUT)
}

/// `--base-url B --user-access-token T` followed by `args`.
fn with_conn(s: &Server, token: &str, args: &[&str]) -> CliOut {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--base-url", &s.base, "--user-access-token", token]);
    run(&all)
}

/// The `key  value` lines of a table.
fn table(stdout: &str) -> HashMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let (k, v) = l.split_once(char::is_whitespace)?;
            Some((k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Every log id (14 digits + 20 upper-case hex) in a text.
fn log_ids_in(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| {
            w.len() == 34
                && w[..14].bytes().all(|b| b.is_ascii_digit())
                && w[14..]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        })
        .map(str::to_string)
        .collect()
}

/// The journal entry of a log id; asserts its method and code.
#[track_caller]
fn journal_entry_sync(entry: &Resp, method: &str, code: i64) {
    let data = entry.ok();
    assert_eq!(data["method"], method, "{data}");
    assert_eq!(data["code"], code, "{data}");
}

async fn assert_logged(s: &Server, log_id: &str, method: &str, code: i64) {
    let r = s
        .admin(Method::GET, &format!("/_exbind/v1/requests/{log_id}"), None)
        .await;
    journal_entry_sync(&r, method, code);
}

// ----------------------------------------------------------------------------------------
// bind, get, unbind
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn bind_get_unbind_print_a_table_and_exit_0() {
    let s = Server::full();
    let boss = s.boss().await;
    let id = binding_id(ACME_ADMIN, "alice@mail.acme.example");

    let out = with_conn(
        &s,
        &boss,
        &[
            "bind",
            "--admin-account",
            ACME_ADMIN,
            "--exchange-account",
            "alice@mail.acme.example",
            "--user-id",
            "alice",
            "--user-id-type",
            "user_id",
        ],
    );
    out.success();
    let t = table(&out.stdout);
    assert_eq!(
        t.get("exchange_binding_id"),
        Some(&id),
        "table: {}",
        out.stdout
    );
    assert_eq!(t.get("status").map(String::as_str), Some("doing"));
    assert_eq!(t.get("user_id").map(String::as_str), Some("alice"));
    assert_eq!(t.get("admin_account").map(String::as_str), Some(ACME_ADMIN));
    assert_eq!(
        t.get("exchange_account").map(String::as_str),
        Some("alice@mail.acme.example")
    );
    let log_id = t.get("log_id").expect("log_id row").clone();
    assert_logged(&s, &log_id, "POST", 0).await;
    let rows = s.all_bindings("acme").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["exchange_binding_id"], id.as_str());
    assert_eq!(rows[0]["user_id"], "alice");

    // get, default user_id_type open_id.
    let open_id = s.user_ids("acme", "alice", "cli_acme").await["open_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = with_conn(&s, &boss, &["get", &id]);
    out.success();
    let t = table(&out.stdout);
    assert_eq!(t.get("user_id"), Some(&open_id));
    assert_eq!(t.get("exchange_binding_id"), Some(&id));
    assert_eq!(t.get("status").map(String::as_str), Some("doing"));
    assert_logged(&s, &t["log_id"], "GET", 0).await;

    // unbind
    let out = with_conn(&s, &boss, &["unbind", &id]);
    out.success();
    let t = table(&out.stdout);
    assert_eq!(t.get("unbound"), Some(&id), "{}", out.stdout);
    assert_logged(&s, &t["log_id"], "DELETE", 0).await;
    assert!(s.all_bindings("acme").await.is_empty());

    // A second unbind fails: 195103, exit status not 0.
    let out = with_conn(&s, &boss, &["unbind", &id]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("195103"), "{out:#?}");
}

#[tokio::test]
async fn json_output_for_scripts() {
    let s = Server::full();
    let boss = s.boss().await;
    let bob = s.user_ids("acme", "bob", "cli_acme").await;
    let union_id = bob["union_id"].as_str().unwrap();
    let open_id = bob["open_id"].as_str().unwrap();
    let id = binding_id(ACME_ADMIN, "bob@mail.acme.example");

    // bind with --user-id-type union_id.
    let out = with_conn(
        &s,
        &boss,
        &[
            "bind",
            "--json",
            "--admin-account",
            ACME_ADMIN,
            "--exchange-account",
            "bob@mail.acme.example",
            "--user-id",
            union_id,
            "--user-id-type",
            "union_id",
        ],
    );
    out.success();
    let v = out.json();
    assert_eq!(v["data"]["exchange_binding_id"], id.as_str(), "{v}");
    assert_eq!(v["data"]["user_id"], union_id);
    assert_eq!(v["data"]["status"], "doing");
    assert_eq!(v["data"]["exchange_account"], "bob@mail.acme.example");
    assert_logged(&s, v["log_id"].as_str().unwrap(), "POST", 0).await;
    assert_eq!(s.all_bindings("acme").await[0]["user_id"], "bob");

    let out = with_conn(&s, &boss, &["get", "--json", &id]);
    out.success();
    let v = out.json();
    assert_eq!(v["data"]["user_id"], open_id);
    assert_eq!(v["data"]["exchange_binding_id"], id.as_str());

    let out = with_conn(&s, &boss, &["unbind", "--json", &id]);
    out.success();
    let v = out.json();
    assert_eq!(v["data"], json!({}));
    assert_logged(&s, v["log_id"].as_str().unwrap(), "DELETE", 0).await;
}

/// Runs a failing command with and without `--json`; checks the exit status, that code, msg
/// and log_id are printed, and that the log id is the server's for that request.
async fn assert_cli_error(s: &Server, token: &str, args: &[&str], method: &str, code: i64) {
    let out = with_conn(s, token, args);
    assert_eq!(out.code, Some(1), "{args:?}: {out:#?}");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains(&code.to_string()), "{args:?}: code in {text}");
    assert!(
        text.contains(table_msg(code)),
        "{args:?}: msg {:?} in {text}",
        table_msg(code)
    );
    let ids = log_ids_in(&text);
    assert_eq!(ids.len(), 1, "{args:?}: one log_id in {text}");
    assert_logged(s, &ids[0], method, code).await;

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let out = with_conn(s, token, &json_args);
    assert_eq!(out.code, Some(1), "{json_args:?}: {out:#?}");
    let v = out.json();
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["msg"], table_msg(code), "{v}");
    let log_id = v["log_id"].as_str().expect("log_id").to_string();
    assert_logged(s, &log_id, method, code).await;
}

#[tokio::test]
async fn every_error_is_printed_with_code_msg_and_log_id() {
    let s = Server::full();
    let boss = s.boss().await;
    let alice_tok = s.mint("cli_acme", "acme", "alice").await;
    s.bind(&boss, ACME_ADMIN, "taken@mail.acme.example", "carol")
        .await;
    let bind = |admin: &'static str, exchange: &'static str, user: &'static str| {
        vec![
            "bind",
            "--admin-account",
            admin,
            "--exchange-account",
            exchange,
            "--user-id",
            user,
            "--user-id-type",
            "user_id",
        ]
    };
    let cases: Vec<(Vec<&str>, &str, i64, &str)> = vec![
        (
            bind("nobody@acme.example", "x1@mail.acme.example", "alice"),
            "POST",
            195106,
            boss.as_str(),
        ),
        (
            bind(GLOBEX_ADMIN, "x2@mail.acme.example", "alice"),
            "POST",
            195104,
            boss.as_str(),
        ),
        (
            bind("broken@acme.example", "x3@mail.acme.example", "alice"),
            "POST",
            195105,
            boss.as_str(),
        ),
        (
            bind(ACME_ADMIN, "x4@mail.acme.example", "left"),
            "POST",
            195100,
            boss.as_str(),
        ),
        (
            bind(ACME_ADMIN, "x5@mail.acme.example", "nosuchuser"),
            "POST",
            195100,
            boss.as_str(),
        ),
        (
            bind(ACME_ADMIN, "taken@mail.acme.example", "dave"),
            "POST",
            190002,
            boss.as_str(),
        ),
        (
            bind(ACME_ADMIN, "x6@mail.acme.example", "alice"),
            "POST",
            195101,
            alice_tok.as_str(),
        ),
        (
            bind(ACME_ADMIN, "x7@mail.acme.example", "alice"),
            "POST",
            99991668,
            "u-0000000000000000000000000000bogus",
        ),
        (vec!["get", "!!notbase64!!"], "GET", 195102, boss.as_str()),
    ];
    for (args, method, code, token) in &cases {
        assert_cli_error(&s, token, args, method, *code).await;
    }
    let missing = binding_id(ACME_ADMIN, "nobody@mail.acme.example");
    assert_cli_error(&s, &boss, &["get", &missing], "GET", 195103).await;
    assert_cli_error(&s, &boss, &["unbind", &missing], "DELETE", 195103).await;
    // Nothing was bound by the failures.
    assert_eq!(s.all_bindings("acme").await.len(), 1);
}

#[tokio::test]
async fn a_server_error_that_stays_is_reported_after_the_retries() {
    let s = Server::full();
    let boss = s.boss().await;
    s.add_fault(json!({"method": "GET", "route": ONE_ROUTE, "error": {"code": 190003}}))
        .await;
    let id = binding_id(ACME_ADMIN, "nobody@mail.acme.example");
    let out = with_conn(&s, &boss, &["get", &id]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("190003"), "{out:#?}");
    assert!(out.stderr.contains("internal service error"), "{out:#?}");
    let ids = log_ids_in(&out.stderr);
    assert_eq!(ids.len(), 1, "{out:#?}");
    assert_logged(&s, &ids[0], "GET", 190003).await;
    let tries = s
        .journal_entries(&format!("method=GET&code=190003&route={}", pct(ONE_ROUTE)))
        .await;
    assert!(tries.len() > 1, "190003 is retried: {} tries", tries.len());
    // The log id printed is the last attempt's.
    assert_eq!(tries[0]["log_id"], ids[0].as_str());
}

#[tokio::test]
async fn no_token_anywhere_is_a_usage_error() {
    let s = Server::full();
    let out = run(&["get", "aWQgaWQ=", "--base-url", &s.base]);
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(out.stderr.to_lowercase().contains("token"), "{out:#?}");
    assert!(
        s.journal_entries("").await.is_empty(),
        "no request was made"
    );
}

#[tokio::test]
async fn credentials_come_from_flags_environment_or_a_config_file() {
    let s = Server::full();
    let boss = s.boss().await;
    let id = s
        .bind(&boss, ACME_ADMIN, "cfg@mail.acme.example", "erin")
        .await["exchange_binding_id"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let good = write(
        "good.toml",
        format!(
            "base_url = \"{}\"\nuser_access_token = \"{boss}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n",
            s.base
        ),
    );
    let bad = write(
        "bad.toml",
        "base_url = \"http://127.0.0.1:1\"\nuser_access_token = \"u-bogus\"\n".into(),
    );
    let ok_user = |out: &CliOut| {
        out.success();
        assert_eq!(
            out.json()["data"]["exchange_binding_id"],
            id.as_str(),
            "{out:#?}"
        );
    };

    // Only the config file.
    ok_user(&run(&["get", &id, "--json", "--config", &good]));
    // The config file named by EXBIND_CONFIG.
    let mut cmd = cli_command(&["get", &id, "--json"]);
    cmd.env("EXBIND_CONFIG", &good);
    ok_user(&cli_run(cmd, CLI_TIMEOUT));
    // The default config file, $XDG_CONFIG_HOME/exbind/config.toml.
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("exbind")).unwrap();
    std::fs::copy(&good, xdg.join("exbind/config.toml")).unwrap();
    let mut cmd = cli_command(&["get", &id, "--json"]);
    cmd.env("XDG_CONFIG_HOME", &xdg);
    ok_user(&cli_run(cmd, CLI_TIMEOUT));
    // Only the environment.
    let mut cmd = cli_command(&["get", &id, "--json"]);
    cmd.env("EXBIND_BASE_URL", &s.base)
        .env("FEISHU_USER_ACCESS_TOKEN", &boss);
    ok_user(&cli_run(cmd, CLI_TIMEOUT));
    // The environment wins over the config file.
    let mut cmd = cli_command(&["get", &id, "--json", "--config", &bad]);
    cmd.env("EXBIND_BASE_URL", &s.base)
        .env("FEISHU_USER_ACCESS_TOKEN", &boss);
    ok_user(&cli_run(cmd, CLI_TIMEOUT));
    // Flags win over the environment.
    let mut cmd = cli_command(&[
        "get",
        &id,
        "--json",
        "--base-url",
        &s.base,
        "--user-access-token",
        &boss,
    ]);
    cmd.env("EXBIND_BASE_URL", "http://127.0.0.1:1")
        .env("FEISHU_USER_ACCESS_TOKEN", "u-bogus");
    ok_user(&cli_run(cmd, CLI_TIMEOUT));
    // The token given wrongly is the server's 99991668, not a silent fallback.
    let out = run(&[
        "get",
        &id,
        "--config",
        &good,
        "--user-access-token",
        "u-bogus",
    ]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("99991668"), "{out:#?}");

    // admin_token from the config file drives the control-plane subcommands.
    let out = run(&[
        "sync", "complete", "--tenant", "acme", "--json", "--config", &good,
    ]);
    out.success();
    let row = s.binding_row("acme", &id).await.unwrap();
    assert_eq!(row["status"], "done", "{row}");
}

// ----------------------------------------------------------------------------------------
// watch
// ----------------------------------------------------------------------------------------

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The states written by `watch --output`, by id.
fn states_by_id(v: &Value) -> HashMap<String, Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array of states: {v}"))
        .iter()
        .map(|s| {
            (
                s["exchange_binding_id"].as_str().unwrap().to_string(),
                s.clone(),
            )
        })
        .collect()
}

fn fast_sync_server() -> Server {
    Server::full_with(&["--sync-stage-durations", "200ms,200ms,200ms"])
}

#[tokio::test]
async fn watch_follows_until_every_binding_is_done_and_writes_the_final_states() {
    let s = fast_sync_server();
    let boss = s.boss().await;
    let mut ids = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let b = s
            .bind(&boss, ACME_ADMIN, &format!("{user}@w.acme.example"), user)
            .await;
        ids.push(b["exchange_binding_id"].as_str().unwrap().to_string());
    }
    let dir = tempfile::tempdir().unwrap();
    let out_json = dir.path().join("final.json");
    let mut args = vec!["watch"];
    args.extend(ids.iter().map(String::as_str));
    args.extend([
        "--interval",
        "0.1",
        "--timeout",
        "30",
        "--no-progress",
        "--output",
        out_json.to_str().unwrap(),
    ]);
    let out = with_conn(&s, &boss, &args);
    out.success();
    let states = states_by_id(&read_json(&out_json));
    assert_eq!(states.len(), 3, "{states:?}");
    for id in &ids {
        let st = &states[id];
        assert_eq!(st["status"], "done", "{st}");
        assert_logged(&s, st["log_id"].as_str().unwrap(), "GET", 0).await;
    }
    for b in s.all_bindings("acme").await {
        assert_eq!(b["status"], "done");
    }

    // CSV output, and already-final bindings end the watch at once.
    let out_csv = dir.path().join("final.csv");
    let mut args = vec!["watch"];
    args.extend(ids.iter().map(String::as_str));
    args.extend(["--no-progress", "--output", out_csv.to_str().unwrap()]);
    with_conn(&s, &boss, &args).success();
    let mut rdr = csv::Reader::from_path(&out_csv).unwrap();
    let headers: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    assert!(
        headers.contains(&"exchange_binding_id".to_string())
            && headers.contains(&"status".to_string()),
        "{headers:?}"
    );
    let recs: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(recs.len(), 3);
    let status_col = headers.iter().position(|h| h == "status").unwrap();
    assert!(recs.iter().all(|r| &r[status_col] == "done"), "{recs:?}");

    // --json without --output prints the states.
    let mut args = vec!["watch", "--json", "--no-progress"];
    args.extend(ids.iter().map(String::as_str));
    let out = with_conn(&s, &boss, &args);
    out.success();
    assert_eq!(states_by_id(&out.json()).len(), 3);
}

#[tokio::test]
async fn watch_exits_non_zero_when_a_binding_ends_in_err_or_cannot_be_read() {
    let s = fast_sync_server();
    let boss = s.boss().await;
    s.admin(
        Method::PUT,
        "/_exbind/v1/tenants/acme/exchange_accounts/dave@w.acme.example/scenario",
        Some(&json!({"scenario": "fail", "stage": "timespan_done", "reason": "mailbox full"})),
    )
    .await
    .ok();
    let failing = s
        .bind(&boss, ACME_ADMIN, "dave@w.acme.example", "dave")
        .await["exchange_binding_id"]
        .as_str()
        .unwrap()
        .to_string();
    let fine = s
        .bind(&boss, ACME_ADMIN, "erin@w.acme.example", "erin")
        .await["exchange_binding_id"]
        .as_str()
        .unwrap()
        .to_string();
    let missing = binding_id(ACME_ADMIN, "nobody@w.acme.example");
    let dir = tempfile::tempdir().unwrap();
    let out_json = dir.path().join("final.json");
    let out = with_conn(
        &s,
        &boss,
        &[
            "watch",
            &failing,
            &fine,
            &missing,
            "--interval",
            "0.1",
            "--timeout",
            "30",
            "--no-progress",
            "--output",
            out_json.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, Some(1), "{out:#?}");
    let states = states_by_id(&read_json(&out_json));
    assert_eq!(states[&failing]["status"], "err", "{states:?}");
    assert_eq!(states[&fine]["status"], "done", "{states:?}");
    let m = &states[&missing];
    assert_eq!(m["code"], 195103, "{m}");
    assert_eq!(m["msg"], table_msg(195103), "{m}");
    assert_logged(&s, m["log_id"].as_str().unwrap(), "GET", 195103).await;
}

#[tokio::test]
async fn watch_gives_up_after_its_timeout() {
    let s = fast_sync_server();
    let boss = s.boss().await;
    s.admin(
        Method::PUT,
        "/_exbind/v1/tenants/acme/exchange_accounts/stuck@w.acme.example/scenario",
        Some(&json!({"scenario": "stall", "stage": "cal_done"})),
    )
    .await
    .ok();
    let id = s
        .bind(&boss, ACME_ADMIN, "stuck@w.acme.example", "alice")
        .await["exchange_binding_id"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let out_json = dir.path().join("final.json");
    let t0 = Instant::now();
    let out = with_conn(
        &s,
        &boss,
        &[
            "watch",
            &id,
            "--interval",
            "0.1",
            "--timeout",
            "1.5",
            "--no-progress",
            "--output",
            out_json.to_str().unwrap(),
        ],
    );
    let took = t0.elapsed();
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let states = states_by_id(&read_json(&out_json));
    let st = states[&id]["status"].as_str().unwrap();
    assert!(
        ["doing", "cal_done"].contains(&st),
        "a stalled binding is written as it was: {st}"
    );
}

#[tokio::test]
async fn watch_follows_the_rows_of_a_bulk_report() {
    let s = fast_sync_server();
    let boss = s.boss().await;
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("in.csv");
    std::fs::write(
        &csv_path,
        format!(
            "admin_account,exchange_account,user_id\n{ACME_ADMIN},r1@w.acme.example,alice\n{ACME_ADMIN},r2@w.acme.example,bob\nnobody@acme.example,r3@w.acme.example,carol\n"
        ),
    )
    .unwrap();
    let report = dir.path().join("report.csv");
    let out = with_conn(
        &s,
        &boss,
        &[
            "bulk",
            "bind",
            csv_path.to_str().unwrap(),
            "--user-id-type",
            "user_id",
            "--no-progress",
            "--report",
            report.to_str().unwrap(),
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, Some(1), "one row fails: {out:#?}");
    let out_json = dir.path().join("final.json");
    let out = with_conn(
        &s,
        &boss,
        &[
            "watch",
            "--report",
            report.to_str().unwrap(),
            "--interval",
            "0.1",
            "--timeout",
            "30",
            "--no-progress",
            "--output",
            out_json.to_str().unwrap(),
        ],
    );
    out.success();
    let states = states_by_id(&read_json(&out_json));
    let want: Vec<String> = ["r1", "r2"]
        .iter()
        .map(|r| binding_id(ACME_ADMIN, &format!("{r}@w.acme.example")))
        .collect();
    let mut got: Vec<String> = states.keys().cloned().collect();
    got.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(got, want_sorted, "only the ok rows are followed");
    assert!(states.values().all(|v| v["status"] == "done"), "{states:?}");
}

// ----------------------------------------------------------------------------------------
// The library against exbind
// ----------------------------------------------------------------------------------------

fn lib_client(s: &Server) -> Client {
    Client::builder(&s.base)
        .retry(RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
        })
        .build()
        .unwrap()
}

fn req(admin: &str, exchange: &str, user: &str) -> CreateBinding {
    CreateBinding {
        admin_account: admin.into(),
        exchange_account: exchange.into(),
        user_id: user.into(),
    }
}

#[track_caller]
fn api(r: Result<impl std::fmt::Debug, Error>) -> exbind_client::ApiError {
    match r {
        Err(Error::Api(a)) => *a,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn count(s: &Server, query: &str) -> usize {
    s.journal_entries(query).await.len()
}

#[tokio::test]
async fn library_typed_calls_errors_and_retries_against_exbind() {
    let s = Server::full();
    let boss = s.boss().await;
    let c = lib_client(&s);
    let create_q = format!("route={}&method=POST", pct(CREATE_ROUTE));
    let one_q = format!("route={}", pct(ONE_ROUTE));

    let made = c
        .create_binding(
            &boss,
            &req(ACME_ADMIN, "lib@mail.acme.example", "alice"),
            UserIdType::UserId,
        )
        .await
        .unwrap();
    let id = binding_id(ACME_ADMIN, "lib@mail.acme.example");
    assert_eq!(made.data.exchange_binding_id, id);
    assert_eq!(made.data.status, BindingStatus::Doing);
    assert_eq!(made.data.user_id, "alice");
    assert_eq!(made.attempts, 1);
    assert_logged(&s, made.log_id.as_deref().unwrap(), "POST", 0).await;

    let open_id = s.user_ids("acme", "alice", "cli_acme").await["open_id"].clone();
    let got = c.get_binding(&boss, &id, UserIdType::OpenId).await.unwrap();
    assert_eq!(got.data.user_id, open_id.as_str().unwrap());

    // Typed errors, sent once.
    for (r, status, code) in [
        (
            req("nobody@acme.example", "l1@mail.acme.example", "bob"),
            404,
            195106,
        ),
        (
            req(GLOBEX_ADMIN, "l2@mail.acme.example", "bob"),
            403,
            195104,
        ),
        (
            req("broken@acme.example", "l3@mail.acme.example", "bob"),
            403,
            195105,
        ),
        (req(ACME_ADMIN, "l4@mail.acme.example", "left"), 404, 195100),
        (req(ACME_ADMIN, "lib@mail.acme.example", "bob"), 400, 190002),
    ] {
        let e = api(c.create_binding(&boss, &r, UserIdType::UserId).await);
        assert_eq!(
            (e.status, e.code, e.msg.as_str()),
            (status, code, table_msg(code)),
            "{r:?}"
        );
        assert_logged(&s, e.log_id.as_deref().expect("log_id"), "POST", code).await;
        assert_eq!(
            count(&s, &format!("{create_q}&code={code}")).await,
            1,
            "{code} is not retried"
        );
        if code == 190002 {
            let detail = serde_json::to_value(e.detail.unwrap()).unwrap();
            assert_eq!(
                detail["field_violations"][0]["field"], "exchange_account",
                "{detail}"
            );
        }
    }

    // 190003 twice on GET: retried, then the answer.
    s.add_fault(
        json!({"method": "GET", "route": ONE_ROUTE, "times": 2, "error": {"code": 190003}}),
    )
    .await;
    let got = c.get_binding(&boss, &id, UserIdType::UserId).await.unwrap();
    assert_eq!(got.attempts, 3);
    assert_eq!(count(&s, &format!("{one_q}&code=190003")).await, 2);

    // 99991400 twice on POST: each waited out (reset 1 s), then the idempotent answer.
    s.add_fault(
        json!({"method": "POST", "route": CREATE_ROUTE, "times": 2, "error": {"code": 99991400}}),
    )
    .await;
    let t0 = Instant::now();
    let again = c
        .create_binding(
            &boss,
            &req(ACME_ADMIN, "lib@mail.acme.example", "alice"),
            UserIdType::UserId,
        )
        .await
        .unwrap();
    assert_eq!(again.attempts, 3);
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "two 1 s resets waited out, took {:?}",
        t0.elapsed()
    );
    assert_eq!(again.data.exchange_binding_id, id);

    // 190010 on DELETE: a contention reject changed nothing, so it is retried.
    s.add_fault(
        json!({"method": "DELETE", "route": ONE_ROUTE, "times": 1, "error": {"code": 190010}}),
    )
    .await;
    let del = c.delete_binding(&boss, &id).await.unwrap();
    assert_eq!(del.attempts, 2);
    assert_logged(&s, del.log_id.as_deref().unwrap(), "DELETE", 0).await;

    // A second delete: 195103, sent once.
    let e = api(c.delete_binding(&boss, &id).await);
    assert_eq!((e.status, e.code), (404, 195103));
    assert_eq!(
        count(&s, &format!("{one_q}&method=DELETE&code=195103")).await,
        1
    );
    // No quota answer was ever real: every 99991400 was injected.
    assert_eq!(count(&s, "code=99991400").await, 2);
}

#[tokio::test]
async fn library_never_resends_a_delete_that_timed_out() {
    let s = Server::full();
    let boss = s.boss().await;
    let id = s
        .bind(&boss, ACME_ADMIN, "slow@mail.acme.example", "bob")
        .await["exchange_binding_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Each request reaches the server well within the client's timeout, however loaded the
    // machine, and the answer comes well after it.
    let c = Client::builder(&s.base)
        .timeout(Duration::from_secs(2))
        .retry(RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        })
        .build()
        .unwrap();
    let rule = s
        .add_fault(json!({"method": "DELETE", "route": ONE_ROUTE, "latency_ms": 10_000}))
        .await;
    match c.delete_binding(&boss, &id).await {
        Err(Error::Transport(e)) => assert!(e.is_timeout(), "{e}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let hits = |rules: &Value, rid: &Value| {
        rules
            .as_array()
            .unwrap()
            .iter()
            .find(|r| &r["id"] == rid)
            .map(|r| r["hits"].as_u64().unwrap())
    };
    let rules = s.admin(Method::GET, "/_exbind/v1/faults", None).await;
    let rules = rules.ok().clone();
    let list = if rules.is_array() {
        rules.clone()
    } else {
        rules["items"].clone()
    };
    assert_eq!(
        hits(&list, &rule["id"]),
        Some(1),
        "the delete reached the server once: {list}"
    );

    // A GET under the same latency is resent (safe to repeat).
    let rule = s
        .add_fault(json!({"method": "GET", "route": ONE_ROUTE, "latency_ms": 10_000}))
        .await;
    assert!(c.get_binding(&boss, &id, UserIdType::UserId).await.is_err());
    let rules = s.admin(Method::GET, "/_exbind/v1/faults", None).await;
    let rules = rules.ok().clone();
    let list = if rules.is_array() {
        rules.clone()
    } else {
        rules["items"].clone()
    };
    assert_eq!(hits(&list, &rule["id"]), Some(4), "{list}");
}

#[tokio::test]
async fn library_token_calls_against_exbind() {
    let s = Server::full();
    let c = lib_client(&s);
    let t = c
        .tenant_access_token("cli_acme", "acme-secret")
        .await
        .unwrap();
    assert!(t.token.starts_with("t-"), "{t:?}");
    assert!(t.expire > 0 && t.expire <= 7200, "{t:?}");
    // The same token while it has 30 minutes left.
    let again = c
        .tenant_access_token("cli_acme", "acme-secret")
        .await
        .unwrap();
    assert_eq!(again.token, t.token);
    let a = c.app_access_token("cli_acme", "acme-secret").await.unwrap();
    assert!(!a.token.is_empty() && a.expire > 0, "{a:?}");

    let e = api(c.tenant_access_token("cli_acme", "wrong").await);
    assert_eq!((e.status, e.code), (200, 10014));
    let e = api(c.tenant_access_token("cli_nosuch", "x").await);
    assert_eq!(e.code, 10014);
    let e = api(c.tenant_access_token("cli_store", "store-secret").await);
    assert_eq!(e.code, 10014);
    // A tenant token is refused on the binding routes: typed 99991663.
    let e = api(c
        .get_binding(
            &t.token,
            &binding_id(ACME_ADMIN, "a@b.c"),
            UserIdType::OpenId,
        )
        .await);
    assert_eq!((e.status, e.code), (400, 99991663));
}

#[tokio::test]
async fn control_client_reaches_the_control_plane() {
    let s = Server::full();
    let ctl = ControlClient::new(&s.base, ADMIN_TOKEN).unwrap();
    let r = ctl
        .call(Method::GET, "/_exbind/v1/tenants/acme", None)
        .await
        .unwrap();
    assert_eq!(r.data["tenant_key"], "acme", "{}", r.data);
    let wrong = ControlClient::new(&s.base, "not-the-token").unwrap();
    let e = api(wrong
        .call(Method::GET, "/_exbind/v1/tenants/acme", None)
        .await);
    assert_eq!((e.status, e.code), (401, 99991663));
}
