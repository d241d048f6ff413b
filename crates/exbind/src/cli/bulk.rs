//! `exbind bulk bind|unbind FILE.csv`: many rows under the client-side quota, with bounded
//! concurrency, a progress bar, a per-row report and resume.
//!
//! Resume: every row is recorded in an append-only file as it is sent and as it finishes
//! (each line synced to disk). A later run against the same base URL skips the rows that
//! succeeded. A row that was in flight when the run stopped is first checked with a GET, so a
//! call that went through is never made twice.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use exbind_client::{address_problem, Client, CreateBinding, Error, Quota, UserIdType};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Semaphore};

use super::login::Auth;
use super::{CmdResult, Conn, Failure};

#[derive(Debug, clap::Subcommand)]
pub enum BulkCommand {
    /// Bind every row of a CSV with columns admin_account,exchange_account,user_id.
    Bind(BulkArgs),
    /// Unbind every row of a CSV with a column exchange_binding_id, or the columns
    /// admin_account,exchange_account.
    Unbind(BulkArgs),
}

#[derive(Debug, clap::Args)]
pub struct BulkArgs {
    #[command(flatten)]
    conn: Conn,
    /// The CSV file (with a header row).
    file: PathBuf,
    /// What user_id in the file is (bind).
    #[arg(long, default_value = "open_id")]
    user_id_type: UserIdType,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    concurrency: u32,
    /// Client-side quota: requests per second.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    quota_per_second: u32,
    /// Client-side quota: requests per minute.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    quota_per_minute: u32,
    /// Per-row report: JSON when it ends in .json, else CSV. Default: FILE.<op>-report.csv.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Where the resume record is kept. Default: .exbind-state beside FILE.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Forget the resume record and start over.
    #[arg(long)]
    fresh: bool,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Bind,
    Unbind,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Bind => "bind",
            Op::Unbind => "unbind",
        }
    }
}

/// One row's work.
#[derive(Debug, Clone)]
enum Work {
    Bind(CreateBinding),
    Unbind { id: String },
}

impl Work {
    /// Identifies the row's operation in the resume record.
    fn key(&self) -> String {
        match self {
            Work::Bind(c) => format!(
                "bind\t{}\t{}\t{}",
                c.admin_account, c.exchange_account, c.user_id
            ),
            Work::Unbind { id } => format!("unbind\t{id}"),
        }
    }

    fn binding_id(&self) -> String {
        match self {
            Work::Bind(c) => {
                exbind_client::encode_binding_id(&c.admin_account, &c.exchange_account)
            }
            Work::Unbind { id } => id.clone(),
        }
    }
}

/// A row of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportRow {
    /// The line of the input file.
    pub row: u64,
    /// ok, error or invalid.
    pub result: String,
    pub code: Option<i64>,
    pub msg: String,
    pub log_id: Option<String>,
    pub exchange_binding_id: Option<String>,
}

/// A line of the resume record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordLine {
    key: String,
    /// sent, ok or error.
    state: String,
    #[serde(default)]
    row: Option<ReportRow>,
}

struct Record {
    file: std::fs::File,
}

impl Record {
    fn append(&mut self, line: &RecordLine) -> std::io::Result<()> {
        let mut text = serde_json::to_string(line).expect("serializable");
        text.push('\n');
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()
    }
}

/// The record's path: one per input file, operation and base URL.
fn record_path(args: &BulkArgs, op: Op, base_url: &str) -> PathBuf {
    let dir = args.state_dir.clone().unwrap_or_else(|| {
        args.file
            .parent()
            .unwrap_or(Path::new("."))
            .join(".exbind-state")
    });
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let base: String = base_url
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{name}.{}.{base}.jsonl", op.name()))
}

/// What earlier runs recorded: the last state of each key.
fn load_record(path: &Path) -> Result<HashMap<String, RecordLine>, Failure> {
    let mut out = HashMap::new();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(Failure::usage(format!(
                "resume record {}: {e}",
                path.display()
            )))
        }
    };
    // A torn last line (a crash mid-write) is ignored.
    for line in text
        .lines()
        .filter_map(|l| serde_json::from_str::<RecordLine>(l).ok())
    {
        out.insert(line.key.clone(), line);
    }
    Ok(out)
}

/// The rows of an input file: the work of each good row with its line number, and the
/// report rows of the bad ones.
type Rows = (Vec<(u64, Work)>, Vec<ReportRow>);

/// Reads the CSV: good rows to do, bad rows reported with their line number.
fn read_rows(path: &Path, op: Op) -> Result<Rows, Failure> {
    let data =
        std::fs::read(path).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    let lines = LineIndex::new(&data);
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(&data[..]);
    let headers = rdr
        .headers()
        .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (admin, exchange, user, id) = (
        col("admin_account"),
        col("exchange_account"),
        col("user_id"),
        col("exchange_binding_id"),
    );
    match op {
        Op::Bind if admin.is_none() || exchange.is_none() || user.is_none() => {
            return Err(Failure::usage(format!(
                "{}: bulk bind needs the columns admin_account,exchange_account,user_id",
                path.display()
            )))
        }
        Op::Unbind if id.is_none() && (admin.is_none() || exchange.is_none()) => {
            return Err(Failure::usage(format!(
                "{}: bulk unbind needs a column exchange_binding_id, or admin_account,exchange_account",
                path.display()
            )))
        }
        _ => {}
    }
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| lines.line_of(p));
                bad.push(invalid(line, format!("unreadable row: {e}")));
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| lines.line_of(p));
        if rec.iter().all(str::is_empty) {
            continue;
        }
        let field = |i: Option<usize>| i.and_then(|i| rec.get(i)).unwrap_or("").to_string();
        let address = |i: Option<usize>, name: &str| -> Result<String, String> {
            let v = field(i);
            if v.is_empty() {
                return Err(format!("missing {name}"));
            }
            match address_problem(&v) {
                Some(p) => Err(format!("{name} {v:?}: not an email address ({p})")),
                None => Ok(v),
            }
        };
        let work = match op {
            Op::Bind => (|| {
                let admin_account = address(admin, "admin_account")?;
                let exchange_account = address(exchange, "exchange_account")?;
                let user_id = field(user);
                if user_id.is_empty() {
                    return Err("missing user_id".to_string());
                }
                Ok(Work::Bind(CreateBinding {
                    admin_account,
                    exchange_account,
                    user_id,
                }))
            })(),
            Op::Unbind => (|| {
                let given = field(id);
                if !given.is_empty() {
                    exbind_client::decode_binding_id(&given).map_err(|_| {
                        format!("exchange_binding_id {given:?}: not a valid binding id")
                    })?;
                    return Ok(Work::Unbind { id: given });
                }
                let a = address(admin, "admin_account")?;
                let e = address(exchange, "exchange_account")?;
                Ok(Work::Unbind {
                    id: exbind_client::encode_binding_id(&a, &e),
                })
            })(),
        };
        match work {
            Ok(w) => good.push((line, w)),
            Err(why) => bad.push(invalid(line, why)),
        }
    }
    Ok((good, bad))
}

/// Line numbers of the file's own, for the report. The CSV reader's positions point where it
/// started reading a record, before any blank lines it skipped.
struct LineIndex<'a> {
    data: &'a [u8],
    /// Byte offsets of each '\n'.
    newlines: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(data: &'a [u8]) -> Self {
        let newlines = data
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i)
            .collect();
        LineIndex { data, newlines }
    }

    /// The 1-based line on which the record at `pos` starts.
    fn line_of(&self, pos: &csv::Position) -> u64 {
        let mut at = pos.byte() as usize;
        while at < self.data.len() && matches!(self.data[at], b'\n' | b'\r') {
            at += 1;
        }
        self.newlines.partition_point(|&n| n < at) as u64 + 1
    }
}

impl ReportRow {
    /// The row as one line for stderr: `line 42: exchange_account "x": not an email address`.
    fn line(&self) -> String {
        match self.code {
            Some(code) => format!("line {}: code {code}: {}", self.row, self.msg),
            None => format!("line {}: {}", self.row, self.msg),
        }
    }
}

fn invalid(line: u64, msg: String) -> ReportRow {
    ReportRow {
        row: line,
        result: "invalid".into(),
        code: None,
        msg,
        log_id: None,
        exchange_binding_id: None,
    }
}

fn row_from(line: u64, result: Result<(Option<String>, String), Error>, id: String) -> ReportRow {
    match result {
        Ok((log_id, msg)) => ReportRow {
            row: line,
            result: "ok".into(),
            code: Some(0),
            msg,
            log_id,
            exchange_binding_id: Some(id),
        },
        Err(e) => {
            let (code, msg, log_id) = match &e {
                Error::Api(a) => (Some(a.code), a.msg.clone(), a.log_id.clone()),
                other => (None, other.to_string(), None),
            };
            ReportRow {
                row: line,
                result: "error".into(),
                code,
                msg,
                log_id,
                exchange_binding_id: Some(id),
            }
        }
    }
}

/// Does one row. `interrupted`: the row was in flight when an earlier run stopped.
async fn do_row(
    client: &Client,
    auth: &Auth,
    uid: UserIdType,
    work: &Work,
    interrupted: bool,
) -> Result<(Option<String>, String), Error> {
    let id = work.binding_id();
    let get = |id: &str| {
        let id = id.to_string();
        auth.run(move |t| {
            let id = id.clone();
            async move { client.get_binding(&t, &id, uid).await }
        })
    };
    match work {
        Work::Bind(req) => {
            if interrupted {
                if let Ok(r) = get(&id).await {
                    if r.data.user_id == req.user_id {
                        return Ok((
                            r.log_id,
                            "already bound (checked after an interrupted run)".into(),
                        ));
                    }
                }
            }
            let r = auth
                .run(|t| async move { client.create_binding(&t, req, uid).await })
                .await?;
            Ok((r.log_id, format!("bound, status {}", r.data.status)))
        }
        Work::Unbind { id } => {
            if interrupted {
                if let Err(Error::Api(a)) = get(id).await {
                    if a.code == 195103 {
                        return Ok((
                            a.log_id,
                            "already unbound (checked after an interrupted run)".into(),
                        ));
                    }
                }
            }
            match auth
                .run(|t| async move { client.delete_binding(&t, id).await })
                .await
            {
                Ok(r) => Ok((r.log_id, "unbound".into())),
                // The interrupted run's delete may still have been committing when we looked.
                Err(Error::Api(a)) if interrupted && a.code == 195103 => Ok((
                    a.log_id,
                    "already unbound (the interrupted run's delete went through)".into(),
                )),
                Err(e) => Err(e),
            }
        }
    }
}

pub async fn run(cmd: BulkCommand) -> CmdResult {
    let (op, args) = match cmd {
        BulkCommand::Bind(a) => (Op::Bind, a),
        BulkCommand::Unbind(a) => (Op::Unbind, a),
    };
    let base_url = args.conn.base_url()?;
    let client = args.conn.client(Some(Quota::new(
        args.quota_per_second,
        args.quota_per_minute,
    )))?;
    let auth = args.conn.auth(&client).await?;
    let (rows, mut report) = read_rows(&args.file, op)?;
    // Named on stderr too: a skipped row should not need the report to be noticed.
    for bad in &report {
        eprintln!("{}", bad.line());
    }

    let record_file = record_path(&args, op, &base_url);
    if args.fresh {
        let _ = std::fs::remove_file(&record_file);
    }
    let earlier = load_record(&record_file)?;
    if let Some(dir) = record_file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::usage(format!("{}: {e}", dir.display())))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&record_file)
        .map_err(|e| Failure::usage(format!("{}: {e}", record_file.display())))?;
    let record = Arc::new(Mutex::new(Record { file }));

    let total = rows.len() as u64;
    let bar = if args.no_progress {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{wide_bar}] {pos}/{len} {per_sec} ETA {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let counts = Arc::new(Mutex::new((0u64, 0u64)));
    let permits = Arc::new(Semaphore::new(args.concurrency as usize));
    let mut tasks = tokio::task::JoinSet::new();
    let mut resumed = 0u64;
    let mut interrupted = false;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());

    for (line, work) in rows {
        let key = work.key();
        let prior = earlier.get(&key);
        if let Some(RecordLine {
            state,
            row: Some(done),
            ..
        }) = prior
        {
            if state == "ok" {
                report.push(ReportRow {
                    row: line,
                    msg: format!("{} (done in an earlier run)", done.msg),
                    ..done.clone()
                });
                resumed += 1;
                bar.inc(1);
                continue;
            }
        }
        let was_in_flight = prior.is_some_and(|p| p.state == "sent");
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore open"),
            _ = &mut ctrl_c => { interrupted = true; break; }
        };
        let (client, auth, record, bar, counts) = (
            client.clone(),
            auth.clone(),
            record.clone(),
            bar.clone(),
            counts.clone(),
        );
        let uid = args.user_id_type;
        tasks.spawn(async move {
            let _permit = permit;
            let sent = RecordLine {
                key: key.clone(),
                state: "sent".into(),
                row: None,
            };
            if let Err(e) = record.lock().await.append(&sent) {
                return Err(format!("cannot write the resume record: {e}"));
            }
            let result = do_row(&client, &auth, uid, &work, was_in_flight).await;
            // A transport failure leaves it unknown whether the call went through: the row
            // stays in flight, so a later run checks before it calls again.
            let unknown = matches!(&result, Err(Error::Transport(_)));
            let row = row_from(line, result, work.binding_id());
            let state = match row.result.as_str() {
                "ok" => "ok",
                _ if unknown => "sent",
                _ => "error",
            };
            record
                .lock()
                .await
                .append(&RecordLine {
                    key,
                    state: state.into(),
                    row: Some(row.clone()),
                })
                .map_err(|e| format!("cannot write the resume record: {e}"))?;
            if state != "ok" {
                bar.suspend(|| eprintln!("{}", row.line()));
            }
            let mut c = counts.lock().await;
            if state == "ok" {
                c.0 += 1
            } else {
                c.1 += 1
            }
            bar.set_message(format!("ok {} failed {}", c.0, c.1));
            bar.inc(1);
            Ok(row)
        });
    }
    let mut fatal = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(row)) => report.push(row),
            Ok(Err(e)) => fatal = Some(e),
            Err(e) => fatal = Some(format!("a worker failed: {e}")),
        }
    }
    bar.finish_and_clear();
    report.sort_by_key(|r| r.row);

    let report_path = args.report.clone().unwrap_or_else(|| {
        let mut p = args.file.clone().into_os_string();
        p.push(format!(".{}-report.csv", op.name()));
        PathBuf::from(p)
    });
    write_report(&report_path, &report)
        .map_err(|e| Failure::usage(format!("report {}: {e}", report_path.display())))?;

    let ok = report.iter().filter(|r| r.result == "ok").count();
    let failed = report.iter().filter(|r| r.result == "error").count();
    let bad = report.iter().filter(|r| r.result == "invalid").count();
    let summary = serde_json::json!({
        "operation": op.name(), "ok": ok, "failed": failed, "invalid": bad,
        "resumed": resumed, "interrupted": interrupted, "report": report_path,
    });
    if args.conn.json {
        println!("{summary}");
    } else {
        println!(
            "{}: {ok} ok ({resumed} from an earlier run), {failed} failed, {bad} invalid; report {}",
            op.name(),
            report_path.display()
        );
    }
    if let Some(e) = fatal {
        return Err(Failure {
            message: e,
            json: None,
            exit_code: 1,
        });
    }
    if interrupted {
        return Err(Failure {
            message: "interrupted; run the same command again to resume".into(),
            json: None,
            exit_code: 130,
        });
    }
    if failed + bad > 0 {
        return Err(Failure {
            message: format!(
                "{failed} rows failed and {bad} were invalid; see {}",
                report_path.display()
            ),
            json: None,
            exit_code: 1,
        });
    }
    Ok(())
}

/// Writes rows as JSON when the path ends in .json, else as CSV.
pub fn write_report<T: Serialize>(path: &Path, rows: &[T]) -> std::io::Result<()> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        std::fs::write(path, serde_json::to_vec_pretty(rows).expect("serializable"))
    } else {
        let mut w = csv::Writer::from_path(path)?;
        for r in rows {
            w.serialize(r)?;
        }
        w.flush()
    }
}

/// Reads a report written by `write_report`.
pub fn read_report(path: &Path) -> Result<Vec<ReportRow>, Failure> {
    let fail =
        |e: &dyn std::fmt::Display| Failure::usage(format!("report {}: {e}", path.display()));
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        let text = std::fs::read_to_string(path).map_err(|e| fail(&e))?;
        serde_json::from_str(&text).map_err(|e| fail(&e))
    } else {
        let mut r = csv::Reader::from_path(path).map_err(|e| fail(&e))?;
        r.deserialize()
            .collect::<Result<_, _>>()
            .map_err(|e| fail(&e))
    }
}
