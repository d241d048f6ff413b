//! The token endpoints of the login flows (oauth.md §3–4): Feishu's OAuth 2.0 endpoint
//! `/open-apis/authen/v2/oauth/token` with its flat answers, the v1 routes the official SDKs
//! call, and `/open-apis/authen/v1/user_info`.

use std::collections::HashMap;

use axum::extract::{Extension, State};
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use exbind_api::ErrorCode;

use super::{json_response, success, Code, Payload};
use crate::domain::model::App;
use crate::error::ApiError;
use crate::limits::{Quota, Throttled};
use crate::oauth::{self, Flavor, GrantRequest, OAuthError, TokenAnswer};
use crate::pipeline::{self, bearer, inject_fault, CallerSlot, Identity};
use crate::state::{AppState, SharedState};

pub const V2_TOKEN_ROUTE: &str = "/open-apis/authen/v2/oauth/token";
pub const OIDC_ACCESS_ROUTE: &str = "/open-apis/authen/v1/oidc/access_token";
pub const OIDC_REFRESH_ROUTE: &str = "/open-apis/authen/v1/oidc/refresh_access_token";
pub const ACCESS_ROUTE: &str = "/open-apis/authen/v1/access_token";
pub const REFRESH_ROUTE: &str = "/open-apis/authen/v1/refresh_access_token";
pub const USER_INFO_ROUTE: &str = "/open-apis/authen/v1/user_info";

/// A v1 token route: its template, whether it refreshes, whether its answer carries user info.
#[derive(Clone, Copy)]
struct V1 {
    route: &'static str,
    refresh: bool,
    with_user: bool,
}

pub fn routes() -> Router<SharedState> {
    let v1 = |route, refresh, with_user| {
        let v = V1 {
            route,
            refresh,
            with_user,
        };
        post(move |State(s), Extension(slot), headers, Payload(p)| v1_token(s, slot, headers, p, v))
    };
    Router::new()
        .route(
            V2_TOKEN_ROUTE,
            post(|State(s), Extension(slot), headers, Payload(p)| v2_token(s, slot, headers, p)),
        )
        .route(OIDC_ACCESS_ROUTE, v1(OIDC_ACCESS_ROUTE, false, false))
        .route(OIDC_REFRESH_ROUTE, v1(OIDC_REFRESH_ROUTE, true, false))
        .route(ACCESS_ROUTE, v1(ACCESS_ROUTE, false, true))
        .route(REFRESH_ROUTE, v1(REFRESH_ROUTE, true, true))
        .route(USER_INFO_ROUTE, get(user_info))
}

/// A v2 error: flat, with the row's HTTP status.
fn flat(e: OAuthError) -> Response {
    if let Some(cause) = &e.cause {
        tracing::error!(code = e.code, cause = %cause, "token exchange failed");
    }
    let status = StatusCode::from_u16(e.status).expect("valid status");
    let mut r = json_response(
        status,
        &json!({"code": e.code, "error": e.error, "error_description": e.description}),
    );
    r.extensions_mut().insert(Code(e.code));
    r
}

/// The v2 endpoint's answer to a body it cannot read (too large, or not in time): 20063.
pub fn malformed(description: String) -> Response {
    flat(OAuthError::new(20063).describe(description))
}

/// The gateway quota's rejection on the v2 endpoint: flat, HTTP 429.
fn flat_throttled(limit: u32, reset_secs: i64) -> Response {
    let mut r = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({"code": 99991400, "error": "temporarily_unavailable",
                "error_description": "request trigger frequency limit"}),
    );
    r.extensions_mut().insert(Code(99991400));
    let h = r.headers_mut();
    for (name, value) in [
        ("x-ogw-ratelimit-limit", i64::from(limit)),
        ("x-ogw-ratelimit-reset", reset_secs),
        ("retry-after", reset_secs),
    ] {
        h.insert(name, HeaderValue::from(value));
    }
    r
}

/// Where a request failed before or around its grant: an OAuth error, or an answer already
/// made (a quota rejection, a fault rule's).
enum Stop {
    OAuth(OAuthError),
    Answer(Response),
}

impl From<OAuthError> for Stop {
    fn from(e: OAuthError) -> Self {
        Stop::OAuth(e)
    }
}

fn err(code: i64, description: impl Into<String>) -> Stop {
    Stop::OAuth(OAuthError::new(code).describe(description))
}

/// The parameters of a token request: a JSON object of strings, or a form
/// (`application/x-www-form-urlencoded`), each parameter at most once. A body that opens
/// with `{` is JSON whatever its label (`curl -d` labels everything a form).
fn params(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let malformed = |d: String| OAuthError::new(20063).describe(d);
    let looks_json = body.trim_ascii_start().starts_with(b"{");
    let is_form = !looks_json
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
    let mut out = HashMap::new();
    if is_form {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| malformed(format!("the form body cannot be read: {e}")))?;
        for (k, v) in pairs {
            if out.insert(k.clone(), v).is_some() {
                return Err(malformed(format!(
                    "parameter {k:?} is given more than once"
                )));
            }
        }
        return Ok(out);
    }
    let v: serde_json::Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        malformed(format!(
            "the body must be a JSON object (or a form with Content-Type application/x-www-form-urlencoded): {e}"
        ))
    })?;
    for (k, v) in v {
        match v {
            Value::String(s) => {
                out.insert(k, s);
            }
            Value::Null => {}
            other => {
                return Err(malformed(format!(
                    "parameter {k:?} must be a string, not {other}"
                )))
            }
        }
    }
    Ok(out)
}

/// HTTP Basic client credentials (RFC 6749 §2.3.1: each part form-urlencoded).
fn basic(headers: &HeaderMap) -> Option<Result<(String, String), OAuthError>> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bad = || OAuthError::new(20063).describe("the Basic authorization header is malformed");
    let decoded = B64
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some((id, secret)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Some(Err(bad()));
    };
    let unform = |s: &str| -> Option<String> {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    Some(match (unform(id), unform(secret)) {
        (Some(i), Some(s)) => Ok((i, s)),
        _ => Err(bad()),
    })
}

fn grant_request(
    p: &mut HashMap<String, String>,
    grant_type: &str,
) -> Result<GrantRequest, OAuthError> {
    let missing = |k: &str| OAuthError::new(20001).describe(format!("{k} is required"));
    match grant_type {
        "authorization_code" => Ok(GrantRequest::Code {
            code: p
                .remove("code")
                .filter(|c| !c.is_empty())
                .ok_or_else(|| missing("code"))?,
            redirect_uri: p.remove("redirect_uri").filter(|r| !r.is_empty()),
            code_verifier: p.remove("code_verifier").filter(|v| !v.is_empty()),
        }),
        "refresh_token" => Ok(GrantRequest::Refresh {
            refresh_token: p
                .remove("refresh_token")
                .filter(|c| !c.is_empty())
                .ok_or_else(|| missing("refresh_token"))?,
        }),
        other => Err(OAuthError::new(20036).describe(format!(
            "grant_type must be authorization_code or refresh_token, not {other:?}"
        ))),
    }
}

/// Fault rules, then the gateway quota, for an app calling a token route. A fault rule's
/// error answers in the route's own terms: its 99991400 as the quota's, 190003 as 20050,
/// any other as 20072. `flat` says whether the route answers flat (v2) or in the envelope.
async fn gate(state: &AppState, route: &'static str, app_id: &str, flat: bool) -> Result<(), Stop> {
    let throttled = |t: Throttled| {
        if flat {
            Stop::Answer(flat_throttled(t.limit, t.reset_secs))
        } else {
            Stop::Answer(throttled_error(t).into_response())
        }
    };
    if let Err(e) = inject_fault(state, "POST", route, Some(app_id), None, &[]).await {
        return Err(match e.code {
            99991400 => throttled(Throttled {
                limit: 50,
                reset_secs: 1,
            }),
            190003 => err(20050, "injected by an exbind fault rule"),
            _ => err(20072, "injected by an exbind fault rule"),
        });
    }
    let counted = state
        .limiter
        .gateway(Quota::Route(route), app_id, "", state.now())
        .await
        .map_err(|e| err(20050, format!("the quota could not be counted: {e}")))?;
    if let Err(t) = counted {
        state.metrics.quota_rejection("gateway");
        return Err(throttled(t));
    }
    Ok(())
}

/// The gateway quota's rejection in the usual envelope.
fn throttled_error(t: Throttled) -> ApiError {
    ApiError::new(ErrorCode::FrequencyLimit)
        .header("x-ogw-ratelimit-limit", t.limit)
        .header("x-ogw-ratelimit-reset", t.reset_secs)
        .header("retry-after", t.reset_secs)
}

/// An OAuth error in the usual envelope, with its HTTP status (the v1 routes).
fn enveloped(e: OAuthError) -> ApiError {
    let mut a = ApiError::custom(e.status, e.code, e.description);
    a.cause = e.cause;
    a
}

async fn v1_token(
    state: SharedState,
    slot: CallerSlot,
    headers: HeaderMap,
    body: bytes::Bytes,
    route: V1,
) -> Response {
    let answer = match v1(&state, &slot, &headers, &body, route).await {
        Ok(a) => a,
        Err(Stop::OAuth(e)) => return enveloped(e).into_response(),
        Err(Stop::Answer(r)) => return r,
    };
    let mut data = json!({
        "access_token": answer.access_token,
        "token_type": "Bearer",
        "expires_in": answer.expires_in,
    });
    if let Some((token, ttl)) = &answer.refresh {
        data["refresh_token"] = json!(token);
        data["refresh_expires_in"] = json!(ttl);
    }
    data["scope"] = json!(answer.scopes.join(" "));
    if route.with_user {
        if let Value::Object(info) =
            oauth::user_info(&state, &answer.app, &answer.user, &answer.scopes)
        {
            data.as_object_mut().expect("an object").extend(info);
        }
    }
    success(data)
}

async fn v1(
    state: &AppState,
    slot: &CallerSlot,
    headers: &HeaderMap,
    body: &[u8],
    route: V1,
) -> Result<TokenAnswer, Stop> {
    let app = app_of_token(state, headers, slot)
        .await
        .map_err(|e| Stop::Answer(e.into_response()))?;
    let mut p = params(headers, body)?;
    let expected = if route.refresh {
        "refresh_token"
    } else {
        "authorization_code"
    };
    let grant_type = p
        .remove("grant_type")
        .filter(|g| !g.is_empty())
        .ok_or_else(|| err(20001, "grant_type is required"))?;
    if grant_type != expected {
        return Err(err(
            20036,
            format!("this route takes grant_type {expected:?}, not {grant_type:?}"),
        ));
    }
    let req = grant_request(&mut p, &grant_type)?;
    if !app.login.enabled {
        return Err(err(20069, "the app is not enabled"));
    }
    gate(state, route.route, &app.app_id, false).await?;
    Ok(oauth::exchange(state, &app, req, None, Flavor::V1).await?)
}

/// The app of the request's `Authorization: Bearer <app_access_token>`: 99991661 without
/// one, 99991663 when it is not a live app token.
async fn app_of_token(
    state: &AppState,
    headers: &HeaderMap,
    slot: &CallerSlot,
) -> Result<Arc<App>, ApiError> {
    let raw = bearer(headers).ok_or(ErrorCode::MissingToken)?;
    let invalid = || {
        ApiError::new(ErrorCode::TenantTokenNotAccepted)
            .message("this API needs a live app_access_token")
    };
    if !matches!(raw.get(..2), Some("t-" | "a-")) {
        return Err(invalid());
    }
    let token = state
        .store
        .app_token(&raw)
        .await?
        .filter(|t| state.now() < t.expires_at)
        .ok_or_else(invalid)?;
    slot.set(Identity::App(token.app_id.clone()));
    state.store.app(&token.app_id).await?.ok_or_else(invalid)
}

/// `GET /open-apis/authen/v1/user_info`: the token's user, its fields by the token's scopes.
async fn user_info(
    State(state): State<SharedState>,
    Extension(slot): Extension<CallerSlot>,
    headers: HeaderMap,
    Payload(_): Payload,
) -> Result<Response, ApiError> {
    let token = pipeline::user_token(&state, &headers, &slot).await?;
    inject_fault(
        &state,
        "GET",
        USER_INFO_ROUTE,
        Some(&token.app_id),
        Some(&token.tenant_key),
        &[],
    )
    .await?;
    let app = state
        .store
        .app(&token.app_id)
        .await?
        .ok_or(ErrorCode::InvalidUserToken)?;
    let user = state
        .store
        .user(&token.tenant_key, &token.user_id)
        .await?
        .ok_or(ErrorCode::InvalidUserToken)?;
    if let Err(t) = state
        .limiter
        .gateway(
            Quota::Route(USER_INFO_ROUTE),
            &app.app_id,
            &token.tenant_key,
            state.now(),
        )
        .await?
    {
        state.metrics.quota_rejection("gateway");
        return Err(throttled_error(t));
    }
    Ok(success(oauth::user_info(
        &state,
        &app,
        &user,
        &token.scopes,
    )))
}

async fn v2_token(
    state: SharedState,
    slot: CallerSlot,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    match v2(&state, &slot, &headers, &body).await {
        Ok(a) => {
            let mut v = json!({
                "code": 0,
                "access_token": a.access_token,
                "expires_in": a.expires_in,
            });
            if let Some((token, ttl)) = a.refresh {
                v["refresh_token"] = json!(token);
                v["refresh_token_expires_in"] = json!(ttl);
            }
            v["token_type"] = json!("Bearer");
            v["scope"] = json!(a.scopes.join(" "));
            json_response(StatusCode::OK, &v)
        }
        Err(Stop::OAuth(e)) => flat(e),
        Err(Stop::Answer(r)) => r,
    }
}

async fn v2(
    state: &AppState,
    slot: &CallerSlot,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenAnswer, Stop> {
    let mut p = params(headers, body)?;
    let grant_type = p
        .remove("grant_type")
        .filter(|g| !g.is_empty())
        .ok_or_else(|| err(20001, "grant_type is required"))?;
    let req = grant_request(&mut p, &grant_type)?;
    let body_id = p.remove("client_id").filter(|c| !c.is_empty());
    let body_secret = p.remove("client_secret").filter(|c| !c.is_empty());
    let (client_id, secret) = match basic(headers) {
        Some(creds) => {
            let (id, secret) = creds?;
            if body_secret.is_some() {
                return Err(err(
                    20070,
                    "client_secret was given both as HTTP Basic and in the body",
                ));
            }
            if body_id.as_ref().is_some_and(|b| *b != id) {
                return Err(err(
                    20070,
                    "client_id in the body differs from the HTTP Basic one",
                ));
            }
            (id, secret)
        }
        None => (
            body_id.ok_or_else(|| err(20001, "client_id is required"))?,
            body_secret.ok_or_else(|| err(20001, "client_secret is required"))?,
        ),
    };
    slot.set(Identity::App(client_id.clone()));
    let app = state
        .store
        .app(&client_id)
        .await
        .map_err(OAuthError::from)?
        .ok_or_else(|| err(20048, format!("app {client_id:?} does not exist")))?;
    if !bool::from(app.app_secret.as_bytes().ct_eq(secret.as_bytes())) {
        return Err(err(20002, "the client secret is invalid"));
    }
    if !app.login.enabled {
        return Err(err(20069, "the app is not enabled"));
    }
    gate(state, V2_TOKEN_ROUTE, &app.app_id, true).await?;
    let scope = p.remove("scope");
    Ok(oauth::exchange(state, &app, req, scope.as_deref(), Flavor::V2).await?)
}
