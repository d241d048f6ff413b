//! A typed async client for the Feishu / Lark Calendar v4 Exchange-binding API.
//!
//! The same code talks to exbind, to Feishu (`https://open.feishu.cn`) and to Lark
//! (`https://open.larksuite.com`). It can pace itself under the API's quota, waits out 429s
//! for as long as `x-ogw-ratelimit-reset` says, and retries with jittered backoff where a
//! retry is safe.
//!
//! ```no_run
//! # async fn demo() -> Result<(), exbind_client::Error> {
//! use exbind_client::{Client, CreateBinding, UserIdType};
//!
//! let client = Client::builder("http://127.0.0.1:8787").build()?;
//! let token = "u-…"; // a super administrator's user_access_token
//! let made = client
//!     .create_binding(
//!         token,
//!         &CreateBinding {
//!             admin_account: "exadmin@demo.example".into(),
//!             exchange_account: "alice@demo.example".into(),
//!             user_id: "alice".into(),
//!         },
//!         UserIdType::UserId,
//!     )
//!     .await?;
//! println!("{} is {}", made.data.exchange_binding_id, made.data.status);
//! client.delete_binding(token, &made.data.exchange_binding_id).await?;
//! # Ok(())
//! # }
//! ```

mod error;
pub mod oauth;
mod quota;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use error::{ApiError, Error};
pub use exbind_api::accounts::address_problem;
pub use exbind_api::id::{
    decode as decode_binding_id, encode as encode_binding_id, encode_path_segment,
};
pub use exbind_api::{Binding, BindingStatus, ErrorCode};
pub use quota::Quota;

/// Feishu's API base.
pub const FEISHU: &str = "https://open.feishu.cn";
/// Lark's API base.
pub const LARK: &str = "https://open.larksuite.com";

const BINDINGS: &str = "/open-apis/calendar/v4/exchange_bindings";

/// How the request body of a create looks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreateBinding {
    pub admin_account: String,
    pub exchange_account: String,
    pub user_id: String,
}

/// Which id `user_id` is, in a request and in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserIdType {
    #[default]
    OpenId,
    UnionId,
    UserId,
}

impl UserIdType {
    pub fn as_str(self) -> &'static str {
        match self {
            UserIdType::OpenId => "open_id",
            UserIdType::UnionId => "union_id",
            UserIdType::UserId => "user_id",
        }
    }
}

impl std::str::FromStr for UserIdType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open_id" => Ok(UserIdType::OpenId),
            "union_id" => Ok(UserIdType::UnionId),
            "user_id" => Ok(UserIdType::UserId),
            _ => Err(format!("{s:?} is not open_id, union_id or user_id")),
        }
    }
}

/// A successful answer: its data, its log id, and how many attempts it took.
#[derive(Debug, Clone)]
pub struct Reply<T> {
    pub data: T,
    pub log_id: Option<String>,
    pub attempts: u32,
}

/// An access token and the seconds it has left.
#[derive(Debug, Clone, Deserialize)]
pub struct AccessToken {
    pub token: String,
    pub expire: i64,
}

/// When and how often to try again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 = never retry.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// Full-jitter exponential backoff, or the server's own wait when it named one.
    fn delay(&self, attempt: u32, err: &Error) -> Duration {
        if let Some(wait) = err.retry_after() {
            let jitter = rand::rng().random_range(0..=100);
            return wait + Duration::from_millis(jitter);
        }
        let cap = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        Duration::from_millis(rand::rng().random_range(0..=cap.as_millis() as u64))
    }
}

pub struct ClientBuilder {
    base_url: String,
    timeout: Duration,
    retry: RetryPolicy,
    quota: Option<Quota>,
}

impl ClientBuilder {
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    pub fn retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }
    /// Paces every request under this quota (shared by clones of the client).
    pub fn quota(mut self, q: Quota) -> Self {
        self.quota = Some(q);
        self
    }
    pub fn build(self) -> Result<Client, Error> {
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .user_agent(concat!("exbind-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::Transport)?;
        Ok(Client {
            http,
            base: self.base_url.trim_end_matches('/').to_string(),
            retry: self.retry,
            quota: self.quota.map(Arc::new),
        })
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    retry: RetryPolicy,
    quota: Option<Arc<Quota>>,
}

/// Whether sending the same request twice can do harm.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Idempotence {
    /// Safe to resend after any failure (reads, and creates, which answer the existing
    /// binding when repeated).
    Safe,
    /// Resent only when it surely did not reach the server.
    Unsafe,
}

impl Client {
    pub fn builder(base_url: &str) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.to_string(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            quota: None,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Binds an Exchange account to a user (idempotent for the same triple).
    pub async fn create_binding(
        &self,
        user_access_token: &str,
        req: &CreateBinding,
        user_id_type: UserIdType,
    ) -> Result<Reply<Binding>, Error> {
        let path = format!("{BINDINGS}?user_id_type={}", user_id_type.as_str());
        let body = serde_json::to_value(req).expect("serializable");
        self.call(
            Method::POST,
            &path,
            user_access_token,
            Some(body),
            Idempotence::Safe,
        )
        .await
    }

    pub async fn get_binding(
        &self,
        user_access_token: &str,
        exchange_binding_id: &str,
        user_id_type: UserIdType,
    ) -> Result<Reply<Binding>, Error> {
        let path = format!(
            "{BINDINGS}/{}?user_id_type={}",
            exbind_api::id::encode_path_segment(exchange_binding_id),
            user_id_type.as_str()
        );
        self.call(
            Method::GET,
            &path,
            user_access_token,
            None,
            Idempotence::Safe,
        )
        .await
    }

    /// Unbinds. A resend after an ambiguous failure could answer 195103 for a delete that
    /// went through, so only failures that never reached the server are retried.
    pub async fn delete_binding(
        &self,
        user_access_token: &str,
        exchange_binding_id: &str,
    ) -> Result<Reply<()>, Error> {
        let path = format!(
            "{BINDINGS}/{}",
            exbind_api::id::encode_path_segment(exchange_binding_id)
        );
        let r: Reply<Value> = self
            .call(
                Method::DELETE,
                &path,
                user_access_token,
                None,
                Idempotence::Unsafe,
            )
            .await?;
        Ok(Reply {
            data: (),
            log_id: r.log_id,
            attempts: r.attempts,
        })
    }

    /// `tenant_access_token/internal` for a custom app.
    pub async fn tenant_access_token(
        &self,
        app_id: &str,
        app_secret: &str,
    ) -> Result<AccessToken, Error> {
        self.token(
            "/open-apis/auth/v3/tenant_access_token/internal",
            "tenant_access_token",
            app_id,
            app_secret,
        )
        .await
    }

    /// `app_access_token/internal` for a custom app.
    pub async fn app_access_token(
        &self,
        app_id: &str,
        app_secret: &str,
    ) -> Result<AccessToken, Error> {
        self.token(
            "/open-apis/auth/v3/app_access_token/internal",
            "app_access_token",
            app_id,
            app_secret,
        )
        .await
    }

    async fn token(
        &self,
        path: &str,
        field: &str,
        app_id: &str,
        app_secret: &str,
    ) -> Result<AccessToken, Error> {
        let body = serde_json::json!({"app_id": app_id, "app_secret": app_secret});
        let (status, log_id, v) = self
            .with_retries(Idempotence::Safe, || {
                self.send(Method::POST, path, None, Some(&body))
            })
            .await?;
        let code = v["code"].as_i64().unwrap_or(-1);
        match (code, v[field].as_str(), v["expire"].as_i64()) {
            (0, Some(t), Some(expire)) => Ok(AccessToken {
                token: t.to_string(),
                expire,
            }),
            _ => Err(Error::Api(Box::new(ApiError::from_body(
                status.as_u16(),
                log_id,
                &v,
                None,
            )))),
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        idem: Idempotence,
    ) -> Result<Reply<T>, Error> {
        let mut attempts = 0;
        let (status, log_id, v) = self
            .with_retries(idem, || {
                attempts += 1;
                self.send(method.clone(), path, Some(token), body.as_ref())
            })
            .await?;
        let data = serde_json::from_value(v["data"].clone()).map_err(|e| Error::Decode {
            status: status.as_u16(),
            body: format!("{e}: {v}"),
        })?;
        Ok(Reply {
            data,
            log_id,
            attempts,
        })
    }

    async fn with_retries<F, Fut>(
        &self,
        idem: Idempotence,
        mut f: F,
    ) -> Result<(StatusCode, Option<String>, Value), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(StatusCode, Option<String>, Value), Error>>,
    {
        let mut attempt = 1;
        loop {
            if let Some(q) = &self.quota {
                q.wait().await;
            }
            match f().await {
                Err(e)
                    if attempt < self.retry.max_attempts
                        && e.is_retryable(idem == Idempotence::Safe) =>
                {
                    tokio::time::sleep(self.retry.delay(attempt, &e)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One request; an answer whose `code` is not 0 is an `Error::Api`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Option<String>, Value), Error> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(Error::Transport)?;
        let status = resp.status();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let log_id = header("x-tt-logid").or_else(|| header("x-request-id"));
        let reset = header("x-ogw-ratelimit-reset").and_then(|s| s.trim().parse::<u64>().ok());
        let text = resp.text().await.map_err(Error::Transport)?;
        let v: Value = serde_json::from_str(&text).map_err(|_| Error::Decode {
            status: status.as_u16(),
            body: text.chars().take(500).collect(),
        })?;
        // Anything but code 0 is an error, a missing code included.
        if status == StatusCode::TOO_MANY_REQUESTS || v["code"].as_i64() != Some(0) {
            return Err(Error::Api(Box::new(ApiError::from_body(
                status.as_u16(),
                log_id,
                &v,
                reset.map(Duration::from_secs),
            ))));
        }
        Ok((status, log_id, v))
    }
}

/// The exbind control plane (`/_exbind/v1`), for tests and rehearsals against exbind.
#[derive(Clone)]
pub struct ControlClient {
    inner: Client,
    admin_token: String,
}

impl ControlClient {
    pub fn new(base_url: &str, admin_token: &str) -> Result<ControlClient, Error> {
        Ok(ControlClient {
            inner: Client::builder(base_url)
                .retry(RetryPolicy {
                    max_attempts: 1,
                    ..RetryPolicy::default()
                })
                .build()?,
            admin_token: admin_token.to_string(),
        })
    }

    /// Any control-plane call; answers `data`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply<Value>, Error> {
        self.inner
            .call(method, path, &self.admin_token, body, Idempotence::Unsafe)
            .await
    }

    /// The path of a binding under a tenant.
    pub fn binding_path(tenant_key: &str, exchange_binding_id: &str) -> String {
        format!(
            "/_exbind/v1/tenants/{}/bindings/{}",
            exbind_api::id::encode_path_segment(tenant_key),
            exbind_api::id::encode_path_segment(exchange_binding_id)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The waits themselves, drawn many times: each within its attempt's cap, the caps
    /// doubling up to `max_delay`, and spread over the whole window (full jitter). The
    /// black-box tests see the same waits through a real clock, where a loaded machine
    /// stretches them; here nothing does.
    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let p = RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(300),
        };
        let err = Error::Decode {
            status: 500,
            body: String::new(),
        };
        for (attempt, cap) in [(1, 40), (2, 80), (3, 160), (4, 300), (5, 300), (20, 300)] {
            let waits: Vec<u64> = (0..2000)
                .map(|_| p.delay(attempt, &err).as_millis() as u64)
                .collect();
            let (lo, hi) = (*waits.iter().min().unwrap(), *waits.iter().max().unwrap());
            assert!(
                hi <= cap,
                "attempt {attempt}: {hi} ms over the cap {cap} ms"
            );
            assert!(
                lo <= cap / 10 && hi >= cap * 9 / 10,
                "attempt {attempt}: waits {lo}..={hi} ms do not fill 0..={cap} ms"
            );
        }
    }

    /// A wait the server named is kept, plus up to 100 ms of jitter.
    #[test]
    fn a_named_wait_is_kept() {
        let p = RetryPolicy::default();
        let err = Error::Api(Box::new(ApiError::from_body(
            429,
            None,
            &serde_json::json!({"code": 99991400, "msg": "request trigger frequency limit"}),
            Some(Duration::from_secs(2)),
        )));
        for _ in 0..200 {
            let d = p.delay(1, &err);
            assert!(
                (Duration::from_secs(2)..=Duration::from_millis(2100)).contains(&d),
                "{d:?}"
            );
        }
    }
}
