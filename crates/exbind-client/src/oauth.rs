//! Logging a user in (oauth.md §6): PKCE, the authorize URL, and the code exchange and
//! refresh on `POST /open-apis/authen/v2/oauth/token` — against exbind, Feishu or Lark.
//!
//! ```no_run
//! # async fn demo() -> Result<(), exbind_client::Error> {
//! use exbind_client::{oauth, Client};
//!
//! let base = "https://open.feishu.cn";
//! let pkce = oauth::Pkce::new();
//! let state = oauth::random_state();
//! let redirect = "http://127.0.0.1:8910/callback";
//! let url = oauth::authorize_url(base, "cli_…", redirect, None, &state, &pkce.challenge)?;
//! println!("open {url}");
//! // … the browser comes back to `redirect` with `code` and the same `state` …
//! # let code = "";
//! let client = Client::builder(base).build()?;
//! let tokens = client
//!     .exchange_code("cli_…", "secret", code, redirect, &pkce.verifier)
//!     .await?;
//! println!("{} for {} s", tokens.access_token, tokens.expires_in);
//! # Ok(())
//! # }
//! ```

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::Rng;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{Client, Error, Idempotence, Reply};

/// The OAuth 2.0 token endpoint.
pub const TOKEN_PATH: &str = "/open-apis/authen/v2/oauth/token";
/// The authorize page.
pub const AUTHORIZE_PATH: &str = "/open-apis/authen/v1/authorize";

/// A PKCE pair (RFC 7636, method S256).
#[derive(Debug, Clone)]
pub struct Pkce {
    /// 43 unreserved characters, sent with the code exchange.
    pub verifier: String,
    /// BASE64URL(SHA-256(verifier)), sent with the authorize request.
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Pkce {
        let bytes: [u8; 32] = rand::rng().random();
        Pkce::from_verifier(URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn from_verifier(verifier: String) -> Pkce {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Pkce::new()
    }
}

/// A random `state`, to match the redirect to the request that caused it.
pub fn random_state() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Where the authorize page of an API base is: Feishu and Lark serve it on their accounts
/// hosts, anything else (exbind) beside its API.
pub fn accounts_base(api_base: &str) -> String {
    match api_base.trim_end_matches('/') {
        crate::FEISHU => "https://accounts.feishu.cn".to_string(),
        crate::LARK => "https://accounts.larksuite.com".to_string(),
        other => other.to_string(),
    }
}

/// The authorize URL: `response_type=code`, PKCE S256, the given `state`; `scope` only when
/// given (without it the grant is every scope enabled on the app).
pub fn authorize_url(
    api_base: &str,
    app_id: &str,
    redirect_uri: &str,
    scope: Option<&str>,
    state: &str,
    code_challenge: &str,
) -> Result<String, Error> {
    let mut params = vec![
        ("client_id", app_id),
        ("redirect_uri", redirect_uri),
        ("response_type", "code"),
        ("state", state),
        ("code_challenge", code_challenge),
        ("code_challenge_method", "S256"),
    ];
    if let Some(s) = scope {
        params.push(("scope", s));
    }
    let base = format!("{}{AUTHORIZE_PATH}", accounts_base(api_base));
    reqwest::Url::parse_with_params(&base, &params)
        .map(String::from)
        .map_err(|e| Error::Login(format!("base URL {api_base:?}: {e}")))
}

/// A successful answer of the token endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct UserTokens {
    pub access_token: String,
    /// Seconds the access token lives.
    pub expires_in: i64,
    /// Only with `offline_access` granted and refresh allowed.
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub refresh_token_expires_in: Option<i64>,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub token_type: String,
}

impl Client {
    /// Exchanges an authorization code (with its PKCE verifier) for the user's tokens. A
    /// code is single use, so a failure that may have reached the server is not retried.
    pub async fn exchange_code(
        &self,
        app_id: &str,
        app_secret: &str,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<UserTokens, Error> {
        self.user_tokens(json!({
            "grant_type": "authorization_code", "client_id": app_id, "client_secret": app_secret,
            "code": code, "redirect_uri": redirect_uri, "code_verifier": code_verifier,
        }))
        .await
    }

    /// Trades a refresh token (single use) for new tokens.
    pub async fn refresh_user_token(
        &self,
        app_id: &str,
        app_secret: &str,
        refresh_token: &str,
    ) -> Result<UserTokens, Error> {
        self.user_tokens(json!({
            "grant_type": "refresh_token", "client_id": app_id, "client_secret": app_secret,
            "refresh_token": refresh_token,
        }))
        .await
    }

    async fn user_tokens(&self, body: Value) -> Result<UserTokens, Error> {
        let (status, _, v) = self
            .with_retries(Idempotence::Unsafe, || {
                self.send(Method::POST, TOKEN_PATH, None, Some(&body))
            })
            .await?;
        serde_json::from_value(v.clone()).map_err(|e| Error::Decode {
            status: status.as_u16(),
            body: format!("{e}: {v}"),
        })
    }

    /// `GET /open-apis/authen/v1/user_info`: who a user token is.
    pub async fn user_info(&self, user_access_token: &str) -> Result<Reply<Value>, Error> {
        self.call(
            Method::GET,
            "/open-apis/authen/v1/user_info",
            user_access_token,
            None,
            Idempotence::Safe,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 appendix B.
    #[test]
    fn s256_challenge_of_the_rfc_example() {
        let p = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(p.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn a_verifier_is_43_unreserved_characters_and_fresh() {
        let (a, b) = (Pkce::new(), Pkce::new());
        assert_ne!(a.verifier, b.verifier);
        assert_eq!(a.verifier.len(), 43);
        assert!(a
            .verifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)));
        assert_ne!(random_state(), random_state());
    }

    #[test]
    fn the_authorize_host_follows_the_api_base() {
        let u = authorize_url(
            crate::FEISHU,
            "cli_a",
            "http://127.0.0.1:5/cb",
            None,
            "s",
            "c",
        )
        .unwrap();
        assert!(
            u.starts_with("https://accounts.feishu.cn/open-apis/authen/v1/authorize?"),
            "{u}"
        );
        let u = authorize_url(
            crate::LARK,
            "cli_a",
            "http://127.0.0.1:5/cb",
            None,
            "s",
            "c",
        )
        .unwrap();
        assert!(u.starts_with("https://accounts.larksuite.com/open-apis/authen/v1/authorize?"));
        let u = authorize_url(
            "http://127.0.0.1:8787/",
            "cli_a",
            "http://127.0.0.1:5/cb",
            Some("offline_access calendar:calendar"),
            "st",
            "ch",
        )
        .unwrap();
        let url = reqwest::Url::parse(&u).unwrap();
        assert_eq!(url.origin().ascii_serialization(), "http://127.0.0.1:8787");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], "cli_a");
        assert_eq!(q["redirect_uri"], "http://127.0.0.1:5/cb");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["state"], "st");
        assert_eq!(q["code_challenge"], "ch");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["scope"], "offline_access calendar:calendar");
        let u = authorize_url(crate::FEISHU, "cli_a", "x", None, "s", "c").unwrap();
        assert!(!u.contains("scope="), "no scope unless asked: {u}");
    }
}
