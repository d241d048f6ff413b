//! Well-formed requests for the `http` target: each starts from a request the server accepts
//! — a seeded token that may make it, a binding id, code or token answered earlier in the
//! same input, a real route and a body of the right shape — and then takes a few mutations,
//! so the fuzzer reaches the successes (a create, a delete, a token exchange) and wanders
//! off from there. Counts of the successes reached are kept for the run's output.

use std::sync::atomic::{AtomicU64, Ordering};

use arbitrary::Arbitrary;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use exbind_api::id;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::harness::Harness;
use super::http::{Answer, Val};
use super::pools::{self, Text, ADMIN_TOKEN};
use crate::domain::scopes::COLLECTION_ROUTE;
use crate::http::control::FAULT_ROUTES;
use crate::http::oauth;

/// Mutations one well-formed request takes at most.
const MAX_MUTATIONS: usize = 3;
/// A PKCE verifier (43 characters of the allowed alphabet).
const VERIFIER: &str = "fuzz-verifier-0123456789-abcdefghijklmnopqr";
const V1: &str = "/_exbind/v1";
/// The authorize page, and its legacy route.
pub const AUTHORIZE_ROUTE: &str = "/open-apis/authen/v1/authorize";
pub const INDEX_ROUTE: &str = "/open-apis/authen/v1/index";

#[derive(Arbitrary, Debug)]
pub struct Valid {
    op: Op,
    mutations: Vec<Mutation>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum IdType {
    User,
    Open,
    Union,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Pkce {
    S256,
    Plain,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Create {
        create: u8,
        writer: u8,
    },
    Get {
        binding: u8,
        reader: u8,
        id_type: IdType,
    },
    Delete {
        binding: u8,
        writer: u8,
    },
    TenantToken {
        app: u8,
    },
    AppToken {
        app: u8,
    },
    /// The authorize page (or the legacy `index`), for a login app and a loopback redirect.
    Authorize {
        app: u8,
        redirect: u8,
        state: Text,
        scope: bool,
        pkce: Option<Pkce>,
        hint: Option<u8>,
        legacy: bool,
    },
    /// The page's form, posted back with a handle it answered: an account, or a decision.
    AuthorizeStep {
        handle: u8,
        user: Option<u8>,
        allow: bool,
    },
    /// A code from the control plane, as the authorize page would give it.
    IssueCode {
        app: u8,
        user: u8,
        redirect: u8,
        pkce: Option<Pkce>,
    },
    /// `POST /open-apis/authen/v2/oauth/token`, `authorization_code`.
    Exchange {
        code: u8,
        basic: bool,
        form: bool,
    },
    /// The same route, `refresh_token`.
    Refresh {
        token: u8,
        basic: bool,
        scope: bool,
    },
    /// The v1 routes the SDKs call, with the app's `app_access_token` as bearer.
    V1Token {
        live: u8,
        route: u8,
    },
    UserInfo {
        token: u8,
    },
    Mint {
        app: u8,
        user: u8,
        expires_in: Option<i64>,
    },
    ArmFault {
        method: u8,
        route: u8,
        code: u8,
        times: Option<u8>,
        latency: bool,
    },
    Advance {
        binding: u8,
    },
    Force {
        binding: u8,
        status: u8,
    },
    PatchUser {
        tenant: u8,
        user: u8,
        super_admin: Option<bool>,
        dismissed: bool,
    },
    ControlRead {
        what: u8,
        tenant: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    DropQuery(u8),
    SetQuery(Text, Text),
    DropField(u8),
    SetField(Text, Val),
    ChangeField(u8, Val),
    DropHeader(u8),
    Header(Text, Text),
    Method(u8),
    AppendPath(Text),
    /// The body sent as a form instead of JSON, or the other way round.
    SwapBodyFormat,
    /// The body cut after this many bytes.
    Truncate(u16),
}

/// What the requests of one input answered, for the later ones to use.
pub struct Live {
    pub log_ids: Vec<String>,
    /// (tenant, binding id).
    bindings: Vec<(String, String)>,
    /// (code, index of `LOGIN_APPS`, redirect URI, PKCE verifier).
    codes: Vec<(String, usize, String, Option<String>)>,
    /// User access tokens answered (JWTs and `u-` tokens).
    access: Vec<String>,
    /// (refresh token, index of `LOGIN_APPS`).
    refresh: Vec<(String, usize)>,
    /// The authorize page's `request` handles, with what its redirect would carry.
    handles: Vec<(String, usize, String, Option<String>)>,
    /// App access tokens of `LOGIN_APPS`, minted when the state was seeded.
    app_tokens: Vec<String>,
}

impl Live {
    /// What every input starts from: the seeded bindings, and the codes and tokens minted
    /// with the seeded state.
    pub fn new(h: &Harness) -> Live {
        Live {
            log_ids: Vec::new(),
            bindings: pools::BINDINGS
                .iter()
                .map(|(admin, exchange, _)| ("acme".to_string(), id::encode(admin, exchange)))
                .collect(),
            codes: (h.codes.iter().enumerate())
                .map(|(a, c)| (c.clone(), a, pools::REDIRECTS[0].to_string(), None))
                .collect(),
            access: Vec::new(),
            refresh: h.refresh.clone(),
            handles: Vec::new(),
            app_tokens: h.app_tokens.clone(),
        }
    }
}

/// A request before it is sent: mutable field by field.
pub struct Draft {
    pub method: http::Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Fields,
    pub kind: &'static str,
    /// What a redirect with a code, or a page's handle, belongs to.
    login: Option<(usize, String, Option<String>)>,
}

pub enum Fields {
    None,
    Json(Map<String, Value>),
    Form(Vec<(String, String)>),
    /// Bytes as they are, with the content type of what they were cut from.
    Raw(Vec<u8>, Option<&'static str>),
}

fn pick<T>(items: &[T], i: u8) -> Option<&T> {
    (!items.is_empty()).then(|| &items[i as usize % items.len()])
}

fn challenge(p: Pkce) -> (String, &'static str) {
    match p {
        Pkce::S256 => (B64.encode(Sha256::digest(VERIFIER)), "S256"),
        Pkce::Plain => (VERIFIER.to_string(), "plain"),
    }
}

fn bearer(t: &str) -> (String, String) {
    ("authorization".into(), format!("Bearer {t}"))
}

fn obj(v: Value) -> Fields {
    match v {
        Value::Object(m) => Fields::Json(m),
        _ => Fields::None,
    }
}

impl Draft {
    fn new(method: http::Method, path: String, kind: &'static str) -> Draft {
        Draft {
            method,
            path,
            query: Vec::new(),
            headers: Vec::new(),
            body: Fields::None,
            kind,
            login: None,
        }
    }
    fn control(method: http::Method, path: String) -> Draft {
        let mut d = Draft::new(method, format!("{V1}{path}"), "control");
        d.headers.push(bearer(ADMIN_TOKEN));
        d
    }
    fn with(mut self, k: &str, v: &str) -> Draft {
        self.query.push((k.into(), v.into()));
        self
    }
    fn json(mut self, v: Value) -> Draft {
        self.body = obj(v);
        self
    }

    /// The request's bytes: its target, its headers and its body.
    pub fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            Fields::None => Vec::new(),
            Fields::Json(m) => Value::Object(m.clone()).to_string().into_bytes(),
            Fields::Form(pairs) => serde_urlencoded::to_string(pairs)
                .unwrap_or_default()
                .into_bytes(),
            Fields::Raw(b, _) => b.clone(),
        }
    }
    pub fn content_type(&self) -> Option<&'static str> {
        match self.body {
            Fields::None => None,
            Fields::Json(_) => Some("application/json"),
            Fields::Form(_) => Some("application/x-www-form-urlencoded"),
            Fields::Raw(_, ct) => ct,
        }
    }
    pub fn uri(&self) -> String {
        let mut uri = self.path.clone();
        if !self.query.is_empty() {
            uri.push('?');
            uri.push_str(&serde_urlencoded::to_string(&self.query).unwrap_or_default());
        }
        uri
    }
}

/// A login app (its index, id and tenant) and a redirect URI it allows.
fn login(app: u8, redirect: u8) -> (usize, &'static str, &'static str, &'static str) {
    let a = app as usize % pools::LOGIN_APPS.len();
    let (app_id, _, tenant) = pools::LOGIN_APPS[a];
    // The loopback ones: the last is not allowed.
    (a, app_id, tenant, pools::REDIRECTS[redirect as usize % 3])
}

fn create_of(i: u8) -> (&'static str, &'static str, &'static str, &'static str) {
    pools::CREATES[i as usize % pools::CREATES.len()]
}

/// A writer's token for a tenant: one of the seeded super admins' tokens there.
fn writer(tenant: &str, i: u8) -> &'static str {
    let of_tenant: Vec<&'static str> = pools::WRITERS
        .iter()
        .map(|&w| &pools::TOKENS[w])
        .filter(|t| t.tenant_key == tenant)
        .map(|t| t.token)
        .collect();
    pick(&of_tenant, i)
        .copied()
        .unwrap_or(pools::TOKENS[0].token)
}

impl Valid {
    /// The draft of this request, with its mutations applied.
    pub fn draft(&self, live: &Live) -> Draft {
        let mut d = self.op.draft(live);
        for m in self.mutations.iter().take(MAX_MUTATIONS) {
            m.apply(&mut d);
        }
        d
    }
}

impl Op {
    fn draft(&self, live: &Live) -> Draft {
        use http::Method as M;
        match *self {
            Op::Create { create, writer: w } => {
                let (tenant, admin, exchange, user) = create_of(create);
                let mut d = Draft::new(M::POST, COLLECTION_ROUTE.into(), "create")
                    .with("user_id_type", "user_id")
                    .json(json!({"admin_account": admin, "exchange_account": exchange,
                                 "user_id": user}));
                d.headers.push(bearer(writer(tenant, w)));
                d
            }
            Op::Get {
                binding,
                reader,
                id_type,
            } => {
                let (tenant, id) = pick(&live.bindings, binding).cloned().unwrap_or_default();
                let token = if reader % 4 == 0 {
                    pools::seeded_token(reader / 4).token
                } else {
                    writer(&tenant, reader)
                };
                let t = match id_type {
                    IdType::User => "user_id",
                    IdType::Open => "open_id",
                    IdType::Union => "union_id",
                };
                let mut d = Draft::new(
                    M::GET,
                    format!("{COLLECTION_ROUTE}/{}", id::encode_path_segment(&id)),
                    "binding",
                )
                .with("user_id_type", t);
                d.headers.push(bearer(token));
                d
            }
            Op::Delete { binding, writer: w } => {
                let (tenant, id) = pick(&live.bindings, binding).cloned().unwrap_or_default();
                let mut d = Draft::new(
                    M::DELETE,
                    format!("{COLLECTION_ROUTE}/{}", id::encode_path_segment(&id)),
                    "binding",
                );
                d.headers.push(bearer(writer(&tenant, w)));
                d
            }
            Op::TenantToken { app } | Op::AppToken { app } => {
                let (app_id, secret) = pools::app(app);
                let route = if matches!(self, Op::TenantToken { .. }) {
                    "/open-apis/auth/v3/tenant_access_token/internal"
                } else {
                    "/open-apis/auth/v3/app_access_token/internal"
                };
                Draft::new(M::POST, route.into(), "token")
                    .json(json!({"app_id": app_id, "app_secret": secret}))
            }
            Op::Authorize {
                app,
                redirect,
                ref state,
                scope,
                pkce,
                hint,
                legacy,
            } => {
                let (a, app_id, _, redirect) = login(app, redirect);
                let (route, id_key) = if legacy {
                    (INDEX_ROUTE, "app_id")
                } else {
                    (AUTHORIZE_ROUTE, "client_id")
                };
                let mut d = Draft::new(M::GET, route.into(), "authorize")
                    .with(id_key, app_id)
                    .with("redirect_uri", redirect)
                    .with("state", &state.render());
                if scope {
                    d = d.with("scope", "calendar:calendar offline_access");
                }
                if let Some(p) = pkce {
                    let (c, m) = challenge(p);
                    d = d
                        .with("code_challenge", &c)
                        .with("code_challenge_method", m);
                }
                if let Some(h) = hint {
                    d = d.with("login_hint", pools::user(h));
                }
                d.login = Some((a, redirect.into(), pkce.map(|_| VERIFIER.to_string())));
                d
            }
            Op::AuthorizeStep {
                handle,
                user,
                allow,
            } => {
                let (h, a, redirect, verifier) =
                    pick(&live.handles, handle).cloned().unwrap_or_default();
                let mut form = vec![("request".to_string(), h)];
                match user {
                    Some(u) => form.push(("user".into(), format!("acme/{}", pools::user(u)))),
                    None => form.push((
                        "decision".into(),
                        if allow { "allow" } else { "deny" }.into(),
                    )),
                }
                let mut d = Draft::new(M::POST, AUTHORIZE_ROUTE.into(), "authorize");
                d.body = Fields::Form(form);
                d.login = Some((a, redirect, verifier));
                d
            }
            Op::IssueCode {
                app,
                user,
                redirect,
                pkce,
            } => {
                let (a, app_id, tenant, redirect) = login(app, redirect);
                let mut body = json!({"app_id": app_id, "tenant_key": tenant,
                                      "user_id": pools::user(user), "redirect_uri": redirect});
                if let Some(p) = pkce {
                    let (c, m) = challenge(p);
                    body["code_challenge"] = json!(c);
                    body["code_challenge_method"] = json!(m);
                }
                let mut d = Draft::control(M::POST, "/oauth/codes".into()).json(body);
                d.login = Some((a, redirect.into(), pkce.map(|_| VERIFIER.to_string())));
                d
            }
            Op::Exchange { code, basic, form } => {
                let (code, a, redirect, verifier) =
                    pick(&live.codes, code).cloned().unwrap_or_default();
                let mut fields = vec![
                    ("grant_type", "authorization_code".to_string()),
                    ("code", code),
                    ("redirect_uri", redirect),
                ];
                if let Some(v) = verifier {
                    fields.push(("code_verifier", v));
                }
                v2_token(a, fields, basic, form)
            }
            Op::Refresh {
                token,
                basic,
                scope,
            } => {
                let (t, a) = pick(&live.refresh, token).cloned().unwrap_or_default();
                let mut fields = vec![("grant_type", "refresh_token".into()), ("refresh_token", t)];
                if scope {
                    fields.push(("scope", "calendar:calendar".into()));
                }
                v2_token(a, fields, basic, false)
            }
            Op::V1Token { live: n, route } => {
                let routes = [
                    oauth::OIDC_ACCESS_ROUTE,
                    oauth::ACCESS_ROUTE,
                    oauth::OIDC_REFRESH_ROUTE,
                    oauth::REFRESH_ROUTE,
                ];
                let route = routes[route as usize % routes.len()];
                let refresh = route == oauth::OIDC_REFRESH_ROUTE || route == oauth::REFRESH_ROUTE;
                let (body, a) = if refresh {
                    let (t, a) = pick(&live.refresh, n).cloned().unwrap_or_default();
                    (
                        json!({"grant_type": "refresh_token", "refresh_token": t}),
                        a,
                    )
                } else {
                    let (c, a, _, _) = pick(&live.codes, n).cloned().unwrap_or_default();
                    (json!({"grant_type": "authorization_code", "code": c}), a)
                };
                let mut d = Draft::new(M::POST, route.into(), "oauth").json(body);
                if let Some(t) = live.app_tokens.get(a) {
                    d.headers.push(bearer(t));
                }
                d
            }
            Op::UserInfo { token } => {
                let t = pick(&live.access, token)
                    .cloned()
                    .unwrap_or_else(|| pools::TOKENS[0].token.into());
                let mut d = Draft::new(M::GET, oauth::USER_INFO_ROUTE.into(), "oauth");
                d.headers.push(bearer(&t));
                d
            }
            Op::Mint {
                app,
                user,
                expires_in,
            } => {
                let a = app as usize % pools::LOGIN_APPS.len();
                let (app_id, _, tenant) = pools::LOGIN_APPS[a];
                let mut body =
                    json!({"app_id": app_id, "tenant_key": tenant, "user_id": pools::user(user)});
                if let Some(e) = expires_in {
                    body["expires_in"] = json!(e);
                }
                Draft::control(M::POST, "/user_access_tokens".into()).json(body)
            }
            Op::ArmFault {
                method,
                route,
                code,
                times,
                latency,
            } => {
                let methods = ["GET", "POST", "DELETE"];
                let codes = [190003, 190004, 190005, 99991400, 190010];
                let mut body = json!({
                    "method": methods[method as usize % methods.len()],
                    "route": FAULT_ROUTES[route as usize % FAULT_ROUTES.len()],
                    "error": {"code": codes[code as usize % codes.len()]},
                });
                match times {
                    Some(t) => body["times"] = json!(t % 3 + 1),
                    None => body["fraction"] = json!(0.5),
                }
                if latency {
                    body["latency_ms"] = json!(1);
                }
                Draft::control(M::POST, "/faults".into()).json(body)
            }
            Op::Advance { binding } => {
                let (tenant, id) = pick(&live.bindings, binding).cloned().unwrap_or_default();
                Draft::control(
                    M::POST,
                    format!(
                        "/tenants/{tenant}/bindings/{}/advance",
                        id::encode_path_segment(&id)
                    ),
                )
            }
            Op::Force { binding, status } => {
                let (tenant, id) = pick(&live.bindings, binding).cloned().unwrap_or_default();
                let statuses = ["doing", "cal_done", "timespan_done", "done", "err"];
                let status = statuses[status as usize % statuses.len()];
                let mut body = json!({"status": status});
                if status == "err" {
                    body["reason"] = json!("fuzzed");
                }
                Draft::control(
                    M::PATCH,
                    format!(
                        "/tenants/{tenant}/bindings/{}",
                        id::encode_path_segment(&id)
                    ),
                )
                .json(body)
            }
            Op::PatchUser {
                tenant,
                user,
                super_admin,
                dismissed,
            } => {
                let mut body = json!({});
                if let Some(s) = super_admin {
                    body["super_admin"] = json!(s);
                }
                if dismissed {
                    body["status"] = json!("dismissed");
                }
                Draft::control(
                    M::PATCH,
                    format!(
                        "/tenants/{}/users/{}",
                        pools::tenant(tenant),
                        pools::user(user)
                    ),
                )
                .json(body)
            }
            Op::ControlRead { what, tenant } => {
                let t = pools::tenant(tenant);
                let paths = [
                    format!("/tenants/{t}"),
                    format!("/tenants/{t}/users"),
                    format!("/tenants/{t}/bindings"),
                    "/faults".into(),
                    "/requests".into(),
                    "/apps".into(),
                    format!(
                        "/requests/{}",
                        live.log_ids.last().cloned().unwrap_or_default()
                    ),
                ];
                Draft::control(M::GET, paths[what as usize % paths.len()].clone())
            }
        }
    }
}

/// The v2 token request of a login app, the client's secret in the body or as HTTP Basic.
fn v2_token(a: usize, mut fields: Vec<(&str, String)>, basic: bool, form: bool) -> Draft {
    let (app_id, secret, _) = pools::LOGIN_APPS[a % pools::LOGIN_APPS.len()];
    let mut d = Draft::new(http::Method::POST, oauth::V2_TOKEN_ROUTE.into(), "oauth");
    if basic {
        d.headers.push((
            "authorization".into(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{app_id}:{secret}"))
            ),
        ));
    } else {
        fields.push(("client_id", app_id.into()));
        fields.push(("client_secret", secret.into()));
    }
    let pairs: Vec<(String, String)> = fields.into_iter().map(|(k, v)| (k.into(), v)).collect();
    d.body = if form {
        Fields::Form(pairs)
    } else {
        Fields::Json(pairs.into_iter().map(|(k, v)| (k, json!(v))).collect())
    };
    d
}

impl Mutation {
    fn apply(&self, d: &mut Draft) {
        match self {
            Mutation::DropQuery(i) => {
                if !d.query.is_empty() {
                    d.query.remove(*i as usize % d.query.len());
                }
            }
            Mutation::SetQuery(k, v) => d.query.push((k.render(), v.render())),
            Mutation::DropField(i) => match &mut d.body {
                Fields::Json(m) if !m.is_empty() => {
                    let k = m
                        .keys()
                        .nth(*i as usize % m.len())
                        .cloned()
                        .unwrap_or_default();
                    m.remove(&k);
                }
                Fields::Form(p) if !p.is_empty() => {
                    p.remove(*i as usize % p.len());
                }
                _ => {}
            },
            Mutation::SetField(k, v) => match &mut d.body {
                Fields::Json(m) => {
                    m.insert(k.render(), v.json());
                }
                Fields::Form(p) => p.push((k.render(), v.text())),
                Fields::None => {
                    d.body = Fields::Json([(k.render(), v.json())].into_iter().collect())
                }
                Fields::Raw(..) => {}
            },
            Mutation::ChangeField(i, v) => match &mut d.body {
                Fields::Json(m) if !m.is_empty() => {
                    let k = m
                        .keys()
                        .nth(*i as usize % m.len())
                        .cloned()
                        .unwrap_or_default();
                    m.insert(k, v.json());
                }
                Fields::Form(p) if !p.is_empty() => {
                    let n = p.len();
                    p[*i as usize % n].1 = v.text();
                }
                _ => {}
            },
            Mutation::DropHeader(i) => {
                if !d.headers.is_empty() {
                    d.headers.remove(*i as usize % d.headers.len());
                }
            }
            Mutation::Header(k, v) => d.headers.push((k.render(), v.render())),
            Mutation::Method(m) => {
                let methods = [
                    http::Method::GET,
                    http::Method::POST,
                    http::Method::DELETE,
                    http::Method::PATCH,
                    http::Method::PUT,
                ];
                d.method = methods[*m as usize % methods.len()].clone();
            }
            Mutation::AppendPath(t) => {
                d.path.push('/');
                d.path.push_str(&id::encode_path_segment(&t.render()));
            }
            Mutation::SwapBodyFormat => {
                d.body = match std::mem::replace(&mut d.body, Fields::None) {
                    Fields::Json(m) => Fields::Form(
                        m.into_iter()
                            .map(|(k, v)| match v {
                                Value::String(s) => (k, s),
                                other => (k, other.to_string()),
                            })
                            .collect(),
                    ),
                    Fields::Form(p) => {
                        Fields::Json(p.into_iter().map(|(k, v)| (k, json!(v))).collect())
                    }
                    other => other,
                }
            }
            Mutation::Truncate(n) => {
                let mut bytes = d.body_bytes();
                bytes.truncate(*n as usize);
                d.body = Fields::Raw(bytes, d.content_type());
            }
        }
    }
}

/// Takes what an answer carries into the input's live pools.
pub fn learn(live: &mut Live, d: Option<&Draft>, parts: &http::response::Parts, body: &[u8]) {
    if let Some(id) = parts.headers.get("x-tt-logid") {
        live.log_ids
            .push(id.to_str().unwrap_or_default().to_string());
    }
    let Some(d) = d else {
        return;
    };
    let login = d.login.clone();
    if let Some(loc) = parts.headers.get(http::header::LOCATION) {
        let loc = loc.to_str().unwrap_or_default();
        if let (Some((_, q)), Some((a, redirect, verifier))) = (loc.split_once('?'), &login) {
            let code = serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .unwrap_or_default()
                .into_iter()
                .find(|(k, _)| k == "code");
            if let Some((_, c)) = code {
                live.codes.push((c, *a, redirect.clone(), verifier.clone()));
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    if let (Some(at), Some((a, redirect, verifier))) =
        (text.find("name=\"request\" value=\""), &login)
    {
        let rest = &text[at + "name=\"request\" value=\"".len()..];
        if let Some(end) = rest.find('"') {
            live.handles.push((
                rest[..end].to_string(),
                *a,
                redirect.clone(),
                verifier.clone(),
            ));
        }
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    if v["code"] != 0 {
        return;
    }
    let data = &v["data"];
    if let Some(id) = data["exchange_binding_id"].as_str() {
        let tenant = create_tenant(d).unwrap_or("acme");
        live.bindings.push((tenant.into(), id.into()));
    }
    if let (Some(c), Some((a, redirect, verifier))) = (data["code"].as_str(), &login) {
        live.codes
            .push((c.into(), *a, redirect.clone(), verifier.clone()));
    }
    let app = login_app_of(d);
    for src in [&v, data] {
        if let Some(t) = src["access_token"].as_str() {
            live.access.push(t.into());
        }
        if let Some(t) = src["refresh_token"].as_str() {
            live.refresh.push((t.into(), app));
        }
    }
}

/// The tenant a create was made in: that of its caller's token.
fn create_tenant(d: &Draft) -> Option<&'static str> {
    let auth = d.headers.iter().find(|(k, _)| k == "authorization")?;
    let token = auth.1.strip_prefix("Bearer ")?;
    pools::TOKENS
        .iter()
        .find(|t| t.token == token)
        .map(|t| t.tenant_key)
}

/// The login app a token request was made for (by `client_id`, the Basic credentials or the
/// app token), so that its refresh token is spent by the same app.
fn login_app_of(d: &Draft) -> usize {
    let body = String::from_utf8_lossy(&d.body_bytes()).into_owned();
    let auth = d
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let basic = auth
        .strip_prefix("Basic ")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    pools::LOGIN_APPS
        .iter()
        .position(|(app, _, _)| {
            body.contains(&format!("\"{app}\""))
                || body.contains(&format!("={app}"))
                || basic.starts_with(&format!("{app}:"))
        })
        .unwrap_or(0)
}

/// The successes the `http` target reached, since the process started.
pub struct Reached {
    pub inputs: AtomicU64,
    pub creates: AtomicU64,
    pub deletes: AtomicU64,
    pub token_exchanges: AtomicU64,
    pub refreshes: AtomicU64,
    pub user_infos: AtomicU64,
    pub authorize_codes: AtomicU64,
    pub app_tokens: AtomicU64,
}

pub static REACHED: Reached = Reached {
    inputs: AtomicU64::new(0),
    creates: AtomicU64::new(0),
    deletes: AtomicU64::new(0),
    token_exchanges: AtomicU64::new(0),
    refreshes: AtomicU64::new(0),
    user_infos: AtomicU64::new(0),
    authorize_codes: AtomicU64::new(0),
    app_tokens: AtomicU64::new(0),
};

/// Whether a request may have spent a code or a refresh token the harness minted (even
/// when it failed: a code sent with a wrong verifier is spent), so the state must be put back.
pub fn spends_grants(path: &str) -> bool {
    [
        oauth::V2_TOKEN_ROUTE,
        oauth::OIDC_ACCESS_ROUTE,
        oauth::OIDC_REFRESH_ROUTE,
        oauth::ACCESS_ROUTE,
        oauth::REFRESH_ROUTE,
    ]
    .contains(&path)
}

/// Whether a token request's body asks for `grant_type` `refresh_token`.
pub fn is_refresh(body: &[u8]) -> bool {
    let has = |n: &[u8]| body.windows(n.len()).any(|w| w == n);
    has(b"\"grant_type\":\"refresh_token\"") || has(b"grant_type=refresh_token")
}

/// Counts one answer among the successes, by its route and code.
pub fn count(a: &Answer, path: &str, refresh: bool, location: Option<&str>) {
    let r = &REACHED;
    let bump = |c: &AtomicU64| {
        c.fetch_add(1, Ordering::Relaxed);
    };
    if path.starts_with(AUTHORIZE_ROUTE) || path.starts_with(INDEX_ROUTE) {
        if location.is_some_and(|l| l.contains("code=")) {
            bump(&r.authorize_codes);
        }
        return;
    }
    if a.code != Some(0) {
        return;
    }
    match (a.method.as_str(), path) {
        ("POST", COLLECTION_ROUTE) => bump(&r.creates),
        ("DELETE", p) if p.starts_with(COLLECTION_ROUTE) => bump(&r.deletes),
        ("POST", p) if spends_grants(p) => {
            bump(&r.token_exchanges);
            if refresh {
                bump(&r.refreshes);
            }
        }
        ("GET", oauth::USER_INFO_ROUTE) => bump(&r.user_infos),
        ("POST", p) if p.starts_with("/open-apis/auth/v3/") => bump(&r.app_tokens),
        _ => {}
    }
}

/// One line of what the `http` target reached, for the run's output.
pub fn report() -> String {
    let r = &REACHED;
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    format!(
        "exbind http: {} inputs; successes reached: {} creates, {} deletes, {} token exchanges \
         ({} of them refreshes), {} user_info reads, {} authorize redirects with a code, \
         {} tenant/app token requests",
        n(&r.inputs),
        n(&r.creates),
        n(&r.deletes),
        n(&r.token_exchanges),
        n(&r.refreshes),
        n(&r.user_infos),
        n(&r.authorize_codes),
        n(&r.app_tokens),
    )
}
