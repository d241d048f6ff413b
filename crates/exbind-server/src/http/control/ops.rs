//! Fault rules, the request journal and reset.

use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use exbind_api::ErrorCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_body, MAX_EXPIRES_IN};
use crate::clock::rfc3339;
use crate::domain::scopes::{COLLECTION_ROUTE, ITEM_ROUTE};
use crate::error::ApiError;
use crate::faults::FaultRule;
use crate::http::oauth;
use crate::http::{success, ApiPath as Path, ApiQuery as Query, Payload};
use crate::journal::Filter;
use crate::state::{AppState, SharedState};
use crate::store::StoreResult;

/// Routes a fault rule can name.
pub(crate) const FAULT_ROUTES: [&str; 13] = [
    COLLECTION_ROUTE,
    ITEM_ROUTE,
    "/open-apis/auth/v3/tenant_access_token/internal",
    "/open-apis/auth/v3/app_access_token/internal",
    // The login flows (oauth.md §3–4).
    oauth::V2_TOKEN_ROUTE,
    oauth::OIDC_ACCESS_ROUTE,
    oauth::OIDC_REFRESH_ROUTE,
    oauth::ACCESS_ROUTE,
    oauth::REFRESH_ROUTE,
    oauth::USER_INFO_ROUTE,
    "/open-apis/auth/v3/app_access_token",
    "/open-apis/auth/v3/tenant_access_token",
    "/open-apis/auth/v3/app_ticket/resend",
];

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/_exbind/v1/faults",
            post(add_fault).get(list_faults).delete(clear_faults),
        )
        .route(
            "/_exbind/v1/faults/{id}",
            axum::routing::delete(delete_fault),
        )
        .route("/_exbind/v1/requests", get(list_requests))
        .route("/_exbind/v1/requests/{log_id}", get(get_request))
        .route("/_exbind/v1/reset", post(reset))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultError {
    code: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultBody {
    method: String,
    route: String,
    app_id: Option<String>,
    tenant_key: Option<String>,
    times: Option<u64>,
    fraction: Option<f64>,
    error: Option<FaultError>,
    latency_ms: Option<u64>,
    expires_in: Option<i64>,
}

fn fault_view(r: &FaultRule) -> Value {
    let mut v = serde_json::to_value(r).expect("serializable");
    v["expires_at"] = r.expires_at.map(rfc3339).into();
    v
}

async fn add_fault(
    State(state): State<SharedState>,
    Payload(body): Payload,
) -> Result<Response, ApiError> {
    let f: FaultBody = parse_body(&body)?;
    let mut err = ApiError::new(ErrorCode::InvalidParameters);
    let method = f.method.to_ascii_uppercase();
    if !matches!(method.as_str(), "GET" | "POST" | "DELETE") {
        err = err.field("method", Some(f.method.clone()), "one of GET, POST, DELETE");
    }
    if !FAULT_ROUTES.contains(&f.route.as_str()) {
        err = err.field(
            "route",
            Some(f.route.clone()),
            format!("one of {}", FAULT_ROUTES.join(", ")),
        );
    }
    if f.times == Some(0) {
        err = err.field("times", Some("0".into()), "times must be at least 1");
    }
    if let Some(fr) = f.fraction {
        if !(fr > 0.0 && fr <= 1.0) {
            err = err.field(
                "fraction",
                Some(fr.to_string()),
                "fraction must be in (0, 1]",
            );
        }
    }
    if f.times.is_some() && f.fraction.is_some() {
        err = err.field("fraction", None, "give times or fraction, not both");
    }
    let code = match &f.error {
        Some(e) => match ErrorCode::from_code(e.code) {
            Some(c) => Some(c),
            None => {
                err = err.field(
                    "error.code",
                    Some(e.code.to_string()),
                    "not a code of the documented error table",
                );
                None
            }
        },
        None => None,
    };
    if f.error.is_none() && f.latency_ms.unwrap_or(0) == 0 {
        err = err.field(
            "error",
            None,
            "a rule needs an error, a latency_ms, or both",
        );
    }
    if f.expires_in
        .is_some_and(|e| !(1..=MAX_EXPIRES_IN).contains(&e))
    {
        err = err.field(
            "expires_in",
            f.expires_in.map(|e| e.to_string()),
            format!("expires_in must be from 1 to {MAX_EXPIRES_IN} seconds"),
        );
    }
    if !err.detail.field_violations.is_empty() {
        return Err(err);
    }
    let rule = state
        .faults
        .add(FaultRule {
            id: String::new(),
            method,
            route: f.route,
            app_id: f.app_id,
            tenant_key: f.tenant_key,
            times: f.times,
            fraction: f.fraction,
            error: code,
            latency_ms: f.latency_ms,
            expires_at: f.expires_in.map(|s| state.now() + s * 1000),
            hits: 0,
        })
        .await?;
    Ok(success(fault_view(&rule)))
}

async fn list_faults(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let items: Vec<Value> = state
        .faults
        .list(state.now())
        .await?
        .iter()
        .map(fault_view)
        .collect();
    Ok(success(json!({"items": items})))
}

async fn delete_fault(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !state.faults.remove(&id).await? {
        return Err(ApiError::not_found(format!("fault rule {id:?} not found")));
    }
    Ok(success(json!({"deleted": id})))
}

async fn clear_faults(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let n = state.faults.list(state.now()).await?.len();
    state.faults.clear().await?;
    Ok(success(json!({"cleared": n})))
}

/// A journal query as it arrives: every field text, checked by `request_filter`.
#[derive(Deserialize)]
pub(crate) struct RequestQuery {
    method: Option<String>,
    route: Option<String>,
    app_id: Option<String>,
    tenant_key: Option<String>,
    user_id: Option<String>,
    status: Option<String>,
    code: Option<String>,
    since: Option<String>,
    page_size: Option<String>,
    page_token: Option<String>,
}

fn num<T: std::str::FromStr>(field: &str, v: Option<String>) -> Result<Option<T>, ApiError> {
    text(field, v)?
        .map(|s| {
            s.parse::<T>().map_err(|_| {
                ApiError::invalid(field, Some(s.clone()), format!("{field} must be a number"))
            })
        })
        .transpose()
}

/// The longest filter value or log id the journal is searched for: nothing it holds is
/// longer (a route template, an id), and an answer does not echo 60 KiB back.
const MAX_FILTER: usize = 4096;

fn capped(field: &str, v: &str) -> Result<(), ApiError> {
    if v.len() > MAX_FILTER {
        return Err(ApiError::invalid(
            field,
            None,
            format!("{field} is {} bytes, more than {MAX_FILTER}", v.len()),
        ));
    }
    Ok(())
}

/// A text filter: empty is none; at most `MAX_FILTER` bytes.
fn text(field: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    match v.filter(|s| !s.is_empty()) {
        Some(s) => capped(field, &s).map(|()| Some(s)),
        None => Ok(None),
    }
}

/// The journal filter and page size a query asks for; a bad field is 190002 naming it.
pub(crate) fn request_filter(q: RequestQuery) -> Result<(Filter, usize), ApiError> {
    let since_ms = match text("since", q.since)? {
        None => None,
        Some(s) => Some(match s.parse::<i64>() {
            Ok(ms) => ms,
            Err(_) => {
                time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                    .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                    .map_err(|_| {
                        ApiError::invalid(
                            "since",
                            Some(s.clone()),
                            "since must be RFC 3339 or milliseconds since the epoch",
                        )
                    })?
            }
        }),
    };
    let page_size = num::<usize>("page_size", q.page_size)?.unwrap_or(100);
    if !(1..=1000).contains(&page_size) {
        return Err(ApiError::invalid(
            "page_size",
            Some(page_size.to_string()),
            "page_size must be from 1 to 1000",
        ));
    }
    let filter = Filter {
        method: text("method", q.method)?,
        route: text("route", q.route)?,
        app_id: text("app_id", q.app_id)?,
        tenant_key: text("tenant_key", q.tenant_key)?,
        user_id: text("user_id", q.user_id)?,
        status: num("status", q.status)?,
        code: num("code", q.code)?,
        since_ms,
        before_seq: num("page_token", q.page_token)?,
    };
    Ok((filter, page_size))
}

async fn list_requests(
    State(state): State<SharedState>,
    Query(q): Query<RequestQuery>,
) -> Result<Response, ApiError> {
    let (filter, page_size) = request_filter(q)?;
    let (items, next) = state.journal.search(&filter, page_size).await?;
    Ok(success(json!({
        "items": items,
        "has_more": next.is_some(),
        "page_token": next.map(|n| n.to_string()),
        "enabled": state.journal.enabled(),
    })))
}

async fn get_request(
    State(state): State<SharedState>,
    Path(log_id): Path<String>,
) -> Result<Response, ApiError> {
    capped("log_id", &log_id)?;
    state
        .journal
        .find(&log_id)
        .await?
        .map(success)
        .ok_or_else(|| {
            ApiError::not_found(format!("no request with log_id {log_id:?} in the journal"))
        })
}

async fn reset(State(state): State<SharedState>, _: Payload) -> Result<Response, ApiError> {
    reset_all(&state).await?;
    Ok(success(json!({"reset": true})))
}

/// Empties the store, the fault rules, the journal and the quota counters.
pub(crate) async fn reset_all(state: &AppState) -> StoreResult<()> {
    state.store.reset().await?;
    state.faults.clear().await?;
    state.journal.clear();
    state.limiter.clear().await?;
    state.events.reload(None);
    Ok(())
}
