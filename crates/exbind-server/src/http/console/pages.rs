//! The console's other pages: overview, tenant, requests, faults, apps, seed.

use axum::extract::{Request, State};
use axum::response::Response;
use exbind_api::ErrorCode;
use http::{Method, StatusCode};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    back, badge, done, json_block, s, see_other, seg, signed_form, time, Console, Failure, Live,
    Nav, Page, Signed,
};
use crate::http::html::{PagePath, PageQuery};
// The routes the journal and faults know.
use crate::http::control::FAULT_ROUTES as ROUTES;
use crate::journal::Filter;

/// The overview's window: the last five minutes, in buckets of ten seconds.
const WINDOW_MS: i64 = 5 * 60 * 1000;
const BUCKET_MS: i64 = 10_000;
const QUOTA_CODES: [i64; 3] = [99991400, 190004, 190005];

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

// ---- overview ---------------------------------------------------------------------------

pub async fn overview(sg: Signed, State(c): State<Console>) -> Result<Response, Response> {
    let tenants = items(&c.get("/_exbind/v1/tenants").await?);
    let apps = items(&c.get("/_exbind/v1/apps").await?);
    let counts = c.state.store.binding_counts().await.unwrap_or_default();
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let now = c.state.now();
    let start = now - WINDOW_MS;
    let (recent, _) = c.state.journal.query(
        &Filter {
            since_ms: Some(start),
            ..Filter::default()
        },
        c.state.journal.last_seq() as usize,
    );
    let n_buckets = (WINDOW_MS / BUCKET_MS) as usize;
    let mut ok = vec![0u64; n_buckets];
    let mut bad = vec![0u64; n_buckets];
    let mut by_code: std::collections::BTreeMap<i64, u64> = Default::default();
    for e in &recent {
        let i = (((e.at_ms - start) / BUCKET_MS).max(0) as usize).min(n_buckets - 1);
        if e.code == 0 {
            ok[i] += 1;
        } else {
            bad[i] += 1;
            *by_code.entry(e.code).or_default() += 1;
        }
    }
    let quota: u64 = QUOTA_CODES
        .iter()
        .map(|c| by_code.get(c).copied().unwrap_or(0))
        .sum();
    let errors: u64 = bad.iter().sum();
    let per_s = recent.len() as f64 / (WINDOW_MS as f64 / 1000.0);

    let header = html! { h1 { "Overview" } };
    let live = html! {
        div class="grid stats" {
            a class="card stat" href="#tenants" { span class="stat-value" { (tenants.len()) } span class="stat-label" { "tenants" } }
            a class="card stat" href="/_exbind/console/apps" { span class="stat-value" { (apps.len()) } span class="stat-label" { "apps" } }
            a class="card stat" href="/_exbind/console/bindings" { span class="stat-value" id="stat-bindings" { (total) } span class="stat-label" { "bindings" } }
            a class="card stat" href="/_exbind/console/requests" { span class="stat-value" { (format!("{per_s:.1}")) } span class="stat-label" { "requests per second, last 5 min" } }
            a class="card stat" href="/_exbind/console/requests" { span class="stat-value" { (errors) } span class="stat-label" { "errors, last 5 min" } }
            a class="card stat" href="/_exbind/console/requests?status=429" { span class="stat-value" { (quota) } span class="stat-label" { "quota rejections, last 5 min" } }
        }
        div class="grid overview-grid" {
            section class="card" aria-labelledby="chart-heading" {
                h2 id="chart-heading" { "Requests, last 5 minutes" }
                (chart(&ok, &bad))
                p class="legend small muted" {
                    span class="swatch swatch-ok" {} "code 0 " span class="swatch swatch-err" {} "errors · 10-second bars"
                }
            }
            section class="card" aria-labelledby="status-heading" {
                h2 id="status-heading" { "Bindings by status" }
                @if total == 0 {
                    p class="muted" { "No bindings yet. " a href="/_exbind/console/bindings" { "Create one" } " or run your app against " code { (sg.origin()) } "." }
                } @else {
                    ul class="bars" {
                        @for (status, n) in &counts {
                            li {
                                span class="bars-label" { (badge(status.as_str())) }
                                span class="bars-track" { span class={ "bars-fill fill-" (status.as_str()) } data-share=(n * 100 / total.max(1)) {} }
                                span class="bars-n" { (n) }
                            }
                        }
                    }
                }
            }
            section class="card" aria-labelledby="codes-heading" {
                h2 id="codes-heading" { "Errors by code" }
                @if by_code.is_empty() {
                    p class="muted" { "No error answered in the last 5 minutes." }
                } @else {
                    table class="table compact" {
                        thead { tr { th scope="col" { "Code" } th scope="col" { "Meaning" } th scope="col" class="num" { "Count" } } }
                        tbody {
                            @for (code, n) in &by_code {
                                tr {
                                    td { a href={ "/_exbind/console/requests?code=" (code) } { (code) } }
                                    td class="small" { (ErrorCode::from_code(*code).map_or("", |c| c.msg())) }
                                    td class="num" { (n) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section id="tenants" class="section" aria-labelledby="tenants-heading" {
            h2 id="tenants-heading" { "Tenants" }
            @if tenants.is_empty() {
                div class="empty" {
                    h2 { "No tenants" }
                    p { "Load a seed on the " a href="/_exbind/console/seed" { "Seed" } " page to add tenants, users and apps." }
                }
            } @else {
                div class="grid" {
                    @for t in &tenants {
                        article class="card tenant-card" {
                            h3 { a href={ "/_exbind/console/tenants/" (seg(s(t, "tenant_key"))) } { (s(t, "name")) } }
                            p class="muted small" { code { (s(t, "tenant_key")) } " · unit " (s(t, "unit")) }
                            div class="cluster" {
                                a class="btn btn-small" href={ "/_exbind/console/tenants/" (seg(s(t, "tenant_key"))) "/bindings" } { "Bindings" }
                                a class="btn btn-small" href={ "/_exbind/console/tenants/" (seg(s(t, "tenant_key"))) } { "Users and accounts" }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(sg.render(Page {
        nav: Nav::Overview,
        title: "Overview",
        header,
        body: html! {},
        live: Some((
            Live {
                kind: "overview",
                ..Live::default()
            },
            live,
        )),
    }))
}

/// Stacked bars of answered and failed requests, as SVG (no script, no style attribute: the
/// CSP allows neither inline).
fn chart(ok: &[u64], bad: &[u64]) -> Markup {
    let busiest = ok.iter().zip(bad).map(|(a, b)| a + b).max().unwrap_or(0);
    let max = busiest.max(1);
    let (w, h) = (600.0, 140.0);
    let bw = w / ok.len() as f64;
    let total: u64 = ok.iter().chain(bad).sum();
    let label = format!(
        "{total} requests in the last 5 minutes, {} errors; the busiest 10 seconds had {busiest}",
        bad.iter().sum::<u64>()
    );
    if total == 0 {
        return html! {
            div class="chart-empty muted" { p { "No requests in the last 5 minutes." } }
        };
    }
    html! {
        svg class="chart" viewBox={ "0 0 " (w) " " (h + 16.0) } role="img" aria-label=(label) preserveAspectRatio="none" {
            title { (label) }
            line x1="0" y1=(h) x2=(w) y2=(h) class="axis" {}
            @for (i, (a, b)) in ok.iter().zip(bad).enumerate() {
                @let x = i as f64 * bw + 1.0;
                @let ha = *a as f64 / max as f64 * (h - 4.0);
                @let hb = *b as f64 / max as f64 * (h - 4.0);
                rect class="bar-ok" x=(x) y=(h - ha) width=(bw - 2.0) height=(ha) {}
                rect class="bar-err" x=(x) y=(h - ha - hb) width=(bw - 2.0) height=(hb) {}
            }
            text x="0" y=(h + 14.0) class="chart-label" { "5 min ago" }
            text x=(w) y=(h + 14.0) class="chart-label" text-anchor="end" { "now" }
        }
    }
}

// ---- tenant -------------------------------------------------------------------------------

pub async fn tenant(
    sg: Signed,
    State(c): State<Console>,
    PagePath(tenant): PagePath<String>,
) -> Result<Response, Response> {
    let t = seg(&tenant);
    let detail = c.get(&format!("/_exbind/v1/tenants/{t}")).await?;
    let users = items(
        &c.get(&format!("/_exbind/v1/tenants/{t}/users?page_size=500"))
            .await?,
    );
    let here = format!("/_exbind/console/tenants/{t}");
    let action = format!("{here}/actions");
    let admins = detail["exchange_admins"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let scenarios = detail["exchange_accounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let header = html! {
        div {
            p class="eyebrow" { "Tenant " code { (tenant) } " · unit " (s(&detail, "unit")) }
            h1 { (s(&detail, "name")) }
        }
        a class="btn" href={ (here) "/bindings" } { "Bindings" }
    };
    let body = html! {
        section class="section" aria-labelledby="users-heading" {
            h2 id="users-heading" { "Users" }
            @if users.is_empty() {
                div class="empty" { p { "No users. Add them with a seed on the " a href="/_exbind/console/seed" { "Seed" } " page." } }
            } @else {
                div class="table-wrap" {
                    table class="table" id="users-table" {
                        caption class="visually-hidden" { "Users of " (tenant) }
                        thead { tr {
                            th scope="col" { "User" } th scope="col" { "Email" } th scope="col" { "Status" }
                            th scope="col" { "Super admin" } th scope="col" { span class="visually-hidden" { "Actions" } }
                        } }
                        tbody {
                            @for (n, u) in users.iter().enumerate() {
                                @let uid = s(u, "user_id");
                                @let admin = u["super_admin"] == true;
                                @let active = s(u, "status") == "active";
                                tr data-user=(uid) {
                                    td { strong { (uid) } @if s(u, "name") != uid { div class="small muted" { (s(u, "name")) } } }
                                    td class="wrap" { (u["email"].as_str().unwrap_or("—")) }
                                    td { @if active { span class="badge badge-ok" { "active" } } @else { span class="badge badge-failed" { "dismissed" } } }
                                    td { @if admin { span class="badge badge-doing" { "super admin" } } @else { span class="muted" { "no" } } }
                                    td {
                                        div class="row-actions" {
                                            form method="post" action=(action) {
                                                (sg.hidden(&here))
                                                input type="hidden" name="op" value="user";
                                                input type="hidden" name="user_id" value=(uid);
                                                input type="hidden" name="super_admin" value=(if admin { "false" } else { "true" });
                                                button id={ "admin-" (n) } class="btn btn-small" type="submit" {
                                                    @if admin { "Revoke super admin" } @else { "Make super admin" }
                                                    span class="visually-hidden" { " for " (uid) }
                                                }
                                            }
                                            form method="post" action=(action) {
                                                (sg.hidden(&here))
                                                input type="hidden" name="op" value="user";
                                                input type="hidden" name="user_id" value=(uid);
                                                input type="hidden" name="status" value=(if active { "dismissed" } else { "active" });
                                                button id={ "status-" (n) } class={ "btn btn-small" @if active { " btn-danger" } } type="submit" {
                                                    @if active { "Dismiss" } @else { "Reactivate" }
                                                    span class="visually-hidden" { " " (uid) }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        div class="grid two" {
            section class="card" aria-labelledby="admins-heading" {
                h2 id="admins-heading" { "Exchange admin accounts" }
                @if admins.is_empty() {
                    p class="muted" { "None: bindings need one. Add it with a seed." }
                }
                ul class="plain-list" {
                    @for (n, a) in admins.iter().enumerate() {
                        @let acct = s(a, "account");
                        @let ok = s(a, "state") == "ok";
                        li class="list-row" {
                            span class="wrap" { (acct) " " (badge(s(a, "state"))) }
                            form method="post" action=(action) {
                                (sg.hidden(&here))
                                input type="hidden" name="op" value="admin";
                                input type="hidden" name="account" value=(acct);
                                input type="hidden" name="state" value=(if ok { "failed" } else { "ok" });
                                button id={ "admin-state-" (n) } class="btn btn-small" type="submit" {
                                    @if ok { "Mark failed" } @else { "Mark ok" }
                                    span class="visually-hidden" { " " (acct) }
                                }
                            }
                        }
                    }
                }
            }
            section class="card" aria-labelledby="scenarios-heading" {
                h2 id="scenarios-heading" { "Sync scenarios" }
                p class="muted small" { "How the sync of bindings made from now on behaves, per Exchange account." }
                @if !scenarios.is_empty() {
                    ul class="plain-list" {
                        @for (n, sc) in scenarios.iter().enumerate() {
                            li class="list-row" {
                                span class="wrap" {
                                    (s(sc, "account")) ": " strong { (s(sc, "scenario")) }
                                    @if let Some(st) = sc["stage"].as_str() { " at " (st) }
                                    @if let Some(r) = sc["reason"].as_str() { " — " (r) }
                                }
                                form method="post" action=(action) {
                                    (sg.hidden(&here))
                                    input type="hidden" name="op" value="unscenario";
                                    input type="hidden" name="account" value=(s(sc, "account"));
                                    button id={ "unscenario-" (n) } class="btn btn-small" type="submit" {
                                        "Remove" span class="visually-hidden" { " the scenario of " (s(sc, "account")) }
                                    }
                                }
                            }
                        }
                    }
                }
                form method="post" action=(action) class="stack" {
                    (sg.hidden(&here))
                    input type="hidden" name="op" value="scenario";
                    div class="field" {
                        label for="sc-account" { "Exchange account" }
                        input id="sc-account" name="account" type="email" required placeholder="slow@example.com";
                    }
                    div class="form-row" {
                        div class="field" {
                            label for="sc-scenario" { "Scenario" }
                            select id="sc-scenario" name="scenario" {
                                @for sc in ["normal", "fail", "stall", "instant"] { option value=(sc) { (sc) } }
                            }
                        }
                        div class="field" {
                            label for="sc-stage" { "Stage" }
                            select id="sc-stage" name="stage" {
                                option value="" { "default" }
                                @for st in ["doing", "cal_done", "timespan_done", "done"] { option value=(st) { (st) } }
                            }
                        }
                    }
                    div class="field" {
                        label for="sc-reason" { "Reason (fail only)" }
                        input id="sc-reason" name="reason" type="text" placeholder="mailbox quota exceeded";
                    }
                    button id="sc-submit" class="btn btn-primary" type="submit" { "Set scenario" }
                }
            }
        }
    };
    let title = format!("Tenant {tenant}");
    Ok(sg.render(Page {
        nav: Nav::Overview,
        title: &title,
        header,
        body,
        live: None,
    }))
}

pub async fn tenant_action(
    State(c): State<Console>,
    PagePath(tenant): PagePath<String>,
    req: Request,
) -> Response {
    let (_, form) = match signed_form(&c, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let t = seg(&tenant);
    let outcome = match form.get("op") {
        "user" => {
            let mut body = json!({});
            if let Some(v) = form.opt("super_admin") {
                body["super_admin"] = json!(v == "true");
            }
            if let Some(v) = form.opt("status") {
                body["status"] = json!(v);
            }
            c.call(
                Method::PATCH,
                &format!("/_exbind/v1/tenants/{t}/users/{}", seg(form.get("user_id"))),
                Some(&body),
            )
            .await
            .map(|u| {
                format!(
                    "{} is {}{}.",
                    s(&u, "user_id"),
                    s(&u, "status"),
                    if u["super_admin"] == true {
                        ", super admin"
                    } else {
                        ", not a super admin"
                    }
                )
            })
        }
        "admin" => c
            .call(
                Method::PATCH,
                &format!(
                    "/_exbind/v1/tenants/{t}/exchange_admins/{}",
                    seg(form.get("account"))
                ),
                Some(&json!({"state": form.get("state")})),
            )
            .await
            .map(|a| format!("{} is {}.", s(&a, "account"), s(&a, "state"))),
        "scenario" => {
            let mut body = json!({"scenario": form.get("scenario")});
            if let Some(st) = form.opt("stage") {
                body["stage"] = json!(st);
            }
            if let Some(r) = form.opt("reason") {
                body["reason"] = json!(r);
            }
            c.call(
                Method::PUT,
                &format!(
                    "/_exbind/v1/tenants/{t}/exchange_accounts/{}/scenario",
                    seg(form.get("account"))
                ),
                Some(&body),
            )
            .await
            .map(|sc| {
                format!(
                    "{}: {} for bindings made from now on.",
                    s(&sc, "account"),
                    s(&sc, "scenario")
                )
            })
        }
        "unscenario" => c
            .call(
                Method::DELETE,
                &format!(
                    "/_exbind/v1/tenants/{t}/exchange_accounts/{}/scenario",
                    seg(form.get("account"))
                ),
                None,
            )
            .await
            .map(|sc| format!("{}: back to normal.", s(&sc, "account"))),
        other => Err(unknown_op(other)),
    };
    done(
        &c,
        &back(&form, &format!("/_exbind/console/tenants/{t}")),
        outcome,
    )
}

fn unknown_op(op: &str) -> Failure {
    Failure {
        code: 190002,
        msg: ErrorCode::InvalidParameters.msg().into(),
        message: Some(format!("no action {op:?}")),
        violations: vec![],
    }
}

// ---- requests -------------------------------------------------------------------------------

/// Journal entries as a table, newest first.
pub fn journal_table(entries: &[&Value]) -> Markup {
    html! {
        div class="table-wrap" {
            table class="table" id="requests-table" {
                caption class="visually-hidden" { "Requests, newest first" }
                thead { tr {
                    th scope="col" { "Time" } th scope="col" { "Request" } th scope="col" { "Answer" }
                    th scope="col" { "Caller" } th scope="col" class="num" { "ms" } th scope="col" { "Log id" }
                } }
                tbody {
                    @for e in entries {
                        @let code = e["code"].as_i64().unwrap_or(0);
                        tr data-log-id=(s(e, "log_id")) data-code=(code) {
                            td class="nowrap" { (time(s(e, "time"))) }
                            td class="wrap" { span class="method" { (s(e, "method")) } " " code class="path" { (s(e, "path")) } }
                            td class="nowrap" {
                                span class="muted" { (e["status"]) } " "
                                @if code == 0 { span class="badge badge-ok" { "0" } }
                                @else { span class="badge badge-err" title=(ErrorCode::from_code(code).map_or("", |c| c.msg())) { (code) } }
                            }
                            td class="small wrap" {
                                (e["app_id"].as_str().unwrap_or("—"))
                                @if let Some(t) = e["tenant_key"].as_str() { " · " (t) }
                                @if let Some(u) = e["user_id"].as_str() { " · " (u) }
                            }
                            td class="num" { (format!("{:.1}", e["latency_ms"].as_f64().unwrap_or(0.0))) }
                            td { a class="mono small" href={ "/_exbind/console/requests/" (seg(s(e, "log_id"))) } { (s(e, "log_id")) } }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize, Default)]
pub struct RequestsQuery {
    method: Option<String>,
    route: Option<String>,
    app_id: Option<String>,
    tenant_key: Option<String>,
    user_id: Option<String>,
    status: Option<String>,
    code: Option<String>,
    log_id: Option<String>,
}

pub async fn requests(
    sg: Signed,
    State(c): State<Console>,
    PageQuery(q): PageQuery<RequestsQuery>,
) -> Result<Response, Response> {
    if let Some(id) = q.log_id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        return Ok(see_other(&format!("/_exbind/console/requests/{}", seg(id))));
    }
    let filters: Vec<(&str, &str)> = [
        ("method", &q.method),
        ("route", &q.route),
        ("app_id", &q.app_id),
        ("tenant_key", &q.tenant_key),
        ("user_id", &q.user_id),
        ("status", &q.status),
        ("code", &q.code),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| (k, v)))
    .collect();
    let qs: String = filters
        .iter()
        .map(|(k, v)| format!("&{k}={}", seg(v)))
        .collect();
    let journal = c
        .call(
            Method::GET,
            &format!("/_exbind/v1/requests?page_size=100{qs}"),
            None,
        )
        .await;
    let (entries, problem) = match journal {
        Ok(d) => (items(&d), None),
        Err(f) => (vec![], Some(f.line())),
    };
    let enabled = c.state.journal.enabled();
    let val = |k: &str| filters.iter().find(|(f, _)| *f == k).map(|(_, v)| *v);
    let header = html! {
        h1 { "Requests" }
        form method="get" action="/_exbind/console/requests" class="cluster" role="search" {
            label for="find-log-id" class="visually-hidden" { "Find a request by its log id" }
            input id="find-log-id" name="log_id" type="search" placeholder="Find by log id (X-Tt-Logid)" class="input-wide";
            button class="btn" type="submit" { "Find" }
        }
    };
    let body = html! {
        form method="get" action="/_exbind/console/requests" class="form-row filters card" {
            div class="field" {
                label for="f-method" { "Method" }
                select id="f-method" name="method" {
                    option value="" { "Any" }
                    @for m in ["GET", "POST", "DELETE"] { option value=(m) selected[val("method") == Some(m)] { (m) } }
                }
            }
            div class="field" {
                label for="f-route" { "Route" }
                select id="f-route" name="route" {
                    option value="" { "Any" }
                    @for r in ROUTES { option value=(r) selected[val("route") == Some(r)] { (r) } }
                }
            }
            div class="field" { label for="f-app" { "App" } input id="f-app" name="app_id" type="text" value=[val("app_id")]; }
            div class="field" { label for="f-tenant" { "Tenant" } input id="f-tenant" name="tenant_key" type="text" value=[val("tenant_key")]; }
            div class="field" { label for="f-user" { "User" } input id="f-user" name="user_id" type="text" value=[val("user_id")]; }
            div class="field" { label for="f-status" { "HTTP status" } input id="f-status" name="status" type="number" value=[val("status")]; }
            div class="field" { label for="f-code" { "Code" } input id="f-code" name="code" type="number" value=[val("code")]; }
            button class="btn" type="submit" { "Filter" }
            @if !filters.is_empty() { a class="btn" href="/_exbind/console/requests" { "Clear" } }
        }
    };
    let live = html! {
        @if let Some(p) = &problem {
            div class="alert alert-error" role="alert" { p { (p) } }
        }
        @if !enabled {
            div class="empty" {
                h2 { "The journal is off" }
                p { "This server was started with " code { "--journal-size 0" } ". Start it without that flag to record requests." }
            }
        } @else if entries.is_empty() {
            div class="empty" {
                h2 { @if filters.is_empty() { "No requests yet" } @else { "No request matches" } }
                p { "Calls to " code { (sg.origin()) "/open-apis/…" } " appear here as they are answered, newest first." }
            }
        } @else {
            p class="muted small" { "The newest " (entries.len()) " · updates live" }
            (journal_table(&entries.iter().collect::<Vec<_>>()))
        }
    };
    Ok(sg.render(Page {
        nav: Nav::Requests,
        title: "Requests",
        header,
        body,
        live: Some((
            Live {
                kind: "requests",
                ..Live::default()
            },
            live,
        )),
    }))
}

pub async fn request(
    sg: Signed,
    State(c): State<Console>,
    PagePath(log_id): PagePath<String>,
) -> Result<Response, Response> {
    let found = c
        .call(
            Method::GET,
            &format!("/_exbind/v1/requests/{}", seg(&log_id)),
            None,
        )
        .await;
    let header = html! {
        div {
            p class="eyebrow" { a href="/_exbind/console/requests" { "Requests" } }
            h1 class="wrap" { "Request " code { (log_id) } }
        }
    };
    let (status, body) = match found {
        Ok(e) => {
            let code = e["code"].as_i64().unwrap_or(0);
            (
                StatusCode::OK,
                html! {
                    section class="card" {
                        dl class="kv" {
                            dt { "Time" } dd { (time(s(&e, "time"))) }
                            dt { "Request" } dd { (s(&e, "method")) " " code { (s(&e, "path")) } }
                            dt { "Route" } dd { code { (s(&e, "route")) } }
                            dt { "Answer" } dd { "HTTP " (e["status"]) ", code " (code)
                                @if let Some(c) = ErrorCode::from_code(code) { " — " (c.msg()) } }
                            dt { "App" } dd { (e["app_id"].as_str().unwrap_or("—")) }
                            dt { "Tenant" } dd { (e["tenant_key"].as_str().unwrap_or("—")) }
                            dt { "User" } dd { (e["user_id"].as_str().unwrap_or("—")) }
                            dt { "Latency" } dd { (format!("{:.2} ms", e["latency_ms"].as_f64().unwrap_or(0.0))) }
                        }
                    }
                    section class="section" aria-labelledby="raw-heading" {
                        h2 id="raw-heading" { "As the journal API answers it" }
                        (json_block(&e))
                    }
                },
            )
        }
        Err(f) => (
            StatusCode::NOT_FOUND,
            html! {
                div class="empty" {
                    h2 { "Not in the journal" }
                    p { (f.message.unwrap_or(f.msg)) }
                    p { "The journal keeps the last " code { "--journal-size" } " requests. " a href="/_exbind/console/requests" { "See the newest" } }
                }
            },
        ),
    };
    let title = format!("Request {log_id}");
    Ok(sg.render_status(
        status,
        Page {
            nav: Nav::Requests,
            title: &title,
            header,
            body,
            live: None,
        },
    ))
}

// ---- faults -------------------------------------------------------------------------------

pub async fn faults(sg: Signed, State(c): State<Console>) -> Result<Response, Response> {
    let rules = items(&c.get("/_exbind/v1/faults").await?);
    let here = "/_exbind/console/faults";
    let header = html! { h1 { "Faults" } };
    let body = html! {
        section class="card" aria-labelledby="add-heading" {
            h2 id="add-heading" { "Arm a fault" }
            p class="muted small" { "The next matching requests fail (or slow down) as configured, after the token check and before everything else. Give a number of times, or leave it empty and give a fraction of calls." }
            form method="post" action=(here) class="stack" id="fault-form" {
                (sg.hidden(here))
                input type="hidden" name="op" value="add";
                div class="form-row" {
                    div class="field" {
                        label for="fault-method" { "Method" }
                        select id="fault-method" name="method" {
                            @for m in ["POST", "GET", "DELETE"] { option value=(m) { (m) } }
                        }
                    }
                    div class="field field-wide" {
                        label for="fault-route" { "Route" }
                        select id="fault-route" name="route" {
                            @for r in ROUTES { option value=(r) { (r) } }
                        }
                    }
                }
                div class="form-row" {
                    div class="field field-wide" {
                        label for="fault-code" { "Answer with code" }
                        select id="fault-code" name="code" {
                            option value="" { "none (latency only)" }
                            @for e in ErrorCode::ALL {
                                option value=(e.code()) selected[e.code() == 190010] { (e.code()) " — HTTP " (e.http_status()) " " (e.msg()) }
                            }
                        }
                    }
                    div class="field" {
                        label for="fault-times" { "Times" }
                        input id="fault-times" name="times" type="number" min="1" value="1";
                    }
                    div class="field" {
                        label for="fault-fraction" { "Fraction" }
                        input id="fault-fraction" name="fraction" type="number" min="0" max="1" step="any" placeholder="0.5";
                    }
                    div class="field" {
                        label for="fault-latency" { "Latency (ms)" }
                        input id="fault-latency" name="latency_ms" type="number" min="0" placeholder="0";
                    }
                }
                div class="form-row" {
                    div class="field" { label for="fault-app" { "Only app (optional)" } input id="fault-app" name="app_id" type="text"; }
                    div class="field" { label for="fault-tenant" { "Only tenant (optional)" } input id="fault-tenant" name="tenant_key" type="text"; }
                    div class="field" { label for="fault-expires" { "Expires in (s, optional)" } input id="fault-expires" name="expires_in" type="number" min="1"; }
                }
                div { button id="fault-submit" class="btn btn-primary" type="submit" { "Arm fault" } }
            }
        }
        section class="section" aria-labelledby="armed-heading" {
            div class="card-title" {
                h2 id="armed-heading" { "Armed rules" }
                @if !rules.is_empty() {
                    form method="post" action=(here) data-confirm="Remove every fault rule?" {
                        (sg.hidden(here))
                        input type="hidden" name="op" value="clear";
                        button id="fault-clear" class="btn btn-small btn-danger" type="submit" { "Remove all" }
                    }
                }
            }
            @if rules.is_empty() {
                div class="empty" {
                    h2 { "No fault armed" }
                    p { "Every request is answered normally. Arm one above, e.g. fail the next create with " code { "190010" } " and watch your app retry." }
                }
            } @else {
                div class="table-wrap" {
                    table class="table" id="faults-table" {
                        caption class="visually-hidden" { "Armed fault rules" }
                        thead { tr {
                            th scope="col" { "Matches" } th scope="col" { "Does" } th scope="col" { "Left" }
                            th scope="col" class="num" { "Fired" } th scope="col" { span class="visually-hidden" { "Actions" } }
                        } }
                        tbody {
                            @for (n, r) in rules.iter().enumerate() {
                                tr data-rule=(s(r, "id")) {
                                    td class="wrap" {
                                        (s(r, "method")) " " code { (s(r, "route")) }
                                        @if let Some(a) = r["app_id"].as_str() { div class="small muted" { "app " (a) } }
                                        @if let Some(t) = r["tenant_key"].as_str() { div class="small muted" { "tenant " (t) } }
                                    }
                                    td {
                                        @if let Some(code) = r["error"]["code"].as_i64().or(r["error"].as_i64()) { span class="badge badge-err" { (code) } " " }
                                        @if let Some(l) = r["latency_ms"].as_u64() { span class="small" { "+" (l) " ms" } }
                                    }
                                    td class="small" {
                                        @if let Some(t) = r["times"].as_u64() { (t) " time(s)" }
                                        @else if let Some(f) = r["fraction"].as_f64() { (format!("{:.0} % of calls", f * 100.0)) }
                                        @else { "until removed" }
                                        @if let Some(e) = r["expires_at"].as_str() { div class="muted" { "until " (time(e)) } }
                                    }
                                    td class="num" { (r["hits"]) }
                                    td {
                                        form method="post" action=(here) {
                                            (sg.hidden(here))
                                            input type="hidden" name="op" value="remove";
                                            input type="hidden" name="id" value=(s(r, "id"));
                                            button id={ "fault-remove-" (n) } class="btn btn-small" type="submit" {
                                                "Remove" span class="visually-hidden" { " rule " (s(r, "id")) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(sg.render(Page {
        nav: Nav::Faults,
        title: "Faults",
        header,
        body,
        live: None,
    }))
}

pub async fn fault_action(State(c): State<Console>, req: Request) -> Response {
    let (_, form) = match signed_form(&c, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let outcome = match form.get("op") {
        "add" => {
            let mut body = json!({"method": form.get("method"), "route": form.get("route")});
            let mut bad = Vec::new();
            let mut num = |k: &str, body: &mut Value| match form.opt(k) {
                None => {}
                Some(v) => match v.parse::<f64>() {
                    Ok(n) if k == "fraction" => body[k] = json!(n),
                    Ok(n) if n >= 0.0 && n.fract() == 0.0 => body[k] = json!(n as u64),
                    _ => bad.push((k.to_string(), format!("{v:?} is not a whole number"))),
                },
            };
            for k in ["times", "fraction", "latency_ms", "expires_in"] {
                num(k, &mut body);
            }
            if let Some(code) = form.opt("code") {
                body["error"] = json!({"code": code.parse::<i64>().unwrap_or(0)});
            }
            for k in ["app_id", "tenant_key"] {
                if let Some(v) = form.opt(k) {
                    body[k] = json!(v);
                }
            }
            if !bad.is_empty() {
                Err(Failure {
                    code: 190002,
                    msg: ErrorCode::InvalidParameters.msg().into(),
                    message: None,
                    violations: bad,
                })
            } else {
                c.call(Method::POST, "/_exbind/v1/faults", Some(&body))
                    .await
                    .map(|r| {
                        format!(
                            "Armed rule {}: {} {}.",
                            s(&r, "id"),
                            s(&r, "method"),
                            s(&r, "route")
                        )
                    })
            }
        }
        "remove" => c
            .call(
                Method::DELETE,
                &format!("/_exbind/v1/faults/{}", seg(form.get("id"))),
                None,
            )
            .await
            .map(|_| "Rule removed.".to_string()),
        "clear" => c
            .call(Method::DELETE, "/_exbind/v1/faults", None)
            .await
            .map(|d| format!("{} rule(s) removed.", d["cleared"])),
        other => Err(unknown_op(other)),
    };
    done(&c, "/_exbind/console/faults", outcome)
}

// ---- apps -------------------------------------------------------------------------------

pub async fn apps(sg: Signed, State(c): State<Console>) -> Result<Response, Response> {
    render_apps(sg, &c, None).await
}

/// A token just minted, shown once.
struct Minted {
    app_id: String,
    tenant: String,
    user: String,
    token: Value,
    admin_account: Option<String>,
}

async fn render_apps(
    sg: Signed,
    c: &Console,
    minted: Option<Result<Minted, Failure>>,
) -> Result<Response, Response> {
    let apps = items(&c.get("/_exbind/v1/apps").await?);
    let mut users: Vec<(String, String)> = Vec::new();
    for t in items(&c.get("/_exbind/v1/tenants").await?) {
        let key = s(&t, "tenant_key").to_string();
        let list = c
            .get(&format!(
                "/_exbind/v1/tenants/{}/users?page_size=500",
                seg(&key)
            ))
            .await
            .map(|v| items(&v))
            .unwrap_or_default();
        users.extend(
            list.iter()
                .map(|u| (key.clone(), s(u, "user_id").to_string())),
        );
    }
    let header = html! { h1 { "Apps" } };
    let body = html! {
        @match &minted {
            Some(Ok(m)) => {
                @let token = s(&m.token, "access_token");
                section class="card minted" aria-labelledby="minted-heading" id="minted" {
                    h2 id="minted-heading" { "User token for " (m.user) " in " (m.tenant) " (" (m.app_id) ")" }
                    p class="alert alert-warning" { "Shown once: copy it now. It expires in " (m.token["expires_in"]) " s." }
                    (super::code_block("minted-token", token))
                    p class="small muted" { "open_id " code { (s(&m.token, "open_id")) } " · union_id " code { (s(&m.token, "union_id")) } }
                    h3 { "Create a binding with it" }
                    (super::code_block("minted-curl", &format!(
                        "curl -sS -X POST '{}/open-apis/calendar/v4/exchange_bindings?user_id_type=user_id' \\\n  -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json; charset=utf-8' \\\n  -d '{{\"admin_account\":\"{}\",\"exchange_account\":\"someone@example.com\",\"user_id\":\"{}\"}}'",
                        sg.origin(),
                        m.admin_account.as_deref().unwrap_or("exadmin@example.com"),
                        m.user
                    )))
                }
            }
            Some(Err(f)) => {
                div class="alert alert-error" role="alert" { p { "Could not mint a token: " (f.line()) } }
            }
            None => {}
        }
        @if apps.is_empty() {
            div class="empty" {
                h2 { "No apps" }
                p { "Add apps with a seed on the " a href="/_exbind/console/seed" { "Seed" } " page." }
            }
        }
        datalist id="known-users" {
            @for (_, u) in &users { option value=(u) {} }
        }
        div class="stack" {
            @for (n, a) in apps.iter().enumerate() {
                @let app_id = s(a, "app_id");
                @let tenants: Vec<&str> = a["tenants"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                article class="card app-card" aria-labelledby={ "app-" (n) } {
                    div class="card-title" {
                        h2 id={ "app-" (n) } { code { (app_id) } }
                        div class="cluster" {
                            span class="badge badge-muted" { (s(a, "type")) }
                            @if a["bot"] == true { span class="badge badge-ok" { "bot" } } @else { span class="badge badge-failed" { "no bot" } }
                            span class="badge badge-muted" { "unit " (s(a, "unit")) }
                        }
                    }
                    dl class="kv" {
                        dt { "Installed in" }
                        dd { @if tenants.is_empty() { span class="muted" { "nowhere (uninstalled)" } } @else { (tenants.join(", ")) } }
                        dt { "Scopes" }
                        dd { ul class="scope-list" { @for sc in a["scopes"].as_array().into_iter().flatten() { li { code { (sc.as_str().unwrap_or("")) } } } } }
                        @if let Some(uris) = a["redirect_uris"].as_array() {
                            dt { "Redirect URIs" }
                            dd { @if uris.is_empty() { span class="muted" { "none" } } @for u in uris { div { code { (u.as_str().unwrap_or("")) } } } }
                        }
                    }
                    @if !tenants.is_empty() {
                        form method="post" action="/_exbind/console/apps" class="form-row mint-form" {
                            (sg.hidden("/_exbind/console/apps"))
                            input type="hidden" name="app_id" value=(app_id);
                            div class="field" {
                                label for={ "mint-tenant-" (n) } { "Tenant" }
                                select id={ "mint-tenant-" (n) } name="tenant_key" {
                                    @for t in &tenants { option value=(t) { (t) } }
                                }
                            }
                            div class="field" {
                                label for={ "mint-user-" (n) } { "User id" }
                                input id={ "mint-user-" (n) } name="user_id" type="text" required list="known-users"
                                    value=[users.iter().find(|(t, _)| tenants.contains(&t.as_str())).map(|(_, u)| u.as_str())];
                            }
                            button id={ "mint-" (n) } class="btn btn-primary" type="submit" {
                                "Mint user token" span class="visually-hidden" { " for " (app_id) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(sg.render(Page {
        nav: Nav::Apps,
        title: "Apps",
        header,
        body,
        live: None,
    }))
}

pub async fn mint(State(c): State<Console>, req: Request) -> Result<Response, Response> {
    let (sg, form) = signed_form(&c, req).await?;
    let (app_id, tenant, user) = (
        form.get("app_id"),
        form.get("tenant_key"),
        form.get("user_id"),
    );
    let minted = c
        .call(
            Method::POST,
            "/_exbind/v1/user_access_tokens",
            Some(&json!({"app_id": app_id, "tenant_key": tenant, "user_id": user})),
        )
        .await;
    let admin_account = c
        .get(&format!("/_exbind/v1/tenants/{}", seg(tenant)))
        .await
        .ok()
        .and_then(|d| {
            d["exchange_admins"][0]["account"]
                .as_str()
                .map(str::to_string)
        });
    let minted = minted.map(|token| Minted {
        app_id: app_id.to_string(),
        tenant: tenant.to_string(),
        user: user.to_string(),
        token,
        admin_account,
    });
    render_apps(sg, &c, Some(minted)).await
}

// ---- seed -------------------------------------------------------------------------------

pub async fn seed(sg: Signed) -> Response {
    render_seed(sg, "toml", "", None)
}

fn render_seed(
    sg: Signed,
    format: &str,
    text: &str,
    result: Option<Result<Value, Failure>>,
) -> Response {
    let status = match &result {
        Some(Err(_)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let header = html! { h1 { "Seed" } };
    let body = html! {
        @match &result {
            Some(Ok(counts)) => {
                div class="alert alert-success" role="status" id="seed-result" {
                    p { "Seed applied: " (counts["added"]) " added, " (counts["updated"]) " updated." }
                }
            }
            Some(Err(f)) => {
                div class="alert alert-error" role="alert" id="seed-result" {
                    @if f.violations.is_empty() {
                        p { strong { "Nothing was applied: " } (f.message.clone().unwrap_or_else(|| f.msg.clone())) }
                    } @else {
                        p { strong { "Nothing was applied: " } "the document has " (f.violations.len()) " problem(s)." }
                    }
                    @if !f.violations.is_empty() {
                        div class="table-wrap" tabindex="0" role="region" aria-label="Violations" { table class="table compact violations" id="seed-violations" {
                            caption class="visually-hidden" { "Violations" }
                            thead { tr { th scope="col" { "Where" } th scope="col" { "Why" } } }
                            tbody {
                                @for (path, why) in &f.violations {
                                    tr { td { code { (path) } } td { (why) } }
                                }
                            }
                        } }
                    }
                }
            }
            None => {}
        }
        section class="card" {
            p class="muted" {
                "Tenants, users, Exchange admin accounts, scenarios and apps are upserted by key; nothing is removed and bindings are never touched. "
                "All or nothing: a document with a violation applies nothing."
            }
            form method="post" action="/_exbind/console/seed" enctype="multipart/form-data" class="stack" {
                (sg.hidden("/_exbind/console/seed"))
                div class="form-row" {
                    div class="field" {
                        label for="seed-file" { "Upload a file" }
                        input id="seed-file" name="file" type="file" accept=".toml,.json,text/plain,application/json"
                            aria-describedby="seed-file-hint";
                        span id="seed-file-hint" class="hint" { "Its text is put in the box below; an empty box sends the file as it is." }
                    }
                    div class="field" {
                        label for="seed-format" { "Format" }
                        select id="seed-format" name="format" {
                            option value="toml" selected[format != "json"] { "TOML" }
                            option value="json" selected[format == "json"] { "JSON" }
                        }
                    }
                }
                div class="field" {
                    label for="seed-text" { "Seed document" }
                    textarea id="seed-text" name="text" rows="16" spellcheck="false"
                        placeholder="[[tenants]]\ntenant_key = \"acme\"\nname = \"Acme Corp\"" { (text) }
                }
                div { button id="seed-submit" class="btn btn-primary" type="submit" { "Apply seed" } }
            }
        }
    };
    sg.render_status(
        status,
        Page {
            nav: Nav::Seed,
            title: "Seed",
            header,
            body,
            live: None,
        },
    )
}

pub async fn apply_seed(State(c): State<Console>, req: Request) -> Result<Response, Response> {
    let (sg, form) = signed_form(&c, req).await?;
    // A file is sent as it is when the page's script did not put its text in the box; its
    // name then tells the format, as the script would.
    let pasted = form.opt("text").is_some();
    let format = match form.opt("file.filename") {
        Some(name) if !pasted && name.ends_with(".json") => "json",
        Some(name) if !pasted && name.ends_with(".toml") => "toml",
        _ if form.get("format") == "json" => "json",
        _ => "toml",
    };
    let field = if pasted { "text" } else { "file" };
    let text = form.0.get(field).cloned().unwrap_or_default();
    if text.trim().is_empty() {
        let empty = Failure {
            code: 190002,
            msg: "invalid parameters in request".into(),
            message: Some("the form holds no seed: paste a document or choose a file".into()),
            violations: Vec::new(),
        };
        return Ok(render_seed(sg, format, &text, Some(Err(empty))));
    }
    let content_type = if format == "json" {
        "application/json"
    } else {
        "application/toml"
    };
    let result = c
        .call_raw(
            Method::POST,
            "/_exbind/v1/seed",
            content_type,
            text.clone().into_bytes(),
        )
        .await;
    Ok(render_seed(sg, format, &text, Some(result)))
}
