//! What servers on one PostgreSQL share beside the store: counters (when no Redis is given),
//! fault rules and the request journal. Each check-and-count is one transaction (or one Redis
//! script), exact over all servers.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use exbind_api::ErrorCode;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use super::generation::Map;
use super::postgres::Db;
use super::redis::{Fired, RedisCounters};
use super::{StoreError, StoreResult};
use crate::domain::model::UserToken;
use crate::events::{Event, Relay};
use crate::faults::{FaultRule, FaultStore};
use crate::journal::{self, Entry, Filter, JournalStore};
use crate::limits::{SharedCounters, Window};
use crate::pipeline::Identity;
use crate::state::AppState;

/// Counters in the `counters` table.
pub struct PgCounters(pub Db);

#[async_trait]
impl SharedCounters for PgCounters {
    async fn take(&self, windows: &[Window], now: i64) -> StoreResult<Option<usize>> {
        // Rows are created and locked in key order, so two servers never deadlock.
        let mut sorted: Vec<&Window> = windows.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        let keys: Vec<&str> = sorted.iter().map(|w| w.key.as_str()).collect();
        let ends: Vec<i64> = sorted.iter().map(|w| w.ends_at).collect();
        self.0
            .bounded(async {
                let mut c = self.0.conn().await?;
                let tx = c.transaction().await?;
                let st = tx
                    .prepare_cached(
                        "INSERT INTO counters (key, n, expires_at) \
                         SELECT k, 0, e FROM unnest($1::text[], $2::bigint[]) AS u(k, e) \
                         ON CONFLICT (key) DO NOTHING",
                    )
                    .await?;
                tx.execute(&st, &[&keys, &ends]).await?;
                let st = tx
                    .prepare_cached(
                        "SELECT key, n FROM counters WHERE key = ANY($1) ORDER BY key FOR UPDATE",
                    )
                    .await?;
                let counts: Vec<(String, i64)> = tx
                    .query(&st, &[&keys])
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<StoreResult<_>>()?;
                let count =
                    |key: &str| counts.iter().find(|(k, _)| k == key).map_or(0, |(_, n)| *n);
                if let Some(full) = windows
                    .iter()
                    .position(|w| count(&w.key) >= i64::from(w.limit))
                {
                    tx.rollback().await?;
                    return Ok(Some(full));
                }
                let st = tx
                    .prepare_cached("UPDATE counters SET n = n + 1 WHERE key = ANY($1)")
                    .await?;
                tx.execute(&st, &[&keys]).await?;
                // Windows that ended a minute ago are forgotten now and then.
                if rand::random::<u8>() == 0 {
                    tx.execute(
                        "DELETE FROM counters WHERE expires_at < $1",
                        &[&(now - 120_000)],
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(None)
            })
            .await
    }

    async fn clear(&self) -> StoreResult<()> {
        self.0.execute("DELETE FROM counters", &[]).await.map(drop)
    }
}

/// Fault rules in the `faults` table; their ids are `fault-` and the row's id. With Redis
/// given, their firings are counted there (`times` in the row stays as armed), else in the
/// row. The rules a request matches against are cached under the generation, which arming,
/// removing and clearing advance.
pub struct PgFaults {
    db: Db,
    redis: Option<Arc<RedisCounters>>,
    cache: Map<(), Arc<Vec<FaultRule>>>,
}

impl PgFaults {
    pub fn new(db: Db, redis: Option<Arc<RedisCounters>>) -> PgFaults {
        PgFaults {
            db,
            redis,
            cache: Map::rows(),
        }
    }

    async fn read(&self) -> StoreResult<Vec<FaultRule>> {
        self.db
            .read_all(
                "SELECT id, method, route, app_id, tenant_key, times, fraction, error_code, \
                 latency_ms, expires_at, hits FROM faults ORDER BY id",
                &[],
                |r| {
                    let code: Option<i64> = r.try_get(7)?;
                    Ok(FaultRule {
                        id: format!("fault-{}", r.try_get::<_, i64>(0)?),
                        method: r.try_get(1)?,
                        route: r.try_get(2)?,
                        app_id: r.try_get(3)?,
                        tenant_key: r.try_get(4)?,
                        times: non_negative(r.try_get(5)?)?,
                        fraction: r.try_get(6)?,
                        error: code.and_then(ErrorCode::from_code),
                        latency_ms: non_negative(r.try_get(8)?)?,
                        expires_at: r.try_get(9)?,
                        hits: non_negative(r.try_get(10)?)?.unwrap_or(0),
                    })
                },
            )
            .await
    }
}

fn row_id(id: &str) -> Option<i64> {
    id.strip_prefix("fault-")?.parse().ok()
}

fn non_negative(v: Option<i64>) -> StoreResult<Option<u64>> {
    v.map(|n| u64::try_from(n).map_err(|_| StoreError(format!("postgres: negative count {n}"))))
        .transpose()
}

#[async_trait]
impl FaultStore for PgFaults {
    async fn add(&self, r: &FaultRule) -> StoreResult<String> {
        let id = self
            .db
            .read_opt(
                "INSERT INTO faults (method, route, app_id, tenant_key, times, fraction, \
                 error_code, latency_ms, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 RETURNING id",
                &[
                    &r.method,
                    &r.route,
                    &r.app_id,
                    &r.tenant_key,
                    &r.times.map(|t| t as i64),
                    &r.fraction,
                    &r.error.map(|e| e.code()),
                    &r.latency_ms.map(|l| l as i64),
                    &r.expires_at,
                ],
                |row| Ok(row.try_get::<_, i64>(0)?),
            )
            .await?
            .ok_or_else(|| StoreError("postgres: insert returned no id".into()))?;
        self.db.advance().await?;
        Ok(format!("fault-{id}"))
    }

    async fn rules_of(&self, route: &str) -> StoreResult<Vec<FaultRule>> {
        let all = self
            .cache
            .get_or_load((), async { Ok(Some(Arc::new(self.read().await?))) })
            .await?
            .unwrap_or_default();
        Ok(all.iter().filter(|r| r.route == route).cloned().collect())
    }

    async fn rules(&self) -> StoreResult<Vec<FaultRule>> {
        let mut rules = self.read().await?;
        if let Some(redis) = &self.redis {
            let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
            let hits = redis.fault_hits(&ids).await?;
            for (r, hits) in rules.iter_mut().zip(hits) {
                r.hits = hits;
                r.times = r.times.map(|t| t.saturating_sub(hits));
            }
        }
        Ok(rules)
    }

    async fn remove(&self, id: &str) -> StoreResult<bool> {
        let Some(row) = row_id(id) else {
            return Ok(false);
        };
        let gone = self
            .db
            .execute("DELETE FROM faults WHERE id = $1", &[&row])
            .await?
            > 0;
        self.db.advance().await?;
        if let Some(redis) = &self.redis {
            redis.forget_faults(&[id]).await?;
        }
        Ok(gone)
    }

    async fn clear(&self) -> StoreResult<()> {
        let ids = self
            .db
            .read_all("DELETE FROM faults RETURNING id", &[], |r| {
                Ok(format!("fault-{}", r.try_get::<_, i64>(0)?))
            })
            .await?;
        self.db.advance().await?;
        if let Some(redis) = &self.redis {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            redis.forget_faults(&ids).await?;
        }
        Ok(())
    }

    async fn fire(&self, rule: &FaultRule) -> StoreResult<bool> {
        let Some(id) = row_id(&rule.id) else {
            return Ok(false);
        };
        let last = match &self.redis {
            Some(redis) => match redis.fire_fault(&rule.id, rule.times).await? {
                Fired::No => return Ok(false),
                Fired::Yes => false,
                Fired::Last => true,
            },
            None => {
                let left = self
                    .db
                    .read_opt(
                        "UPDATE faults SET times = times - 1, hits = hits + 1 \
                         WHERE id = $1 AND (times IS NULL OR times > 0) RETURNING times",
                        &[&id],
                        |r| Ok(r.try_get::<_, Option<i64>>(0)?),
                    )
                    .await?;
                match left {
                    None => return Ok(false),
                    Some(left) => left == Some(0),
                }
            }
        };
        // A spent rule is marked so in the row and the cached rules are dropped, so no
        // server keeps trying to fire it.
        if last {
            if self.redis.is_some() {
                self.db
                    .execute("UPDATE faults SET times = 0 WHERE id = $1", &[&id])
                    .await?;
            }
            self.db.advance().await?;
        }
        Ok(true)
    }
}

/// The request journal in the `journal` table; each entry is also handed to the relay, so
/// that the other servers' event streams and overviews show it.
pub struct PgJournal {
    db: Db,
    relay: Option<Arc<PgRelay>>,
}

impl PgJournal {
    pub fn new(db: Db, relay: Option<Arc<PgRelay>>) -> PgJournal {
        PgJournal { db, relay }
    }
}

const JOURNAL_COLS: &str = "seq, at_ms, method, path, route, app_id, tenant_key, user_id, \
                            status, code, log_id, latency_ms, binding";

/// Only the newest `capacity` entries are answered, whatever is still in the table.
const NEWEST: &str = "seq > (SELECT COALESCE(MAX(seq), 0) FROM journal) - $1";

/// A journal entry as the `journal` table holds it, and as it crosses to the other servers.
#[derive(Serialize, Deserialize)]
struct JournalRow {
    seq: i64,
    at_ms: i64,
    method: String,
    path: String,
    route: String,
    app_id: Option<String>,
    tenant_key: Option<String>,
    user_id: Option<String>,
    status: i32,
    code: i64,
    log_id: String,
    latency_ms: f64,
    binding: Option<String>,
}

impl JournalRow {
    fn of(e: &Entry) -> JournalRow {
        let who = e.who.as_ref();
        JournalRow {
            seq: e.seq as i64,
            at_ms: e.at_ms,
            method: e.method.as_str().to_string(),
            path: e.path.clone(),
            route: e.route.to_string(),
            app_id: who.map(|w| w.app_id().to_string()),
            tenant_key: who.and_then(Identity::tenant_key).map(str::to_string),
            user_id: who.and_then(Identity::user_id).map(str::to_string),
            status: i32::from(e.status),
            code: e.code,
            log_id: e.log_id.clone(),
            latency_ms: e.latency_ms,
            binding: e.binding.clone(),
        }
    }

    fn entry(self) -> StoreResult<Entry> {
        // What the journal shows of a caller: its app, and for a user token its tenant and
        // user.
        let who = match (self.app_id, self.tenant_key, self.user_id) {
            (Some(app_id), Some(tenant_key), Some(user_id)) => {
                Some(Identity::User(Arc::new(UserToken {
                    app_id,
                    tenant_key,
                    user_id,
                    scopes: Vec::new(),
                    expires_at: 0,
                    revoked: false,
                    grant_id: None,
                })))
            }
            (Some(app_id), None, _) => Some(Identity::App(app_id)),
            _ => None,
        };
        let method = self.method;
        Ok(Entry {
            seq: self.seq as u64,
            at_ms: self.at_ms,
            method: method
                .parse()
                .map_err(|_| StoreError(format!("journal: bad method {method:?}")))?,
            path: self.path,
            route: crate::http::route_label(&self.route),
            who,
            status: u16::try_from(self.status)
                .map_err(|_| StoreError(format!("journal: bad status {}", self.status)))?,
            code: self.code,
            log_id: self.log_id,
            latency_ms: self.latency_ms,
            binding: self.binding,
        })
    }
}

fn journal_row(r: &tokio_postgres::Row) -> StoreResult<Entry> {
    JournalRow {
        seq: r.try_get(0)?,
        at_ms: r.try_get(1)?,
        method: r.try_get(2)?,
        path: r.try_get(3)?,
        route: r.try_get(4)?,
        app_id: r.try_get(5)?,
        tenant_key: r.try_get(6)?,
        user_id: r.try_get(7)?,
        status: r.try_get(8)?,
        code: r.try_get(9)?,
        log_id: r.try_get(10)?,
        latency_ms: r.try_get(11)?,
        binding: r.try_get(12)?,
    }
    .entry()
}

#[async_trait]
impl JournalStore for PgJournal {
    async fn record(&self, e: &Entry, capacity: usize) -> StoreResult<()> {
        let who = e.who.as_ref();
        self.db
            .execute(
                "INSERT INTO journal (at_ms, method, path, route, app_id, tenant_key, user_id, \
                 status, code, log_id, latency_ms, binding) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &[
                    &e.at_ms,
                    &e.method.as_str(),
                    &e.path,
                    &e.route,
                    &who.map(Identity::app_id),
                    &who.and_then(Identity::tenant_key),
                    &who.and_then(Identity::user_id),
                    &i32::from(e.status),
                    &e.code,
                    &e.log_id,
                    &e.latency_ms,
                    &e.binding,
                ],
            )
            .await?;
        if let Some(relay) = &self.relay {
            relay.request(e);
        }
        // What fell out of the newest `capacity` is dropped now and then.
        if rand::random::<u8>() < 4 {
            self.db
                .execute(
                    "DELETE FROM journal WHERE seq <= (SELECT MAX(seq) FROM journal) - $1",
                    &[&(capacity as i64)],
                )
                .await?;
        }
        Ok(())
    }

    async fn query(
        &self,
        f: &Filter,
        limit: usize,
        capacity: usize,
    ) -> StoreResult<(Vec<Entry>, Option<u64>)> {
        let sql = format!(
            "SELECT {JOURNAL_COLS} FROM journal WHERE {NEWEST} \
             AND ($2::text IS NULL OR upper(method) = upper($2)) \
             AND ($3::text IS NULL OR route = $3) \
             AND ($4::text IS NULL OR app_id = $4) \
             AND ($5::text IS NULL OR tenant_key = $5) \
             AND ($6::text IS NULL OR user_id = $6) \
             AND ($7::integer IS NULL OR status = $7) \
             AND ($8::bigint IS NULL OR code = $8) \
             AND ($9::bigint IS NULL OR at_ms >= $9) \
             AND ($10::bigint IS NULL OR seq < $10) \
             ORDER BY seq DESC LIMIT $11"
        );
        let out = self
            .db
            .read_all(
                &sql,
                &[
                    &(capacity as i64),
                    &f.method,
                    &f.route,
                    &f.app_id,
                    &f.tenant_key,
                    &f.user_id,
                    &f.status.map(i32::from),
                    &f.code,
                    &f.since_ms,
                    &f.before_seq.map(|s| s as i64),
                    &(limit as i64 + 1),
                ],
                journal_row,
            )
            .await?;
        Ok(journal::page(out, limit))
    }

    async fn by_log_id(&self, log_id: &str, capacity: usize) -> StoreResult<Option<Entry>> {
        let sql = format!(
            "SELECT {JOURNAL_COLS} FROM journal WHERE {NEWEST} AND log_id = $2 \
             ORDER BY seq DESC LIMIT 1"
        );
        self.db
            .read_opt(&sql, &[&(capacity as i64), &log_id], journal_row)
            .await
    }
}

/// The event relay over PostgreSQL `LISTEN/NOTIFY`, on a channel named after the schema:
/// this server's binding events and journal entries go out in batches (one `pg_notify`
/// statement each, off the request path), and what the other servers send comes in on a
/// connection of its own, to this server's event streams and in-memory journal only. Best
/// effort, as the event bus is: what is sent while the database is out is lost (a stream
/// shows the state again on its next `reload`); the listener reconnects by itself.
pub struct PgRelay {
    db: Db,
    out: mpsc::Sender<String>,
    /// Tells this server's own notifications, which come back to it, from the others'.
    origin: u64,
}

/// Messages waiting to go out; beyond this they are dropped, as a slow stream's are.
const RELAY_QUEUE: usize = 4096;
/// NOTIFY refuses a payload of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7900;

#[derive(Serialize, Deserialize)]
struct Message {
    origin: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    binding: Option<BindingMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request: Option<JournalRow>,
}

/// The relay's own connection, `LISTEN`ing.
struct Listening {
    /// Kept so that the connection stays open.
    _client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<()>,
    rx: mpsc::UnboundedReceiver<String>,
}

#[derive(Serialize, Deserialize)]
struct BindingMessage {
    tenant_key: Option<String>,
    data: String,
}

impl PgRelay {
    /// Starts sending; `listen` starts receiving once the server's state exists.
    pub fn start(db: Db) -> Arc<PgRelay> {
        let (out, rx) = mpsc::channel(RELAY_QUEUE);
        tokio::spawn(send_batches(db.clone(), rx));
        Arc::new(PgRelay {
            db,
            out,
            origin: rand::random(),
        })
    }

    fn push(&self, m: Message) {
        let payload = serde_json::to_string(&m).expect("serializable");
        if payload.len() <= MAX_PAYLOAD {
            // A full queue drops the message: the request path never waits for the relay.
            let _ = self.out.try_send(payload);
        }
    }

    fn request(&self, e: &Entry) {
        self.push(Message {
            origin: self.origin,
            binding: None,
            request: Some(JournalRow::of(e)),
        });
    }

    /// Receives the other servers' messages for as long as the server runs; listening
    /// already when it returns, unless the database did not answer (then it keeps trying).
    pub async fn listen(self: &Arc<Self>, state: Weak<AppState>) {
        let first = self.subscribe().await;
        let me = self.clone();
        tokio::spawn(async move {
            let mut next = first;
            while state.strong_count() > 0 {
                match next {
                    Ok(l) => me.pump(l, &state).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "event relay: not listening; trying again")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                next = me.subscribe().await;
            }
        });
    }

    async fn subscribe(&self) -> StoreResult<Listening> {
        let (client, mut conn) = self.db.connect().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(Ok(m)) = messages.next().await {
                if let AsyncMessage::Notification(n) = m {
                    if tx.send(n.payload().to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        let listen = format!("LISTEN {}", self.db.schema());
        let listening = self
            .db
            .bounded(async { Ok(client.batch_execute(&listen).await?) })
            .await;
        if let Err(e) = listening {
            driver.abort();
            return Err(e);
        }
        Ok(Listening {
            _client: client,
            driver,
            rx,
        })
    }

    /// Hands on what comes in until the connection drops (its driver ends and the channel
    /// closes) or the server is gone.
    async fn pump(&self, mut l: Listening, state: &Weak<AppState>) {
        while let Some(payload) = l.rx.recv().await {
            let Some(state) = state.upgrade() else { break };
            self.deliver(&state, &payload);
        }
        l.driver.abort();
    }

    fn deliver(&self, state: &AppState, payload: &str) {
        let Ok(m) = serde_json::from_str::<Message>(payload) else {
            tracing::warn!("event relay: a message it cannot read");
            return;
        };
        if m.origin == self.origin {
            return;
        }
        if let Some(b) = m.binding {
            state.events.deliver(Event {
                kind: "binding",
                tenant_key: b.tenant_key,
                data: b.data.into(),
            });
        }
        if let Some(r) = m.request {
            match r.entry() {
                Ok(e) => state.journal.record(e),
                Err(e) => tracing::warn!(error = %e, "event relay: a journal entry it cannot read"),
            }
        }
    }
}

impl Relay for PgRelay {
    fn send(&self, event: &Event) {
        self.push(Message {
            origin: self.origin,
            binding: Some(BindingMessage {
                tenant_key: event.tenant_key.clone(),
                data: event.data.to_string(),
            }),
            request: None,
        });
    }
}

/// Sends what is queued, as many messages per statement as have piled up.
async fn send_batches(db: Db, mut rx: mpsc::Receiver<String>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 256).await > 0 {
        let sent = db
            .execute(
                "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
                &[&db.schema(), &batch],
            )
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, dropped = batch.len(), "event relay: cannot send");
        }
        batch.clear();
    }
}
