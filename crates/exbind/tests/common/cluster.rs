//! Several `exbind serve` processes on one fresh PostgreSQL schema and Redis key prefix,
//! both dropped when the cluster is. PostgreSQL: `EXBIND_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); Redis: `EXBIND_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379/`).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{repo_root, Server, ServerBuilder, Sinks, ADMIN_TOKEN, PATIENCE};

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
                .single()
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
    on_own_runtime(async move {
        if let Ok((client, conn)) =
            tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await
        {
            tokio::spawn(conn);
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await;
        }
        if let Ok(mut r) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query(&mut r)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut r);
            }
        }
    });
}

/// A value of the `meta` table in `schema`.
pub fn store_meta(schema: &str, key: &str) -> Vec<u8> {
    let sql = format!("SELECT value FROM {schema}.meta WHERE key = $1");
    let key = key.to_string();
    on_own_runtime(async move {
        let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL");
        tokio::spawn(conn);
        client.query_one(&sql, &[&key]).await.unwrap().get(0)
    })
}

/// Runs `f` to its end on a runtime of its own, on a thread of its own: callers may be
/// inside a test's runtime (or its `Drop`), where blocking on another is not allowed.
fn on_own_runtime<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
    .join()
    .unwrap()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The servers stop before their schema goes.
        self.servers.clear();
        drop_shared(&self.schema, &self.prefix);
    }
}

/// Whether `EXBIND_TEST_STORE=cluster` asks every [`Server`] to be three servers on one
/// fresh schema and Redis prefix behind one HAProxy front (the default, `sqlite`, is one
/// server on its own data dir).
pub fn enabled() -> bool {
    match std::env::var("EXBIND_TEST_STORE").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => false,
        Ok("cluster") => true,
        Ok(other) => panic!("EXBIND_TEST_STORE={other}: expected sqlite or cluster"),
    }
}

/// True (and says why on stderr) when the calling test cannot hold in cluster mode by
/// nature; the test then returns.
pub fn skip_in_cluster(why: &str) -> bool {
    if enabled() {
        eprintln!("skipped in cluster mode: {why}");
    }
    enabled()
}

/// How many servers stand behind a test front.
const MEMBERS: usize = 3;

/// How many servers answer at a test server's address: one, or a front's members.
pub fn members() -> usize {
    if enabled() {
        MEMBERS
    } else {
        1
    }
}

/// The servers behind a cluster-mode [`Server`], its HAProxy, and the shared store they use.
pub struct Front {
    pub members: Vec<Server>,
    haproxy: Option<Child>,
    socket: PathBuf,
    pub(super) schema: String,
    prefix: String,
    dir: tempfile::TempDir,
}

/// What `ServerBuilder::start` does in cluster mode.
pub(super) fn start_front(b: ServerBuilder) -> Server {
    let schema = unique("exbind").to_lowercase();
    let prefix = format!("{schema}:");
    let mut args: Vec<String> = [
        "--database-url",
        &database_url(),
        "--database-schema",
        &schema,
        "--redis-url",
        &redis_url(),
        "--redis-prefix",
        &prefix,
    ]
    .map(String::from)
    .into();
    if !b.args.iter().any(|a| a == "--database-pool-size") {
        // Tests run side by side, three servers each, on one PostgreSQL's connection limit.
        args.extend(["--database-pool-size".into(), "4".into()]);
    }
    args.extend(b.args.iter().cloned());
    let sinks: Sinks = Default::default();
    // Migrations run under an advisory lock, so the servers may start together.
    let members: Vec<Server> = std::thread::scope(|s| {
        let started: Vec<_> = (0..MEMBERS)
            .map(|_| {
                let m = ServerBuilder {
                    listen: "127.0.0.1:0".into(),
                    seed: b.seed.clone(),
                    args: args.clone(),
                    envs: b.envs.clone(),
                    data_dir: None,
                    admin_flag: b.admin_flag,
                    single: true,
                    sinks: Some(sinks.clone()),
                };
                s.spawn(move || m.start_one())
            })
            .collect();
        started.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut front = Front {
        members,
        haproxy: None,
        socket: PathBuf::new(),
        schema,
        prefix,
        dir: tempfile::tempdir().unwrap(),
    };
    for m in &mut front.members {
        // A restart keeps the port, so the front's configuration stays valid.
        m.listen = m.addr();
    }
    front.socket = front.dir.path().join("admin.sock");
    let base = front.start_haproxy();
    let admin_token = front.members[0].admin_token.clone();
    Server {
        listen: String::new(),
        base,
        admin_token,
        data_dir: front.dir.path().join("no-data-dir"),
        admin_flag: b.admin_flag,
        seed_path: None,
        args: b.args,
        envs: b.envs,
        child: None,
        front: Some(front),
        stdout: sinks.0,
        stderr: sinks.1,
        _tmp: tempfile::tempdir().unwrap(),
        http: super::test_client(),
    }
}

impl Front {
    /// deploy/haproxy.cfg with its `bind` on `port`, its `server` lines on the members'
    /// addresses and an admin socket, so the tests exercise the deployed settings.
    fn config(&self, port: u16) -> String {
        let deployed = std::fs::read_to_string(repo_root().join("deploy/haproxy.cfg"))
            .expect("deploy/haproxy.cfg");
        let (mut out, mut servers, mut binds) = (String::new(), 0, 0);
        for line in deployed.lines() {
            let t = line.trim_start();
            let indent = &line[..line.len() - t.len()];
            let mut words: Vec<&str> = t.split_whitespace().collect();
            match words.first().copied() {
                Some("bind") => {
                    binds += 1;
                    out += &format!("{indent}bind 127.0.0.1:{port}\n");
                }
                Some("server") => {
                    let addr = self.members[servers].addr();
                    words[2] = &addr;
                    out += &format!("{indent}{}\n", words.join(" "));
                    servers += 1;
                }
                _ => {
                    out += line;
                    out.push('\n');
                    if t == "global" {
                        out += &format!("    stats socket {} level admin\n", self.socket.display());
                    }
                }
            }
        }
        assert_eq!(
            (binds, servers),
            (1, MEMBERS),
            "deploy/haproxy.cfg: one bind and {MEMBERS} servers expected"
        );
        out
    }

    /// Starts HAProxy on a free port and waits until it sends traffic to every member;
    /// returns its URL.
    fn start_haproxy(&mut self) -> String {
        let cfg = self.dir.path().join("haproxy.cfg");
        let log = self.dir.path().join("haproxy.log");
        // A port picked free may be taken before HAProxy binds it: then try another.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            std::fs::write(&cfg, self.config(port)).unwrap();
            let haproxy = Command::new("haproxy")
                .arg("-db")
                .arg("-f")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("spawn haproxy (is it installed?)");
            self.haproxy = Some(haproxy);
            if self.wait_up() {
                return format!("http://127.0.0.1:{port}");
            }
            self.stop_haproxy();
        }
        panic!(
            "haproxy did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Waits (up to `PATIENCE`) until HAProxy counts every member up; false if it exits.
    fn wait_up(&mut self) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let h = self.haproxy.as_mut().expect("haproxy started");
            if h.try_wait().unwrap().is_some() {
                return false;
            }
            if self.servers_up() == Some(MEMBERS) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("haproxy does not count all {MEMBERS} servers up");
    }

    /// How many servers HAProxy's admin socket reports running (`srv_op_state` 2).
    fn servers_up(&self) -> Option<usize> {
        let mut c = std::os::unix::net::UnixStream::connect(&self.socket).ok()?;
        c.write_all(b"show servers state\n").ok()?;
        let mut state = String::new();
        c.read_to_string(&mut state).ok()?;
        let running = state
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split_whitespace().nth(5) == Some("2"))
            .count();
        Some(running)
    }

    fn stop_haproxy(&mut self) {
        if let Some(mut h) = self.haproxy.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
    }

    /// Starts the members again, on their ports, and waits until the front uses them all.
    pub(super) fn respawn(&mut self) {
        std::thread::scope(|s| {
            for m in &mut self.members {
                s.spawn(|| m.spawn());
            }
        });
        assert!(self.wait_up(), "haproxy exited");
    }

    /// `f` on every member at once; their common exit status.
    pub(super) fn each(
        &mut self,
        f: impl Fn(&mut Server) -> std::process::ExitStatus + Sync,
    ) -> std::process::ExitStatus {
        let f = &f;
        let all: Vec<_> = std::thread::scope(|s| {
            let t: Vec<_> = self
                .members
                .iter_mut()
                .map(|m| s.spawn(move || f(m)))
                .collect();
            t.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(
            all.windows(2).all(|w| w[0] == w[1]),
            "exit statuses differ: {all:?}"
        );
        all[0]
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.members.clear();
        self.stop_haproxy();
        drop_shared(&self.schema, &self.prefix);
    }
}
