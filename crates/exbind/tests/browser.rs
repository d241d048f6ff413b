//! The browser-test harness itself (`tests/browser/lib.mjs`): Debian's chromium headless
//! through Playwright loads the server's stylesheet, the shared layout passes axe-core at
//! phone and desktop width, screenshots are saved, and requests to other hosts are caught.
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
