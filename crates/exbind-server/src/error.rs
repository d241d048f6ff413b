//! The error every handler returns. It becomes an answer in one place (`http::render`), which
//! adds the log id, writes the documented body and logs the internal cause.

use exbind_api::{ErrorCode, ErrorDetail, FieldViolation, PermissionViolation};
use http::StatusCode;

use crate::store::StoreError;

/// Boxed, so the `Result`s that carry it stay small.
#[derive(Debug, Clone)]
pub struct ApiError(Box<ErrorBody>);

#[derive(Debug, Clone)]
pub struct ErrorBody {
    pub status: StatusCode,
    pub code: i64,
    pub msg: String,
    pub detail: ErrorDetail,
    pub headers: Vec<(&'static str, String)>,
    /// Logged, never sent.
    pub cause: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> ApiError {
        ApiError(Box::new(ErrorBody {
            status: StatusCode::from_u16(code.http_status()).expect("valid status"),
            code: code.code(),
            msg: code.msg().to_string(),
            detail: ErrorDetail::default(),
            headers: Vec::new(),
            cause: None,
        }))
    }

    /// An error outside the contract's table, in the same envelope (the login flows' codes
    /// on the v1 routes).
    pub fn custom(status: u16, code: i64, msg: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(ErrorCode::InternalError);
        e.status = StatusCode::from_u16(status).expect("valid status");
        e.code = code;
        e.msg = msg.into();
        e
    }

    pub fn message(mut self, m: impl Into<String>) -> Self {
        self.detail.message = Some(m.into());
        self
    }

    pub fn status(mut self, s: StatusCode) -> Self {
        self.status = s;
        self
    }

    pub fn header(mut self, name: &'static str, value: impl ToString) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    pub fn field(
        mut self,
        field: &str,
        value: Option<String>,
        description: impl Into<String>,
    ) -> Self {
        self.detail.field_violations.push(FieldViolation {
            field: field.to_string(),
            value,
            description: description.into(),
        });
        self
    }

    pub fn invalid(field: &str, value: Option<String>, description: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidParameters).field(field, value, description)
    }

    pub fn internal(cause: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(ErrorCode::InternalError);
        e.cause = Some(cause.into());
        e
    }

    /// 99991672: none of `scopes` is held (`kind`: action or field scope).
    pub fn scope_required(scopes: &[&str], kind: &str) -> ApiError {
        let mut e = ApiError::new(ErrorCode::ScopeRequired);
        e.msg = ErrorCode::scope_required_msg(scopes);
        e.detail.permission_violations = violations(scopes, kind);
        e.detail.message = Some(
            "Refer to the documentation to fix the error: https://open.feishu.cn/document/uAjLw4CM/ugTN1YjL4UTN24CO1UjN/trouble-shooting/how-to-fix-the-99991672-error".into(),
        );
        e
    }

    /// 99991679: the user granted none of `scopes`.
    pub fn privilege_required(scopes: &[&str]) -> ApiError {
        let mut e = ApiError::new(ErrorCode::PrivilegeRequired);
        e.msg = ErrorCode::privilege_required_msg(scopes);
        e.detail.permission_violations = violations(scopes, "action_privilege_required");
        e
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ResourceNotFound).message(what)
    }
}

fn violations(scopes: &[&str], kind: &str) -> Vec<PermissionViolation> {
    scopes
        .iter()
        .map(|s| PermissionViolation {
            kind: kind.to_string(),
            subject: s.to_string(),
        })
        .collect()
}

impl std::ops::Deref for ApiError {
    type Target = ErrorBody;
    fn deref(&self) -> &ErrorBody {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ErrorBody {
        &mut self.0
    }
}

impl ApiError {
    pub fn into_body(self) -> ErrorBody {
        *self.0
    }
}

impl From<ErrorCode> for ApiError {
    fn from(c: ErrorCode) -> Self {
        ApiError::new(c)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(e.0)
    }
}
