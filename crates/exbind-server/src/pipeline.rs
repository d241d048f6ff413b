//! The ordered checks every Exchange-binding request goes through (contract §4.1, steps 1–10),
//! read top to bottom. The first failure answers; step 11 is the method's own.

use exbind_api::ErrorCode;
use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use http::HeaderMap;
use parking_lot::Mutex;

use crate::domain::model::{App, User, UserStatus, UserToken};
use crate::domain::scopes::{self, BindingMethod};
use crate::error::ApiError;
use crate::limits::Budget;
use crate::state::AppState;
use crate::store::StoreResult;

/// Which id of a user the request speaks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // named after the wire values
pub enum UserIdType {
    OpenId,
    UnionId,
    UserId,
}

impl UserIdType {
    fn parse(s: &str) -> Option<UserIdType> {
        match s {
            "open_id" => Some(UserIdType::OpenId),
            "union_id" => Some(UserIdType::UnionId),
            "user_id" => Some(UserIdType::UserId),
            _ => None,
        }
    }
}

/// Who a request came from, as far as it got: filled in once its token is known, and read
/// by the request journal.
#[derive(Clone, Default)]
pub struct CallerSlot(Arc<Mutex<Option<Identity>>>);

#[derive(Clone, Debug)]
pub enum Identity {
    /// An app asking for a token.
    App(String),
    /// A user token, as the store holds it.
    User(Arc<UserToken>),
}

impl Identity {
    pub fn app_id(&self) -> &str {
        match self {
            Identity::App(app_id) => app_id,
            Identity::User(t) => &t.app_id,
        }
    }
    pub fn tenant_key(&self) -> Option<&str> {
        match self {
            Identity::App(_) => None,
            Identity::User(t) => Some(&t.tenant_key),
        }
    }
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Identity::App(_) => None,
            Identity::User(t) => Some(&t.user_id),
        }
    }
}

impl CallerSlot {
    pub fn set(&self, id: Identity) {
        *self.0.lock() = Some(id);
    }
    pub fn get(&self) -> Option<Identity> {
        self.0.lock().clone()
    }
}

/// Applies a matching fault rule: waits, then answers its error if it has one.
pub async fn inject_fault(
    state: &AppState,
    method: &str,
    route: &str,
    app_id: Option<&str>,
    tenant_key: Option<&str>,
    scopes: &[&str],
) -> Result<(), ApiError> {
    let Some(fault) = state
        .faults
        .check(method, route, app_id, tenant_key, state.now())
        .await?
    else {
        return Ok(());
    };
    if fault.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(fault.latency_ms)).await;
    }
    match fault.error {
        None => Ok(()),
        Some(ErrorCode::ScopeRequired) => {
            Err(ApiError::scope_required(scopes, "action_scope_required"))
        }
        Some(ErrorCode::PrivilegeRequired) => Err(ApiError::privilege_required(scopes)),
        Some(ErrorCode::FrequencyLimit) => Err(ApiError::new(ErrorCode::FrequencyLimit)
            .header("x-ogw-ratelimit-limit", 50)
            .header("x-ogw-ratelimit-reset", 1)
            .header("retry-after", 1)),
        Some(code) => Err(ApiError::new(code).message("injected by an exbind fault rule")),
    }
}

/// A caller that passed steps 1–10.
pub struct Caller {
    pub app: Arc<App>,
    pub user: Arc<User>,
    pub user_id_type: UserIdType,
}

impl Caller {
    pub fn tenant_key(&self) -> &str {
        &self.user.tenant_key
    }
}

/// Steps 1 and 2: the request's bearer token is a genuine, live user token — `u-…`, or a
/// JWT from the v2 token endpoint.
pub async fn user_token(
    state: &AppState,
    headers: &HeaderMap,
    slot: &CallerSlot,
) -> Result<Arc<UserToken>, ApiError> {
    let raw = bearer(headers).ok_or(ErrorCode::MissingToken)?;
    let token = match raw.get(..2) {
        Some("t-" | "a-") => {
            return Err(ApiError::new(ErrorCode::TenantTokenNotAccepted)
                .message("this API accepts only a user_access_token"))
        }
        Some("u-" | "ey") => peek_or(
            state.store.caches().and_then(|c| c.peek_user_token(&raw)),
            || state.store.user_token(&raw),
        )
        .await?
        .filter(|t| !t.revoked)
        .ok_or(ErrorCode::InvalidUserToken)?,
        _ => return Err(ErrorCode::MalformedToken.into()),
    };
    slot.set(Identity::User(token.clone()));
    if state.now() >= token.expires_at {
        return Err(ErrorCode::TokenExpired.into());
    }
    Ok(token)
}

pub async fn authorize(
    state: &AppState,
    method: BindingMethod,
    headers: &HeaderMap,
    query: Option<&str>,
    slot: &CallerSlot,
) -> Result<Caller, ApiError> {
    // 1–2. A genuine, live user token.
    let token = user_token(state, headers, slot).await?;

    // Fault rules apply here: after the token check, before everything else.
    inject_fault(
        state,
        method.http_method(),
        method.route(),
        Some(&token.app_id),
        Some(&token.tenant_key),
        method.scopes(),
    )
    .await?;
    let now = state.now();

    // 3. The token's app is still installed in the tenant, in the same unit.
    let caches = state.store.caches();
    let app = peek_or(caches.and_then(|c| c.peek_app(&token.app_id)), || {
        state.store.app(&token.app_id)
    })
    .await?
    .ok_or(ErrorCode::InvalidUserToken)?;
    let tenant = peek_or(
        caches.and_then(|c| c.peek_tenant(&token.tenant_key)),
        || state.store.tenant(&token.tenant_key),
    )
    .await?;
    match tenant {
        Some(t) if app.installed_in(&t.tenant_key) && app.unit == t.unit => {}
        _ => return Err(ErrorCode::WrongUnit.into()),
    }

    // 4. Gateway quota per (method, app, tenant).
    if let Err(t) = state
        .limiter
        .gateway(method, &app.app_id, &token.tenant_key, now)
        .await?
    {
        state.metrics.quota_rejection("gateway");
        return Err(ApiError::new(ErrorCode::FrequencyLimit)
            .header("x-ogw-ratelimit-limit", t.limit)
            .header("x-ogw-ratelimit-reset", t.reset_secs)
            .header("retry-after", t.reset_secs));
    }

    // 5. The app holds one of the method's scopes.
    let method_scopes = method.scopes();
    let held: Vec<&str> = method_scopes
        .iter()
        .copied()
        .filter(|s| app.has_scope(s))
        .collect();
    if held.is_empty() {
        return Err(ApiError::scope_required(
            method_scopes,
            "action_scope_required",
        ));
    }

    // 6. The user granted one of them.
    if !held.iter().any(|s| token.scopes.iter().any(|g| g == s)) {
        return Err(ApiError::privilege_required(&held));
    }

    // 7. user_id_type.
    let user_id_type = if method == BindingMethod::Delete {
        UserIdType::OpenId
    } else {
        parse_user_id_type(query)?
    };
    if user_id_type == UserIdType::UserId && !app.has_scope(scopes::EMPLOYEE_ID) {
        return Err(ApiError::scope_required(
            &[scopes::EMPLOYEE_ID],
            "field_scope_required",
        ));
    }

    // 8. Bot capability.
    if !app.bot {
        return Err(ErrorCode::BotNotFound.into());
    }

    // 9. Calendar budgets.
    if let Err(b) = state
        .limiter
        .budgets(method, &app.app_id, &token.tenant_key, now)
        .await?
    {
        let (kind, code) = match b {
            Budget::App => ("app_budget", ErrorCode::AppRateLimited),
            Budget::Method => ("method_budget", ErrorCode::MethodRateLimited),
        };
        state.metrics.quota_rejection(kind);
        return Err(code.into());
    }

    // 10. The caller is an active super administrator of the tenant.
    let user = peek_or(
        caches.and_then(|c| c.peek_user(&token.tenant_key, &token.user_id)),
        || state.store.user(&token.tenant_key, &token.user_id),
    )
    .await?
    .filter(|u| u.status == UserStatus::Active)
    .ok_or(ErrorCode::UserNotInTenant)?;
    if !user.super_admin {
        return Err(ErrorCode::NotSuperAdmin.into());
    }

    Ok(Caller {
        app,
        user,
        user_id_type,
    })
}

/// What the store's caches hold (`peek`), else the store's answer: a hit waits for nothing
/// and makes none of the boxed futures of a `Store` call.
pub(crate) async fn peek_or<T, F>(
    peek: Option<T>,
    load: impl FnOnce() -> F,
) -> StoreResult<Option<T>>
where
    F: Future<Output = StoreResult<Option<T>>>,
{
    match peek {
        Some(v) => Ok(Some(v)),
        None => load().await,
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme matched case-insensitively).
/// Bytes outside visible ASCII make a token that is invalid, not a missing one: the value is
/// read as UTF-8, each bad sequence replaced (so it matches no token).
pub fn bearer(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    fn token_of(value: &str) -> Option<&str> {
        let (scheme, token) = value.trim().split_once(char::is_whitespace)?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    }
    let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    match String::from_utf8_lossy(value) {
        Cow::Borrowed(v) => token_of(v).map(Cow::Borrowed),
        Cow::Owned(v) => token_of(&v).map(|t| Cow::Owned(t.to_string())),
    }
}

pub(crate) fn parse_user_id_type(query: Option<&str>) -> Result<UserIdType, ApiError> {
    let mut found: Option<String> = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if query_decode(k) != "user_id_type" {
            continue;
        }
        if found.is_some() {
            return Err(ApiError::invalid(
                "user_id_type",
                None,
                "user_id_type must be given at most once",
            ));
        }
        found = Some(query_decode(v));
    }
    match found {
        None => Ok(UserIdType::OpenId),
        Some(v) => UserIdType::parse(&v).ok_or_else(|| {
            ApiError::invalid(
                "user_id_type",
                Some(v),
                "user_id_type must be one of open_id, union_id, user_id",
            )
        }),
    }
}

fn query_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "bearer   u-abc ".parse().unwrap());
        assert_eq!(bearer(&h).as_deref(), Some("u-abc"));
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Basic u-abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "u-abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        // Bytes outside ASCII: a token all the same, one that matches nothing.
        let odd = |v: &[u8]| http::HeaderValue::from_bytes(v).unwrap();
        h.insert("authorization", odd(b"Bearer u-\xff\xfe"));
        assert_eq!(bearer(&h).as_deref(), Some("u-\u{fffd}\u{fffd}"));
        h.insert("authorization", odd("Bearer u-é".as_bytes()));
        assert_eq!(bearer(&h).as_deref(), Some("u-é"));
        h.insert("authorization", odd(b"B\xffarer u-abc"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn user_id_type_parsing() {
        assert_eq!(parse_user_id_type(None).unwrap(), UserIdType::OpenId);
        assert_eq!(
            parse_user_id_type(Some("a=1&user_id_type=union_id")).unwrap(),
            UserIdType::UnionId
        );
        assert_eq!(
            parse_user_id_type(Some("user%5Fid%5Ftype=user_id")).unwrap(),
            UserIdType::UserId
        );
        assert_eq!(
            parse_user_id_type(Some("user_id_type=x")).unwrap_err().code,
            190002
        );
        assert_eq!(
            parse_user_id_type(Some("user_id_type=open_id&user_id_type=open_id"))
                .unwrap_err()
                .code,
            190002
        );
    }
}
