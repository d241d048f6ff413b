//! Health and metrics (no auth).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use exbind_api::ErrorCode;
use http::{header, StatusCode};
use serde_json::json;

use super::success;
use crate::error::ApiError;
use crate::state::SharedState;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/_exbind/healthz",
            get(|| async { success(json!({"status": "ok"})) }),
        )
        .route("/_exbind/readyz", get(ready))
        .route("/_exbind/metrics", get(metrics))
        .route("/_exbind/openapi.json", get(openapi))
}

/// The OpenAPI 3.1 document of the Feishu routes and the control plane.
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, super::JSON_UTF8)],
        include_str!("openapi.json"),
    )
        .into_response()
}

async fn ready(State(state): State<SharedState>) -> Result<Response, ApiError> {
    match state.store.ping().await {
        Ok(()) => Ok(success(
            json!({"status": "ready", "warm": state.store.warm()}),
        )),
        Err(e) => Err(ApiError::new(ErrorCode::InternalError)
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .message(format!("store not reachable: {e}"))),
    }
}

async fn metrics(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let counts = state.store.binding_counts().await?;
    let text = state.metrics.render(&counts);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
