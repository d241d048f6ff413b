//! exbind server: a Feishu / Lark Open Platform stand-in for the Calendar v4 Exchange-binding
//! API, with tenants, users, apps, scopes, tokens, quotas, a control plane and a durable store.

pub mod clock;
pub mod config;
mod connections;
mod domain;
mod error;
mod events;
mod faults;
pub mod fixture;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod http;
mod journal;
mod limits;
mod logid;
mod metrics;
mod oauth;
mod pipeline;
mod seed;
mod server;
mod state;
mod store;
mod sync;
mod tickets;
mod tokens;

pub use config::{OnOff, ServeArgs};
pub use server::{listen, Server, StartError};
