//! The bindings of a tenant (live, filterable, with the sync actions) and one binding's
//! time line with the requests that touched it.

use axum::extract::{Request, State};
use axum::response::Response;
use http::Method;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    ago, back, badge, code_block, done, s, see_other, seg, signed_form, time, Console, Live, Nav,
    Page, Signed,
};
use crate::http::html::{PagePath, PageQuery};

/// Bindings a page lists at most (filters apply within them).
const MAX_LISTED: usize = 2000;
const STATUSES: [&str; 5] = ["doing", "cal_done", "timespan_done", "done", "err"];

#[derive(Deserialize)]
pub struct TenantQuery {
    tenant: Option<String>,
}

/// The bindings of the tenant asked for (the switcher), or of the first one.
pub async fn first_tenant(
    _: Signed,
    State(c): State<Console>,
    PageQuery(q): PageQuery<TenantQuery>,
) -> Response {
    let tenant = match q.tenant.filter(|t| !t.is_empty()) {
        Some(t) => Some(t),
        None => c
            .state
            .store
            .tenants()
            .await
            .ok()
            .and_then(|t| t.into_iter().next())
            .map(|t| t.tenant_key),
    };
    match tenant {
        Some(t) => see_other(&format!("/_exbind/console/tenants/{}/bindings", seg(&t))),
        None => see_other("/_exbind/console/"),
    }
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    status: Option<String>,
    q: Option<String>,
}

/// Every binding of a tenant (up to `MAX_LISTED`), through the control plane.
async fn all_bindings(c: &Console, tenant: &str) -> Result<(Vec<Value>, bool), Response> {
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let data = c
            .get(&format!(
                "/_exbind/v1/tenants/{}/bindings?page_size=500&page_token={}",
                seg(tenant),
                seg(&token)
            ))
            .await?;
        items.extend(data["items"].as_array().cloned().unwrap_or_default());
        if data["has_more"] != true || items.len() >= MAX_LISTED {
            return Ok((items, data["has_more"] == true));
        }
        token = s(&data, "page_token").to_string();
    }
}

fn binding_url(tenant: &str, id: &str) -> String {
    format!(
        "/_exbind/console/tenants/{}/bindings/{}",
        seg(tenant),
        seg(id)
    )
}

/// The actions on one binding, each a small form; `n` makes the controls' ids unique.
fn actions(sg: &Signed, tenant: &str, b: &Value, n: usize, here: &str) -> Markup {
    let id = s(b, "exchange_binding_id");
    let status = s(b, "status");
    let who = s(b, "exchange_account");
    let action = format!("/_exbind/console/tenants/{}/bindings", seg(tenant));
    let syncing = status != "done" && status != "err";
    html! {
        div class="row-actions" {
            form method="post" action=(action) {
                (sg.hidden(here))
                input type="hidden" name="op" value="advance";
                input type="hidden" name="id" value=(id);
                button id={ "advance-" (n) } class="btn btn-small" type="submit" disabled[!syncing]
                    aria-label={ "Advance " (who) } { "Advance" }
            }
            form method="post" action=(action) class="inline-form" {
                (sg.hidden(here))
                input type="hidden" name="op" value="force";
                input type="hidden" name="id" value=(id);
                label class="visually-hidden" for={ "force-status-" (n) } { "Status to force for " (who) }
                select id={ "force-status-" (n) } name="status" class="select-small" {
                    @for st in STATUSES {
                        option value=(st) selected[st == status] { (st) }
                    }
                }
                button id={ "force-" (n) } class="btn btn-small" type="submit"
                    aria-label={ "Force the status of " (who) } { "Force" }
            }
            form method="post" action=(action) data-confirm={ "Delete the binding of " (who) "?" } {
                (sg.hidden(here))
                input type="hidden" name="op" value="delete";
                input type="hidden" name="id" value=(id);
                button id={ "delete-" (n) } class="btn btn-small btn-danger" type="submit"
                    aria-label={ "Delete the binding of " (who) } { "Delete" }
            }
        }
    }
}

pub async fn list(
    sg: Signed,
    State(c): State<Console>,
    PagePath(tenant): PagePath<String>,
    PageQuery(q): PageQuery<ListQuery>,
) -> Result<Response, Response> {
    let detail = c
        .get(&format!("/_exbind/v1/tenants/{}", seg(&tenant)))
        .await?;
    let tenants = c.get("/_exbind/v1/tenants").await?;
    let users = c
        .get(&format!(
            "/_exbind/v1/tenants/{}/users?page_size=500",
            seg(&tenant)
        ))
        .await?;
    let (items, more) = all_bindings(&c, &tenant).await?;
    let status = q.status.as_deref().filter(|s| STATUSES.contains(s));
    let needle = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let shown: Vec<&Value> = items
        .iter()
        .filter(|b| status.is_none_or(|st| s(b, "status") == st))
        .filter(|b| {
            needle.is_none_or(|n| {
                let n = n.to_lowercase();
                ["exchange_account", "admin_account", "user_id"]
                    .iter()
                    .any(|k| s(b, k).to_lowercase().contains(&n))
            })
        })
        .collect();
    let here = format!(
        "/_exbind/console/tenants/{}/bindings{}",
        seg(&tenant),
        match (status, needle) {
            (None, None) => String::new(),
            _ => format!(
                "?status={}&q={}",
                seg(status.unwrap_or("")),
                seg(needle.unwrap_or(""))
            ),
        }
    );
    let now = c.state.now();
    let action = format!("/_exbind/console/tenants/{}/bindings", seg(&tenant));
    let mut admins = detail["exchange_admins"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Accounts that can bind come first.
    admins.sort_by_key(|a| s(a, "state") != "ok");
    let users = users["items"].as_array().cloned().unwrap_or_default();
    let tenant_name = s(&detail, "name").to_string();

    let header = html! {
        div {
            p class="eyebrow" { a href={ "/_exbind/console/tenants/" (seg(&tenant)) } { (tenant_name) } }
            h1 { "Bindings" }
        }
        form method="get" action="/_exbind/console/bindings" class="cluster tenant-switch" {
            label for="tenant-switch" class="small muted" { "Tenant" }
            select id="tenant-switch" name="tenant" data-autosubmit {
                @for t in tenants["items"].as_array().into_iter().flatten() {
                    option value=(s(t, "tenant_key")) selected[s(t, "tenant_key") == tenant] {
                        (s(t, "name")) " (" (s(t, "tenant_key")) ")"
                    }
                }
            }
            button class="btn btn-small js-hide" type="submit" { "Show" }
        }
    };

    let body = html! {
        details class="card create-card" open[items.is_empty()] {
            summary { h2 class="inline" { "Create a binding" } }
            form method="post" action=(action) class="stack" {
                (sg.hidden(&here))
                input type="hidden" name="op" value="create";
                div class="form-row" {
                    div class="field" {
                        label for="create-admin" { "Admin account" }
                        select id="create-admin" name="admin_account" required {
                            @for a in &admins {
                                option value=(s(a, "account")) { (s(a, "account")) " (" (s(a, "state")) ")" }
                            }
                        }
                    }
                    div class="field" {
                        label for="create-exchange" { "Exchange account" }
                        input id="create-exchange" name="exchange_account" type="email" required
                            placeholder="someone@example.com";
                    }
                    div class="field" {
                        label for="create-user" { "User" }
                        select id="create-user" name="user_id" required {
                            @for u in &users {
                                option value=(s(u, "user_id")) {
                                    (s(u, "user_id"))
                                    @if u["status"] != "active" { " (" (s(u, "status")) ")" }
                                }
                            }
                        }
                    }
                    button id="create-submit" class="btn btn-primary" type="submit" { "Create" }
                }
            }
        }
        div class="toolbar" {
            form method="get" action=(action) class="form-row filters" role="search" {
                div class="field" {
                    label for="filter-status" { "Status" }
                    select id="filter-status" name="status" {
                        option value="" { "Any status" }
                        @for st in STATUSES {
                            option value=(st) selected[status == Some(st)] { (st) }
                        }
                    }
                }
                div class="field" {
                    label for="filter-q" { "Search accounts" }
                    input id="filter-q" name="q" type="search" value=[needle] placeholder="address or user id";
                }
                button class="btn" type="submit" { "Filter" }
                @if status.is_some() || needle.is_some() {
                    a class="btn" href=(action) { "Clear" }
                }
            }
            div class="cluster" {
                form method="post" action=(action) {
                    (sg.hidden(&here))
                    input type="hidden" name="op" value="complete";
                    button id="complete-all" class="btn" type="submit" { "Complete all" }
                }
                form method="post" action=(action) data-confirm="Delete every binding of this tenant?" {
                    (sg.hidden(&here))
                    input type="hidden" name="op" value="wipe";
                    button id="wipe" class="btn btn-danger" type="submit" { "Wipe tenant's bindings" }
                }
            }
        }
    };

    let example_admin = admins
        .first()
        .map_or("exadmin@example.com".to_string(), |a| {
            s(a, "account").to_string()
        });
    let curl = format!(
        "curl -sS -X POST '{}/open-apis/calendar/v4/exchange_bindings?user_id_type=user_id' \\\n  \
         -H \"Authorization: Bearer $USER_TOKEN\" -H 'Content-Type: application/json' \\\n  \
         -d '{{\"admin_account\":\"{example_admin}\",\"exchange_account\":\"someone@example.com\",\"user_id\":\"USER_ID\"}}'",
        sg.origin()
    );
    let live = html! {
        p class="muted small" id="bindings-count" {
            (shown.len()) " of " (items.len()) @if more { "+" } " bindings"
            @if status.is_some() || needle.is_some() { " match the filter" }
        }
        @if items.is_empty() {
            div class="empty" {
                h2 { "No bindings in this tenant yet" }
                p { "Create one with the form above, or let your app create one. With a user token of a super administrator (mint one on " a href="/_exbind/console/apps" { "Apps" } "):" }
                (code_block("curl-create", &curl))
                p class="small" { "It appears here as soon as it is made, and moves to " code { "done" } " on its own." }
            }
        } @else if shown.is_empty() {
            div class="empty" {
                h2 { "No binding matches" }
                p { a href=(action) { "Clear the filter" } " to see all " (items.len()) "." }
            }
        } @else {
            div class="table-wrap" {
                table class="table" id="bindings-table" {
                    caption class="visually-hidden" { "Bindings of " (tenant) }
                    thead { tr {
                        th scope="col" { "Exchange account" }
                        th scope="col" { "Admin account" }
                        th scope="col" { "User" }
                        th scope="col" { "Status" }
                        th scope="col" { "Age" }
                        th scope="col" { span class="visually-hidden" { "Actions" } }
                    } }
                    tbody {
                        @for (n, b) in shown.iter().enumerate() {
                            tr data-id=(s(b, "exchange_binding_id")) data-status=(s(b, "status")) {
                                td class="wrap" {
                                    a href=(binding_url(&tenant, s(b, "exchange_binding_id"))) { (s(b, "exchange_account")) }
                                }
                                td class="wrap" { (s(b, "admin_account")) }
                                td { (s(b, "user_id")) }
                                td {
                                    (badge(s(b, "status")))
                                    @if let Some(r) = b["reason"].as_str() { div class="small muted reason" { (r) } }
                                }
                                td class="nowrap" title=(s(b, "created_at")) { (ago(s(b, "created_at"), now)) }
                                td { (actions(&sg, &tenant, b, n, &here)) }
                            }
                        }
                    }
                }
            }
        }
    };
    let title = format!("Bindings · {tenant}");
    Ok(sg.render(Page {
        nav: Nav::Bindings,
        title: &title,
        header,
        body,
        live: Some((
            Live {
                kind: "bindings",
                tenant: Some(tenant.clone()),
                binding: None,
            },
            live,
        )),
    }))
}

/// The form actions of the bindings pages, each one control-plane call.
pub async fn action(
    State(c): State<Console>,
    PagePath(tenant): PagePath<String>,
    req: Request,
) -> Response {
    let (_, form) = match signed_form(&c, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let t = seg(&tenant);
    let id = form.get("id");
    let one = format!("/_exbind/v1/tenants/{t}/bindings/{id}");
    let outcome = match form.get("op") {
        "create" => c
            .call(
                Method::POST,
                &format!("/_exbind/v1/tenants/{t}/bindings"),
                Some(&json!({
                    "admin_account": form.get("admin_account"),
                    "exchange_account": form.get("exchange_account"),
                    "user_id": form.get("user_id"),
                })),
            )
            .await
            .map(|b| {
                format!(
                    "Bound {} to {} ({}).",
                    s(&b, "exchange_account"),
                    s(&b, "user_id"),
                    s(&b, "status")
                )
            }),
        "advance" => c
            .call(Method::POST, &format!("{one}/advance"), None)
            .await
            .map(|b| format!("{} is now {}.", s(&b, "exchange_account"), s(&b, "status"))),
        "force" => {
            let status = form.get("status");
            let mut body = json!({ "status": status });
            if let Some(r) = form.opt("reason") {
                body["reason"] = json!(r);
            }
            c.call(Method::PATCH, &one, Some(&body)).await.map(|b| {
                format!(
                    "{} forced to {}.",
                    s(&b, "exchange_account"),
                    s(&b, "status")
                )
            })
        }
        "delete" => c
            .call(Method::DELETE, &one, None)
            .await
            .map(|_| "Binding deleted.".to_string()),
        "complete" => c
            .call(
                Method::POST,
                &format!("/_exbind/v1/tenants/{t}/sync/complete"),
                None,
            )
            .await
            .map(|d| format!("{} binding(s) moved to done.", d["completed"])),
        "wipe" => c
            .call(
                Method::DELETE,
                &format!("/_exbind/v1/tenants/{t}/bindings"),
                None,
            )
            .await
            .map(|d| format!("{} binding(s) deleted.", d["deleted"])),
        other => Err(super::Failure {
            code: 190002,
            msg: "invalid parameters in request".into(),
            message: Some(format!("no action {other:?}")),
            violations: vec![],
        }),
    };
    let default = format!("/_exbind/console/tenants/{t}/bindings");
    done(&c, &back(&form, &default), outcome)
}

pub async fn detail(
    sg: Signed,
    State(c): State<Console>,
    PagePath((tenant, id)): PagePath<(String, String)>,
) -> Result<Response, Response> {
    let (items, _) = all_bindings(&c, &tenant).await?;
    let key = exbind_api::id::decode(&id).ok();
    let found = items.iter().find(|b| {
        let same = |k: &exbind_api::id::BindingKey| {
            exbind_api::accounts::same_address(s(b, "admin_account"), &k.admin_account)
                && exbind_api::accounts::same_address(s(b, "exchange_account"), &k.exchange_account)
        };
        key.as_ref().is_some_and(same)
    });
    let here = binding_url(&tenant, &id);
    let list_url = format!("/_exbind/console/tenants/{}/bindings", seg(&tenant));
    let journal = c
        .get(&format!(
            "/_exbind/v1/requests?tenant_key={}&page_size=1000",
            seg(&tenant)
        ))
        .await?;
    let touched: Vec<&Value> = journal["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| key.as_ref().is_some_and(|k| touches(e, k)))
        .take(50)
        .collect();
    let header = html! {
        div {
            p class="eyebrow" { a href=(list_url) { "Bindings of " (tenant) } }
            h1 class="wrap" { @if let Some(b) = found { (s(b, "exchange_account")) } @else { "Binding not found" } }
        }
    };
    let live = html! {
        @if let Some(b) = found {
            div class="grid detail-grid" {
                section class="card" aria-labelledby="facts-heading" {
                    h2 id="facts-heading" { "Binding" }
                    dl class="kv" {
                        dt { "Status" } dd { (badge(s(b, "status"))) }
                        @if let Some(r) = b["reason"].as_str() { dt { "Reason" } dd { (r) } }
                        dt { "Exchange account" } dd { (s(b, "exchange_account")) }
                        dt { "Admin account" } dd { (s(b, "admin_account")) }
                        dt { "User" } dd { (s(b, "user_id")) }
                        dt { "Id" } dd { code class="wrap" { (s(b, "exchange_binding_id")) } }
                        dt { "Created" } dd { (time(s(b, "created_at"))) }
                        dt { "Updated" } dd { (time(s(b, "updated_at"))) }
                    }
                    div class="actions-bar" { (actions(&sg, &tenant, b, 0, &here)) }
                }
                section class="card" aria-labelledby="timeline-heading" {
                    h2 id="timeline-heading" { "Time line" }
                    ol class="timeline" {
                        li { div { strong { "created" } } div class="small muted" { (time(s(b, "created_at"))) } }
                        @for step in b["history"].as_array().into_iter().flatten() {
                            li data-status=(s(step, "status")) {
                                div { (badge(s(step, "status"))) }
                                div class="small muted" { (time(s(step, "at"))) }
                            }
                        }
                    }
                }
            }
        } @else {
            div class="empty" {
                h2 { "No such binding in " (tenant) }
                p { "It may have been deleted. " a href=(list_url) { "Back to the bindings" } }
            }
        }
        section class="section" aria-labelledby="touched-heading" {
            h2 id="touched-heading" { "Requests that touched it" }
            @if touched.is_empty() {
                p class="muted" { "No request in the journal names this binding yet (reads and deletes by its id; creates of its accounts)." }
            } @else {
                (super::pages::journal_table(&touched))
            }
        }
    };
    let title = found.map_or("Binding".to_string(), |b| {
        s(b, "exchange_account").to_string()
    });
    Ok(sg.render(Page {
        nav: Nav::Bindings,
        title: &title,
        header,
        body: html! {},
        live: Some((
            Live {
                kind: "binding",
                tenant: Some(tenant.clone()),
                binding: found.map(|b| s(b, "exchange_binding_id").to_string()),
            },
            live,
        )),
    }))
}

/// Whether a journal entry is a request about this binding: a read or delete of its id, or a
/// create of its accounts (the journal keeps the created id).
fn touches(e: &Value, k: &exbind_api::id::BindingKey) -> bool {
    if let Some(id) = e["exchange_binding_id"].as_str() {
        if let Ok(other) = exbind_api::id::decode(id) {
            return exbind_api::accounts::same_address(&other.admin_account, &k.admin_account)
                && exbind_api::accounts::same_address(
                    &other.exchange_account,
                    &k.exchange_account,
                );
        }
    }
    let path = s(e, "path");
    let Some(raw) = path.strip_prefix("/open-apis/calendar/v4/exchange_bindings/") else {
        return false;
    };
    exbind_api::id::decode_path_segment(raw).is_ok_and(|other| {
        exbind_api::accounts::same_address(&other.admin_account, &k.admin_account)
            && exbind_api::accounts::same_address(&other.exchange_account, &k.exchange_account)
    })
}
