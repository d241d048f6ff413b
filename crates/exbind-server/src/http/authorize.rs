//! The authorize page (oauth.md §2): `GET /open-apis/authen/v1/authorize` (and the legacy
//! `…/v1/index`) checks the request, then the user chooses an account and consents, each
//! step a plain POST form carrying the request as a signed, short-lived handle; the answer
//! is a redirect to the app with `code` and `state` (or `error`).
//!
//! The form contract is an interface (apps drive these pages from their own browser tests):
//! `<button name="user" value="{tenant_key}/{user_id}">` on the first step,
//! `<button name="decision" value="allow|deny">` on the second, `<input name="request">` on
//! both.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue, StatusCode};
use maud::{html, Markup};
use serde::{Deserialize, Serialize};
use url::Url;

use super::html::{auth_page, error_page, respond};
use super::Payload;
use crate::domain::model::{App, Challenge, User, UserStatus};
use crate::domain::scopes;
use crate::oauth::{self, redirect};
use crate::state::{AppState, SharedState};

pub const AUTHORIZE_ROUTE: &str = "/open-apis/authen/v1/authorize";
const INDEX_ROUTE: &str = "/open-apis/authen/v1/index";

/// How long a page's `request` handle stays good.
const HANDLE_TTL_MS: i64 = 10 * 60 * 1000;
const HANDLE_LABEL: &[u8] = b"authorize request";

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(AUTHORIZE_ROUTE, get(start).post(step))
        .route(INDEX_ROUTE, get(start))
}

/// The request, as the page's forms carry it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Handle {
    app_id: String,
    redirect_uri: String,
    scope: Option<String>,
    state: Option<String>,
    challenge: Option<Challenge>,
    /// `{tenant_key}/{user_id}` once an account is chosen.
    user: Option<String>,
    /// Milliseconds since the epoch.
    expires_at: i64,
}

impl Handle {
    fn seal(&self, state: &AppState) -> String {
        let json = serde_json::to_vec(self).expect("serializable");
        state.sessions.seal(HANDLE_LABEL, &json)
    }

    fn open(state: &AppState, text: &str) -> Option<Handle> {
        let json = state.sessions.unseal(HANDLE_LABEL, text)?;
        serde_json::from_slice::<Handle>(&json)
            .ok()
            .filter(|h| state.now() < h.expires_at)
    }
}

fn bad_request(heading: &str, message: impl AsRef<str>) -> Response {
    error_page(StatusCode::BAD_REQUEST, heading, message.as_ref())
}

/// A `302` to `location`, with a page that links it for a client that does not follow.
fn redirect_to(location: String) -> Response {
    let page = auth_page(
        "Redirecting",
        html! {
            section class="card" {
                h1 { "Redirecting…" }
                p { "Continue to " a href=(location) { "the app" } "." }
            }
        },
    );
    let mut r = respond(StatusCode::FOUND, page);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The redirect that tells the app the request failed (RFC 6749 §4.1.2.1).
fn error_redirect(to: &str, error: &str, description: &str, st: Option<&str>) -> Response {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(s) = st {
        params.push(("state", s));
    }
    redirect_to(redirect::with_params(to, &params))
}

/// The app, usable for a login; else the error page saying why.
async fn login_app(state: &AppState, app_id: Option<&str>) -> Result<App, Response> {
    let Some(app_id) = app_id.filter(|a| !a.is_empty()) else {
        return Err(bad_request(
            "Missing app",
            "The sign-in link names no app: it needs a client_id (or app_id) parameter.",
        ));
    };
    let app = match state.store.app(app_id).await {
        Ok(Some(app)) => app,
        Ok(None) => {
            return Err(bad_request(
                "Unknown app",
                format!("There is no app {app_id:?}. Check the client_id of the sign-in link."),
            ))
        }
        Err(e) => return Err(server_error(e)),
    };
    if !app.login.enabled {
        return Err(bad_request(
            "App disabled",
            format!(
                "The app {:?} is disabled, so no one can sign in to it.",
                app.name()
            ),
        ));
    }
    Ok((*app).clone())
}

fn server_error(e: crate::store::StoreError) -> Response {
    tracing::error!(cause = %e, "authorize page failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "exbind could not read its store. Try again in a moment.",
    )
}

/// The users who may pick an account: the active users of the tenants the app is installed in.
async fn offered_users(state: &AppState, app: &App) -> Result<Vec<User>, Response> {
    let mut out = Vec::new();
    for tenant in &app.tenants {
        let mut after = String::new();
        loop {
            let page = state
                .store
                .users(tenant, &after, 500)
                .await
                .map_err(server_error)?;
            let Some(last) = page.last() else { break };
            after = last.user_id.clone();
            out.extend(page.into_iter().filter(|u| u.status == UserStatus::Active));
        }
    }
    Ok(out)
}

fn user_ref(u: &User) -> String {
    format!("{}/{}", u.tenant_key, u.user_id)
}

/// `GET …/authorize`: the request's checks, then the first page (or, with `login_hint` and
/// `auto_consent`, the redirect at once).
async fn start(State(state): State<SharedState>, RawQuery(q): RawQuery) -> Response {
    let q: HashMap<String, String> = q
        .as_deref()
        .map(|q| serde_urlencoded::from_str(q).unwrap_or_default())
        .unwrap_or_default();
    let get = |k: &str| q.get(k).map(String::as_str);
    let app = match login_app(&state, get("client_id").or(get("app_id"))).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some(redirect_uri) = get("redirect_uri").filter(|r| !r.is_empty()) else {
        return bad_request(
            "Missing redirect URI",
            "The sign-in link has no redirect_uri, so there is nowhere to send you back to.",
        );
    };
    if let Err(why) = redirect::allowed(&app.login.redirect_uris, redirect_uri) {
        return bad_request("Redirect URI not allowed", format!("{why}."));
    }
    let to = redirect_uri;

    let st = get("state");
    if let Some(rt) = get("response_type").filter(|r| *r != "code") {
        return error_redirect(
            to,
            "unsupported_response_type",
            &format!("response_type must be code, not {rt:?}"),
            st,
        );
    }
    if let Err(why) = oauth::grant_scopes(&app, get("scope")) {
        return error_redirect(to, "invalid_scope", &why, st);
    }
    let challenge = match oauth::challenge(
        get("code_challenge").map(str::to_string),
        get("code_challenge_method").map(str::to_string),
    ) {
        Ok(c) => c,
        Err((_, why)) => return error_redirect(to, "invalid_request", &why, st),
    };
    let users = match offered_users(&state, &app).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let hinted = get("login_hint").and_then(|hint| {
        users
            .iter()
            .find(|u| hint == user_ref(u) || hint == u.user_id)
    });
    let handle = Handle {
        app_id: app.app_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        scope: get("scope").map(str::to_string),
        state: st.map(str::to_string),
        challenge,
        user: hinted.map(user_ref),
        expires_at: state.now() + HANDLE_TTL_MS,
    };
    match hinted {
        Some(u) if app.login.auto_consent => allow(&state, &app, &handle, u).await,
        Some(u) => consent_page(&state, &app, &handle, u),
        None => choose_page(&state, &app, &handle, &users),
    }
}

#[derive(Deserialize)]
struct StepForm {
    request: Option<String>,
    user: Option<String>,
    decision: Option<String>,
}

/// `POST …/authorize`: an account chosen, or a decision.
async fn step(State(state): State<SharedState>, Payload(body): Payload) -> Response {
    let expired = || {
        bad_request(
            "This sign-in has expired",
            "The sign-in page was open too long or was changed. Go back to the app and sign in again.",
        )
    };
    let Ok(form) = serde_urlencoded::from_bytes::<StepForm>(&body) else {
        return expired();
    };
    let Some(mut handle) = form
        .request
        .as_deref()
        .and_then(|r| Handle::open(&state, r))
    else {
        return expired();
    };
    let app = match login_app(&state, Some(&handle.app_id)).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    // Checked when the page was made; the app's settings may have changed since.
    if let Err(why) = redirect::allowed(&app.login.redirect_uris, &handle.redirect_uri) {
        return bad_request("Redirect URI not allowed", format!("{why}."));
    }
    let to = handle.redirect_uri.clone();
    if form.decision.as_deref() == Some("deny") {
        return error_redirect(
            &to,
            "access_denied",
            "the user cancelled the sign-in",
            handle.state.as_deref(),
        );
    }
    let users = match offered_users(&state, &app).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let chosen = form.user.as_ref().or(handle.user.as_ref());
    let Some(user) = chosen.and_then(|c| users.iter().find(|u| user_ref(u) == *c)) else {
        return bad_request(
            "Account not available",
            "That account cannot sign in to this app. Go back to the app and sign in again.",
        );
    };
    handle.user = Some(user_ref(user));
    match form.decision.as_deref() {
        Some("allow") => allow(&state, &app, &handle, user).await,
        Some(other) => bad_request(
            "Unknown choice",
            format!("The form sent decision {other:?}; it takes allow or deny."),
        ),
        None if app.login.auto_consent => allow(&state, &app, &handle, user).await,
        None => consent_page(&state, &app, &handle, user),
    }
}

/// Consent given: a code for the grant, and the redirect that carries it.
async fn allow(state: &AppState, app: &App, h: &Handle, user: &User) -> Response {
    let scopes = match oauth::grant_scopes(app, h.scope.as_deref()) {
        Ok(s) => s,
        // The app lost a scope since the page was made.
        Err(why) => {
            return error_redirect(&h.redirect_uri, "invalid_scope", &why, h.state.as_deref())
        }
    };
    let grant = oauth::new_grant(app, &user.tenant_key, &user.user_id, scopes);
    match oauth::issue_code(state, grant, h.redirect_uri.clone(), h.challenge.clone()).await {
        Ok((code, _)) => {
            let mut params = vec![("code", code.as_str())];
            if let Some(s) = &h.state {
                params.push(("state", s));
            }
            redirect_to(redirect::with_params(&h.redirect_uri, &params))
        }
        Err(e) => server_error(e),
    }
}

fn initial(name: &str) -> String {
    name.chars()
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default()
}

fn app_heading(app: &App, lead: &str) -> Markup {
    html! {
        p class="eyebrow" { (lead) }
        h1 id="page-heading" { (app.name()) }
    }
}

/// Step 1: choose an account.
fn choose_page(state: &AppState, app: &App, h: &Handle, users: &[User]) -> Response {
    let page = auth_page(
        &format!("Sign in to {}", app.name()),
        html! {
            section class="card stack" aria-labelledby="page-heading" {
                (app_heading(app, "Sign in to continue to"))
                form method="post" action=(AUTHORIZE_ROUTE) class="stack" {
                    input type="hidden" name="request" value=(h.seal(state));
                    @if users.is_empty() {
                        div class="alert alert-info" {
                            p { "No one can sign in yet: the app is installed in no tenant with an active user." }
                        }
                    } @else {
                        h2 id="choose-heading" { "Choose an account" }
                        ul class="choices" aria-labelledby="choose-heading" {
                            @for u in users {
                                li {
                                    button type="submit" class="choice" name="user" value=(user_ref(u)) {
                                        span class="avatar" aria-hidden="true" { (initial(&u.name)) }
                                        span class="choice-text" {
                                            span class="choice-name" { (u.name) }
                                            span class="choice-sub" {
                                                (u.user_id) " · " (u.tenant_key)
                                                @if let Some(e) = &u.email { " · " (e) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    div class="actions" {
                        button type="submit" class="btn" name="decision" value="deny" { "Cancel" }
                    }
                }
            }
        },
    );
    respond(StatusCode::OK, page)
}

/// Step 2: consent.
fn consent_page(state: &AppState, app: &App, h: &Handle, user: &User) -> Response {
    let asked = match &h.scope {
        Some(s) => oauth::split_scope(s),
        None => app.scopes.clone(),
    };
    let host = Url::parse(&h.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let page = auth_page(
        &format!("Authorize {}", app.name()),
        html! {
            section class="card stack" aria-labelledby="page-heading" {
                (app_heading(app, "Authorize access"))
                p {
                    strong { (app.name()) } " wants to use your account "
                    strong { (user.name) } " (" (user.user_id) ")."
                }
                @if asked.is_empty() {
                    p class="muted" { "It asks for no permissions beyond knowing who you are." }
                } @else {
                    h2 id="scopes-heading" { "It will be able to" }
                    ul class="scopes" aria-labelledby="scopes-heading" {
                        @for s in &asked {
                            li {
                                div { (scopes::describe(s)) }
                                div class="scope-name" { (s) }
                            }
                        }
                    }
                }
                form method="post" action=(AUTHORIZE_ROUTE) {
                    input type="hidden" name="request" value=(h.seal(state));
                    div class="actions" {
                        button type="submit" class="btn" name="decision" value="deny" { "Cancel" }
                        button type="submit" class="btn btn-primary" name="decision" value="allow" { "Authorize" }
                    }
                }
                p class="small muted" { "You will be sent back to " (host) "." }
            }
        },
    );
    respond(StatusCode::OK, page)
}
