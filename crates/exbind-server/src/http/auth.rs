//! The token endpoints (contract §3; store apps: oauth.md §5). Their answers are flat and
//! always HTTP 200.

use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::{json_response, Code, Payload};
use std::sync::Arc;

use crate::domain::model::{App, AppKind, AppToken};
use crate::error::ApiError;
use crate::pipeline::{inject_fault, CallerSlot, Identity};
use crate::state::SharedState;
use crate::{tickets, tokens};

const TENANT_ROUTE: &str = "/open-apis/auth/v3/tenant_access_token/internal";
const APP_ROUTE: &str = "/open-apis/auth/v3/app_access_token/internal";
const STORE_APP_ROUTE: &str = "/open-apis/auth/v3/app_access_token";
const STORE_TENANT_ROUTE: &str = "/open-apis/auth/v3/tenant_access_token";
const RESEND_ROUTE: &str = "/open-apis/auth/v3/app_ticket/resend";

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            TENANT_ROUTE,
            post(|State(s), Extension(slot), Payload(p)| issue(s, slot, p, false)),
        )
        .route(
            APP_ROUTE,
            post(|State(s), Extension(slot), Payload(p)| issue(s, slot, p, true)),
        )
        .route(STORE_APP_ROUTE, post(store_app_token))
        .route(STORE_TENANT_ROUTE, post(store_tenant_token))
        .route(RESEND_ROUTE, post(resend_ticket))
}

/// A flat `{"code","msg"}` answer with HTTP 200.
pub fn flat_error(code: i64, msg: &str) -> Response {
    let mut r = json_response(StatusCode::OK, &json!({"code": code, "msg": msg}));
    r.extensions_mut().insert(Code(code));
    r
}

/// The body's non-empty string fields `names`; `None` answers `10003 invalid param`.
pub(crate) fn fields<const N: usize>(body: &[u8], names: [&str; N]) -> Option<[String; N]> {
    let v = serde_json::from_slice::<Value>(body).ok()?;
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (slot, name) in out.iter_mut().zip(names) {
        match v.get(name)?.as_str() {
            Some(s) if !s.is_empty() => *slot = s.to_string(),
            _ => return None,
        }
    }
    Some(out)
}

/// The app whose credentials these are, after the route's fault rules: or the flat error.
async fn authenticate(
    state: &SharedState,
    slot: &CallerSlot,
    route: &str,
    app_id: &str,
    secret: &str,
) -> Result<Arc<App>, Response> {
    slot.set(Identity::App(app_id.to_string()));
    inject_fault(state, "POST", route, Some(app_id), None, &[])
        .await
        .map_err(IntoResponse::into_response)?;
    let app = match state.store.app(app_id).await {
        Ok(Some(app)) => app,
        Ok(None) => return Err(flat_error(10014, "app id not exists")),
        Err(e) => return Err(ApiError::from(e).into_response()),
    };
    if !bool::from(app.app_secret.as_bytes().ct_eq(secret.as_bytes())) {
        return Err(flat_error(10014, "app secret invalid"));
    }
    Ok(app)
}

/// Seconds left, rounded up, so a fresh token says exactly the TTL.
fn expire(state: &SharedState, token: &AppToken) -> i64 {
    ((token.expires_at - state.now() + 999) / 1000).max(0)
}

async fn issue(state: SharedState, slot: CallerSlot, body: Bytes, app_token: bool) -> Response {
    let [app_id, secret] = match fields(&body, ["app_id", "app_secret"]) {
        Some(f) => f,
        None => return flat_error(10003, "invalid param"),
    };
    let route = if app_token { APP_ROUTE } else { TENANT_ROUTE };
    let app = match authenticate(&state, &slot, route, &app_id, &secret).await {
        Ok(app) => app,
        Err(r) => return r,
    };
    if app.kind == AppKind::Store {
        return flat_error(10014, "store app cannot use internal token endpoint");
    }
    let token = match tokens::tenant_token(&state, &app.app_id).await {
        Ok(t) => t,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let expire = expire(&state, &token);
    let body = if app_token {
        json!({"code": 0, "msg": "ok", "app_access_token": token.token,
               "tenant_access_token": token.token, "expire": expire})
    } else {
        json!({"code": 0, "msg": "ok", "tenant_access_token": token.token, "expire": expire})
    };
    json_response(StatusCode::OK, &body)
}

/// `app_access_token` of a store app, for its `app_ticket` (the latest or the one before).
async fn store_app_token(
    State(state): State<SharedState>,
    Extension(slot): Extension<CallerSlot>,
    Payload(body): Payload,
) -> Response {
    let [app_id, secret, ticket] = match fields(&body, ["app_id", "app_secret", "app_ticket"]) {
        Some(f) => f,
        None => return flat_error(10003, "invalid param"),
    };
    let app = match authenticate(&state, &slot, STORE_APP_ROUTE, &app_id, &secret).await {
        Ok(app) => app,
        Err(r) => return r,
    };
    if app.kind == AppKind::Custom {
        return flat_error(10014, "custom app must use app_access_token/internal");
    }
    match state.store.app_ticket_valid(&app.app_id, &ticket).await {
        Ok(true) => {}
        Ok(false) => return flat_error(10012, "app ticket invalid"),
        Err(e) => return ApiError::from(e).into_response(),
    }
    match tokens::store_app_token(&state, &app.app_id).await {
        Ok(t) => json_response(
            StatusCode::OK,
            &json!({"code": 0, "msg": "success", "app_access_token": t.token,
                    "expire": expire(&state, &t)}),
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A store app's `tenant_access_token` in a tenant it is installed in.
async fn store_tenant_token(
    State(state): State<SharedState>,
    Extension(slot): Extension<CallerSlot>,
    Payload(body): Payload,
) -> Response {
    let [app_token, tenant_key] = match fields(&body, ["app_access_token", "tenant_key"]) {
        Some(f) => f,
        None => return flat_error(10003, "invalid param"),
    };
    let now = state.now();
    let held = match state.store.app_token(&app_token).await {
        Ok(Some(t)) if t.token.starts_with("a-") && t.expires_at > now => t,
        Ok(_) => return flat_error(10013, "app access token invalid"),
        Err(e) => return ApiError::from(e).into_response(),
    };
    slot.set(Identity::App(held.app_id.clone()));
    if let Err(e) = inject_fault(
        &state,
        "POST",
        STORE_TENANT_ROUTE,
        Some(&held.app_id),
        Some(&tenant_key),
        &[],
    )
    .await
    {
        return e.into_response();
    }
    match state.store.app(&held.app_id).await {
        Ok(Some(app)) if app.installed_in(&tenant_key) => {}
        Ok(_) => return flat_error(10013, "app is not installed in this tenant"),
        Err(e) => return ApiError::from(e).into_response(),
    }
    match tokens::store_tenant_token(&state, &held.app_id, &tenant_key).await {
        Ok(t) => json_response(
            StatusCode::OK,
            &json!({"code": 0, "msg": "success", "tenant_access_token": t.token,
                    "expire": expire(&state, &t)}),
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Pushes a store app a new `app_ticket` now; the push itself runs in the background.
async fn resend_ticket(
    State(state): State<SharedState>,
    Extension(slot): Extension<CallerSlot>,
    Payload(body): Payload,
) -> Response {
    let [app_id, secret] = match fields(&body, ["app_id", "app_secret"]) {
        Some(f) => f,
        None => return flat_error(10003, "invalid param"),
    };
    let app = match authenticate(&state, &slot, RESEND_ROUTE, &app_id, &secret).await {
        Ok(app) => app,
        Err(r) => return r,
    };
    if app.kind == AppKind::Custom {
        return flat_error(10016, "app resend fail: custom apps get no app_ticket");
    }
    match tickets::push(&state, &app).await {
        Ok(()) => json_response(StatusCode::OK, &json!({"code": 0, "msg": "success"})),
        Err(e) => ApiError::from(e).into_response(),
    }
}
