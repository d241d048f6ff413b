//! Several `exbind serve` processes on one fresh PostgreSQL schema and Redis key prefix,
//! both dropped when the cluster is. PostgreSQL: `EXBIND_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); Redis: `EXBIND_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379/`).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Server, ADMIN_TOKEN};

pub fn database_url() -> String {
    std::env::var("EXBIND_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn redis_url() -> String {
    std::env::var("EXBIND_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A name no other test run uses, under `EXBIND_TEST_PREFIX` (default `exbindtest`), so
/// what a run leaves behind can be found.
pub fn unique(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let prefix = std::env::var("EXBIND_TEST_PREFIX").unwrap_or_else(|_| "exbindtest".into());
    format!(
        "{prefix}_{}_{what}_{}_{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub struct Cluster {
    pub servers: Vec<Server>,
    pub schema: String,
    pub prefix: String,
    turn: AtomicUsize,
}

impl Cluster {
    /// `n` servers with `seed`, on Redis counters.
    pub fn start(n: usize, seed: &str, args: &[&str]) -> Cluster {
        Cluster::start_with(n, seed, args, true)
    }

    /// `n` servers; counters in Redis when `redis`, else in PostgreSQL.
    pub fn start_with(n: usize, seed: &str, args: &[&str], redis: bool) -> Cluster {
        let schema = unique("exbind").to_lowercase();
        let prefix = format!("{schema}:");
        let mut c = Cluster {
            servers: Vec::new(),
            schema,
            prefix,
            turn: AtomicUsize::new(0),
        };
        for _ in 0..n {
            let s = Server::builder()
                .seed(seed)
                .args(&c.args(redis))
                .args(args)
                .start();
            c.servers.push(s);
        }
        c
    }

    /// The flags that put a server in this cluster.
    pub fn args(&self, redis: bool) -> Vec<&str> {
        let mut a = vec![
            "--database-url",
            leak(database_url()),
            "--database-schema",
            &self.schema,
        ];
        if redis {
            a.extend([
                "--redis-url",
                leak(redis_url()),
                "--redis-prefix",
                &self.prefix,
            ]);
        }
        a
    }

    /// The servers in turn, so consecutive requests land on different ones.
    pub fn next(&self) -> &Server {
        let i = self.turn.fetch_add(1, Ordering::Relaxed);
        &self.servers[i % self.servers.len()]
    }

    pub fn at(&self, i: usize) -> &Server {
        &self.servers[i % self.servers.len()]
    }

    pub fn admin_token(&self) -> &str {
        ADMIN_TOKEN
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Drops a schema and every Redis key under a prefix.
pub fn drop_shared(schema: &str, prefix: &str) {
    let (schema, prefix) = (schema.to_string(), prefix.to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Ok((client, conn)) =
                tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await
            {
                tokio::spawn(conn);
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await;
            }
        });
        if let Ok(mut r) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query(&mut r)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut r);
            }
        }
    })
    .join()
    .unwrap();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The servers stop before their schema goes.
        self.servers.clear();
        drop_shared(&self.schema, &self.prefix);
    }
}
