//! Wire types of the Feishu / Lark Calendar v4 Exchange-binding API, shared by the exbind
//! server and client: the error table, the response envelope, the binding object and the
//! `exchange_binding_id` codec. Pure: no I/O.

pub mod accounts;
mod binding;
mod codes;
mod envelope;
pub mod id;

pub use binding::{Binding, BindingStatus};
pub use codes::ErrorCode;
pub use envelope::{ErrorDetail, FieldViolation, Help, PermissionViolation};
