//! Rate limits (contract §5): the gateway quota per (method, app, tenant) with its 429
//! headers, the app and method budgets (190005 / 190004), and `--rate-limits off`.
mod common;

use common::*;
use reqwest::Method;

/// Sends `n` GETs of `path` at once, all inside one second of the server's quota windows.
async fn aligned_burst(s: &Server, n: usize, path: &str, tok: &str) -> Vec<Resp> {
    within_one_second(|| s.burst(n, Method::GET, path, Some(tok), None)).await
}

fn count(rs: &[Resp], code: i64) -> usize {
    rs.iter()
        .filter(|r| r.body["code"].as_i64() == Some(code))
        .count()
}

#[track_caller]
fn assert_quota_429(r: &Resp, limit: u64, max_reset: u64) {
    r.assert_err(429, 99991400);
    let lim: u64 = r
        .header("x-ogw-ratelimit-limit")
        .expect("limit header")
        .parse()
        .unwrap();
    assert_eq!(lim, limit, "{:?}", r.headers);
    let reset: u64 = r
        .header("x-ogw-ratelimit-reset")
        .expect("reset header")
        .parse()
        .unwrap();
    assert!(
        (1..=max_reset).contains(&reset),
        "reset {reset} not in 1..={max_reset}"
    );
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert_eq!(retry, reset, "Retry-After equals the reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn burst_of_80_admits_exactly_50_per_second() {
    let s = Server::full();
    let tok = s.boss().await;
    let d = s
        .bind(&tok, ACME_ADMIN, "alice.ex@acme.example", "alice")
        .await;
    let path = format!("{BINDINGS}/{}", d["exchange_binding_id"].as_str().unwrap());
    let rs = aligned_burst(&s, 80, &path, &tok).await;
    assert_eq!(count(&rs, 0), 50, "admitted");
    assert_eq!(count(&rs, 99991400), 30, "rejected");
    for r in rs.iter().filter(|r| r.body["code"] == 99991400) {
        assert_quota_429(r, 50, 1);
    }
}

#[tokio::test]
async fn quota_is_per_method_and_per_app() {
    let s = Server::full_with(&["--quota-per-second", "3"]);
    let tok = &s.boss().await;
    let tok2 = &s.mint("cli_acme2", "acme", "boss").await;
    let id = &binding_id(ACME_ADMIN, "nobody@acme.example");
    let s = &s;
    let rs = within_one_second(move || async move {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(s.get(tok, id, None).await);
        }
        // DELETE has its own quota, and so has another app.
        v.push(s.delete(tok, id).await);
        v.push(s.get(tok2, id, None).await);
        v
    })
    .await;
    // Admitted requests go on to fail at the lookup: 195103 still counts as admitted.
    let codes: Vec<i64> = rs.iter().map(|r| r.code()).collect();
    assert_eq!(
        codes,
        [195103, 195103, 195103, 99991400, 99991400, 195103, 195103]
    );
    assert_quota_429(&rs[3], 3, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejected_requests_do_not_count() {
    // 3 per second, 7 per minute. Two seconds of 5 requests each: if rejections counted
    // against the minute, the second second would admit fewer than 3.
    let s = Server::full_with(&["--quota-per-second", "3", "--quota-per-minute", "7"]);
    let tok = s.boss().await;
    let path = format!(
        "{BINDINGS}/{}",
        binding_id(ACME_ADMIN, "nobody@acme.example")
    );
    loop {
        // Room for three seconds, each of which may take a few tries on a loaded machine.
        ensure_minute_room(20).await;
        let minute = now_ms() / 60_000;
        let a = aligned_burst(&s, 5, &path, &tok).await;
        let b = aligned_burst(&s, 5, &path, &tok).await;
        let c = aligned_burst(&s, 5, &path, &tok).await;
        if now_ms() / 60_000 != minute {
            // Crossed a minute boundary: measure again from the start of a fresh minute
            // (this one already counts some of the requests).
            ensure_minute_room(61).await;
            continue;
        }
        assert_eq!(count(&a, 195103), 3, "first second");
        assert_eq!(
            count(&b, 195103),
            3,
            "second second: rejections did not count"
        );
        assert_eq!(
            count(&c, 195103),
            1,
            "third second: the minute window is full"
        );
        for r in c.iter().filter(|r| r.body["code"] == 99991400) {
            // The minute window is the one that is full.
            assert_quota_429(r, 7, 60);
        }
        break;
    }
}

#[tokio::test]
async fn minute_window_limits_and_reports_seconds_to_the_minute() {
    let s = Server::full_with(&["--quota-per-minute", "4"]);
    let tok = s.boss().await;
    let id = binding_id(ACME_ADMIN, "nobody@acme.example");
    ensure_minute_room(20).await;
    // Whole seconds to the end of the minute, as the server counts them.
    let left = || (60_000 - (now_ms() % 60_000) as u64).div_ceil(1000);
    let left_before = left();
    let mut codes = Vec::new();
    let mut last = None;
    for _ in 0..6 {
        let r = s.get(&tok, &id, None).await;
        codes.push(r.body["code"].as_i64().unwrap());
        last = Some(r);
    }
    assert_eq!(codes, [195103, 195103, 195103, 195103, 99991400, 99991400]);
    let left_after = left();
    let r = last.unwrap();
    assert_quota_429(&r, 4, 60);
    // The server counted them at a moment between the two readings of the same clock.
    let reset: u64 = r.header("x-ogw-ratelimit-reset").unwrap().parse().unwrap();
    assert!(
        (left_after..=left_before).contains(&reset),
        "reset {reset}s, but the minute ends in {left_after}..={left_before}s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_off_lets_everything_through() {
    let s = Server::full_with(&[
        "--rate-limits",
        "off",
        "--quota-per-second",
        "1",
        "--quota-per-minute",
        "1",
        "--app-budget-per-second",
        "1",
        "--method-budget-per-second",
        "1",
    ]);
    let tok = s.boss().await;
    let path = format!(
        "{BINDINGS}/{}",
        binding_id(ACME_ADMIN, "nobody@acme.example")
    );
    let rs = s.burst(200, Method::GET, &path, Some(&tok), None).await;
    assert_eq!(count(&rs, 195103), 200, "all 200 admitted");
}

#[tokio::test]
async fn app_budget_spans_methods_and_gives_190005() {
    let s = Server::full_with(&["--app-budget-per-second", "3"]);
    let tok = &s.boss().await;
    let tok2 = &s.mint("cli_acme2", "acme", "boss").await;
    let id = &binding_id(ACME_ADMIN, "nobody@acme.example");
    let s = &s;
    let rs = within_one_second(move || async move {
        vec![
            s.get(tok, id, None).await,
            s.delete(tok, id).await,
            s.get(tok, id, None).await,
            s.delete(tok, id).await,
            s.get(tok, id, None).await,
            // Another app of the tenant has its own budget.
            s.get(tok2, id, None).await,
        ]
    })
    .await;
    for r in [&rs[0], &rs[1], &rs[2], &rs[5]] {
        r.assert_err(404, 195103);
    }
    rs[3].assert_err(429, 190005);
    rs[4].assert_err(429, 190005);
}

#[tokio::test]
async fn method_budget_spans_apps_and_gives_190004() {
    let s = Server::full_with(&["--method-budget-per-second", "3"]);
    let t1 = &s.boss().await;
    let t2 = &s.mint("cli_acme2", "acme", "boss").await;
    let id = &binding_id(ACME_ADMIN, "nobody@acme.example");
    let s = &s;
    let rs = within_one_second(move || async move {
        vec![
            s.get(t1, id, None).await,
            s.get(t2, id, None).await,
            s.get(t1, id, None).await,
            s.get(t2, id, None).await,
            // Delete is another method.
            s.delete(t1, id).await,
        ]
    })
    .await;
    for r in &rs[..3] {
        r.assert_err(404, 195103);
    }
    rs[3].assert_err(429, 190004);
    rs[4].assert_err(404, 195103);
}

#[tokio::test]
async fn budget_rejections_do_not_count() {
    // App budget 2, method budget 4: the 3 requests cli_acme has rejected by its app budget
    // must not use up the method budget, so cli_acme2 still gets 2 through; only then is
    // the method budget full (for a third app).
    let s = Server::full_with(&[
        "--app-budget-per-second",
        "2",
        "--method-budget-per-second",
        "4",
    ]);
    let t1 = &s.boss().await;
    let t2 = &s.mint("cli_acme2", "acme", "boss").await;
    let t3 = &s.mint("cli_other", "acme", "boss").await;
    let id = &binding_id(ACME_ADMIN, "nobody@acme.example");
    let s = &s;
    let rs = within_one_second(move || async move {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(s.get(t1, id, None).await);
        }
        for _ in 0..2 {
            v.push(s.get(t2, id, None).await);
        }
        v.push(s.get(t3, id, None).await);
        v
    })
    .await;
    let codes: Vec<i64> = rs.iter().map(|r| r.code()).collect();
    assert_eq!(
        codes,
        [195103, 195103, 190005, 190005, 190005, 195103, 195103, 190004]
    );
    rs[2].assert_err(429, 190005);
    rs[7].assert_err(429, 190004);
}

#[tokio::test]
async fn gateway_rejections_do_not_use_budget() {
    // Quota 2 per method, app budget 3 over all methods: two GETs pass, two are 429; then
    // the app still has one budget slot left for a DELETE.
    let s = Server::full_with(&["--quota-per-second", "2", "--app-budget-per-second", "3"]);
    let tok = &s.boss().await;
    let id = &binding_id(ACME_ADMIN, "nobody@acme.example");
    let s = &s;
    let rs = within_one_second(move || async move {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(s.get(tok, id, None).await);
        }
        v.push(s.delete(tok, id).await);
        v.push(s.delete(tok, id).await);
        v
    })
    .await;
    let codes: Vec<i64> = rs.iter().map(|r| r.code()).collect();
    assert_eq!(codes, [195103, 195103, 99991400, 99991400, 195103, 190005]);
}

#[tokio::test]
async fn quota_comes_before_scope() {
    let s = Server::full_with(&["--quota-per-second", "2"]);
    let tok = &s.mint("cli_readonly", "acme", "boss").await;
    let tenant = &s.tenant_token("cli_readonly", "readonly-secret").await;
    let id = &binding_id(ACME_ADMIN, "nobody@acme.example");
    let s = &s;
    let rs = within_one_second(move || async move {
        vec![
            s.delete(tok, id).await,
            s.delete(tok, id).await,
            s.delete(tok, id).await,
            // Tenant tokens stop before the quota: never 429.
            s.delete(tenant, id).await,
        ]
    })
    .await;
    rs[0].assert_err_msg(400, 99991672, &scope_msg(&DELETE_SCOPES));
    rs[1].assert_err_msg(400, 99991672, &scope_msg(&DELETE_SCOPES));
    rs[2].assert_err(429, 99991400);
    rs[3].assert_err(400, 99991663);
}

#[tokio::test]
async fn uninstalled_app_is_never_rate_limited() {
    let s = Server::full_with(&["--quota-per-second", "1"]);
    let tok = s.boss().await;
    s.patch_ok(
        "/_exbind/v1/apps/cli_acme",
        serde_json::json!({"tenants": []}),
    )
    .await;
    let id = binding_id(ACME_ADMIN, "nobody@acme.example");
    for _ in 0..4 {
        s.get(&tok, &id, None).await.assert_err(403, 190006);
    }
}

#[tokio::test]
async fn quota_before_budget_and_caller() {
    // Budget 1 per second, quota 2: a non-admin caller sees 195101, then 190005, then 429.
    let s = Server::full_with(&["--quota-per-second", "2", "--app-budget-per-second", "1"]);
    let alice = &s.mint("cli_acme", "acme", "alice").await;
    let id = &binding_id(ACME_ADMIN, "nobody@acme.example");
    let s = &s;
    let rs = within_one_second(move || async move {
        vec![
            s.get(alice, id, None).await,
            s.get(alice, id, None).await,
            s.get(alice, id, None).await,
        ]
    })
    .await;
    rs[0].assert_err(403, 195101);
    rs[1].assert_err(429, 190005);
    rs[2].assert_err(429, 99991400);
}
