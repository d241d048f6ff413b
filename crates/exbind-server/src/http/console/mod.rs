//! The web console at `/_exbind/console/` (console.md): server-rendered pages to see and
//! steer exbind, on the shared layout (`http::html`), signed in with the admin token.
//!
//! The console is a client of the control plane: every change it makes is a call of the
//! control-plane route that does it, made in-process through the same router (`Control`),
//! so a page can do nothing the API would not, checks nothing twice and publishes the same
//! events. Pages read through it too, so they show what the API answers. Pages work without
//! JavaScript (plain forms, answered with a redirect and a one-time notice); the one
//! embedded script makes the tables live from `GET /_exbind/v1/events`, re-reading the
//! page's live region from the server when an event concerns it.

mod bindings;
mod pages;
pub mod session;

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest as _, FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use maud::{html, Markup};
use serde_json::Value;
use subtle::ConstantTimeEq;
use tower::ServiceExt;

use super::html::{self, brand, document, HtmlError, PageQuery};
use super::Payload;
use crate::error::ApiError;
use crate::state::SharedState;
use session::{cookie, set_cookie, Session, SESSION_COOKIE, SESSION_TTL_MS, SIGNIN_COOKIE};

pub const BASE: &str = "/_exbind/console";
const FLASH_COOKIE: &str = "exbind_flash";
/// Asked by the live script: answer only the page's live region.
const FRAGMENT_HEADER: &str = "x-exbind-fragment";

#[derive(Clone)]
pub struct Console {
    state: SharedState,
    control: Router,
}

pub fn routes(state: &SharedState) -> Router<SharedState> {
    if !state.console {
        return Router::new();
    }
    let console = Console {
        state: state.clone(),
        // With the fallbacks, so that a path of no control-plane route (an empty tenant
        // key from the page's own path) is the documented 404, not an empty answer.
        control: super::with_fallbacks(super::control::routes(state.clone()))
            .with_state(state.clone()),
    };
    Router::new()
        .route(BASE, get(|| async { see_other("/_exbind/console/") }))
        .route("/_exbind/console/", get(pages::overview))
        .route("/_exbind/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/_exbind/console/sign-out", post(sign_out))
        .route("/_exbind/console/tenants/{tenant_key}", get(pages::tenant))
        .route(
            "/_exbind/console/tenants/{tenant_key}/actions",
            post(pages::tenant_action),
        )
        .route("/_exbind/console/bindings", get(bindings::first_tenant))
        .route(
            "/_exbind/console/tenants/{tenant_key}/bindings",
            get(bindings::list).post(bindings::action),
        )
        .route(
            "/_exbind/console/tenants/{tenant_key}/bindings/{*id}",
            get(bindings::detail),
        )
        .route("/_exbind/console/requests", get(pages::requests))
        .route("/_exbind/console/requests/{log_id}", get(pages::request))
        .route(
            "/_exbind/console/faults",
            get(pages::faults).post(pages::fault_action),
        )
        .route("/_exbind/console/apps", get(pages::apps).post(pages::mint))
        .route(
            "/_exbind/console/seed",
            get(pages::seed).post(pages::apply_seed),
        )
        .route("/_exbind/console/{*rest}", get(not_found))
        .with_state(console)
}

async fn not_found() -> Response {
    HtmlError::new(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no console page at this address. Start again from the overview.",
    )
    .into_response()
}

// ---- calling the control plane -----------------------------------------------------------

/// What a control-plane call answered when it was not a success.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: i64,
    pub msg: String,
    pub message: Option<String>,
    /// (field, description) of each field violation.
    pub violations: Vec<(String, String)>,
}

impl Failure {
    /// One line for a notice: the code, what it means and the detail.
    fn line(&self) -> String {
        let mut s = format!("{} {}", self.code, self.msg);
        if let Some(m) = &self.message {
            s.push_str(": ");
            s.push_str(m);
        }
        for (f, d) in &self.violations {
            s.push_str(&format!("; {f}: {d}"));
        }
        s
    }
}

impl Console {
    /// Calls a control-plane route with the admin token; its `data` on success.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let bytes = body.map_or_else(Vec::new, |b| serde_json::to_vec(b).expect("serializable"));
        self.call_raw(method, path, "application/json", bytes).await
    }

    async fn call_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Value, Failure> {
        let internal = |m: String| Failure {
            code: 190003,
            msg: "internal service error".into(),
            message: Some(m),
            violations: vec![],
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.state.admin_token),
            )
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .map_err(|e| internal(format!("bad control-plane path {path:?}: {e}")))?;
        let resp = self
            .control
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| internal(e.to_string()))?;
        if let Some(err) = resp.extensions().get::<ApiError>() {
            return Err(Failure {
                code: err.code,
                msg: err.msg.clone(),
                message: err.detail.message.clone(),
                violations: err
                    .detail
                    .field_violations
                    .iter()
                    .map(|v| (v.field.clone(), v.description.clone()))
                    .collect(),
            });
        }
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| internal(e.to_string()))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| internal(e.to_string()))?;
        Ok(v["data"].clone())
    }

    /// A read a page cannot do without: its failure is the page's error.
    async fn get(&self, path: &str) -> Result<Value, Response> {
        self.call(Method::GET, path, None).await.map_err(|f| {
            let status = if f.code == 99991201 {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_GATEWAY
            };
            let heading = if f.code == 99991201 {
                "Not found"
            } else {
                "The control plane did not answer"
            };
            HtmlError::new(status, heading, f.line()).into_response()
        })
    }
}

/// A 303 to `to` with a short HTML page and the page headers, so that even a redirect is a
/// readable page. A `to` that is not a valid header value (it came from a query) goes to the
/// overview instead.
pub fn see_other(to: &str) -> Response {
    let to = HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/_exbind/console/"));
    let shown = to.to_str().unwrap_or("/_exbind/console/").to_string();
    let page = html::auth_page(
        "Redirecting",
        html! { p class="card" { "Continue to " a href=(shown) { (shown) } "." } },
    );
    let mut resp = html::respond(StatusCode::SEE_OTHER, page);
    resp.headers_mut().insert(header::LOCATION, to);
    resp
}

/// A path segment, percent-encoded.
pub fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

// ---- sign-in, sessions, forms ---------------------------------------------------------------

/// A signed-in request: its session and the page it asked for.
pub struct Signed {
    pub session: Session,
    pub csrf: String,
    flash: Option<(String, String)>,
    fragment: bool,
    host: String,
}

fn sign_in_redirect(parts: &Parts) -> Response {
    let wanted = parts
        .uri
        .path_and_query()
        .map_or(BASE, |p| p.as_str())
        .to_string();
    let next = if parts.method == Method::GET {
        wanted
    } else {
        format!("{BASE}/")
    };
    see_other(&format!("{BASE}/sign-in?next={}", seg(&next)))
}

impl FromRequestParts<Console> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<Self, Response> {
        let session = c.state.console_session(&parts.headers).await.map_err(|e| {
            HtmlError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The store did not answer",
                e.0,
            )
            .into_response()
        })?;
        let Some(session) = session else {
            return Err(sign_in_redirect(parts));
        };
        let flash = cookie(&parts.headers, FLASH_COOKIE)
            .and_then(|v| c.state.sessions.unseal(b"flash", v))
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| {
                let (kind, text) = s.split_once('\n')?;
                Some((kind.to_string(), text.to_string()))
            });
        Ok(Signed {
            csrf: c.state.sessions.csrf(&session),
            session,
            flash,
            fragment: parts.headers.contains_key(FRAGMENT_HEADER),
            host: parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1:8787")
                .to_string(),
        })
    }
}

/// A form posted by a signed-in page, its CSRF token checked.
pub struct Form(pub HashMap<String, String>);

impl Form {
    pub fn get(&self, k: &str) -> &str {
        self.0.get(k).map_or("", |s| s.trim())
    }
    /// The field, unless empty.
    pub fn opt(&self, k: &str) -> Option<&str> {
        Some(self.get(k)).filter(|s| !s.is_empty())
    }
}

fn parse_form(body: &[u8]) -> HashMap<String, String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// A `multipart/form-data` body's fields, as text; a file field's file name is also kept,
/// under `{name}.filename`. (Forms with a file input post this way, so a file is sent
/// without the page's script.)
async fn parse_multipart(body: Bytes, boundary: String) -> Result<HashMap<String, String>, String> {
    let body = futures_util::stream::once(async { Ok::<_, std::convert::Infallible>(body) });
    let mut parts = multer::Multipart::new(body, boundary);
    let mut fields = HashMap::new();
    while let Some(field) = parts.next_field().await.map_err(|e| e.to_string())? {
        let Some(name) = field.name().map(str::to_owned) else {
            continue;
        };
        if let Some(file) = field.file_name() {
            fields.insert(format!("{name}.filename"), file.to_owned());
        }
        let bytes = field.bytes().await.map_err(|e| e.to_string())?;
        let text = String::from_utf8(bytes.into())
            .map_err(|_| format!("The field \"{name}\" is not UTF-8 text."))?;
        fields.insert(name, text);
    }
    Ok(fields)
}

/// Reads a signed-in page's form: a session (else to the sign-in page) and the session's CSRF
/// token (else a 403 page: the form is stale or forged).
pub async fn signed_form(c: &Console, req: Request) -> Result<(Signed, Form), Response> {
    let (mut parts, body) = req.into_parts();
    let signed = Signed::from_request_parts(&mut parts, c).await?;
    let boundary = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok());
    let Payload(bytes) = Payload::from_request(Request::from_parts(parts, body), &()).await?;
    let form = Form(match boundary {
        Some(b) => parse_multipart(bytes, b).await.map_err(|why| {
            HtmlError::new(StatusCode::BAD_REQUEST, "This form could not be read", why)
                .into_response()
        })?,
        None => parse_form(&bytes),
    });
    if !c.state.sessions.csrf_ok(&signed.session, form.get("csrf")) {
        return Err(HtmlError::new(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "The form was not sent by this console session (its CSRF token is missing or \
             wrong). Go back, reload the page and try again.",
        )
        .into_response());
    }
    Ok((signed, form))
}

/// After a change: back to `to` with a one-time notice.
pub fn done(c: &Console, to: &str, outcome: Result<String, Failure>) -> Response {
    let (kind, text) = match outcome {
        Ok(t) => ("success", t),
        Err(f) => ("error", f.line()),
    };
    let text: String = text.chars().take(1200).collect();
    let sealed = c
        .state
        .sessions
        .seal(b"flash", format!("{kind}\n{text}").as_bytes());
    let mut resp = see_other(to);
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(FLASH_COOKIE, &sealed, BASE, 30),
    );
    resp
}

/// Where a form says to go back to: a console page, or the overview.
pub fn back(form: &Form, default: &str) -> String {
    let to = form.get("back");
    if to.starts_with("/_exbind/console/") && !to.contains("//") && !to.contains('\\') {
        to.to_string()
    } else {
        default.to_string()
    }
}

#[derive(serde::Deserialize)]
struct NextQuery {
    next: Option<String>,
    error: Option<String>,
}

fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/_exbind/console/") && !n.contains("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => format!("{BASE}/"),
    }
}

async fn sign_in_page(
    State(c): State<Console>,
    headers: HeaderMap,
    PageQuery(q): PageQuery<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    // A store that does not answer only costs the shortcut: the form is shown.
    if let Ok(Some(_)) = c.state.console_session(&headers).await {
        return see_other(&next);
    }
    sign_in_form(
        &next,
        q.error.is_some().then_some("That is not the admin token."),
    )
}

fn sign_in_form(next: &str, error: Option<&str>) -> Response {
    let nonce = crate::tokens::new_secret(16);
    let page = html::auth_page(
        "Sign in",
        html! {
            section class="card stack" aria-labelledby="signin-heading" {
                h1 id="signin-heading" { "Sign in to the console" }
                p class="muted" {
                    "Paste the admin token: the one "
                    code { "exbind serve" }
                    " printed at start (" code { "admin token: …" } "), or the one you gave it with "
                    code { "--admin-token" } "."
                }
                @if let Some(e) = error {
                    div class="alert alert-error" role="alert" { p { (e) } }
                }
                form method="post" action="/_exbind/console/sign-in" {
                    input type="hidden" name="signin" value=(nonce);
                    input type="hidden" name="next" value=(next);
                    div class="field" {
                        label for="token" { "Admin token" }
                        input id="token" name="token" type="password" required
                            autocomplete="current-password" autofocus
                            aria-describedby="token-hint" aria-invalid=[error.is_some().then_some("true")];
                        span id="token-hint" class="hint" { "Kept in a session cookie for 8 hours; never in the address bar." }
                    }
                    button class="btn btn-primary btn-block" type="submit" { "Sign in" }
                }
            }
        },
    );
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let mut resp = html::respond(status, page);
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SIGNIN_COOKIE, &nonce, BASE, 3600),
    );
    resp
}

async fn sign_in(State(c): State<Console>, headers: HeaderMap, Payload(body): Payload) -> Response {
    let form = Form(parse_form(&body));
    let next = safe_next(form.opt("next"));
    // The form's own token must match its cookie: a sign-in cannot be posted from elsewhere.
    let nonce_ok = cookie(&headers, SIGNIN_COOKIE).is_some_and(|v| {
        !v.is_empty() && bool::from(v.as_bytes().ct_eq(form.get("signin").as_bytes()))
    });
    if !nonce_ok {
        return HtmlError::new(
            StatusCode::FORBIDDEN,
            "This sign-in form has expired",
            "Open the sign-in page again and paste the admin token there.",
        )
        .into_response();
    }
    let token_ok = bool::from(
        form.get("token")
            .as_bytes()
            .ct_eq(c.state.admin_token.as_bytes()),
    );
    if !token_ok {
        return sign_in_form(&next, Some("That is not the admin token."));
    }
    let (_, value) = c.state.sessions.issue(c.state.now());
    let mut resp = see_other(&next);
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &value, "/_exbind/", SESSION_TTL_MS / 1000),
    );
    h.append(header::SET_COOKIE, set_cookie(SIGNIN_COOKIE, "", BASE, 0));
    resp
}

async fn sign_out(State(c): State<Console>, req: Request) -> Response {
    let (signed, _) = match signed_form(&c, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let s = signed.session;
    if let Err(e) = c
        .state
        .store
        .revoke_console_session(s.id(), s.expires_at, c.state.now())
        .await
    {
        return HtmlError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "You are still signed in",
            format!("The sign-out could not be recorded ({}). Try again.", e.0),
        )
        .into_response();
    }
    let mut resp = see_other(&format!("{BASE}/sign-in"));
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", "/_exbind/", 0),
    );
    resp
}

// ---- the page shell ---------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Bindings,
    Requests,
    Faults,
    Apps,
    Seed,
}

const NAV: [(Nav, &str, &str); 6] = [
    (Nav::Overview, "Overview", "/_exbind/console/"),
    (Nav::Bindings, "Bindings", "/_exbind/console/bindings"),
    (Nav::Requests, "Requests", "/_exbind/console/requests"),
    (Nav::Faults, "Faults", "/_exbind/console/faults"),
    (Nav::Apps, "Apps", "/_exbind/console/apps"),
    (Nav::Seed, "Seed", "/_exbind/console/seed"),
];

/// What keeps a page live: which events it follows (the `data-` attributes the script reads).
#[derive(Default)]
pub struct Live {
    /// `bindings`, `binding`, `requests` or `overview`.
    pub kind: &'static str,
    pub tenant: Option<String>,
    pub binding: Option<String>,
}

/// A console page: the top bar, the page's notice, its header and its content. `live`
/// (the region the script re-reads) is all a fragment request gets.
pub struct Page<'a> {
    pub nav: Nav,
    pub title: &'a str,
    pub header: Markup,
    pub body: Markup,
    pub live: Option<(Live, Markup)>,
}

impl Signed {
    pub fn render(self, page: Page<'_>) -> Response {
        self.render_status(StatusCode::OK, page)
    }

    pub fn render_status(self, status: StatusCode, page: Page<'_>) -> Response {
        if self.fragment {
            if let Some((_, region)) = page.live {
                return html::respond(status, region);
            }
        }
        let live_attrs = page.live.as_ref().map(|(l, _)| l);
        let content = html! {
            a class="skip-link" href="#main" { "Skip to content" }
            header class="topbar" {
                div class="topbar-inner" {
                    a class="brand-link" href="/_exbind/console/" { (brand()) }
                    nav class="nav" aria-label="Console" {
                        @for (n, label, href) in NAV {
                            @if n == page.nav {
                                a href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                    div class="topbar-end" {
                        @if live_attrs.is_some() {
                            span id="live-badge" class="badge badge-muted live-badge" data-state="off" { "Static" }
                        }
                        form method="post" action="/_exbind/console/sign-out" {
                            input type="hidden" name="csrf" value=(self.csrf);
                            button class="btn btn-small" type="submit" { "Sign out" }
                        }
                    }
                }
            }
            main id="main" class="content" tabindex="-1"
                data-live=[live_attrs.map(|l| l.kind)]
                data-tenant=[live_attrs.and_then(|l| l.tenant.as_deref())]
                data-binding=[live_attrs.and_then(|l| l.binding.as_deref())] {
                @if let Some((kind, text)) = &self.flash {
                    @let class = if kind == "error" { "alert alert-error" } else { "alert alert-success" };
                    div class=(class) role=(if kind == "error" { "alert" } else { "status" }) {
                        p { (text) }
                    }
                }
                p id="live-status" class="visually-hidden" role="status" {}
                div class="page-header" { (page.header) }
                (page.body)
                @if let Some((_, region)) = &page.live {
                    div id="live" { (region) }
                }
            }
        };
        let doc = document(page.title, "app", content, &["console.js"]);
        let mut resp = html::respond(status, doc);
        if self.flash.is_some() {
            resp.headers_mut()
                .append(header::SET_COOKIE, set_cookie(FLASH_COOKIE, "", BASE, 0));
        }
        resp
    }

    /// The CSRF token as a form's hidden field, and where the form goes back to.
    pub fn hidden(&self, back: &str) -> Markup {
        html! {
            input type="hidden" name="csrf" value=(self.csrf);
            input type="hidden" name="back" value=(back);
        }
    }

    /// This server's address as the browser reached it, for `curl` lines.
    pub fn origin(&self) -> String {
        format!("http://{}", self.host)
    }
}

// ---- small shared pieces -------------------------------------------------------------------

/// A status badge.
pub fn badge(status: &str) -> Markup {
    html! { span class={ "badge badge-" (status) } { (status) } }
}

/// An RFC 3339 time as a `<time>`, shown as its clock time (UTC).
pub fn time(rfc3339: &str) -> Markup {
    let shown = rfc3339
        .get(11..19)
        .map_or(rfc3339.to_string(), |t| format!("{t} UTC"));
    html! { time datetime=(rfc3339) title=(rfc3339) { (shown) } }
}

/// How long ago an RFC 3339 time was, in words.
pub fn ago(rfc3339: &str, now_ms: i64) -> String {
    let Ok(t) =
        time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
    else {
        return String::new();
    };
    let secs = ((now_ms - (t.unix_timestamp_nanos() / 1_000_000) as i64) / 1000).max(0);
    match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// A string field of a JSON object.
pub fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

/// A block of code with a button that copies it (the button works with the script).
pub fn code_block(id: &str, text: &str) -> Markup {
    html! {
        div class="code-wrap" {
            pre class="codeblock" id=(id) { code { (text) } }
            button class="btn btn-small copy" type="button" data-copy=(id) { "Copy" }
        }
    }
}

/// Raw JSON, pretty-printed, as a code block.
pub fn json_block(v: &Value) -> Markup {
    html! { pre class="codeblock" { code { (serde_json::to_string_pretty(v).unwrap_or_default()) } } }
}
