//! Test harness: starts the real `exbind` binary on 127.0.0.1:0 with its own data dir and
//! drives it over real HTTP. Set `TEST_LOG=1` to echo the server's stderr.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod fixtures;
#[allow(unused_imports)]
pub use cluster::skip_in_cluster;

use reqwest::{header::HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// How long a test waits for something that should happen soon: far beyond any latency of
/// the server, so a loaded machine never fails a test, and only a lost event runs it out.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A seed with one tenant, its super admin, a plain user, a dismissed user, an Exchange
/// admin account and an app holding every scope.
pub const BASIC_SEED: &str = r#"
[[tenants]]
tenant_key = "acme"
name = "Acme Corp"

[[tenants.users]]
user_id = "boss"
name = "Boss"
email = "boss@acme.example"
super_admin = true

[[tenants.users]]
user_id = "alice"
email = "alice@acme.example"

[[tenants.users]]
user_id = "bob"

[[tenants.users]]
user_id = "gone"
status = "dismissed"
super_admin = true

[[tenants.exchange_admins]]
account = "exadmin@acme.example"

[[apps]]
app_id = "cli_acme"
app_secret = "acme-secret"
tenants = ["acme"]
scopes = ["calendar:calendar", "calendar:calendar:readonly", "calendar:exchange.bindings:create",
          "calendar:exchange.bindings:read", "calendar:exchange.bindings:delete",
          "contact:user.email:readonly", "contact:user.employee_id:readonly"]
"#;

pub fn exbind_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_exbind"))
}

pub struct ServerBuilder {
    listen: String,
    seed: Option<String>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    data_dir: Option<PathBuf>,
    admin_flag: bool,
    /// One process even when `EXBIND_TEST_STORE=cluster` (a cluster's own members).
    single: bool,
    /// Where the process's output goes, when a cluster's front collects it.
    sinks: Option<Sinks>,
}

type Sinks = (Arc<Mutex<Vec<String>>>, Arc<Mutex<String>>);

impl ServerBuilder {
    /// The address to listen on (default `127.0.0.1:0`).
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.to_string();
        self
    }
    pub fn seed(mut self, seed: &str) -> Self {
        self.seed = Some(seed.to_string());
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }
    pub fn args(mut self, a: &[&str]) -> Self {
        self.args.extend(a.iter().map(|s| s.to_string()));
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.to_string(), v.to_string()));
        self
    }
    /// Reuse a data dir (for restart tests); by default each server gets a fresh temp dir.
    pub fn data_dir(mut self, p: &Path) -> Self {
        self.data_dir = Some(p.to_path_buf());
        self
    }

    /// Start without `--admin-token`, so the server generates (and prints) one; the harness
    /// then uses the printed token.
    pub fn no_admin_token(mut self) -> Self {
        self.admin_flag = false;
        self
    }

    /// One process even in cluster mode: for tests of one server's own process.
    pub fn single(mut self) -> Self {
        self.single = true;
        self
    }

    /// One server, or with `EXBIND_TEST_STORE=cluster` three behind one front.
    pub fn start(self) -> Server {
        if !self.single && cluster::enabled() {
            return cluster::start_front(self);
        }
        self.start_one()
    }

    fn start_one(self) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("data"));
        let seed_path = match &self.seed {
            Some(s) => {
                let p = tmp.path().join("seed.toml");
                std::fs::write(&p, s).unwrap();
                Some(p)
            }
            None => None,
        };
        let (stdout, stderr) = self.sinks.unwrap_or_default();
        let mut server = Server {
            listen: self.listen,
            base: String::new(),
            admin_token: if self.admin_flag {
                ADMIN_TOKEN.to_string()
            } else {
                String::new()
            },
            admin_flag: self.admin_flag,
            data_dir,
            seed_path,
            args: self.args,
            envs: self.envs,
            child: None,
            front: None,
            stdout,
            stderr,
            _tmp: tmp,
            http: test_client(),
        };
        server.spawn();
        server
    }
}

/// Kept-alive connections are not reused after half a second: a test may run the server's
/// idle timeout down to a second, and a connection it is closing must not be picked for the
/// next request.
fn test_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

pub struct Server {
    listen: String,
    pub base: String,
    pub admin_token: String,
    pub data_dir: PathBuf,
    admin_flag: bool,
    seed_path: Option<PathBuf>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    child: Option<Child>,
    /// In cluster mode: the servers behind `base`; `child` is then `None`.
    front: Option<cluster::Front>,
    /// Lines the server printed on stdout (the banner).
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// Everything the server wrote on stderr (the structured log).
    pub stderr: Arc<Mutex<String>>,
    _tmp: tempfile::TempDir,
    pub http: reqwest::Client,
}

/// The outcome of one HTTP call: status, headers and the parsed JSON body.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body exactly as received.
    pub text: String,
}

impl Resp {
    pub fn code(&self) -> i64 {
        self.body["code"].as_i64().expect("code")
    }
    pub fn msg(&self) -> &str {
        self.body["msg"].as_str().expect("msg")
    }
    pub fn log_id(&self) -> String {
        self.headers["x-tt-logid"].to_str().unwrap().to_string()
    }
    /// Asserts the HTTP status and code, and that an error carries its log id.
    #[track_caller]
    pub fn assert(&self, status: u16, code: i64) -> &Self {
        assert_eq!(
            (self.status.as_u16(), self.body["code"].as_i64()),
            (status, Some(code)),
            "unexpected answer: {}",
            self.body
        );
        if code != 0 && self.body.get("error").is_some() {
            assert_eq!(
                self.body["error"]["log_id"].as_str(),
                Some(self.log_id().as_str())
            );
        }
        self
    }
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            listen: "127.0.0.1:0".to_string(),
            seed: None,
            args: Vec::new(),
            envs: Vec::new(),
            data_dir: None,
            admin_flag: true,
            single: false,
            sinks: None,
        }
    }

    /// A server with `BASIC_SEED`.
    pub fn basic() -> Server {
        Server::builder().seed(BASIC_SEED).start()
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(exbind_bin());
        cmd.arg("serve").arg("--listen").arg(&self.listen);
        // A shared store replaces the data dir.
        if !self.args.iter().any(|a| a == "--database-url") {
            cmd.arg("--data-dir").arg(&self.data_dir);
        }
        if self.admin_flag {
            cmd.arg("--admin-token").arg(&self.admin_token);
        }
        if let Some(p) = &self.seed_path {
            cmd.arg("--seed").arg(p);
        }
        cmd.args(&self.args);
        for k in ["RUST_LOG", "EXBIND_ADMIN_TOKEN"] {
            cmd.env_remove(k);
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd
    }

    fn spawn(&mut self) {
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn exbind");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let out = child.stdout.take().unwrap();
        let lines = self.stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let err = child.stderr.take().unwrap();
        let log = self.stderr.clone();
        let echo = std::env::var("TEST_LOG").is_ok();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[exbind] {line}");
                }
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(base) => {
                self.base = base;
                if !self.admin_flag {
                    // The banner prints the generated token, in the same write as the
                    // listening line; give it a moment to arrive (not `PATIENCE`: some
                    // tests start without the flag and expect no such line).
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while Instant::now() < deadline {
                        let found = self.stdout.lock().unwrap().iter().find_map(|l| {
                            l.strip_prefix("admin token: ")
                                .map(|t| t.trim().to_string())
                        });
                        if let Some(t) = found {
                            self.admin_token = t;
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            Err(_) => {
                let _ = child.kill();
                std::thread::sleep(Duration::from_millis(100));
                // Not under the lock: a cluster's other servers share this log.
                let log = self.stderr_text();
                panic!("exbind did not print its listening line; stderr:\n{log}");
            }
        }
        self.child = Some(child);
    }

    /// SIGKILL the server (no shutdown, no flush) and wait for it to die.
    pub fn kill9(&mut self) {
        if let Some(f) = &mut self.front {
            f.members.iter_mut().for_each(Server::kill9);
        }
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        assert!(self.front.is_none(), "a cluster has no one process id");
        self.child.as_ref().expect("running").id()
    }

    /// The server's resident memory in KiB (`VmRSS` in /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// SIGTERM the server and return its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        if let Some(f) = &mut self.front {
            return f.each(Server::terminate);
        }
        let mut c = self.child.take().expect("running");
        unsafe_sigterm(c.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send a signal (`TERM`, `INT`, ...) and return the exit status.
    pub fn signal(&mut self, sig: &str) -> std::process::ExitStatus {
        if let Some(f) = &mut self.front {
            return f.each(|m| m.signal(sig));
        }
        let mut c = self.child.take().expect("running");
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(c.id().to_string())
            .status()
            .expect("kill");
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIG{sig}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start the server again on the same data dir (a new port; in cluster mode each
    /// server keeps its port, behind the same front).
    pub fn restart(&mut self) {
        self.kill9();
        self.stdout.lock().unwrap().clear();
        if let Some(f) = &mut self.front {
            f.respawn();
            return;
        }
        self.spawn();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let mut headers: Vec<(String, String)> = Vec::new();
        if let Some(t) = bearer {
            headers.push(("Authorization".into(), format!("Bearer {t}")));
        }
        let bytes = body.map(|b| {
            headers.push(("Content-Type".into(), "application/json".into()));
            serde_json::to_vec(b).unwrap()
        });
        send(&self.http, method, &self.url(path), &headers, bytes).await
    }

    /// A call with exactly these headers and body bytes (nothing added but what reqwest
    /// always sends).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        send(&self.http, method, &self.url(path), &headers, body).await
    }

    /// A control-plane call with the admin token.
    pub async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Resp {
        let tok = self.admin_token.clone();
        self.call(method, path, Some(&tok), body).await
    }

    /// Mint a user access token through the control plane; panics unless it succeeds.
    pub async fn mint(&self, app_id: &str, tenant_key: &str, user_id: &str) -> String {
        self.mint_with(json!({"app_id": app_id, "tenant_key": tenant_key, "user_id": user_id}))
            .await
    }

    pub async fn mint_with(&self, body: Value) -> String {
        let r = self
            .admin(Method::POST, "/_exbind/v1/user_access_tokens", Some(&body))
            .await;
        r.assert(200, 0);
        r.body["data"]["access_token"].as_str().unwrap().to_string()
    }

    /// The open_id (or other id) that `app_id` sees for a user.
    pub async fn user_ids(&self, tenant: &str, user: &str, app_id: &str) -> Value {
        let r = self
            .admin(
                Method::GET,
                &format!("/_exbind/v1/tenants/{tenant}/users/{user}?app_id={app_id}"),
                None,
            )
            .await;
        r.assert(200, 0);
        r.body["data"].clone()
    }

    pub async fn create(
        &self,
        token: &str,
        admin: &str,
        exchange: &str,
        user_id: &str,
        user_id_type: Option<&str>,
    ) -> Resp {
        let path = match user_id_type {
            Some(t) => format!("/open-apis/calendar/v4/exchange_bindings?user_id_type={t}"),
            None => "/open-apis/calendar/v4/exchange_bindings".to_string(),
        };
        let body =
            json!({"admin_account": admin, "exchange_account": exchange, "user_id": user_id});
        self.call(Method::POST, &path, Some(token), Some(&body))
            .await
    }

    /// GET a binding; `id` is put in the path as given (encode it yourself if needed).
    pub async fn get(&self, token: &str, id: &str, user_id_type: Option<&str>) -> Resp {
        let mut path = format!("/open-apis/calendar/v4/exchange_bindings/{id}");
        if let Some(t) = user_id_type {
            path.push_str(&format!("?user_id_type={t}"));
        }
        self.call(Method::GET, &path, Some(token), None).await
    }

    pub async fn delete(&self, token: &str, id: &str) -> Resp {
        let path = format!("/open-apis/calendar/v4/exchange_bindings/{id}");
        self.call(Method::DELETE, &path, Some(token), None).await
    }

    /// A value of the store's `meta` table, read from the store itself.
    pub fn store_meta(&self, key: &str) -> Vec<u8> {
        if let Some(f) = &self.front {
            return cluster::store_meta(&f.schema, key);
        }
        let db = rusqlite::Connection::open_with_flags(
            self.data_dir.join("exbind.sqlite3"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        db.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .unwrap()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn unsafe_sigterm(pid: u32) {
    let st = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(st.success());
}

/// base64 of "admin exchange": the documented binding-id construction.
pub fn binding_id(admin: &str, exchange: &str) -> String {
    // Small local encoder so the tests do not share the server's codec.
    b64(format!("{admin} {exchange}").as_bytes())
}

// ---------------------------------------------------------------------------------------
// Shared helpers for the suite.
// ---------------------------------------------------------------------------------------

/// Sends one request and parses the answer as JSON (panics on a non-JSON answer).
pub async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    headers: &[(String, String)],
    body: Option<Vec<u8>>,
) -> Resp {
    let mut req = http.request(method, url);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("http call");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("non-JSON answer ({status}): {e}: {text:?}"));
    Resp {
        status,
        headers,
        body,
        text,
    }
}

/// The documented example id: base64("email_admin_example@outlook.com email_account_example@outlook.com").
pub const DOC_ID: &str =
    "ZW1haWxfYWRtaW5fZXhhbXBsZUBvdXRsb29rLmNvbSBlbWFpbF9hY2NvdW50X2V4YW1wbGVAb3V0bG9vay5jb20=";
pub const DOC_ADMIN: &str = "email_admin_example@outlook.com";
pub const DOC_EXCHANGE: &str = "email_account_example@outlook.com";

pub const ACME_ADMIN: &str = "exadmin@acme.example";
pub const GLOBEX_ADMIN: &str = "exadmin@globex.example";

pub const BINDINGS: &str = "/open-apis/calendar/v4/exchange_bindings";
pub const TENANT_TOKEN_PATH: &str = "/open-apis/auth/v3/tenant_access_token/internal";
pub const APP_TOKEN_PATH: &str = "/open-apis/auth/v3/app_access_token/internal";

pub const CREATE_SCOPES: [&str; 3] = [
    "calendar:calendar",
    "calendar:calendar:readonly",
    "calendar:exchange.bindings:create",
];
pub const GET_SCOPES: [&str; 2] = [
    "calendar:calendar:readonly",
    "calendar:exchange.bindings:read",
];
pub const DELETE_SCOPES: [&str; 2] = ["calendar:calendar", "calendar:exchange.bindings:delete"];
pub const EMAIL_SCOPE: &str = "contact:user.email:readonly";
pub const EMPLOYEE_ID_SCOPE: &str = "contact:user.employee_id:readonly";

/// The tests' seed, in one file shared with the fuzz harness.
pub use exbind_server::fixture::FULL_SEED;

/// The msg of the contract's error table (§6) for a code, verbatim.
pub fn table_msg(code: i64) -> &'static str {
    match code {
        190002 => "invalid parameters in request",
        190003 => "internal service error",
        190004 => "method rate limited",
        190005 => "app rate limited",
        190006 => "wrong unit for app tenant",
        190007 => "app bot_id not found",
        190010 => "current operation rate limited",
        195100 => "user is dismiss or not exist in the tenant",
        195101 => "user is not supper administrator",
        195102 => "exchange_binding_id invalid",
        195103 => "exchange account binding is not found",
        195104 => "current tenant not match",
        195105 => "admin account binding failed",
        195106 => "admin account is not found",
        99991661 => {
            "Missing access token for authorization. Please make a request with token attached."
        }
        99991663 | 99991668 => {
            "Invalid access token for authorization. Please make a request with token attached."
        }
        99991671 => "Invalid token: must start with t-/u-",
        99991677 => "token expire",
        99991400 => "request trigger frequency limit",
        99991201 => "resource not found",
        99991301 => "request method doesn't match",
        _ => panic!("no fixed msg for code {code}"),
    }
}

/// The 99991672 msg for a list of scopes.
pub fn scope_msg(scopes: &[&str]) -> String {
    format!(
        "Access denied. One of the following scopes is required: [{}].",
        scopes.join(", ")
    )
}

/// The 99991679 msg for a list of privileges.
pub fn privilege_msg(scopes: &[&str]) -> String {
    format!(
        "Unauthorized. You do not have permission to perform the requested operation on the resource. Please request user re-authorization and try again. required one of these privileges: [{}]",
        scopes.join(", ")
    )
}

impl Resp {
    /// Asserts a complete error answer: HTTP status, code, the table's msg verbatim, JSON
    /// content type and `error.log_id` equal to the `X-Tt-Logid` header.
    #[track_caller]
    pub fn assert_err(&self, status: u16, code: i64) -> &Self {
        self.assert_err_msg(status, code, table_msg(code))
    }

    /// Like `assert_err`, with an explicit msg (for the scope errors).
    #[track_caller]
    pub fn assert_err_msg(&self, status: u16, code: i64, msg: &str) -> &Self {
        assert_eq!(
            (self.status.as_u16(), self.body["code"].as_i64()),
            (status, Some(code)),
            "unexpected answer: {}",
            self.text
        );
        assert_eq!(self.body["msg"].as_str(), Some(msg), "msg of {}", self.text);
        self.assert_json_content_type();
        let header = self
            .headers
            .get("x-tt-logid")
            .unwrap_or_else(|| panic!("no X-Tt-Logid on {}", self.text))
            .to_str()
            .unwrap();
        assert_eq!(
            self.body["error"]["log_id"].as_str(),
            Some(header),
            "error.log_id vs X-Tt-Logid: {}",
            self.text
        );
        self
    }

    /// Asserts a success answer (`code` 0, `msg` "success", HTTP 200) and returns `data`.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(
            (self.status.as_u16(), self.body["code"].as_i64()),
            (200, Some(0)),
            "unexpected answer: {}",
            self.text
        );
        assert_eq!(self.body["msg"], "success", "{}", self.text);
        &self.body["data"]
    }

    #[track_caller]
    pub fn assert_json_content_type(&self) {
        let ct = self
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap());
        assert_eq!(
            ct,
            Some("application/json; charset=utf-8"),
            "content type of {}",
            self.text
        );
    }

    /// `error.field_violations` (empty when absent).
    pub fn field_violations(&self) -> Vec<Value> {
        self.body["error"]["field_violations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The violation for `field`, panicking when there is none.
    #[track_caller]
    pub fn violation(&self, field: &str) -> Value {
        self.field_violations()
            .into_iter()
            .find(|v| v["field"] == field)
            .unwrap_or_else(|| panic!("no field violation for {field:?} in {}", self.text))
    }

    /// `error.permission_violations` as (type, subject) pairs.
    pub fn permission_violations(&self) -> Vec<(String, String)> {
        self.body["error"]["permission_violations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|v| {
                (
                    v["type"].as_str().unwrap_or_default().to_string(),
                    v["subject"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// A header's value as a string.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

/// A response read off a raw socket: the status line, the header lines exactly as written,
/// and the body bytes as text.
#[derive(Debug)]
pub struct RawResp {
    pub status_line: String,
    pub header_lines: Vec<String>,
    pub body: String,
}

impl RawResp {
    pub fn status(&self) -> u16 {
        self.status_line.split(' ').nth(1).unwrap().parse().unwrap()
    }
    /// The value of the header whose name is exactly `name` (case-sensitive).
    pub fn exact(&self, name: &str) -> Option<String> {
        self.header_lines.iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == name).then(|| v.trim().to_string())
        })
    }
    pub fn names(&self) -> Vec<String> {
        self.header_lines
            .iter()
            .filter_map(|l| l.split_once(':').map(|(k, _)| k.to_string()))
            .collect()
    }
}

/// Title-Case as the contract requires: each `-`-separated word starts upper-case and
/// continues lower-case.
pub fn is_title_case(name: &str) -> bool {
    name.split('-').all(|w| {
        let mut cs = w.chars();
        match cs.next() {
            Some(c) => c.is_ascii_uppercase() && cs.all(|c| !c.is_ascii_uppercase()),
            None => false,
        }
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Sleeps until `margin_ms` after the next whole second of wall time.
pub async fn align_to_second(margin_ms: u64) {
    let ms = (now_ms() % 1000) as u64;
    tokio::time::sleep(Duration::from_millis(1000 - ms + margin_ms)).await;
}

/// Runs `f` inside one second of wall time and returns what it gave, so that every request
/// it makes meets the same clock-aligned window of the server's quotas and budgets (the
/// server reads the same system clock: a request answered between two readings of the
/// clock in one second was counted in that second). Starts just after a second boundary,
/// and runs `f` again from the next one when it ran across a boundary; only a machine that
/// cannot do `f` within a second ten times over fails.
pub async fn within_one_second<F, Fut, T>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    for _ in 0..10 {
        align_to_second(15).await;
        let sec = now_ms() / 1000;
        let out = f().await;
        if now_ms() / 1000 == sec {
            return out;
        }
    }
    panic!("could not fit the requests into one second, ten times over");
}

/// If fewer than `needed_s` seconds remain in the current wall-clock minute, sleeps into
/// the next minute (plus a small margin).
pub async fn ensure_minute_room(needed_s: u64) {
    let ms = (now_ms() % 60_000) as u64;
    if 60_000 - ms < needed_s * 1000 {
        tokio::time::sleep(Duration::from_millis(60_000 - ms + 50)).await;
    }
}

/// `YYYYMMDDHHMMSS` in UTC for a Unix time in seconds.
pub fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Runs a command to its exit (killing it after `timeout`), returning status, stdout and
/// stderr.
pub fn run_to_exit(
    mut cmd: Command,
    timeout: Duration,
) -> (std::process::ExitStatus, String, String) {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "process did not exit within {timeout:?}; stdout:\n{}\nstderr:\n{}",
                t_out.join().unwrap(),
                t_err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, t_out.join().unwrap(), t_err.join().unwrap())
}

/// `exbind serve` on a fresh port with the given data dir and extra args (no harness
/// defaults besides `--listen 127.0.0.1:0`).
pub fn serve_command(data_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(exbind_bin());
    cmd.arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args);
    cmd.env_remove("RUST_LOG");
    cmd.env_remove("EXBIND_ADMIN_TOKEN");
    cmd
}

/// Percent-encodes every byte outside the unreserved set, as Python's `quote(safe="")`.
pub fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 of arbitrary bytes (padding included).
pub fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Server {
    /// A server with `FULL_SEED` and extra args.
    pub fn full_with(args: &[&str]) -> Server {
        Server::builder().seed(FULL_SEED).args(args).start()
    }

    /// A server with `FULL_SEED`.
    pub fn full() -> Server {
        Server::full_with(&[])
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    /// Sends raw bytes on a fresh connection and reads the whole answer
    /// (the request should carry `Connection: close`).
    pub fn raw(&self, request: &[u8]) -> RawResp {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf).to_string();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end in {text:?}"));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_string();
        RawResp {
            status_line,
            header_lines: lines.map(|l| l.to_string()).collect(),
            body: body.to_string(),
        }
    }

    /// A raw HTTP/1.1 request with `Connection: close`, optional bearer token and body.
    pub fn raw_request(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&str>,
    ) -> RawResp {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr()
        );
        if let Some(t) = bearer {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        } else {
            req.push_str("\r\n");
        }
        self.raw(req.as_bytes())
    }

    /// A raw HTTP/1.1 request with `Connection: close`, extra headers and a body of bytes.
    pub fn raw_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResp {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr(),
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.raw(&bytes)
    }

    /// POSTs `{"app_id","app_secret"}` to a token endpoint.
    pub async fn token_call(&self, path: &str, app_id: &str, secret: &str) -> Resp {
        let body = json!({"app_id": app_id, "app_secret": secret});
        self.call(Method::POST, path, None, Some(&body)).await
    }

    /// A tenant access token for a custom app; panics unless it is issued.
    pub async fn tenant_token(&self, app_id: &str, secret: &str) -> String {
        let r = self.token_call(TENANT_TOKEN_PATH, app_id, secret).await;
        assert_eq!(r.body["code"], 0, "{}", r.text);
        r.body["tenant_access_token"].as_str().unwrap().to_string()
    }

    /// Creates a binding under `admin` for `user_id` (a configured user id) and returns its
    /// `data`; panics unless it succeeds.
    pub async fn bind(&self, token: &str, admin: &str, exchange: &str, user_id: &str) -> Value {
        let r = self
            .create(token, admin, exchange, user_id, Some("user_id"))
            .await;
        r.ok().clone()
    }

    /// The super admin's token for `cli_acme` in acme.
    pub async fn boss(&self) -> String {
        self.mint("cli_acme", "acme", "boss").await
    }

    /// A control-plane PATCH that must succeed; returns `data`.
    pub async fn patch_ok(&self, path: &str, body: Value) -> Value {
        let r = self.admin(Method::PATCH, path, Some(&body)).await;
        r.ok().clone()
    }

    /// The bindings of a tenant through the control plane (all pages).
    pub async fn list_bindings(&self, tenant: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/_exbind/v1/tenants/{tenant}/bindings?page_size=100");
            if let Some(t) = &token {
                path.push_str(&format!("&page_token={}", pct(t)));
            }
            let r = self.admin(Method::GET, &path, None).await;
            let data = r.ok();
            items.extend(data["items"].as_array().cloned().unwrap_or_default());
            if data["has_more"] != true {
                break;
            }
            token = Some(data["page_token"].as_str().unwrap().to_string());
        }
        items
    }

    /// Polls stderr until it contains `needle` (up to `PATIENCE`).
    pub async fn wait_stderr(&self, needle: &str) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.stderr_text().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Waits (up to `PATIENCE`) for a stdout line starting with `prefix` and returns it.
    pub async fn wait_stdout_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(l) = self
                .stdout_lines()
                .into_iter()
                .find(|l| l.starts_with(prefix))
            {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no stdout line starting with {prefix:?} in {:?}",
                self.stdout_lines()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `n` copies of a request at once; answers in completion order.
    pub async fn burst(
        &self,
        n: usize,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Vec<Resp> {
        let mut headers: Vec<(String, String)> = Vec::new();
        if let Some(t) = bearer {
            headers.push(("Authorization".into(), format!("Bearer {t}")));
        }
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        let url = self.url(path);
        let gate = Arc::new(tokio::sync::Barrier::new(n));
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (http, method, url, headers, bytes, gate) = (
                self.http.clone(),
                method.clone(),
                url.clone(),
                headers.clone(),
                bytes.clone(),
                gate.clone(),
            );
            tasks.push(tokio::spawn(async move {
                gate.wait().await;
                send(&http, method, &url, &headers, bytes).await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }
}

/// Every value of `key` anywhere inside `v`.
pub fn find_all<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == key {
                    out.push(x);
                }
                find_all(x, key, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| find_all(x, key, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Helpers for the sync engine, faults, journal and reset tests.
// ---------------------------------------------------------------------------------------

/// Milliseconds since the epoch of an RFC 3339 time (`2024-05-01T10:00:00.123Z`, any offset).
#[track_caller]
pub fn rfc3339_ms(s: &str) -> i64 {
    let bad = || panic!("not an RFC 3339 time: {s:?}");
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        bad();
    }
    let n = |r: std::ops::Range<usize>| -> i64 {
        s.get(r).and_then(|x| x.parse().ok()).unwrap_or_else(bad)
    };
    let (y, mo, d, h, mi, sec) = (n(0..4), n(5..7), n(8..10), n(11..13), n(14..16), n(17..19));
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            bad();
        }
        let padded = format!("{:0<3}", &digits[..digits.len().min(3)]);
        frac_ms = padded.parse().unwrap();
    }
    let offset_min = match &s[i..] {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let v = n(i + 1..i + 3) * 60 + n(i + 4..i + 6);
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => bad(),
    };
    // Days from civil (Howard Hinnant).
    let (yy, mm) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60) * 1000) + frac_ms
}

/// The `(status, at in ms)` steps of a binding view's `history`.
#[track_caller]
pub fn history_of(view: &Value) -> Vec<(String, i64)> {
    view["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history in {view}"))
        .iter()
        .map(|s| {
            (
                s["status"].as_str().expect("history status").to_string(),
                rfc3339_ms(s["at"].as_str().expect("history at")),
            )
        })
        .collect()
}

/// Just the statuses of a binding view's `history`.
pub fn history_statuses(view: &Value) -> Vec<String> {
    history_of(view).into_iter().map(|(s, _)| s).collect()
}

/// A control-plane binding view is read as of one moment: its history ends at its status
/// (every status change records its steps in the same transaction).
#[track_caller]
pub fn assert_one_moment(view: &Value) {
    assert_eq!(
        history_statuses(view).last().map(String::as_str),
        view["status"].as_str(),
        "the history must end at the status: {view}"
    );
}

impl Server {
    /// The control-plane view of one binding (from the tenant's bindings list), if any.
    pub async fn binding_row(&self, tenant: &str, id: &str) -> Option<Value> {
        self.list_bindings(tenant)
            .await
            .into_iter()
            .find(|b| b["exchange_binding_id"] == id)
    }

    /// Polls the bindings list until the binding has reached `status` (it may be past it by
    /// then; up to `PATIENCE`); returns its view, panicking with the last one seen when it never gets there. How late a step came
    /// is no test's business (a loaded machine delays it): the history's times are the
    /// schedule's own deadlines, and that is what tests compare.
    pub async fn wait_binding(&self, tenant: &str, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let row = self.binding_row(tenant, id).await;
            if let Some(r) = &row {
                assert_one_moment(r);
                // A stage may pass between two polls (short stages, a loaded machine): its
                // history still shows it was reached.
                if history_statuses(r).iter().any(|h| h == status) {
                    return r.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "binding {id} did not reach {status} within {PATIENCE:?}; last seen {row:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of an unlabelled metric (`exbind_connections_open`, …), read on a
    /// connection of its own that closes after it (so it is not counted by a later look).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.raw_request("GET", "/_exbind/metrics", None, None).body;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Every entry of the request journal matching `query` (`method=GET&…`), all pages,
    /// newest first, and the raw texts of the pages.
    pub async fn journal_all(&self, query: &str) -> (Vec<Value>, Vec<String>) {
        let mut items = Vec::new();
        let mut texts = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/_exbind/v1/requests?page_size=50&{query}");
            if let Some(t) = &token {
                path.push_str(&format!("&page_token={}", pct(t)));
            }
            let r = self.admin(Method::GET, &path, None).await;
            let data = r.ok().clone();
            texts.push(r.text.clone());
            items.extend(data["items"].as_array().cloned().unwrap_or_default());
            if data["has_more"] != true {
                break;
            }
            token = Some(data["page_token"].as_str().expect("page_token").to_string());
        }
        (items, texts)
    }
}

// ---------------------------------------------------------------------------------------
// Helpers for the client-side tests (CLI single operations, bulk, watch).
// ---------------------------------------------------------------------------------------

/// What a finished CLI run printed, and its exit code.
#[derive(Debug)]
pub struct CliOut {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliOut {
    /// Asserts exit status 0.
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        self
    }
    /// The stdout parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// `exbind ARGS` with the client's environment cleared (no base URL, token, config or admin
/// token from the environment, and no user config file).
pub fn cli_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(exbind_bin());
    cmd.args(args);
    for k in [
        "EXBIND_BASE_URL",
        "FEISHU_USER_ACCESS_TOKEN",
        "EXBIND_CONFIG",
        "EXBIND_ADMIN_TOKEN",
        "EXBIND_APP_ID",
        "EXBIND_APP_SECRET",
        "RUST_LOG",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("XDG_CONFIG_HOME", "/nonexistent/exbind-test-config");
    cmd.env("HOME", "/nonexistent/exbind-test-home");
    cmd
}

/// A CLI command with its own config directory.
pub fn cli_in(xdg: &Path, args: &[&str]) -> Command {
    let mut c = cli_command(args);
    c.env("XDG_CONFIG_HOME", xdg);
    c
}

/// `exbind login --no-browser --app-id cli_acme …` running, with the URL it printed.
pub struct CliLogin {
    child: Child,
    pub url: reqwest::Url,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl CliLogin {
    pub fn start(xdg: &Path, base: &str, extra: &[&str]) -> CliLogin {
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
        let mut child = cli_in(xdg, &args)
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
        CliLogin {
            child,
            url: reqwest::Url::parse(url).unwrap(),
            stderr,
        }
    }

    pub fn query(&self) -> std::collections::HashMap<String, String> {
        self.url.query_pairs().into_owned().collect()
    }

    /// Waits for the exit; returns the status, stdout and the rest of stderr.
    pub fn finish(mut self) -> (Option<i32>, String, String) {
        let status = self.child.wait().unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut self.child.stdout.take().unwrap(), &mut out).unwrap();
        // Until the reader thread reaches the end of stderr: after the exit its last lines
        // may still be on their way.
        let err: Vec<String> = self.stderr.iter().collect();
        (status.code(), out, err.join("\n"))
    }
}

impl Drop for CliLogin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a CLI command to its exit (at most `timeout`).
pub fn cli_run(cmd: Command, timeout: Duration) -> CliOut {
    let (status, stdout, stderr) = run_to_exit(cmd, timeout);
    CliOut {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// A seed TOML with tenant `tenant`, its super admin `boss`, the admin account `admin` and
/// `n` plain users `{prefix}00000`…, plus app `app` (every scope) installed there.
pub fn many_users_seed(tenant: &str, admin: &str, app: &str, prefix: &str, n: usize) -> String {
    let mut s = format!(
        "[[tenants]]\ntenant_key = \"{tenant}\"\n\n[[tenants.users]]\nuser_id = \"boss\"\nsuper_admin = true\n\n[[tenants.exchange_admins]]\naccount = \"{admin}\"\n\n"
    );
    for i in 0..n {
        s.push_str(&format!(
            "[[tenants.users]]\nuser_id = \"{prefix}{i:05}\"\n\n"
        ));
    }
    s.push_str(&format!(
        "[[apps]]\napp_id = \"{app}\"\napp_secret = \"{app}-secret\"\ntenants = [\"{tenant}\"]\nscopes = [\"calendar:calendar\", \"calendar:calendar:readonly\", \"calendar:exchange.bindings:create\", \"calendar:exchange.bindings:read\", \"calendar:exchange.bindings:delete\", \"contact:user.email:readonly\", \"contact:user.employee_id:readonly\"]\n"
    ));
    s
}

impl Server {
    /// `GET /_exbind/metrics` as text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/_exbind/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Every journal entry matching `query`, all pages (page size 1000), newest first.
    pub async fn journal_entries(&self, query: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/_exbind/v1/requests?page_size=1000&{query}");
            if let Some(t) = &token {
                path.push_str(&format!("&page_token={}", pct(t)));
            }
            let r = self.admin(Method::GET, &path, None).await;
            let data = r.ok().clone();
            items.extend(data["items"].as_array().cloned().unwrap_or_default());
            if data["has_more"] != true {
                break;
            }
            token = Some(data["page_token"].as_str().expect("page_token").to_string());
        }
        items
    }

    /// Adds a fault rule; panics unless it is accepted.
    pub async fn add_fault(&self, rule: Value) -> Value {
        let r = self
            .admin(Method::POST, "/_exbind/v1/faults", Some(&rule))
            .await;
        r.ok().clone()
    }

    /// All bindings of a tenant (page size 500).
    pub async fn all_bindings(&self, tenant: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/_exbind/v1/tenants/{tenant}/bindings?page_size=500");
            if let Some(t) = &token {
                path.push_str(&format!("&page_token={}", pct(t)));
            }
            let r = self.admin(Method::GET, &path, None).await;
            let data = r.ok().clone();
            items.extend(data["items"].as_array().cloned().unwrap_or_default());
            if data["has_more"] != true {
                break;
            }
            token = Some(data["page_token"].as_str().unwrap().to_string());
        }
        items
    }
}

/// The journal routes of the binding endpoints.
pub const CREATE_ROUTE: &str = "/open-apis/calendar/v4/exchange_bindings";
pub const ONE_ROUTE: &str = "/open-apis/calendar/v4/exchange_bindings/{exchange_binding_id}";

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// `program` run from the repository root, talking to loopback servers directly: proxy
/// settings of the machine are removed, so a client library cannot route 127.0.0.1 through
/// one.
pub fn script_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(repo_root())
        .env("NO_PROXY", "127.0.0.1,localhost,::1")
        .env("no_proxy", "127.0.0.1,localhost,::1");
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Where the browser test `name` saves its screenshots: `target/screenshots/NAME/`.
pub fn screenshot_dir(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("screenshots").join(name)
}

/// Runs the browser test `tests/browser/NAME.mjs` (Debian's chromium, headless, through
/// Playwright; see `tests/browser/lib.mjs`) against `base` with `env` added, and asserts it
/// passes. Its output, with the paths of its screenshots, is printed; the server's log is
/// shown when it fails. Needs `tests/sdk/install.sh` to have run (chromium, playwright-core,
/// axe-core).
pub async fn browser_test(name: &str, s: &Server, env: &[(&str, &str)]) -> String {
    let root = repo_root();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string());
    for (what, path) in [
        ("chromium", PathBuf::from(&chromium)),
        (
            "playwright-core",
            root.join("tests/browser/node_modules/playwright-core"),
        ),
        ("axe-core", root.join("tests/browser/node_modules/axe-core")),
    ] {
        assert!(
            path.exists(),
            "{what} is not installed ({} is missing): run tests/sdk/install.sh",
            path.display()
        );
    }
    let shots = screenshot_dir(name);
    let mut cmd = script_command(Path::new("node"));
    cmd.arg(root.join(format!("tests/browser/{name}.mjs")))
        .env("EXBIND_BASE_URL", &s.base)
        .env("EXBIND_SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", &chromium);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (status, out, err) =
        tokio::task::spawn_blocking(move || run_to_exit(cmd, Duration::from_secs(180)))
            .await
            .unwrap();
    println!("screenshots: {}\n{out}", shots.display());
    assert!(
        status.success(),
        "browser test {name} failed ({status}) against {}.\n--- stdout ---\n{out}\n\
         --- stderr ---\n{err}\n--- exbind log ---\n{}",
        s.base,
        s.stderr_text()
    );
    out
}

/// A `GET /_exbind/v1/events` stream, read event by event.
pub struct EventStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl EventStream {
    /// The next event as (name, data); comments are skipped. Panics when no event has come
    /// within `PATIENCE` (keep-alive comments do not count) or when the stream ends.
    pub async fn next(&mut self) -> (String, Value) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            // Bytes, not text, until a whole block is in: a chunk may end inside a character.
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let block = std::str::from_utf8(&block).expect("UTF-8 event");
                let (mut name, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if name.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("event {name} data {data:?}: {e}"));
                return (name, data);
            }
            let chunk = tokio::time::timeout_at(deadline.into(), self.resp.chunk())
                .await
                .unwrap_or_else(|_| panic!("no event within {PATIENCE:?}"))
                .expect("stream readable")
                .expect("stream still open");
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// Reads events until one matches (within `PATIENCE` in all); returns its data.
    pub async fn until(&mut self, mut want: impl FnMut(&str, &Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (name, data) = tokio::time::timeout_at(deadline.into(), self.next())
                .await
                .unwrap_or_else(|_| panic!("no matching event within {PATIENCE:?}"));
            if want(&name, &data) {
                return data;
            }
        }
    }
}

impl Server {
    /// Opens the event stream with the admin token (`query` after `?`), checks its
    /// answer and reads its `hello`.
    pub async fn events(&self, query: &str) -> EventStream {
        let resp = self
            .http
            .get(self.url(&format!("/_exbind/v1/events?{query}")))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("events stream");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"],
            "text/event-stream; charset=utf-8"
        );
        let mut s = EventStream {
            resp,
            buf: Vec::new(),
        };
        let (name, _) = s.next().await;
        assert_eq!(name, "hello");
        s
    }
}

/// Reads until the server closes the connection (EOF or reset); returns what came.
pub async fn read_to_close(c: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(PATIENCE, c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server kept the connection open for {PATIENCE:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

/// The login flows' seed: two active users and a dismissed one; an app with a name, registered
/// redirect URIs (one on loopback, the server's own health route, which browser tests use to
/// catch the redirect) and `offline_access`; an app with `auto_consent` and none registered
/// (loopback only); a disabled app.
pub const LOGIN_SEED: &str = r#"
[[tenants]]
tenant_key = "acme"

[[tenants.users]]
user_id = "boss"
name = "Boss"
email = "boss@acme.example"
super_admin = true

[[tenants.users]]
user_id = "alice"
name = "Alice"

[[tenants.users]]
user_id = "gone"
name = "Gone"
status = "dismissed"

[[apps]]
app_id = "cli_login"
app_secret = "login-secret"
name = "Acme Calendar Sync"
tenants = ["acme"]
redirect_uris = ["https://app.example/callback", "http://127.0.0.1/_exbind/healthz"]
scopes = ["calendar:calendar:readonly", "calendar:exchange.bindings:read",
          "contact:user.email:readonly", "offline_access"]

[[apps]]
app_id = "cli_auto"
app_secret = "auto-secret"
tenants = ["acme"]
auto_consent = true
scopes = ["offline_access"]

[[apps]]
app_id = "cli_off"
app_secret = "off-secret"
tenants = ["acme"]
enabled = false
"#;
