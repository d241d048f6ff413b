//! The sync engine (contract §4.7, product.md "Sync, faults, journal, reset"): the stage
//! schedule, its history, catching up after a restart, scenarios per Exchange account, and
//! the control plane's force / advance / complete.
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const STAGES: [&str; 4] = ["doing", "cal_done", "timespan_done", "done"];

/// A tenant with many plain users (every one a bind target), scenarios from the seed, and a
/// second tenant.
const SYNC_SEED: &str = r#"
[[tenants]]
tenant_key = "acme"

[[tenants.users]]
user_id = "boss"
super_admin = true

[[tenants.users]]
user_id = "u1"
[[tenants.users]]
user_id = "u2"
[[tenants.users]]
user_id = "u3"
[[tenants.users]]
user_id = "u4"
[[tenants.users]]
user_id = "u5"
[[tenants.users]]
user_id = "u6"
[[tenants.users]]
user_id = "u7"
[[tenants.users]]
user_id = "u8"
[[tenants.users]]
user_id = "u9"

[[tenants.exchange_admins]]
account = "exadmin@acme.example"

[[tenants.exchange_admins]]
account = "exadmin2@acme.example"

[[tenants.exchange_accounts]]
account = "fail@acme.example"
scenario = "fail"
reason = "mailbox quota exceeded"

[[tenants.exchange_accounts]]
account = "fail-ts@acme.example"
scenario = "fail"
stage = "timespan_done"
reason = "calendar too large"

[[tenants.exchange_accounts]]
account = "fail-done@acme.example"
scenario = "fail"
stage = "done"
reason = "last step broke"

[[tenants.exchange_accounts]]
account = "stall@acme.example"
scenario = "stall"

[[tenants.exchange_accounts]]
account = "Stall-TS@Acme.Example"
scenario = "stall"
stage = "timespan_done"

[[tenants.exchange_accounts]]
account = "instant@acme.example"
scenario = "instant"

[[tenants.exchange_accounts]]
account = "normal@acme.example"
scenario = "normal"

[[tenants]]
tenant_key = "globex"

[[tenants.users]]
user_id = "gboss"
super_admin = true

[[tenants.users]]
user_id = "gina"

[[tenants.exchange_admins]]
account = "exadmin@globex.example"

[[apps]]
app_id = "cli_sync"
app_secret = "sync-secret"
tenants = ["acme"]
scopes = ["calendar:calendar", "calendar:calendar:readonly", "calendar:exchange.bindings:create",
          "calendar:exchange.bindings:read", "calendar:exchange.bindings:delete",
          "contact:user.email:readonly", "contact:user.employee_id:readonly"]

[[apps]]
app_id = "cli_gsync"
app_secret = "gsync-secret"
tenants = ["globex"]
scopes = ["calendar:calendar", "calendar:calendar:readonly", "calendar:exchange.bindings:create",
          "calendar:exchange.bindings:read", "calendar:exchange.bindings:delete",
          "contact:user.email:readonly", "contact:user.employee_id:readonly"]
"#;

const ADMIN: &str = "exadmin@acme.example";

fn sync_server(durations: &str) -> Server {
    Server::builder()
        .seed(SYNC_SEED)
        .args(&["--sync-stage-durations", durations])
        .start()
}

async fn boss(s: &Server) -> String {
    s.mint("cli_sync", "acme", "boss").await
}

/// Creates a binding under `ADMIN` and checks the create answered `doing`; returns its id.
async fn bind_doing(s: &Server, token: &str, exchange: &str, user: &str) -> String {
    let data = s.bind(token, ADMIN, exchange, user).await;
    assert_eq!(data["status"], "doing", "create must answer doing: {data}");
    let id = data["exchange_binding_id"].as_str().unwrap().to_string();
    assert_eq!(id, binding_id(ADMIN, exchange));
    id
}

fn ms(v: &Value, key: &str) -> i64 {
    rfc3339_ms(v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}")))
}

/// Asserts that the history reads `statuses` with each step exactly `gaps[i]` ms after the
/// one before (the first at `created_at`). A step's time is its scheduled deadline, computed
/// by the server from the one before, so this holds to the millisecond however late the
/// engine took the step, and compares no clock with another.
#[track_caller]
fn assert_schedule(view: &Value, statuses: &[&str], gaps: &[i64]) {
    let h = history_of(view);
    let got: Vec<&str> = h.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(got, statuses, "history of {view}");
    let created = ms(view, "created_at");
    assert_eq!(h[0].1, created, "first step must be at created_at: {view}");
    for (i, gap) in gaps.iter().enumerate() {
        let d = h[i + 1].1 - h[i].1;
        assert_eq!(
            d,
            *gap,
            "step {} ({}) should come {gap} ms after the one before: {view}",
            i + 1,
            h[i + 1].0
        );
    }
}

/// Feishu GET of a binding must show `status`.
async fn feishu_status(s: &Server, token: &str, id: &str) -> String {
    let r = s.get(token, id, None).await;
    r.ok()["status"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn stages_follow_the_schedule_with_scheduled_times() {
    let s = sync_server("300ms,300ms,300ms");
    let tok = boss(&s).await;
    let t0 = now_ms() as i64;
    let id = bind_doing(&s, &tok, "sched@acme.example", "u1").await;
    let t1 = now_ms() as i64;

    // Just after the create: doing, one history step, created_at while it was in flight (the
    // server reads the same system clock as this test).
    let row = s.binding_row("acme", &id).await.expect("listed");
    assert_eq!(row["status"], "doing");
    assert_eq!(history_statuses(&row), vec!["doing"]);
    let created = ms(&row, "created_at");
    assert!(
        (t0..=t1).contains(&created),
        "created_at {created} not between {t0} and {t1}"
    );
    assert!(row.get("reason").is_none(), "no reason unless err: {row}");

    // Watch it move: never backwards, never before its deadline.
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now_before = now_ms() as i64;
        let st = feishu_status(&s, &tok, &id).await;
        let idx = STAGES.iter().position(|x| *x == st).unwrap_or_else(|| {
            panic!("unexpected status {st}");
        });
        let due = created + 300 * idx as i64;
        assert!(
            now_ms() as i64 >= due - 20,
            "{st} seen before its deadline ({} ms after create, due {} ms)",
            now_before - created,
            due - created
        );
        if seen.last() != Some(&st) {
            if let Some(last) = seen.last() {
                let li = STAGES.iter().position(|x| x == last).unwrap();
                assert!(idx > li, "status went from {last} to {st}");
            }
            seen.push(st.clone());
        }
        if st == "done" {
            break;
        }
        assert!(Instant::now() < deadline, "not done in time; seen {seen:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The engine woke at the deadlines, not at its once-a-minute look: done came within
    // seconds of the create (however loaded the machine), not a minute later.
    let done_seen = now_ms() as i64;
    assert!(
        done_seen - created < 900 + 20_000,
        "done only after {} ms",
        done_seen - created
    );

    let row = s.binding_row("acme", &id).await.unwrap();
    assert_eq!(row["status"], "done");
    assert_schedule(&row, &STAGES, &[300, 300, 300]);
    let updated = ms(&row, "updated_at");
    assert!(updated >= created, "updated_at before created_at: {row}");
    assert_eq!(row["user_id"], "u1");
    assert_eq!(row["admin_account"], ADMIN);
    assert_eq!(row["exchange_account"], "sched@acme.example");

    // It stays done.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let row2 = s.binding_row("acme", &id).await.unwrap();
    assert_eq!(row2["status"], "done");
    assert_eq!(history_of(&row2), history_of(&row));
    assert_eq!(feishu_status(&s, &tok, &id).await, "done");
}

/// Bindings stepping every few milliseconds (forced back to `doing` over and over), read
/// again and again through the bindings list: no read sees a step's status without its
/// history entry, or the other way round.
#[tokio::test]
async fn a_binding_view_never_shows_half_a_step() {
    let s = Arc::new(sync_server("5ms,5ms,5ms"));
    let tok = boss(&s).await;
    let mut ids = Vec::new();
    for u in 1..=9 {
        ids.push(
            bind_doing(
                &s,
                &tok,
                &format!("moment{u}@acme.example"),
                &format!("u{u}"),
            )
            .await,
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let restarts = tokio::spawn({
        let (s, stop, ids) = (s.clone(), stop.clone(), ids.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                for id in &ids {
                    // A forced step answers the binding as it is after it, also as of one
                    // moment; it is refused when the engine stepped the binding meanwhile.
                    let r = force(&s, "acme", id, json!({"status": "doing"})).await;
                    if r.status == 200 {
                        assert_one_moment(r.ok());
                    } else {
                        r.assert_err(429, 190010);
                    }
                }
            }
        }
    });
    for _ in 0..300 {
        s.list_bindings("acme")
            .await
            .iter()
            .for_each(assert_one_moment);
    }
    stop.store(true, Ordering::Relaxed);
    restarts.await.unwrap();
}

#[tokio::test]
async fn idempotent_create_answers_the_current_status() {
    let s = sync_server("200ms,200ms,200ms");
    let tok = boss(&s).await;
    let id = bind_doing(&s, &tok, "again@acme.example", "u1").await;
    s.wait_binding("acme", &id, "done").await;
    let again = s.bind(&tok, ADMIN, "again@acme.example", "u1").await;
    assert_eq!(again["status"], "done", "{again}");
    // No new history for the repeat.
    let row = s.binding_row("acme", &id).await.unwrap();
    assert_eq!(history_statuses(&row), STAGES);
}

#[tokio::test]
async fn overdue_bindings_catch_up_after_kill9_at_their_scheduled_times() {
    let mut s = sync_server("200ms,200ms,200ms");
    let tok = boss(&s).await;
    let a = bind_doing(&s, &tok, "down-a@acme.example", "u1").await;
    let b = bind_doing(&s, &tok, "down-b@acme.example", "u2").await;
    // A binding already done before the kill keeps its history.
    s.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.restart();
    for id in [&a, &b] {
        let row = s.wait_binding("acme", id, "done").await;
        assert_schedule(&row, &STAGES, &[200, 200, 200]);
    }
    let tok2 = boss(&s).await;
    assert_eq!(feishu_status(&s, &tok2, &a).await, "done");
    // The old token survives too.
    assert_eq!(feishu_status(&s, &tok, &b).await, "done");
}

#[tokio::test]
async fn partly_overdue_binding_catches_up_then_resumes_on_schedule() {
    // The last stage is long, so that even a slow restart sees the binding between
    // timespan_done (+600 ms) and done (+8.6 s).
    let mut s = sync_server("300ms,300ms,8s");
    let tok = boss(&s).await;
    let id = bind_doing(&s, &tok, "half@acme.example", "u1").await;
    let created = ms(&s.binding_row("acme", &id).await.unwrap(), "created_at");
    s.kill9();
    // Restart between timespan_done (+600) and done (+8600).
    let wait = (created + 900 - now_ms() as i64).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    s.restart();
    let row = s.wait_binding("acme", &id, "timespan_done").await;
    assert_schedule(&row, &STAGES[..3], &[300, 300]);
    assert!(
        (now_ms() as i64) < created + 8600,
        "the test was too slow to see timespan_done"
    );
    // And the last stage comes at its original deadline.
    let row = s.wait_binding("acme", &id, "done").await;
    assert_schedule(&row, &STAGES, &[300, 300, 8000]);
}

#[tokio::test]
async fn graceful_restart_also_resumes() {
    let mut s = sync_server("250ms,250ms,250ms");
    let tok = boss(&s).await;
    let id = bind_doing(&s, &tok, "term@acme.example", "u1").await;
    s.wait_binding("acme", &id, "cal_done").await;
    assert!(s.terminate().success());
    tokio::time::sleep(Duration::from_millis(800)).await;
    s.restart();
    let row = s.wait_binding("acme", &id, "done").await;
    assert_schedule(&row, &STAGES, &[250, 250, 250]);
}

#[tokio::test]
async fn delete_stops_the_sync_and_a_rebind_starts_fresh() {
    let s = sync_server("300ms,300ms,300ms");
    let tok = boss(&s).await;
    let id = bind_doing(&s, &tok, "rebind@acme.example", "u1").await;
    let first = s.wait_binding("acme", &id, "cal_done").await;
    s.delete(&tok, &id).await.ok();
    assert!(s.binding_row("acme", &id).await.is_none());
    s.get(&tok, &id, None).await.assert_err(404, 195103);

    // Rebind at once: the old schedule must not leak into the new binding.
    let id2 = bind_doing(&s, &tok, "rebind@acme.example", "u1").await;
    assert_eq!(id2, id);
    let row = s.binding_row("acme", &id).await.unwrap();
    assert_eq!(history_statuses(&row), vec!["doing"], "{row}");
    assert!(ms(&row, "created_at") >= ms(&first, "created_at"));
    let row = s.wait_binding("acme", &id, "done").await;
    assert_schedule(&row, &STAGES, &[300, 300, 300]);
    assert!(ms(&row, "created_at") > history_of(&first)[1].1 - 5);

    // Delete for good: nothing comes back later.
    s.delete(&tok, &id).await.ok();
    let id3 = bind_doing(&s, &tok, "other@acme.example", "u2").await;
    s.delete(&tok, &id3).await.ok();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(s.list_bindings("acme").await.is_empty());
    s.get(&tok, &id3, None).await.assert_err(404, 195103);
}

#[tokio::test]
async fn seed_scenarios_shape_each_sync() {
    let s = sync_server("300ms,300ms,300ms");
    let tok = boss(&s).await;
    let cases = [
        ("fail@acme.example", "u1"),
        ("fail-ts@acme.example", "u2"),
        ("fail-done@acme.example", "u3"),
        ("stall@acme.example", "u4"),
        ("stall-ts@acme.example", "u5"),
        ("instant@acme.example", "u6"),
        ("normal@acme.example", "u7"),
        ("plain@acme.example", "u8"),
    ];
    let mut ids = Vec::new();
    for (acct, user) in cases {
        ids.push(bind_doing(&s, &tok, acct, user).await);
    }

    // instant: done right away, every step at the create's time.
    let inst = s.wait_binding("acme", &ids[5], "done").await;
    assert_schedule(&inst, &STAGES, &[0, 0, 0]);

    // fail (default stage cal_done): err instead of entering cal_done, reason kept.
    let f = s.wait_binding("acme", &ids[0], "err").await;
    assert_schedule(&f, &["doing", "err"], &[300]);
    assert_eq!(f["reason"], "mailbox quota exceeded");
    assert_eq!(feishu_status(&s, &tok, &ids[0]).await, "err");

    let f = s.wait_binding("acme", &ids[1], "err").await;
    assert_schedule(&f, &["doing", "cal_done", "err"], &[300, 300]);
    assert_eq!(f["reason"], "calendar too large");

    let f = s.wait_binding("acme", &ids[2], "err").await;
    assert_schedule(
        &f,
        &["doing", "cal_done", "timespan_done", "err"],
        &[300, 300, 300],
    );
    assert_eq!(f["reason"], "last step broke");

    for i in [6, 7] {
        let n = s.wait_binding("acme", &ids[i], "done").await;
        assert_schedule(&n, &STAGES, &[300, 300, 300]);
        assert!(n.get("reason").is_none());
    }

    // Stalls: the normal bindings made after them are done, so the engine has taken every
    // step that was due before; still the stalled ones are where they stalled.
    let st = s.binding_row("acme", &ids[3]).await.unwrap();
    assert_eq!(st["status"], "doing", "{st}");
    assert_eq!(history_statuses(&st), vec!["doing"]);
    assert!(st.get("reason").is_none());
    // The seed's account is spelled differently: addresses compare case-insensitively.
    let st = s.binding_row("acme", &ids[4]).await.unwrap();
    assert_eq!(st["status"], "timespan_done", "{st}");
    assert_schedule(&st, &STAGES[..3], &[300, 300]);
    assert_eq!(feishu_status(&s, &tok, &ids[4]).await, "timespan_done");

    // A stalled binding can still be pushed by hand.
    let r = s
        .admin(
            Method::POST,
            &format!("/_exbind/v1/tenants/acme/bindings/{}/advance", ids[4]),
            None,
        )
        .await;
    assert_eq!(r.ok()["status"], "done");
}

#[tokio::test]
async fn scenarios_survive_a_restart() {
    let mut s = sync_server("200ms,200ms,200ms");
    let tok = boss(&s).await;
    let f = bind_doing(&s, &tok, "fail-ts@acme.example", "u1").await;
    let st = bind_doing(&s, &tok, "stall-ts@acme.example", "u2").await;
    // Made last, so each of its deadlines comes after the same deadline of the others.
    let plain = bind_doing(&s, &tok, "plain@acme.example", "u3").await;
    s.kill9();
    tokio::time::sleep(Duration::from_millis(900)).await;
    s.restart();
    let row = s.wait_binding("acme", &f, "err").await;
    assert_schedule(&row, &["doing", "cal_done", "err"], &[200, 200]);
    assert_eq!(row["reason"], "calendar too large");
    // Once the plain one is done, every step the stalled one had due was taken.
    s.wait_binding("acme", &plain, "done").await;
    let row = s.binding_row("acme", &st).await.unwrap();
    assert_eq!(row["status"], "timespan_done");
    assert_schedule(&row, &STAGES[..3], &[200, 200]);
}

fn scenario_path(tenant: &str, account: &str) -> String {
    format!("/_exbind/v1/tenants/{tenant}/exchange_accounts/{account}/scenario")
}

async fn put_scenario(s: &Server, tenant: &str, account: &str, body: Value) -> Resp {
    s.admin(Method::PUT, &scenario_path(tenant, account), Some(&body))
        .await
}

#[tokio::test]
async fn scenarios_set_and_cleared_through_the_control_plane() {
    let s = sync_server("300ms,300ms,300ms");
    let tok = boss(&s).await;

    // A binding made before the scenario is set keeps the normal schedule.
    let before = bind_doing(&s, &tok, "late@acme.example", "u1").await;
    put_scenario(
        &s,
        "acme",
        "late@acme.example",
        json!({"scenario": "fail", "stage": "timespan_done", "reason": "nope"}),
    )
    .await
    .ok();
    let row = s.wait_binding("acme", &before, "done").await;
    assert_schedule(&row, &STAGES, &[300, 300, 300]);

    // Unbind and bind again: now the scenario applies.
    s.delete(&tok, &before).await.ok();
    let after = bind_doing(&s, &tok, "late@acme.example", "u1").await;
    // Clearing the scenario now does not change a binding already made under it.
    let r = s
        .admin(
            Method::DELETE,
            &scenario_path("acme", "late@acme.example"),
            None,
        )
        .await;
    r.ok();
    let row = s.wait_binding("acme", &after, "err").await;
    assert_schedule(&row, &["doing", "cal_done", "err"], &[300, 300]);
    assert_eq!(row["reason"], "nope");

    // Cleared: deleting again is 404, and the next binding is normal.
    s.admin(
        Method::DELETE,
        &scenario_path("acme", "late@acme.example"),
        None,
    )
    .await
    .assert_err(404, 99991201);
    s.delete(&tok, &after).await.ok();
    let third = bind_doing(&s, &tok, "late@acme.example", "u1").await;
    s.wait_binding("acme", &third, "done").await;

    // Defaults: fail → cal_done, stall → doing.
    put_scenario(&s, "acme", "f2@acme.example", json!({"scenario": "fail"}))
        .await
        .ok();
    put_scenario(&s, "acme", "s2@acme.example", json!({"scenario": "stall"}))
        .await
        .ok();
    // A later PUT replaces an earlier one.
    put_scenario(&s, "acme", "i2@acme.example", json!({"scenario": "stall"}))
        .await
        .ok();
    put_scenario(
        &s,
        "acme",
        "i2@acme.example",
        json!({"scenario": "instant"}),
    )
    .await
    .ok();
    put_scenario(
        &s,
        "acme",
        "st2@acme.example",
        json!({"scenario": "stall", "stage": "cal_done"}),
    )
    .await
    .ok();
    let f2 = bind_doing(&s, &tok, "f2@acme.example", "u2").await;
    let s2 = bind_doing(&s, &tok, "s2@acme.example", "u3").await;
    let i2 = bind_doing(&s, &tok, "i2@acme.example", "u4").await;
    let st2 = bind_doing(&s, &tok, "st2@acme.example", "u5").await;
    // Made last: when it is done, every step the others had due was taken.
    let plain = bind_doing(&s, &tok, "plain2@acme.example", "u6").await;
    let row = s.wait_binding("acme", &i2, "done").await;
    assert_schedule(&row, &STAGES, &[0, 0, 0]);
    let row = s.wait_binding("acme", &f2, "err").await;
    assert_schedule(&row, &["doing", "err"], &[300]);
    s.wait_binding("acme", &plain, "done").await;
    let row = s.binding_row("acme", &s2).await.unwrap();
    assert_eq!(history_statuses(&row), vec!["doing"]);
    let row = s.binding_row("acme", &st2).await.unwrap();
    assert_schedule(&row, &STAGES[..2], &[300]);
}

#[tokio::test]
async fn scenario_bodies_are_validated() {
    let s = sync_server("1m,1m,1m");
    let acct = "v@acme.example";
    for body in [
        json!({"scenario": "bogus"}),
        json!({"scenario": "fail", "stage": "doing"}),
        json!({"scenario": "fail", "stage": "err"}),
        json!({"scenario": "fail", "stage": "nowhere"}),
        json!({"scenario": "stall", "stage": "done"}),
        json!({"scenario": "stall", "stage": "err"}),
        json!({"scenario": "normal", "stage": "doing"}),
        json!({"scenario": "instant", "stage": "cal_done"}),
        json!({"stage": "doing"}),
        json!({}),
        json!("stall"),
    ] {
        put_scenario(&s, "acme", acct, body.clone())
            .await
            .assert_err(400, 190002);
    }
    for body in [
        json!({"scenario": "fail", "stage": "cal_done"}),
        json!({"scenario": "fail", "stage": "timespan_done"}),
        json!({"scenario": "fail", "stage": "done", "reason": "x"}),
        json!({"scenario": "stall", "stage": "doing"}),
        json!({"scenario": "stall", "stage": "cal_done"}),
        json!({"scenario": "stall", "stage": "timespan_done"}),
        json!({"scenario": "normal"}),
        json!({"scenario": "instant"}),
    ] {
        put_scenario(&s, "acme", acct, body.clone()).await.ok();
    }
    put_scenario(&s, "nope", acct, json!({"scenario": "stall"}))
        .await
        .assert_err(404, 99991201);
    // The admin token is required.
    let r = s
        .call(
            Method::PUT,
            &scenario_path("acme", acct),
            None,
            Some(&json!({"scenario": "stall"})),
        )
        .await;
    r.assert_err(401, 99991661);
    // DELETE with no scenario set → 404.
    s.admin(
        Method::DELETE,
        &scenario_path("acme", "never@acme.example"),
        None,
    )
    .await
    .assert_err(404, 99991201);
}

fn binding_path(tenant: &str, id: &str) -> String {
    format!("/_exbind/v1/tenants/{tenant}/bindings/{id}")
}

async fn advance(s: &Server, tenant: &str, id: &str) -> Resp {
    s.admin(
        Method::POST,
        &format!("{}/advance", binding_path(tenant, id)),
        None,
    )
    .await
}

async fn force(s: &Server, tenant: &str, id: &str, body: Value) -> Resp {
    s.admin(Method::PATCH, &binding_path(tenant, id), Some(&body))
        .await
}

#[tokio::test]
async fn advance_moves_one_stage_at_a_time() {
    let s = sync_server("10m,10m,10m");
    let tok = boss(&s).await;
    let id = bind_doing(&s, &tok, "adv@acme.example", "u1").await;
    for (i, next) in STAGES[1..].iter().enumerate() {
        let r = advance(&s, "acme", &id).await;
        let v = r.ok();
        assert_eq!(v["status"], *next, "{v}");
        assert_eq!(v["exchange_binding_id"], id);
        assert_eq!(v["user_id"], "u1");
        assert_eq!(history_statuses(v), STAGES[..i + 2].to_vec());
        assert_eq!(feishu_status(&s, &tok, &id).await, *next);
        let row = s.binding_row("acme", &id).await.unwrap();
        assert_eq!(row["status"], *next);
        assert_eq!(history_of(&row), history_of(v));
    }
    // done cannot advance.
    advance(&s, "acme", &id).await.assert_err(400, 190002);
    assert_eq!(feishu_status(&s, &tok, &id).await, "done");
    // An id that does not decode, an unknown binding, an unknown tenant, another tenant.
    advance(&s, "acme", "!!!notbase64")
        .await
        .assert_err(400, 190002);
    advance(&s, "acme", &binding_id(ADMIN, "nobody@acme.example"))
        .await
        .assert_err(404, 99991201);
    advance(&s, "nope", &id).await.assert_err(404, 99991201);
    advance(&s, "globex", &id).await.assert_err(404, 99991201);
}

#[tokio::test]
async fn force_sets_any_status_and_err_keeps_its_reason() {
    let s = sync_server("10m,10m,10m");
    let tok = boss(&s).await;
    let id = bind_doing(&s, &tok, "force@acme.example", "u1").await;

    let v = force(&s, "acme", &id, json!({"status": "timespan_done"})).await;
    let v = v.ok();
    assert_eq!(v["status"], "timespan_done");
    assert_eq!(
        history_statuses(v).last().map(String::as_str),
        Some("timespan_done")
    );
    assert!(v.get("reason").is_none());
    assert_eq!(feishu_status(&s, &tok, &id).await, "timespan_done");

    let v = force(&s, "acme", &id, json!({"status": "err", "reason": "boom"})).await;
    let v = v.ok();
    assert_eq!(v["status"], "err");
    assert_eq!(v["reason"], "boom");
    assert_eq!(history_statuses(v).last().map(String::as_str), Some("err"));
    assert_eq!(feishu_status(&s, &tok, &id).await, "err");
    let row = s.binding_row("acme", &id).await.unwrap();
    assert_eq!(row["status"], "err");
    assert_eq!(row["reason"], "boom");
    // err cannot advance.
    advance(&s, "acme", &id).await.assert_err(400, 190002);

    // Bad bodies.
    for body in [
        json!({"status": "done", "reason": "only err takes one"}),
        json!({"status": "finished"}),
        json!({"reason": "x"}),
        json!({}),
    ] {
        force(&s, "acme", &id, body).await.assert_err(400, 190002);
    }
    assert_eq!(feishu_status(&s, &tok, &id).await, "err");

    // Forcing done afterwards: no reason any more.
    let v = force(&s, "acme", &id, json!({"status": "done"})).await;
    let v = v.ok();
    assert_eq!(v["status"], "done");
    assert!(v.get("reason").is_none(), "{v}");
    assert_eq!(feishu_status(&s, &tok, &id).await, "done");

    force(&s, "acme", "%%%", json!({"status": "done"}))
        .await
        .assert_err(400, 190002);
    force(
        &s,
        "acme",
        &binding_id(ADMIN, "nobody@acme.example"),
        json!({"status": "done"}),
    )
    .await
    .assert_err(404, 99991201);
}

#[tokio::test]
async fn forced_status_is_picked_up_by_the_schedule() {
    // Forcing a stage while the engine runs: the binding goes on from there.
    let s = sync_server("300ms,300ms,300ms");
    let tok = boss(&s).await;
    let id = bind_doing(&s, &tok, "jump@acme.example", "u1").await;
    force(&s, "acme", &id, json!({"status": "timespan_done"}))
        .await
        .ok();
    let row = s.wait_binding("acme", &id, "done").await;
    let h = history_statuses(&row);
    assert_eq!(h.first().map(String::as_str), Some("doing"));
    assert_eq!(h.last().map(String::as_str), Some("done"));
    // Forcing err stops it.
    let id2 = bind_doing(&s, &tok, "stop@acme.example", "u2").await;
    force(&s, "acme", &id2, json!({"status": "err"})).await.ok();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let row = s.binding_row("acme", &id2).await.unwrap();
    assert_eq!(row["status"], "err", "{row}");
    assert!(row["reason"].is_string(), "err comes with a reason: {row}");
}

#[tokio::test]
async fn complete_finishes_every_syncing_binding_of_one_tenant() {
    let s = sync_server("10m,10m,10m");
    let tok = boss(&s).await;
    let doing = bind_doing(&s, &tok, "c1@acme.example", "u1").await;
    let cal = bind_doing(&s, &tok, "c2@acme.example", "u2").await;
    advance(&s, "acme", &cal).await.ok();
    let err = bind_doing(&s, &tok, "c3@acme.example", "u3").await;
    force(&s, "acme", &err, json!({"status": "err", "reason": "bad"}))
        .await
        .ok();
    let done = bind_doing(&s, &tok, "c4@acme.example", "u4").await;
    force(&s, "acme", &done, json!({"status": "done"}))
        .await
        .ok();
    let done_history = history_of(&s.binding_row("acme", &done).await.unwrap());

    let gtok = s.mint("cli_gsync", "globex", "gboss").await;
    let g = s
        .bind(&gtok, "exadmin@globex.example", "g@globex.example", "gina")
        .await;
    let gid = g["exchange_binding_id"].as_str().unwrap().to_string();

    let r = s
        .admin(Method::POST, "/_exbind/v1/tenants/acme/sync/complete", None)
        .await;
    assert_eq!(r.ok(), &json!({"completed": 2}));

    for id in [&doing, &cal] {
        let row = s.binding_row("acme", id).await.unwrap();
        assert_eq!(row["status"], "done");
        assert_eq!(
            history_statuses(&row),
            STAGES,
            "every stage in order: {row}"
        );
        assert_eq!(feishu_status(&s, &tok, id).await, "done");
    }
    let row = s.binding_row("acme", &err).await.unwrap();
    assert_eq!(row["status"], "err");
    assert_eq!(row["reason"], "bad");
    assert_eq!(feishu_status(&s, &tok, &err).await, "err");
    let row = s.binding_row("acme", &done).await.unwrap();
    assert_eq!(history_of(&row), done_history);

    // Other tenant untouched.
    let row = s.binding_row("globex", &gid).await.unwrap();
    assert_eq!(row["status"], "doing");

    let r = s
        .admin(Method::POST, "/_exbind/v1/tenants/acme/sync/complete", None)
        .await;
    assert_eq!(r.ok(), &json!({"completed": 0}));
    s.admin(Method::POST, "/_exbind/v1/tenants/nope/sync/complete", None)
        .await
        .assert_err(404, 99991201);
}

#[tokio::test]
async fn complete_finishes_stalled_bindings() {
    let s = sync_server("200ms,200ms,200ms");
    let tok = boss(&s).await;
    let id = bind_doing(&s, &tok, "stall-ts@acme.example", "u1").await;
    s.wait_binding("acme", &id, "timespan_done").await;
    let r = s
        .admin(Method::POST, "/_exbind/v1/tenants/acme/sync/complete", None)
        .await;
    assert_eq!(r.ok(), &json!({"completed": 1}));
    assert_eq!(feishu_status(&s, &tok, &id).await, "done");
}

#[tokio::test]
async fn admin_account_failing_moves_its_syncing_bindings_to_err() {
    let s = sync_server("10m,10m,10m");
    let tok = boss(&s).await;
    let a = s
        .bind(&tok, "exadmin2@acme.example", "fa@acme.example", "u1")
        .await;
    let a = a["exchange_binding_id"].as_str().unwrap().to_string();
    let b = s
        .bind(&tok, "exadmin2@acme.example", "fb@acme.example", "u2")
        .await;
    let b = b["exchange_binding_id"].as_str().unwrap().to_string();
    advance(&s, "acme", &b).await.ok();
    let d = s
        .bind(&tok, "exadmin2@acme.example", "fd@acme.example", "u3")
        .await;
    let d = d["exchange_binding_id"].as_str().unwrap().to_string();
    force(&s, "acme", &d, json!({"status": "done"})).await.ok();
    let other = bind_doing(&s, &tok, "fo@acme.example", "u4").await;

    s.patch_ok(
        "/_exbind/v1/tenants/acme/exchange_admins/exadmin2@acme.example",
        json!({"state": "failed"}),
    )
    .await;

    for id in [&a, &b] {
        let row = s.binding_row("acme", id).await.unwrap();
        assert_eq!(row["status"], "err", "{row}");
        assert!(
            row["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "err keeps a reason: {row}"
        );
        assert_eq!(
            history_statuses(&row).last().map(String::as_str),
            Some("err")
        );
    }
    let row = s.binding_row("acme", &d).await.unwrap();
    assert_eq!(row["status"], "done", "done bindings stay done: {row}");
    let row = s.binding_row("acme", &other).await.unwrap();
    assert_eq!(row["status"], "doing", "other admin's bindings untouched");

    // Back to ok: the err bindings stay err.
    s.patch_ok(
        "/_exbind/v1/tenants/acme/exchange_admins/exadmin2@acme.example",
        json!({"state": "ok"}),
    )
    .await;
    assert_eq!(feishu_status(&s, &tok, &a).await, "err");
}

#[tokio::test]
async fn bindings_list_shape_and_pages() {
    let s = sync_server("10m,10m,10m");
    let tok = boss(&s).await;
    // Bind by open_id: the list still shows the configured user id.
    let u1 = s.user_ids("acme", "u1", "cli_sync").await;
    let r = s
        .create(
            &tok,
            ADMIN,
            "Page0@acme.example",
            u1["open_id"].as_str().unwrap(),
            None,
        )
        .await;
    r.ok();
    let mut ids = vec![binding_id(ADMIN, "Page0@acme.example")];
    for i in 1..5 {
        ids.push(
            bind_doing(
                &s,
                &tok,
                &format!("page{i}@acme.example"),
                &format!("u{}", i + 1),
            )
            .await,
        );
    }
    let all = s.list_bindings("acme").await;
    assert_eq!(all.len(), 5);
    let first = all
        .iter()
        .find(|b| b["exchange_binding_id"] == ids[0])
        .unwrap();
    assert_eq!(first["user_id"], "u1");
    assert_eq!(first["exchange_account"], "Page0@acme.example");
    assert_eq!(first["admin_account"], ADMIN);
    for b in &all {
        for k in [
            "exchange_binding_id",
            "admin_account",
            "exchange_account",
            "user_id",
            "status",
            "created_at",
            "updated_at",
            "history",
        ] {
            assert!(b.get(k).is_some(), "no {k} in {b}");
        }
        rfc3339_ms(b["created_at"].as_str().unwrap());
        rfc3339_ms(b["updated_at"].as_str().unwrap());
        assert!(b.get("reason").is_none());
    }

    // Pages of two: every binding once, same order as the full listing.
    let mut paged: Vec<Value> = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/_exbind/v1/tenants/acme/bindings?page_size=2".to_string();
        if let Some(t) = &token {
            path.push_str(&format!("&page_token={}", pct(t)));
        }
        let r = s.admin(Method::GET, &path, None).await;
        let d = r.ok();
        let items = d["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        paged.extend(items.iter().cloned());
        pages += 1;
        if d["has_more"] != true {
            break;
        }
        token = Some(d["page_token"].as_str().unwrap().to_string());
        assert!(pages < 10);
    }
    assert_eq!(pages, 3);
    let a: Vec<&Value> = all.iter().map(|b| &b["exchange_binding_id"]).collect();
    let p: Vec<&Value> = paged.iter().map(|b| &b["exchange_binding_id"]).collect();
    assert_eq!(a, p);
    // Stable.
    let again = s.list_bindings("acme").await;
    let g: Vec<&Value> = again.iter().map(|b| &b["exchange_binding_id"]).collect();
    assert_eq!(a, g);
    // Another tenant sees none of them.
    assert!(s.list_bindings("globex").await.is_empty());
    s.admin(Method::GET, "/_exbind/v1/tenants/nope/bindings", None)
        .await
        .assert_err(404, 99991201);
}

#[tokio::test]
async fn a_fail_scenario_without_reason_still_gives_a_reason() {
    let s = sync_server("200ms,200ms,200ms");
    let tok = boss(&s).await;
    put_scenario(
        &s,
        "acme",
        "noreason@acme.example",
        json!({"scenario": "fail", "stage": "timespan_done"}),
    )
    .await
    .ok();
    let id = bind_doing(&s, &tok, "noreason@acme.example", "u1").await;
    let row = s.wait_binding("acme", &id, "err").await;
    assert_schedule(&row, &["doing", "cal_done", "err"], &[200, 200]);
    assert!(
        row["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "an err binding is listed with a reason: {row}"
    );
}

#[tokio::test]
async fn err_from_a_failed_admin_is_final() {
    let s = sync_server("200ms,200ms,200ms");
    let tok = boss(&s).await;
    let d = s
        .bind(&tok, "exadmin2@acme.example", "final@acme.example", "u1")
        .await;
    let id = d["exchange_binding_id"].as_str().unwrap().to_string();
    s.patch_ok(
        "/_exbind/v1/tenants/acme/exchange_admins/exadmin2@acme.example",
        json!({"state": "failed"}),
    )
    .await;
    let row = s.binding_row("acme", &id).await.unwrap();
    assert_eq!(row["status"], "err", "{row}");
    tokio::time::sleep(Duration::from_millis(900)).await;
    let later = s.binding_row("acme", &id).await.unwrap();
    assert_eq!(later["status"], "err", "{later}");
    assert_eq!(history_of(&later), history_of(&row), "no step after err");
    assert_eq!(later["reason"], row["reason"]);
}

#[tokio::test]
async fn a_scenario_set_by_the_control_plane_survives_a_restart() {
    let mut s = sync_server("200ms,200ms,200ms");
    let tok = boss(&s).await;
    put_scenario(
        &s,
        "acme",
        "kept@acme.example",
        json!({"scenario": "stall"}),
    )
    .await
    .ok();
    s.restart();
    let id = bind_doing(&s, &tok, "kept@acme.example", "u1").await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let row = s.binding_row("acme", &id).await.unwrap();
    assert_eq!(row["status"], "doing", "{row}");
    // The tenant view lists it too.
    let t = s.admin(Method::GET, "/_exbind/v1/tenants/acme", None).await;
    assert!(
        t.ok().to_string().contains("kept@acme.example"),
        "{}",
        t.text
    );
}

#[tokio::test]
async fn stage_durations_come_from_the_env_twin_and_are_checked() {
    let s = Server::builder()
        .seed(SYNC_SEED)
        .env("EXBIND_SYNC_STAGE_DURATIONS", "100ms,100ms,100ms")
        .start();
    let tok = boss(&s).await;
    let id = bind_doing(&s, &tok, "env@acme.example", "u1").await;
    let row = s.wait_binding("acme", &id, "done").await;
    assert_schedule(&row, &STAGES, &[100, 100, 100]);

    for bad in ["1s,2s", "1s,2s,3s,4s", "1s,xs,3s", "-1s,1s,1s"] {
        let dir = tempfile::tempdir().unwrap();
        let cmd = serve_command(
            &dir.path().join("data"),
            &["--admin-token", ADMIN_TOKEN, "--sync-stage-durations", bad],
        );
        let (st, _out, err) = run_to_exit(cmd, Duration::from_secs(20));
        assert_eq!(st.code(), Some(2), "{bad}: {err}");
        assert!(!err.trim().is_empty(), "{bad}: says why");
    }
}

#[tokio::test]
async fn many_overdue_bindings_catch_up_within_a_second_of_a_restart() {
    const N: usize = 150;
    let mut seed = String::from(
        "[[tenants]]\ntenant_key = \"acme\"\n\n[[tenants.users]]\nuser_id = \"boss\"\nsuper_admin = true\n\n\
         [[tenants.exchange_admins]]\naccount = \"exadmin@acme.example\"\n\n",
    );
    for i in 0..N {
        seed.push_str(&format!("[[tenants.users]]\nuser_id = \"m{i}\"\n\n"));
    }
    seed.push_str(
        "[[apps]]\napp_id = \"cli_sync\"\napp_secret = \"sync-secret\"\ntenants = [\"acme\"]\n\
         scopes = [\"calendar:calendar\", \"calendar:exchange.bindings:create\", \
         \"calendar:exchange.bindings:read\", \"contact:user.employee_id:readonly\"]\n",
    );
    let mut s = Server::builder()
        .seed(&seed)
        .args(&["--sync-stage-durations", "1s,1s,1s", "--rate-limits", "off"])
        .start();
    let tok = boss(&s).await;
    let mut tasks = Vec::new();
    for chunk in (0..N).collect::<Vec<_>>().chunks(N / 5) {
        let (base, http, tok, chunk) =
            (s.base.clone(), s.http.clone(), tok.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for i in chunk {
                let body = json!({"admin_account": ADMIN, "exchange_account": format!("m{i}@acme.example"),
                                  "user_id": format!("m{i}")});
                let r = send(
                    &http,
                    Method::POST,
                    &format!("{base}{BINDINGS}?user_id_type=user_id"),
                    &[("Authorization".into(), format!("Bearer {tok}"))],
                    Some(serde_json::to_vec(&body).unwrap()),
                )
                .await;
                assert_eq!(r.body["code"], 0, "{}", r.text);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    s.kill9();
    // Everything is overdue by the time it comes back.
    tokio::time::sleep(Duration::from_millis(3300)).await;
    s.restart();
    // The server's own time of its first answer after the restart, from its journal: the
    // catch-up is measured against it, on the server's clock.
    let first = s
        .get(&tok, &binding_id(ADMIN, "m0@acme.example"), None)
        .await;
    let answered = s
        .journal_entries(&format!("route={}", pct(ONE_ROUTE)))
        .await
        .into_iter()
        .find(|e| e["log_id"] == first.log_id().as_str())
        .map(|e| rfc3339_ms(e["time"].as_str().unwrap()))
        .expect("the first answer is journaled");
    let deadline = Instant::now() + PATIENCE;
    let all = loop {
        let all = s.list_bindings("acme").await;
        assert_eq!(all.len(), N);
        if all.iter().all(|b| b["status"] == "done") {
            break all;
        }
        assert!(Instant::now() < deadline, "not all caught up: {all:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    for b in &all {
        assert_schedule(b, &STAGES, &[1000, 1000, 1000]);
        // Written (`updated_at`) within a second of that first answer.
        let written = ms(b, "updated_at");
        assert!(
            written <= answered + 1000,
            "caught up {} ms after the first answer: {b}",
            written - answered
        );
    }
}

#[tokio::test]
async fn bad_seed_scenarios_stop_the_server_and_the_seed_route_rejects_them() {
    let base = "[[tenants]]\ntenant_key = \"acme\"\n\n[[tenants.exchange_accounts]]\naccount = \"x@acme.example\"\n";
    for (extra, field) in [
        ("scenario = \"bogus\"\n", "scenario"),
        ("scenario = \"fail\"\nstage = \"doing\"\n", "stage"),
        ("scenario = \"stall\"\nstage = \"done\"\n", "stage"),
        ("scenario = \"instant\"\nstage = \"cal_done\"\n", "stage"),
    ] {
        let doc = format!("{base}{extra}");
        let dir = tempfile::tempdir().unwrap();
        let seed = dir.path().join("seed.toml");
        std::fs::write(&seed, &doc).unwrap();
        let cmd = serve_command(
            &dir.path().join("data"),
            &[
                "--admin-token",
                ADMIN_TOKEN,
                "--seed",
                seed.to_str().unwrap(),
            ],
        );
        let (st, _out, err) = run_to_exit(cmd, Duration::from_secs(20));
        assert_eq!(st.code(), Some(2), "{doc}\n{err}");
        assert!(
            err.contains(&format!("tenants[0].exchange_accounts[0].{field}")),
            "names the place: {err}"
        );
    }

    // Through the control plane: all or nothing, the violation named by its path.
    let s = sync_server("200ms,200ms,200ms");
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let bad = format!("{base}scenario = \"stall\"\nstage = \"done\"\n");
    let r = s
        .request(
            Method::POST,
            "/_exbind/v1/seed",
            &[("Authorization", auth.as_str())],
            Some(bad.into_bytes()),
        )
        .await;
    r.assert_err(400, 190002);
    r.violation("tenants[0].exchange_accounts[0].stage");
    let good = "[[tenants]]\ntenant_key = \"acme\"\n\n[[tenants.exchange_accounts]]\n\
                account = \"seeded@acme.example\"\nscenario = \"fail\"\nreason = \"from the seed route\"\n";
    let r = s
        .request(
            Method::POST,
            "/_exbind/v1/seed",
            &[("Authorization", auth.as_str())],
            Some(good.as_bytes().to_vec()),
        )
        .await;
    r.ok();
    // The seeded scenario applies; the tenant's users are still there.
    let tok = boss(&s).await;
    let id = bind_doing(&s, &tok, "seeded@acme.example", "u1").await;
    let f = s.wait_binding("acme", &id, "err").await;
    assert_schedule(&f, &["doing", "err"], &[200]);
    assert_eq!(f["reason"], "from the seed route");
}
