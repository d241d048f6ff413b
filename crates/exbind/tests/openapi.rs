//! The OpenAPI document the server serves at `/_exbind/openapi.json`, checked by independent
//! tools against the live server: `tests/openapi/check.py` validates it with
//! openapi-spec-validator (OpenAPI 3.1), lints what the contract asks of every operation, then
//! runs schemathesis against this server (status codes, content types, response schemas and
//! headers, no 5xx), the control plane with the admin token and the Feishu routes with a user
//! token minted here.
//!
//! The checker's tools are installed by `tests/sdk/install.sh` (tests/openapi/.venv). Without
//! them this test fails, unless `EXBIND_SKIP_SDK=1`, which skips it.
mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;

/// One tenant with a super admin (the caller), a user to bind, a dismissed user, two Exchange
/// admin accounts (one is the Feishu docs' example, which the document's examples use), a
/// scenario, and an app with every scope.
const OPENAPI_SEED: &str = r#"
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
user_id = "gone"
status = "dismissed"

[[tenants.exchange_admins]]
account = "exadmin@acme.example"

[[tenants.exchange_admins]]
account = "email_admin_example@outlook.com"

[[tenants.exchange_accounts]]
account = "slow@acme.example"
scenario = "stall"

[[apps]]
app_id = "cli_acme"
app_secret = "acme-secret"
tenants = ["acme"]
scopes = ["calendar:calendar", "calendar:calendar:readonly", "calendar:exchange.bindings:create",
          "calendar:exchange.bindings:read", "calendar:exchange.bindings:delete",
          "contact:user.email:readonly", "contact:user.employee_id:readonly"]
"#;

#[tokio::test]
async fn openapi_document_matches_the_live_server() {
    let root = repo_root();
    let python = root.join("tests/openapi/.venv/bin/python");
    if std::env::var("EXBIND_SKIP_SDK").as_deref() == Ok("1") {
        println!("skipped: OpenAPI check against the live server (EXBIND_SKIP_SDK=1)");
        return;
    }
    assert!(
        python.exists(),
        "the OpenAPI checker is not installed ({} is missing): run tests/sdk/install.sh \
         (or set EXBIND_SKIP_SDK=1 to skip it)",
        python.display()
    );

    let s = Server::builder().seed(OPENAPI_SEED).start();

    // The document as the server serves it: JSON, no auth, OpenAPI 3.1.
    let r = s
        .call(Method::GET, "/_exbind/openapi.json", None, None)
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    r.assert_json_content_type();
    assert!(
        r.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "not an OpenAPI 3.1 document: {}",
        r.body["openapi"]
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = tmp.path().join("openapi.json");
    std::fs::write(&spec, &r.text).expect("write the document");

    let user_token = s.mint("cli_acme", "acme", "boss").await;

    let mut cmd = script_command(&python);
    cmd.arg(root.join("tests/openapi/check.py"))
        .arg("--spec")
        .arg(&spec)
        .arg("--base-url")
        .arg(&s.base)
        .arg("--admin-token")
        .arg(&s.admin_token)
        .arg("--user-token")
        .arg(&user_token)
        .current_dir(tmp.path());
    // schemathesis is CPU-bound: on a loaded machine it takes several times its usual ~2
    // minutes. The bound only stops a hang.
    let (status, out, err) =
        tokio::task::spawn_blocking(move || run_to_exit(cmd, Duration::from_secs(1800)))
            .await
            .unwrap();
    assert!(
        status.success(),
        "the OpenAPI check failed ({status}) against {}.\n--- stdout ---\n{out}\n\
         --- stderr ---\n{err}\n--- exbind log (last 4000 bytes) ---\n{}",
        s.base,
        tail(&s.stderr_text(), 4000)
    );
    print!("{out}");
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}
