//! `exbind login`, `whoami`, `logout` (oauth.md §6), the stored logins
//! (`$XDG_CONFIG_HOME/exbind/credentials.toml`, mode 0600, one entry per base URL and app),
//! and the user token every client subcommand calls with, refreshed when it runs out.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::Query;
use axum::response::{Html, IntoResponse};
use exbind_client::oauth::{self, Pkce, UserTokens};
use exbind_client::{Client, Error};
use maud::{html, Markup, DOCTYPE};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::{config_dir, load_config, print_table, CmdResult, Conn, Failure};

/// How long `exbind login` waits for the browser to come back.
const LOGIN_PATIENCE: Duration = Duration::from_secs(600);
/// A stored token this close to its expiry is refreshed before it is used.
const EXPIRY_MARGIN_S: i64 = 60;

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// API base URL: an exbind server, https://open.feishu.cn or https://open.larksuite.com.
    #[arg(long, env = "EXBIND_BASE_URL")]
    base_url: Option<String>,
    /// The app to log in with (its redirect URIs must allow http://127.0.0.1:PORT/callback).
    #[arg(long, env = "EXBIND_APP_ID")]
    app_id: Option<String>,
    /// The app's secret: the code exchange and every refresh need it (stored with the tokens).
    #[arg(long, env = "EXBIND_APP_SECRET", hide_env_values = true)]
    app_secret: Option<String>,
    /// Space-separated scopes to ask for; default: none named (every scope of the app).
    #[arg(long)]
    scope: Option<String>,
    /// Print the URL to open instead of opening a browser.
    #[arg(long)]
    no_browser: bool,
    /// Port of the loopback listener for the redirect; default: any free port.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Config file (as for the other subcommands).
    #[arg(long, env = "EXBIND_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct WhoamiArgs {
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    conn: Conn,
}

// ---- the credentials file ---------------------------------------------------------------

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    /// Oldest first: the last entry of a base URL is its latest login.
    #[serde(default)]
    logins: Vec<StoredLogin>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredLogin {
    pub base_url: String,
    pub app_id: String,
    app_secret: String,
    access_token: String,
    /// Unix seconds.
    expires_at: i64,
    refresh_token: Option<String>,
    refresh_token_expires_at: Option<i64>,
    scope: String,
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn credentials_path() -> Result<PathBuf, Failure> {
    config_dir()
        .map(|d| d.join("credentials.toml"))
        .ok_or_else(|| Failure::usage("neither XDG_CONFIG_HOME nor HOME is set"))
}

fn load_credentials() -> Result<CredentialsFile, Failure> {
    let path = credentials_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            Failure::usage(format!("credentials {}: {}", path.display(), e.message()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CredentialsFile::default()),
        Err(e) => Err(Failure::usage(format!(
            "credentials {}: {e}",
            path.display()
        ))),
    }
}

/// Writes the file whole, readable by its owner only, and renames it into place.
fn save_credentials(file: &CredentialsFile) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = credentials_path()?;
    let fail = |e: std::io::Error| Failure::usage(format!("credentials {}: {e}", path.display()));
    let dir = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir).map_err(fail)?;
    let tmp = dir.join(format!(".credentials.toml.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(toml::to_string(file).expect("serializable").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(fail)?;
    std::fs::rename(&tmp, &path).map_err(fail)
}

fn same_base(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

impl CredentialsFile {
    /// The entry of `app_id` at `base`, else (no app configured) the latest login there.
    fn find(&self, base: &str, app_id: Option<&str>) -> Option<usize> {
        self.logins
            .iter()
            .rposition(|l| same_base(&l.base_url, base) && app_id.is_none_or(|a| a == l.app_id))
    }

    /// Replaces the entry of the same base URL and app, as the latest login.
    fn put(&mut self, login: StoredLogin) {
        self.logins
            .retain(|l| !(same_base(&l.base_url, &login.base_url) && l.app_id == login.app_id));
        self.logins.push(login);
    }
}

/// The base URL of the most recent login, for a subcommand that was given none.
pub fn latest_base_url() -> Result<Option<String>, Failure> {
    Ok(load_credentials()?
        .logins
        .last()
        .map(|l| l.base_url.clone()))
}

fn stored(base: &str, app: &str, secret: &str, t: UserTokens) -> StoredLogin {
    let now = now_s();
    StoredLogin {
        base_url: base.trim_end_matches('/').to_string(),
        app_id: app.to_string(),
        app_secret: secret.to_string(),
        access_token: t.access_token,
        expires_at: now + t.expires_in,
        refresh_token: t.refresh_token,
        refresh_token_expires_at: t.refresh_token_expires_in.map(|s| now + s),
        scope: t.scope,
    }
}

// ---- the token the client subcommands use ------------------------------------------------

/// A user token: given (flag, environment, config file), or a stored login, which is
/// refreshed when it runs out.
#[derive(Clone)]
pub struct Auth(Arc<AuthInner>);

struct AuthInner {
    /// `None` for a given token, which is never refreshed.
    login: Option<(String, String)>,
    current: tokio::sync::Mutex<String>,
    client: Client,
}

impl Auth {
    pub fn given(token: String, client: Client) -> Auth {
        Auth(Arc::new(AuthInner {
            login: None,
            current: tokio::sync::Mutex::new(token),
            client,
        }))
    }

    /// The stored login for `base` (of `app_id`, else the latest there), refreshed first
    /// if it has run out; `None` when there is none.
    pub async fn stored(
        base: &str,
        app_id: Option<&str>,
        client: Client,
    ) -> Result<Option<Auth>, Failure> {
        let file = load_credentials()?;
        let Some(i) = file.find(base, app_id) else {
            return Ok(None);
        };
        let l = &file.logins[i];
        let auth = Auth(Arc::new(AuthInner {
            login: Some((l.base_url.clone(), l.app_id.clone())),
            current: tokio::sync::Mutex::new(l.access_token.clone()),
            client,
        }));
        if l.expires_at - EXPIRY_MARGIN_S <= now_s() {
            auth.refresh(&l.access_token)
                .await
                .map_err(|e| Failure::client(e, false))?;
        }
        Ok(Some(auth))
    }

    /// The stored login this token comes from: (base URL, app id).
    pub fn login(&self) -> Option<&(String, String)> {
        self.0.login.as_ref()
    }

    pub async fn token(&self) -> String {
        self.0.current.lock().await.clone()
    }

    /// Runs `f` with the token; when a stored login's token turns out expired or invalid
    /// (99991677, 99991668), refreshes it and runs `f` once more.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let token = self.token().await;
        match f(token.clone()).await {
            Err(Error::Api(a))
                if self.0.login.is_some() && [99991677, 99991668].contains(&a.code) =>
            {
                let fresh = self.refresh(&token).await?;
                f(fresh).await
            }
            other => other,
        }
    }

    /// A new token for the stored login, unless `used` was already replaced (by another
    /// task or another process): refresh tokens are single use.
    async fn refresh(&self, used: &str) -> Result<String, Error> {
        let (base, app) = self.0.login.as_ref().expect("a stored login");
        let mut current = self.0.current.lock().await;
        if *current != used {
            return Ok(current.clone());
        }
        let gone = |why: String| {
            Error::Login(format!(
                "the stored login for {base} (app {app}) {why}: run exbind login"
            ))
        };
        let io = |f: Failure| Error::Login(f.message);
        let mut file = load_credentials().map_err(io)?;
        let i = file
            .find(base, Some(app))
            .ok_or_else(|| gone("is gone".into()))?;
        let l = file.logins[i].clone();
        if l.access_token != used {
            *current = l.access_token.clone();
            return Ok(l.access_token);
        }
        let Some(refresh) = &l.refresh_token else {
            return Err(gone("has expired and holds no refresh token".into()));
        };
        let t = self
            .0
            .client
            .refresh_user_token(&l.app_id, &l.app_secret, refresh)
            .await
            .map_err(|e| gone(format!("cannot be refreshed ({e})")))?;
        let fresh = stored(base, app, &l.app_secret, t);
        *current = fresh.access_token.clone();
        file.put(fresh);
        save_credentials(&file).map_err(io)?;
        Ok(current.clone())
    }
}

// ---- exbind login ---------------------------------------------------------------------

/// What the browser brought back to the loopback listener, and where to send its page.
type Callback = (HashMap<String, String>, oneshot::Sender<Markup>);

fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · exbind" }
                style { "body{font-family:system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1f2329}\
                         main{max-width:32rem;margin:12vh auto;padding:2rem;background:#fff;\
                         border-radius:12px;box-shadow:0 1px 4px #0002}h1{font-size:1.4rem;margin-top:0}" }
            }
            body { main { h1 { (title) } (body) } }
        }
    }
}

/// Whether a browser can be opened here: a display on Linux and the like, always on macOS.
fn open_browser(url: &str) -> bool {
    let (opener, display) = if cfg!(target_os = "macos") {
        ("open", true)
    } else {
        (
            "xdg-open",
            std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some(),
        )
    };
    display
        && std::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_ok()
}

pub async fn login(a: LoginArgs) -> CmdResult {
    let cfg = load_config(&a.config)?;
    let base = a
        .base_url
        .or(cfg.base_url)
        .unwrap_or_else(|| super::DEFAULT_BASE_URL.into());
    let base = base.trim_end_matches('/').to_string();
    let (Some(app_id), Some(secret)) = (a.app_id.or(cfg.app_id), a.app_secret.or(cfg.app_secret))
    else {
        return Err(Failure::usage(
            "no app: give --app-id and --app-secret, EXBIND_APP_ID and EXBIND_APP_SECRET, \
             or app_id and app_secret in the config file",
        ));
    };
    let client = Client::builder(&base)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Failure::client(e, false))?;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", a.port))
        .await
        .map_err(|e| Failure::usage(format!("cannot listen on 127.0.0.1:{}: {e}", a.port)))?;
    let port = listener
        .local_addr()
        .map_err(|e| Failure::usage(e.to_string()))?
        .port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let pkce = Pkce::new();
    let state = oauth::random_state();
    let url = oauth::authorize_url(
        &base,
        &app_id,
        &redirect,
        a.scope.as_deref(),
        &state,
        &pkce.challenge,
    )
    .map_err(|e| Failure::client(e, false))?;

    let (tx, mut rx) = mpsc::channel::<Callback>(4);
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::get(move |Query(q): Query<HashMap<String, String>>| {
            let tx = tx.clone();
            async move {
                let (reply, page) = oneshot::channel();
                let shown = match tx.send((q, reply)).await {
                    Ok(()) => page.await.ok(),
                    Err(_) => None,
                };
                let shown = shown.unwrap_or_else(|| {
                    page_failed("This login is already over. Run exbind login again.")
                });
                // The listener goes away after one login: no keep-alive to wait for.
                (
                    [(axum::http::header::CONNECTION, "close")],
                    Html(shown.into_string()),
                )
                    .into_response()
            }
        }),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    if a.no_browser || !open_browser(&url) {
        eprintln!("Open this URL to log in: {url}");
    } else {
        eprintln!("Opened a browser to log in; if none appeared, open this URL: {url}");
    }

    let outcome = loop {
        let Ok(Some((q, reply))) = tokio::time::timeout(LOGIN_PATIENCE, rx.recv()).await else {
            break Err(Failure::failed(format!(
                "no answer from the browser within {} minutes",
                LOGIN_PATIENCE.as_secs() / 60
            )));
        };
        if q.get("state") != Some(&state) {
            // Not the answer to this login (another tab, or a forged request): refused.
            let _ = reply.send(page_failed(
                "This answer does not belong to the login in progress, so it was refused.",
            ));
            continue;
        }
        if let Some(err) = q.get("error") {
            let why = q.get("error_description").unwrap_or(err);
            let _ = reply.send(page_failed(&format!("The login did not complete: {why}.")));
            break Err(Failure::failed(format!("login refused: {err}: {why}")));
        }
        let Some(code) = q.get("code") else {
            let _ = reply.send(page_failed("The answer carried no code."));
            break Err(Failure::failed("the redirect carried no code"));
        };
        match client
            .exchange_code(&app_id, &secret, code, &redirect, &pkce.verifier)
            .await
        {
            Ok(tokens) => {
                let login = stored(&base, &app_id, &secret, tokens);
                let who = client
                    .user_info(&login.access_token)
                    .await
                    .ok()
                    .and_then(|r| r.data["name"].as_str().map(str::to_string));
                let mut file = match load_credentials() {
                    Ok(f) => f,
                    Err(e) => break Err(e),
                };
                let expires_in = login.expires_at - now_s();
                file.put(login);
                if let Err(e) = save_credentials(&file) {
                    let _ = reply.send(page_failed("The tokens could not be saved."));
                    break Err(e);
                }
                let as_whom = who.map(|n| format!(" as {n}")).unwrap_or_default();
                let _ = reply.send(page(
                    "Logged in",
                    html! {
                        p { "exbind is logged in to " strong { (base) } (as_whom) "." }
                        p { "You may close this page and return to the terminal." }
                    },
                ));
                println!("logged in to {base}{as_whom} with app {app_id}; the token expires in {expires_in} s");
                break Ok(());
            }
            Err(e) => {
                let _ = reply.send(page_failed(&format!(
                    "The code could not be exchanged: {e}."
                )));
                break Err(Failure::client(e, false));
            }
        }
    };
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    outcome
}

fn page_failed(why: &str) -> Markup {
    page(
        "Login failed",
        html! {
            p { (why) }
            p { "You may close this page; see the terminal for what to do next." }
        },
    )
}

// ---- exbind whoami / logout -----------------------------------------------------------

pub async fn whoami(a: WhoamiArgs) -> CmdResult {
    let client = a.conn.client(None)?;
    let auth = a.conn.auth(&client).await?;
    let r = auth
        .run(|t| {
            let client = client.clone();
            async move { client.user_info(&t).await }
        })
        .await
        .map_err(|e| Failure::client(e, a.conn.json))?;
    if a.conn.json {
        println!(
            "{}",
            serde_json::json!({"data": r.data, "log_id": r.log_id})
        );
        return Ok(());
    }
    let mut rows: Vec<(&str, String)> = [
        "name",
        "en_name",
        "user_id",
        "open_id",
        "union_id",
        "email",
        "tenant_key",
    ]
    .into_iter()
    .filter_map(|k| r.data[k].as_str().map(|v| (k, v.to_string())))
    .collect();
    rows.push(("base_url", client.base_url().to_string()));
    if let Some((_, app)) = auth.login() {
        rows.push(("app_id", app.clone()));
    }
    print_table(&rows);
    Ok(())
}

pub async fn logout(a: LogoutArgs) -> CmdResult {
    let base = a.conn.base_url()?;
    let mut file = load_credentials()?;
    let Some(i) = file.find(&base, a.conn.app_id()?.as_deref()) else {
        return Err(Failure::failed(format!("not logged in at {base}")));
    };
    let gone = file.logins.remove(i);
    save_credentials(&file)?;
    println!("logged out of {} (app {})", gone.base_url, gone.app_id);
    Ok(())
}
