//! The token endpoints (contract §3). Their answers are flat and always HTTP 200.

use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::{json_response, Code, Payload};
use crate::domain::model::AppKind;
use crate::error::ApiError;
use crate::pipeline::{inject_fault, CallerSlot, Identity};
use crate::state::SharedState;
use crate::tokens;

const TENANT_ROUTE: &str = "/open-apis/auth/v3/tenant_access_token/internal";
const APP_ROUTE: &str = "/open-apis/auth/v3/app_access_token/internal";

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
}

/// A flat `{"code","msg"}` answer with HTTP 200.
pub fn flat_error(code: i64, msg: &str) -> Response {
    let mut r = json_response(StatusCode::OK, &json!({"code": code, "msg": msg}));
    r.extensions_mut().insert(Code(code));
    r
}

async fn issue(state: SharedState, slot: CallerSlot, body: Bytes, app_token: bool) -> Response {
    let creds = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        let id = v.get("app_id")?.as_str()?.to_string();
        let secret = v.get("app_secret")?.as_str()?.to_string();
        (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
    });
    let Some((app_id, secret)) = creds else {
        return flat_error(10003, "invalid param");
    };
    slot.set(Identity::App(app_id.clone()));
    let route = if app_token { APP_ROUTE } else { TENANT_ROUTE };
    if let Err(e) = inject_fault(&state, "POST", route, Some(&app_id), None, &[]).await {
        return e.into_response();
    }
    let app = match state.store.app(&app_id).await {
        Ok(Some(app)) => app,
        Ok(None) => return flat_error(10014, "app id not exists"),
        Err(e) => return ApiError::from(e).into_response(),
    };
    if !bool::from(app.app_secret.as_bytes().ct_eq(secret.as_bytes())) {
        return flat_error(10014, "app secret invalid");
    }
    if app.kind == AppKind::Store {
        return flat_error(10014, "store app cannot use internal token endpoint");
    }
    let token = match tokens::tenant_token(&state, &app.app_id).await {
        Ok(t) => t,
        Err(e) => return ApiError::from(e).into_response(),
    };
    // Rounded up, so a fresh token says exactly the TTL.
    let expire = ((token.expires_at - state.now() + 999) / 1000).max(0);
    let body = if app_token {
        json!({"code": 0, "msg": "ok", "app_access_token": token.token,
               "tenant_access_token": token.token, "expire": expire})
    } else {
        json!({"code": 0, "msg": "ok", "tenant_access_token": token.token, "expire": expire})
    };
    json_response(StatusCode::OK, &body)
}
