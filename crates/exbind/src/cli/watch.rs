//! `exbind watch`: follow bindings until every one is `done` or `err`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use exbind_client::{BindingStatus, Error, Quota, UserIdType};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::bulk::{read_report, write_report};
use super::{CmdResult, Conn, Failure};

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    conn: Conn,
    /// exchange_binding_ids to follow.
    ids: Vec<String>,
    /// Follow the bindings a bulk report lists as ok.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Seconds between rounds.
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// Give up after this many seconds (0 = never).
    #[arg(long, default_value_t = 0.0)]
    timeout: f64,
    /// Write the final states here: JSON when it ends in .json, else CSV.
    #[arg(long)]
    output: Option<PathBuf>,
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    quota_per_second: u32,
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    quota_per_minute: u32,
    /// No live view.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Debug, Clone, Serialize)]
struct State {
    exchange_binding_id: String,
    status: String,
    code: Option<i64>,
    msg: String,
    log_id: Option<String>,
}

pub async fn run(a: WatchArgs) -> CmdResult {
    let mut ids = a.ids.clone();
    if let Some(r) = &a.report {
        ids.extend(
            read_report(r)?
                .into_iter()
                .filter(|r| r.result == "ok")
                .filter_map(|r| r.exchange_binding_id),
        );
    }
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Err(Failure::usage("nothing to watch: give ids or --report"));
    }
    let client = a
        .conn
        .client(Some(Quota::new(a.quota_per_second, a.quota_per_minute)))?;
    let auth = a.conn.auth(&client).await?;
    let bar = if a.no_progress {
        ProgressBar::with_draw_target(Some(ids.len() as u64), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(ids.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{wide_bar}] {pos}/{len} finished  {msg}",
        )
        .expect("valid template"),
    );

    let mut states: BTreeMap<String, State> = BTreeMap::new();
    let started = std::time::Instant::now();
    let mut timed_out = false;
    loop {
        let pending: Vec<String> = ids
            .iter()
            .filter(|id| states.get(*id).is_none_or(|s| !is_final(&s.status)))
            .cloned()
            .collect();
        if pending.is_empty() {
            break;
        }
        if a.timeout > 0.0 && started.elapsed().as_secs_f64() > a.timeout {
            timed_out = true;
            break;
        }
        for id in pending {
            let (c, i) = (&client, &id);
            let st = match auth
                .run(|t| async move { c.get_binding(&t, i, UserIdType::OpenId).await })
                .await
            {
                Ok(r) => State {
                    exchange_binding_id: id.clone(),
                    status: r.data.status.to_string(),
                    code: Some(0),
                    msg: String::new(),
                    log_id: r.log_id,
                },
                Err(Error::Api(e)) => State {
                    exchange_binding_id: id.clone(),
                    status: "error".into(),
                    code: Some(e.code),
                    msg: e.msg,
                    log_id: e.log_id,
                },
                Err(e) => State {
                    exchange_binding_id: id.clone(),
                    status: "unknown".into(),
                    code: None,
                    msg: e.to_string(),
                    log_id: None,
                },
            };
            states.insert(id, st);
            let finished = states.values().filter(|s| is_final(&s.status)).count();
            bar.set_position(finished as u64);
            bar.set_message(counts(states.values()));
        }
        tokio::time::sleep(Duration::from_secs_f64(a.interval.max(0.05))).await;
    }
    bar.finish_and_clear();
    let finals: Vec<State> = states.into_values().collect();
    match &a.output {
        Some(p) => {
            write_report(p, &finals).map_err(|e| Failure::usage(format!("{}: {e}", p.display())))?
        }
        None if a.conn.json => {
            println!("{}", serde_json::to_string(&finals).expect("serializable"))
        }
        None => {
            for s in &finals {
                println!(
                    "{}  {}{}",
                    s.exchange_binding_id,
                    s.status,
                    if s.msg.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "  {} (code {:?}, log_id {})",
                            s.msg,
                            s.code,
                            s.log_id.as_deref().unwrap_or("-")
                        )
                    }
                );
            }
        }
    }
    eprintln!("{}", counts(finals.iter()));
    if timed_out {
        return Err(Failure {
            message: "timed out before every binding finished".into(),
            json: None,
            exit_code: 1,
        });
    }
    if finals
        .iter()
        .any(|s| s.status != BindingStatus::Done.as_str())
    {
        return Err(Failure {
            message: "not every binding reached done".into(),
            json: None,
            exit_code: 1,
        });
    }
    Ok(())
}

/// Done, err, or a binding that cannot be read: nothing more to wait for.
fn is_final(status: &str) -> bool {
    BindingStatus::parse(status).is_none_or(BindingStatus::is_final) && status != "unknown"
}

/// "done 3  err 1"-style counts per status.
fn counts<'a>(states: impl Iterator<Item = &'a State>) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for s in states {
        *by.entry(s.status.as_str()).or_default() += 1;
    }
    by.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join("  ")
}
