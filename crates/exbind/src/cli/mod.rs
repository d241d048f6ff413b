//! The client subcommands: connection settings, output, and the error line.

pub mod bulk;
pub mod login;
pub mod single;
pub mod sync;
pub mod watch;

use std::path::PathBuf;
use std::time::Duration;

use exbind_client::{Client, Error, Quota, RetryPolicy};
use serde::Deserialize;

use login::Auth;

pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8787";

/// Where to connect and as whom: flags, then environment, then the config file, then the
/// stored login (`exbind login`).
#[derive(Debug, Clone, clap::Args)]
pub struct Conn {
    /// API base URL: an exbind server, https://open.feishu.cn or https://open.larksuite.com.
    #[arg(long, env = "EXBIND_BASE_URL")]
    pub base_url: Option<String>,

    /// A super administrator's user_access_token; default: the stored login.
    #[arg(long, env = "FEISHU_USER_ACCESS_TOKEN", hide_env_values = true)]
    pub user_access_token: Option<String>,

    /// Whose stored login to use at the base URL; default: the latest there.
    #[arg(long, env = "EXBIND_APP_ID")]
    pub app_id: Option<String>,

    /// Config file (TOML: base_url, user_access_token, admin_token, app_id, app_secret);
    /// default $XDG_CONFIG_HOME/exbind/config.toml.
    #[arg(long, env = "EXBIND_CONFIG")]
    pub config: Option<PathBuf>,

    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub base_url: Option<String>,
    pub user_access_token: Option<String>,
    pub admin_token: Option<String>,
    pub app_id: Option<String>,
    pub app_secret: Option<String>,
}

/// `$XDG_CONFIG_HOME/exbind`, else `~/.config/exbind`.
pub fn config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|b| b.join("exbind"))
}

/// The config file at `path`, else the default one if it exists.
pub fn load_config(path: &Option<PathBuf>) -> Result<ConfigFile, Failure> {
    let path = match path {
        Some(p) => p.clone(),
        None => match config_dir().map(|d| d.join("config.toml")) {
            Some(p) if p.exists() => p,
            _ => return Ok(ConfigFile::default()),
        },
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Failure::usage(format!("config {}: {e}", path.display())))?;
    toml::from_str(&text)
        .map_err(|e| Failure::usage(format!("config {}: {}", path.display(), e.message())))
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

    /// A failure that is not the caller's usage: exit status 1.
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            json: None,
            exit_code: 1,
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
        load_config(&self.config)
    }

    pub fn base_url(&self) -> Result<String, Failure> {
        if let Some(b) = &self.base_url {
            return Ok(b.clone());
        }
        if let Some(b) = self.config_file()?.base_url {
            return Ok(b);
        }
        Ok(login::latest_base_url()?.unwrap_or_else(|| DEFAULT_BASE_URL.into()))
    }

    /// The configured app: flag, environment, config file.
    pub fn app_id(&self) -> Result<Option<String>, Failure> {
        match &self.app_id {
            Some(a) => Ok(Some(a.clone())),
            None => Ok(self.config_file()?.app_id),
        }
    }

    /// The user token to call with: flag, environment, config file, then the stored login
    /// for the base URL (refreshed first if it has run out).
    pub async fn auth(&self, client: &Client) -> Result<Auth, Failure> {
        if let Some(t) = &self.user_access_token {
            return Ok(Auth::given(t.clone(), client.clone()));
        }
        if let Some(t) = self.config_file()?.user_access_token {
            return Ok(Auth::given(t, client.clone()));
        }
        let app = self.app_id()?;
        Auth::stored(client.base_url(), app.as_deref(), client.clone())
            .await?
            .ok_or_else(|| {
                Failure::usage(format!(
                    "no user access token for {}: give --user-access-token, \
                     FEISHU_USER_ACCESS_TOKEN or a config file, or run exbind login",
                    client.base_url()
                ))
            })
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
