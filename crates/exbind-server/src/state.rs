//! What every request handler shares.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::domain::ids::IdSecret;
use crate::domain::locks::KeyLocks;
use crate::domain::sync::Schedule;
use crate::events::Events;
use crate::faults::Faults;
use crate::http::console::session::{Session, Sessions};
use crate::journal::Journal;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::oauth::OAuthConfig;
use crate::store::{Store, StoreResult};
use crate::tickets::Tickets;

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub limiter: Limiter,
    pub locks: KeyLocks,
    pub ids: IdSecret,
    pub admin_token: String,
    /// Lifetime of issued tokens, in seconds.
    pub token_ttl: i64,
    /// The login flows' settings and keys.
    pub oauth: OAuthConfig,
    pub metrics: Metrics,
    pub schedule: Schedule,
    pub faults: Faults,
    /// Whether other servers share the store (PostgreSQL): what one server knows of it may be
    /// changed by another at any time.
    pub shared_store: bool,
    pub journal: Journal,
    /// Wakes the sync engine when a binding with an early deadline appears.
    pub sync_wake: Notify,
    /// What changed, for `GET /_exbind/v1/events`.
    pub events: Events,
    /// Console sign-ins.
    pub sessions: Sessions,
    /// Whether the console is served (`--console`).
    pub console: bool,
    /// What a request may take, its body included (`--request-timeout`).
    pub request_timeout: Duration,
    /// Store apps' `app_ticket` pushes.
    pub tickets: Tickets,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The console session of a request's cookie: genuine, current and not signed out.
    pub async fn console_session(&self, headers: &HeaderMap) -> StoreResult<Option<Session>> {
        let Some(s) = self.sessions.of_request(headers, self.now()) else {
            return Ok(None);
        };
        Ok((!self.store.console_session_revoked(s.id()).await?).then_some(s))
    }
}
