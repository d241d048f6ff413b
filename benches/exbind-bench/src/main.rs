//! The exbind load benchmark.
//!
//! `exbind-bench run` measures, in one run on one machine, over loopback with quotas off:
//! GET of a binding at 64 connections (ids drawn at random across the fixture), the durable
//! write path (create then delete of fresh bindings), the token endpoint, and as the ceiling
//! a minimal axum server answering a fixed JSON body on the same route, built with the same
//! profile. Runs are interleaved (ceiling, exbind, ceiling, …) and the median of the rounds
//! is reported with each exbind figure as a ratio to the ceiling. `--scale N` adds a fixture
//! of N bindings: time to ready, GET throughput against the small fixture, and memory.

mod cluster;
mod load;
mod soak;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

/// The same allocator as the exbind binary, so the ceiling is built like it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use exbind_server::fixture::Fixture;
use load::{Phase, Stats};

#[derive(Parser)]
#[command(about = "Load benchmark of exbind against a fixed-JSON ceiling")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the benchmark.
    Run(RunArgs),
    /// The sync engine under load: many bindings in flight at once, all due together.
    Sync(SyncArgs),
    /// Mixed load at a steady rate with faults armed, for minutes: memory, open fds, p99 and
    /// errors per interval, as CSV and a PNG plot.
    Soak(soak::SoakArgs),
    /// The shared store against the embedded one: PostgreSQL vs SQLite, three servers behind
    /// HAProxy vs one, Redis vs PostgreSQL counters.
    Cluster(cluster::ClusterArgs),
    /// The ceiling: a minimal axum server answering a fixed JSON body.
    Ceiling {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Connections for the read and token phases.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Connections for the durable write phase.
    #[arg(long, default_value_t = 64)]
    write_connections: usize,
    /// Rounds; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Bindings in the base fixture.
    #[arg(long, default_value_t = 1000)]
    bindings: usize,
    /// Also measure with this many bindings (e.g. 1000000); 0 = skip.
    #[arg(long, default_value_t = 0)]
    scale: usize,
    /// The exbind binary (default: beside this one).
    #[arg(long)]
    exbind: Option<PathBuf>,
    /// Another exbind binary (the build before a change, say), measured on GET in the same
    /// rounds, on a copy of the same fixture, before or after exbind by turns.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Also measure GET while this many other connections hold a half-sent request head
    /// (opened before each such run, which must end within the server's header-read timeout).
    #[arg(long, default_value_t = 0)]
    half_open: usize,
    /// Where fixtures are built and kept between runs.
    #[arg(long, default_value = "target/bench-fixtures")]
    fixtures: PathBuf,
    /// Also measure GET on a server with the journal on (as `exbind serve` runs by
    /// default), without and with a console's event stream open and read, interleaved with
    /// the ceiling.
    #[arg(long)]
    console: bool,
}

#[derive(clap::Args)]
struct SyncArgs {
    /// Bindings in flight.
    #[arg(long, default_value_t = 100_000)]
    bindings: usize,
    /// Milliseconds each stage takes.
    #[arg(long, default_value_t = 2000)]
    stage_ms: u64,
    /// The exbind binary (default: beside this one).
    #[arg(long)]
    exbind: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match cli.command {
        Cmd::Ceiling { listen } => rt.block_on(ceiling(listen)),
        Cmd::Sync(args) => {
            if let Err(e) = rt.block_on(sync_load(args)) {
                eprintln!("exbind-bench: {e}");
                std::process::exit(1);
            }
        }
        Cmd::Soak(args) => {
            if let Err(e) = rt.block_on(soak::soak(args)) {
                eprintln!("exbind-bench: {e}");
                std::process::exit(1);
            }
        }
        Cmd::Cluster(args) => {
            if let Err(e) = rt.block_on(cluster::run(args)) {
                eprintln!("exbind-bench: {e}");
                std::process::exit(1);
            }
        }
        Cmd::Run(args) => {
            if let Err(e) = rt.block_on(run(args)) {
                eprintln!("exbind-bench: {e}");
                std::process::exit(1);
            }
        }
    }
}

const CEILING_BODY: &str = r#"{"code":0,"msg":"success","data":{"admin_account":"exadmin@bench.example","exchange_account":"user1@bench.example","user_id":"ou_0123456789abcdef0123456789abcdef","status":"done","exchange_binding_id":"ZXhhZG1pbkBiZW5jaC5leGFtcGxlIHVzZXIxQGJlbmNoLmV4YW1wbGU="}}"#;

async fn ceiling(listen: String) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/open-apis/calendar/v4/exchange_bindings/{*id}",
        get(|| async {
            (
                [("content-type", "application/json; charset=utf-8")],
                CEILING_BODY,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    println!(
        "listening on http://{}",
        listener.local_addr().expect("addr")
    );
    axum::serve(listener, app).await.expect("serve");
}

/// A child server and the address it printed.
struct Proc {
    child: Child,
    addr: String,
    started: Instant,
    ready_after: Duration,
    warm_after: Duration,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn start(mut cmd: Command) -> Result<Proc, String> {
        use std::io::BufRead;
        let started = Instant::now();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        let out = child.stdout.take().expect("piped");
        let mut lines = std::io::BufReader::new(out).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(a) = l.strip_prefix("listening on http://") {
                        break a.trim().to_string();
                    }
                }
                _ => return Err(format!("{cmd:?} exited before listening")),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(Proc {
            child,
            addr,
            started,
            ready_after: Duration::ZERO,
            warm_after: Duration::ZERO,
        })
    }

    /// Waits until readyz answers 200, then until its in-memory indexes are filled (it
    /// serves correctly before, only slower); records how long each took from spawn.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let url = format!("http://{}/_exbind/readyz", self.addr);
        for _ in 0..6000 {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    if self.ready_after.is_zero() {
                        self.ready_after = self.started.elapsed();
                    }
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    if body["data"]["warm"] != false {
                        self.warm_after = self.started.elapsed();
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err("server not ready and warm after 60 s".into())
    }

    fn rss_mb(&self) -> f64 {
        proc_mb(&format!("/proc/{}/status", self.child.id()), "VmRSS:")
    }
}

/// A `Name:   123 kB` line of a `/proc` file, in MB (0 when absent).
fn proc_mb(path: &str, name: &str) -> f64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn sibling(name: &str) -> PathBuf {
    let me = std::env::current_exe().expect("current exe");
    me.parent().expect("dir").join(name)
}

async fn fixture(dir: &Path, bound: usize, spare: usize) -> Result<PathBuf, String> {
    let path = dir.join(format!("fixture-{bound}-{spare}"));
    if path.join("exbind.sqlite3").exists() {
        return Ok(path);
    }
    let tmp = dir.join(format!("building-{bound}-{spare}"));
    let _ = std::fs::remove_dir_all(&tmp);
    let t = Instant::now();
    eprintln!("building a fixture of {bound} bindings and {spare} spare users …");
    Fixture::build(&tmp, bound, spare).await?;
    std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
    eprintln!("  built in {:.1} s", t.elapsed().as_secs_f64());
    Ok(path)
}

/// Copies a fixture's files (no subdirectories) into `to`, replacing what was there.
fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(from).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        if entry.file_type().map_err(|e| e.to_string())?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

const ADMIN_TOKEN: &str = "bench-admin";

fn exbind_cmd(bin: &Path, data_dir: &Path) -> Command {
    exbind_cmd_journal(bin, data_dir, 0)
}

fn exbind_cmd_journal(bin: &Path, data_dir: &Path, journal: usize) -> Command {
    let mut c = Command::new(bin);
    c.args(["serve", "--listen", "127.0.0.1:0", "--rate-limits", "off"])
        .arg("--journal-size")
        .arg(journal.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--admin-token", ADMIN_TOKEN]);
    c
}

async fn mint(addr: &str) -> Result<String, String> {
    let ctl = exbind_client::ControlClient::new(&format!("http://{addr}"), ADMIN_TOKEN)
        .map_err(|e| e.to_string())?;
    let r = ctl
        .call(
            reqwest::Method::POST,
            "/_exbind/v1/user_access_tokens",
            Some(serde_json::json!({"app_id": Fixture::APP_ID, "tenant_key": Fixture::TENANT, "user_id": Fixture::ADMIN_USER})),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(r.data["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Median-of-rounds figures of one phase.
#[derive(Default)]
struct Series(Vec<Stats>);

impl Series {
    fn median(&self) -> Stats {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        v[v.len() / 2].clone()
    }
}

fn fsync_latency_ms(dir: &Path) -> f64 {
    use std::io::Write;
    let p = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&p).expect("probe file");
    let mut times: Vec<f64> = (0..50)
        .map(|_| {
            f.write_all(&[0u8; 4096]).expect("write");
            let t = Instant::now();
            f.sync_data().expect("fsync");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let _ = std::fs::remove_file(&p);
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Bindings per status, from the server's metrics.
async fn status_counts(addr: &str) -> Result<std::collections::BTreeMap<String, u64>, String> {
    let text = reqwest::get(format!("http://{addr}/_exbind/metrics"))
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("exbind_bindings{status=\""))
        .filter_map(|l| {
            let (status, rest) = l.split_once('"')?;
            Some((
                status.to_string(),
                rest.trim_start_matches('}').trim().parse().ok()?,
            ))
        })
        .collect())
}

/// N bindings enter `cal_done` at the same instant, then the next stages on schedule; reports
/// when the last one is done against when the schedule says it should be.
async fn sync_load(a: SyncArgs) -> Result<(), String> {
    let exbind = a.exbind.clone().unwrap_or_else(|| sibling("exbind"));
    let tmp = std::env::temp_dir().join(format!("exbind-bench-sync-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    // Due a few seconds from now: after the build and the start.
    let due = now_ms() + 5000;
    Fixture::build_syncing(&tmp, a.bindings, due).await?;
    let stage = format!("{0}ms,{0}ms,{0}ms", a.stage_ms);
    let mut cmd = exbind_cmd(&exbind, &tmp);
    cmd.args(["--sync-stage-durations", &stage]);
    let mut server = Proc::start(cmd)?;
    server.wait_ready().await?;
    if now_ms() >= due {
        return Err("the fixture took too long to build and start; nothing was measured".into());
    }
    let scheduled_done = due + 2 * a.stage_ms as i64;
    let mut peak_rss = 0f64;
    let finished = loop {
        let counts = status_counts(&server.addr).await?;
        peak_rss = peak_rss.max(server.rss_mb());
        if counts.get("done").copied().unwrap_or(0) as usize >= a.bindings {
            break now_ms();
        }
        if now_ms() > scheduled_done + 60_000 {
            return Err(format!("not all done a minute after schedule: {counts:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "sync engine: {} bindings in flight, stages of {} ms, all due at once: the last reached done \
         {} ms after its scheduled time (it was due {} ms after the first step); peak resident memory {peak_rss:.1} MB",
        a.bindings,
        a.stage_ms,
        finished - scheduled_done,
        2 * a.stage_ms
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

async fn run(a: RunArgs) -> Result<(), String> {
    let exbind = a.exbind.clone().unwrap_or_else(|| sibling("exbind"));
    if !exbind.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p exbind`",
            exbind.display()
        ));
    }
    std::fs::create_dir_all(&a.fixtures).map_err(|e| e.to_string())?;
    let spare = 20_000;
    let small = fixture(&a.fixtures, a.bindings, spare).await?;
    let dur = Duration::from_secs_f64(a.seconds);

    let mut ceiling = Proc::start({
        let mut c = Command::new(std::env::current_exe().expect("exe"));
        c.arg("ceiling");
        c
    })?;
    let mut server = Proc::start(exbind_cmd(&exbind, &small))?;
    server.wait_ready().await?;
    let idle_rss = server.rss_mb();
    let token = mint(&server.addr).await?;
    // Two servers cannot share a data dir: the baseline runs on a copy.
    let baseline = match &a.baseline {
        Some(bin) => {
            let copy = a.fixtures.join("baseline-copy");
            copy_dir(&small, &copy)?;
            let mut b = Proc::start(exbind_cmd(bin, &copy))?;
            b.wait_ready().await?;
            let token = mint(&b.addr).await?;
            Some((b, token))
        }
        None => None,
    };
    let mut b_get = Series::default();
    let mut per_round = Vec::new();
    // Let the ceiling come up too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = ceiling.wait_ready_ceiling().await;

    let (mut c_get, mut x_get, mut x_tok, mut x_write, mut x_half) = (
        Series::default(),
        Series::default(),
        Series::default(),
        Series::default(),
        Series::default(),
    );
    let mut write_base = 0usize;
    for round in 0..a.rounds {
        eprintln!("round {}/{} …", round + 1, a.rounds);
        c_get.0.push(
            load::run(
                &ceiling.addr,
                a.connections,
                dur,
                Phase::Get {
                    token: token.clone(),
                    bound: a.bindings,
                },
            )
            .await,
        );
        let get = async |addr: &str, token: &str| {
            let phase = Phase::Get {
                token: token.to_string(),
                bound: a.bindings,
            };
            load::run(addr, a.connections, dur, phase).await
        };
        let mine = match &baseline {
            Some((b, b_token)) => {
                let (theirs, mine) = if round % 2 == 0 {
                    let theirs = get(&b.addr, b_token).await;
                    (theirs, get(&server.addr, &token).await)
                } else {
                    let mine = get(&server.addr, &token).await;
                    (get(&b.addr, b_token).await, mine)
                };
                per_round.push(mine.rps / theirs.rps);
                b_get.0.push(theirs);
                mine
            }
            None => get(&server.addr, &token).await,
        };
        x_get.0.push(mine);
        if a.half_open > 0 {
            let held = hold_half_open(&server.addr, a.half_open).await?;
            x_half.0.push(get(&server.addr, &token).await);
            drop(held);
        }
        x_tok
            .0
            .push(load::run(&server.addr, a.connections, dur, Phase::Token).await);
        let w = load::run(
            &server.addr,
            a.write_connections,
            dur,
            Phase::CreateDelete {
                token: token.clone(),
                spare,
                base: write_base,
            },
        )
        .await;
        write_base += w.count as usize;
        x_write.0.push(w);
    }
    let loaded_rss = server.rss_mb();
    let ready_after = server.ready_after;
    drop(server);
    let has_baseline = baseline.is_some();
    drop(baseline);
    let console = if a.console {
        Some(console_rounds(&a, &exbind, &small, &ceiling, dur, &mut c_get).await?)
    } else {
        None
    };
    let fsync = fsync_latency_ms(&small);

    let ready_ms = ready_after.as_secs_f64() * 1000.0;
    let (c, g, t, w) = (
        c_get.median(),
        x_get.median(),
        x_tok.median(),
        x_write.median(),
    );
    println!();
    println!("machine: {} cores; {} s per measurement, median of {} rounds; fsync (4 KiB, data dir) median {fsync:.2} ms", std::thread::available_parallelism().map_or(0, |n| n.get()), a.seconds, a.rounds);
    println!(
        "{:<34} {:>10} {:>9} {:>9} {:>8} {:>8} {:>7}",
        "phase", "req/s", "p50 ms", "p99 ms", "errors", "ratio", "p99 x"
    );
    let row = |name: &str, s: &Stats| {
        println!(
            "{:<34} {:>10.0} {:>9.3} {:>9.3} {:>8} {:>8.3} {:>7.2}",
            name,
            s.rps,
            s.p50_ms,
            s.p99_ms,
            s.errors,
            s.rps / c.rps,
            s.p99_ms / c.p99_ms
        );
    };
    row(&format!("ceiling GET ({} conns)", a.connections), &c);
    if has_baseline {
        row(
            &format!("baseline GET binding ({} conns)", a.connections),
            &b_get.median(),
        );
    }
    row(&format!("exbind GET binding ({} conns)", a.connections), &g);
    if a.half_open > 0 {
        let h = x_half.median();
        row(&format!("exbind GET, {} half-open held", a.half_open), &h);
        println!(
            "with {} half-open connections held: GET = {:.3} of GET without, p99 {:.2}x",
            a.half_open,
            h.rps / g.rps,
            h.p99_ms / g.p99_ms
        );
    }
    row(
        &format!("exbind token endpoint ({} conns)", a.connections),
        &t,
    );
    row(
        &format!("exbind create+delete ({} conns)", a.write_connections),
        &w,
    );
    println!(
        "exbind resident memory: {idle_rss:.1} MB idle after start, {loaded_rss:.1} MB after the runs; \
         ready {:.0} ms after start",
        ready_ms
    );
    if let Some((quiet, streaming, events)) = &console {
        row(
            &format!(
                "exbind GET, journal on, no console ({} conns)",
                a.connections
            ),
            quiet,
        );
        row(
            &format!(
                "exbind GET, journal on, console open ({} conns)",
                a.connections
            ),
            streaming,
        );
        println!(
            "console open: the event stream delivered {events} request events during its runs; \
             GET with it open = {:.3} of GET without",
            streaming.rps / quiet.rps
        );
    }
    if !per_round.is_empty() {
        per_round.sort_by(f64::total_cmp);
        println!(
            "exbind GET / baseline GET, per round: {} (median {:.3})",
            per_round
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(", "),
            per_round[per_round.len() / 2]
        );
    }

    if a.scale > 0 {
        let big = fixture(&a.fixtures, a.scale, spare).await?;
        let mut s = Proc::start(exbind_cmd(&exbind, &big))?;
        s.wait_ready().await?;
        let idle = s.rss_mb();
        let token = mint(&s.addr).await?;
        let mut big_get = Series::default();
        let mut small_get = Series::default();
        for _ in 0..a.rounds {
            big_get.0.push(
                load::run(
                    &s.addr,
                    a.connections,
                    dur,
                    Phase::Get {
                        token: token.clone(),
                        bound: a.scale,
                    },
                )
                .await,
            );
        }
        let big_rss = s.rss_mb();
        let (ready, warm) = (s.ready_after, s.warm_after);
        drop(s);
        let mut small_srv = Proc::start(exbind_cmd(&exbind, &small))?;
        small_srv.wait_ready().await?;
        let token = mint(&small_srv.addr).await?;
        for _ in 0..a.rounds {
            small_get.0.push(
                load::run(
                    &small_srv.addr,
                    a.connections,
                    dur,
                    Phase::Get {
                        token: token.clone(),
                        bound: a.bindings,
                    },
                )
                .await,
            );
        }
        let (b, sm) = (big_get.median(), small_get.median());
        println!();
        println!(
            "with {} bindings: ready {:.0} ms after start, index filled {:.0} ms after start; \
             GET {:.0} req/s (p99 {:.3} ms) = {:.3} of the {}-binding figure ({:.0} req/s); \
             resident memory {idle:.1} MB once filled, {big_rss:.1} MB after the runs",
            a.scale,
            ready.as_secs_f64() * 1000.0,
            warm.as_secs_f64() * 1000.0,
            b.rps,
            b.p99_ms,
            b.rps / sm.rps,
            a.bindings,
            sm.rps
        );
    }
    Ok(())
}

impl Proc {
    async fn wait_ready_ceiling(&mut self) -> Result<(), String> {
        let url = format!(
            "http://{}/open-apis/calendar/v4/exchange_bindings/x",
            self.addr
        );
        for _ in 0..500 {
            if reqwest::get(&url).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err("ceiling not ready".into())
    }
}

/// GET on a server with the journal on, without and with an event stream open and read (as
/// a console holds one), each round after a ceiling run; the ceiling runs join `ceiling_get`.
/// Answers the medians and how many request events the streams delivered.
async fn console_rounds(
    a: &RunArgs,
    exbind: &Path,
    fixture: &Path,
    ceiling: &Proc,
    dur: Duration,
    ceiling_get: &mut Series,
) -> Result<(Stats, Stats, u64), String> {
    let mut server = Proc::start(exbind_cmd_journal(exbind, fixture, 10_000))?;
    server.wait_ready().await?;
    let token = mint(&server.addr).await?;
    let get = || Phase::Get {
        token: token.clone(),
        bound: a.bindings,
    };
    let (mut quiet, mut streaming) = (Series::default(), Series::default());
    let events = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    for round in 0..a.rounds {
        eprintln!("console round {}/{} …", round + 1, a.rounds);
        ceiling_get
            .0
            .push(load::run(&ceiling.addr, a.connections, dur, get()).await);
        quiet
            .0
            .push(load::run(&server.addr, a.connections, dur, get()).await);
        let reader = open_stream(&server.addr, events.clone()).await?;
        streaming
            .0
            .push(load::run(&server.addr, a.connections, dur, get()).await);
        reader.abort();
    }
    Ok((
        quiet.median(),
        streaming.median(),
        events.load(std::sync::atomic::Ordering::Relaxed),
    ))
}

/// `n` connections, each holding a request head it never finishes.
async fn hold_half_open(addr: &str, n: usize) -> Result<Vec<tokio::net::TcpStream>, String> {
    use tokio::io::AsyncWriteExt;
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("half-open connect: {e}"))?;
        c.write_all(b"GET /open-apis/calendar/v4/exchange_bindings/x HTTP/1.1\r\nHost: bench\r\n")
            .await
            .map_err(|e| format!("half-open write: {e}"))?;
        held.push(c);
    }
    Ok(held)
}

/// Holds `GET /_exbind/v1/events` open and reads it to the end, counting request events.
async fn open_stream(
    addr: &str,
    seen: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let mut resp = reqwest::Client::new()
        .get(format!("http://{addr}/_exbind/v1/events"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("event stream answered {}", resp.status()));
    }
    Ok(tokio::spawn(async move {
        while let Ok(Some(chunk)) = resp.chunk().await {
            let n = chunk.windows(14).filter(|w| w == b"event: request").count();
            seen.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }))
}
