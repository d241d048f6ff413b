//! The whole application: a few requests, each well-formed and then mutated (`valid.rs`) or
//! of any method, path, query, headers and body built mostly from the real routes and seeded
//! names, sent through the router as a `tower::Service`. Every answer is checked: no panic,
//! the JSON envelope on the Feishu and control-plane routes, no 5xx but the documented ones.

use arbitrary::{Arbitrary, Unstructured};
use axum::body::Body;
use exbind_api::id;
use serde_json::{json, Map, Value};

use super::harness::{harness, Harness};
use super::pools::{self, Text, ADMIN_TOKEN};
use super::pure::SeedShape;
use super::valid::{self, Draft, Live, Valid};
use crate::http::console::session::SESSION_COOKIE;
use crate::http::JSON_UTF8;

/// Requests one input sends at most.
const MAX_REQUESTS: usize = 4;
/// A fault rule's latency is a sleep, not input the server reads: capped, so that one
/// input cannot stall the fuzzer.
const MAX_LATENCY_MS: u64 = 2;

/// One request of an input: well-formed and then mutated, or any.
#[derive(Arbitrary, Debug)]
enum Step {
    Valid(Valid),
    Any(Box<Req>),
}

#[derive(Arbitrary, Debug)]
struct Req {
    method: Method,
    target: Target,
    query: Vec<(Text, Text, bool)>,
    auth: Auth,
    session: bool,
    content_type: ContentType,
    headers: Vec<(Text, Vec<u8>)>,
    body: BodyShape,
}

#[derive(Arbitrary, Debug)]
enum Method {
    Get,
    Post,
    Delete,
    Patch,
    Put,
    Head,
    Options,
    Other(String),
}

/// A path segment: a seeded name (percent-encoded as clients send it), or any text as is.
#[derive(Arbitrary, Debug)]
enum Seg {
    Name(Text),
    /// The log id of an earlier answer of this input.
    LogId(u8),
    /// A fault rule's id, as the server numbers them.
    Fault(u8),
    Verbatim(String),
}

/// A binding id: of seeded accounts in one of the spellings clients use, or any text.
#[derive(Arbitrary, Debug)]
enum BindingId {
    Made {
        admin: u8,
        exchange: u8,
        spelling: Spelling,
    },
    Verbatim(String),
}

#[derive(Arbitrary, Debug)]
enum Spelling {
    Canonical,
    Unpadded,
    UrlSafe,
    PercentEncoded,
}

#[derive(Arbitrary, Debug)]
enum Target {
    Create,
    Binding(BindingId),
    TenantToken,
    AppToken,
    Seed,
    Tenants,
    Tenant(Seg),
    User(Seg, Seg),
    Users(Seg),
    ExchangeAdmin(Seg, Seg),
    Bindings(Seg),
    TenantBinding(Seg, BindingId, Option<String>),
    Scenario(Seg, Seg),
    SyncComplete(Seg),
    Apps,
    App(Seg),
    Mint,
    Revoke,
    Faults,
    FaultRule(Seg),
    Requests,
    Request(Seg),
    Reset,
    Events,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    Asset(Seg),
    Console(Console),
    Verbatim(String),
}

#[derive(Arbitrary, Debug)]
enum Console {
    Base,
    Overview,
    SignIn,
    SignOut,
    Tenant(Seg),
    TenantActions(Seg),
    Bindings,
    TenantBindings(Seg),
    Binding(Seg, BindingId),
    Requests,
    Request(Seg),
    Faults,
    Apps,
    Seed,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Auth {
    None,
    User(u8),
    Admin,
    Tenant,
    /// A seeded token under another spelling of the scheme, with text around it.
    Mangled {
        token: u8,
        scheme: Text,
        before: String,
        after: String,
    },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum ContentType {
    None,
    Json,
    JsonUtf8,
    Form,
    Toml,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum BodyShape {
    Empty,
    Raw(Vec<u8>),
    Object(Vec<(Text, Val)>),
    Create {
        admin: Text,
        exchange: Text,
        user: Text,
    },
    /// A console form, with the session's CSRF token when `csrf`.
    Form {
        fields: Vec<(Text, Text)>,
        csrf: bool,
    },
    Seed {
        seed: SeedShape,
        json: bool,
    },
}

#[derive(Arbitrary, Debug)]
pub(super) enum Val {
    Str(Text),
    Int(i64),
    Small(u8),
    Float(f64),
    Bool(bool),
    Null,
    Strs(Vec<Text>),
    Object(Vec<(Text, Text)>),
    Deep(u8),
}

impl Val {
    /// As a form field's value.
    pub(super) fn text(&self) -> String {
        match self.json() {
            Value::String(s) => s,
            v => v.to_string(),
        }
    }

    pub(super) fn json(&self) -> Value {
        match self {
            Val::Str(t) => json!(t.render()),
            Val::Int(n) => json!(n),
            Val::Small(n) => json!(n),
            Val::Float(f) => json!(f),
            Val::Bool(b) => json!(b),
            Val::Null => Value::Null,
            Val::Strs(v) => v.iter().map(Text::render).collect(),
            Val::Object(kv) => kv
                .iter()
                .map(|(k, v)| (k.render(), json!(v.render())))
                .collect::<Map<_, _>>()
                .into(),
            Val::Deep(n) => (0..*n).fold(json!({"code": 190003}), |v, _| json!([v])),
        }
    }
}

/// What one request was answered, for the corpus replay test's coverage check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub method: String,
    /// The target's kind: `create`, `binding`, `control`, `console`, …
    pub target: &'static str,
    pub status: u16,
    /// The envelope's `code`, where the answer has one.
    pub code: Option<i64>,
}

/// The `http` target: sends the input's requests, checks each answer, and puts the state
/// back when a request changed it.
pub fn http(data: &[u8]) -> Vec<Answer> {
    let mut u = Unstructured::new(data);
    let mut h = harness();
    let mut live = Live::new(&h);
    let mut answers = Vec::new();
    let mut dirty = false;
    valid::REACHED
        .inputs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for _ in 0..MAX_REQUESTS {
        let Ok(step) = Step::arbitrary(&mut u) else {
            break;
        };
        let (built, draft) = match &step {
            Step::Valid(v) => {
                let d = v.draft(&live);
                (from_draft(&d), Some(d))
            }
            Step::Any(req) => (build(&h, req, &live.log_ids), None),
        };
        let Some((request, kind)) = built else {
            continue;
        };
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let refresh = draft
            .as_ref()
            .is_some_and(|d| valid::is_refresh(&d.body_bytes()));
        // Before the request, which may use up a rule.
        let faults_armed =
            h.rt.block_on(h.state.faults.list(h.state.now()))
                .is_ok_and(|rules| !rules.is_empty());
        let (parts, body) = h.send(request);
        let answer = check(&method, &path, kind, &parts, &body, faults_armed);
        let location = parts
            .headers
            .get(http::header::LOCATION)
            .and_then(|l| l.to_str().ok());
        valid::count(&answer, &path, refresh, location);
        valid::learn(&mut live, draft.as_ref(), &parts, &body);
        dirty |= !matches!(method, http::Method::GET | http::Method::HEAD)
            && (parts.status.as_u16() < 400 || valid::spends_grants(&path));
        answers.push(answer);
    }
    if dirty {
        h.restore();
    } else {
        h.fresh();
    }
    answers
}

/// A well-formed request as it is sent.
fn from_draft(d: &Draft) -> Option<(http::Request<Body>, &'static str)> {
    let mut b = http::Request::builder()
        .method(d.method.clone())
        .uri(d.uri());
    if let Some(ct) = d.content_type() {
        b = b.header(http::header::CONTENT_TYPE, ct);
    }
    for (name, value) in &d.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
        b = b.header(name, http::HeaderValue::from_str(value).ok()?);
    }
    let body = cap_latency(d.body_bytes());
    Some((b.body(Body::from(body)).ok()?, d.kind))
}

fn seg(s: &Seg, log_ids: &[String]) -> String {
    match s {
        Seg::Name(t) => id::encode_path_segment(&t.render()),
        Seg::LogId(i) if !log_ids.is_empty() => log_ids[*i as usize % log_ids.len()].clone(),
        Seg::LogId(_) => "none".into(),
        Seg::Fault(i) => format!("f{}", i % 4 + 1),
        Seg::Verbatim(s) => s.clone(),
    }
}

fn binding_id(b: &BindingId) -> String {
    match b {
        BindingId::Made {
            admin,
            exchange,
            spelling,
        } => {
            let canonical = id::encode(pools::account(*admin), pools::account(*exchange));
            match spelling {
                Spelling::Canonical => canonical,
                Spelling::Unpadded => canonical.trim_end_matches('=').to_string(),
                Spelling::UrlSafe => canonical.replace('+', "-").replace('/', "_"),
                Spelling::PercentEncoded => id::encode_path_segment(&canonical),
            }
        }
        BindingId::Verbatim(s) => s.clone(),
    }
}

fn path_of(t: &Target, log_ids: &[String]) -> (String, &'static str) {
    let s = |x: &Seg| seg(x, log_ids);
    const V1: &str = "/_exbind/v1";
    let control = |p: String| (format!("{V1}{p}"), "control");
    match t {
        Target::Create => (crate::domain::scopes::COLLECTION_ROUTE.into(), "create"),
        Target::Binding(b) => (
            format!(
                "{}/{}",
                crate::domain::scopes::COLLECTION_ROUTE,
                binding_id(b)
            ),
            "binding",
        ),
        Target::TenantToken => (
            "/open-apis/auth/v3/tenant_access_token/internal".into(),
            "token",
        ),
        Target::AppToken => (
            "/open-apis/auth/v3/app_access_token/internal".into(),
            "token",
        ),
        Target::Seed => control("/seed".into()),
        Target::Tenants => control("/tenants".into()),
        Target::Tenant(t) => control(format!("/tenants/{}", s(t))),
        Target::User(t, u) => control(format!("/tenants/{}/users/{}", s(t), s(u))),
        Target::Users(t) => control(format!("/tenants/{}/users", s(t))),
        Target::ExchangeAdmin(t, a) => {
            control(format!("/tenants/{}/exchange_admins/{}", s(t), s(a)))
        }
        Target::Bindings(t) => control(format!("/tenants/{}/bindings", s(t))),
        Target::TenantBinding(t, b, tail) => control(format!(
            "/tenants/{}/bindings/{}{}",
            s(t),
            binding_id(b),
            tail.as_deref().unwrap_or("")
        )),
        Target::Scenario(t, a) => control(format!(
            "/tenants/{}/exchange_accounts/{}/scenario",
            s(t),
            s(a)
        )),
        Target::SyncComplete(t) => control(format!("/tenants/{}/sync/complete", s(t))),
        Target::Apps => control("/apps".into()),
        Target::App(a) => control(format!("/apps/{}", s(a))),
        Target::Mint => control("/user_access_tokens".into()),
        Target::Revoke => control("/user_access_tokens/revoke".into()),
        Target::Faults => control("/faults".into()),
        Target::FaultRule(f) => control(format!("/faults/{}", s(f))),
        Target::Requests => control("/requests".into()),
        Target::Request(l) => control(format!("/requests/{}", s(l))),
        Target::Reset => control("/reset".into()),
        Target::Events => control("/events".into()),
        Target::Healthz => ("/_exbind/healthz".into(), "health"),
        Target::Readyz => ("/_exbind/readyz".into(), "health"),
        Target::Metrics => ("/_exbind/metrics".into(), "text"),
        Target::OpenApi => ("/_exbind/openapi.json".into(), "text"),
        Target::Asset(a) => (format!("/_exbind/assets/{}", s(a)), "page"),
        Target::Console(c) => {
            let p = match c {
                Console::Base => String::new(),
                Console::Overview => "/".into(),
                Console::SignIn => "/sign-in".into(),
                Console::SignOut => "/sign-out".into(),
                Console::Tenant(t) => format!("/tenants/{}", s(t)),
                Console::TenantActions(t) => format!("/tenants/{}/actions", s(t)),
                Console::Bindings => "/bindings".into(),
                Console::TenantBindings(t) => format!("/tenants/{}/bindings", s(t)),
                Console::Binding(t, b) => {
                    format!("/tenants/{}/bindings/{}", s(t), binding_id(b))
                }
                Console::Requests => "/requests".into(),
                Console::Request(l) => format!("/requests/{}", s(l)),
                Console::Faults => "/faults".into(),
                Console::Apps => "/apps".into(),
                Console::Seed => "/seed".into(),
                Console::Other(o) => format!("/{o}"),
            };
            (format!("/_exbind/console{p}"), "page")
        }
        Target::Verbatim(p) => (p.clone(), "any"),
    }
}

/// Caps a fault rule's `latency_ms`, in a JSON body or a console form.
fn cap_latency(body: Vec<u8>) -> Vec<u8> {
    if let Ok(mut v) = serde_json::from_slice::<Value>(&body) {
        if let Some(l) = v.get_mut("latency_ms") {
            if l.as_u64().is_some_and(|n| n > MAX_LATENCY_MS) {
                *l = json!(MAX_LATENCY_MS);
                return v.to_string().into_bytes();
            }
        }
        return body;
    }
    if !body.windows(10).any(|w| w == b"latency_ms") {
        return body;
    }
    let capped: Vec<(String, String)> =
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let too_long = k == "latency_ms"
                    && v.trim().parse::<u64>().map_or(true, |n| n > MAX_LATENCY_MS);
                let v = if too_long {
                    MAX_LATENCY_MS.to_string()
                } else {
                    v
                };
                (k, v)
            })
            .collect();
    serde_urlencoded::to_string(capped)
        .unwrap_or_default()
        .into_bytes()
}

fn build(h: &Harness, r: &Req, log_ids: &[String]) -> Option<(http::Request<Body>, &'static str)> {
    let method = match &r.method {
        Method::Get => http::Method::GET,
        Method::Post => http::Method::POST,
        Method::Delete => http::Method::DELETE,
        Method::Patch => http::Method::PATCH,
        Method::Put => http::Method::PUT,
        Method::Head => http::Method::HEAD,
        Method::Options => http::Method::OPTIONS,
        Method::Other(m) => http::Method::from_bytes(m.as_bytes()).ok()?,
    };
    let (mut uri, kind) = path_of(&r.target, log_ids);
    let query = pools::query_pairs(&r.query);
    if !query.is_empty() {
        uri.push('?');
        uri.push_str(&query.join("&"));
    }
    let mut b = http::Request::builder().method(method).uri(uri);
    let auth: Option<Vec<u8>> = match &r.auth {
        Auth::None => None,
        Auth::User(i) => Some(format!("Bearer {}", pools::seeded_token(*i).token).into()),
        Auth::Admin => Some(format!("Bearer {ADMIN_TOKEN}").into()),
        Auth::Tenant => Some("Bearer t-fuzz-tenant-token".into()),
        Auth::Mangled {
            token,
            scheme,
            before,
            after,
        } => Some(
            format!(
                "{}{before}{}{after}",
                scheme.render(),
                pools::seeded_token(*token).token
            )
            .into(),
        ),
        Auth::Raw(v) => Some(v.clone()),
    };
    if let Some(a) = auth {
        b = b.header(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_bytes(&a).ok()?,
        );
    }
    if r.session {
        b = b.header(
            http::header::COOKIE,
            format!("{SESSION_COOKIE}={}", h.session.0),
        );
    }
    let ct = match &r.content_type {
        ContentType::None => None,
        ContentType::Json => Some("application/json".to_string()),
        ContentType::JsonUtf8 => Some(JSON_UTF8.to_string()),
        ContentType::Form => Some("application/x-www-form-urlencoded".to_string()),
        ContentType::Toml => Some("application/toml".to_string()),
        ContentType::Other(s) => Some(s.clone()),
    };
    if let Some(ct) = ct {
        b = b.header(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_str(&ct).ok()?,
        );
    }
    for (name, value) in &r.headers {
        let name = http::HeaderName::from_bytes(name.render().as_bytes()).ok()?;
        b = b.header(name, http::HeaderValue::from_bytes(value).ok()?);
    }
    let body: Vec<u8> = match &r.body {
        BodyShape::Empty => Vec::new(),
        BodyShape::Raw(v) => v.clone(),
        BodyShape::Object(fields) => Value::from(
            fields
                .iter()
                .map(|(k, v)| (k.render(), v.json()))
                .collect::<Map<_, _>>(),
        )
        .to_string()
        .into(),
        BodyShape::Create {
            admin,
            exchange,
            user,
        } => json!({
            "admin_account": admin.render(),
            "exchange_account": exchange.render(),
            "user_id": user.render(),
        })
        .to_string()
        .into(),
        BodyShape::Form { fields, csrf } => {
            let mut pairs: Vec<(String, String)> = fields
                .iter()
                .map(|(k, v)| (k.render(), v.render()))
                .collect();
            if *csrf {
                pairs.push(("csrf".into(), h.session.1.clone()));
            }
            serde_urlencoded::to_string(pairs).ok()?.into()
        }
        BodyShape::Seed { seed, json } => seed.text(*json).into(),
    };
    let body = if kind == "control" || kind == "page" {
        cap_latency(body)
    } else {
        body
    };
    Some((b.body(Body::from(body)).ok()?, kind))
}

/// The checks of one answer.
fn check(
    method: &http::Method,
    path: &str,
    kind: &'static str,
    parts: &http::response::Parts,
    body: &[u8],
    faults_armed: bool,
) -> Answer {
    let status = parts.status.as_u16();
    let shown = || {
        format!(
            "{method} {path} -> {status} {}",
            String::from_utf8_lossy(&body[..body.len().min(2000)])
        )
    };
    let log_id = parts
        .headers
        .get("x-tt-logid")
        .unwrap_or_else(|| panic!("no x-tt-logid: {}", shown()));
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or_default());
    let streaming = content_type.is_some_and(|c| c.starts_with("text/event-stream"));
    // The Feishu routes, the control plane and every unknown path answer the envelope;
    // console pages and assets, the metrics and the OpenAPI document are their own formats.
    let own_format = path.starts_with("/_exbind/console")
        || path.starts_with("/_exbind/assets/")
        || path == "/_exbind/metrics"
        || path == "/_exbind/openapi.json"
        || path.starts_with("/open-apis/authen/v1/authorize")
        || path.starts_with("/open-apis/authen/v1/index");
    // The v2 token exchange answers OAuth's flat errors, `error` and `error_description`;
    // another method on its path, the router's 405 envelope.
    let oauth = path == crate::http::oauth::V2_TOKEN_ROUTE && method == http::Method::POST;
    let mut code = None;
    if method != http::Method::HEAD
        && !streaming
        && (!own_format || content_type == Some(JSON_UTF8))
    {
        assert_eq!(content_type, Some(JSON_UTF8), "{}", shown());
        let v: Value =
            serde_json::from_slice(body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", shown()));
        if !(path == "/_exbind/openapi.json" && status == 200) {
            let c = v["code"]
                .as_i64()
                .unwrap_or_else(|| panic!("no integer code: {}", shown()));
            if oauth && c != 0 {
                assert!(v["error"].is_string(), "no error: {}", shown());
                assert!(v["error_description"].is_string(), "{}", shown());
            } else if !oauth {
                assert!(v["msg"].is_string(), "no msg: {}", shown());
            }
            if c == 0 {
                assert_eq!(status, 200, "code 0 answers 200: {}", shown());
            } else if let Some(e) = v.get("error").filter(|e| e.is_object()) {
                assert_eq!(
                    e["log_id"],
                    log_id.to_str().unwrap_or_default(),
                    "{}",
                    shown()
                );
            }
            code = Some(c);
        }
    }
    if status >= 500 {
        // Only a fault rule makes one (the store is up): its documented error.
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let documented = match (status, v["code"].as_i64()) {
            (500, Some(190003)) => v["error"]["message"] == "injected by an exbind fault rule",
            // On the token routes, v2 (flat) and v1 (the envelope), in their own terms.
            (500, Some(20050)) | (503, Some(20072)) => valid::spends_grants(path) && faults_armed,
            _ => false,
        };
        assert!(documented, "an undocumented 5xx: {}", shown());
    }
    if streaming {
        assert_eq!(status, 200, "{}", shown());
    }
    Answer {
        method: method.to_string(),
        target: kind,
        status,
        code,
    }
}
