//! The console in a real browser (Debian's chromium, headless, through Playwright): every
//! flow of console.md §4, axe-core on every page at phone and desktop width, a screenshot
//! of each (under `target/screenshots/`). One browser at a time: they share two cores.

mod common;

use common::*;

static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn browse(name: &str, args: &[&str]) {
    let _one = ONE_BROWSER.lock().await;
    let s = Server::full_with(args);
    let token = s.boss().await;
    browser_test(
        name,
        &s,
        &[
            ("EXBIND_ADMIN_TOKEN", &s.admin_token),
            ("EXBIND_USER_TOKEN", &token),
        ],
    )
    .await;
}

#[tokio::test]
async fn sign_in_csrf_and_sign_out() {
    browse("console_session", &[]).await;
}

#[tokio::test]
async fn bindings_live_and_steered_from_the_page() {
    browse(
        "console_bindings",
        &["--sync-stage-durations", "500ms,500ms,500ms"],
    )
    .await;
}

#[tokio::test]
async fn a_fault_armed_on_the_page_fires_and_the_journal_shows_it_live() {
    browse("console_faults", &[]).await;
}

#[tokio::test]
async fn seed_apps_tenant_and_overview_pages() {
    browse("console_pages", &[]).await;
}
