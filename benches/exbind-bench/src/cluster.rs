//! `exbind-bench cluster`: the shared store against the embedded one, in one run, as ratios.
//! One server on SQLite and one on PostgreSQL (GET, durable create+delete); three servers on
//! PostgreSQL behind HAProxy against one; Redis counters against PostgreSQL counters (GET
//! with the quotas on, their limits out of reach). With `--baseline`, also GET on one
//! PostgreSQL server of another build (the one before a change) against this one, each on
//! its own copy of the fixture. Each pair is measured by turns in every round, and medians
//! of the rounds are compared. The PostgreSQL schemas and Redis prefix it makes are dropped
//! at the end.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use exbind_server::fixture::Fixture;

use super::load::{self, Phase, Stats};
use super::{fixture, mint, sibling, Proc, Series};

#[derive(clap::Args)]
pub struct ClusterArgs {
    /// PostgreSQL to measure on (a schema of its own is made and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
    /// Redis to measure on (a key prefix of its own, dropped).
    #[arg(long, default_value = "redis://127.0.0.1:6379/")]
    redis_url: String,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Connections for GET.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Connections for create+delete.
    #[arg(long, default_value_t = 16)]
    write_connections: usize,
    /// Rounds; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Bindings in the fixture.
    #[arg(long, default_value_t = 1000)]
    bindings: usize,
    /// The exbind binary (default: beside this one).
    #[arg(long)]
    exbind: Option<PathBuf>,
    /// Where the SQLite fixture is built and kept between runs.
    #[arg(long, default_value = "target/bench-fixtures")]
    fixtures: PathBuf,
    /// Another exbind binary (the build before a change), measured on GET on PostgreSQL in
    /// the same rounds, by turns with this one.
    #[arg(long)]
    baseline: Option<PathBuf>,
}

const SPARE: usize = 20_000;

fn serve(bin: &std::path::Path, store: &[String], listen: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(["serve", "--listen", listen, "--journal-size", "0"])
        .args(["--admin-token", "bench-admin"])
        .args(store)
        .args(extra);
    c
}

/// Runs `f` in turns with `g` over the rounds (which goes first alternates).
struct Pair {
    name: &'static str,
    a: Series,
    b: Series,
}

impl Pair {
    fn new(name: &'static str) -> Pair {
        Pair {
            name,
            a: Series::default(),
            b: Series::default(),
        }
    }
    fn print(&self, a: &str, b: &str) {
        let (x, y) = (self.a.median(), self.b.median());
        let row = |n: &str, s: &Stats| {
            println!(
                "{:<44} {:>9.0} {:>8.3} {:>8.3} {:>7}",
                n, s.rps, s.p50_ms, s.p99_ms, s.errors
            )
        };
        row(&format!("{} {a}", self.name), &x);
        row(&format!("{} {b}", self.name), &y);
        println!(
            "{:<44} {:>9.3} (p99 {:.2}x)",
            format!("  ratio {b} / {a}"),
            y.rps / x.rps,
            y.p99_ms / x.p99_ms
        );
    }
}

pub async fn run(a: ClusterArgs) -> Result<(), String> {
    let exbind = a.exbind.clone().unwrap_or_else(|| sibling("exbind"));
    std::fs::create_dir_all(&a.fixtures).map_err(|e| e.to_string())?;
    let dur = Duration::from_secs_f64(a.seconds);
    let schema = format!("exbindbench_{}", std::process::id());
    let prefix = format!("{schema}:");

    let sqlite_dir = fixture(&a.fixtures, a.bindings, SPARE).await?;
    eprintln!("building the PostgreSQL fixture in schema {schema} …");
    Fixture::build_pg(&a.database_url, &schema, a.bindings, SPARE).await?;
    let pg = vec![
        "--database-url".to_string(),
        a.database_url.clone(),
        "--database-schema".to_string(),
        schema.clone(),
    ];
    let sqlite = vec!["--data-dir".to_string(), sqlite_dir.display().to_string()];
    let off = ["--rate-limits", "off"];
    // Quotas on, their limits out of reach: every request counts in the shared counters.
    let counting = [
        "--quota-per-second",
        "1000000000",
        "--quota-per-minute",
        "1000000000",
        "--app-budget-per-second",
        "1000000000",
        "--method-budget-per-second",
        "1000000000",
    ];
    let redis: Vec<&str> = vec!["--redis-url", &a.redis_url, "--redis-prefix", &prefix];

    let base_schema = format!("{schema}_baseline");
    let result = async {
        let baseline = match &a.baseline {
            Some(bin) => {
                eprintln!("building the baseline's fixture in schema {base_schema} …");
                Fixture::build_pg(&a.database_url, &base_schema, a.bindings, SPARE).await?;
                step_back(bin, &a.database_url, &base_schema).await?;
                Some((
                    bin.as_path(),
                    vec![
                        "--database-url".to_string(),
                        a.database_url.clone(),
                        "--database-schema".to_string(),
                        base_schema.clone(),
                    ],
                ))
            }
            None => None,
        };
        measure(
            &a, &exbind, &sqlite, &pg, &off, &counting, &redis, dur, baseline,
        )
        .await
    }
    .await;
    drop_shared(&a.database_url, &schema, &a.redis_url, &prefix).await;
    drop_shared(&a.database_url, &base_schema, &a.redis_url, &prefix).await;
    result
}

/// A baseline older than this build refuses the fixture's schema as newer than it knows
/// (exit 2, naming the version it knows): the versions after that one are struck from the
/// copy made for it. Later migrations only add objects, which an older server ignores.
async fn step_back(bin: &std::path::Path, url: &str, schema: &str) -> Result<(), String> {
    let out = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", url])
        .args(["--database-schema", schema, "--admin-token", "bench-admin"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            // It either exits at once (a newer schema) or starts listening.
            std::thread::sleep(Duration::from_secs(3));
            let _ = c.kill();
            c.wait_with_output()
        })
        .map_err(|e| format!("cannot run the baseline: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    let Some(known) = err
        .split("newer than this exbind knows (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse::<i32>().ok())
    else {
        return Ok(());
    };
    eprintln!("the baseline knows schema version {known}: stepping its copy back");
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    client
        .execute(
            &format!("DELETE FROM {schema}.schema_version WHERE version > $1"),
            &[&known],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    a: &ClusterArgs,
    exbind: &std::path::Path,
    sqlite: &[String],
    pg: &[String],
    off: &[&str],
    counting: &[&str],
    redis: &[&str],
    dur: Duration,
    baseline: Option<(&std::path::Path, Vec<String>)>,
) -> Result<(), String> {
    let start = |store: &[String], listen: &str, extra: &[&str]| {
        Proc::start(serve(exbind, store, listen, extra))
    };
    let mut s_sqlite = start(sqlite, "127.0.0.1:0", off)?;
    let mut s_pg = start(pg, "127.0.0.1:0", off)?;
    let mut more = Vec::new();
    for _ in 0..2 {
        let mut p = start(pg, "127.0.0.1:0", off)?;
        p.wait_ready().await?;
        more.push(p);
    }
    let counters_redis: Vec<&str> = counting.iter().chain(redis).copied().collect();
    let mut s_redis = start(pg, "127.0.0.1:0", &counters_redis)?;
    let mut s_pgc = start(pg, "127.0.0.1:0", counting)?;
    for p in [&mut s_sqlite, &mut s_pg, &mut s_redis, &mut s_pgc] {
        p.wait_ready().await?;
    }
    let mut s_base = match &baseline {
        Some((bin, store)) => {
            let mut p = Proc::start(serve(bin, store, "127.0.0.1:0", off))?;
            p.wait_ready().await?;
            Some(p)
        }
        None => None,
    };
    let front = Haproxy::start(&[&s_pg.addr, &more[0].addr, &more[1].addr])?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t_base = match &mut s_base {
        Some(p) => Some(mint(&p.addr).await?),
        None => None,
    };
    let mut before = Pair::new("GET, PostgreSQL,");

    let t_sqlite = mint(&s_sqlite.addr).await?;
    let t_pg = mint(&s_pg.addr).await?;
    let get = |token: &str| Phase::Get {
        token: token.to_string(),
        bound: a.bindings,
    };
    let (mut g, mut w, mut three, mut counters) = (
        Pair::new("GET"),
        Pair::new("create+delete"),
        Pair::new("GET, PostgreSQL,"),
        Pair::new("GET, quotas on,"),
    );
    let mut base = 0usize;
    for round in 0..a.rounds {
        eprintln!("round {}/{} …", round + 1, a.rounds);
        let (first, second) = if round % 2 == 0 { (0, 1) } else { (1, 0) };
        {
            for which in [first, second] {
                let (addr, t, into) = if which == 0 {
                    (&s_sqlite.addr, &t_sqlite, &mut g.a)
                } else {
                    (&s_pg.addr, &t_pg, &mut g.b)
                };
                into.0
                    .push(load::run(addr, a.connections, dur, get(t)).await);
            }
            for which in [first, second] {
                let (addr, t, into) = if which == 0 {
                    (&s_sqlite.addr, &t_sqlite, &mut w.a)
                } else {
                    (&s_pg.addr, &t_pg, &mut w.b)
                };
                let phase = Phase::CreateDelete {
                    token: t.clone(),
                    spare: SPARE,
                    base,
                };
                let s = load::run(addr, a.write_connections, dur, phase).await;
                base += s.count as usize;
                into.0.push(s);
            }
            for which in [first, second] {
                let (addr, into) = if which == 0 {
                    (&s_pg.addr, &mut three.a)
                } else {
                    (&front.addr, &mut three.b)
                };
                into.0
                    .push(load::run(addr, a.connections, dur, get(&t_pg)).await);
            }
            for which in [first, second] {
                let (addr, into) = if which == 0 {
                    (&s_pgc.addr, &mut counters.a)
                } else {
                    (&s_redis.addr, &mut counters.b)
                };
                into.0
                    .push(load::run(addr, a.connections, dur, get(&t_pg)).await);
            }
            if let (Some(p), Some(t)) = (&s_base, &t_base) {
                for which in [first, second] {
                    let (addr, t, into) = if which == 0 {
                        (&p.addr, t, &mut before.a)
                    } else {
                        (&s_pg.addr, &t_pg, &mut before.b)
                    };
                    into.0
                        .push(load::run(addr, a.connections, dur, get(t)).await);
                }
            }
        }
    }
    println!(
        "{:<44} {:>9} {:>8} {:>8} {:>7}",
        "", "req/s", "p50 ms", "p99 ms", "errors"
    );
    g.print("SQLite", "PostgreSQL");
    w.print("SQLite", "PostgreSQL");
    three.print("one server", "three behind HAProxy");
    counters.print("PostgreSQL counters", "Redis counters");
    if s_base.is_some() {
        before.print("baseline", "this build");
    }
    Ok(())
}

/// HAProxy in front of `servers`, round-robin, from a config made for them.
struct Haproxy {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(servers: &[&str]) -> Result<Haproxy, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut cfg = format!(
            "global\n    maxconn 4000\ndefaults\n    mode http\n    timeout connect 5s\n    \
             timeout client 60s\n    timeout server 60s\n    option http-keep-alive\n\
             frontend f\n    bind {addr}\n    default_backend b\nbackend b\n    balance roundrobin\n"
        );
        for (i, s) in servers.iter().enumerate() {
            cfg.push_str(&format!("    server s{i} {s}\n"));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).map_err(|e| e.to_string())?;
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start haproxy: {e}"))?;
        Ok(Haproxy {
            child,
            addr,
            _dir: dir,
        })
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn drop_shared(url: &str, schema: &str, redis_url: &str, prefix: &str) {
    if let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await;
    }
    if let Ok(mut r) = redis::Client::open(redis_url).and_then(|c| c.get_connection()) {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query(&mut r)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut r);
        }
    }
}
