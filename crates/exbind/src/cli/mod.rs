//! The client subcommands: connection settings, output, and the error line.

pub mod bulk;
pub mod single;
pub mod sync;
pub mod watch;

use std::path::PathBuf;
use std::time::Duration;

use exbind_client::{Client, Error, Quota, RetryPolicy};
use serde::Deserialize;

/// Where to connect and as whom: flags, then environment, then the config file.
#[derive(Debug, Clone, clap::Args)]
pub struct Conn {
    /// API base URL: an exbind server, https://open.feishu.cn or https://open.larksuite.com.
    #[arg(long, env = "EXBIND_BASE_URL")]
    pub base_url: Option<String>,

    /// A super administrator's user_access_token.
    #[arg(long, env = "FEISHU_USER_ACCESS_TOKEN", hide_env_values = true)]
    pub user_access_token: Option<String>,

    /// Config file (TOML: base_url, user_access_token, admin_token); default
    /// $XDG_CONFIG_HOME/exbind/config.toml.
    #[arg(long, env = "EXBIND_CONFIG")]
    pub config: Option<PathBuf>,

    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    base_url: Option<String>,
    user_access_token: Option<String>,
    admin_token: Option<String>,
}

/// A failure of a subcommand: what to print and the exit status.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub json: Option<serde_json::Value>,
    pub exit_code: i32,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            json: None,
            exit_code: 2,
        }
    }

    pub fn client(e: Error, json: bool) -> Failure {
        let as_json = json.then(|| match &e {
            Error::Api(a) => serde_json::json!({
                "code": a.code, "msg": a.msg, "log_id": a.log_id, "http_status": a.status,
                "error": a.detail,
            }),
            other => serde_json::json!({"code": null, "msg": other.to_string(), "log_id": null}),
        });
        Failure {
            message: e.to_string(),
            json: as_json,
            exit_code: 1,
        }
    }
}

pub type CmdResult = Result<(), Failure>;

/// Runs a subcommand on a fresh runtime; prints its failure; returns the exit status.
pub fn run(fut: impl std::future::Future<Output = CmdResult>) -> i32 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(fut) {
        Ok(()) => 0,
        Err(f) => {
            match f.json {
                Some(j) => println!("{j}"),
                None => eprintln!("exbind: {}", f.message),
            }
            f.exit_code
        }
    }
}

impl Conn {
    fn config_file(&self) -> Result<ConfigFile, Failure> {
        let path = match &self.config {
            Some(p) => p.clone(),
            None => {
                let base = std::env::var_os("XDG_CONFIG_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
                match base.map(|b| b.join("exbind/config.toml")) {
                    Some(p) if p.exists() => p,
                    _ => return Ok(ConfigFile::default()),
                }
            }
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Failure::usage(format!("config {}: {e}", path.display())))?;
        toml::from_str(&text)
            .map_err(|e| Failure::usage(format!("config {}: {}", path.display(), e.message())))
    }

    pub fn base_url(&self) -> Result<String, Failure> {
        Ok(match &self.base_url {
            Some(b) => b.clone(),
            None => self
                .config_file()?
                .base_url
                .unwrap_or_else(|| "http://127.0.0.1:8787".into()),
        })
    }

    pub fn user_token(&self) -> Result<String, Failure> {
        match &self.user_access_token {
            Some(t) => Ok(t.clone()),
            None => self.config_file()?.user_access_token.ok_or_else(|| {
                Failure::usage("no user access token: give --user-access-token, FEISHU_USER_ACCESS_TOKEN or a config file")
            }),
        }
    }

    pub fn admin_token(&self, flag: &Option<String>) -> Result<String, Failure> {
        match flag {
            Some(t) => Ok(t.clone()),
            None => self.config_file()?.admin_token.ok_or_else(|| {
                Failure::usage(
                    "no admin token: give --admin-token, EXBIND_ADMIN_TOKEN or a config file",
                )
            }),
        }
    }

    pub fn client(&self, quota: Option<Quota>) -> Result<Client, Failure> {
        let mut b = Client::builder(&self.base_url()?)
            .timeout(Duration::from_secs(30))
            .retry(RetryPolicy::default());
        if let Some(q) = quota {
            b = b.quota(q);
        }
        b.build().map_err(|e| Failure::client(e, self.json))
    }
}

/// Prints `rows` as an aligned two-column table.
pub fn print_table(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:width$}  {v}");
    }
}
