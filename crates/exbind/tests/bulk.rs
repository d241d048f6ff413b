//! `exbind bulk bind|unbind FILE.csv` against the real server: thousands of rows under the
//! client-side quota without ever tripping the server's, the per-row report, errors per row,
//! resume after `kill -9` without repeating a successful call, and the resume record's scope.
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const TENANT: &str = "bulkco";
const ADMIN: &str = "exadmin@bulkco.example";
const APP: &str = "cli_bulk";
/// An Exchange account no generated file holds.
const MARKER: &str = "marker@mail.bulkco.example";
const REPORT_COLUMNS: [&str; 6] = [
    "row",
    "result",
    "code",
    "msg",
    "log_id",
    "exchange_binding_id",
];

/// The Exchange account of row `i` of a generated file.
fn mailbox(i: usize) -> String {
    format!("mbx{i:05}@mail.bulkco.example")
}

/// A bind CSV: row i binds `mailbox(i)` to user `u{i:05}`.
fn write_bind_csv(path: &Path, n: usize) {
    let mut s = String::from("admin_account,exchange_account,user_id\n");
    for i in 0..n {
        s.push_str(&format!("{ADMIN},{},u{i:05}\n", mailbox(i)));
    }
    std::fs::write(path, s).unwrap();
}

/// `exbind bulk OP FILE` against `s` with `token` and extra args.
fn bulk_cmd(s: &Server, token: &str, op: &str, file: &Path, extra: &[&str]) -> Command {
    let mut args = vec![
        "bulk",
        op,
        file.to_str().unwrap(),
        "--base-url",
        &s.base,
        "--user-access-token",
        token,
        "--no-progress",
    ];
    args.extend(extra);
    cli_command(&args)
}

fn bulk(s: &Server, token: &str, op: &str, file: &Path, extra: &[&str]) -> CliOut {
    cli_run(bulk_cmd(s, token, op, file, extra), Duration::from_secs(90))
}

/// A report row, every column as text.
type Row = HashMap<String, String>;

/// Reads a CSV report, checking its columns.
fn read_csv_report(path: &Path) -> Vec<Row> {
    let mut rdr =
        csv::Reader::from_path(path).unwrap_or_else(|e| panic!("report {}: {e}", path.display()));
    let headers: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(headers, REPORT_COLUMNS, "report columns");
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .cloned()
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect()
}

/// Reads a JSON report into the same shape (null → empty).
fn read_json_report(path: &Path) -> Vec<Row> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v.as_array()
        .unwrap_or_else(|| panic!("a JSON array: {v}"))
        .iter()
        .map(|r| {
            for c in REPORT_COLUMNS {
                assert!(r.get(c).is_some(), "column {c} in {r}");
            }
            r.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::Null => String::new(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect()
        })
        .collect()
}

/// Report rows by their line number.
fn by_line(rows: &[Row]) -> BTreeMap<u64, Row> {
    let mut out = BTreeMap::new();
    for r in rows {
        let line: u64 = r["row"].parse().unwrap_or_else(|_| panic!("row {r:?}"));
        assert!(out.insert(line, r.clone()).is_none(), "line {line} twice");
    }
    out
}

/// A server for bulk runs: the generated tenant, quotas as given, a journal big enough to
/// hold every request of the test.
fn bulk_server(n_users: usize, args: &[&str]) -> Server {
    let seed = many_users_seed(TENANT, ADMIN, APP, "u", n_users);
    let mut all = vec![
        "--journal-size",
        "30000",
        "--app-budget-per-second",
        "100000",
    ];
    all.extend(args);
    Server::builder().seed(&seed).args(&all).start()
}

/// The POSTs to the create route in the journal, oldest first.
async fn creates(s: &Server) -> Vec<Value> {
    let mut v = s
        .journal_entries(&format!("method=POST&route={}", pct(CREATE_ROUTE)))
        .await;
    v.reverse();
    v
}

/// Asserts the server's bindings list and the report agree row by row: every ok row's
/// binding exists with the file's accounts and user, and nothing else is bound.
fn assert_bindings_match(bindings: &[Value], report: &BTreeMap<u64, Row>, n: usize) {
    let by_id: HashMap<&str, &Value> = bindings
        .iter()
        .map(|b| (b["exchange_binding_id"].as_str().unwrap(), b))
        .collect();
    assert_eq!(by_id.len(), bindings.len(), "ids unique");
    assert_eq!(bindings.len(), n, "one binding per row");
    for (line, r) in report {
        let i = (*line - 2) as usize;
        let id = r["exchange_binding_id"].as_str();
        assert_eq!(id, binding_id(ADMIN, &mailbox(i)), "line {line}");
        let b = by_id
            .get(id)
            .unwrap_or_else(|| panic!("line {line}: no binding {id}"));
        assert_eq!(b["exchange_account"], mailbox(i).as_str(), "line {line}");
        assert_eq!(b["admin_account"], ADMIN, "line {line}");
        assert_eq!(b["user_id"], format!("u{i:05}").as_str(), "line {line}");
    }
}

// ----------------------------------------------------------------------------------------
// Thousands of rows under quota
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn thousands_of_rows_under_quota_never_trip_the_server_quota() {
    const N: usize = 2500;
    const QPS: &str = "250";
    const QPM: &str = "15000";
    // The server allows a fifth more than the client sends. The client paces its sends;
    // the server counts arrivals, and on a loaded machine a request's way from one to the
    // other varies: a stall of the server across a second boundary moves the end of one
    // second's paced requests into the next. The headroom absorbs such stalls (up to 200 ms)
    // and still fails a client that does not keep to its quota.
    let s = bulk_server(
        N,
        &["--quota-per-second", "300", "--quota-per-minute", "18000"],
    );
    let token = s.mint(APP, TENANT, "boss").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    write_bind_csv(&file, N);
    let report_path = dir.path().join("report.csv");

    let t0 = Instant::now();
    let out = bulk(
        &s,
        &token,
        "bind",
        &file,
        &[
            "--user-id-type",
            "user_id",
            // Enough in flight that the quota, not the latency, sets the pace.
            "--concurrency",
            "64",
            "--quota-per-second",
            QPS,
            "--quota-per-minute",
            QPM,
            "--report",
            report_path.to_str().unwrap(),
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
            "--json",
        ],
    );
    let took = t0.elapsed();
    out.success();
    let summary = out.json();
    assert_eq!(summary["operation"], "bind", "{summary}");
    assert_eq!(summary["ok"], N, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["invalid"], 0, "{summary}");

    // The server never answered 99991400 (nor anything else but success).
    let posts = creates(&s).await;
    let quota_hits = posts.iter().filter(|e| e["code"] == 99991400).count();
    assert_eq!(
        quota_hits,
        0,
        "the server's quota fired {quota_hits} times in {} creates",
        posts.len()
    );
    let not_ok: Vec<&Value> = posts.iter().filter(|e| e["code"] != 0).collect();
    assert!(
        not_ok.is_empty(),
        "failed creates: {:?}",
        &not_ok[..not_ok.len().min(5)]
    );
    assert_eq!(posts.len(), N, "one create per row");
    assert!(
        s.journal_entries("code=99991400").await.is_empty(),
        "no 99991400 on any route"
    );
    let metrics = s.metrics_text().await;
    assert!(
        !metrics.contains("code=\"99991400\""),
        "metrics count 99991400 answers:\n{metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("exbind_quota_rejections_total") && !l.ends_with(" 0")),
        "metrics count quota rejections:\n{metrics}"
    );
    // And the client kept to its quota: 2500 paced at 250/s take 10 s, by the test's clock
    // and by the server's (from the first answer to the last).
    assert!(took >= Duration::from_millis(9000), "took only {took:?}");
    let answered: Vec<i64> = posts
        .iter()
        .map(|e| rfc3339_ms(e["time"].as_str().unwrap()))
        .collect();
    let span = answered.iter().max().unwrap() - answered.iter().min().unwrap();
    assert!(span >= 9000, "the server saw them all within {span} ms");

    // The report: one ok row per line, with the server's log id of its create.
    let rows = read_csv_report(&report_path);
    let report = by_line(&rows);
    assert_eq!(report.len(), N);
    assert_eq!(
        report.keys().copied().collect::<Vec<_>>(),
        (2..=(N as u64 + 1)).collect::<Vec<_>>(),
        "rows are the file's line numbers"
    );
    let post_log_ids: HashSet<&str> = posts
        .iter()
        .map(|e| e["log_id"].as_str().unwrap())
        .collect();
    let mut seen_log_ids = HashSet::new();
    for (line, r) in &report {
        assert_eq!(r["result"], "ok", "line {line}: {r:?}");
        assert_eq!(r["code"], "0", "line {line}: {r:?}");
        let log_id = r["log_id"].as_str();
        assert!(
            post_log_ids.contains(log_id),
            "line {line}: log id {log_id} is no create"
        );
        assert!(
            seen_log_ids.insert(log_id.to_string()),
            "log id {log_id} twice"
        );
    }
    assert_bindings_match(&s.all_bindings(TENANT).await, &report, N);
}

// ----------------------------------------------------------------------------------------
// Resume after kill -9
// ----------------------------------------------------------------------------------------

/// The last state of every key in a resume record (torn lines ignored, as a reader must).
fn record_states(dir: &Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                if let (Some(k), Some(st)) = (v["key"].as_str(), v["state"].as_str()) {
                    out.insert(k.to_string(), st.to_string());
                }
            }
        }
    }
    out
}

/// Lines of the record files under `dir` that say a row finished ok.
fn ok_lines(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .map(|t| t.lines().filter(|l| l.contains("\"state\":\"ok\"")).count())
        .sum()
}

#[tokio::test]
async fn a_killed_bulk_bind_resumes_without_repeating_a_successful_create() {
    const N: usize = 1200;
    let s = bulk_server(
        N,
        &["--quota-per-second", "200", "--quota-per-minute", "12000"],
    );
    let token = s.mint(APP, TENANT, "boss").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    write_bind_csv(&file, N);
    let state = dir.path().join("state");
    let report_path = dir.path().join("report.json");
    let args = [
        "--user-id-type",
        "user_id",
        "--concurrency",
        "8",
        "--quota-per-second",
        "150",
        "--quota-per-minute",
        "9000",
        "--state-dir",
        state.to_str().unwrap(),
        "--report",
        report_path.to_str().unwrap(),
        "--json",
    ];

    // First run: SIGKILL once about a third of the rows are done.
    let mut child = bulk_cmd(&s, &token, "bind", &file, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    while ok_lines(&state) < N / 3 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the first run ended before it was killed"
        );
        assert!(Instant::now() < deadline, "the first run made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let first_posts = creates(&s).await.len();
    assert!(first_posts < N, "killed half-way ({first_posts} creates)");

    let states = record_states(&state);
    let done_first = states.values().filter(|st| *st == "ok").count();
    let in_flight = states.values().filter(|st| *st == "sent").count();
    assert!((N / 3..N).contains(&done_first), "{done_first} done");
    eprintln!("bind killed: {done_first} rows done, {in_flight} in flight");

    // A marker between the runs: the bindings list is in creation order, so every binding
    // listed after the marker was made after the first run was killed. No clocks compared.
    let marker = s
        .create(&token, ADMIN, MARKER, "boss", Some("user_id"))
        .await;
    let marker_id = marker.ok()["exchange_binding_id"]
        .as_str()
        .unwrap()
        .to_string();
    let marker_log = marker.log_id();

    // Second run: the same command.
    let out = cli_run(
        bulk_cmd(&s, &token, "bind", &file, &args),
        Duration::from_secs(60),
    );
    out.success();
    let summary = out.json();
    assert_eq!(summary["ok"], N, "{summary}");
    assert_eq!(summary["resumed"], done_first, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");

    // Across both runs, no create was repeated. A repeat of a create answers 200 (it is
    // idempotent), so it would push the successful creates in the journal over N. (The
    // journal can hold fewer than N: a create of the killed run that the server committed
    // but never answered is not journaled; only in-flight rows can be such.)
    let mut posts = creates(&s).await;
    posts.retain(|e| e["log_id"] != marker_log.as_str());
    let ok_posts = posts.iter().filter(|e| e["code"] == 0).count();
    assert!(
        ok_posts <= N && ok_posts + in_flight >= N,
        "{ok_posts} successful creates across both runs for {N} rows, {in_flight} in flight \
         (first run made {first_posts})"
    );
    assert_eq!(posts.len(), ok_posts, "no failed creates");
    // The documented check: one GET per row that was in flight when the first run died.
    let gets = s
        .journal_entries(&format!("method=GET&route={}", pct(ONE_ROUTE)))
        .await;
    assert_eq!(
        gets.len(),
        in_flight,
        "one GET per in-flight row ({in_flight} in flight)"
    );
    assert!(s.journal_entries("method=DELETE").await.is_empty());

    let rows = read_json_report(&report_path);
    let report = by_line(&rows);
    assert_eq!(report.len(), N);
    let post_by_log: HashMap<&str, &Value> = posts
        .iter()
        .map(|e| (e["log_id"].as_str().unwrap(), e))
        .collect();
    let get_ok: HashSet<&str> = gets
        .iter()
        .filter(|e| e["code"] == 0)
        .map(|e| e["log_id"].as_str().unwrap())
        .collect();
    let mut bindings = s.all_bindings(TENANT).await;
    let position: HashMap<String, usize> = bindings
        .iter()
        .enumerate()
        .map(|(i, b)| (b["exchange_binding_id"].as_str().unwrap().to_string(), i))
        .collect();
    let marker_at = position[&marker_id];
    bindings.remove(marker_at);
    let (mut earlier, mut checked) = (0, 0);
    for (line, r) in &report {
        assert_eq!(r["result"], "ok", "line {line}: {r:?}");
        let log_id = r["log_id"].as_str();
        let at = position.get(r["exchange_binding_id"].as_str());
        let made_before_marker =
            *at.unwrap_or_else(|| panic!("line {line}: no binding; {r:?}")) < marker_at;
        let from_earlier_run = r["msg"].contains("earlier run");
        if from_earlier_run {
            earlier += 1;
            assert!(
                made_before_marker,
                "line {line}: done in the first run; {r:?}"
            );
        }
        if post_by_log.contains_key(log_id) {
            // A create of the second run must have made its binding: a binding that already
            // existed before that run means the create repeated one that had succeeded.
            assert!(
                from_earlier_run || !made_before_marker,
                "line {line}: the second run's create {log_id} answered a binding made in the \
                 first run: a successful create was repeated; {r:?}"
            );
        } else {
            assert!(
                get_ok.contains(log_id),
                "line {line}: log id {log_id:?} is no successful call"
            );
            checked += 1;
        }
    }
    assert_eq!(
        earlier, done_first,
        "rows reported as done in the earlier run"
    );
    assert!(
        checked <= in_flight,
        "{checked} rows settled by the GET check"
    );
    assert_bindings_match(&bindings, &report, N);
}

#[tokio::test]
async fn a_killed_bulk_unbind_resumes_without_repeating_a_successful_delete() {
    const N: usize = 1200;
    let s = bulk_server(
        N,
        &["--quota-per-second", "2000", "--quota-per-minute", "120000"],
    );
    let token = s.mint(APP, TENANT, "boss").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    write_bind_csv(&file, N);
    // Bound first, quickly.
    let out = bulk(
        &s,
        &token,
        "bind",
        &file,
        &[
            "--user-id-type",
            "user_id",
            "--concurrency",
            "32",
            "--quota-per-second",
            "2000",
            "--quota-per-minute",
            "120000",
            "--state-dir",
            dir.path().join("bind-state").to_str().unwrap(),
        ],
    );
    out.success();
    assert_eq!(s.all_bindings(TENANT).await.len(), N);

    // Then unbound from the same file (by its account columns): killed a third of the way,
    // resumed, and no delete is sent twice. A repeated delete answers 195103: a failed row,
    // and a failed DELETE in the journal.
    let state = dir.path().join("unbind-state");
    let report_path = dir.path().join("unbind-report.csv");
    let args = [
        "--concurrency",
        "8",
        "--quota-per-second",
        "150",
        "--quota-per-minute",
        "9000",
        "--state-dir",
        state.to_str().unwrap(),
        "--report",
        report_path.to_str().unwrap(),
        "--json",
    ];
    let mut child = bulk_cmd(&s, &token, "unbind", &file, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    while ok_lines(&state) < N / 3 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the first unbind run ended before it was killed"
        );
        assert!(
            Instant::now() < deadline,
            "the first unbind run made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let states = record_states(&state);
    let done_first = states.values().filter(|st| *st == "ok").count();
    let in_flight = states.values().filter(|st| *st == "sent").count();
    eprintln!("unbind killed: {done_first} rows done, {in_flight} in flight");
    let out = cli_run(
        bulk_cmd(&s, &token, "unbind", &file, &args),
        Duration::from_secs(60),
    );
    if out.code != Some(0) {
        let failed: Vec<Row> = read_csv_report(&report_path)
            .into_iter()
            .filter(|r| r["result"] != "ok")
            .collect();
        let deletes = s.journal_entries("method=DELETE").await;
        let gets = s
            .journal_entries(&format!("method=GET&route={}", pct(ONE_ROUTE)))
            .await;
        let trail: Vec<String> = deletes
            .iter()
            .chain(gets.iter())
            .filter(|e| {
                failed.iter().any(|f| {
                    e["path"]
                        .as_str()
                        .unwrap()
                        .contains(&f["exchange_binding_id"])
                })
            })
            .map(|e| {
                format!(
                    "{} {} {} {}",
                    e["time"], e["method"], e["code"], e["log_id"]
                )
            })
            .collect();
        panic!("the resumed unbind failed rows: {failed:#?}\nserver trail: {trail:#?}\n{out:#?}");
    }
    let summary = out.json();
    assert_eq!(summary["ok"], N, "{summary}");
    assert_eq!(summary["resumed"], done_first, "{summary}");
    let deletes = s.journal_entries("method=DELETE").await;
    let ok_deletes = deletes.iter().filter(|e| e["code"] == 0).count();
    assert!(
        ok_deletes <= N && ok_deletes + in_flight >= N,
        "{ok_deletes} successful deletes across both runs for {N} rows, {in_flight} in flight"
    );
    assert_eq!(deletes.len(), ok_deletes, "no failed (repeated) deletes");
    let gets = s
        .journal_entries(&format!("method=GET&route={}", pct(ONE_ROUTE)))
        .await;
    assert_eq!(
        gets.len(),
        in_flight,
        "one GET per in-flight row ({in_flight} in flight)"
    );
    let report = by_line(&read_csv_report(&report_path));
    assert_eq!(report.len(), N);
    assert!(report.values().all(|r| r["result"] == "ok"));
    assert!(s.all_bindings(TENANT).await.is_empty());
}

// ----------------------------------------------------------------------------------------
// Errors per row
// ----------------------------------------------------------------------------------------

const ERR_SEED: &str = r#"
[[tenants]]
tenant_key = "errco"

[[tenants.users]]
user_id = "boss"
super_admin = true

[[tenants.users]]
user_id = "alice"

[[tenants.users]]
user_id = "bob"

[[tenants.users]]
user_id = "carol"

[[tenants.users]]
user_id = "dave"

[[tenants.users]]
user_id = "erin"

[[tenants.users]]
user_id = "frank"

[[tenants.users]]
user_id = "gone"
status = "dismissed"

[[tenants.exchange_admins]]
account = "exadmin@errco.example"

[[tenants.exchange_admins]]
account = "broken@errco.example"
state = "failed"

[[tenants]]
tenant_key = "otherco"

[[tenants.exchange_admins]]
account = "exadmin@otherco.example"

[[apps]]
app_id = "cli_err"
app_secret = "err-secret"
tenants = ["errco"]
scopes = ["calendar:calendar", "calendar:calendar:readonly", "calendar:exchange.bindings:create",
          "calendar:exchange.bindings:read", "calendar:exchange.bindings:delete",
          "contact:user.email:readonly", "contact:user.employee_id:readonly"]
"#;

const EADMIN: &str = "exadmin@errco.example";

/// What a report row must say.
enum Want {
    Ok,
    Error(i64),
    /// An invalid row whose msg names this column.
    Invalid(&'static str),
}

async fn check_rows(s: &Server, report: &BTreeMap<u64, Row>, want: &[(u64, Want, &str)]) {
    assert_eq!(
        report.keys().copied().collect::<Vec<_>>(),
        want.iter().map(|w| w.0).collect::<Vec<_>>(),
        "reported lines: {report:#?}"
    );
    for (line, w, exchange) in want {
        let r = &report[line];
        match w {
            Want::Ok => {
                assert_eq!(r["result"], "ok", "line {line}: {r:?}");
                assert_eq!(r["code"], "0", "line {line}: {r:?}");
                let log_id = &r["log_id"];
                let e = s
                    .admin(Method::GET, &format!("/_exbind/v1/requests/{log_id}"), None)
                    .await;
                assert_eq!(e.ok()["code"], 0, "line {line}");
            }
            Want::Error(code) => {
                assert_eq!(r["result"], "error", "line {line}: {r:?}");
                assert_eq!(r["code"], code.to_string(), "line {line}: {r:?}");
                assert_eq!(r["msg"], table_msg(*code), "line {line}: {r:?}");
                let log_id = &r["log_id"];
                assert!(!log_id.is_empty(), "line {line}: a log id");
                let e = s
                    .admin(Method::GET, &format!("/_exbind/v1/requests/{log_id}"), None)
                    .await;
                assert_eq!(e.ok()["code"], *code, "line {line}: the journal's code");
            }
            Want::Invalid(column) => {
                assert_eq!(r["result"], "invalid", "line {line}: {r:?}");
                assert!(r["code"].is_empty(), "line {line}: no code: {r:?}");
                assert!(r["log_id"].is_empty(), "line {line}: no log id: {r:?}");
                assert!(
                    r["msg"].contains(column),
                    "line {line}: msg names {column}: {r:?}"
                );
            }
        }
        if !exchange.is_empty() && !matches!(w, Want::Invalid(_)) {
            let admin_of = |e: &str| -> &str {
                match e {
                    "x3@mail.example" => "nobody@errco.example",
                    "x4@mail.example" => "exadmin@otherco.example",
                    "x5@mail.example" => "broken@errco.example",
                    _ => EADMIN,
                }
            };
            assert_eq!(
                r["exchange_binding_id"],
                binding_id(admin_of(exchange), exchange),
                "line {line}"
            );
        }
    }
}

#[tokio::test]
async fn rows_that_fail_are_reported_with_their_documented_error() {
    let s = Server::builder().seed(ERR_SEED).start();
    let token = s.mint("cli_err", "errco", "boss").await;
    // Bound beforehand: taken@ to bob; frank already has an Exchange account.
    s.create(&token, EADMIN, "taken@mail.example", "bob", Some("user_id"))
        .await
        .ok();
    s.create(
        &token,
        EADMIN,
        "franks@mail.example",
        "frank",
        Some("user_id"),
    )
    .await
    .ok();
    // Every create's first two answers are 190003: retried, without changing any outcome.
    s.add_fault(
        json!({"method": "POST", "route": CREATE_ROUTE, "times": 2, "error": {"code": 190003}}),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.csv");
    let text = [
        "admin_account,exchange_account,user_id",            // 1
        "exadmin@errco.example,x2@mail.example,alice",       // 2 ok
        "nobody@errco.example,x3@mail.example,carol",        // 3 195106
        "exadmin@otherco.example,x4@mail.example,carol",     // 4 195104
        "broken@errco.example,x5@mail.example,carol",        // 5 195105
        "exadmin@errco.example,x6@mail.example,nosuchuser",  // 6 195100
        "exadmin@errco.example,x7@mail.example,gone",        // 7 195100
        "exadmin@errco.example,taken@mail.example,carol",    // 8 190002
        "exadmin@errco.example,x9@mail.example,frank",       // 9 190002
        "exadmin@errco.example,x10@mail.example,",           // 10 invalid
        "exadmin@errco.example,not-an-address,dave",         // 11 invalid
        "exadmin errco@errco.example,x12@mail.example,dave", // 12 invalid
        "exadmin@errco.example",                             // 13 invalid
        "exadmin@errco.example,x14@mail.example,dave",       // 14 ok
        "exadmin@errco.example,x15@mail.example,erin",       // 15 ok
    ]
    .join("\n");
    std::fs::write(&file, text + "\n").unwrap();
    let report_path = dir.path().join("report.csv");
    let out = bulk(
        &s,
        &token,
        "bind",
        &file,
        &[
            "--user-id-type",
            "user_id",
            "--concurrency",
            "1",
            "--report",
            report_path.to_str().unwrap(),
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.code, Some(1), "rows failed: {out:#?}");
    let summary = out.json();
    assert_eq!(
        (&summary["ok"], &summary["failed"], &summary["invalid"]),
        (&json!(3), &json!(7), &json!(4)),
        "{summary}"
    );
    let report = by_line(&read_csv_report(&report_path));
    check_rows(
        &s,
        &report,
        &[
            (2, Want::Ok, "x2@mail.example"),
            (3, Want::Error(195106), "x3@mail.example"),
            (4, Want::Error(195104), "x4@mail.example"),
            (5, Want::Error(195105), "x5@mail.example"),
            (6, Want::Error(195100), "x6@mail.example"),
            (7, Want::Error(195100), "x7@mail.example"),
            (8, Want::Error(190002), "taken@mail.example"),
            (9, Want::Error(190002), "x9@mail.example"),
            (10, Want::Invalid("user_id"), ""),
            (11, Want::Invalid("exchange_account"), ""),
            (12, Want::Invalid("admin_account"), ""),
            (13, Want::Invalid("exchange_account"), ""),
            (14, Want::Ok, "x14@mail.example"),
            (15, Want::Ok, "x15@mail.example"),
        ],
    )
    .await;

    // Each bad row is named on stderr, with its line, not only in the report.
    for want in [
        "line 3: code 195106: ",
        "line 8: code 190002: ",
        "line 10: missing user_id",
        "line 11: exchange_account \"not-an-address\": not an email address",
        "line 12: admin_account \"exadmin errco@errco.example\": not an email address",
        "line 13: missing exchange_account",
    ] {
        assert!(
            out.stderr.contains(want),
            "stderr names {want:?}:\n{}",
            out.stderr
        );
    }
    let named = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("line "))
        .count();
    assert_eq!(
        named,
        7 + 4,
        "one line per failed or invalid row:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("line 2:") && !out.stderr.contains("line 14:"));

    // The injected 190003s were retried: 2 of them, and then every row had its own answer.
    let posts = creates(&s).await;
    let internal = posts.iter().filter(|e| e["code"] == 190003).count();
    assert_eq!(internal, 2);
    // 2 set-up creates + 2 injected failures + one final answer per valid row (10); the
    // non-retryable errors were sent once.
    assert_eq!(posts.len(), 2 + 2 + 10, "creates: {posts:#?}");
    let bound: HashSet<String> = s
        .all_bindings("errco")
        .await
        .iter()
        .map(|b| b["exchange_account"].as_str().unwrap().to_string())
        .collect();
    let want: HashSet<String> = [
        "taken@mail.example",
        "franks@mail.example",
        "x2@mail.example",
        "x14@mail.example",
        "x15@mail.example",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(bound, want);
}

#[tokio::test]
async fn line_numbers_are_the_file_s_own_also_after_blank_lines() {
    let s = Server::builder().seed(ERR_SEED).start();
    let token = s.mint("cli_err", "errco", "boss").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gaps.csv");
    let text = [
        "admin_account,exchange_account,user_id",      // 1
        "exadmin@errco.example,g2@mail.example,alice", // 2 ok
        "",                                            // 3 blank
        "exadmin@errco.example,g4@mail.example,",      // 4 invalid: no user_id
        "exadmin@errco.example,g5@mail.example,bob",   // 5 ok
        "",                                            // 6 blank
        "",                                            // 7 blank
        "exadmin@errco.example,no-at-sign,carol",      // 8 invalid address
        "exadmin@errco.example,g9@mail.example,dave",  // 9 ok
    ]
    .join("\n");
    std::fs::write(&file, text + "\n").unwrap();
    let report_path = dir.path().join("report.csv");
    let out = bulk(
        &s,
        &token,
        "bind",
        &file,
        &[
            "--user-id-type",
            "user_id",
            "--report",
            report_path.to_str().unwrap(),
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, Some(1), "two rows are invalid: {out:#?}");
    let report = by_line(&read_csv_report(&report_path));
    check_rows(
        &s,
        &report,
        &[
            (2, Want::Ok, "g2@mail.example"),
            (4, Want::Invalid("user_id"), ""),
            (5, Want::Ok, "g5@mail.example"),
            (8, Want::Invalid("exchange_account"), ""),
            (9, Want::Ok, "g9@mail.example"),
        ],
    )
    .await;
}

#[tokio::test]
async fn concurrency_bounds_the_requests_in_flight() {
    let s = Server::builder().seed(ERR_SEED).start();
    let token = s.mint("cli_err", "errco", "boss").await;
    // Every create takes 300 ms at the server.
    s.add_fault(json!({"method": "POST", "route": CREATE_ROUTE, "latency_ms": 300}))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slow.csv");
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let mut text = String::from("admin_account,exchange_account,user_id\n");
    for u in users {
        text.push_str(&format!("{EADMIN},{u}.c@mail.example,{u}\n"));
    }
    std::fs::write(&file, text).unwrap();
    let out = bulk(
        &s,
        &token,
        "bind",
        &file,
        &[
            "--user-id-type",
            "user_id",
            "--concurrency",
            "2",
            "--quota-per-second",
            "1000",
            "--quota-per-minute",
            "60000",
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ],
    );
    out.success();
    // Intervals [answer - latency, answer], trimmed by 20 ms at each end against rounding.
    let spans: Vec<(i64, i64)> = creates(&s)
        .await
        .iter()
        .map(|e| {
            let end = rfc3339_ms(e["time"].as_str().unwrap());
            let start = end - e["latency_ms"].as_f64().unwrap() as i64;
            (start + 20, end - 20)
        })
        .collect();
    assert_eq!(spans.len(), users.len());
    let most = spans
        .iter()
        .map(|(t, _)| spans.iter().filter(|(a, b)| a <= t && t <= b).count())
        .max()
        .unwrap();
    assert_eq!(
        most, 2,
        "at most --concurrency 2 in flight, and 2 used: {spans:?}"
    );
}

#[tokio::test]
async fn a_file_without_the_needed_columns_is_refused_before_any_call() {
    let s = Server::builder().seed(ERR_SEED).start();
    let token = s.mint("cli_err", "errco", "boss").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("cols.csv");
    std::fs::write(
        &file,
        "admin_account,exchange_account\nexadmin@errco.example,c1@mail.example\n",
    )
    .unwrap();
    let out = bulk(
        &s,
        &token,
        "bind",
        &file,
        &["--state-dir", state.to_str().unwrap()],
    );
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(out.stderr.contains("user_id"), "names the column: {out:#?}");
    let file = dir.path().join("cols2.csv");
    std::fs::write(&file, "user_id\nalice\n").unwrap();
    let out = bulk(
        &s,
        &token,
        "unbind",
        &file,
        &["--state-dir", state.to_str().unwrap()],
    );
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(
        out.stderr.contains("exchange_binding_id"),
        "names the column: {out:#?}"
    );
    assert!(s.journal_entries("").await.is_empty(), "no call was made");
}

#[tokio::test]
async fn injected_quota_answers_are_waited_out_and_the_row_succeeds() {
    let s = Server::builder().seed(ERR_SEED).start();
    let token = s.mint("cli_err", "errco", "boss").await;
    s.add_fault(
        json!({"method": "POST", "route": CREATE_ROUTE, "times": 2, "error": {"code": 99991400}}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.csv");
    std::fs::write(
        &file,
        "admin_account,exchange_account,user_id\nexadmin@errco.example,q1@mail.example,alice\n",
    )
    .unwrap();
    let report_path = dir.path().join("report.json");
    let out = bulk(
        &s,
        &token,
        "bind",
        &file,
        &[
            "--user-id-type",
            "user_id",
            "--report",
            report_path.to_str().unwrap(),
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ],
    );
    out.success();
    let report = by_line(&read_json_report(&report_path));
    assert_eq!(report[&2]["result"], "ok", "{report:?}");
    let posts = creates(&s).await;
    let codes: Vec<i64> = posts.iter().map(|e| e["code"].as_i64().unwrap()).collect();
    assert_eq!(codes, [99991400, 99991400, 0]);
    // Each retry came only after the reset the answer named (1 s).
    let at: Vec<i64> = posts
        .iter()
        .map(|e| rfc3339_ms(e["time"].as_str().unwrap()))
        .collect();
    for w in at.windows(2) {
        assert!(
            w[1] - w[0] >= 990,
            "retried after {} ms: {at:?}",
            w[1] - w[0]
        );
    }
    assert_eq!(report[&2]["log_id"], posts[2]["log_id"].as_str().unwrap());
}

// ----------------------------------------------------------------------------------------
// bulk unbind
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn bulk_unbind_by_id_or_by_accounts() {
    let s = Server::builder().seed(ERR_SEED).start();
    let token = s.mint("cli_err", "errco", "boss").await;
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let mut ids = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let r = s
            .create(
                &token,
                EADMIN,
                &format!("u{i}@mail.example"),
                u,
                Some("user_id"),
            )
            .await;
        ids.push(r.ok()["exchange_binding_id"].as_str().unwrap().to_string());
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let missing = binding_id(EADMIN, "nobody@mail.example");

    // By id: three bound, one unknown (195103), one that is no id at all.
    let by_id = dir.path().join("by_id.csv");
    std::fs::write(
        &by_id,
        format!(
            "exchange_binding_id\n{}\n{}\n{}\n{missing}\n%%%not-base64%%%\n",
            ids[0], ids[1], ids[2]
        ),
    )
    .unwrap();
    let rep1 = dir.path().join("by_id.report.csv");
    let out = bulk(
        &s,
        &token,
        "unbind",
        &by_id,
        &[
            "--report",
            rep1.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.code, Some(1), "{out:#?}");
    let summary = out.json();
    assert_eq!(summary["operation"], "unbind", "{summary}");
    assert_eq!(
        (&summary["ok"], &summary["failed"], &summary["invalid"]),
        (&json!(3), &json!(1), &json!(1)),
        "{summary}"
    );
    let report = by_line(&read_csv_report(&rep1));
    for line in 2..=4u64 {
        let r = &report[&line];
        assert_eq!(r["result"], "ok", "{r:?}");
        assert_eq!(r["exchange_binding_id"], ids[line as usize - 2]);
    }
    assert_eq!(report[&5]["result"], "error");
    assert_eq!(report[&5]["code"], "195103");
    assert_eq!(report[&5]["msg"], table_msg(195103));
    assert_eq!(report[&6]["result"], "invalid");
    assert!(
        report[&6]["msg"].contains("exchange_binding_id"),
        "{:?}",
        report[&6]
    );

    // By accounts: the other three, and a malformed address.
    let by_acc = dir.path().join("by_accounts.csv");
    std::fs::write(
        &by_acc,
        format!(
            "admin_account,exchange_account\n{EADMIN},u3@mail.example\n{EADMIN},U4@MAIL.EXAMPLE\n{EADMIN},u5@mail.example\n{EADMIN},broken address\n"
        ),
    )
    .unwrap();
    let rep2 = dir.path().join("by_accounts.report.json");
    let out = bulk(
        &s,
        &token,
        "unbind",
        &by_acc,
        &[
            "--report",
            rep2.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, Some(1), "{out:#?}");
    let report = by_line(&read_json_report(&rep2));
    for line in 2..=4u64 {
        assert_eq!(report[&line]["result"], "ok", "{:?}", report[&line]);
    }
    assert_eq!(report[&5]["result"], "invalid");
    assert!(
        s.all_bindings("errco").await.is_empty(),
        "everything unbound"
    );
    let deletes = s.journal_entries("method=DELETE").await;
    assert_eq!(deletes.len(), 3 + 1 + 3, "one DELETE per valid row");

    // Again, same record: the done rows are not sent again; the failed one is.
    let out = bulk(
        &s,
        &token,
        "unbind",
        &by_id,
        &[
            "--report",
            rep1.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert_eq!(out.json()["resumed"], 3);
    let deletes = s.journal_entries("method=DELETE").await;
    assert_eq!(deletes.len(), 3 + 1 + 3 + 1, "only the failed row again");
}

// ----------------------------------------------------------------------------------------
// The resume record's scope
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn the_resume_record_belongs_to_one_operation_and_one_base_url() {
    const N: usize = 12;
    let a = bulk_server(N, &[]);
    let b = bulk_server(N, &[]);
    let ta = a.mint(APP, TENANT, "boss").await;
    let tb = b.mint(APP, TENANT, "boss").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("people.csv");

    // One file for both servers, so users are named by user_id (open_ids differ per server).
    write_bind_csv(&file, N);
    let args = [
        "--user-id-type",
        "user_id",
        "--state-dir",
        state.to_str().unwrap(),
        "--json",
    ];
    let run = |s: &Server, t: &str, op: &str, extra: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(extra);
        let out = bulk(s, t, op, &file, &all);
        out.success();
        out.json()
    };

    let sum = run(&a, &ta, "bind", &[]);
    assert_eq!(
        (&sum["ok"], &sum["resumed"]),
        (&json!(N), &json!(0)),
        "{sum}"
    );
    assert_eq!(creates(&a).await.len(), N);

    // Another base URL does not see A's record.
    let sum = run(&b, &tb, "bind", &[]);
    assert_eq!(
        (&sum["ok"], &sum["resumed"]),
        (&json!(N), &json!(0)),
        "{sum}"
    );
    assert_eq!(creates(&b).await.len(), N);
    assert_eq!(b.all_bindings(TENANT).await.len(), N);

    // A again: everything was done, nothing is sent.
    let sum = run(&a, &ta, "bind", &[]);
    assert_eq!(
        (&sum["ok"], &sum["resumed"]),
        (&json!(N), &json!(N)),
        "{sum}"
    );
    assert_eq!(creates(&a).await.len(), N, "no create repeated");

    // --fresh starts over.
    let sum = run(&a, &ta, "bind", &["--fresh"]);
    assert_eq!(
        (&sum["ok"], &sum["resumed"]),
        (&json!(N), &json!(0)),
        "{sum}"
    );
    assert_eq!(creates(&a).await.len(), 2 * N);

    // The bind record says nothing about an unbind of the same file.
    let sum = run(&a, &ta, "unbind", &[]);
    assert_eq!(
        (&sum["ok"], &sum["resumed"]),
        (&json!(N), &json!(0)),
        "{sum}"
    );
    assert_eq!(a.journal_entries("method=DELETE").await.len(), N);
    assert!(a.all_bindings(TENANT).await.is_empty());
    assert_eq!(b.all_bindings(TENANT).await.len(), N, "B untouched");
}

#[tokio::test]
async fn the_default_user_id_type_is_open_id_and_the_default_report_sits_beside_the_file() {
    let s = Server::builder().seed(ERR_SEED).start();
    let token = s.mint("cli_err", "errco", "boss").await;
    let alice = s.user_ids("errco", "alice", "cli_err").await;
    let bob = s.user_ids("errco", "bob", "cli_err").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("open.csv");
    std::fs::write(
        &file,
        format!(
            "admin_account,exchange_account,user_id\n{EADMIN},oa@mail.example,{}\n{EADMIN},ob@mail.example,{}\n{EADMIN},oc@mail.example,carol\n",
            alice["open_id"].as_str().unwrap(),
            bob["open_id"].as_str().unwrap()
        ),
    )
    .unwrap();
    let out = bulk(&s, &token, "bind", &file, &[]);
    assert_eq!(out.code, Some(1), "carol is no open_id: {out:#?}");
    let report_path: PathBuf = dir.path().join("open.csv.bind-report.csv");
    let report = by_line(&read_csv_report(&report_path));
    assert_eq!(report[&2]["result"], "ok");
    assert_eq!(report[&3]["result"], "ok");
    assert_eq!(report[&4]["code"], "195100", "{:?}", report[&4]);
    let mut users: Vec<String> = s
        .all_bindings("errco")
        .await
        .iter()
        .map(|b| b["user_id"].as_str().unwrap().to_string())
        .collect();
    users.sort();
    assert_eq!(users, ["alice", "bob"]);
}
