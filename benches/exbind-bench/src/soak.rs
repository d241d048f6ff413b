//! `exbind-bench soak`: a long run of mixed load at a steady rate against `exbind serve` with
//! fault rules armed through the control plane. Each interval it samples the server's
//! resident memory and open file descriptors from `/proc`, the interval's latency
//! percentiles, and every answer that is neither a success nor one of the armed faults; it
//! writes the samples as CSV and plots them as PNG.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exbind_server::fixture::Fixture;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{json, Value};

use crate::{copy_dir, exbind_cmd_journal, fixture, mint, proc_mb, sibling, Proc};

#[derive(clap::Args)]
pub struct SoakArgs {
    /// How long the load runs.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Operations started per second (a create+delete is one operation of two requests).
    #[arg(long, default_value_t = 150)]
    rate: u32,
    /// Seconds per sample.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Operations in flight at most; an operation due while this many are still running is
    /// counted as not sent (the load generator fell behind, not the server).
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// The samples, one CSV row per interval.
    #[arg(long, default_value = "docs/soak.csv")]
    csv: PathBuf,
    /// The plot of the samples.
    #[arg(long, default_value = "docs/soak.png")]
    png: PathBuf,
    /// The exbind binary (default: beside this one).
    #[arg(long)]
    exbind: Option<PathBuf>,
    /// Where fixtures are built and kept between runs.
    #[arg(long, default_value = "target/bench-fixtures")]
    fixtures: PathBuf,
    /// Starts the server with transparent huge pages disabled (`PR_SET_THP_DISABLE`, which
    /// the server inherits): its resident memory then counts only the 4 KiB pages it touched.
    #[arg(long)]
    no_thp: bool,
}

const BOUND: usize = 1000;
const SPARE: usize = 20_000;
const ITEM: &str = "/open-apis/calendar/v4/exchange_bindings";
const ITEM_ROUTE: &str = "/open-apis/calendar/v4/exchange_bindings/{exchange_binding_id}";

/// The armed faults: each answers a code that nothing else in this run can produce (the
/// quotas and budgets are off), so an answer with it is known to be injected.
fn fault_rules() -> Vec<Value> {
    vec![
        json!({"method": "GET", "route": ITEM_ROUTE, "fraction": 0.02, "error": {"code": 190004}}),
        json!({"method": "GET", "route": ITEM_ROUTE, "fraction": 0.01, "latency_ms": 20}),
        json!({"method": "POST", "route": ITEM, "fraction": 0.05, "error": {"code": 190005}}),
        json!({"method": "DELETE", "route": ITEM_ROUTE, "fraction": 0.05, "error": {"code": 99991400}}),
    ]
}
const INJECTED: [i64; 3] = [190004, 190005, 99991400];

/// One interval's tallies, swapped out at each sample.
struct Tally {
    latency: Histogram<u64>,
    injected: u64,
    unexpected: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: Histogram::new(3).expect("histogram"),
            injected: 0,
            unexpected: 0,
        }
    }
}

struct Load {
    http: reqwest::Client,
    base: String,
    token: String,
    tally: Mutex<Tally>,
    /// The first few unexpected answers, for the report.
    surprises: Mutex<Vec<String>>,
    injected_total: AtomicU64,
    next_spare: AtomicUsize,
}

enum Outcome {
    Ok,
    Injected,
    Unexpected,
}

impl Load {
    async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> Outcome {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = auth {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let t = Instant::now();
        let answer = match req.send().await {
            Ok(r) => {
                let status = r.status();
                r.bytes().await.map(|b| (status, b))
            }
            Err(e) => Err(e),
        };
        let micros = t.elapsed().as_micros() as u64;
        let outcome = match &answer {
            Ok((status, body)) => {
                let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let code = v["code"].as_i64();
                if status.is_success() && code == Some(0) {
                    Outcome::Ok
                } else if !path.starts_with("/_exbind/")
                    && code.is_some_and(|c| INJECTED.contains(&c))
                {
                    Outcome::Injected
                } else if path == "/_exbind/metrics" && status.is_success() {
                    Outcome::Ok
                } else {
                    Outcome::Unexpected
                }
            }
            Err(_) => Outcome::Unexpected,
        };
        let mut tally = self.tally.lock();
        let _ = tally.latency.record(micros);
        match outcome {
            Outcome::Injected => {
                tally.injected += 1;
                self.injected_total.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Unexpected => {
                tally.unexpected += 1;
                drop(tally);
                let mut s = self.surprises.lock();
                if s.len() < 10 {
                    s.push(match &answer {
                        Ok((status, body)) => {
                            format!(
                                "{method} {path}: {status} {}",
                                String::from_utf8_lossy(body)
                            )
                        }
                        Err(e) => format!("{method} {path}: {e}"),
                    });
                }
            }
            Outcome::Ok => {}
        }
        outcome
    }

    /// The n-th operation of the mix: of every 20, 10 GETs of a bound binding, 3
    /// create+delete pairs, 3 token calls and 4 control-plane reads.
    async fn operation(&self, n: u64) {
        let tok = Some(self.token.as_str());
        match n % 20 {
            0..=9 => {
                let id = Fixture::bound_id((n as usize * 7919) % BOUND);
                let path = format!("{ITEM}/{}", exbind_client::encode_path_segment(&id));
                self.send(Method::GET, &path, tok, None).await;
            }
            10..=12 => self.create_delete().await,
            13..=15 => {
                let body = json!({"app_id": Fixture::APP_ID, "app_secret": Fixture::APP_SECRET});
                self.send(
                    Method::POST,
                    "/open-apis/auth/v3/tenant_access_token/internal",
                    None,
                    Some(body),
                )
                .await;
            }
            k => {
                let path = match k {
                    16 => "/_exbind/v1/faults".to_string(),
                    17 => "/_exbind/v1/requests?page_size=20".to_string(),
                    18 => format!("/_exbind/v1/tenants/{}", Fixture::TENANT),
                    _ => "/_exbind/metrics".to_string(),
                };
                self.send(Method::GET, &path, Some(crate::ADMIN_TOKEN), None)
                    .await;
            }
        }
    }

    /// Creates a binding for a spare user and, once it is acknowledged, deletes it (again
    /// while the delete is answered by the armed fault), so the user is free for reuse.
    async fn create_delete(&self) {
        let i = self.next_spare.fetch_add(1, Ordering::Relaxed) % SPARE;
        let tok = Some(self.token.as_str());
        let body = json!({
            "admin_account": Fixture::EXCHANGE_ADMIN,
            "exchange_account": Fixture::spare_exchange(i),
            "user_id": Fixture::spare_user(i),
        });
        let created = self
            .send(
                Method::POST,
                &format!("{ITEM}?user_id_type=user_id"),
                tok,
                Some(body),
            )
            .await;
        if !matches!(created, Outcome::Ok) {
            return;
        }
        let id =
            exbind_client::encode_binding_id(Fixture::EXCHANGE_ADMIN, &Fixture::spare_exchange(i));
        let path = format!("{ITEM}/{}", exbind_client::encode_path_segment(&id));
        for _ in 0..50 {
            if !matches!(
                self.send(Method::DELETE, &path, tok, None).await,
                Outcome::Injected
            ) {
                return;
            }
        }
    }
}

/// One CSV row.
#[derive(Clone, Copy)]
struct Sample {
    elapsed_s: f64,
    requests: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    injected: u64,
    unexpected: u64,
    not_sent: u64,
    rss_mb: f64,
    /// Of the resident memory: anonymous (the heap, stacks), and of that, in huge pages.
    anon_mb: f64,
    huge_mb: f64,
    fds: usize,
    /// The server's open connections (its metrics), so that fds other than sockets show.
    connections: usize,
}

const CSV_HEADER: &str =
    "elapsed_s,requests,rps,p50_ms,p99_ms,max_ms,injected,unexpected,not_sent,rss_mb,anon_mb,huge_mb,fds,connections";

impl Sample {
    fn csv(&self, interval: f64) -> String {
        format!(
            "{:.0},{},{:.1},{:.3},{:.3},{:.3},{},{},{},{:.1},{:.1},{:.1},{},{}",
            self.elapsed_s,
            self.requests,
            self.requests as f64 / interval,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.injected,
            self.unexpected,
            self.not_sent,
            self.rss_mb,
            self.anon_mb,
            self.huge_mb,
            self.fds,
            self.connections
        )
    }
}

/// `exbind_connections_open` off the server's metrics.
async fn open_connections(load: &Load) -> usize {
    let text = match load
        .http
        .get(format!("{}/_exbind/metrics", load.base))
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .find_map(|l| l.strip_prefix("exbind_connections_open "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as usize)
}

/// Transparent huge pages off for this process and the children it starts from now on.
fn disable_thp() -> Result<(), String> {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(format!(
            "prctl(PR_SET_THP_DISABLE): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

pub async fn soak(a: SoakArgs) -> Result<(), String> {
    let exbind = a.exbind.clone().unwrap_or_else(|| sibling("exbind"));
    std::fs::create_dir_all(&a.fixtures).map_err(|e| e.to_string())?;
    let base = fixture(&a.fixtures, BOUND, SPARE).await?;
    let data = a.fixtures.join("soak-copy");
    copy_dir(&base, &data)?;
    if a.no_thp {
        disable_thp()?;
    }
    // The journal on, as `exbind serve` runs by default, so its bound is soaked too.
    let mut server = Proc::start(exbind_cmd_journal(&exbind, &data, 10_000))?;
    server.wait_ready().await?;
    let token = mint(&server.addr).await?;
    let ctl =
        exbind_client::ControlClient::new(&format!("http://{}", server.addr), crate::ADMIN_TOKEN)
            .map_err(|e| e.to_string())?;
    for rule in fault_rules() {
        ctl.call(reqwest::Method::POST, "/_exbind/v1/faults", Some(rule))
            .await
            .map_err(|e| format!("arming a fault: {e}"))?;
    }
    let load = Arc::new(Load {
        http: reqwest::Client::new(),
        base: format!("http://{}", server.addr),
        token,
        tally: Mutex::new(Tally::new()),
        surprises: Mutex::new(Vec::new()),
        injected_total: AtomicU64::new(0),
        next_spare: AtomicUsize::new(0),
    });
    let pid = server.child.id();
    let total = Duration::from_secs_f64(a.minutes * 60.0);
    let interval = Duration::from_secs(a.interval);
    let slots = Arc::new(tokio::sync::Semaphore::new(a.in_flight));
    let not_sent = Arc::new(AtomicU64::new(0));
    eprintln!(
        "soak: {} operations/s for {} min against pid {pid}, a sample every {} s",
        a.rate, a.minutes, a.interval
    );

    let generator = {
        let (load, slots, not_sent) = (load.clone(), slots.clone(), not_sent.clone());
        let rate = a.rate;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = 0u64;
            loop {
                tick.tick().await;
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let load = load.clone();
                        tokio::spawn(async move {
                            load.operation(n).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        not_sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                n += 1;
            }
        })
    };

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut csv = vec![CSV_HEADER.to_string()];
    let mut next = started + interval;
    while started.elapsed() < total {
        tokio::time::sleep_until(next.into()).await;
        next += interval;
        let t = std::mem::replace(&mut *load.tally.lock(), Tally::new());
        let q = |p: f64| t.latency.value_at_quantile(p) as f64 / 1000.0;
        let s = Sample {
            elapsed_s: started.elapsed().as_secs_f64(),
            requests: t.latency.len(),
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            max_ms: t.latency.max() as f64 / 1000.0,
            injected: t.injected,
            unexpected: t.unexpected,
            not_sent: not_sent.swap(0, Ordering::Relaxed),
            rss_mb: server.rss_mb(),
            anon_mb: proc_mb(&format!("/proc/{pid}/status"), "RssAnon:"),
            huge_mb: proc_mb(&format!("/proc/{pid}/smaps_rollup"), "AnonHugePages:"),
            fds: open_fds(pid),
            connections: open_connections(&load).await,
        };
        csv.push(s.csv(a.interval as f64));
        eprintln!("{}", csv.last().expect("pushed"));
        samples.push(s);
        // Written as it goes, so a run cut short keeps what it measured.
        write_file(&a.csv, &(csv.join("\n") + "\n"))?;
    }
    generator.abort();
    // Let the operations in flight finish before the fault counters are read.
    let _ = tokio::time::timeout(
        Duration::from_secs(30),
        slots.acquire_many(a.in_flight as u32),
    )
    .await;
    let armed = ctl
        .call(reqwest::Method::GET, "/_exbind/v1/faults", None)
        .await
        .map_err(|e| e.to_string())?;
    let hits: u64 = armed.data["items"]
        .as_array()
        .or_else(|| armed.data.as_array())
        .map_or(0, |rules| {
            rules
                .iter()
                .filter(|r| r.get("error").is_some())
                .filter_map(|r| r["hits"].as_u64())
                .sum()
        });
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    let title = format!(
        "exbind soak: {} operations/s of mixed load for {} min, faults armed",
        a.rate, a.minutes
    );
    plot(&samples, &title, &a.png)?;
    let surprises = load.surprises.lock().clone();
    report(
        &a,
        &samples,
        hits,
        load.injected_total.load(Ordering::Relaxed),
        &surprises,
    )
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn report(
    a: &SoakArgs,
    samples: &[Sample],
    hits: u64,
    injected: u64,
    surprises: &[String],
) -> Result<(), String> {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Err("no interval completed".into());
    };
    let requests: u64 = samples.iter().map(|s| s.requests).sum();
    let unexpected: u64 = samples.iter().map(|s| s.unexpected).sum();
    let not_sent: u64 = samples.iter().map(|s| s.not_sent).sum();
    let span = |f: fn(&Sample) -> f64| {
        samples
            .iter()
            .map(f)
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let (rss_lo, rss_hi) = span(|s| s.rss_mb);
    let (fd_lo, fd_hi) = span(|s| s.fds as f64);
    let (other_lo, other_hi) = span(|s| s.fds.saturating_sub(s.connections) as f64);
    let (p99_lo, p99_hi) = span(|s| s.p99_ms);
    let mut p99s: Vec<f64> = samples.iter().map(|s| s.p99_ms).collect();
    p99s.sort_by(f64::total_cmp);
    println!(
        "soak: {:.1} min at {} operations/s, {} samples of {} s: {requests} requests ({:.1}/s), \
         {injected} answered by an armed fault (the server counted {hits} hits), \
         {unexpected} other errors, {not_sent} operations not sent",
        first.elapsed_s.max(last.elapsed_s) / 60.0,
        a.rate,
        samples.len(),
        a.interval,
        requests as f64 / last.elapsed_s,
    );
    println!(
        "resident memory {:.1} MB in the first interval, {:.1} MB in the last (range {rss_lo:.1}-{rss_hi:.1}); \
         open fds {} first, {} last (range {fd_lo:.0}-{fd_hi:.0}; other than connections \
         {other_lo:.0}-{other_hi:.0}); \
         p99 per interval: median {:.2} ms, range {p99_lo:.2}-{p99_hi:.2} ms",
        first.rss_mb,
        last.rss_mb,
        first.fds,
        last.fds,
        p99s[p99s.len() / 2],
    );
    println!(
        "of it anonymous {:.1} MB first, {:.1} MB last, in transparent huge pages {:.1} MB first, \
         {:.1} MB last{}",
        first.anon_mb,
        last.anon_mb,
        first.huge_mb,
        last.huge_mb,
        if a.no_thp { " (disabled)" } else { "" }
    );
    println!("samples: {}; plot: {}", a.csv.display(), a.png.display());
    for s in surprises {
        println!("unexpected: {s}");
    }
    if unexpected > 0 {
        return Err(format!(
            "{unexpected} answers were neither a success nor an armed fault"
        ));
    }
    if hits != injected {
        return Err(format!(
            "the client saw {injected} injected answers, the server counted {hits} fault hits"
        ));
    }
    Ok(())
}

/// One value of a sample, as plotted.
type Column = fn(&Sample) -> f64;

/// Three panels over the run's minutes: resident memory, open fds, p99 latency. Drawn as
/// SVG and rasterised, so the text needs no font library at build time.
fn plot(samples: &[Sample], title: &str, png: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 940)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 24))
            .map_err(|e| e.to_string())?;
        let panels = root.split_evenly((3, 1));
        let minutes = samples.last().map_or(1.0, |s| s.elapsed_s / 60.0).max(0.1);
        let connections: Column = |s| s.connections as f64;
        let huge: Column = |s| s.huge_mb;
        let series: [(&str, Column, Option<Column>, RGBColor); 3] = [
            (
                "resident memory (MB; grey: of it, in transparent huge pages)",
                |s| s.rss_mb,
                Some(huge),
                BLUE,
            ),
            (
                "open file descriptors (grey: of them, connections)",
                |s| s.fds as f64,
                Some(connections),
                GREEN,
            ),
            ("p99 latency per interval (ms)", |s| s.p99_ms, None, RED),
        ];
        for (panel, (label, value, part, colour)) in panels.iter().zip(series) {
            let top = samples.iter().map(value).fold(0.0, f64::max).max(1.0) * 1.25;
            let mut chart = ChartBuilder::on(panel)
                .caption(label, ("sans-serif", 22))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..minutes, 0.0..top)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("minutes")
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(LineSeries::new(
                    samples.iter().map(|s| (s.elapsed_s / 60.0, value(s))),
                    colour.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
            if let Some(part) = part {
                chart
                    .draw_series(LineSeries::new(
                        samples.iter().map(|s| (s.elapsed_s / 60.0, part(s))),
                        RGBColor(128, 128, 128).stroke_width(2),
                    ))
                    .map_err(|e| e.to_string())?;
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    rasterise(&svg, png)
}

fn rasterise(svg: &str, png: &Path) -> Result<(), String> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options::default();
    let fonts = opt.fontdb_mut();
    fonts.load_system_fonts();
    // The generic family is resolved to a named one; take one this machine has.
    let family = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial"]
        .into_iter()
        .find(|f| {
            fonts
                .faces()
                .any(|face| face.families.iter().any(|(n, _)| n == f))
        })
        .map(str::to_string)
        .or_else(|| {
            fonts
                .faces()
                .next()
                .and_then(|f| f.families.first().map(|(n, _)| n.clone()))
        });
    if let Some(f) = family {
        fonts.set_sans_serif_family(f);
    }
    let tree = usvg::Tree::from_str(svg, &opt).map_err(|e| e.to_string())?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).ok_or("empty plot")?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    let bytes = pixmap.encode_png().map_err(|e| e.to_string())?;
    if let Some(dir) = png.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(png, bytes).map_err(|e| format!("{}: {e}", png.display()))
}
