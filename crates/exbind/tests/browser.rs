//! The browser-test harness itself (`tests/browser/lib.mjs`): Debian's chromium headless
//! through Playwright loads the server's stylesheet, the shared layout passes axe-core at
//! phone and desktop width, screenshots are saved, and requests to other hosts are caught.
//! And `exbind login` completed by that browser (`tests/browser/cli_login.mjs`).
mod common;

use common::*;

#[tokio::test]
async fn the_browser_harness_drives_chromium_against_the_server() {
    let s = Server::basic();
    let out = browser_test("harness", &s, &[]).await;
    assert!(out.contains("harness: ok"), "{out}");
    for name in ["layout-desktop", "layout-phone"] {
        let png = screenshot_dir("harness").join(format!("{name}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", png.display());
    }
}

#[tokio::test]
async fn the_authorize_flow_in_a_browser_from_the_link_to_the_redirect() {
    let s = Server::builder().seed(LOGIN_SEED).start();
    let out = browser_test(
        "authorize_flow",
        &s,
        &[
            ("EXBIND_APP_ID", "cli_login"),
            ("EXBIND_APP_SECRET", "login-secret"),
        ],
    )
    .await;
    assert!(out.contains("authorize_flow: ok"), "{out}");
    for page in ["choose-account", "consent"] {
        for width in ["desktop", "phone"] {
            let png = screenshot_dir("authorize_flow").join(format!("{page}-{width}.png"));
            assert!(png.exists(), "{}", png.display());
        }
    }
}

/// `exbind login --no-browser` against a real server, its URL completed in Chromium (account,
/// Authorize, the redirect to the CLI's listener); then `exbind whoami` and `exbind get`
/// with the stored login.
#[tokio::test]
async fn exbind_login_completed_by_a_real_browser() {
    let s = Server::basic();
    let xdg = tempfile::tempdir().unwrap();
    let login = CliLogin::start(xdg.path(), &s.base, &[]);
    let out = browser_test(
        "cli_login",
        &s,
        &[
            ("LOGIN_URL", login.url.as_str()),
            ("LOGIN_USER", "acme/boss"),
        ],
    )
    .await;
    assert!(out.contains("cli_login: ok"), "{out}");
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || login.finish())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("as Boss with app cli_acme"), "{stdout}");
    let run = |args: &[&str]| cli_run(cli_in(xdg.path(), args), std::time::Duration::from_secs(60));
    let who = run(&["whoami"]);
    who.success();
    assert!(who.stdout.contains("Boss"), "{who:#?}");
    let id = binding_id(ACME_ADMIN, "nobody@acme.example");
    let got = run(&["get", &id, "--json"]);
    assert_eq!(
        got.json()["code"],
        195103,
        "the stored login was used: {got:#?}"
    );
    for name in ["cli-login-account", "cli-login-consent", "cli-login-done"] {
        assert!(
            screenshot_dir("cli_login")
                .join(format!("{name}.png"))
                .exists(),
            "{name}"
        );
    }
}
