/// Every code exbind answers on the Feishu routes, 1:1 with the contract's error table (§6).
/// `msg` is the table's text verbatim, misspellings included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidParameters,
    InternalError,
    MethodRateLimited,
    AppRateLimited,
    WrongUnit,
    BotNotFound,
    OperationRateLimited,
    UserNotInTenant,
    NotSuperAdmin,
    BindingIdInvalid,
    BindingNotFound,
    TenantNotMatch,
    AdminAccountFailed,
    AdminAccountNotFound,
    MissingToken,
    TenantTokenNotAccepted,
    InvalidUserToken,
    MalformedToken,
    ScopeRequired,
    TokenExpired,
    PrivilegeRequired,
    FrequencyLimit,
    ResourceNotFound,
    MethodNotAllowed,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 24] = [
        ErrorCode::InvalidParameters,
        ErrorCode::InternalError,
        ErrorCode::MethodRateLimited,
        ErrorCode::AppRateLimited,
        ErrorCode::WrongUnit,
        ErrorCode::BotNotFound,
        ErrorCode::OperationRateLimited,
        ErrorCode::UserNotInTenant,
        ErrorCode::NotSuperAdmin,
        ErrorCode::BindingIdInvalid,
        ErrorCode::BindingNotFound,
        ErrorCode::TenantNotMatch,
        ErrorCode::AdminAccountFailed,
        ErrorCode::AdminAccountNotFound,
        ErrorCode::MissingToken,
        ErrorCode::TenantTokenNotAccepted,
        ErrorCode::InvalidUserToken,
        ErrorCode::MalformedToken,
        ErrorCode::ScopeRequired,
        ErrorCode::TokenExpired,
        ErrorCode::PrivilegeRequired,
        ErrorCode::FrequencyLimit,
        ErrorCode::ResourceNotFound,
        ErrorCode::MethodNotAllowed,
    ];

    /// (HTTP status, code, msg) as in the table.
    pub const fn row(self) -> (u16, i64, &'static str) {
        use ErrorCode::*;
        match self {
            InvalidParameters => (400, 190002, "invalid parameters in request"),
            InternalError => (500, 190003, "internal service error"),
            MethodRateLimited => (429, 190004, "method rate limited"),
            AppRateLimited => (429, 190005, "app rate limited"),
            WrongUnit => (403, 190006, "wrong unit for app tenant"),
            BotNotFound => (404, 190007, "app bot_id not found"),
            OperationRateLimited => (429, 190010, "current operation rate limited"),
            UserNotInTenant => (404, 195100, "user is dismiss or not exist in the tenant"),
            NotSuperAdmin => (403, 195101, "user is not supper administrator"),
            BindingIdInvalid => (400, 195102, "exchange_binding_id invalid"),
            BindingNotFound => (404, 195103, "exchange account binding is not found"),
            TenantNotMatch => (403, 195104, "current tenant not match"),
            AdminAccountFailed => (403, 195105, "admin account binding failed"),
            AdminAccountNotFound => (404, 195106, "admin account is not found"),
            MissingToken => (
                400,
                99991661,
                "Missing access token for authorization. Please make a request with token attached.",
            ),
            TenantTokenNotAccepted => (
                400,
                99991663,
                "Invalid access token for authorization. Please make a request with token attached.",
            ),
            InvalidUserToken => (
                400,
                99991668,
                "Invalid access token for authorization. Please make a request with token attached.",
            ),
            MalformedToken => (400, 99991671, "Invalid token: must start with t-/u-"),
            ScopeRequired => (
                400,
                99991672,
                "Access denied. One of the following scopes is required: [...]",
            ),
            TokenExpired => (400, 99991677, "token expire"),
            PrivilegeRequired => (
                400,
                99991679,
                "Unauthorized. You do not have permission to perform the requested operation on the resource. Please request user re-authorization and try again.",
            ),
            FrequencyLimit => (429, 99991400, "request trigger frequency limit"),
            ResourceNotFound => (404, 99991201, "resource not found"),
            MethodNotAllowed => (405, 99991301, "request method doesn't match"),
        }
    }

    pub const fn http_status(self) -> u16 {
        self.row().0
    }

    pub const fn code(self) -> i64 {
        self.row().1
    }

    pub const fn msg(self) -> &'static str {
        self.row().2
    }

    pub fn from_code(code: i64) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The 99991672 msg with its scope list filled in.
    pub fn scope_required_msg(scopes: &[&str]) -> String {
        format!(
            "Access denied. One of the following scopes is required: [{}].",
            scopes.join(", ")
        )
    }

    /// The 99991679 msg with its privilege list appended.
    pub fn privilege_required_msg(scopes: &[&str]) -> String {
        format!(
            "{} required one of these privileges: [{}]",
            ErrorCode::PrivilegeRequired.msg(),
            scopes.join(", ")
        )
    }

    /// Whether a client may safely send the same request again after this answer.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::InternalError
                | ErrorCode::MethodRateLimited
                | ErrorCode::AppRateLimited
                | ErrorCode::OperationRateLimited
                | ErrorCode::FrequencyLimit
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(c.code()), Some(c));
        }
        assert_eq!(ErrorCode::from_code(0), None);
    }

    #[test]
    fn scope_msgs_follow_the_contract() {
        assert_eq!(
            ErrorCode::scope_required_msg(&["calendar:calendar", "calendar:exchange.bindings:delete"]),
            "Access denied. One of the following scopes is required: [calendar:calendar, calendar:exchange.bindings:delete]."
        );
        assert!(ErrorCode::privilege_required_msg(&["a", "b"])
            .ends_with("try again. required one of these privileges: [a, b]"));
    }
}
