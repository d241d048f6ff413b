//! Starting and serving: open the store, load the seed, then serve HTTP/1.1 with Title-Case
//! header names until shutdown. One entry point for the binary and for tests.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::{OnOff, ServeArgs};
use crate::connections::{self, ConnLimits};
use crate::domain::ids::IdSecret;
use crate::domain::locks::KeyLocks;
use crate::events::Events;
use crate::faults::Faults;
use crate::http::console::session::Sessions;
use crate::journal::{Journal, JournalStore};
use crate::limits::{Limiter, Limits, SharedCounters};
use crate::metrics::Metrics;
use crate::oauth::{jwt, OAuthConfig};
use crate::seed::{self, SeedError};
use crate::state::{AppState, SharedState};
use crate::store::cached::CachedStore;
use crate::store::postgres::{OpenError as PgOpenError, PgOptions, PgStore};
use crate::store::redis::{OpenError as RedisOpenError, RedisCounters};
use crate::store::shared::{PgCounters, PgFaults, PgJournal, PgRelay};
use crate::store::sqlite::{OpenError, SqliteStore};
use crate::store::Store;
use crate::tokens;

/// In-flight requests get this long to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start: the exit status and one line saying why.
#[derive(Debug)]
pub struct StartError {
    pub exit_code: i32,
    pub message: String,
}

/// The message on one line whatever it quotes: control characters (a newline in a seed's
/// value, say) are written as escapes.
fn one_line(message: &str) -> String {
    message
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn config_error(message: impl Into<String>) -> StartError {
    StartError {
        exit_code: 2,
        message: one_line(&message.into()),
    }
}

impl From<PgOpenError> for StartError {
    fn from(e: PgOpenError) -> Self {
        let exit_code = match e {
            PgOpenError::Config(..) | PgOpenError::NewerSchema { .. } => 2,
            PgOpenError::Unreachable(..) => 1,
        };
        StartError {
            exit_code,
            message: e.to_string(),
        }
    }
}

impl From<RedisOpenError> for StartError {
    fn from(e: RedisOpenError) -> Self {
        let exit_code = match e {
            RedisOpenError::Config(..) => 2,
            RedisOpenError::Unreachable(..) => 1,
        };
        StartError {
            exit_code,
            message: e.to_string(),
        }
    }
}

impl From<OpenError> for StartError {
    fn from(e: OpenError) -> Self {
        let exit_code = match e {
            OpenError::Locked(..) | OpenError::NewerSchema(..) => 2,
            OpenError::Io(..) => 1,
        };
        StartError {
            exit_code,
            message: one_line(&e.to_string()),
        }
    }
}

fn runtime_error(e: impl std::fmt::Display) -> StartError {
    StartError {
        exit_code: 1,
        message: one_line(&e.to_string()),
    }
}

pub struct Server {
    state: SharedState,
    /// The store's cache, whose binding index fills once serving starts; none on a shared
    /// store, which other servers change too.
    cached: Option<Arc<CachedStore>>,
    /// The admin token when it was generated (and so may be printed).
    generated_admin_token: Option<String>,
    limits: ConnLimits,
}

impl Server {
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn state(&self) -> &SharedState {
        &self.state
    }

    pub async fn start(args: &ServeArgs, clock: Arc<dyn Clock>) -> Result<Server, StartError> {
        if args.redis_url.is_some() && args.database_url.is_none() {
            return Err(config_error(
                "--redis-url needs --database-url: counters are shared only by servers that share a store",
            ));
        }
        // What any operation on a shared backend may take: below the request's own bound,
        // so an outage is answered 190003 in time.
        let op_timeout = args.request_timeout.mul_f64(0.75);
        let (store, cached, faults, counters, journal, relay): (Arc<dyn Store>, _, _, _, _, _) =
            match &args.database_url {
                Some(url) => {
                    let pg = PgStore::open(&PgOptions {
                        url: url.clone(),
                        schema: args.database_schema.clone(),
                        pool_size: args.database_pool_size as usize,
                        op_timeout,
                    })
                    .await?;
                    let redis = match &args.redis_url {
                        Some(url) => Some(Arc::new(
                            RedisCounters::open(url, &args.redis_prefix, op_timeout).await?,
                        )),
                        None => None,
                    };
                    let counters: Arc<dyn SharedCounters> = match &redis {
                        Some(r) => r.clone(),
                        None => Arc::new(PgCounters(pg.db())),
                    };
                    let faults = Faults::Shared(Arc::new(PgFaults::new(pg.db(), redis)));
                    let relay = PgRelay::start(pg.db());
                    let journal: Arc<dyn JournalStore> =
                        Arc::new(PgJournal::new(pg.db(), Some(relay.clone())));
                    let store = Arc::new(pg);
                    (
                        store,
                        None,
                        faults,
                        Some(counters),
                        Some(journal),
                        Some(relay),
                    )
                }
                None => {
                    let cached = Arc::new(CachedStore::new(Arc::new(SqliteStore::open(
                        &args.data_dir,
                    )?)));
                    (
                        cached.clone(),
                        Some(cached),
                        Faults::default(),
                        None,
                        None,
                        None,
                    )
                }
            };
        let shared_store = counters.is_some();

        let secret: [u8; 32] = rand::rng().random();
        let secret = store
            .meta_init("id_secret", secret.to_vec())
            .await
            .map_err(runtime_error)?;
        let ids = IdSecret::new(&secret);

        let (admin_token, generated) = match &args.admin_token {
            Some(t) if t.trim().is_empty() => {
                return Err(config_error("--admin-token must not be empty"))
            }
            Some(t) => (t.clone(), None),
            None => {
                let stored = store
                    .meta_init("admin_token", tokens::new_secret(24).into_bytes())
                    .await
                    .map_err(runtime_error)?;
                let t = String::from_utf8(stored).map_err(runtime_error)?;
                (t.clone(), Some(t))
            }
        };

        match &args.seed {
            Some(path) => load_seed_file(store.as_ref(), &ids, path).await?,
            None if store.tenants().await.map_err(runtime_error)?.is_empty() => {
                seed::load(seed::DEMO_SEED, seed::Format::Toml, store.as_ref(), &ids)
                    .await
                    .map_err(runtime_error)?;
            }
            None => {}
        }

        let signing_secret: [u8; 32] = rand::rng().random();
        let signing_secret = store
            .meta_init("oauth_signing_key", signing_secret.to_vec())
            .await
            .map_err(runtime_error)?;
        let oauth = OAuthConfig {
            code_ttl: args.oauth_code_ttl,
            refresh_token_ttl: args.refresh_token_ttl,
            signer: jwt::Signer::new(&signing_secret),
        };

        let sessions = Sessions::new(&ids.derive("console session", admin_token.as_bytes()));
        let state = Arc::new(AppState {
            store,
            clock,
            limiter: Limiter::with_shared(
                Limits {
                    enabled: args.rate_limits == OnOff::On,
                    per_second: args.quota_per_second,
                    per_minute: args.quota_per_minute,
                    app_budget_per_second: args.app_budget_per_second,
                    method_budget_per_second: args.method_budget_per_second,
                },
                counters,
            ),
            locks: KeyLocks::default(),
            ids,
            admin_token,
            token_ttl: args.token_ttl,
            oauth,
            metrics: Metrics::default(),
            schedule: args.sync_stage_durations,
            sync_wake: Notify::new(),
            faults,
            shared_store,
            journal: Journal::with_shared(args.journal_size, journal),
            events: Events::default(),
            sessions,
            console: args.console == OnOff::On,
            request_timeout: args.request_timeout,
            tickets: crate::tickets::Tickets::new(args.app_ticket_interval),
        });
        // Servers on one store show each other's events (events.rs).
        if let Some(relay) = relay {
            let _ = state.events.set_relay(relay.clone());
            relay.listen(Arc::downgrade(&state)).await;
        }
        Ok(Server {
            state,
            cached,
            generated_admin_token: generated,
            limits: ConnLimits {
                header_read: args.header_read_timeout,
                idle: args.idle_timeout,
                max_connections: args.max_connections as usize,
            },
        })
    }

    /// The start-up banner for stdout: the listening line, a generated admin token, and
    /// while the demo tenant exists a `curl` line that creates a binding.
    pub async fn banner(&self, addr: SocketAddr) -> Vec<String> {
        let mut lines = vec![format!("listening on http://{addr}")];
        if let Some(t) = &self.generated_admin_token {
            lines.push(format!("admin token: {t}"));
        }
        if let Some(curl) = self.demo_curl(addr).await {
            lines.push("demo: this creates a binding in the demo tenant:".to_string());
            lines.push(curl);
        }
        lines
    }

    async fn demo_curl(&self, addr: SocketAddr) -> Option<String> {
        let st = &self.state;
        let app = st.store.app(seed::DEMO_APP).await.ok()??;
        st.store
            .user(seed::DEMO_TENANT, seed::DEMO_ADMIN_USER)
            .await
            .ok()??;
        if !app.installed_in(seed::DEMO_TENANT) {
            return None;
        }
        let (token, _) = tokens::mint_user_token(
            st,
            &app.app_id,
            seed::DEMO_TENANT,
            seed::DEMO_ADMIN_USER,
            app.scopes.clone(),
            st.token_ttl,
        )
        .await
        .ok()?;
        let host = if addr.ip().is_unspecified() {
            SocketAddr::new([127, 0, 0, 1].into(), addr.port())
        } else {
            addr
        };
        Some(format!(
            "curl -sS -X POST 'http://{host}/open-apis/calendar/v4/exchange_bindings?user_id_type=user_id' \
             -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json; charset=utf-8' \
             -d '{{\"admin_account\":\"{}\",\"exchange_account\":\"alice@demo.example\",\"user_id\":\"alice\"}}'",
            seed::DEMO_EXCHANGE_ADMIN
        ))
    }

    /// The HTTP application `serve` serves, the store's binding index filled.
    pub(crate) fn app(&self) -> crate::http::Frame {
        let frame = crate::http::service(self.state.clone());
        if let Some(cached) = &self.cached {
            cached.fill_index();
        }
        frame
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets the requests in progress
    /// finish (bounded by `DRAIN_TIMEOUT`) and closes every other connection at once.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let frame = self.app();
        let (stop_sync, stop_rx) = tokio::sync::watch::channel(false);
        let engine = tokio::spawn(crate::sync::run(self.state.clone(), stop_rx.clone()));
        let tickets = tokio::spawn(crate::tickets::run(self.state.clone(), stop_rx));
        // Event streams never end by themselves: end them when the shutdown comes, or the
        // drain would wait on them.
        let state = self.state.clone();
        let shutdown = async move {
            shutdown.await;
            state.events.close();
        };
        connections::serve(
            listener,
            frame,
            self.limits,
            self.state.metrics.connections.clone(),
            DRAIN_TIMEOUT,
            shutdown,
        )
        .await;
        let _ = stop_sync.send(true);
        let _ = engine.await;
        let _ = tickets.await;
    }
}

/// Binds the listening socket for `serve`: `addr` may name a host; the listen backlog
/// absorbs bursts of connects.
pub async fn listen(addr: &str) -> std::io::Result<TcpListener> {
    connections::bind(addr).await
}

async fn load_seed_file(store: &dyn Store, ids: &IdSecret, path: &Path) -> Result<(), StartError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| config_error(format!("seed {shown}: cannot read: {e}")))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let format = if is_json {
        seed::Format::Json
    } else {
        seed::Format::Toml
    };
    match seed::load(&text, format, store, ids).await {
        Ok(_) => Ok(()),
        Err(SeedError::Invalid(v)) => {
            let more = match v.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            Err(config_error(format!("seed {shown}: {}{more}", v[0])))
        }
        Err(SeedError::Store(e)) => Err(runtime_error(e)),
    }
}
