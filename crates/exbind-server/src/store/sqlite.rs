//! The embedded store: SQLite in the data dir, WAL with `synchronous=FULL`.
//!
//! Writes go to one writer thread that groups whatever is queued into one transaction and one
//! fsync (group commit); each write runs in its own savepoint, so one failing write does not
//! undo the others, and every caller is answered only after the commit. Reads use a small
//! pool of connections and run inline: they are indexed point reads of a few microseconds,
//! cheaper than a hop to a blocking thread.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use async_trait::async_trait;
use exbind_api::BindingStatus;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use tokio::sync::oneshot;

use super::rules;
use super::schema::{MIGRATIONS, VERSION};
use super::*;

/// Why the store could not be opened; each maps to an exit status.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("data dir {0} is locked by another exbind server ({1})")]
    Locked(PathBuf, PathBuf),
    #[error("store {0} has schema version {1}, newer than this exbind knows ({2})")]
    NewerSchema(PathBuf, i64, i64),
    #[error("cannot open store in {0}: {1}")]
    Io(PathBuf, String),
}

/// The most writes one transaction groups.
const MAX_BATCH: usize = 1024;
/// Idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 32;

type Finish = Box<dyn FnOnce(StoreResult<()>) + Send>;

trait Job: Send {
    fn run(self: Box<Self>, conn: &Connection) -> Finish;
    fn abort(self: Box<Self>, err: StoreError);
}

struct WriteJob<F, R> {
    f: F,
    reply: oneshot::Sender<StoreResult<R>>,
}

impl<F, R> Job for WriteJob<F, R>
where
    F: FnOnce(&Connection) -> StoreResult<R> + Send,
    R: Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Finish {
        let WriteJob { f, reply } = *self;
        let result = in_savepoint(conn, f);
        Box::new(move |commit| {
            let _ = reply.send(commit.and(result));
        })
    }

    fn abort(self: Box<Self>, err: StoreError) {
        let _ = self.reply.send(Err(err));
    }
}

fn in_savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<R>,
) -> StoreResult<R> {
    conn.execute_batch("SAVEPOINT job")?;
    match f(conn) {
        Ok(r) => {
            conn.execute_batch("RELEASE job")?;
            Ok(r)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

pub struct SqliteStore {
    path: PathBuf,
    writer: std_mpsc::Sender<Box<dyn Job>>,
    readers: Mutex<Vec<Connection>>,
    _lock: Option<File>,
}

/// The `--data-dir` value that keeps the store in memory.
pub const MEMORY: &str = ":memory:";

/// A private in-memory database that every connection of this store shares (SQLite's
/// `memdb` VFS); it lives while the writer's connection does.
fn memory_path() -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    PathBuf::from(format!("file:/exbind-{}-{n}?vfs=memdb", std::process::id()))
}

fn is_memory(path: &Path) -> bool {
    path.to_str()
        .is_some_and(|p| p.starts_with("file:/exbind-"))
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, takes the data dir's lock and
    /// migrates the schema forward in one transaction.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, OpenError> {
        if data_dir == Path::new(MEMORY) {
            return SqliteStore::start(memory_path(), None);
        }
        let io = |e: &dyn std::fmt::Display| OpenError::Io(data_dir.to_path_buf(), e.to_string());
        std::fs::create_dir_all(data_dir).map_err(|e| io(&e))?;
        let lock_path = data_dir.join("exbind.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(&e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OpenError::Locked(data_dir.to_path_buf(), lock_path))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&e)),
        }
        SqliteStore::start(data_dir.join("exbind.sqlite3"), Some(lock))
    }

    fn start(path: PathBuf, lock: Option<File>) -> Result<SqliteStore, OpenError> {
        let io = |e: &dyn std::fmt::Display| OpenError::Io(path.clone(), e.to_string());
        let mut conn = open_conn(&path).map_err(|e| io(&e))?;
        migrate(&mut conn, &path)?;
        let (tx, rx) = std_mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("exbind-store-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| io(&e))?;
        Ok(SqliteStore {
            path,
            writer: tx,
            readers: Mutex::new(Vec::new()),
            _lock: lock,
        })
    }

    async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Box::new(WriteJob { f, reply }))
            .map_err(|_| StoreError("store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError("store writer stopped".into()))?
    }

    /// Bulk-loads users and bindings (admin, exchange, user) in one transaction, each binding
    /// at `status` with its next sync step at `next_at`; for benchmark fixtures.
    pub async fn load_fixture(
        &self,
        tenant_key: &str,
        users: Vec<UserRow>,
        bindings: Vec<(String, String, String)>,
        status: BindingStatus,
        next_at: Option<i64>,
    ) -> StoreResult<()> {
        let t = tenant_key.to_string();
        self.write(move |c| {
            let mut ins_user = c.prepare(
                "INSERT OR REPLACE INTO users (tenant_key, user_id, name, email, status, super_admin, ukey) \
                 VALUES (?1, ?2, ?3, NULL, 'active', 0, ?4)",
            )?;
            for u in &users {
                ins_user.execute(params![t, u.user.user_id, u.user.name, &u.key[..]])?;
            }
            let scenario = to_json(&crate::domain::sync::Scenario::Normal);
            let mut ins = c.prepare(
                "INSERT OR REPLACE INTO bindings (exchange_folded, admin_folded, admin_account, exchange_account, \
                 tenant_key, user_id, status, reason, scenario, next_at, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?9, 0, 0)",
            )?;
            for (admin, exchange, user) in &bindings {
                ins.execute(params![
                    exbind_api::accounts::fold(exchange),
                    exbind_api::accounts::fold(admin),
                    admin,
                    exchange,
                    t,
                    user,
                    status.as_str(),
                    scenario,
                    next_at
                ])?;
            }
            Ok(())
        })
        .await
    }

    fn read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> StoreResult<R> {
        let conn = match self.readers.lock().pop() {
            Some(c) => c,
            None => open_conn(&self.path)?,
        };
        let result = f(&conn);
        let mut idle = self.readers.lock();
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        Ok(result?)
    }
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if is_memory(path) {
        conn.execute_batch("PRAGMA foreign_keys = OFF;")?;
    } else {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;",
        )?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), OpenError> {
    let io = |e: rusqlite::Error| OpenError::Io(path.to_path_buf(), e.to_string());
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(io)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(io)?;
    if version > VERSION {
        return Err(OpenError::NewerSchema(path.to_path_buf(), version, VERSION));
    }
    for m in &MIGRATIONS[version as usize..] {
        tx.execute_batch(m).map_err(io)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {VERSION}"))
        .map_err(io)?;
    tx.commit().map_err(io)
}

fn writer_loop(conn: Connection, rx: std_mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let err = StoreError::from(e);
            for job in batch {
                job.abort(err.clone());
            }
            continue;
        }
        let finishers: Vec<Finish> = batch.into_iter().map(|j| j.run(&conn)).collect();
        let commit = conn.execute_batch("COMMIT").map_err(StoreError::from);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for finish in finishers {
            finish(commit.clone());
        }
    }
}

// ---- row mapping -------------------------------------------------------------------------

fn parse_col<T>(row: &Row, idx: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let s: String = row.get(idx)?;
    parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            format!("unexpected value {s:?}").into(),
        )
    })
}

fn json_col<T: serde::de::DeserializeOwned>(row: &Row, idx: usize) -> rusqlite::Result<T> {
    let s: String = row.get(idx)?;
    serde_json::from_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serializable")
}

const TENANT_COLS: &str = "tenant_key, name, unit";
fn tenant_row(r: &Row) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        tenant_key: r.get(0)?,
        name: r.get(1)?,
        unit: r.get(2)?,
    })
}

const USER_COLS: &str = "tenant_key, user_id, name, email, status, super_admin, profile";
fn user_row(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        tenant_key: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        email: r.get(3)?,
        status: parse_col(r, 4, UserStatus::parse)?,
        super_admin: r.get(5)?,
        profile: json_col(r, 6)?,
    })
}

const APP_TOKEN_COLS: &str = "token, app_id, tenant_key, expires_at";
fn app_token_row(r: &Row) -> rusqlite::Result<AppToken> {
    let tenant: String = r.get(2)?;
    Ok(AppToken {
        token: r.get(0)?,
        app_id: r.get(1)?,
        tenant_key: (!tenant.is_empty()).then_some(tenant),
        expires_at: r.get(3)?,
    })
}

const APP_COLS: &str = "app_id, app_secret, kind, developer, bot, unit, scopes, tenants, login, \
                        event_url, verification_token, encrypt_key";
fn app_row(r: &Row) -> rusqlite::Result<App> {
    Ok(App {
        app_id: r.get(0)?,
        app_secret: r.get(1)?,
        kind: parse_col(r, 2, AppKind::parse)?,
        developer: r.get(3)?,
        bot: r.get(4)?,
        unit: r.get(5)?,
        scopes: json_col(r, 6)?,
        tenants: json_col(r, 7)?,
        login: json_col(r, 8)?,
        event_url: r.get(9)?,
        verification_token: r.get(10)?,
        encrypt_key: r.get(11)?,
    })
}

const ADMIN_COLS: &str = "account, tenant_key, state";
fn admin_row(r: &Row) -> rusqlite::Result<AdminAccount> {
    Ok(AdminAccount {
        account: r.get(0)?,
        tenant_key: r.get(1)?,
        state: parse_col(r, 2, AdminState::parse)?,
    })
}

const BINDING_COLS: &str = "seq, admin_account, exchange_account, tenant_key, user_id, status, \
                            reason, scenario, next_at, created_at, updated_at";
fn binding_row(r: &Row) -> rusqlite::Result<BindingRecord> {
    Ok(BindingRecord {
        seq: r.get(0)?,
        admin_account: r.get(1)?,
        exchange_account: r.get(2)?,
        tenant_key: r.get(3)?,
        user_id: r.get(4)?,
        status: parse_col(r, 5, BindingStatus::parse)?,
        reason: r.get(6)?,
        scenario: json_col(r, 7)?,
        next_at: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

const INSERT_USER_TOKEN: &str = "INSERT INTO user_tokens \
    (token_hash, app_id, tenant_key, user_id, scopes, expires_at, revoked, grant_id) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7)";

/// The grant of a code or refresh-token row: columns 0–4 are its id, app, tenant, user and
/// scopes.
fn grant_row(r: &Row) -> rusqlite::Result<Grant> {
    Ok(Grant {
        id: r.get(0)?,
        app_id: r.get(1)?,
        tenant_key: r.get(2)?,
        user_id: r.get(3)?,
        scopes: json_col(r, 4)?,
    })
}

fn scenario_row(r: &Row) -> rusqlite::Result<ExchangeScenario> {
    Ok(ExchangeScenario {
        account: r.get(0)?,
        tenant_key: r.get(1)?,
        scenario: r.get(2)?,
        stage: r.get(3)?,
        reason: r.get(4)?,
    })
}

fn query_binding(c: &Connection, exchange_folded: &str) -> rusqlite::Result<Option<BindingRecord>> {
    c.prepare_cached(&format!(
        "SELECT {BINDING_COLS} FROM bindings WHERE exchange_folded = ?1"
    ))?
    .query_row([exchange_folded], binding_row)
    .optional()
}

/// Inserts or updates one keyed row; returns 1 in `added` or `updated` when something changed.
fn upsert(
    c: &Connection,
    counts: &mut SeedCounts,
    current: rusqlite::Result<Option<Vec<rusqlite::types::Value>>>,
    wanted: Vec<rusqlite::types::Value>,
    write: &str,
) -> StoreResult<()> {
    match current? {
        Some(old) if old == wanted => return Ok(()),
        Some(_) => counts.updated += 1,
        None => counts.added += 1,
    }
    c.prepare_cached(write)?
        .execute(rusqlite::params_from_iter(wanted.iter()))?;
    Ok(())
}

fn row_values(r: &Row, n: usize) -> rusqlite::Result<Vec<rusqlite::types::Value>> {
    (0..n).map(|i| r.get(i)).collect()
}

fn current_row(
    c: &Connection,
    sql: &str,
    key: &[&dyn rusqlite::ToSql],
    n: usize,
) -> rusqlite::Result<Option<Vec<rusqlite::types::Value>>> {
    c.prepare_cached(sql)?
        .query_row(key, |r| row_values(r, n))
        .optional()
}

fn insert_steps(c: &Connection, seq: i64, steps: &[Step]) -> rusqlite::Result<()> {
    let mut ins =
        c.prepare_cached("INSERT INTO binding_steps (seq, status, at) VALUES (?1, ?2, ?3)")?;
    for st in steps {
        ins.execute(params![seq, st.status.as_str(), st.at])?;
    }
    Ok(())
}

/// Applies a status change if the binding is still where the change expects it.
fn apply_change(c: &Connection, ch: &StatusChange, now: i64) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached(
            "UPDATE bindings SET status = ?3, reason = ?4, next_at = ?5, updated_at = ?6 \
             WHERE seq = ?1 AND status = ?2",
        )?
        .execute(params![
            ch.seq,
            ch.from.as_str(),
            ch.status.as_str(),
            ch.reason,
            ch.next_at,
            now
        ])?;
    if n == 1 {
        insert_steps(c, ch.seq, &ch.steps)?;
    }
    Ok(n == 1)
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    async fn meta_init(&self, key: &str, value: Vec<u8>) -> StoreResult<Vec<u8>> {
        let key = key.to_string();
        self.write(move |c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                params![key, value],
            )?;
            Ok(
                c.query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }

    async fn tenant(&self, tenant_key: &str) -> StoreResult<Option<Arc<Tenant>>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {TENANT_COLS} FROM tenants WHERE tenant_key = ?1"
            ))?
            .query_row([tenant_key], tenant_row)
            .optional()
        })
        .map(|o| o.map(Arc::new))
    }

    async fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {TENANT_COLS} FROM tenants ORDER BY tenant_key"
            ))?
            .query_map([], tenant_row)?
            .collect()
        })
    }

    async fn users(&self, tenant_key: &str, after: &str, limit: usize) -> StoreResult<Vec<User>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {USER_COLS} FROM users WHERE tenant_key = ?1 AND user_id > ?2 \
                 ORDER BY user_id LIMIT ?3"
            ))?
            .query_map(rusqlite::params![tenant_key, after, limit as i64], user_row)?
            .collect()
        })
    }

    async fn apps(&self) -> StoreResult<Vec<App>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {APP_COLS} FROM apps ORDER BY app_id"))?
                .query_map([], app_row)?
                .collect()
        })
    }

    async fn user_count(&self, tenant_key: &str) -> StoreResult<u64> {
        self.read(|c| {
            c.prepare_cached("SELECT COUNT(*) FROM users WHERE tenant_key = ?1")?
                .query_row([tenant_key], |r| r.get(0))
        })
    }

    async fn user(&self, tenant_key: &str, user_id: &str) -> StoreResult<Option<Arc<User>>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {USER_COLS} FROM users WHERE tenant_key = ?1 AND user_id = ?2"
            ))?
            .query_row([tenant_key, user_id], user_row)
            .optional()
        })
        .map(|o| o.map(Arc::new))
    }

    async fn user_by_key(&self, key: &UserKey) -> StoreResult<Option<Arc<User>>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE ukey = ?1"))?
                .query_row([&key[..]], user_row)
                .optional()
        })
        .map(|o| o.map(Arc::new))
    }

    async fn app(&self, app_id: &str) -> StoreResult<Option<Arc<App>>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {APP_COLS} FROM apps WHERE app_id = ?1"))?
                .query_row([app_id], app_row)
                .optional()
        })
        .map(|o| o.map(Arc::new))
    }

    async fn admin_account(&self, account_folded: &str) -> StoreResult<Option<Arc<AdminAccount>>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {ADMIN_COLS} FROM exchange_admins WHERE account_folded = ?1"
            ))?
            .query_row([account_folded], admin_row)
            .optional()
        })
        .map(|o| o.map(Arc::new))
    }

    async fn admin_accounts(&self, tenant_key: &str) -> StoreResult<Vec<AdminAccount>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {ADMIN_COLS} FROM exchange_admins WHERE tenant_key = ?1 ORDER BY account_folded"
            ))?
            .query_map([tenant_key], admin_row)?
            .collect()
        })
    }

    async fn scenarios(&self, tenant_key: &str) -> StoreResult<Vec<ExchangeScenario>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT account, tenant_key, scenario, stage, reason FROM exchange_scenarios \
                 WHERE tenant_key = ?1 ORDER BY account_folded",
            )?
            .query_map([tenant_key], scenario_row)?
            .collect()
        })
    }

    async fn apply_seed(&self, plan: SeedPlan) -> StoreResult<SeedCounts> {
        use rusqlite::types::Value as V;
        self.write(move |c| {
            let mut n = SeedCounts::default();
            for t in plan.tenants {
                let wanted = vec![V::Text(t.tenant_key), V::Text(t.name), V::Text(t.unit)];
                let sel = format!("SELECT {TENANT_COLS} FROM tenants WHERE tenant_key = ?1");
                let cur = current_row(c, &sel, &[&wanted[0]], 3);
                upsert(c, &mut n, cur, wanted,
                    "INSERT OR REPLACE INTO tenants (tenant_key, name, unit) VALUES (?1, ?2, ?3)")?;
            }
            for UserRow { user: u, key } in plan.users {
                let wanted = vec![
                    V::Text(u.tenant_key),
                    V::Text(u.user_id),
                    V::Text(u.name),
                    u.email.map_or(V::Null, V::Text),
                    V::Text(u.status.as_str().into()),
                    V::Integer(u.super_admin as i64),
                    V::Text(to_json(&u.profile)),
                    V::Blob(key.to_vec()),
                ];
                let sel = format!("SELECT {USER_COLS}, ukey FROM users WHERE tenant_key = ?1 AND user_id = ?2");
                let cur = current_row(c, &sel, &[&wanted[0], &wanted[1]], 8);
                upsert(c, &mut n, cur, wanted,
                    "INSERT OR REPLACE INTO users (tenant_key, user_id, name, email, status, super_admin, profile, ukey) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
            }
            for a in plan.admins {
                let wanted = vec![
                    V::Text(exbind_api::accounts::fold(&a.account)),
                    V::Text(a.account),
                    V::Text(a.tenant_key),
                    V::Text(a.state.as_str().into()),
                ];
                let sel = "SELECT account_folded, account, tenant_key, state FROM exchange_admins WHERE account_folded = ?1";
                let cur = current_row(c, sel, &[&wanted[0]], 4);
                upsert(c, &mut n, cur, wanted,
                    "INSERT OR REPLACE INTO exchange_admins (account_folded, account, tenant_key, state) VALUES (?1, ?2, ?3, ?4)")?;
            }
            for s in plan.scenarios {
                let wanted = vec![
                    V::Text(exbind_api::accounts::fold(&s.account)),
                    V::Text(s.account),
                    V::Text(s.tenant_key),
                    V::Text(s.scenario),
                    s.stage.map_or(V::Null, V::Text),
                    s.reason.map_or(V::Null, V::Text),
                ];
                let sel = "SELECT account_folded, account, tenant_key, scenario, stage, reason FROM exchange_scenarios WHERE account_folded = ?1";
                let cur = current_row(c, sel, &[&wanted[0]], 6);
                upsert(c, &mut n, cur, wanted,
                    "INSERT OR REPLACE INTO exchange_scenarios (account_folded, account, tenant_key, scenario, stage, reason) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
            }
            for a in plan.apps {
                let wanted = vec![
                    V::Text(a.app_id),
                    V::Text(a.app_secret),
                    V::Text(a.kind.as_str().into()),
                    V::Text(a.developer),
                    V::Integer(a.bot as i64),
                    V::Text(a.unit),
                    V::Text(to_json(&a.scopes)),
                    V::Text(to_json(&a.tenants)),
                    V::Text(to_json(&a.login)),
                    a.event_url.map_or(V::Null, V::Text),
                    a.verification_token.map_or(V::Null, V::Text),
                    a.encrypt_key.map_or(V::Null, V::Text),
                ];
                let sel = format!("SELECT {APP_COLS} FROM apps WHERE app_id = ?1");
                let cur = current_row(c, &sel, &[&wanted[0]], 12);
                upsert(c, &mut n, cur, wanted,
                    &format!("INSERT OR REPLACE INTO apps ({APP_COLS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"))?;
            }
            Ok(n)
        })
        .await
    }

    async fn patch_user(
        &self,
        tenant_key: &str,
        user_id: &str,
        patch: UserPatch,
    ) -> StoreResult<Option<User>> {
        let (t, u) = (tenant_key.to_string(), user_id.to_string());
        self.write(move |c| {
            let changed = c.execute(
                "UPDATE users SET status = COALESCE(?3, status), super_admin = COALESCE(?4, super_admin) \
                 WHERE tenant_key = ?1 AND user_id = ?2",
                params![t, u, patch.status.map(|s| s.as_str()), patch.super_admin],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            Ok(c.query_row(
                &format!("SELECT {USER_COLS} FROM users WHERE tenant_key = ?1 AND user_id = ?2"),
                [&t, &u],
                user_row,
            )
            .optional()?)
        })
        .await
    }

    async fn patch_app(&self, app_id: &str, patch: AppPatch) -> StoreResult<Option<App>> {
        let id = app_id.to_string();
        self.write(move |c| {
            let changed = c.execute(
                "UPDATE apps SET bot = COALESCE(?2, bot), scopes = COALESCE(?3, scopes), \
                 tenants = COALESCE(?4, tenants), unit = COALESCE(?5, unit), \
                 login = COALESCE(?6, login), \
                 event_url = CASE WHEN ?7 THEN ?8 ELSE event_url END, \
                 verification_token = CASE WHEN ?9 THEN ?10 ELSE verification_token END, \
                 encrypt_key = CASE WHEN ?11 THEN ?12 ELSE encrypt_key END WHERE app_id = ?1",
                params![
                    id,
                    patch.bot,
                    patch.scopes.as_ref().map(to_json),
                    patch.tenants.as_ref().map(to_json),
                    patch.unit,
                    patch.login.as_ref().map(to_json),
                    patch.event_url.is_some(),
                    patch.event_url.flatten(),
                    patch.verification_token.is_some(),
                    patch.verification_token.flatten(),
                    patch.encrypt_key.is_some(),
                    patch.encrypt_key.flatten(),
                ],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            Ok(c.query_row(
                &format!("SELECT {APP_COLS} FROM apps WHERE app_id = ?1"),
                [&id],
                app_row,
            )
            .optional()?)
        })
        .await
    }

    async fn set_admin_state(
        &self,
        account_folded: &str,
        state: AdminState,
        now: i64,
    ) -> StoreResult<Option<AdminAccount>> {
        let key = account_folded.to_string();
        self.write(move |c| {
            let changed = c.execute(
                "UPDATE exchange_admins SET state = ?2 WHERE account_folded = ?1",
                params![key, state.as_str()],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            if state == AdminState::Failed {
                let syncing: Vec<(i64, BindingStatus, String)> = c
                    .prepare(
                        "SELECT seq, status, exchange_folded FROM bindings WHERE admin_folded = ?1 \
                         AND status NOT IN ('done', 'err')",
                    )?
                    .query_map([&key], |r| {
                        Ok((r.get(0)?, parse_col(r, 1, BindingStatus::parse)?, r.get(2)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                for (seq, from, exchange_folded) in syncing {
                    apply_change(
                        c,
                        &rules::admin_failed(seq, from, exchange_folded, now),
                        now,
                    )?;
                }
            }
            Ok(c.query_row(
                &format!("SELECT {ADMIN_COLS} FROM exchange_admins WHERE account_folded = ?1"),
                [&key],
                admin_row,
            )
            .optional()?)
        })
        .await
    }

    async fn issue_app_token(
        &self,
        candidate: AppToken,
        now: i64,
        min_left_ms: i64,
    ) -> StoreResult<AppToken> {
        self.write(move |c| {
            let tenant = candidate.tenant_key.clone().unwrap_or_default();
            let current = c
                .prepare_cached(&format!(
                    "SELECT {APP_TOKEN_COLS} FROM app_tokens WHERE app_id = ?1 AND tenant_key = ?2 \
                     ORDER BY expires_at DESC LIMIT 1"
                ))?
                .query_row([&candidate.app_id, &tenant], app_token_row)
                .optional()?;
            if let Some(cur) = current {
                if cur.expires_at - now >= min_left_ms {
                    return Ok(cur);
                }
            }
            c.execute(
                "DELETE FROM app_tokens WHERE app_id = ?1 AND tenant_key = ?2 AND expires_at <= ?3",
                params![candidate.app_id, tenant, now],
            )?;
            c.execute(
                "INSERT INTO app_tokens (token, app_id, tenant_key, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![candidate.token, candidate.app_id, tenant, candidate.expires_at],
            )?;
            Ok(candidate)
        })
        .await
    }

    async fn app_token(&self, token: &str) -> StoreResult<Option<AppToken>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {APP_TOKEN_COLS} FROM app_tokens WHERE token = ?1"
            ))?
            .query_row([token], app_token_row)
            .optional()
        })
    }

    async fn add_app_ticket(&self, app_id: &str, ticket: &str, now: i64) -> StoreResult<()> {
        let (app_id, ticket) = (app_id.to_string(), ticket.to_string());
        self.write(move |c| {
            c.execute(
                "INSERT INTO app_tickets (app_id, ticket, issued_at) VALUES (?1, ?2, ?3)",
                params![app_id, ticket, now],
            )?;
            c.execute(
                "DELETE FROM app_tickets WHERE app_id = ?1 AND seq NOT IN \
                 (SELECT seq FROM app_tickets WHERE app_id = ?1 ORDER BY seq DESC LIMIT 2)",
                [&app_id],
            )?;
            Ok(())
        })
        .await
    }

    async fn app_ticket_valid(&self, app_id: &str, ticket: &str) -> StoreResult<bool> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT 1 FROM app_tickets WHERE app_id = ?1 AND ticket = ?2")?
                    .query_row([app_id, ticket], |_| Ok(()))
                    .optional()?
                    .is_some(),
            )
        })
    }

    async fn insert_user_token(&self, token: &str, t: UserToken) -> StoreResult<()> {
        let hash = token_hash(token);
        self.write(move |c| {
            c.execute(
                INSERT_USER_TOKEN,
                params![
                    &hash[..],
                    t.app_id,
                    t.tenant_key,
                    t.user_id,
                    to_json(&t.scopes),
                    t.expires_at,
                    t.grant_id
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn user_token(&self, token: &str) -> StoreResult<Option<Arc<UserToken>>> {
        let hash = token_hash(token);
        self.read(|c| {
            c.prepare_cached(
                "SELECT app_id, tenant_key, user_id, scopes, expires_at, revoked, grant_id \
                 FROM user_tokens WHERE token_hash = ?1",
            )?
            .query_row([&hash[..]], |r| {
                Ok(UserToken {
                    app_id: r.get(0)?,
                    tenant_key: r.get(1)?,
                    user_id: r.get(2)?,
                    scopes: json_col(r, 3)?,
                    expires_at: r.get(4)?,
                    revoked: r.get(5)?,
                    grant_id: r.get(6)?,
                })
            })
            .optional()
        })
        .map(|o| o.map(Arc::new))
    }

    async fn revoke_user_token(&self, token: &str) -> StoreResult<bool> {
        let hash = token_hash(token);
        self.write(move |c| {
            Ok(c.execute(
                "UPDATE user_tokens SET revoked = 1 WHERE token_hash = ?1",
                [&hash[..]],
            )? > 0)
        })
        .await
    }

    async fn insert_oauth_code(&self, code: &str, rec: OAuthCode, now: i64) -> StoreResult<()> {
        let hash = token_hash(code);
        // A day's grace: until then an expired one still answers as expired, not unknown.
        let before = now - 24 * 3600 * 1000;
        self.write(move |c| {
            c.prepare_cached("DELETE FROM oauth_codes WHERE expires_at <= ?1")?
                .execute([before])?;
            c.prepare_cached("DELETE FROM refresh_tokens WHERE expires_at <= ?1")?
                .execute([before])?;
            let g = &rec.grant;
            c.execute(
                "INSERT INTO oauth_codes (code_hash, grant_id, app_id, tenant_key, user_id, scopes, \
                 redirect_uri, challenge, expires_at, used) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0)",
                params![
                    &hash[..],
                    g.id,
                    g.app_id,
                    g.tenant_key,
                    g.user_id,
                    to_json(&g.scopes),
                    rec.redirect_uri,
                    rec.challenge.as_ref().map(to_json),
                    rec.expires_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn oauth_code(&self, code: &str) -> StoreResult<Option<OAuthCode>> {
        let hash = token_hash(code);
        self.read(|c| {
            c.prepare_cached(
                "SELECT grant_id, app_id, tenant_key, user_id, scopes, redirect_uri, challenge, \
                 expires_at, used FROM oauth_codes WHERE code_hash = ?1",
            )?
            .query_row([&hash[..]], |r| {
                let challenge: Option<String> = r.get(6)?;
                Ok(OAuthCode {
                    grant: grant_row(r)?,
                    redirect_uri: r.get(5)?,
                    challenge: challenge
                        .map(|s| serde_json::from_str(&s))
                        .transpose()
                        .map_err(|e| {
                            rusqlite::Error::FromSqlConversionFailure(
                                6,
                                rusqlite::types::Type::Text,
                                e.into(),
                            )
                        })?,
                    expires_at: r.get(7)?,
                    used: r.get(8)?,
                })
            })
            .optional()
        })
    }

    async fn refresh_token(&self, token: &str) -> StoreResult<Option<RefreshToken>> {
        let hash = token_hash(token);
        self.read(|c| {
            c.prepare_cached(
                "SELECT grant_id, app_id, tenant_key, user_id, scopes, expires_at, used, revoked \
                 FROM refresh_tokens WHERE token_hash = ?1",
            )?
            .query_row([&hash[..]], |r| {
                Ok(RefreshToken {
                    grant: grant_row(r)?,
                    expires_at: r.get(5)?,
                    used: r.get(6)?,
                    revoked: r.get(7)?,
                })
            })
            .optional()
        })
    }

    async fn redeem(&self, spent: Spent, issued: Issued) -> StoreResult<bool> {
        let (sql, hash) = match &spent {
            Spent::Code(code) => (
                "UPDATE oauth_codes SET used = 1 WHERE code_hash = ?1 AND used = 0",
                token_hash(code),
            ),
            Spent::RefreshToken(token) => (
                "UPDATE refresh_tokens SET used = 1 WHERE token_hash = ?1 AND used = 0 AND revoked = 0",
                token_hash(token),
            ),
        };
        self.write(move |c| {
            if c.prepare_cached(sql)?.execute([&hash[..]])? == 0 {
                return Ok(false);
            }
            let t = &issued.access;
            c.prepare_cached(INSERT_USER_TOKEN)?.execute(params![
                &token_hash(&issued.access_token)[..],
                t.app_id,
                t.tenant_key,
                t.user_id,
                to_json(&t.scopes),
                t.expires_at,
                t.grant_id
            ])?;
            if let Some((token, r)) = &issued.refresh {
                let g = &r.grant;
                c.prepare_cached(
                    "INSERT INTO refresh_tokens (token_hash, grant_id, app_id, tenant_key, user_id, \
                     scopes, expires_at, used, revoked) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0)",
                )?
                .execute(params![
                    &token_hash(token)[..],
                    g.id,
                    g.app_id,
                    g.tenant_key,
                    g.user_id,
                    to_json(&g.scopes),
                    r.expires_at
                ])?;
            }
            Ok(true)
        })
        .await
    }

    async fn revoke_grant(&self, grant_id: &str) -> StoreResult<()> {
        let g = grant_id.to_string();
        self.write(move |c| {
            c.execute(
                "UPDATE user_tokens SET revoked = 1 WHERE grant_id = ?1",
                [&g],
            )?;
            c.execute(
                "UPDATE refresh_tokens SET revoked = 1 WHERE grant_id = ?1",
                [&g],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_user(&self, tenant_key: &str, user_id: &str) -> StoreResult<bool> {
        let (t, u) = (tenant_key.to_string(), user_id.to_string());
        self.write(move |c| {
            let key = [&t, &u];
            if c.execute(
                "DELETE FROM users WHERE tenant_key = ?1 AND user_id = ?2",
                key,
            )? == 0
            {
                return Ok(false);
            }
            c.execute(
                "UPDATE user_tokens SET revoked = 1 WHERE tenant_key = ?1 AND user_id = ?2",
                key,
            )?;
            c.execute(
                "UPDATE refresh_tokens SET revoked = 1 WHERE tenant_key = ?1 AND user_id = ?2",
                key,
            )?;
            Ok(true)
        })
        .await
    }

    async fn revoke_console_session(
        &self,
        id: [u8; 16],
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        self.write(move |c| {
            c.execute("DELETE FROM console_revoked WHERE expires_at <= ?1", [now])?;
            c.execute(
                "INSERT OR REPLACE INTO console_revoked (id, expires_at) VALUES (?1, ?2)",
                params![&id[..], expires_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn console_session_revoked(&self, id: [u8; 16]) -> StoreResult<bool> {
        self.read(|c| {
            c.prepare_cached("SELECT 1 FROM console_revoked WHERE id = ?1")?
                .exists([&id[..]])
        })
    }

    async fn binding(&self, exchange_folded: &str) -> StoreResult<Option<BindingRecord>> {
        self.read(|c| query_binding(c, exchange_folded))
    }

    async fn create_binding(&self, new: NewBinding) -> StoreResult<CreateOutcome> {
        use exbind_api::accounts::fold;
        self.write(move |c| {
            let exchange_folded = fold(&new.exchange_account);
            let admin_folded = fold(&new.admin_account);
            if let Some(found) = rules::exchange_bound(query_binding(c, &exchange_folded)?, &new) {
                return Ok(found);
            }
            let user_bound: bool = c
                .prepare_cached("SELECT 1 FROM bindings WHERE tenant_key = ?1 AND user_id = ?2")?
                .exists([&new.tenant_key, &new.user_id])?;
            if user_bound {
                return Ok(CreateOutcome::UserTaken);
            }
            c.prepare_cached(
                "INSERT INTO bindings (exchange_folded, admin_folded, admin_account, exchange_account, \
                 tenant_key, user_id, status, reason, scenario, next_at, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'doing', NULL, ?7, ?8, ?9, ?9)",
            )?
            .execute(params![
                exchange_folded,
                admin_folded,
                new.admin_account,
                new.exchange_account,
                new.tenant_key,
                new.user_id,
                to_json(&new.scenario),
                new.next_at,
                new.now,
            ])?;
            let seq = c.last_insert_rowid();
            insert_steps(c, seq, &[rules::first_step(new.now)])?;
            Ok(CreateOutcome::Created(rules::created(seq, new)))
        })
        .await
    }

    async fn delete_binding(
        &self,
        tenant_key: &str,
        admin_folded: &str,
        exchange_folded: &str,
    ) -> StoreResult<Option<BindingRecord>> {
        let (t, a, e) = (
            tenant_key.to_string(),
            admin_folded.to_string(),
            exchange_folded.to_string(),
        );
        self.write(move |c| {
            let Some(b) = query_binding(c, &e)? else {
                return Ok(None);
            };
            if !rules::owns(&b, &t, &a) {
                return Ok(None);
            }
            c.prepare_cached("DELETE FROM bindings WHERE seq = ?1")?
                .execute([b.seq])?;
            c.prepare_cached("DELETE FROM binding_steps WHERE seq = ?1")?
                .execute([b.seq])?;
            Ok(Some(b))
        })
        .await
    }

    async fn scan_bindings(&self, after: i64, limit: usize) -> StoreResult<Vec<BindingRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {BINDING_COLS} FROM bindings WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))?
            .query_map(params![after, limit as i64], binding_row)?
            .collect()
        })
    }

    async fn list_bindings(
        &self,
        tenant_key: &str,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<BindingRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {BINDING_COLS} FROM bindings WHERE tenant_key = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
            ))?
            .query_map(params![tenant_key, after, limit as i64], binding_row)?
            .collect()
        })
    }

    async fn binding_counts(&self) -> StoreResult<Vec<(BindingStatus, u64)>> {
        self.read(|c| {
            c.prepare_cached("SELECT status, COUNT(*) FROM bindings GROUP BY status")?
                .query_map([], |r| {
                    Ok((parse_col(r, 0, BindingStatus::parse)?, r.get(1)?))
                })?
                .collect()
        })
    }

    async fn with_histories(&self, seqs: &[i64]) -> StoreResult<Vec<(BindingRecord, Vec<Step>)>> {
        self.read(|c| {
            // One read transaction, so one snapshot: the sync engine commits a step's status
            // and its history entry together.
            let tx = c.unchecked_transaction()?;
            let mut record = tx.prepare_cached(&format!(
                "SELECT {BINDING_COLS} FROM bindings WHERE seq = ?1"
            ))?;
            let mut steps = tx.prepare_cached(
                "SELECT status, at FROM binding_steps WHERE seq = ?1 ORDER BY at, rowid",
            )?;
            let mut out = Vec::with_capacity(seqs.len());
            for seq in seqs {
                let Some(b) = record.query_row([seq], binding_row).optional()? else {
                    continue;
                };
                let history = steps
                    .query_map([seq], |r| {
                        Ok(Step {
                            status: parse_col(r, 0, BindingStatus::parse)?,
                            at: r.get(1)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                out.push((b, history));
            }
            Ok(out)
        })
    }

    async fn due_bindings(&self, now: i64, limit: usize) -> StoreResult<Vec<BindingRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {BINDING_COLS} FROM bindings WHERE next_at IS NOT NULL AND next_at <= ?1 \
                 ORDER BY next_at LIMIT ?2"
            ))?
            .query_map(params![now, limit as i64], binding_row)?
            .collect()
        })
    }

    async fn next_deadline(&self) -> StoreResult<Option<i64>> {
        self.read(|c| {
            c.prepare_cached("SELECT MIN(next_at) FROM bindings WHERE next_at IS NOT NULL")?
                .query_row([], |r| r.get(0))
        })
    }

    async fn change_status(&self, changes: Vec<StatusChange>, now: i64) -> StoreResult<Vec<bool>> {
        self.write(move |c| {
            changes
                .iter()
                .map(|ch| apply_change(c, ch, now).map_err(StoreError::from))
                .collect()
        })
        .await
    }

    async fn scenario(&self, account_folded: &str) -> StoreResult<Option<ExchangeScenario>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT account, tenant_key, scenario, stage, reason FROM exchange_scenarios \
                 WHERE account_folded = ?1",
            )?
            .query_row([account_folded], scenario_row)
            .optional()
        })
    }

    async fn put_scenario(&self, s: ExchangeScenario) -> StoreResult<()> {
        self.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO exchange_scenarios \
                 (account_folded, account, tenant_key, scenario, stage, reason) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    exbind_api::accounts::fold(&s.account),
                    s.account,
                    s.tenant_key,
                    s.scenario,
                    s.stage,
                    s.reason
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_scenario(&self, tenant_key: &str, account_folded: &str) -> StoreResult<bool> {
        let (t, a) = (tenant_key.to_string(), account_folded.to_string());
        self.write(move |c| {
            Ok(c.execute(
                "DELETE FROM exchange_scenarios WHERE tenant_key = ?1 AND account_folded = ?2",
                [&t, &a],
            )? > 0)
        })
        .await
    }

    async fn delete_tenant_bindings(&self, tenant_key: &str) -> StoreResult<u64> {
        let t = tenant_key.to_string();
        self.write(move |c| {
            c.execute(
                "DELETE FROM binding_steps WHERE seq IN (SELECT seq FROM bindings WHERE tenant_key = ?1)",
                [&t],
            )?;
            Ok(c.execute("DELETE FROM bindings WHERE tenant_key = ?1", [&t])? as u64)
        })
        .await
    }

    async fn reset(&self) -> StoreResult<()> {
        self.write(|c| {
            c.execute_batch(
                "DELETE FROM tenants; DELETE FROM users; DELETE FROM exchange_admins; \
                 DELETE FROM exchange_scenarios; DELETE FROM apps; DELETE FROM app_tokens; DELETE FROM app_tickets; \
                 DELETE FROM user_tokens; DELETE FROM bindings; DELETE FROM binding_steps; \
                 DELETE FROM oauth_codes; DELETE FROM refresh_tokens;",
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(expires_at: i64) -> OAuthCode {
        OAuthCode {
            grant: Grant {
                id: "g".into(),
                app_id: "a".into(),
                tenant_key: "t".into(),
                user_id: "u".into(),
                scopes: vec!["offline_access".into()],
            },
            redirect_uri: "http://127.0.0.1/cb".into(),
            challenge: None,
            expires_at,
            used: false,
        }
    }

    fn issued(token: &str) -> Issued {
        Issued {
            access_token: token.into(),
            access: UserToken {
                app_id: "a".into(),
                tenant_key: "t".into(),
                user_id: "u".into(),
                scopes: vec![],
                expires_at: 1,
                revoked: false,
                grant_id: Some("g".into()),
            },
            refresh: None,
        }
    }

    #[tokio::test]
    async fn a_code_is_spent_once_and_long_expired_ones_are_forgotten() {
        let s = SqliteStore::open(Path::new(MEMORY)).unwrap();
        let day = 24 * 3600 * 1000;
        s.insert_oauth_code("old", code(1), 1).await.unwrap();
        s.insert_oauth_code("new", code(10 * day), 2 * day)
            .await
            .unwrap();
        assert!(s.oauth_code("old").await.unwrap().is_none());
        assert!(s
            .redeem(Spent::Code("new".into()), issued("t1"))
            .await
            .unwrap());
        assert!(!s
            .redeem(Spent::Code("new".into()), issued("t2"))
            .await
            .unwrap());
        assert!(s.oauth_code("new").await.unwrap().unwrap().used);
        assert!(s.user_token("t1").await.unwrap().is_some());
        assert!(
            s.user_token("t2").await.unwrap().is_none(),
            "a losing redeem keeps nothing"
        );
        s.revoke_grant("g").await.unwrap();
        assert!(s.user_token("t1").await.unwrap().unwrap().revoked);
    }
}
