//! The console over plain HTTP: what a browser test does not show (redirect targets from a
//! query, the headers of every answer).

mod common;

use common::*;

/// Signs in through the form; the session cookie's `name=value`, and the redirect target.
fn sign_in(s: &Server, next: &str) -> (String, String) {
    let page = s.raw_request("GET", "/_exbind/console/sign-in", None, None);
    let nonce = page
        .body
        .split("name=\"signin\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the form's token")
        .to_string();
    let body = format!(
        "signin={nonce}&next={}&token={}",
        pct(next),
        pct(&s.admin_token)
    );
    let cookie = format!("exbind_signin={nonce}");
    let r = s.raw_with(
        "POST",
        "/_exbind/console/sign-in",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &cookie),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status(), 303, "{}", r.body);
    let session = r
        .header_lines
        .iter()
        .filter_map(|l| l.strip_prefix("Set-Cookie: "))
        .find(|c| c.starts_with("exbind_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    (session, r.exact("Location").unwrap())
}

#[tokio::test]
async fn redirects_are_pages_and_never_leave_the_console() {
    let s = Server::full();
    let r = s.raw_request("GET", "/_exbind/console/requests?code=0", None, None);
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.exact("Location").unwrap(),
        "/_exbind/console/sign-in?next=%2F%5Fexbind%2Fconsole%2Frequests%3Fcode%3D0"
    );
    assert_eq!(r.exact("Content-Type").unwrap(), "text/html; charset=utf-8");
    assert!(r
        .exact("Content-Security-Policy")
        .unwrap()
        .starts_with("default-src 'self'"));
    for (next, to) in [
        ("/_exbind/console/faults", "/_exbind/console/faults"),
        ("https://elsewhere.example/", "/_exbind/console/"),
        ("//elsewhere.example/_exbind/console/", "/_exbind/console/"),
        ("/_exbind/console/\r\nX-Injected: 1", "/_exbind/console/"),
    ] {
        let (_, location) = sign_in(&s, next);
        assert_eq!(location, to, "next={next:?}");
    }
}

#[tokio::test]
async fn a_sign_in_needs_its_form_and_the_admin_token() {
    let s = Server::full();
    // Posted without the form's own cookie (from another site, say): refused.
    let r = s.raw_with(
        "POST",
        "/_exbind/console/sign-in",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("signin=x&token={}", s.admin_token).as_bytes(),
    );
    assert_eq!(r.status(), 403);
    assert!(r.body.contains("This sign-in form has expired"));
    assert!(!r.header_lines.iter().any(|l| l.contains("exbind_session=")));

    let (session, _) = sign_in(&s, "/_exbind/console/");
    let page = s.raw_with("GET", "/_exbind/console/", &[("Cookie", &session)], b"");
    assert_eq!(page.status(), 200);
    assert!(page.body.contains("<h1>Overview</h1>"));
    // A forged or tampered cookie is no session.
    let last = if session.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &session[..session.len() - 1]);
    let r = s.raw_with("GET", "/_exbind/console/", &[("Cookie", &forged)], b"");
    assert_eq!(r.status(), 303);
    // The live script's request gets the live region alone.
    let part = s.raw_with(
        "GET",
        "/_exbind/console/requests",
        &[("Cookie", &session), ("X-Exbind-Fragment", "1")],
        b"",
    );
    assert_eq!(part.status(), 200);
    assert!(
        !part.body.contains("<html") && part.body.contains("No requests yet"),
        "{}",
        part.body
    );
}

/// The CSRF token of a signed-in page's forms.
fn csrf(s: &Server, session: &str) -> String {
    let page = s.raw_with("GET", "/_exbind/console/", &[("Cookie", session)], b"");
    assert_eq!(page.status(), 200, "{}", page.body);
    page.body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a form's CSRF token")
        .to_string()
}

#[tokio::test]
async fn a_signed_out_session_stays_out_after_a_restart() {
    let mut s = Server::full();
    let (gone, _) = sign_in(&s, "/_exbind/console/");
    let (kept, _) = sign_in(&s, "/_exbind/console/");
    let token = csrf(&s, &gone);
    let r = s.raw_with(
        "POST",
        "/_exbind/console/sign-out",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &gone),
        ],
        format!("csrf={token}").as_bytes(),
    );
    assert_eq!(r.status(), 303, "{}", r.body);
    assert_eq!(r.exact("Location").unwrap(), "/_exbind/console/sign-in");
    s.restart();
    let r = s.raw_with("GET", "/_exbind/console/", &[("Cookie", &gone)], b"");
    assert_eq!(r.status(), 303, "the signed-out cookie: {}", r.body);
    assert!(r
        .exact("Location")
        .unwrap()
        .starts_with("/_exbind/console/sign-in"));
    // The other session was not signed out: it still works, so the refusal is the sign-out's.
    let page = s.raw_with("GET", "/_exbind/console/", &[("Cookie", &kept)], b"");
    assert_eq!(page.status(), 200);
}

/// Found by fuzzing: a console path whose tenant key is empty asked the control plane for a
/// path of no route, whose empty answer the console reported as 502 "did not answer".
#[tokio::test]
async fn a_console_path_with_an_empty_tenant_key_is_not_found() {
    let s = Server::full();
    let (session, _) = sign_in(&s, "/_exbind/console/");
    for path in [
        "/_exbind/console/tenants//bindings",
        "/_exbind/console/tenants/",
    ] {
        let r = s.raw_with("GET", path, &[("Cookie", &session)], b"");
        assert_eq!(r.status(), 404, "{path}: {}", r.body);
        assert_eq!(r.exact("Content-Type").unwrap(), "text/html; charset=utf-8");
    }
}

#[tokio::test]
async fn a_console_path_segment_that_is_no_utf8_gets_the_error_page() {
    let s = Server::full();
    let (session, _) = sign_in(&s, "/_exbind/console/");
    for path in [
        "/_exbind/console/tenants/%FF",
        "/_exbind/console/tenants/ac%FEme/bindings",
        "/_exbind/console/tenants/acme/bindings/%FF%FF",
        "/_exbind/console/requests/%C3",
    ] {
        let r = s.raw_with("GET", path, &[("Cookie", &session)], b"");
        assert_eq!(r.status(), 400, "{path}: {}", r.body);
        assert_eq!(
            r.exact("Content-Type").unwrap(),
            "text/html; charset=utf-8",
            "{path}"
        );
        assert!(r.body.starts_with("<!DOCTYPE html>"), "{path}: {}", r.body);
        assert!(
            r.body.contains("This address cannot be read"),
            "{path}: {}",
            r.body
        );
    }
    // A form posted to such a path: the error page too, before the form is read.
    let r = s.raw_with(
        "POST",
        "/_exbind/console/tenants/%FF/actions",
        &[
            ("Cookie", &session),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"op=wipe",
    );
    assert!((400..500).contains(&r.status()), "{}", r.body);
    assert_eq!(r.exact("Content-Type").unwrap(), "text/html; charset=utf-8");
    // The same path with its bytes readable is the page.
    let r = s.raw_with(
        "GET",
        "/_exbind/console/tenants/acme",
        &[("Cookie", &session)],
        b"",
    );
    assert_eq!(r.status(), 200, "{}", r.body);
}
