//! The official SDKs against the real server: `tests/sdk/python/exchange_binding_flow.py`
//! (lark-oapi) and `tests/sdk/node/exchange_binding_flow.mjs` (@larksuiteoapi/node-sdk) each
//! run create → get → delete → get through the SDK's typed methods with a user token, then
//! show that a tenant token gets 99991663 (see shared spec sdk-compat.md).
//!
//! `store_app_ticket.py` / `store_app_ticket.mjs` run a store app: the SDK's own event
//! dispatcher (encrypt key and verification token) receives exbind's `app_ticket` push, and
//! the SDK buys the app and tenant tokens with it.
//!
//! The SDKs are installed by `tests/sdk/install.sh`. Without them these tests fail, unless
//! `EXBIND_SKIP_SDK=1`, which skips them.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const TENANT: &str = "sdkco";
const APP_ID: &str = "cli_sdk";
const APP_SECRET: &str = "sdk-secret";
const CALLER: &str = "sdk-admin";
const ADMIN_ACCOUNT: &str = "exadmin@sdk.example";

/// One tenant with a super admin (the caller), one user to bind per SDK, an Exchange admin
/// account and an app with every scope (the email scope makes the accounts visible in `data`).
const SDK_SEED: &str = r#"
[[tenants]]
tenant_key = "sdkco"
name = "SDK Co"

[[tenants.users]]
user_id = "sdk-admin"
name = "SDK Admin"
super_admin = true

[[tenants.users]]
user_id = "py-user"
email = "py-user@sdk.example"

[[tenants.users]]
user_id = "node-user"
email = "node-user@sdk.example"

[[tenants.exchange_admins]]
account = "exadmin@sdk.example"

[[apps]]
app_id = "cli_sdk"
app_secret = "sdk-secret"
tenants = ["sdkco"]
scopes = ["calendar:calendar", "calendar:calendar:readonly", "calendar:exchange.bindings:create",
          "calendar:exchange.bindings:read", "calendar:exchange.bindings:delete",
          "contact:user.email:readonly", "contact:user.employee_id:readonly"]

[[apps]]
app_id = "cli_sdk_login"
app_secret = "sdk-login-secret"
tenants = ["sdkco"]
scopes = ["calendar:exchange.bindings:read", "contact:user.email:readonly", "offline_access"]
"#;

const LOGIN_APP: &str = "cli_sdk_login";

/// `None` when `EXBIND_SKIP_SDK=1` (the caller skips); panics when the SDK is not installed.
fn prerequisite(sdk: &str, installed: &Path) -> Option<()> {
    if std::env::var("EXBIND_SKIP_SDK").as_deref() == Ok("1") {
        println!("skipped: {sdk} SDK compatibility test (EXBIND_SKIP_SDK=1)");
        return None;
    }
    assert!(
        installed.exists(),
        "the {sdk} SDK is not installed ({} is missing): run tests/sdk/install.sh \
         (or set EXBIND_SKIP_SDK=1 to skip the SDK tests)",
        installed.display()
    );
    Some(())
}

/// An Exchange account `{prefix}{n}@sdk.example` whose binding id contains `=` (so Python
/// sends `%3D`) and neither `+` nor `/` (which the Node SDK would put in the path raw).
fn exchange_account(prefix: &str) -> (String, String) {
    (0..100)
        .map(|n| format!("{prefix}{n}@sdk.example"))
        .map(|acct| {
            let id = binding_id(ADMIN_ACCOUNT, &acct);
            (acct, id)
        })
        .find(|(_, id)| id.contains('=') && !id.contains('+') && !id.contains('/'))
        .expect("an exchange account with a suitable id")
}

/// Runs a flow script against `s` (its base URL in `EXBIND_BASE_URL`) and asserts it exits 0.
async fn run_script(s: &Server, what: &str, mut cmd: Command) {
    cmd.env("EXBIND_BASE_URL", &s.base);
    let (status, out, err) =
        tokio::task::spawn_blocking(move || run_to_exit(cmd, Duration::from_secs(600)))
            .await
            .unwrap();
    assert!(
        status.success(),
        "the {what} failed ({status}) against {}.\n\
         --- stdout ---\n{out}\n--- stderr ---\n{err}\n--- exbind log ---\n{}",
        s.base,
        s.stderr_text()
    );
    print!("{out}");
}

/// Starts a server with `SDK_SEED`, mints the caller's user token, looks up the bound user's
/// open_id, runs `program args…` with the flow's environment and asserts it exits 0.
async fn run_flow(sdk: &str, program: &Path, args: &[PathBuf], user: &str, prefix: &str) {
    let s = Server::builder().seed(SDK_SEED).start();
    let token = s.mint(APP_ID, TENANT, CALLER).await;
    let open_id = s.user_ids(TENANT, user, APP_ID).await["open_id"]
        .as_str()
        .expect("data.open_id")
        .to_string();
    let (exchange, id) = exchange_account(prefix);

    let mut cmd = script_command(program);
    cmd.args(args)
        .env("APP_ID", APP_ID)
        .env("APP_SECRET", APP_SECRET)
        .env("USER_ACCESS_TOKEN", &token)
        .env("ADMIN_ACCOUNT", ADMIN_ACCOUNT)
        .env("EXCHANGE_ACCOUNT", &exchange)
        .env("USER_OPEN_ID", &open_id);
    run_script(&s, &format!("{sdk} SDK flow (binding id {id})"), cmd).await;

    // The flow deleted what it created.
    let left = s.list_bindings(TENANT).await;
    assert!(
        left.is_empty(),
        "bindings left after the {sdk} flow: {left:?}"
    );
}

/// Runs an SDK's authen flow (`tests/sdk/*/authen_flow.*`) with two codes for `user`, as an
/// app's login would get them from the authorize page.
async fn run_authen_flow(sdk: &str, program: &Path, args: &[PathBuf], user: &str) {
    let s = Server::builder().seed(SDK_SEED).start();
    let mut codes = Vec::new();
    for _ in 0..2 {
        let d = s
            .issue_code(&serde_json::json!({"app_id": LOGIN_APP, "tenant_key": TENANT,
                                            "user_id": user, "redirect_uri": "http://127.0.0.1:9/cb"}))
            .await;
        codes.push(d["code"].as_str().unwrap().to_string());
    }
    let ids = s.user_ids(TENANT, user, LOGIN_APP).await;
    let mut cmd = script_command(program);
    cmd.args(args)
        .env("APP_ID", LOGIN_APP)
        .env("APP_SECRET", "sdk-login-secret")
        .env("CODE_OIDC", &codes[0])
        .env("CODE_OLD", &codes[1])
        .env("USER_OPEN_ID", ids["open_id"].as_str().unwrap())
        .env("USER_EMAIL", ids["email"].as_str().unwrap())
        .env("USER_NAME", ids["name"].as_str().unwrap());
    run_script(&s, &format!("{sdk} SDK authen flow"), cmd).await;
}

#[tokio::test]
async fn python_sdk_lark_oapi_authen_flow() {
    let Some(python) = python() else { return };
    let script = repo_root().join("tests/sdk/python/authen_flow.py");
    run_authen_flow("Python", &python, &[script], "py-user").await;
}

#[tokio::test]
async fn node_sdk_larksuiteoapi_authen_flow() {
    if node().is_none() {
        return;
    }
    let script = repo_root().join("tests/sdk/node/authen_flow.mjs");
    run_authen_flow("Node", Path::new("node"), &[script], "node-user").await;
}

/// The venv's Python, or `None` when the SDK tests are skipped.
fn python() -> Option<PathBuf> {
    let python = repo_root().join("tests/sdk/python/.venv/bin/python");
    prerequisite("Python", &python).map(|()| python)
}

/// `Some` when the Node SDK and Node are there, `None` when the SDK tests are skipped.
fn node() -> Option<()> {
    let sdk = repo_root().join("tests/sdk/node/node_modules/@larksuiteoapi/node-sdk");
    prerequisite("Node", &sdk)?;
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "`node --version` failed ({node:?}): the Node SDK test needs Node 20 on PATH"
    );
    Some(())
}

#[tokio::test]
async fn python_sdk_lark_oapi_flow() {
    let Some(python) = python() else { return };
    let script = repo_root().join("tests/sdk/python/exchange_binding_flow.py");
    run_flow("Python", &python, &[script], "py-user", "py").await;
}

#[tokio::test]
async fn node_sdk_larksuiteoapi_flow() {
    if node().is_none() {
        return;
    }
    let script = repo_root().join("tests/sdk/node/exchange_binding_flow.mjs");
    run_flow("Node", Path::new("node"), &[script], "node-user", "node").await;
}

const STORE_SEED: &str = r#"
[[tenants]]
tenant_key = "sdkco"

[[apps]]
app_id = "cli_sdk_store"
app_secret = "sdk-store-secret"
type = "store"
tenants = ["sdkco"]
verification_token = "sdk-verification-token"
encrypt_key = "sdk-encrypt-key"
"#;

/// Runs a store-app flow against a server with `STORE_SEED`; it sets the app's `event_url`
/// itself, to an endpoint the SDK serves.
async fn run_store_flow(sdk: &str, program: &Path, args: &[PathBuf]) {
    let s = Server::builder().seed(STORE_SEED).start();
    let mut cmd = script_command(program);
    cmd.args(args)
        .env("EXBIND_ADMIN_TOKEN", &s.admin_token)
        .env("APP_ID", "cli_sdk_store")
        .env("APP_SECRET", "sdk-store-secret")
        .env("ENCRYPT_KEY", "sdk-encrypt-key")
        .env("VERIFICATION_TOKEN", "sdk-verification-token")
        .env("TENANT_KEY", TENANT);
    run_script(&s, &format!("{sdk} SDK store-app flow"), cmd).await;
}

#[tokio::test]
async fn python_sdk_event_dispatcher_accepts_the_app_ticket() {
    let Some(python) = python() else { return };
    let script = repo_root().join("tests/sdk/python/store_app_ticket.py");
    run_store_flow("Python", &python, &[script]).await;
}

#[tokio::test]
async fn node_sdk_event_dispatcher_accepts_the_app_ticket() {
    if node().is_none() {
        return;
    }
    let script = repo_root().join("tests/sdk/node/store_app_ticket.mjs");
    run_store_flow("Node", Path::new("node"), &[script]).await;
}
