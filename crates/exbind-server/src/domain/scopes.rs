//! Scopes and which of them each method accepts (contract §4).

pub const CALENDAR: &str = "calendar:calendar";
pub const CALENDAR_READONLY: &str = "calendar:calendar:readonly";
pub const BINDINGS_CREATE: &str = "calendar:exchange.bindings:create";
pub const BINDINGS_READ: &str = "calendar:exchange.bindings:read";
pub const BINDINGS_DELETE: &str = "calendar:exchange.bindings:delete";
pub const EMAIL: &str = "contact:user.email:readonly";
pub const EMPLOYEE_ID: &str = "contact:user.employee_id:readonly";
pub const PHONE: &str = "contact:user.phone:readonly";
/// Lets the v2 token endpoint issue a refresh token (oauth.md §1).
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Every scope exbind knows; a seed naming another is rejected.
pub const KNOWN: [&str; 9] = [
    CALENDAR,
    CALENDAR_READONLY,
    BINDINGS_CREATE,
    BINDINGS_READ,
    BINDINGS_DELETE,
    EMAIL,
    EMPLOYEE_ID,
    PHONE,
    OFFLINE_ACCESS,
];

/// What the consent page says a scope lets the app do.
pub fn describe(scope: &str) -> &'static str {
    match scope {
        CALENDAR => "Read and change your calendars",
        CALENDAR_READONLY => "Read your calendars",
        BINDINGS_CREATE => "Bind Exchange accounts to calendars",
        BINDINGS_READ => "See Exchange account bindings",
        BINDINGS_DELETE => "Remove Exchange account bindings",
        EMAIL => "See your email address",
        EMPLOYEE_ID => "See your user ID and employee number",
        PHONE => "See your mobile number",
        OFFLINE_ACCESS => "Stay signed in: keep access when you are not using the app",
        _ => "Use this permission",
    }
}

/// Field scopes, which only custom apps can hold.
pub const FIELD_SCOPES: [&str; 2] = [EMAIL, EMPLOYEE_ID];

pub fn is_known(scope: &str) -> bool {
    KNOWN.contains(&scope)
}

pub fn is_field_scope(scope: &str) -> bool {
    FIELD_SCOPES.contains(&scope)
}

pub const COLLECTION_ROUTE: &str = "/open-apis/calendar/v4/exchange_bindings";
pub const ITEM_ROUTE: &str = "/open-apis/calendar/v4/exchange_bindings/{exchange_binding_id}";

/// The three Exchange-binding methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingMethod {
    Create,
    Get,
    Delete,
}

impl BindingMethod {
    /// Any one of these lets an app call the method (the docs' own lists).
    pub fn scopes(self) -> &'static [&'static str] {
        match self {
            BindingMethod::Create => &[CALENDAR, CALENDAR_READONLY, BINDINGS_CREATE],
            BindingMethod::Get => &[CALENDAR_READONLY, BINDINGS_READ],
            BindingMethod::Delete => &[CALENDAR, BINDINGS_DELETE],
        }
    }

    pub fn http_method(self) -> &'static str {
        match self {
            BindingMethod::Create => "POST",
            BindingMethod::Get => "GET",
            BindingMethod::Delete => "DELETE",
        }
    }

    /// The route template, as fault rules and the journal name it.
    pub fn route(self) -> &'static str {
        match self {
            BindingMethod::Create => COLLECTION_ROUTE,
            BindingMethod::Get | BindingMethod::Delete => ITEM_ROUTE,
        }
    }
}
