//! Set-up steps that several test files take the same way.

use reqwest::Method;
use serde_json::Value;

use super::Server;

impl Server {
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
