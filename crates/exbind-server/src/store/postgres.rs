//! The shared store: PostgreSQL, for several exbind servers on one state (cluster.md).
//!
//! Every write is one transaction, acknowledged after PostgreSQL commits it
//! (`synchronous_commit = on`). Contention is the database's: unique indexes keep bindings
//! one-to-one, row locks (`FOR UPDATE`) order concurrent deletes and status changes, and a
//! create that loses an insert race reads again what won. Every operation is bounded in time
//! (pool wait, connect, statement), so an outage answers 190003 instead of hanging. What the
//! rows mean is decided in `rules`, as for SQLite.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use exbind_api::accounts::fold;
use exbind_api::BindingStatus;
use tokio_postgres::{NoTls, Row};

use super::generation::{GenCache, Generation};
use super::rules;
use super::*;

/// Forward migrations: `MIGRATIONS[i]` is version `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value BYTEA NOT NULL
);
CREATE TABLE tenants (
    tenant_key TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT NOT NULL,
    unit       TEXT NOT NULL
);
CREATE TABLE users (
    tenant_key  TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    name        TEXT NOT NULL,
    email       TEXT,
    status      TEXT NOT NULL,
    super_admin BOOLEAN NOT NULL,
    profile     TEXT NOT NULL DEFAULT '{}',
    ukey        BYTEA NOT NULL UNIQUE,
    PRIMARY KEY (tenant_key, user_id)
);
CREATE TABLE exchange_admins (
    account_folded TEXT COLLATE "C" PRIMARY KEY,
    account        TEXT NOT NULL,
    tenant_key     TEXT COLLATE "C" NOT NULL,
    state          TEXT NOT NULL
);
CREATE INDEX exchange_admins_tenant ON exchange_admins (tenant_key);
CREATE TABLE exchange_scenarios (
    account_folded TEXT COLLATE "C" PRIMARY KEY,
    account        TEXT NOT NULL,
    tenant_key     TEXT COLLATE "C" NOT NULL,
    scenario       TEXT NOT NULL,
    stage          TEXT,
    reason         TEXT
);
CREATE INDEX exchange_scenarios_tenant ON exchange_scenarios (tenant_key);
CREATE TABLE apps (
    app_id     TEXT COLLATE "C" PRIMARY KEY,
    app_secret TEXT NOT NULL,
    kind       TEXT NOT NULL,
    developer  TEXT NOT NULL,
    bot        BOOLEAN NOT NULL,
    unit       TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    tenants    TEXT NOT NULL,
    login      TEXT NOT NULL DEFAULT '{}',
    event_url          TEXT,
    verification_token TEXT,
    encrypt_key        TEXT
);
-- A store app's tenant tokens carry their tenant; '' for every other token.
CREATE TABLE app_tokens (
    token      TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL,
    tenant_key TEXT NOT NULL DEFAULT '',
    expires_at BIGINT NOT NULL
);
CREATE INDEX app_tokens_holder ON app_tokens (app_id, tenant_key, expires_at);
CREATE TABLE app_tickets (
    seq       BIGSERIAL PRIMARY KEY,
    app_id    TEXT NOT NULL,
    ticket    TEXT NOT NULL,
    issued_at BIGINT NOT NULL
);
CREATE INDEX app_tickets_app ON app_tickets (app_id, ticket);
CREATE TABLE user_tokens (
    token_hash BYTEA PRIMARY KEY,
    app_id     TEXT NOT NULL,
    tenant_key TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked    BOOLEAN NOT NULL DEFAULT FALSE,
    grant_id   TEXT
);
CREATE INDEX user_tokens_grant ON user_tokens (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX user_tokens_user ON user_tokens (tenant_key, user_id);
CREATE TABLE oauth_codes (
    code_hash    BYTEA PRIMARY KEY,
    grant_id     TEXT NOT NULL,
    app_id       TEXT NOT NULL,
    tenant_key   TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    challenge    TEXT,
    expires_at   BIGINT NOT NULL,
    used         BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY,
    grant_id   TEXT NOT NULL,
    app_id     TEXT NOT NULL,
    tenant_key TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used       BOOLEAN NOT NULL DEFAULT FALSE,
    revoked    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (tenant_key, user_id);
CREATE TABLE bindings (
    seq              BIGSERIAL PRIMARY KEY,
    exchange_folded  TEXT NOT NULL UNIQUE,
    admin_folded     TEXT NOT NULL,
    admin_account    TEXT NOT NULL,
    exchange_account TEXT NOT NULL,
    tenant_key       TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    status           TEXT NOT NULL,
    reason           TEXT,
    scenario         TEXT NOT NULL,
    next_at          BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE UNIQUE INDEX bindings_user ON bindings (tenant_key, user_id);
CREATE INDEX bindings_tenant ON bindings (tenant_key, seq);
CREATE INDEX bindings_admin ON bindings (admin_folded);
CREATE INDEX bindings_due ON bindings (next_at) WHERE next_at IS NOT NULL;
CREATE TABLE binding_steps (
    id     BIGSERIAL PRIMARY KEY,
    seq    BIGINT NOT NULL,
    status TEXT NOT NULL,
    at     BIGINT NOT NULL
);
CREATE INDEX binding_steps_seq ON binding_steps (seq);
CREATE TABLE console_revoked (
    id         BYTEA PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
"#,
    r#"
CREATE TABLE counters (
    key        TEXT COLLATE "C" PRIMARY KEY,
    n          BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE faults (
    id         BIGSERIAL PRIMARY KEY,
    method     TEXT NOT NULL,
    route      TEXT NOT NULL,
    app_id     TEXT,
    tenant_key TEXT,
    times      BIGINT,
    fraction   DOUBLE PRECISION,
    error_code BIGINT,
    latency_ms BIGINT,
    expires_at BIGINT,
    hits       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX faults_route ON faults (route);
CREATE TABLE journal (
    seq        BIGSERIAL PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    route      TEXT NOT NULL,
    app_id     TEXT,
    tenant_key TEXT,
    user_id    TEXT,
    status     INTEGER NOT NULL,
    code       BIGINT NOT NULL,
    log_id     TEXT NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL,
    binding    TEXT
);
CREATE INDEX journal_log_id ON journal (log_id);
CREATE SEQUENCE generation;
"#,
    // Servers of this version cache bindings and advance it on every change to one (see
    // `generation`); older servers would not, so they must not share the store.
    r#"
CREATE SEQUENCE binding_generation;
"#,
];

/// The schema version this binary knows.
pub const VERSION: i32 = MIGRATIONS.len() as i32;

/// Why the store could not be opened; each maps to an exit status.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A bad URL or schema name (exit 2).
    #[error("{0}")]
    Config(String),
    /// Exit 2.
    #[error(
        "database schema {schema} has version {found}, newer than this exbind knows ({known})"
    )]
    NewerSchema {
        schema: String,
        found: i32,
        known: i32,
    },
    /// Exit 1.
    #[error("cannot reach PostgreSQL at {0}: {1}")]
    Unreachable(String, String),
}

/// How to reach the database and how long anything may take.
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub url: String,
    pub schema: String,
    pub pool_size: usize,
    /// What one operation (waiting for a connection included) may take; below the request
    /// timeout, so an outage is answered 190003 in time.
    pub op_timeout: Duration,
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => StoreError(format!("postgres: {} ({})", db.message(), db.code().code())),
            None => StoreError(format!("postgres: {e}")),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            e => StoreError(format!("postgres pool: {e}")),
        }
    }
}

/// A schema name as PostgreSQL reads it unquoted: it goes into `search_path` and DDL.
fn valid_schema(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

/// The pool and the bound on every operation; shared by the store and the cluster's
/// counters and fault rules.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    op_timeout: Duration,
    /// For a connection of its own (the event relay's `LISTEN`).
    config: tokio_postgres::Config,
    schema: String,
}

pub struct PgStore {
    db: Db,
    cache: GenCache,
}

impl std::ops::Deref for PgStore {
    type Target = Db;
    fn deref(&self) -> &Db {
        &self.db
    }
}

fn parse<T>(s: String, what: &str, f: fn(&str) -> Option<T>) -> StoreResult<T> {
    f(&s).ok_or_else(|| StoreError(format!("postgres: unexpected {what} {s:?}")))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError(format!("postgres: bad json column: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serializable")
}

const TENANT_COLS: &str = "tenant_key, name, unit";
fn tenant_row(r: &Row) -> StoreResult<Tenant> {
    Ok(Tenant {
        tenant_key: r.try_get(0)?,
        name: r.try_get(1)?,
        unit: r.try_get(2)?,
    })
}

const USER_COLS: &str = "tenant_key, user_id, name, email, status, super_admin, profile";
fn user_row(r: &Row) -> StoreResult<User> {
    Ok(User {
        tenant_key: r.try_get(0)?,
        user_id: r.try_get(1)?,
        name: r.try_get(2)?,
        email: r.try_get(3)?,
        status: parse(r.try_get(4)?, "user status", UserStatus::parse)?,
        super_admin: r.try_get(5)?,
        profile: from_json(r.try_get(6)?)?,
    })
}

const APP_COLS: &str = "app_id, app_secret, kind, developer, bot, unit, scopes, tenants, login, \
                        event_url, verification_token, encrypt_key";
fn app_row(r: &Row) -> StoreResult<App> {
    Ok(App {
        app_id: r.try_get(0)?,
        app_secret: r.try_get(1)?,
        kind: parse(r.try_get(2)?, "app kind", AppKind::parse)?,
        developer: r.try_get(3)?,
        bot: r.try_get(4)?,
        unit: r.try_get(5)?,
        scopes: from_json(r.try_get(6)?)?,
        tenants: from_json(r.try_get(7)?)?,
        login: from_json(r.try_get(8)?)?,
        event_url: r.try_get(9)?,
        verification_token: r.try_get(10)?,
        encrypt_key: r.try_get(11)?,
    })
}

const APP_TOKEN_COLS: &str = "token, app_id, tenant_key, expires_at";
fn app_token_row(r: &Row) -> StoreResult<AppToken> {
    let tenant: String = r.try_get(2)?;
    Ok(AppToken {
        token: r.try_get(0)?,
        app_id: r.try_get(1)?,
        tenant_key: (!tenant.is_empty()).then_some(tenant),
        expires_at: r.try_get(3)?,
    })
}

const ADMIN_COLS: &str = "account, tenant_key, state";
fn admin_row(r: &Row) -> StoreResult<AdminAccount> {
    Ok(AdminAccount {
        account: r.try_get(0)?,
        tenant_key: r.try_get(1)?,
        state: parse(r.try_get(2)?, "admin state", AdminState::parse)?,
    })
}

const SCENARIO_COLS: &str = "account, tenant_key, scenario, stage, reason";
fn scenario_row(r: &Row) -> StoreResult<ExchangeScenario> {
    Ok(ExchangeScenario {
        account: r.try_get(0)?,
        tenant_key: r.try_get(1)?,
        scenario: r.try_get(2)?,
        stage: r.try_get(3)?,
        reason: r.try_get(4)?,
    })
}

const BINDING_COLS: &str = "seq, admin_account, exchange_account, tenant_key, user_id, status, \
                            reason, scenario, next_at, created_at, updated_at";
fn binding_row(r: &Row) -> StoreResult<BindingRecord> {
    Ok(BindingRecord {
        seq: r.try_get(0)?,
        admin_account: r.try_get(1)?,
        exchange_account: r.try_get(2)?,
        tenant_key: r.try_get(3)?,
        user_id: r.try_get(4)?,
        status: parse(r.try_get(5)?, "binding status", BindingStatus::parse)?,
        reason: r.try_get(6)?,
        scenario: from_json(r.try_get(7)?)?,
        next_at: r.try_get(8)?,
        created_at: r.try_get(9)?,
        updated_at: r.try_get(10)?,
    })
}

/// A lookup by text holding a NUL character finds nothing: PostgreSQL refuses the parameter
/// (it cannot store the character, so no row holds it), where SQLite just matches no row.
fn no_nul_match<T>(
    answer: Result<T, tokio_postgres::Error>,
    nothing: T,
) -> Result<T, tokio_postgres::Error> {
    match answer {
        Err(e)
            if e.code() == Some(&tokio_postgres::error::SqlState::CHARACTER_NOT_IN_REPERTOIRE) =>
        {
            Ok(nothing)
        }
        other => other,
    }
}

fn rows<T>(rows: Vec<Row>, f: fn(&Row) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(f).collect()
}

fn opt<T>(row: Option<Row>, f: fn(&Row) -> StoreResult<T>) -> StoreResult<Option<T>> {
    row.as_ref().map(f).transpose()
}

async fn query_binding(
    c: &impl deadpool_postgres::GenericClient,
    exchange_folded: &str,
    lock: bool,
) -> StoreResult<Option<BindingRecord>> {
    let sql = format!(
        "SELECT {BINDING_COLS} FROM bindings WHERE exchange_folded = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let st = c.prepare_cached(&sql).await?;
    opt(c.query_opt(&st, &[&exchange_folded]).await?, binding_row)
}

async fn insert_steps(
    c: &impl deadpool_postgres::GenericClient,
    seq: i64,
    steps: &[Step],
) -> StoreResult<()> {
    let st = c
        .prepare_cached("INSERT INTO binding_steps (seq, status, at) VALUES ($1, $2, $3)")
        .await?;
    for s in steps {
        c.execute(&st, &[&seq, &s.status.as_str(), &s.at]).await?;
    }
    Ok(())
}

/// Applies a status change if the binding is still where the change expects it. A second
/// server applying the same change waits for the first one's row lock, then finds the
/// status moved on and applies nothing: each step is recorded once.
async fn apply_change(
    c: &impl deadpool_postgres::GenericClient,
    ch: &StatusChange,
    now: i64,
) -> StoreResult<bool> {
    let st = c
        .prepare_cached(
            "UPDATE bindings SET status = $3, reason = $4, next_at = $5, updated_at = $6 \
             WHERE seq = $1 AND status = $2",
        )
        .await?;
    let n = c
        .execute(
            &st,
            &[
                &ch.seq,
                &ch.from.as_str(),
                &ch.status.as_str(),
                &ch.reason,
                &ch.next_at,
                &now,
            ],
        )
        .await?;
    if n == 1 {
        insert_steps(c, ch.seq, &ch.steps).await?;
    }
    Ok(n == 1)
}

/// Upserts one keyed row; `None` when it was already as wanted, else whether it was added.
async fn upsert(
    c: &impl deadpool_postgres::GenericClient,
    counts: &mut SeedCounts,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> StoreResult<()> {
    let st = c.prepare_cached(sql).await?;
    if let Some(r) = c.query_opt(&st, params).await? {
        if r.try_get::<_, bool>(0)? {
            counts.added += 1;
        } else {
            counts.updated += 1;
        }
    }
    Ok(())
}

impl PgStore {
    /// Connects, creates the schema if needed and migrates it forward, under an advisory
    /// lock so that servers starting together take turns.
    pub async fn open(o: &PgOptions) -> Result<PgStore, OpenError> {
        if !valid_schema(&o.schema) {
            return Err(OpenError::Config(format!(
                "--database-schema {:?}: expected lower-case letters, digits and _ (at most 63)",
                o.schema
            )));
        }
        let mut cfg = tokio_postgres::Config::from_str(&o.url)
            .map_err(|e| OpenError::Config(format!("--database-url: {e}")))?;
        cfg.options(format!(
            "-c search_path={} -c synchronous_commit=on -c client_min_messages=warning",
            o.schema
        ));
        cfg.connect_timeout(o.op_timeout);
        let host = describe_host(&cfg);
        let mgr = Manager::from_config(
            cfg.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(o.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(o.op_timeout))
            .create_timeout(Some(o.op_timeout))
            .recycle_timeout(Some(o.op_timeout))
            .build()
            .map_err(|e| OpenError::Config(e.to_string()))?;
        let store = PgStore {
            db: Db {
                pool,
                op_timeout: o.op_timeout,
                config: cfg,
                schema: o.schema.clone(),
            },
            cache: GenCache::default(),
        };
        let unreachable = |e: StoreError| OpenError::Unreachable(host.clone(), e.0);
        let mut c = store.conn().await.map_err(unreachable)?;
        let found = migrate(&mut c, &o.schema).await.map_err(unreachable)?;
        if found > VERSION {
            return Err(OpenError::NewerSchema {
                schema: o.schema.clone(),
                found,
                known: VERSION,
            });
        }
        Ok(store)
    }

    /// Bulk-loads users and bindings (admin, exchange, user) in one transaction, as
    /// `SqliteStore::load_fixture` does; for benchmark fixtures.
    pub async fn load_fixture(
        &self,
        tenant_key: &str,
        users: Vec<UserRow>,
        bindings: Vec<(String, String, String)>,
        status: BindingStatus,
        next_at: Option<i64>,
    ) -> StoreResult<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        for chunk in users.chunks(5000) {
            let ids: Vec<&str> = chunk.iter().map(|u| u.user.user_id.as_str()).collect();
            let names: Vec<&str> = chunk.iter().map(|u| u.user.name.as_str()).collect();
            let keys: Vec<&[u8]> = chunk.iter().map(|u| &u.key[..]).collect();
            tx.execute(
                "INSERT INTO users (tenant_key, user_id, name, email, status, super_admin, ukey) \
                 SELECT $1, i, n, NULL, 'active', FALSE, k \
                 FROM unnest($2::text[], $3::text[], $4::bytea[]) AS u(i, n, k) \
                 ON CONFLICT (tenant_key, user_id) DO UPDATE SET ukey = EXCLUDED.ukey",
                &[&tenant_key, &ids, &names, &keys],
            )
            .await?;
        }
        let scenario = to_json(&crate::domain::sync::Scenario::Normal);
        for chunk in bindings.chunks(5000) {
            let col = |f: fn(&(String, String, String)) -> String| -> Vec<String> {
                chunk.iter().map(f).collect()
            };
            tx.execute(
                "INSERT INTO bindings (exchange_folded, admin_folded, admin_account, exchange_account, \
                 tenant_key, user_id, status, reason, scenario, next_at, created_at, updated_at) \
                 SELECT xf, af, a, x, $1, u, $2, NULL, $3, $4, 0, 0 \
                 FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) \
                 AS b(xf, af, a, x, u) ON CONFLICT DO NOTHING",
                &[
                    &tenant_key,
                    &status.as_str(),
                    &scenario,
                    &next_at,
                    &col(|b| fold(&b.1)),
                    &col(|b| fold(&b.0)),
                    &col(|b| b.0.clone()),
                    &col(|b| b.1.clone()),
                    &col(|b| b.2.clone()),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The pool, for what the servers share beside the store.
    pub fn db(&self) -> Db {
        self.db.clone()
    }
}

impl Db {
    /// Advances the generation after a change to cached rows commits, before it is
    /// acknowledged (see `generation`).
    pub(super) async fn advance(&self) -> StoreResult<()> {
        self.execute("SELECT nextval('generation')", &[])
            .await
            .map(drop)
    }

    /// The same for a change to existing bindings.
    async fn advance_bindings(&self) -> StoreResult<()> {
        self.execute("SELECT nextval('binding_generation')", &[])
            .await
            .map(drop)
    }

    /// The schema, a plain identifier (checked at open).
    pub(super) fn schema(&self) -> &str {
        &self.schema
    }

    /// A connection outside the pool, its driver left to the caller.
    pub(super) async fn connect(
        &self,
    ) -> StoreResult<(
        tokio_postgres::Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    )> {
        self.bounded(async { Ok(self.config.connect(NoTls).await?) })
            .await
    }

    pub(super) async fn conn(&self) -> StoreResult<Object> {
        Ok(self.pool.get().await?)
    }

    /// Runs `f` within the operation timeout.
    pub(super) async fn bounded<T>(
        &self,
        f: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        tokio::time::timeout(self.op_timeout, f)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError(format!(
                    "postgres: no answer within {} ms",
                    self.op_timeout.as_millis()
                )))
            })
    }

    pub(super) async fn read_opt<T>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        f: fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        self.bounded(async {
            let c = self.conn().await?;
            let st = c.prepare_cached(sql).await?;
            opt(no_nul_match(c.query_opt(&st, params).await, None)?, f)
        })
        .await
    }

    pub(super) async fn read_all<T>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        f: fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        self.bounded(async {
            let c = self.conn().await?;
            let st = c.prepare_cached(sql).await?;
            rows(no_nul_match(c.query(&st, params).await, Vec::new())?, f)
        })
        .await
    }

    pub(super) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> StoreResult<u64> {
        self.bounded(async {
            let c = self.conn().await?;
            let st = c.prepare_cached(sql).await?;
            Ok(c.execute(&st, params).await?)
        })
        .await
    }
}

fn describe_host(cfg: &tokio_postgres::Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// Applies the missing migrations in one transaction under the migration lock; returns the
/// version found (newer than `VERSION` means nothing was done).
async fn migrate(c: &mut Object, schema: &str) -> StoreResult<i32> {
    let tx = c.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("exbind migrate {schema}")],
    )
    .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}; \
         CREATE TABLE IF NOT EXISTS schema_version \
         (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"
    ))
    .await?;
    let found: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .await?
        .try_get(0)?;
    if found > VERSION {
        return Ok(found);
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(m).await?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(found)
}

async fn insert_user_token(
    c: &impl deadpool_postgres::GenericClient,
    hash: &[u8; 32],
    t: &UserToken,
) -> StoreResult<()> {
    let st = c
        .prepare_cached(
            "INSERT INTO user_tokens (token_hash, app_id, tenant_key, user_id, scopes, expires_at, \
             grant_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    c.execute(
        &st,
        &[
            &&hash[..],
            &t.app_id,
            &t.tenant_key,
            &t.user_id,
            &to_json(&t.scopes),
            &t.expires_at,
            &t.grant_id,
        ],
    )
    .await?;
    Ok(())
}

/// The grant of a code or refresh-token row: columns 0–4 are its id, app, tenant, user and
/// scopes.
fn grant_row(r: &Row) -> StoreResult<Grant> {
    Ok(Grant {
        id: r.try_get(0)?,
        app_id: r.try_get(1)?,
        tenant_key: r.try_get(2)?,
        user_id: r.try_get(3)?,
        scopes: from_json(r.try_get(4)?)?,
    })
}

/// A create that lost an insert race retries this often (it then reads what won).
const CREATE_TRIES: usize = 3;

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        self.execute("SELECT 1", &[]).await.map(drop)
    }

    async fn meta_init(&self, key: &str, value: Vec<u8>) -> StoreResult<Vec<u8>> {
        self.bounded(async {
            let c = self.conn().await?;
            c.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &value],
            )
            .await?;
            Ok(
                c.query_one("SELECT value FROM meta WHERE key = $1", &[&key])
                    .await?
                    .try_get(0)?,
            )
        })
        .await
    }

    async fn generation(&self) -> StoreResult<Option<Generation>> {
        self.read_opt(
            // `is_called` tells a fresh sequence from one advanced once, whose
            // `last_value` is the same.
            "SELECT (SELECT last_value + is_called::int FROM generation), \
             (SELECT last_value + is_called::int FROM binding_generation)",
            &[],
            |r| {
                Ok(Generation {
                    rows: r.try_get(0)?,
                    bindings: r.try_get(1)?,
                })
            },
        )
        .await
    }

    async fn tenant(&self, tenant_key: &str) -> StoreResult<Option<Arc<Tenant>>> {
        let sql = format!("SELECT {TENANT_COLS} FROM tenants WHERE tenant_key = $1");
        let load = async {
            Ok(self
                .read_opt(&sql, &[&tenant_key], tenant_row)
                .await?
                .map(Arc::new))
        };
        self.cache
            .tenants
            .get_or_load(tenant_key.into(), load)
            .await
    }

    async fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        let sql = format!("SELECT {TENANT_COLS} FROM tenants ORDER BY tenant_key");
        self.read_all(&sql, &[], tenant_row).await
    }

    async fn user_count(&self, tenant_key: &str) -> StoreResult<u64> {
        let n = self
            .read_opt(
                "SELECT COUNT(*) FROM users WHERE tenant_key = $1",
                &[&tenant_key],
                |r| Ok(r.try_get::<_, i64>(0)?),
            )
            .await?;
        Ok(n.unwrap_or(0) as u64)
    }

    async fn users(&self, tenant_key: &str, after: &str, limit: usize) -> StoreResult<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLS} FROM users WHERE tenant_key = $1 AND user_id > $2 \
             ORDER BY user_id LIMIT $3"
        );
        self.read_all(&sql, &[&tenant_key, &after, &(limit as i64)], user_row)
            .await
    }

    async fn apps(&self) -> StoreResult<Vec<App>> {
        let sql = format!("SELECT {APP_COLS} FROM apps ORDER BY app_id");
        self.read_all(&sql, &[], app_row).await
    }

    async fn user(&self, tenant_key: &str, user_id: &str) -> StoreResult<Option<Arc<User>>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE tenant_key = $1 AND user_id = $2");
        let load = async {
            Ok(self
                .read_opt(&sql, &[&tenant_key, &user_id], user_row)
                .await?
                .map(Arc::new))
        };
        let key = (tenant_key.to_string(), user_id.to_string());
        self.cache.users.get_or_load(key, load).await
    }

    async fn user_by_key(&self, key: &UserKey) -> StoreResult<Option<Arc<User>>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE ukey = $1");
        let load = async {
            Ok(self
                .read_opt(&sql, &[&&key[..]], user_row)
                .await?
                .map(Arc::new))
        };
        self.cache.users_by_key.get_or_load(*key, load).await
    }

    async fn app(&self, app_id: &str) -> StoreResult<Option<Arc<App>>> {
        let sql = format!("SELECT {APP_COLS} FROM apps WHERE app_id = $1");
        let load = async {
            Ok(self
                .read_opt(&sql, &[&app_id], app_row)
                .await?
                .map(Arc::new))
        };
        self.cache.apps.get_or_load(app_id.into(), load).await
    }

    async fn admin_account(&self, account_folded: &str) -> StoreResult<Option<Arc<AdminAccount>>> {
        let sql = format!("SELECT {ADMIN_COLS} FROM exchange_admins WHERE account_folded = $1");
        let load = async {
            Ok(self
                .read_opt(&sql, &[&account_folded], admin_row)
                .await?
                .map(Arc::new))
        };
        self.cache
            .admins
            .get_or_load(account_folded.into(), load)
            .await
    }

    async fn admin_accounts(&self, tenant_key: &str) -> StoreResult<Vec<AdminAccount>> {
        let sql = format!(
            "SELECT {ADMIN_COLS} FROM exchange_admins WHERE tenant_key = $1 ORDER BY account_folded"
        );
        self.read_all(&sql, &[&tenant_key], admin_row).await
    }

    async fn scenarios(&self, tenant_key: &str) -> StoreResult<Vec<ExchangeScenario>> {
        let sql = format!(
            "SELECT {SCENARIO_COLS} FROM exchange_scenarios WHERE tenant_key = $1 \
             ORDER BY account_folded"
        );
        self.read_all(&sql, &[&tenant_key], scenario_row).await
    }

    async fn apply_seed(&self, plan: SeedPlan) -> StoreResult<SeedCounts> {
        // Each statement answers a row only when it changed something: `xmax = 0` tells an
        // insert from an update.
        let counts = self.bounded(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await?;
            let mut n = SeedCounts::default();
            for t in &plan.tenants {
                upsert(
                    &tx,
                    &mut n,
                    "INSERT INTO tenants AS o (tenant_key, name, unit) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_key) DO UPDATE SET name = EXCLUDED.name, unit = EXCLUDED.unit \
                     WHERE (o.name, o.unit) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.unit) \
                     RETURNING (xmax = 0)",
                    &[&t.tenant_key, &t.name, &t.unit],
                )
                .await?;
            }
            for UserRow { user: u, key } in &plan.users {
                upsert(
                    &tx,
                    &mut n,
                    "INSERT INTO users AS o (tenant_key, user_id, name, email, status, super_admin, ukey, profile) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (tenant_key, user_id) DO UPDATE SET name = EXCLUDED.name, \
                     email = EXCLUDED.email, status = EXCLUDED.status, \
                     super_admin = EXCLUDED.super_admin, ukey = EXCLUDED.ukey, profile = EXCLUDED.profile \
                     WHERE (o.name, o.email, o.status, o.super_admin, o.ukey, o.profile) IS DISTINCT FROM \
                     (EXCLUDED.name, EXCLUDED.email, EXCLUDED.status, EXCLUDED.super_admin, EXCLUDED.ukey, EXCLUDED.profile) \
                     RETURNING (xmax = 0)",
                    &[
                        &u.tenant_key,
                        &u.user_id,
                        &u.name,
                        &u.email,
                        &u.status.as_str(),
                        &u.super_admin,
                        &&key[..],
                        &to_json(&u.profile),
                    ],
                )
                .await?;
            }
            for a in &plan.admins {
                upsert(
                    &tx,
                    &mut n,
                    "INSERT INTO exchange_admins AS o (account_folded, account, tenant_key, state) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (account_folded) DO UPDATE SET account = EXCLUDED.account, \
                     tenant_key = EXCLUDED.tenant_key, state = EXCLUDED.state \
                     WHERE (o.account, o.tenant_key, o.state) IS DISTINCT FROM \
                     (EXCLUDED.account, EXCLUDED.tenant_key, EXCLUDED.state) \
                     RETURNING (xmax = 0)",
                    &[&fold(&a.account), &a.account, &a.tenant_key, &a.state.as_str()],
                )
                .await?;
            }
            for s in &plan.scenarios {
                upsert(
                    &tx,
                    &mut n,
                    "INSERT INTO exchange_scenarios AS o (account_folded, account, tenant_key, scenario, stage, reason) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (account_folded) DO UPDATE SET account = EXCLUDED.account, \
                     tenant_key = EXCLUDED.tenant_key, scenario = EXCLUDED.scenario, \
                     stage = EXCLUDED.stage, reason = EXCLUDED.reason \
                     WHERE (o.account, o.tenant_key, o.scenario, o.stage, o.reason) IS DISTINCT FROM \
                     (EXCLUDED.account, EXCLUDED.tenant_key, EXCLUDED.scenario, EXCLUDED.stage, EXCLUDED.reason) \
                     RETURNING (xmax = 0)",
                    &[&fold(&s.account), &s.account, &s.tenant_key, &s.scenario, &s.stage, &s.reason],
                )
                .await?;
            }
            for a in &plan.apps {
                upsert(
                    &tx,
                    &mut n,
                    "INSERT INTO apps AS o (app_id, app_secret, kind, developer, bot, unit, scopes, tenants, login, \
                     event_url, verification_token, encrypt_key) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                     ON CONFLICT (app_id) DO UPDATE SET app_secret = EXCLUDED.app_secret, \
                     kind = EXCLUDED.kind, developer = EXCLUDED.developer, bot = EXCLUDED.bot, \
                     unit = EXCLUDED.unit, scopes = EXCLUDED.scopes, tenants = EXCLUDED.tenants, \
                     login = EXCLUDED.login, event_url = EXCLUDED.event_url, \
                     verification_token = EXCLUDED.verification_token, encrypt_key = EXCLUDED.encrypt_key \
                     WHERE (o.app_secret, o.kind, o.developer, o.bot, o.unit, o.scopes, o.tenants, o.login, \
                     o.event_url, o.verification_token, o.encrypt_key) \
                     IS DISTINCT FROM (EXCLUDED.app_secret, EXCLUDED.kind, EXCLUDED.developer, \
                     EXCLUDED.bot, EXCLUDED.unit, EXCLUDED.scopes, EXCLUDED.tenants, EXCLUDED.login, \
                     EXCLUDED.event_url, EXCLUDED.verification_token, EXCLUDED.encrypt_key) \
                     RETURNING (xmax = 0)",
                    &[
                        &a.app_id,
                        &a.app_secret,
                        &a.kind.as_str(),
                        &a.developer,
                        &a.bot,
                        &a.unit,
                        &to_json(&a.scopes),
                        &to_json(&a.tenants),
                        &to_json(&a.login),
                        &a.event_url,
                        &a.verification_token,
                        &a.encrypt_key,
                    ],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(n)
        })
        .await?;
        self.advance().await?;
        Ok(counts)
    }

    async fn patch_user(
        &self,
        tenant_key: &str,
        user_id: &str,
        patch: UserPatch,
    ) -> StoreResult<Option<User>> {
        let sql = format!(
            "UPDATE users SET status = COALESCE($3, status), super_admin = COALESCE($4, super_admin) \
             WHERE tenant_key = $1 AND user_id = $2 RETURNING {USER_COLS}"
        );
        let user = self
            .read_opt(
                &sql,
                &[
                    &tenant_key,
                    &user_id,
                    &patch.status.map(|s| s.as_str()),
                    &patch.super_admin,
                ],
                user_row,
            )
            .await?;
        self.advance().await?;
        Ok(user)
    }

    async fn patch_app(&self, app_id: &str, patch: AppPatch) -> StoreResult<Option<App>> {
        let sql = format!(
            "UPDATE apps SET bot = COALESCE($2, bot), scopes = COALESCE($3, scopes), \
             tenants = COALESCE($4, tenants), unit = COALESCE($5, unit), \
             login = COALESCE($6, login), \
             event_url = CASE WHEN $7 THEN $8 ELSE event_url END, \
             verification_token = CASE WHEN $9 THEN $10 ELSE verification_token END, \
             encrypt_key = CASE WHEN $11 THEN $12 ELSE encrypt_key END WHERE app_id = $1 \
             RETURNING {APP_COLS}"
        );
        let app = self
            .read_opt(
                &sql,
                &[
                    &app_id,
                    &patch.bot,
                    &patch.scopes.as_ref().map(to_json),
                    &patch.tenants.as_ref().map(to_json),
                    &patch.unit,
                    &patch.login.as_ref().map(to_json),
                    &patch.event_url.is_some(),
                    &patch.event_url.clone().flatten(),
                    &patch.verification_token.is_some(),
                    &patch.verification_token.clone().flatten(),
                    &patch.encrypt_key.is_some(),
                    &patch.encrypt_key.clone().flatten(),
                ],
                app_row,
            )
            .await?;
        self.advance().await?;
        Ok(app)
    }

    async fn set_admin_state(
        &self,
        account_folded: &str,
        state: AdminState,
        now: i64,
    ) -> StoreResult<Option<AdminAccount>> {
        let admin = self
            .bounded(async {
                let mut c = self.conn().await?;
                let tx = c.transaction().await?;
                let row = tx
                    .query_opt(
                        &format!(
                            "UPDATE exchange_admins SET state = $2 WHERE account_folded = $1 \
                         RETURNING {ADMIN_COLS}"
                        ),
                        &[&account_folded, &state.as_str()],
                    )
                    .await?;
                let Some(admin) = opt(row, admin_row)? else {
                    return Ok(None);
                };
                if state == AdminState::Failed {
                    let syncing = tx
                    .query(
                        "SELECT seq, status, exchange_folded FROM bindings WHERE admin_folded = $1 \
                         AND status NOT IN ('done', 'err') ORDER BY seq FOR UPDATE",
                        &[&account_folded],
                    )
                    .await?;
                    for r in syncing {
                        let from = parse(r.try_get(1)?, "binding status", BindingStatus::parse)?;
                        let change = rules::admin_failed(r.try_get(0)?, from, r.try_get(2)?, now);
                        apply_change(&tx, &change, now).await?;
                    }
                }
                tx.commit().await?;
                Ok(Some(admin))
            })
            .await?;
        self.advance().await?;
        if state == AdminState::Failed {
            self.advance_bindings().await?;
        }
        Ok(admin)
    }

    async fn issue_app_token(
        &self,
        candidate: AppToken,
        now: i64,
        min_left_ms: i64,
    ) -> StoreResult<AppToken> {
        // One app's tokens are issued one server at a time, so every server answers the same.
        self.bounded(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await?;
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                &[&format!("exbind app token {}", candidate.app_id)],
            )
            .await?;
            let tenant = candidate.tenant_key.clone().unwrap_or_default();
            let current = tx
                .query_opt(
                    &format!(
                        "SELECT {APP_TOKEN_COLS} FROM app_tokens WHERE app_id = $1 \
                         AND tenant_key = $2 ORDER BY expires_at DESC LIMIT 1"
                    ),
                    &[&candidate.app_id, &tenant],
                )
                .await?;
            if let Some(r) = current {
                let cur = app_token_row(&r)?;
                if cur.expires_at - now >= min_left_ms {
                    return Ok(cur);
                }
            }
            tx.execute(
                "DELETE FROM app_tokens WHERE app_id = $1 AND tenant_key = $2 AND expires_at <= $3",
                &[&candidate.app_id, &tenant, &now],
            )
            .await?;
            tx.execute(
                "INSERT INTO app_tokens (token, app_id, tenant_key, expires_at) VALUES ($1, $2, $3, $4)",
                &[&candidate.token, &candidate.app_id, &tenant, &candidate.expires_at],
            )
            .await?;
            tx.commit().await?;
            Ok(candidate)
        })
        .await
    }

    async fn insert_user_token(&self, token: &str, t: UserToken) -> StoreResult<()> {
        let hash = token_hash(token);
        self.bounded(async {
            let c = self.conn().await?;
            insert_user_token(&c, &hash, &t).await
        })
        .await
    }

    async fn user_token(&self, token: &str) -> StoreResult<Option<Arc<UserToken>>> {
        let hash = token_hash(token);
        let load = async {
            let t = self
                .read_opt(
                    "SELECT app_id, tenant_key, user_id, scopes, expires_at, revoked, grant_id \
                 FROM user_tokens WHERE token_hash = $1",
                    &[&&hash[..]],
                    |r| {
                        Ok(UserToken {
                            app_id: r.try_get(0)?,
                            tenant_key: r.try_get(1)?,
                            user_id: r.try_get(2)?,
                            scopes: from_json(r.try_get(3)?)?,
                            expires_at: r.try_get(4)?,
                            revoked: r.try_get(5)?,
                            grant_id: r.try_get(6)?,
                        })
                    },
                )
                .await?;
            Ok(t.map(Arc::new))
        };
        self.cache.tokens.get_or_load(hash, load).await
    }

    async fn revoke_user_token(&self, token: &str) -> StoreResult<bool> {
        let hash = token_hash(token);
        let n = self
            .execute(
                "UPDATE user_tokens SET revoked = TRUE WHERE token_hash = $1",
                &[&&hash[..]],
            )
            .await?;
        self.advance().await?;
        Ok(n > 0)
    }

    async fn revoke_console_session(
        &self,
        id: [u8; 16],
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        self.bounded(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await?;
            tx.execute(
                "DELETE FROM console_revoked WHERE expires_at <= $1",
                &[&now],
            )
            .await?;
            tx.execute(
                "INSERT INTO console_revoked (id, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at",
                &[&&id[..], &expires_at],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn console_session_revoked(&self, id: [u8; 16]) -> StoreResult<bool> {
        Ok(self
            .read_opt(
                "SELECT 1 FROM console_revoked WHERE id = $1",
                &[&&id[..]],
                |_| Ok(()),
            )
            .await?
            .is_some())
    }

    async fn app_token(&self, token: &str) -> StoreResult<Option<AppToken>> {
        self.read_opt(
            &format!("SELECT {APP_TOKEN_COLS} FROM app_tokens WHERE token = $1"),
            &[&token],
            app_token_row,
        )
        .await
    }

    async fn add_app_ticket(&self, app_id: &str, ticket: &str, now: i64) -> StoreResult<()> {
        self.bounded(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await?;
            tx.execute(
                "INSERT INTO app_tickets (app_id, ticket, issued_at) VALUES ($1, $2, $3)",
                &[&app_id, &ticket, &now],
            )
            .await?;
            tx.execute(
                "DELETE FROM app_tickets WHERE app_id = $1 AND seq NOT IN \
                 (SELECT seq FROM app_tickets WHERE app_id = $1 ORDER BY seq DESC LIMIT 2)",
                &[&app_id],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn app_ticket_valid(&self, app_id: &str, ticket: &str) -> StoreResult<bool> {
        Ok(self
            .read_opt(
                "SELECT 1 FROM app_tickets WHERE app_id = $1 AND ticket = $2",
                &[&app_id, &ticket],
                |_| Ok(()),
            )
            .await?
            .is_some())
    }

    async fn insert_oauth_code(&self, code: &str, rec: OAuthCode, now: i64) -> StoreResult<()> {
        let hash = token_hash(code);
        // A day's grace, as on SQLite: until then an expired one still answers as expired.
        let before = now - 24 * 3600 * 1000;
        let g = &rec.grant;
        self.bounded(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await?;
            tx.execute("DELETE FROM oauth_codes WHERE expires_at <= $1", &[&before])
                .await?;
            tx.execute("DELETE FROM refresh_tokens WHERE expires_at <= $1", &[&before])
                .await?;
            tx.execute(
                "INSERT INTO oauth_codes (code_hash, grant_id, app_id, tenant_key, user_id, scopes, \
                 redirect_uri, challenge, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &&hash[..],
                    &g.id,
                    &g.app_id,
                    &g.tenant_key,
                    &g.user_id,
                    &to_json(&g.scopes),
                    &rec.redirect_uri,
                    &rec.challenge.as_ref().map(to_json),
                    &rec.expires_at,
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn oauth_code(&self, code: &str) -> StoreResult<Option<OAuthCode>> {
        let hash = token_hash(code);
        self.read_opt(
            "SELECT grant_id, app_id, tenant_key, user_id, scopes, redirect_uri, challenge, \
             expires_at, used FROM oauth_codes WHERE code_hash = $1",
            &[&&hash[..]],
            |r| {
                let challenge: Option<String> = r.try_get(6)?;
                Ok(OAuthCode {
                    grant: grant_row(r)?,
                    redirect_uri: r.try_get(5)?,
                    challenge: challenge.as_deref().map(from_json).transpose()?,
                    expires_at: r.try_get(7)?,
                    used: r.try_get(8)?,
                })
            },
        )
        .await
    }

    async fn refresh_token(&self, token: &str) -> StoreResult<Option<RefreshToken>> {
        let hash = token_hash(token);
        self.read_opt(
            "SELECT grant_id, app_id, tenant_key, user_id, scopes, expires_at, used, revoked \
             FROM refresh_tokens WHERE token_hash = $1",
            &[&&hash[..]],
            |r| {
                Ok(RefreshToken {
                    grant: grant_row(r)?,
                    expires_at: r.try_get(5)?,
                    used: r.try_get(6)?,
                    revoked: r.try_get(7)?,
                })
            },
        )
        .await
    }

    async fn redeem(&self, spent: Spent, issued: Issued) -> StoreResult<bool> {
        // The conditional update takes the row lock: of two servers redeeming one code, the
        // second finds it used.
        let (sql, hash) = match &spent {
            Spent::Code(code) => (
                "UPDATE oauth_codes SET used = TRUE WHERE code_hash = $1 AND NOT used",
                token_hash(code),
            ),
            Spent::RefreshToken(token) => (
                "UPDATE refresh_tokens SET used = TRUE WHERE token_hash = $1 AND NOT used \
                 AND NOT revoked",
                token_hash(token),
            ),
        };
        self.bounded(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await?;
            if tx.execute(sql, &[&&hash[..]]).await? == 0 {
                return Ok(false);
            }
            insert_user_token(&tx, &token_hash(&issued.access_token), &issued.access).await?;
            if let Some((token, r)) = &issued.refresh {
                let g = &r.grant;
                tx.execute(
                    "INSERT INTO refresh_tokens (token_hash, grant_id, app_id, tenant_key, user_id, \
                     scopes, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &&token_hash(token)[..],
                        &g.id,
                        &g.app_id,
                        &g.tenant_key,
                        &g.user_id,
                        &to_json(&g.scopes),
                        &r.expires_at,
                    ],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn revoke_grant(&self, grant_id: &str) -> StoreResult<()> {
        self.bounded(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await?;
            tx.execute(
                "UPDATE user_tokens SET revoked = TRUE WHERE grant_id = $1",
                &[&grant_id],
            )
            .await?;
            tx.execute(
                "UPDATE refresh_tokens SET revoked = TRUE WHERE grant_id = $1",
                &[&grant_id],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        self.advance().await
    }

    async fn delete_user(&self, tenant_key: &str, user_id: &str) -> StoreResult<bool> {
        let existed = self
            .bounded(async {
                let mut c = self.conn().await?;
                let tx = c.transaction().await?;
                let key: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&tenant_key, &user_id];
                if tx
                    .execute(
                        "DELETE FROM users WHERE tenant_key = $1 AND user_id = $2",
                        &key,
                    )
                    .await?
                    == 0
                {
                    return Ok(false);
                }
                tx.execute(
                    "UPDATE user_tokens SET revoked = TRUE WHERE tenant_key = $1 AND user_id = $2",
                    &key,
                )
                .await?;
                tx.execute(
                "UPDATE refresh_tokens SET revoked = TRUE WHERE tenant_key = $1 AND user_id = $2",
                &key,
            )
            .await?;
                tx.commit().await?;
                Ok(true)
            })
            .await?;
        self.advance().await?;
        Ok(existed)
    }

    async fn binding(&self, exchange_folded: &str) -> StoreResult<Option<BindingRecord>> {
        self.bounded(async {
            let c = self.conn().await?;
            query_binding(&c, exchange_folded, false).await
        })
        .await
    }

    async fn binding_view(&self, exchange_folded: &str) -> StoreResult<Option<BindingView>> {
        let load = async {
            Ok(self
                .binding(exchange_folded)
                .await?
                .map(|b| Arc::new(BindingView::from(b))))
        };
        let view = self
            .cache
            .bindings
            .get_or_load(exchange_folded.into(), load)
            .await?;
        Ok(view.map(Arc::unwrap_or_clone))
    }

    async fn scan_bindings(&self, after: i64, limit: usize) -> StoreResult<Vec<BindingRecord>> {
        let sql =
            format!("SELECT {BINDING_COLS} FROM bindings WHERE seq > $1 ORDER BY seq LIMIT $2");
        self.read_all(&sql, &[&after, &(limit as i64)], binding_row)
            .await
    }

    async fn create_binding(&self, new: NewBinding) -> StoreResult<CreateOutcome> {
        let exchange_folded = fold(&new.exchange_account);
        let admin_folded = fold(&new.admin_account);
        self.bounded(async {
            let mut c = self.conn().await?;
            for _ in 0..CREATE_TRIES {
                let tx = c.transaction().await?;
                let found = query_binding(&tx, &exchange_folded, false).await?;
                if let Some(found) = rules::exchange_bound(found, &new) {
                    return Ok(found);
                }
                let user_bound = tx
                    .query_opt(
                        "SELECT 1 FROM bindings WHERE tenant_key = $1 AND user_id = $2",
                        &[&new.tenant_key, &new.user_id],
                    )
                    .await?
                    .is_some();
                if user_bound {
                    return Ok(CreateOutcome::UserTaken);
                }
                // A concurrent create of the same account or user makes this insert wait for
                // it and then do nothing: read again what it made.
                let st = tx
                    .prepare_cached(
                        "INSERT INTO bindings (exchange_folded, admin_folded, admin_account, \
                         exchange_account, tenant_key, user_id, status, reason, scenario, next_at, \
                         created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, 'doing', NULL, $7, $8, $9, $9) \
                         ON CONFLICT DO NOTHING RETURNING seq",
                    )
                    .await?;
                let inserted = tx
                    .query_opt(
                        &st,
                        &[
                            &exchange_folded,
                            &admin_folded,
                            &new.admin_account,
                            &new.exchange_account,
                            &new.tenant_key,
                            &new.user_id,
                            &to_json(&new.scenario),
                            &new.next_at,
                            &new.now,
                        ],
                    )
                    .await?;
                let Some(row) = inserted else {
                    tx.rollback().await?;
                    continue;
                };
                let seq: i64 = row.try_get(0)?;
                insert_steps(&tx, seq, &[rules::first_step(new.now)]).await?;
                tx.commit().await?;
                return Ok(CreateOutcome::Created(rules::created(seq, new.clone())));
            }
            Err(StoreError(
                "postgres: a create kept losing insert races".into(),
            ))
        })
        .await
    }

    async fn delete_binding(
        &self,
        tenant_key: &str,
        admin_folded: &str,
        exchange_folded: &str,
    ) -> StoreResult<Option<BindingRecord>> {
        let gone = self
            .bounded(async {
                let mut c = self.conn().await?;
                let tx = c.transaction().await?;
                let Some(b) = query_binding(&tx, exchange_folded, true).await? else {
                    return Ok(None);
                };
                if !rules::owns(&b, tenant_key, admin_folded) {
                    return Ok(None);
                }
                tx.execute("DELETE FROM bindings WHERE seq = $1", &[&b.seq])
                    .await?;
                tx.execute("DELETE FROM binding_steps WHERE seq = $1", &[&b.seq])
                    .await?;
                tx.commit().await?;
                Ok(Some(b))
            })
            .await?;
        if gone.is_some() {
            self.advance_bindings().await?;
        }
        Ok(gone)
    }

    async fn list_bindings(
        &self,
        tenant_key: &str,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<BindingRecord>> {
        let sql = format!(
            "SELECT {BINDING_COLS} FROM bindings WHERE tenant_key = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3"
        );
        self.read_all(&sql, &[&tenant_key, &after, &(limit as i64)], binding_row)
            .await
    }

    async fn binding_counts(&self) -> StoreResult<Vec<(BindingStatus, u64)>> {
        self.read_all(
            "SELECT status, COUNT(*) FROM bindings GROUP BY status",
            &[],
            |r| {
                Ok((
                    parse(r.try_get(0)?, "binding status", BindingStatus::parse)?,
                    r.try_get::<_, i64>(1)? as u64,
                ))
            },
        )
        .await
    }

    async fn with_histories(&self, seqs: &[i64]) -> StoreResult<Vec<(BindingRecord, Vec<Step>)>> {
        // One statement, so one snapshot: a step's status and its history entry are committed
        // together.
        let sql = format!(
            "SELECT {BINDING_COLS}, \
             ARRAY(SELECT s.status FROM binding_steps s WHERE s.seq = b.seq ORDER BY s.at, s.id), \
             ARRAY(SELECT s.at FROM binding_steps s WHERE s.seq = b.seq ORDER BY s.at, s.id) \
             FROM bindings b WHERE b.seq = ANY($1)"
        );
        let mut found = self
            .read_all(&sql, &[&seqs], |r| {
                let statuses: Vec<String> = r.try_get(11)?;
                let ats: Vec<i64> = r.try_get(12)?;
                let history = statuses
                    .into_iter()
                    .zip(ats)
                    .map(|(status, at)| {
                        Ok(Step {
                            status: parse(status, "binding status", BindingStatus::parse)?,
                            at,
                        })
                    })
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok((binding_row(r)?, history))
            })
            .await?;
        found.sort_by_key(|(b, _)| seqs.iter().position(|s| *s == b.seq));
        Ok(found)
    }

    async fn due_bindings(&self, now: i64, limit: usize) -> StoreResult<Vec<BindingRecord>> {
        let sql = format!(
            "SELECT {BINDING_COLS} FROM bindings WHERE next_at IS NOT NULL AND next_at <= $1 \
             ORDER BY next_at LIMIT $2"
        );
        self.read_all(&sql, &[&now, &(limit as i64)], binding_row)
            .await
    }

    async fn next_deadline(&self) -> StoreResult<Option<i64>> {
        Ok(self
            .read_opt(
                "SELECT MIN(next_at) FROM bindings WHERE next_at IS NOT NULL",
                &[],
                |r| Ok(r.try_get::<_, Option<i64>>(0)?),
            )
            .await?
            .flatten())
    }

    async fn change_status(&self, changes: Vec<StatusChange>, now: i64) -> StoreResult<Vec<bool>> {
        let applied = self
            .bounded(async {
                let mut c = self.conn().await?;
                let tx = c.transaction().await?;
                // Rows are locked in one order on every server, so two servers stepping the same
                // batch wait for each other instead of deadlocking.
                let mut order: Vec<usize> = (0..changes.len()).collect();
                order.sort_by_key(|&i| changes[i].seq);
                let mut applied = vec![false; changes.len()];
                for i in order {
                    applied[i] = apply_change(&tx, &changes[i], now).await?;
                }
                tx.commit().await?;
                Ok(applied)
            })
            .await?;
        if applied.contains(&true) {
            self.advance_bindings().await?;
        }
        Ok(applied)
    }

    async fn scenario(&self, account_folded: &str) -> StoreResult<Option<ExchangeScenario>> {
        let sql =
            format!("SELECT {SCENARIO_COLS} FROM exchange_scenarios WHERE account_folded = $1");
        self.read_opt(&sql, &[&account_folded], scenario_row).await
    }

    async fn put_scenario(&self, s: ExchangeScenario) -> StoreResult<()> {
        self.execute(
            "INSERT INTO exchange_scenarios (account_folded, account, tenant_key, scenario, stage, reason) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (account_folded) DO UPDATE SET account = EXCLUDED.account, \
             tenant_key = EXCLUDED.tenant_key, scenario = EXCLUDED.scenario, \
             stage = EXCLUDED.stage, reason = EXCLUDED.reason",
            &[&fold(&s.account), &s.account, &s.tenant_key, &s.scenario, &s.stage, &s.reason],
        )
        .await
        .map(drop)
    }

    async fn delete_scenario(&self, tenant_key: &str, account_folded: &str) -> StoreResult<bool> {
        let n = self
            .execute(
                "DELETE FROM exchange_scenarios WHERE tenant_key = $1 AND account_folded = $2",
                &[&tenant_key, &account_folded],
            )
            .await?;
        Ok(n > 0)
    }

    async fn delete_tenant_bindings(&self, tenant_key: &str) -> StoreResult<u64> {
        let n = self.bounded(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await?;
            tx.execute(
                "DELETE FROM binding_steps WHERE seq IN (SELECT seq FROM bindings WHERE tenant_key = $1)",
                &[&tenant_key],
            )
            .await?;
            let n = tx
                .execute("DELETE FROM bindings WHERE tenant_key = $1", &[&tenant_key])
                .await?;
            tx.commit().await?;
            Ok(n)
        })
        .await?;
        self.advance_bindings().await?;
        Ok(n)
    }

    async fn reset(&self) -> StoreResult<()> {
        self.bounded(async {
            let c = self.conn().await?;
            c.batch_execute(
                "TRUNCATE tenants, users, exchange_admins, exchange_scenarios, apps, app_tokens, app_tickets, \
                 user_tokens, bindings, binding_steps, oauth_codes, refresh_tokens, counters, faults, \
                 journal",
            )
            .await?;
            Ok(())
        })
        .await?;
        self.advance().await?;
        self.advance_bindings().await
    }
}
