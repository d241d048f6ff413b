//! The SQLite schema and its forward migrations. `PRAGMA user_version` records the version.

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE tenants (
    tenant_key TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    unit       TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE users (
    tenant_key  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    email       TEXT,
    status      TEXT NOT NULL,
    super_admin INTEGER NOT NULL,
    ukey        BLOB NOT NULL UNIQUE,
    PRIMARY KEY (tenant_key, user_id)
) WITHOUT ROWID;

CREATE TABLE exchange_admins (
    account_folded TEXT PRIMARY KEY,
    account        TEXT NOT NULL,
    tenant_key     TEXT NOT NULL,
    state          TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX exchange_admins_tenant ON exchange_admins (tenant_key);

CREATE TABLE exchange_scenarios (
    account_folded TEXT PRIMARY KEY,
    account        TEXT NOT NULL,
    tenant_key     TEXT NOT NULL,
    scenario       TEXT NOT NULL,
    stage          TEXT,
    reason         TEXT
) WITHOUT ROWID;
CREATE INDEX exchange_scenarios_tenant ON exchange_scenarios (tenant_key);

CREATE TABLE apps (
    app_id     TEXT PRIMARY KEY,
    app_secret TEXT NOT NULL,
    kind       TEXT NOT NULL,
    developer  TEXT NOT NULL,
    bot        INTEGER NOT NULL,
    unit       TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    tenants    TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE app_tokens (
    token      TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX app_tokens_app ON app_tokens (app_id, expires_at);

CREATE TABLE user_tokens (
    token_hash BLOB PRIMARY KEY,
    app_id     TEXT NOT NULL,
    tenant_key TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE bindings (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    exchange_folded  TEXT NOT NULL UNIQUE,
    admin_folded     TEXT NOT NULL,
    admin_account    TEXT NOT NULL,
    exchange_account TEXT NOT NULL,
    tenant_key       TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    status           TEXT NOT NULL,
    reason           TEXT,
    scenario         TEXT NOT NULL,
    next_at          INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX bindings_user ON bindings (tenant_key, user_id);
CREATE INDEX bindings_tenant ON bindings (tenant_key, seq);
CREATE INDEX bindings_admin ON bindings (admin_folded);
CREATE INDEX bindings_due ON bindings (next_at) WHERE next_at IS NOT NULL;

CREATE TABLE binding_steps (
    seq    INTEGER NOT NULL,
    status TEXT NOT NULL,
    at     INTEGER NOT NULL
);
CREATE INDEX binding_steps_seq ON binding_steps (seq);
"#,
    r#"
CREATE TABLE console_revoked (
    id         BLOB PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    r#"
-- The login flows (oauth.md): app login settings, user profiles, codes and refresh tokens,
-- and the grant each token came from.
ALTER TABLE apps ADD COLUMN login TEXT NOT NULL DEFAULT '{}';
ALTER TABLE users ADD COLUMN profile TEXT NOT NULL DEFAULT '{}';
ALTER TABLE user_tokens ADD COLUMN grant_id TEXT;
CREATE INDEX user_tokens_grant ON user_tokens (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX user_tokens_user ON user_tokens (tenant_key, user_id);

CREATE TABLE oauth_codes (
    code_hash    BLOB PRIMARY KEY,
    grant_id     TEXT NOT NULL,
    app_id       TEXT NOT NULL,
    tenant_key   TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    challenge    TEXT,
    expires_at   INTEGER NOT NULL,
    used         INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY,
    grant_id   TEXT NOT NULL,
    app_id     TEXT NOT NULL,
    tenant_key TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0,
    revoked    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (tenant_key, user_id);
"#,
    r#"
ALTER TABLE apps ADD COLUMN event_url TEXT;
ALTER TABLE apps ADD COLUMN verification_token TEXT;
ALTER TABLE apps ADD COLUMN encrypt_key TEXT;

-- A store app's tenant tokens carry their tenant; '' for every other token.
ALTER TABLE app_tokens ADD COLUMN tenant_key TEXT NOT NULL DEFAULT '';
CREATE INDEX app_tokens_holder ON app_tokens (app_id, tenant_key, expires_at);

CREATE TABLE app_tickets (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id    TEXT NOT NULL,
    ticket    TEXT NOT NULL,
    issued_at INTEGER NOT NULL
);
CREATE INDEX app_tickets_app ON app_tickets (app_id, ticket);
"#,
];

pub const VERSION: i64 = MIGRATIONS.len() as i64;
