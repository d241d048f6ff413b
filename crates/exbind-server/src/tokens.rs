//! Access tokens (contract §3). User tokens are random, and the store keeps only their hash;
//! tenant tokens are kept as issued, since the same
//! one is answered again while it has 30 minutes left.

use rand::Rng;

use crate::domain::model::{AppToken, UserToken};
use crate::state::AppState;
use crate::store::StoreResult;

/// A tenant token is reused while it has at least this long to live.
const REUSE_MIN_LEFT_MS: i64 = 30 * 60 * 1000;

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    hex::encode(buf)
}

/// A new random secret of `bytes` bytes, hex-encoded.
pub fn new_secret(bytes: usize) -> String {
    random_hex(bytes)
}

/// Mints a user token; returns it with its expiry (ms).
pub async fn mint_user_token(
    state: &AppState,
    app_id: &str,
    tenant_key: &str,
    user_id: &str,
    scopes: Vec<String>,
    expires_in_secs: i64,
) -> StoreResult<(String, i64)> {
    let token = format!("u-{}", random_hex(16));
    let expires_at = state.now() + expires_in_secs * 1000;
    state
        .store
        .insert_user_token(
            &token,
            UserToken {
                app_id: app_id.to_string(),
                tenant_key: tenant_key.to_string(),
                user_id: user_id.to_string(),
                scopes,
                expires_at,
                revoked: false,
                grant_id: None,
            },
        )
        .await?;
    Ok((token, expires_at))
}

/// A custom app's tenant token under the 30-minute reuse rule.
pub async fn tenant_token(state: &AppState, app_id: &str) -> StoreResult<AppToken> {
    app_token(state, "t-", app_id, None).await
}

/// A store app's `a-…` app token under the same rule.
pub async fn store_app_token(state: &AppState, app_id: &str) -> StoreResult<AppToken> {
    app_token(state, "a-", app_id, None).await
}

/// A store app's tenant token for one tenant under the same rule.
pub async fn store_tenant_token(
    state: &AppState,
    app_id: &str,
    tenant_key: &str,
) -> StoreResult<AppToken> {
    app_token(state, "t-", app_id, Some(tenant_key)).await
}

async fn app_token(
    state: &AppState,
    prefix: &str,
    app_id: &str,
    tenant_key: Option<&str>,
) -> StoreResult<AppToken> {
    let now = state.now();
    let candidate = AppToken {
        token: format!("{prefix}{}", random_hex(20)),
        app_id: app_id.to_string(),
        tenant_key: tenant_key.map(str::to_string),
        expires_at: now + state.token_ttl * 1000,
    };
    state
        .store
        .issue_app_token(candidate, now, REUSE_MIN_LEFT_MS)
        .await
}
