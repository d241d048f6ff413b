//! The control plane (product.md): entities, user tokens and bindings, behind the admin token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use exbind_api::ErrorCode;
use http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::{success, ApiPath as Path, ApiQuery as Query, Payload};
use crate::clock::rfc3339;
use crate::domain::model::*;
use crate::domain::scopes;
use crate::error::ApiError;
use crate::oauth;
use crate::pipeline::bearer;
use crate::seed::{self, SeedError};
use crate::state::{AppState, SharedState};
use crate::store::{AppPatch, UserPatch};
use crate::{tickets, tokens};
use exbind_api::accounts::fold;

pub(crate) mod ops;
pub(crate) use ops::FAULT_ROUTES;
mod sync;

const MAX_PAGE_SIZE: usize = 500;
/// The longest lifetime, in seconds, a minted token or a fault rule may ask for (ten years);
/// beyond it deadlines would overflow.
pub const MAX_EXPIRES_IN: i64 = 10 * 365 * 24 * 3600;

pub fn routes(state: SharedState) -> Router<SharedState> {
    Router::new()
        .route("/_exbind/v1/seed", post(apply_seed))
        .route("/_exbind/v1/tenants", get(list_tenants))
        .route("/_exbind/v1/tenants/{tenant_key}", get(get_tenant))
        .route(
            "/_exbind/v1/tenants/{tenant_key}/users/{user_id}",
            get(get_user).patch(patch_user).delete(delete_user),
        )
        .route(
            "/_exbind/v1/tenants/{tenant_key}/exchange_admins/{account}",
            axum::routing::patch(patch_admin),
        )
        .route(
            "/_exbind/v1/tenants/{tenant_key}/bindings",
            get(list_bindings)
                .post(sync::create_binding)
                .delete(sync::delete_tenant_bindings),
        )
        .route("/_exbind/v1/tenants/{tenant_key}/users", get(list_users))
        .route("/_exbind/v1/apps", get(list_apps))
        .route("/_exbind/v1/apps/{app_id}", get(get_app).patch(patch_app))
        .route("/_exbind/v1/user_access_tokens", post(mint))
        .route("/_exbind/v1/user_access_tokens/revoke", post(revoke))
        .route("/_exbind/v1/oauth/codes", post(issue_code))
        .merge(sync::routes())
        .merge(ops::routes())
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

/// Every control-plane route needs `Authorization: Bearer <admin token>`.
async fn require_admin(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    match check_admin(&state, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Whether a request carries the admin token; if not, the documented 401.
pub fn check_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let err = match bearer(headers) {
        None => ErrorCode::MissingToken,
        Some(t) if bool::from(t.as_bytes().ct_eq(state.admin_token.as_bytes())) => return Ok(()),
        Some(_) => ErrorCode::TenantTokenNotAccepted,
    };
    Err(ApiError::new(err)
        .status(StatusCode::UNAUTHORIZED)
        .message("the control plane needs the admin token"))
}

/// Parses a JSON body into `T`; a bad body is 190002 naming the field.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        ApiError::invalid(&field, None, e.inner().to_string())
    })
}

async fn apply_seed(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Payload(body): Payload,
) -> Result<Response, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::invalid("body", None, "the seed must be UTF-8 text"))?;
    let format = if is_json {
        seed::Format::Json
    } else {
        seed::Format::Toml
    };
    match seed::load(text, format, state.store.as_ref(), &state.ids).await {
        Ok(counts) => Ok(success(counts)),
        Err(SeedError::Store(e)) => Err(e.into()),
        Err(SeedError::Invalid(violations)) => Err(violations.into_iter().fold(
            ApiError::new(ErrorCode::InvalidParameters)
                .message("the seed is not valid; nothing was applied"),
            |e, v| e.field(&v.path, None, v.reason),
        )),
    }
}

async fn tenant_or_404(state: &AppState, tenant_key: &str) -> Result<Arc<Tenant>, ApiError> {
    state
        .store
        .tenant(tenant_key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant {tenant_key:?} not found")))
}

async fn app_or_404(state: &AppState, app_id: &str) -> Result<Arc<App>, ApiError> {
    state
        .store
        .app(app_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("app {app_id:?} not found")))
}

async fn list_tenants(State(state): State<SharedState>) -> Result<Response, ApiError> {
    Ok(success(json!({"items": state.store.tenants().await?})))
}

async fn get_tenant(
    State(state): State<SharedState>,
    Path(tenant_key): Path<String>,
) -> Result<Response, ApiError> {
    let t = tenant_or_404(&state, &tenant_key).await?;
    Ok(success(json!({
        "tenant_key": t.tenant_key,
        "name": t.name,
        "unit": t.unit,
        "user_count": state.store.user_count(&tenant_key).await?,
        "exchange_admins": state.store.admin_accounts(&tenant_key).await?,
        "exchange_accounts": state.store.scenarios(&tenant_key).await?,
    })))
}

#[derive(Deserialize)]
struct AppQuery {
    app_id: Option<String>,
}

async fn get_user(
    State(state): State<SharedState>,
    Path((tenant_key, user_id)): Path<(String, String)>,
    Query(q): Query<AppQuery>,
) -> Result<Response, ApiError> {
    let user = user_or_404(&state, &tenant_key, &user_id).await?;
    let app = match &q.app_id {
        Some(id) => Some(app_or_404(&state, id).await?),
        None => None,
    };
    Ok(success(user_view(&state, &user, app.as_deref())))
}

async fn user_or_404(
    state: &AppState,
    tenant_key: &str,
    user_id: &str,
) -> Result<Arc<User>, ApiError> {
    tenant_or_404(state, tenant_key).await?;
    state.store.user(tenant_key, user_id).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "user {user_id:?} not found in tenant {tenant_key:?}"
        ))
    })
}

fn user_view(state: &AppState, u: &User, app: Option<&App>) -> Value {
    let mut v = json!({
        "tenant_key": u.tenant_key,
        "user_id": u.user_id,
        "name": u.name,
        "email": u.email,
        "status": u.status,
        "super_admin": u.super_admin,
    });
    if let Value::Object(fields) = json!(u.profile) {
        v.as_object_mut().expect("an object").extend(fields);
    }
    if let Some(app) = app {
        let key = state.ids.user_key(&u.tenant_key, &u.user_id);
        v["open_id"] = json!(state.ids.open_id(&key, &app.app_id));
        v["union_id"] = json!(state.ids.union_id(&key, &app.developer));
    }
    v
}

#[derive(Deserialize)]
struct UsersQuery {
    page_size: Option<String>,
    page_token: Option<String>,
}

/// A tenant's users by user id, a page at a time (`page_token`: the last user id seen).
async fn list_users(
    State(state): State<SharedState>,
    Path(tenant_key): Path<String>,
    Query(q): Query<UsersQuery>,
) -> Result<Response, ApiError> {
    tenant_or_404(&state, &tenant_key).await?;
    let page_size = page_size(q.page_size.as_deref())?;
    let after = q.page_token.unwrap_or_default();
    let mut users = state
        .store
        .users(&tenant_key, &after, page_size + 1)
        .await?;
    let has_more = users.len() > page_size;
    users.truncate(page_size);
    let page_token = if has_more {
        users.last().map(|u| u.user_id.clone())
    } else {
        None
    };
    let items: Vec<Value> = users.iter().map(|u| user_view(&state, u, None)).collect();
    Ok(success(
        json!({"items": items, "has_more": has_more, "page_token": page_token}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatchBody {
    status: Option<UserStatus>,
    super_admin: Option<bool>,
}

async fn patch_user(
    State(state): State<SharedState>,
    Path((tenant_key, user_id)): Path<(String, String)>,
    Payload(body): Payload,
) -> Result<Response, ApiError> {
    let p: UserPatchBody = parse_body(&body)?;
    user_or_404(&state, &tenant_key, &user_id).await?;
    let user = state
        .store
        .patch_user(
            &tenant_key,
            &user_id,
            UserPatch {
                status: p.status,
                super_admin: p.super_admin,
            },
        )
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {user_id:?} not found")))?;
    Ok(success(user_view(&state, &user, None)))
}

fn app_view(a: &App) -> Value {
    json!({
        "app_id": a.app_id,
        "type": a.kind,
        "developer": a.developer,
        "bot": a.bot,
        "unit": a.unit,
        "scopes": a.scopes,
        "tenants": a.tenants,
        // The login settings (oauth.md §1).
        "name": a.name(),
        "redirect_uris": a.login.redirect_uris,
        "refresh_tokens": a.login.refresh_tokens,
        "available_to": a.login.available_to,
        "auto_consent": a.login.auto_consent,
        "enabled": a.login.enabled,
        "event_url": a.event_url,
    })
}

/// A field a PATCH may set to `null`: absent is `None`, `null` is `Some(None)`.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

async fn list_apps(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let items: Vec<Value> = state.store.apps().await?.iter().map(app_view).collect();
    Ok(success(json!({"items": items})))
}

async fn get_app(
    State(state): State<SharedState>,
    Path(app_id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(success(app_view(&*app_or_404(&state, &app_id).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppPatchBody {
    bot: Option<bool>,
    scopes: Option<Vec<String>>,
    tenants: Option<Vec<String>>,
    unit: Option<String>,
    // The login settings; `null` resets `name` and `available_to` to their defaults.
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    redirect_uris: Option<Vec<String>>,
    refresh_tokens: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    available_to: Option<Option<Vec<String>>>,
    auto_consent: Option<bool>,
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    event_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    verification_token: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    encrypt_key: Option<Option<String>>,
}

async fn patch_app(
    State(state): State<SharedState>,
    Path(app_id): Path<String>,
    Payload(body): Payload,
) -> Result<Response, ApiError> {
    let p: AppPatchBody = parse_body(&body)?;
    let app = app_or_404(&state, &app_id).await?;
    let mut err = ApiError::new(ErrorCode::InvalidParameters);
    for (i, s) in p.scopes.iter().flatten().enumerate() {
        if !scopes::is_known(s) {
            err = err.field(&format!("scopes[{i}]"), Some(s.clone()), "unknown scope");
        } else if app.kind == AppKind::Store && scopes::is_field_scope(s) {
            err = err.field(
                &format!("scopes[{i}]"),
                Some(s.clone()),
                "field scopes can be held by custom apps only",
            );
        }
    }
    if let Some(tenants) = &p.tenants {
        if app.kind == AppKind::Custom && tenants.len() > 1 {
            err = err.field(
                "tenants",
                None,
                "a custom app can be installed in at most one tenant",
            );
        }
        for (i, t) in tenants.iter().enumerate() {
            if state.store.tenant(t).await?.is_none() {
                err = err.field(&format!("tenants[{i}]"), Some(t.clone()), "unknown tenant");
            }
        }
    }
    if p.unit.as_deref() == Some("") {
        err = err.field("unit", Some(String::new()), "must not be empty");
    }
    let login_patched = p.name.is_some()
        || p.redirect_uris.is_some()
        || p.refresh_tokens.is_some()
        || p.available_to.is_some()
        || p.auto_consent.is_some()
        || p.enabled.is_some();
    let mut login = app.login.clone();
    if let Some(n) = p.name {
        login.name = n;
    }
    if let Some(r) = p.redirect_uris {
        login.redirect_uris = r;
    }
    if let Some(r) = p.refresh_tokens {
        login.refresh_tokens = r;
    }
    if let Some(a) = p.available_to {
        login.available_to = a;
    }
    if let Some(a) = p.auto_consent {
        login.auto_consent = a;
    }
    if let Some(e) = p.enabled {
        login.enabled = e;
    }
    for (field, reason) in seed::login_problems(&login) {
        err = err.field(&field, None, reason);
    }
    if let Some(Some(url)) = &p.event_url {
        if let Some(problem) = tickets::event_url_problem(url) {
            err = err.field("event_url", Some(url.clone()), problem);
        }
    }
    for (key, value) in [
        ("verification_token", &p.verification_token),
        ("encrypt_key", &p.encrypt_key),
    ] {
        if value.as_ref().is_some_and(|v| v.as_deref() == Some("")) {
            // The value itself is a secret: never echoed.
            err = err.field(key, None, "must not be empty");
        }
    }
    if !err.detail.field_violations.is_empty() {
        return Err(err);
    }
    let dedup = |v: Option<Vec<String>>| {
        v.map(|mut v| {
            let mut seen = std::collections::HashSet::new();
            v.retain(|x| seen.insert(x.clone()));
            v
        })
    };
    let patch = AppPatch {
        bot: p.bot,
        scopes: dedup(p.scopes),
        tenants: dedup(p.tenants),
        unit: p.unit,
        login: login_patched.then_some(login),
        event_url: p.event_url,
        verification_token: p.verification_token,
        encrypt_key: p.encrypt_key,
    };
    let app = state
        .store
        .patch_app(&app_id, patch)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("app {app_id:?} not found")))?;
    Ok(success(app_view(&app)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminPatchBody {
    state: AdminState,
}

async fn patch_admin(
    State(state): State<SharedState>,
    Path((tenant_key, account)): Path<(String, String)>,
    Payload(body): Payload,
) -> Result<Response, ApiError> {
    let p: AdminPatchBody = parse_body(&body)?;
    tenant_or_404(&state, &tenant_key).await?;
    let missing = || {
        ApiError::not_found(format!(
            "exchange admin account {account:?} not found in tenant {tenant_key:?}"
        ))
    };
    let existing = state
        .store
        .admin_account(&fold(&account))
        .await?
        .ok_or_else(missing)?;
    if existing.tenant_key != tenant_key {
        return Err(missing());
    }
    let admin = state
        .store
        .set_admin_state(&fold(&account), p.state, state.now())
        .await?
        .ok_or_else(missing)?;
    if p.state == AdminState::Failed {
        // Its syncing bindings moved to err.
        state.events.reload(Some(&tenant_key));
    }
    Ok(success(admin))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintBody {
    app_id: String,
    tenant_key: String,
    user_id: String,
    scopes: Option<Vec<String>>,
    expires_in: Option<i64>,
}

async fn mint(
    State(state): State<SharedState>,
    Payload(body): Payload,
) -> Result<Response, ApiError> {
    let m: MintBody = parse_body(&body)?;
    let app = app_or_404(&state, &m.app_id).await?;
    let user = user_or_404(&state, &m.tenant_key, &m.user_id).await?;
    if !app.installed_in(&m.tenant_key) {
        return Err(ApiError::invalid(
            "app_id",
            Some(m.app_id.clone()),
            format!(
                "app {:?} is not installed in tenant {:?}",
                m.app_id, m.tenant_key
            ),
        ));
    }
    let scopes = match m.scopes {
        None => app.scopes.clone(),
        Some(s) => {
            if let Some(bad) = s.iter().find(|x| !app.has_scope(x)) {
                return Err(ApiError::invalid(
                    "scopes",
                    Some(bad.clone()),
                    "scopes must be a subset of the app's scopes",
                ));
            }
            s
        }
    };
    let expires_in = m.expires_in.unwrap_or(state.token_ttl);
    if !(1..=MAX_EXPIRES_IN).contains(&expires_in) {
        return Err(ApiError::invalid(
            "expires_in",
            Some(expires_in.to_string()),
            format!("expires_in must be an integer from 1 to {MAX_EXPIRES_IN}"),
        ));
    }
    let (token, _) = tokens::mint_user_token(
        &state,
        &app.app_id,
        &user.tenant_key,
        &user.user_id,
        scopes,
        expires_in,
    )
    .await?;
    let key = state.ids.user_key(&user.tenant_key, &user.user_id);
    Ok(success(json!({
        "access_token": token,
        "expires_in": expires_in,
        "open_id": state.ids.open_id(&key, &app.app_id),
        "union_id": state.ids.union_id(&key, &app.developer),
        "user_id": user.user_id,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    access_token: Option<String>,
    refresh_token: Option<String>,
}

/// Revokes an access or refresh token, and with it the whole grant it came from.
async fn revoke(
    State(state): State<SharedState>,
    Payload(body): Payload,
) -> Result<Response, ApiError> {
    let r: RevokeBody = parse_body(&body)?;
    let grant = match (r.access_token, r.refresh_token) {
        (Some(t), None) => {
            let grant = state
                .store
                .user_token(&t)
                .await?
                .and_then(|u| u.grant_id.clone());
            if !state.store.revoke_user_token(&t).await? {
                return Err(ApiError::not_found("user access token not found"));
            }
            grant
        }
        (None, Some(t)) => Some(
            state
                .store
                .refresh_token(&t)
                .await?
                .ok_or_else(|| ApiError::not_found("refresh token not found"))?
                .grant
                .id,
        ),
        _ => {
            return Err(ApiError::invalid(
                "body",
                None,
                "give exactly one of access_token and refresh_token",
            ))
        }
    };
    if let Some(g) = grant {
        state.store.revoke_grant(&g).await?;
    }
    Ok(success(json!({"revoked": true})))
}

/// Removes a user: its tokens stop working, codes issued for it fail at the exchange,
/// bindings made for it stay.
async fn delete_user(
    State(state): State<SharedState>,
    Path((tenant_key, user_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let user = user_or_404(&state, &tenant_key, &user_id).await?;
    if !state.store.delete_user(&tenant_key, &user_id).await? {
        return Err(ApiError::not_found(format!("user {user_id:?} not found")));
    }
    Ok(success(user_view(&state, &user, None)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    app_id: String,
    tenant_key: String,
    user_id: String,
    redirect_uri: String,
    scope: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

/// An authorization code exactly like one from the authorize page, for CI without a browser.
async fn issue_code(
    State(state): State<SharedState>,
    Payload(body): Payload,
) -> Result<Response, ApiError> {
    let b: CodeBody = parse_body(&body)?;
    let app = app_or_404(&state, &b.app_id).await?;
    let user = user_or_404(&state, &b.tenant_key, &b.user_id).await?;
    if !app.installed_in(&b.tenant_key) {
        return Err(ApiError::invalid(
            "app_id",
            Some(b.app_id.clone()),
            format!(
                "app {:?} is not installed in tenant {:?}",
                b.app_id, b.tenant_key
            ),
        ));
    }
    oauth::redirect::allowed(&app.login.redirect_uris, &b.redirect_uri)
        .map_err(|why| ApiError::invalid("redirect_uri", Some(b.redirect_uri.clone()), why))?;
    let scopes = oauth::grant_scopes(&app, b.scope.as_deref())
        .map_err(|why| ApiError::invalid("scope", b.scope.clone(), why))?;
    let challenge = oauth::challenge(b.code_challenge, b.code_challenge_method)
        .map_err(|(field, why)| ApiError::invalid(field, None, why))?;
    let grant = oauth::new_grant(&app, &user.tenant_key, &user.user_id, scopes);
    let (code, expires_in) = oauth::issue_code(&state, grant, b.redirect_uri, challenge).await?;
    Ok(success(json!({"code": code, "expires_in": expires_in})))
}

/// A list's `page_size`: 20 unless given, at most `MAX_PAGE_SIZE`.
pub(crate) fn page_size(given: Option<&str>) -> Result<usize, ApiError> {
    match given {
        None => Ok(20),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(
                    "page_size",
                    Some(s.to_string()),
                    "page_size must be an integer from 1 to 500",
                )
            }),
    }
}

#[derive(Deserialize)]
struct PageQuery {
    page_size: Option<String>,
    page_token: Option<String>,
}

async fn list_bindings(
    State(state): State<SharedState>,
    Path(tenant_key): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    tenant_or_404(&state, &tenant_key).await?;
    let page_size = page_size(q.page_size.as_deref())?;
    let after = match q.page_token.as_deref().filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::invalid(
                "page_token",
                Some(t.to_string()),
                "not a page token from this list",
            )
        })?,
    };
    let mut rows = state
        .store
        .list_bindings(&tenant_key, after, page_size + 1)
        .await?;
    let has_more = rows.len() > page_size;
    rows.truncate(page_size);
    let page_token = if has_more {
        rows.last().map(|b| b.seq.to_string())
    } else {
        None
    };
    let seqs: Vec<i64> = rows.iter().map(|b| b.seq).collect();
    // Read again with the histories, as of one moment; one deleted meanwhile drops out.
    let items: Vec<Value> = state
        .store
        .with_histories(&seqs)
        .await?
        .iter()
        .map(|(b, history)| binding_view(b, history))
        .collect();
    Ok(success(
        json!({"items": items, "has_more": has_more, "page_token": page_token}),
    ))
}

/// A binding as it is now, with its step history as of the same moment.
pub async fn with_history(
    state: &AppState,
    seq: i64,
) -> Result<(BindingRecord, Vec<Step>), ApiError> {
    state
        .store
        .with_histories(&[seq])
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found("binding was deleted meanwhile"))
}

/// A binding as the control plane shows it, with its step history.
pub fn binding_view(b: &BindingRecord, history: &[Step]) -> Value {
    let mut v = json!({
        "exchange_binding_id": b.id(),
        "admin_account": b.admin_account,
        "exchange_account": b.exchange_account,
        "user_id": b.user_id,
        "status": b.status,
    });
    if let Some(r) = &b.reason {
        v["reason"] = json!(r);
    }
    v["created_at"] = json!(rfc3339(b.created_at));
    v["updated_at"] = json!(rfc3339(b.updated_at));
    v["history"] = history
        .iter()
        .map(|s| json!({"status": s.status, "at": rfc3339(s.at)}))
        .collect();
    v
}
