//! Control of the sync: scenarios per Exchange account, forcing and advancing a binding's
//! status, completing a tenant's syncs, wiping a tenant's bindings.

use axum::extract::State;
use axum::response::Response;
use axum::routing::{post, put};
use axum::Router;
use exbind_api::BindingStatus;
use serde::Deserialize;
use serde_json::json;

use super::{binding_view, parse_body, tenant_or_404, with_history};
use crate::domain::model::{BindingRecord, ExchangeScenario, StatusChange, Step, UserStatus};
use crate::error::ApiError;
use crate::events::Action;
use crate::http::bindings::{self, CreateRequest};
use crate::http::{success, ApiPath as Path, Payload};
use crate::seed::check_scenario;
use crate::state::{AppState, SharedState};
use exbind_api::accounts::{address_problem, fold, same_address};
use exbind_api::ErrorCode;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/_exbind/v1/tenants/{tenant_key}/exchange_accounts/{account}/scenario",
            put(put_scenario).delete(delete_scenario),
        )
        .route(
            "/_exbind/v1/tenants/{tenant_key}/bindings/{*rest}",
            axum::routing::patch(force)
                .post(advance)
                .delete(delete_binding),
        )
        .route(
            "/_exbind/v1/tenants/{tenant_key}/sync/complete",
            post(complete),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioBody {
    scenario: String,
    stage: Option<String>,
    reason: Option<String>,
}

async fn put_scenario(
    State(state): State<SharedState>,
    Path((tenant_key, account)): Path<(String, String)>,
    Payload(body): Payload,
) -> Result<Response, ApiError> {
    let b: ScenarioBody = parse_body(&body)?;
    tenant_or_404(&state, &tenant_key).await?;
    if let Some(p) = address_problem(&account) {
        return Err(ApiError::invalid(
            "account",
            Some(account),
            format!("account {p}"),
        ));
    }
    let (scenario, stage) =
        check_scenario(Some(&b.scenario), b.stage.as_deref(), b.reason.as_deref())
            .map_err(|(field, reason)| ApiError::invalid(field, None, reason))?;
    if let Some(existing) = state.store.scenario(&fold(&account)).await? {
        if existing.tenant_key != tenant_key {
            return Err(ApiError::invalid(
                "account",
                Some(account),
                "this Exchange account has a scenario in another tenant",
            ));
        }
    }
    let s = ExchangeScenario {
        account,
        tenant_key,
        scenario,
        stage,
        reason: b.reason,
    };
    state.store.put_scenario(s.clone()).await?;
    Ok(success(s))
}

async fn delete_scenario(
    State(state): State<SharedState>,
    Path((tenant_key, account)): Path<(String, String)>,
    _: Payload,
) -> Result<Response, ApiError> {
    tenant_or_404(&state, &tenant_key).await?;
    if !state
        .store
        .delete_scenario(&tenant_key, &fold(&account))
        .await?
    {
        return Err(ApiError::not_found(format!(
            "no scenario for {account:?} in tenant {tenant_key:?}"
        )));
    }
    Ok(success(json!({"account": account, "scenario": "normal"})))
}

/// A binding of the tenant by its id.
async fn tenant_binding(
    state: &AppState,
    tenant_key: &str,
    id: &str,
) -> Result<BindingRecord, ApiError> {
    tenant_or_404(state, tenant_key).await?;
    let key = exbind_api::id::decode(id).map_err(|_| {
        ApiError::invalid(
            "exchange_binding_id",
            Some(id.to_string()),
            "not a valid exchange_binding_id",
        )
    })?;
    state
        .store
        .binding(&fold(&key.exchange_account))
        .await?
        .filter(|b| {
            b.tenant_key == tenant_key && same_address(&b.admin_account, &key.admin_account)
        })
        .ok_or_else(|| {
            ApiError::not_found(format!("binding {id:?} not found in tenant {tenant_key:?}"))
        })
}

/// Moves a binding to `status` now, then answers it as it is.
async fn move_to(
    state: &AppState,
    b: BindingRecord,
    status: BindingStatus,
    reason: Option<String>,
) -> Result<Response, ApiError> {
    let now = state.now();
    let from = b.status;
    let change = StatusChange {
        seq: b.seq,
        exchange_folded: fold(&b.exchange_account),
        from: b.status,
        status,
        reason,
        next_at: state.schedule.next_at(&b.scenario, status, now),
        steps: vec![Step { status, at: now }],
    };
    if !state.store.change_status(vec![change], now).await?[0] {
        return Err(exbind_api::ErrorCode::OperationRateLimited.into());
    }
    state.sync_wake.notify_one();
    let (b, history) = with_history(state, b.seq).await?;
    state.events.binding(Action::Status, &b, Some(from));
    Ok(success(binding_view(&b, &history)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForceBody {
    status: String,
    reason: Option<String>,
}

async fn force(
    State(state): State<SharedState>,
    Path((tenant_key, id)): Path<(String, String)>,
    Payload(body): Payload,
) -> Result<Response, ApiError> {
    let f: ForceBody = parse_body(&body)?;
    let status = BindingStatus::parse(&f.status).ok_or_else(|| {
        ApiError::invalid(
            "status",
            Some(f.status.clone()),
            "one of doing, cal_done, timespan_done, done, err",
        )
    })?;
    if f.reason.is_some() && status != BindingStatus::Err {
        return Err(ApiError::invalid(
            "reason",
            f.reason,
            "only status err takes a reason",
        ));
    }
    let b = tenant_binding(&state, &tenant_key, &id).await?;
    let reason = (status == BindingStatus::Err).then(|| {
        f.reason
            .unwrap_or_else(|| "forced by the control plane".into())
    });
    move_to(&state, b, status, reason).await
}

async fn advance(
    State(state): State<SharedState>,
    Path((tenant_key, rest)): Path<(String, String)>,
    _: Payload,
) -> Result<Response, ApiError> {
    let Some(id) = rest.strip_suffix("/advance") else {
        return Err(ApiError::not_found(format!(
            "no route POST …/bindings/{rest}"
        )));
    };
    let b = tenant_binding(&state, &tenant_key, id).await?;
    let Some(next) = b.status.next() else {
        return Err(ApiError::invalid(
            "status",
            Some(b.status.to_string()),
            format!("a binding that is {} cannot advance", b.status),
        ));
    };
    move_to(&state, b, next, None).await
}

async fn complete(
    State(state): State<SharedState>,
    Path(tenant_key): Path<String>,
    _: Payload,
) -> Result<Response, ApiError> {
    tenant_or_404(&state, &tenant_key).await?;
    let now = state.now();
    let (mut after, mut completed) = (0, 0u64);
    loop {
        let page = state.store.list_bindings(&tenant_key, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let page: Vec<BindingRecord> = page.into_iter().filter(|b| !b.status.is_final()).collect();
        let changes: Vec<StatusChange> = page
            .iter()
            .map(|b| {
                let mut steps = Vec::new();
                let mut s = b.status;
                while let Some(n) = s.next() {
                    steps.push(Step { status: n, at: now });
                    s = n;
                }
                StatusChange {
                    seq: b.seq,
                    exchange_folded: fold(&b.exchange_account),
                    from: b.status,
                    status: BindingStatus::Done,
                    reason: None,
                    next_at: None,
                    steps,
                }
            })
            .collect();
        if !changes.is_empty() {
            let published = state.events.wanted().then(|| changes.clone());
            let applied = state.store.change_status(changes, now).await?;
            completed += applied.iter().filter(|a| **a).count() as u64;
            if let Some(changes) = published {
                state.events.status_changes(&page, &changes, &applied, now);
            }
        }
    }
    Ok(success(json!({"completed": completed})))
}

/// Creates a binding in a tenant, as the Feishu create would for its super administrator:
/// the same checks of the admin account and the user, the same one-to-one rule.
pub async fn create_binding(
    State(state): State<SharedState>,
    Path(tenant_key): Path<String>,
    Payload(body): Payload,
) -> Result<Response, ApiError> {
    tenant_or_404(&state, &tenant_key).await?;
    let req = CreateRequest::parse(&body)?;
    let admin = bindings::admin_account(&state, &tenant_key, &req.admin_account).await?;
    let user = state
        .store
        .user(&tenant_key, &req.user_id)
        .await?
        .filter(|u| u.status == UserStatus::Active)
        .ok_or(ErrorCode::UserNotInTenant)?;
    let b = bindings::bind(&state, &admin, &user, req).await?;
    let (b, history) = with_history(&state, b.seq).await?;
    Ok(success(binding_view(&b, &history)))
}

async fn delete_binding(
    State(state): State<SharedState>,
    Path((tenant_key, id)): Path<(String, String)>,
    _: Payload,
) -> Result<Response, ApiError> {
    let b = tenant_binding(&state, &tenant_key, &id).await?;
    bindings::unbind(
        &state,
        &tenant_key,
        &fold(&b.admin_account),
        &fold(&b.exchange_account),
    )
    .await?;
    Ok(success(json!({"deleted": b.id()})))
}

pub async fn delete_tenant_bindings(
    State(state): State<SharedState>,
    Path(tenant_key): Path<String>,
    _: Payload,
) -> Result<Response, ApiError> {
    tenant_or_404(&state, &tenant_key).await?;
    let deleted = state.store.delete_tenant_bindings(&tenant_key).await?;
    state.events.reload(Some(&tenant_key));
    Ok(success(json!({"deleted": deleted})))
}
