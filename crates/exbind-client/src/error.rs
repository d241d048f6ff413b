use std::time::Duration;

use exbind_api::{ErrorCode, ErrorDetail};
use serde_json::Value;

/// An answer with a non-zero code.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub code: i64,
    pub msg: String,
    pub log_id: Option<String>,
    pub detail: Option<ErrorDetail>,
    /// The server's `x-ogw-ratelimit-reset`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub(crate) fn from_body(
        status: u16,
        log_id: Option<String>,
        v: &Value,
        retry_after: Option<Duration>,
    ) -> ApiError {
        let detail: Option<ErrorDetail> = v
            .get("error")
            .and_then(|e| serde_json::from_value(e.clone()).ok());
        ApiError {
            status,
            code: v["code"].as_i64().unwrap_or(-1),
            // The OAuth endpoint's flat errors say it in `error_description`.
            msg: v["msg"]
                .as_str()
                .or_else(|| v["error_description"].as_str())
                .unwrap_or_default()
                .to_string(),
            log_id: log_id.or_else(|| {
                detail
                    .as_ref()
                    .map(|d| d.log_id.clone())
                    .filter(|l| !l.is_empty())
            }),
            detail,
            retry_after,
        }
    }

    /// The documented code, if it is one of the table's.
    pub fn known(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.code)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("code {} {} (HTTP {}, log_id {})", .0.code, .0.msg, .0.status, .0.log_id.as_deref().unwrap_or("-"))]
    Api(Box<ApiError>),
    #[error("{0}")]
    Transport(reqwest::Error),
    #[error("unexpected answer (HTTP {status}): {body}")]
    Decode { status: u16, body: String },
    /// A login cannot go on (a bad base URL, no usable refresh token, …).
    #[error("{0}")]
    Login(String),
}

impl Error {
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(a) => Some(a),
            _ => None,
        }
    }

    /// A retry is safe for throttling and internal errors, and for transport failures when
    /// the request surely did not arrive or resending it does no harm.
    pub fn is_retryable(&self, resend_is_safe: bool) -> bool {
        match self {
            Error::Api(a) => a.known().is_some_and(ErrorCode::is_retryable),
            Error::Transport(e) => {
                e.is_connect() || (resend_is_safe && (e.is_timeout() || e.is_request()))
            }
            Error::Decode { status, .. } => resend_is_safe && *status >= 500,
            Error::Login(_) => false,
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        self.api().and_then(|a| a.retry_after)
    }
}
