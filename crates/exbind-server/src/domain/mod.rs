//! Pure domain logic: the identity model, scopes, ids, validation and the binding rules.

pub mod ids;
pub mod locks;
pub mod model;
pub mod scopes;
pub mod sync;
