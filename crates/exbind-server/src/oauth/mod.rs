//! The OAuth flows (oauth.md): codes, the token exchanges both the v2 endpoint and the v1
//! routes run, and their errors. The HTTP shapes live in `http::oauth` and `http::authorize`.

pub mod jwt;
pub mod redirect;

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::model::*;
use crate::domain::scopes::{self, OFFLINE_ACCESS};
use crate::state::AppState;
use crate::store::{Issued, StoreError, StoreResult};
use crate::tokens::new_secret;

/// An error of the token endpoints: a row of oauth.md §3's table.
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub code: i64,
    pub status: u16,
    pub error: &'static str,
    pub description: String,
    /// Logged, never sent.
    pub cause: Option<String>,
}

/// (code, HTTP status, RFC 6749 error, default description).
const TABLE: &[(i64, u16, &str, &str)] = &[
    (
        20001,
        400,
        "invalid_request",
        "a required parameter is missing",
    ),
    (20002, 400, "invalid_client", "the client secret is invalid"),
    (
        20003,
        400,
        "invalid_grant",
        "the authorization code was not found",
    ),
    (
        20004,
        400,
        "invalid_grant",
        "the authorization code has expired",
    ),
    (20008, 400, "invalid_grant", "the user does not exist"),
    (
        20009,
        400,
        "unauthorized_client",
        "the app is not installed in the user's tenant",
    ),
    (
        20010,
        400,
        "invalid_grant",
        "the user is not allowed to use the app",
    ),
    (
        20024,
        400,
        "invalid_grant",
        "the code or refresh token was issued to another app",
    ),
    (20026, 400, "invalid_grant", "the refresh token is invalid"),
    (
        20036,
        400,
        "unsupported_grant_type",
        "the grant_type is not supported",
    ),
    (20037, 400, "invalid_grant", "the refresh token has expired"),
    (20048, 400, "invalid_client", "the app does not exist"),
    (20049, 400, "invalid_grant", "PKCE verification failed"),
    (
        20050,
        500,
        "server_error",
        "An unexpected server error occurred. Please retry your request.",
    ),
    (20063, 400, "invalid_request", "the request is malformed"),
    (
        20064,
        400,
        "invalid_grant",
        "the refresh token has been revoked",
    ),
    (
        20065,
        400,
        "invalid_grant",
        "the authorization code has already been used; the tokens issued from it are revoked",
    ),
    (
        20066,
        400,
        "invalid_grant",
        "the user's status is invalid (dismissed)",
    ),
    (
        20067,
        400,
        "invalid_scope",
        "the scope lists a scope more than once",
    ),
    (
        20068,
        400,
        "invalid_scope",
        "the scope asks for a scope that was not granted",
    ),
    (20069, 400, "unauthorized_client", "the app is not enabled"),
    (
        20070,
        400,
        "invalid_client",
        "client credentials were given both as HTTP Basic and in the body",
    ),
    (
        20071,
        400,
        "invalid_grant",
        "the redirect_uri differs from the authorize request's",
    ),
    (
        20072,
        503,
        "temporarily_unavailable",
        "The server is temporarily unavailable. Please retry your request.",
    ),
    (
        20073,
        400,
        "invalid_grant",
        "the refresh token has already been used",
    ),
    (
        20074,
        400,
        "unauthorized_client",
        "the app does not allow refreshing user_access_token",
    ),
];

impl OAuthError {
    /// # Panics
    /// On a code not in the table: a programming error.
    pub fn new(code: i64) -> OAuthError {
        let &(code, status, error, description) = TABLE
            .iter()
            .find(|r| r.0 == code)
            .unwrap_or_else(|| panic!("no OAuth error {code}"));
        OAuthError {
            code,
            status,
            error,
            description: description.to_string(),
            cause: None,
        }
    }

    pub fn describe(mut self, d: impl Into<String>) -> Self {
        self.description = d.into();
        self
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        let mut err = OAuthError::new(20050);
        err.cause = Some(e.0);
        err
    }
}

/// Which endpoint family a token exchange answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `/open-apis/authen/v2/oauth/token`: JWT access tokens, a refresh token only with
    /// `offline_access`.
    V2,
    /// The v1 routes: `u-` tokens, always a refresh token (the legacy behaviour).
    V1,
}

/// What a client asks a token exchange for.
#[derive(Debug, Clone)]
pub enum GrantRequest {
    Code {
        code: String,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
    },
    Refresh {
        refresh_token: String,
    },
}

/// What an exchange answers.
#[derive(Debug, Clone)]
pub struct TokenAnswer {
    pub access_token: String,
    pub expires_in: i64,
    /// The refresh token and its lifetime in seconds.
    pub refresh: Option<(String, i64)>,
    pub scopes: Vec<String>,
    pub user: Arc<User>,
    pub app: App,
}

/// A `scope` parameter as a list: space-separated, empty entries dropped.
pub fn split_scope(scope: &str) -> Vec<String> {
    scope.split_whitespace().map(str::to_string).collect()
}

/// The scopes a new grant of `app` holds when `requested` (a `scope` parameter) is asked
/// for: those, each known and enabled on the app; with no `scope`, all the app's scopes.
/// An error names the first scope that is not allowed.
pub fn grant_scopes(app: &App, requested: Option<&str>) -> Result<Vec<String>, String> {
    let Some(requested) = requested else {
        return Ok(app.scopes.clone());
    };
    let mut out: Vec<String> = Vec::new();
    for s in split_scope(requested) {
        if !scopes::is_known(&s) {
            return Err(format!("unknown scope {s:?}"));
        }
        if !app.has_scope(&s) {
            return Err(format!("scope {s:?} is not enabled on the app"));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Whether `v` is a PKCE code challenge or verifier: 43–128 unreserved characters.
pub fn is_pkce_string(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn pkce_matches(c: &Challenge, verifier: &str) -> bool {
    let derived = match c.method.as_str() {
        "S256" => B64.encode(Sha256::digest(verifier.as_bytes())),
        _ => verifier.to_string(),
    };
    bool::from(derived.as_bytes().ct_eq(c.value.as_bytes()))
}

/// A PKCE challenge from `code_challenge` and `code_challenge_method` (`plain` when a
/// challenge comes without a method); an error names the bad field.
pub fn challenge(
    value: Option<String>,
    method: Option<String>,
) -> Result<Option<Challenge>, (&'static str, String)> {
    let method = match method.as_deref() {
        None | Some("") => "plain".to_string(),
        Some(m @ ("S256" | "plain")) => m.to_string(),
        Some(m) => {
            return Err((
                "code_challenge_method",
                format!("code_challenge_method must be S256 or plain, not {m:?}"),
            ))
        }
    };
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if !is_pkce_string(&v) => Err((
            "code_challenge",
            "code_challenge must be 43-128 characters of A-Z a-z 0-9 - . _ ~".into(),
        )),
        Some(value) => Ok(Some(Challenge { method, value })),
    }
}

/// Issues a code for a consented grant; returns it with its lifetime in seconds.
pub async fn issue_code(
    state: &AppState,
    grant: Grant,
    redirect_uri: String,
    challenge: Option<Challenge>,
) -> StoreResult<(String, i64)> {
    let code = new_secret(24);
    let ttl = state.oauth.code_ttl;
    let now = state.now();
    state
        .store
        .insert_oauth_code(
            &code,
            OAuthCode {
                grant,
                redirect_uri,
                challenge,
                expires_at: now + ttl * 1000,
                used: false,
            },
            now,
        )
        .await?;
    Ok((code, ttl))
}

/// A new grant of `scopes` for a user of `app`.
pub fn new_grant(app: &App, tenant_key: &str, user_id: &str, scopes: Vec<String>) -> Grant {
    Grant {
        id: new_secret(16),
        app_id: app.app_id.clone(),
        tenant_key: tenant_key.to_string(),
        user_id: user_id.to_string(),
        scopes,
    }
}

/// Runs a token exchange for an authenticated `app`: the grant's checks in the order of
/// oauth.md §3, then issues the tokens and spends the code or refresh token.
pub async fn exchange(
    state: &AppState,
    app: &App,
    req: GrantRequest,
    scope: Option<&str>,
    flavor: Flavor,
) -> Result<TokenAnswer, OAuthError> {
    let now = state.now();
    let (grant, spent) = match req {
        GrantRequest::Code {
            code,
            redirect_uri,
            code_verifier,
        } => {
            let rec = state
                .store
                .oauth_code(&code)
                .await?
                .ok_or_else(|| OAuthError::new(20003))?;
            if rec.grant.app_id != app.app_id {
                return Err(OAuthError::new(20024));
            }
            if now >= rec.expires_at {
                return Err(OAuthError::new(20004));
            }
            if rec.used {
                state.store.revoke_grant(&rec.grant.id).await?;
                return Err(OAuthError::new(20065));
            }
            if redirect_uri.is_some_and(|r| r != rec.redirect_uri) {
                return Err(OAuthError::new(20071));
            }
            if let Some(c) = &rec.challenge {
                match code_verifier.as_deref() {
                    None => {
                        return Err(OAuthError::new(20049)
                            .describe("the code has a PKCE challenge: code_verifier is required"))
                    }
                    Some(v) if !is_pkce_string(v) => {
                        return Err(OAuthError::new(20049).describe(
                            "code_verifier must be 43-128 characters of A-Z a-z 0-9 - . _ ~",
                        ))
                    }
                    Some(v) if !pkce_matches(c, v) => {
                        return Err(OAuthError::new(20049)
                            .describe("code_verifier does not match the code challenge"))
                    }
                    Some(_) => {}
                }
            }
            (rec.grant, Spent::Code(code))
        }
        GrantRequest::Refresh { refresh_token } => {
            let rec = state
                .store
                .refresh_token(&refresh_token)
                .await?
                .ok_or_else(|| OAuthError::new(20026))?;
            if rec.grant.app_id != app.app_id {
                return Err(OAuthError::new(20024));
            }
            if now >= rec.expires_at {
                return Err(OAuthError::new(20037));
            }
            if rec.used {
                return Err(OAuthError::new(20073));
            }
            if rec.revoked {
                return Err(OAuthError::new(20064));
            }
            if !app.login.refresh_tokens {
                return Err(OAuthError::new(20074));
            }
            (rec.grant, Spent::RefreshToken(refresh_token))
        }
    };

    // The user and the app's state.
    let user = state
        .store
        .user(&grant.tenant_key, &grant.user_id)
        .await?
        .ok_or_else(|| OAuthError::new(20008))?;
    if user.status == UserStatus::Dismissed {
        return Err(OAuthError::new(20066));
    }
    if !app.installed_in(&grant.tenant_key) {
        return Err(OAuthError::new(20009));
    }
    if !app.available_to(&grant.tenant_key, &grant.user_id) {
        return Err(OAuthError::new(20010));
    }

    // Down-scoping.
    let scopes = match scope {
        None => grant.scopes.clone(),
        Some(s) => {
            let asked = split_scope(s);
            for (i, x) in asked.iter().enumerate() {
                if asked[..i].contains(x) {
                    return Err(OAuthError::new(20067)
                        .describe(format!("scope {x:?} is listed more than once")));
                }
                if !grant.scopes.contains(x) {
                    return Err(
                        OAuthError::new(20068).describe(format!("scope {x:?} was not granted"))
                    );
                }
            }
            asked
        }
    };

    let refresh_ttl = state.oauth.refresh_token_ttl;
    let refresh = match flavor {
        Flavor::V1 => true,
        Flavor::V2 => {
            scopes.iter().any(|s| s == OFFLINE_ACCESS)
                && app.has_scope(OFFLINE_ACCESS)
                && app.login.refresh_tokens
        }
    }
    .then(|| {
        (
            format!("ur-{}", new_secret(24)),
            RefreshToken {
                grant: grant.clone(),
                expires_at: now + refresh_ttl * 1000,
                used: false,
                revoked: false,
            },
        )
    });
    let ttl = state.token_ttl;
    let expires_at = now + ttl * 1000;
    let access_token = match flavor {
        Flavor::V1 => format!("u-{}", new_secret(16)),
        Flavor::V2 => {
            let key = state.ids.user_key(&grant.tenant_key, &grant.user_id);
            state.oauth.signer.sign(&json!({
                "iss": "exbind",
                "aud": app.app_id,
                "sub": state.ids.open_id(&key, &app.app_id),
                "tenant_key": grant.tenant_key,
                "scope": scopes.join(" "),
                "iat": now / 1000,
                "exp": expires_at / 1000,
                "jti": new_secret(12),
            }))
        }
    };
    let issued = Issued {
        access_token: access_token.clone(),
        access: UserToken {
            app_id: app.app_id.clone(),
            tenant_key: grant.tenant_key.clone(),
            user_id: grant.user_id.clone(),
            scopes: scopes.clone(),
            expires_at,
            revoked: false,
            grant_id: Some(grant.id.clone()),
        },
        refresh: refresh.clone(),
    };
    let reused_code = matches!(spent, Spent::Code(_));
    if !state.store.redeem(spent, issued).await? {
        // Another exchange spent it first.
        return Err(if reused_code {
            state.store.revoke_grant(&grant.id).await?;
            OAuthError::new(20065)
        } else {
            OAuthError::new(20073)
        });
    }
    Ok(TokenAnswer {
        access_token,
        expires_in: ttl,
        refresh: refresh.map(|(t, _)| (t, refresh_ttl)),
        scopes,
        user,
        app: app.clone(),
    })
}

/// What `/open-apis/authen/v1/user_info` (and the older v1 token routes) show of a user to
/// an app: the fields whose scope `scopes` holds (oauth.md §4).
pub fn user_info(state: &AppState, app: &App, user: &User, scopes: &[String]) -> serde_json::Value {
    let has = |s: &str| scopes.iter().any(|g| g == s) && app.has_scope(s);
    let key = state.ids.user_key(&user.tenant_key, &user.user_id);
    let p = &user.profile;
    let avatar = p.avatar_url.clone().unwrap_or_default();
    let mut v = json!({
        "name": user.name,
        "en_name": p.en_name.clone().unwrap_or_default(),
        "avatar_url": avatar,
        "avatar_thumb": avatar,
        "avatar_middle": avatar,
        "avatar_big": avatar,
        "open_id": state.ids.open_id(&key, &app.app_id),
        "union_id": state.ids.union_id(&key, &app.developer),
        "tenant_key": user.tenant_key,
    });
    if has(scopes::EMAIL) {
        v["email"] = json!(user.email.clone().unwrap_or_default());
        v["enterprise_email"] = json!(user.email.clone().unwrap_or_default());
    }
    if has(scopes::EMPLOYEE_ID) {
        v["user_id"] = json!(user.user_id);
        v["employee_no"] = json!(p.employee_no.clone().unwrap_or_default());
    }
    if has(scopes::PHONE) {
        v["mobile"] = json!(p.mobile.clone().unwrap_or_default());
    }
    v
}

/// The OAuth settings of a server and its signer.
pub struct OAuthConfig {
    /// Seconds a code lives (`--oauth-code-ttl`).
    pub code_ttl: i64,
    /// Seconds a refresh token lives (`--refresh-token-ttl`).
    pub refresh_token_ttl: i64,
    pub signer: jwt::Signer,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_has_its_status() {
        for &(code, status, error, _) in TABLE {
            let e = OAuthError::new(code);
            assert_eq!((e.status, e.error), (status, error));
        }
        assert_eq!(TABLE.len(), 26);
    }

    #[test]
    fn pkce() {
        // RFC 7636 appendix B.
        let c = Challenge {
            method: "S256".into(),
            value: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        };
        let v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(is_pkce_string(v));
        assert!(pkce_matches(&c, v));
        assert!(!pkce_matches(&c, &v.replace('d', "e")));
        let plain = Challenge {
            method: "plain".into(),
            value: v.into(),
        };
        assert!(pkce_matches(&plain, v));
        assert!(!is_pkce_string("short"));
        assert!(!is_pkce_string(&"a".repeat(129)));
        assert!(!is_pkce_string(&format!("{}+", "a".repeat(43))));
    }
}
