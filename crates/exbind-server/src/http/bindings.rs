//! The Exchange-binding routes: create, get, delete (contract §4).

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use exbind_api::id::{decode_path_segment, BindingKey};
use exbind_api::{Binding, BindingStatus, ErrorCode};
use http::{HeaderMap, Uri};
use serde_json::Value;

use super::{success, Payload};
use crate::domain::model::{
    AdminAccount, AdminState, BindingRecord, BindingView, CreateOutcome, NewBinding, User,
    UserStatus,
};
use crate::domain::scopes::{self, BindingMethod, COLLECTION_ROUTE};
use crate::domain::sync::Scenario;
use crate::error::ApiError;
use crate::events::Action;
use crate::pipeline::{authorize, peek_or, Caller, CallerSlot, UserIdType};
use crate::state::{AppState, SharedState};
use exbind_api::accounts::{address_problem, fold, same_address};

pub fn routes() -> Router<SharedState> {
    Router::new().route(COLLECTION_ROUTE, post(create)).route(
        "/open-apis/calendar/v4/exchange_bindings/{*exchange_binding_id}",
        get(get_binding).delete(delete_binding),
    )
}

async fn create(
    State(state): State<SharedState>,
    Extension(slot): Extension<CallerSlot>,
    uri: Uri,
    headers: HeaderMap,
    Payload(body): Payload,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, BindingMethod::Create, &headers, uri.query(), &slot).await?;
    let req = CreateRequest::parse(&body)?;
    let admin = admin_account(&state, caller.tenant_key(), &req.admin_account).await?;
    let user = target_user(&state, &caller, &req.user_id).await?;
    let b = bind(&state, &admin, &user, req).await?;
    let touched = crate::journal::Touched(b.id());
    let mut resp = success(render(&state, &caller, BindingView::from(b)));
    resp.extensions_mut().insert(touched);
    Ok(resp)
}

/// Binds (or finds bound) the request's Exchange account to `user` under `admin`, both
/// checked already: the one-to-one rule and the contention rule of contract §4.2. The
/// Feishu create and the control plane's both come here.
pub async fn bind(
    state: &AppState,
    admin: &AdminAccount,
    user: &User,
    req: CreateRequest,
) -> Result<BindingRecord, ApiError> {
    let exchange_folded = fold(&req.exchange_account);
    let _guard = state
        .locks
        .try_lock(vec![
            format!("x:{exchange_folded}"),
            format!("u:{}\u{0}{}", user.tenant_key, user.user_id),
            format!("b:{} {exchange_folded}", fold(&admin.account)),
        ])
        .ok_or(ErrorCode::OperationRateLimited)?;
    let scenario = state
        .store
        .scenario(&exchange_folded)
        .await?
        .filter(|s| s.tenant_key == user.tenant_key)
        .map(|s| Scenario::from_names(&s.scenario, s.stage.as_deref(), s.reason.as_deref()))
        .unwrap_or_default();
    let now = state.now();
    let outcome = state
        .store
        .create_binding(NewBinding {
            admin_account: req.admin_account,
            exchange_account: req.exchange_account.clone(),
            tenant_key: user.tenant_key.clone(),
            user_id: user.user_id.clone(),
            next_at: state.schedule.next_at(&scenario, BindingStatus::Doing, now),
            scenario,
            now,
        })
        .await?;
    match outcome {
        CreateOutcome::Created(b) => {
            state.sync_wake.notify_one();
            state.events.binding(Action::Created, &b, None);
            Ok(b)
        }
        CreateOutcome::Existing(b) => Ok(b),
        CreateOutcome::ExchangeTaken => Err(ApiError::invalid(
            "exchange_account",
            Some(req.exchange_account),
            "this Exchange account is already bound; unbind it before binding it again",
        )),
        CreateOutcome::UserTaken => Err(ApiError::invalid(
            "user_id",
            Some(req.user_id),
            "this user already has an Exchange account bound; unbind it first",
        )),
    }
}

/// Removes the binding of (admin, exchange) in the tenant, under the contention rule; the
/// Feishu delete and the control plane's both come here.
pub async fn unbind(
    state: &AppState,
    tenant_key: &str,
    admin_folded: &str,
    exchange_folded: &str,
) -> Result<BindingRecord, ApiError> {
    let _guard = state
        .locks
        .try_lock(vec![
            format!("x:{exchange_folded}"),
            format!("b:{admin_folded} {exchange_folded}"),
        ])
        .ok_or(ErrorCode::OperationRateLimited)?;
    let gone = state
        .store
        .delete_binding(tenant_key, admin_folded, exchange_folded)
        .await?
        .ok_or(ErrorCode::BindingNotFound)?;
    state.events.binding(Action::Deleted, &gone, None);
    Ok(gone)
}

async fn get_binding(
    State(state): State<SharedState>,
    Extension(slot): Extension<CallerSlot>,
    uri: Uri,
    headers: HeaderMap,
    _: Payload,
) -> Result<Response, ApiError> {
    let (caller, key, admin) = addressed(&state, BindingMethod::Get, &slot, &uri, &headers).await?;
    let folded = fold(&key.exchange_account);
    let indexed = state
        .store
        .caches()
        .and_then(|c| c.peek_binding_view(&folded));
    let binding = peek_or(indexed.flatten(), || state.store.binding_view(&folded))
        .await?
        .filter(|b| {
            b.tenant_key == caller.tenant_key() && same_address(&b.admin_account, &admin.account)
        })
        .ok_or(ErrorCode::BindingNotFound)?;
    Ok(success(render(&state, &caller, binding)))
}

async fn delete_binding(
    State(state): State<SharedState>,
    Extension(slot): Extension<CallerSlot>,
    uri: Uri,
    headers: HeaderMap,
    _: Payload,
) -> Result<Response, ApiError> {
    let (caller, key, admin) =
        addressed(&state, BindingMethod::Delete, &slot, &uri, &headers).await?;
    let (admin_folded, exchange_folded) = (fold(&admin.account), fold(&key.exchange_account));
    unbind(&state, caller.tenant_key(), &admin_folded, &exchange_folded).await?;
    Ok(success(serde_json::json!({})))
}

/// What get and delete share: the checks of steps 1–10, then the id and its admin account.
async fn addressed(
    state: &AppState,
    method: BindingMethod,
    slot: &CallerSlot,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(Caller, BindingKey, Arc<AdminAccount>), ApiError> {
    let caller = authorize(state, method, headers, uri.query(), slot).await?;
    let key = binding_key(uri)?;
    let admin = admin_account(state, caller.tenant_key(), &key.admin_account).await?;
    Ok((caller, key, admin))
}

/// The id is the whole rest of the path, decoded here (step 11), not by the router.
fn binding_key(uri: &Uri) -> Result<BindingKey, ApiError> {
    let raw = uri
        .path()
        .strip_prefix(COLLECTION_ROUTE)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or("");
    decode_path_segment(raw).map_err(|_| ApiError::new(ErrorCode::BindingIdInvalid))
}

/// The admin account named by a request: registered, in the caller's tenant, in good state.
pub async fn admin_account(
    state: &AppState,
    tenant_key: &str,
    account: &str,
) -> Result<Arc<AdminAccount>, ApiError> {
    let folded = fold(account);
    let cached = state
        .store
        .caches()
        .and_then(|c| c.peek_admin_account(&folded));
    let admin = peek_or(cached, || state.store.admin_account(&folded))
        .await?
        .ok_or(ErrorCode::AdminAccountNotFound)?;
    if admin.tenant_key != tenant_key {
        return Err(ErrorCode::TenantNotMatch.into());
    }
    if admin.state == AdminState::Failed {
        return Err(ErrorCode::AdminAccountFailed.into());
    }
    Ok(admin)
}

/// The user a create names, read as the request's user_id_type: an active member of the
/// caller's tenant whose id this app can see.
async fn target_user(state: &AppState, caller: &Caller, id: &str) -> Result<Arc<User>, ApiError> {
    let user = match caller.user_id_type {
        UserIdType::UserId => state.store.user(caller.tenant_key(), id).await?,
        UserIdType::OpenId => match state.ids.parse_open_id(id, &caller.app.app_id) {
            Some(k) => state.store.user_by_key(&k).await?,
            None => None,
        },
        UserIdType::UnionId => match state.ids.parse_union_id(id, &caller.app.developer) {
            Some(k) => state.store.user_by_key(&k).await?,
            None => None,
        },
    };
    user.filter(|u| u.tenant_key == caller.tenant_key() && u.status == UserStatus::Active)
        .ok_or_else(|| ErrorCode::UserNotInTenant.into())
}

/// The binding as this caller may see it (contract §4.5).
fn render(state: &AppState, caller: &Caller, b: BindingView) -> Binding {
    let show_accounts = caller.app.has_scope(scopes::EMAIL);
    let key = || state.ids.user_key(&b.tenant_key, &b.user_id);
    let user_id = match caller.user_id_type {
        UserIdType::UserId => b.user_id.clone(),
        UserIdType::OpenId => state.ids.open_id(&key(), &caller.app.app_id),
        UserIdType::UnionId => state.ids.union_id(&key(), &caller.app.developer),
    };
    Binding {
        exchange_binding_id: exbind_api::id::encode(&b.admin_account, &b.exchange_account),
        admin_account: show_accounts.then_some(b.admin_account),
        exchange_account: show_accounts.then_some(b.exchange_account),
        user_id,
        status: b.status,
    }
}

/// A create body, validated: every bad field is reported together.
pub struct CreateRequest {
    pub admin_account: String,
    pub exchange_account: String,
    pub user_id: String,
}

impl CreateRequest {
    pub fn parse(body: &[u8]) -> Result<CreateRequest, ApiError> {
        let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let Value::Object(obj) = value else {
            let sent = String::from_utf8_lossy(body).chars().take(200).collect();
            return Err(ApiError::invalid(
                "body",
                Some(sent),
                "the body must be a JSON object",
            ));
        };
        let mut violations: Vec<(&str, Option<String>, String)> = Vec::new();
        let mut text = |key: &'static str, address: bool| -> String {
            match obj.get(key) {
                Some(Value::String(s)) => {
                    let problem = if address {
                        address_problem(s).map(|p| format!("{key} {p}"))
                    } else {
                        s.is_empty().then(|| format!("{key} must not be empty"))
                    };
                    if let Some(p) = problem {
                        violations.push((key, Some(s.clone()), p));
                    }
                    s.clone()
                }
                None | Some(Value::Null) => {
                    violations.push((key, None, format!("{key} is required")));
                    String::new()
                }
                Some(other) => {
                    violations.push((
                        key,
                        Some(other.to_string()),
                        format!("{key} must be a string"),
                    ));
                    String::new()
                }
            }
        };
        let admin_account = text("admin_account", true);
        let exchange_account = text("exchange_account", true);
        let user_id = text("user_id", false);
        if violations.is_empty() {
            return Ok(CreateRequest {
                admin_account,
                exchange_account,
                user_id,
            });
        }
        Err(violations.into_iter().fold(
            ApiError::new(ErrorCode::InvalidParameters),
            |e, (k, v, d)| e.field(k, v, d),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_violations_are_reported_together() {
        let e = CreateRequest::parse(br#"{"admin_account":"a b@c","exchange_account":7}"#)
            .err()
            .unwrap();
        let fields: Vec<_> = e
            .detail
            .field_violations
            .iter()
            .map(|v| (v.field.as_str(), v.value.clone()))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("admin_account", Some("a b@c".to_string())),
                ("exchange_account", Some("7".to_string())),
                ("user_id", None)
            ]
        );
        let e = CreateRequest::parse(b"[1]").err().unwrap();
        assert_eq!(e.detail.field_violations[0].field, "body");
        let ok = CreateRequest::parse(
            br#"{"admin_account":"a@b","exchange_account":"c@d","user_id":"u"}"#,
        );
        assert!(ok.is_ok());
    }
}
