//! Set-up steps that several test files take the same way.

use reqwest::Method;
use serde_json::Value;

use super::{Resp, Server};

/// The v2 token endpoint of the login flows.
pub const OAUTH_TOKEN_PATH: &str = "/open-apis/authen/v2/oauth/token";

impl Server {
    /// An authorization code from the control plane, as `body` asks (the code the authorize
    /// page would give); panics unless it is issued. Returns `data`.
    pub async fn issue_code(&self, body: &Value) -> Value {
        self.admin(Method::POST, "/_exbind/v1/oauth/codes", Some(body))
            .await
            .ok()
            .clone()
    }

    /// A JSON request to the v2 token endpoint.
    pub async fn oauth_token(&self, body: &Value) -> Resp {
        self.call(Method::POST, OAUTH_TOKEN_PATH, None, Some(body))
            .await
    }

    /// Revokes the grant of a user access token or refresh token (`body` names which);
    /// panics unless it is accepted. Returns `data`.
    pub async fn revoke(&self, body: Value) -> Value {
        self.admin(
            Method::POST,
            "/_exbind/v1/user_access_tokens/revoke",
            Some(&body),
        )
        .await
        .ok()
        .clone()
    }
}
