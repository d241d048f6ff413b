//! The parser targets: binding ids, seeds, bearer tokens and token requests, queries and
//! journal filters.

use arbitrary::{Arbitrary, Unstructured};
use axum::body::Body;
use exbind_api::id;
use http::{HeaderMap, HeaderValue};
use serde_json::{json, Map, Value};

use super::harness::harness;
use super::pools::{self, Text, ADMIN_TOKEN, APPS};
use crate::error::ApiError;
use crate::http::auth::fields;
use crate::http::control::ops::{request_filter, RequestQuery};
use crate::http::control::{check_admin, page_size};
use crate::http::events::stream_types;
use crate::journal::{Entry, Journal};
use crate::pipeline::{bearer, parse_user_id_type, Identity};
use crate::seed::{self, SeedDoc};

#[derive(Arbitrary, Debug)]
struct IdInput {
    raw: String,
    admin: String,
    exchange: String,
}

/// The `binding_id` target: decoding any text answers an id whose parts re-encode to one
/// that decodes the same; encoding any two parts decodes back to them in every spelling
/// clients send.
pub fn binding_id(data: &[u8]) {
    let Ok(input) = IdInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let plain = id::decode(&input.raw);
    let segment = id::decode_path_segment(&input.raw);
    if !input.raw.contains('%') {
        assert_eq!(plain, segment, "{:?}", input.raw);
    }
    for key in [plain, segment].into_iter().flatten() {
        assert!(!key.admin_account.is_empty() && !key.admin_account.contains(' '));
        assert!(!key.exchange_account.is_empty() && !key.exchange_account.contains(' '));
        let again = id::encode(&key.admin_account, &key.exchange_account);
        assert_eq!(id::decode(&again), Ok(key), "{:?}", input.raw);
    }
    let (admin, exchange) = (&input.admin, &input.exchange);
    if admin.is_empty() || exchange.is_empty() || admin.contains(' ') || exchange.contains(' ') {
        return;
    }
    let canonical = id::encode(admin, exchange);
    let key = id::decode(&canonical).expect("a made id decodes");
    assert_eq!(
        (&key.admin_account, &key.exchange_account),
        (admin, exchange)
    );
    for spelling in [
        canonical.trim_end_matches('=').to_string(),
        canonical.replace('+', "-").replace('/', "_"),
    ] {
        assert_eq!(id::decode(&spelling).as_ref(), Ok(&key), "{spelling}");
    }
    assert_eq!(
        id::decode_path_segment(&id::encode_path_segment(&canonical)),
        Ok(key)
    );
}

/// A seed document's shape, with seeded or any names; written as JSON or TOML.
#[derive(Arbitrary, Debug)]
pub struct SeedShape {
    tenants: Vec<TenantShape>,
    apps: Vec<AppShape>,
    unknown: Option<(Text, Text)>,
}

#[derive(Arbitrary, Debug)]
struct TenantShape {
    tenant_key: Text,
    name: Option<Text>,
    unit: Option<Text>,
    users: Vec<UserShape>,
    admins: Vec<(Text, Option<Text>)>,
    accounts: Vec<ScenarioShape>,
}

#[derive(Arbitrary, Debug)]
struct ScenarioShape {
    account: Text,
    scenario: Option<Text>,
    stage: Option<Text>,
    reason: Option<Text>,
}

#[derive(Arbitrary, Debug)]
struct UserShape {
    user_id: Text,
    name: Option<Text>,
    email: Option<Text>,
    super_admin: Option<bool>,
    status: Option<Text>,
}

#[derive(Arbitrary, Debug)]
struct AppShape {
    app_id: Text,
    app_secret: Text,
    kind: Option<Text>,
    developer: Option<Text>,
    tenants: Vec<Text>,
    bot: Option<bool>,
    unit: Option<Text>,
    scopes: Vec<Text>,
}

/// An object of the fields given (`None` left out, as TOML has no null).
fn object<const N: usize>(fields: [(&str, Option<Value>); N]) -> Value {
    fields
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v?)))
        .collect::<Map<_, _>>()
        .into()
}

fn text(t: &Option<Text>) -> Option<Value> {
    t.as_ref().map(|t| json!(t.render()))
}

fn texts(v: &[Text]) -> Option<Value> {
    Some(v.iter().map(Text::render).collect())
}

impl SeedShape {
    fn value(&self) -> Value {
        let tenants = self.tenants.iter().map(|t| {
            object([
                ("tenant_key", Some(json!(t.tenant_key.render()))),
                ("name", text(&t.name)),
                ("unit", text(&t.unit)),
                (
                    "users",
                    Some(
                        t.users
                            .iter()
                            .map(|u| {
                                object([
                                    ("user_id", Some(json!(u.user_id.render()))),
                                    ("name", text(&u.name)),
                                    ("email", text(&u.email)),
                                    ("super_admin", u.super_admin.map(Value::Bool)),
                                    ("status", text(&u.status)),
                                ])
                            })
                            .collect(),
                    ),
                ),
                (
                    "exchange_admins",
                    Some(
                        t.admins
                            .iter()
                            .map(|(a, s)| {
                                object([("account", Some(json!(a.render()))), ("state", text(s))])
                            })
                            .collect(),
                    ),
                ),
                (
                    "exchange_accounts",
                    Some(
                        t.accounts
                            .iter()
                            .map(|s| {
                                object([
                                    ("account", Some(json!(s.account.render()))),
                                    ("scenario", text(&s.scenario)),
                                    ("stage", text(&s.stage)),
                                    ("reason", text(&s.reason)),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ])
        });
        let apps = self.apps.iter().map(|a| {
            object([
                ("app_id", Some(json!(a.app_id.render()))),
                ("app_secret", Some(json!(a.app_secret.render()))),
                ("type", text(&a.kind)),
                ("developer", text(&a.developer)),
                ("tenants", texts(&a.tenants)),
                ("bot", a.bot.map(Value::Bool)),
                ("unit", text(&a.unit)),
                ("scopes", texts(&a.scopes)),
            ])
        });
        let mut doc = object([
            ("tenants", Some(tenants.collect())),
            ("apps", Some(apps.collect())),
        ]);
        if let Some((k, v)) = &self.unknown {
            doc[k.render()] = json!(v.render());
        }
        doc
    }

    /// The document as JSON or TOML text.
    pub fn text(&self, json: bool) -> String {
        let v = self.value();
        if json {
            v.to_string()
        } else {
            toml::to_string(&v).unwrap_or_default()
        }
    }
}

#[derive(Arbitrary, Debug)]
enum SeedInput {
    Shaped(SeedShape),
    Text(String),
}

/// The `seed` target: any text, and documents of the seed's shape, parsed as TOML and as
/// JSON, then validated against the store (which it does not change). Every rejection names
/// at least one violation with a reason; a document that parses and validates is a plan.
pub fn seed(data: &[u8]) {
    let Ok(input) = SeedInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let texts = match &input {
        SeedInput::Shaped(s) => [s.text(false), s.text(true)],
        SeedInput::Text(t) => [t.clone(), t.clone()],
    };
    let h = harness();
    for (text, format) in texts.iter().zip([seed::Format::Toml, seed::Format::Json]) {
        let parsed = match format {
            seed::Format::Toml => seed::parse_toml(text),
            seed::Format::Json => seed::parse_json(text),
        };
        let doc: SeedDoc = match parsed {
            Ok(doc) => doc,
            Err(violations) => {
                assert!(!violations.is_empty(), "{text:?}");
                assert!(violations.iter().all(|v| !v.reason.is_empty()), "{text:?}");
                continue;
            }
        };
        let planned =
            h.rt.block_on(seed::plan(doc, h.state.store.as_ref(), &h.state.ids));
        match planned {
            Ok(_) => {}
            Err(seed::SeedError::Invalid(v)) => {
                assert!(!v.is_empty(), "{text:?}");
                for v in &v {
                    assert!(
                        v.path.starts_with("tenants[") || v.path.starts_with("apps["),
                        "{v:?} in {text:?}"
                    );
                    assert!(!v.reason.is_empty(), "{v:?} in {text:?}");
                }
            }
            Err(seed::SeedError::Store(e)) => panic!("store error on a seed: {e}"),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Header {
    Raw(Vec<u8>),
    Built {
        scheme: Text,
        gap: Gap,
        token: Text,
        trailing: bool,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Gap {
    Space,
    Spaces(u8),
    Tab,
    None,
}

#[derive(Arbitrary, Debug)]
enum TokenBody {
    Raw(Vec<u8>),
    Credentials {
        app_id: Text,
        app_secret: Text,
        extra: Option<(Text, Text)>,
    },
}

#[derive(Arbitrary, Debug)]
struct TokenInput {
    header: Header,
    body: TokenBody,
}

fn visible_ascii(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

/// What the binding routes answer a token (a known binding read): the pipeline's first steps.
fn token_code(token: Option<&str>) -> Option<i64> {
    let t = match token {
        None => return Some(99991661),
        Some(t) => t,
    };
    if t.starts_with("t-") || t.starts_with("a-") {
        return Some(99991663);
    }
    if !t.starts_with("u-") {
        return Some(99991671);
    }
    match pools::TOKENS.iter().find(|s| s.token == t) {
        None => Some(99991668),
        Some(s) if s.revoked => Some(99991668),
        Some(s) if s.expired => Some(99991677),
        // Past the token checks: the later steps decide.
        Some(_) => None,
    }
}

/// The `token` target: the `Authorization` header as the Feishu routes and the control
/// plane read it, and the token endpoints' body, each also sent through the application.
pub fn token(data: &[u8]) {
    let Ok(input) = TokenInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let (value, expected) = match &input.header {
        Header::Raw(v) => (v.clone(), None),
        Header::Built {
            scheme,
            gap,
            token,
            trailing,
        } => {
            let (scheme, token) = (scheme.render(), token.render());
            let gap = match gap {
                Gap::Space => " ".to_string(),
                Gap::Spaces(n) => " ".repeat(*n as usize % 8 + 1),
                Gap::Tab => "\t".to_string(),
                Gap::None => String::new(),
            };
            let value = format!("{scheme}{gap}{token}{}", if *trailing { " " } else { "" });
            // A plain `Bearer <token>` must be read as exactly that token.
            let plain = scheme.eq_ignore_ascii_case("bearer") && !gap.is_empty();
            let expected = (plain && visible_ascii(&token)).then_some(token);
            (value.into_bytes(), expected)
        }
    };
    let Ok(value) = HeaderValue::from_bytes(&value) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, value.clone());
    let got = bearer(&headers);
    if let Some(t) = &got {
        assert!(!t.is_empty() && t.trim() == t, "{value:?} -> {t:?}");
    }
    if let Some(e) = &expected {
        assert_eq!(got.as_deref(), Some(e.as_str()), "{value:?}");
    }
    let h = harness();
    match check_admin(&h.state, &headers) {
        Ok(()) => assert_eq!(got.as_deref(), Some(ADMIN_TOKEN)),
        Err(e) => {
            let want = if got.is_none() { 99991661 } else { 99991663 };
            assert_eq!((e.status.as_u16(), e.code), (401, want), "{value:?}");
        }
    }
    // A read of a seeded binding with this header.
    let path = format!(
        "{}/{}",
        crate::domain::scopes::COLLECTION_ROUTE,
        id::encode(pools::BINDINGS[0].0, pools::BINDINGS[0].1)
    );
    let req = http::Request::get(path)
        .header(http::header::AUTHORIZATION, value.clone())
        .body(Body::empty())
        .expect("request");
    let (parts, body) = h.send(req);
    let v: Value = serde_json::from_slice(&body).expect("JSON");
    if let Some(want) = token_code(got.as_deref()) {
        assert_eq!(v["code"], want, "{value:?}: {v}");
    }
    assert!(parts.status.as_u16() < 500, "{value:?}: {v}");

    let body: Vec<u8> = match &input.body {
        TokenBody::Raw(b) => b.clone(),
        TokenBody::Credentials {
            app_id,
            app_secret,
            extra,
        } => {
            let mut v = json!({"app_id": app_id.render(), "app_secret": app_secret.render()});
            if let Some((k, x)) = extra {
                v[k.render()] = json!(x.render());
            }
            v.to_string().into_bytes()
        }
    };
    let creds = fields(&body, ["app_id", "app_secret"]).map(|[id, secret]| (id, secret));
    if let Some((id, secret)) = &creds {
        assert!(!id.is_empty() && !secret.is_empty());
        let v: Value = serde_json::from_slice(&body).expect("credentials come from JSON");
        assert_eq!(
            (&v["app_id"], &v["app_secret"]),
            (&json!(id), &json!(secret))
        );
    }
    for route in [
        "/open-apis/auth/v3/tenant_access_token/internal",
        "/open-apis/auth/v3/app_access_token/internal",
    ] {
        let req = http::Request::post(route)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.clone()))
            .expect("request");
        let (parts, answer) = h.send(req);
        let v: Value = serde_json::from_slice(&answer).expect("JSON");
        assert_eq!(parts.status, 200, "{v}");
        let custom = creds.as_ref().is_some_and(|(id, secret)| {
            APPS[..pools::CUSTOM_APPS]
                .iter()
                .any(|(i, s)| i == id && s == secret)
        });
        let want = match &creds {
            None => 10003,
            Some(_) if custom => 0,
            Some(_) => 10014,
        };
        assert_eq!(
            v["code"],
            want,
            "{route} {:?}: {v}",
            String::from_utf8_lossy(&body)
        );
    }
    h.fresh();
}

#[derive(Arbitrary, Debug)]
struct QueryInput {
    pairs: Vec<(Text, Text, bool)>,
    raw: Option<String>,
}

/// A journal of a few requests, for filters to run over.
fn journal() -> Journal {
    let j = Journal::new(16);
    for i in 0..20u16 {
        j.record(Entry {
            seq: 0,
            at_ms: i as i64 * 1000,
            method: [http::Method::GET, http::Method::POST, http::Method::DELETE][i as usize % 3]
                .clone(),
            path: crate::domain::scopes::COLLECTION_ROUTE.into(),
            route: crate::domain::scopes::COLLECTION_ROUTE,
            who: (i % 2 == 0).then(|| Identity::App(pools::app(i as u8).0.into())),
            status: [200, 400, 429][i as usize % 3],
            code: [0, 190002, 99991400][i as usize % 3],
            log_id: format!("log{i}"),
            latency_ms: 0.5,
            binding: None,
        });
    }
    j
}

fn invalid_naming(e: &ApiError, fields: &[&str], q: &str) {
    assert_eq!((e.status.as_u16(), e.code), (400, 190002), "{q:?}");
    let named: Vec<&str> = e
        .detail
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert!(
        named.len() == 1 && fields.contains(&named[0]),
        "{q:?}: {named:?}"
    );
}

/// The `query` target: a query string as the Feishu routes read `user_id_type`, as the
/// control plane reads page sizes and journal filters, and as the event stream reads `types`.
pub fn query(data: &[u8]) {
    let Ok(input) = QueryInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut pairs = pools::query_pairs(&input.pairs);
    pairs.extend(input.raw.clone());
    let q = pairs.join("&");

    match parse_user_id_type(Some(&q)) {
        Ok(_) => {}
        Err(e) => invalid_naming(&e, &["user_id_type"], &q),
    }
    let Ok(uri) = format!("/?{q}").parse::<http::Uri>() else {
        return;
    };
    // As `ApiQuery` extracts it; its rejection is the documented 190002.
    if let Ok(axum::extract::Query(fields)) =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
    {
        for (k, v) in &fields {
            match k.as_str() {
                "page_size" => match page_size(Some(v)) {
                    Ok(n) => assert!((1..=500).contains(&n), "{q:?}"),
                    Err(e) => invalid_naming(&e, &["page_size"], &q),
                },
                "types" => {
                    if let Err(e) = stream_types(Some(v)) {
                        invalid_naming(&e, &["types"], &q)
                    }
                }
                _ => {}
            }
        }
    }
    let Ok(axum::extract::Query(rq)) = axum::extract::Query::<RequestQuery>::try_from_uri(&uri)
    else {
        return;
    };
    let fields = [
        "since",
        "page_size",
        "status",
        "code",
        "page_token",
        "method",
        "route",
        "app_id",
        "tenant_key",
        "user_id",
    ];
    match request_filter(rq) {
        Ok((filter, size)) => {
            assert!((1..=1000).contains(&size), "{q:?}");
            let (entries, next) = journal().query(&filter, size);
            assert!(entries.len() <= size, "{q:?}");
            assert!(entries.windows(2).all(|w| w[0].seq > w[1].seq), "{q:?}");
            assert!(next.is_none() || entries.len() == size, "{q:?}");
        }
        Err(e) => invalid_naming(&e, &fields, &q),
    }
}
