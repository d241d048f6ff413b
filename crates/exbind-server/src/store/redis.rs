//! Counters in Redis (`--redis-url`): quota windows and fault rules' firings. Each
//! check-and-count is one Lua script, which Redis runs atomically, so limits and `times` hold
//! exactly over every server; each window's key expires after the window. Every call is
//! bounded in time: Redis down answers 190003, never "allow all".

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{StoreError, StoreResult};
use crate::limits::{SharedCounters, Window};

/// KEYS: the windows; ARGV: their limits, then their lifetimes in ms. Answers 0 when all had
/// room (each now counts one more), else the 1-based index of the first full one.
const TAKE: &str = r#"
local n = #KEYS
for i = 1, n do
  local c = tonumber(redis.call('GET', KEYS[i]) or '0')
  if c >= tonumber(ARGV[i]) then return i end
end
for i = 1, n do
  if redis.call('INCR', KEYS[i]) == 1 then
    redis.call('PEXPIRE', KEYS[i], ARGV[n + i])
  end
end
return 0
"#;

/// KEYS: a fault rule's firings; ARGV: its `times`, or -1 for no bound. Counts one firing
/// and answers 1 (2 when that was its last), or answers 0 when the rule has none left.
const FIRE: &str = r#"
local times = tonumber(ARGV[1])
if times >= 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= times then return 0 end
local n = redis.call('INCR', KEYS[1])
if n == times then return 2 end
return 1
"#;

/// What counting one firing of a fault rule found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// The rule had none left.
    No,
    Yes,
    /// It fired, and has none left now.
    Last,
}

pub struct RedisCounters {
    conn: ConnectionManager,
    prefix: String,
    script: redis::Script,
    fire: redis::Script,
    op_timeout: Duration,
}

fn redis_error(e: redis::RedisError) -> StoreError {
    StoreError(format!("redis: {e}"))
}

/// Where a Redis URL points, for the one line an unreachable Redis gets.
fn describe(url: &str) -> String {
    match redis::Client::open(url) {
        Ok(c) => match &c.get_connection_info().addr {
            redis::ConnectionAddr::Tcp(h, p)
            | redis::ConnectionAddr::TcpTls {
                host: h, port: p, ..
            } => {
                format!("{h}:{p}")
            }
            other => other.to_string(),
        },
        Err(_) => url.to_string(),
    }
}

/// Why Redis could not be used at start: a bad URL (exit 2) or no answer (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("--redis-url: {0}")]
    Config(String),
    #[error("cannot reach Redis at {0}: {1}")]
    Unreachable(String, String),
}

impl RedisCounters {
    pub async fn open(url: &str, prefix: &str, op_timeout: Duration) -> Result<Self, OpenError> {
        let client = redis::Client::open(url).map_err(|e| OpenError::Config(e.to_string()))?;
        let unreachable = |e: String| OpenError::Unreachable(describe(url), e);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(op_timeout)
            .set_response_timeout(op_timeout)
            .set_number_of_retries(1);
        let mut conn = tokio::time::timeout(
            op_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| unreachable("no answer".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(RedisCounters {
            conn,
            prefix: prefix.to_string(),
            script: redis::Script::new(TAKE),
            fire: redis::Script::new(FIRE),
            op_timeout,
        })
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> StoreResult<T> {
        match tokio::time::timeout(self.op_timeout, f).await {
            Ok(r) => r.map_err(redis_error),
            Err(_) => Err(StoreError(format!(
                "redis: no answer within {} ms",
                self.op_timeout.as_millis()
            ))),
        }
    }
}

impl RedisCounters {
    /// Where a fault rule's firings are counted (its id is never reused: a sequence's).
    fn fault_key(&self, id: &str) -> String {
        format!("{}fault:{id}", self.prefix)
    }

    /// Counts one firing of the rule `id`, unless it has fired `times` already.
    pub async fn fire_fault(&self, id: &str, times: Option<u64>) -> StoreResult<Fired> {
        let times = times.map_or(-1, |t| i64::try_from(t).unwrap_or(i64::MAX));
        let mut inv = self.fire.prepare_invoke();
        inv.key(self.fault_key(id)).arg(times);
        let mut conn = self.conn.clone();
        let fired: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(match fired {
            0 => Fired::No,
            2 => Fired::Last,
            _ => Fired::Yes,
        })
    }

    /// How often each rule has fired.
    pub async fn fault_hits(&self, ids: &[&str]) -> StoreResult<Vec<u64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.fault_key(id)).collect();
        let mut conn = self.conn.clone();
        let hits: Vec<Option<u64>> = self
            .bounded(redis::cmd("MGET").arg(&keys).query_async(&mut conn))
            .await?;
        Ok(hits.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// Forgets the firings of rules that are gone.
    pub async fn forget_faults(&self, ids: &[&str]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.fault_key(id)).collect();
        let mut conn = self.conn.clone();
        let _: i64 = self
            .bounded(redis::cmd("DEL").arg(&keys).query_async(&mut conn))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl SharedCounters for RedisCounters {
    async fn take(&self, windows: &[Window], now: i64) -> StoreResult<Option<usize>> {
        let mut inv = self.script.prepare_invoke();
        for w in windows {
            inv.key(format!("{}{}", self.prefix, w.key));
        }
        for w in windows {
            inv.arg(w.limit);
        }
        for w in windows {
            // Kept a little past the window's end, so a slow clock elsewhere still counts.
            inv.arg((w.ends_at - now).max(0) + 5000);
        }
        let mut conn = self.conn.clone();
        let full: usize = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(full.checked_sub(1))
    }

    async fn clear(&self) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}*", redis_glob_escape(&self.prefix));
        let keys: Vec<String> = self
            .bounded(async {
                let mut cursor: u64 = 0;
                let mut all = Vec::new();
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn)
                        .await?;
                    all.extend(keys);
                    if next == 0 {
                        return Ok(all);
                    }
                    cursor = next;
                }
            })
            .await?;
        for chunk in keys.chunks(500) {
            let mut conn = self.conn.clone();
            let _: i64 = self
                .bounded(redis::cmd("DEL").arg(chunk).query_async(&mut conn))
                .await?;
        }
        Ok(())
    }
}

/// A prefix as a literal in a SCAN pattern.
fn redis_glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
