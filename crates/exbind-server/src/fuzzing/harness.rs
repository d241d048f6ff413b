//! The application under fuzzing: built once per process as `exbind serve` builds it, over a
//! real store in a temporary data dir (`TMPDIR`; `fuzz/run.sh` points it at a tmpfs, so the
//! store's fsyncs cost little), and put back to its seeded state after any input that
//! changed it, so every input starts from the same state.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use axum::body::Body;
use bytes::Bytes;
use clap::Parser;
use http_body_util::BodyExt;
use tower::Service;

use super::pools::{self, ADMIN_TOKEN, BINDINGS, EXTRA_SEED, TOKENS};
use crate::clock::SystemClock;
use crate::domain::model::UserToken;
use crate::http::control::ops::reset_all;
use crate::http::Frame;
use crate::seed::{self, Format};
use crate::state::SharedState;
use crate::{ServeArgs, Server};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
}

const DIR_PREFIX: &str = "exbind-fuzz-";

/// The harness lives in a static, which is never dropped, so its data dir outlives the
/// process: remove those of earlier processes, which no store holds locked any more.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let lock = e.path().join("data").join("exbind.lock");
        let free = std::fs::File::options()
            .write(true)
            .open(&lock)
            .is_ok_and(|f| f.try_lock().is_ok());
        if free {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

const TEN_YEARS_MS: i64 = 10 * 365 * 24 * 3600 * 1000;

pub struct Harness {
    pub rt: tokio::runtime::Runtime,
    pub state: SharedState,
    pub frame: Frame,
    /// A console session's cookie and its CSRF token.
    pub session: (String, String),
    /// Minted with the seeded state, for the first of `pools::LOGIN_APPS`: its
    /// `app_access_token`, an authorization code, a refresh token (with its app's index).
    pub app_tokens: Vec<String>,
    pub codes: Vec<String>,
    pub refresh: Vec<(String, usize)>,
    _dir: tempfile::TempDir,
}

/// The harness, for one input at a time (the replay test runs targets on several threads).
pub fn harness() -> MutexGuard<'static, Harness> {
    static HARNESS: OnceLock<Mutex<Harness>> = OnceLock::new();
    HARNESS
        .get_or_init(|| Mutex::new(Harness::build()))
        .lock()
        // A failed check panics with the guard held; the next input restores the state.
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Harness {
    fn build() -> Harness {
        remove_stale_dirs();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .expect("temporary data dir");
        let data = dir.path().join("data");
        let args = Args::parse_from([
            "serve".as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--admin-token".as_ref(),
            ADMIN_TOKEN.as_ref(),
            "--journal-size".as_ref(),
            "200".as_ref(),
        ])
        .serve;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let server = rt
            .block_on(Server::start(&args, Arc::new(SystemClock)))
            .unwrap_or_else(|e| panic!("server start: {}", e.message));
        let frame = {
            let _in_runtime = rt.enter();
            server.app()
        };
        let state = server.state().clone();
        // The binding index fills in a task of its own: let it finish first.
        rt.block_on(async {
            while !state.store.warm() {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        });
        let ids = &state.ids;
        let open_ids = pools::TENANTS.iter().flat_map(|t| {
            pools::USERS.iter().flat_map(move |u| {
                let key = ids.user_key(t, u);
                pools::APPS
                    .iter()
                    .flat_map(move |(app, _)| [ids.open_id(&key, app), ids.union_id(&key, app)])
            })
        });
        let _ = pools::OPEN_IDS.set(open_ids.collect());
        let mut h = Harness {
            rt,
            state,
            frame,
            session: (String::new(), String::new()),
            app_tokens: Vec::new(),
            codes: Vec::new(),
            refresh: Vec::new(),
            _dir: dir,
        };
        h.restore();
        h
    }

    /// Sends one request through the application; the answer with its whole body, except
    /// for an event stream, whose body never ends (answered with none).
    pub fn send(&self, req: http::Request<Body>) -> (http::response::Parts, Bytes) {
        let mut frame = self.frame.clone();
        self.rt.block_on(async move {
            let Ok(resp) = frame.call(req).await;
            let (parts, body) = resp.into_parts();
            let streaming = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            if streaming {
                return (parts, Bytes::new());
            }
            let bytes = body.collect().await.expect("a body in memory").to_bytes();
            (parts, bytes)
        })
    }

    /// What every input starts from: counters, fault rules and the journal empty.
    pub fn fresh(&self) {
        self.rt
            .block_on(self.state.faults.clear())
            .expect("fault rules cleared");
        self.rt
            .block_on(self.state.limiter.clear())
            .expect("counters cleared");
        self.state.journal.clear();
    }

    /// The seeded state again: the seed, the user tokens, the bindings, a console session.
    pub fn restore(&mut self) {
        let state = self.state.clone();
        self.rt.block_on(async {
            reset_all(&state).await.expect("reset");
            for seed in [crate::fixture::FULL_SEED, EXTRA_SEED] {
                seed::load(seed, Format::Toml, state.store.as_ref(), &state.ids)
                    .await
                    .expect("the harness seed loads");
            }
            for t in &TOKENS {
                let app = state
                    .store
                    .app(t.app_id)
                    .await
                    .expect("store")
                    .expect("app");
                let record = UserToken {
                    app_id: t.app_id.into(),
                    tenant_key: t.tenant_key.into(),
                    user_id: t.user_id.into(),
                    scopes: match t.scopes {
                        Some(s) => s.iter().map(|s| s.to_string()).collect(),
                        None => app.scopes.clone(),
                    },
                    expires_at: if t.expired {
                        0
                    } else {
                        state.now() + TEN_YEARS_MS
                    },
                    revoked: false,
                    grant_id: None,
                };
                state
                    .store
                    .insert_user_token(t.token, record)
                    .await
                    .expect("token");
                if t.revoked {
                    state
                        .store
                        .revoke_user_token(t.token)
                        .await
                        .expect("revoke");
                }
            }
        });
        for (admin, exchange, user) in BINDINGS {
            let body = serde_json::json!({
                "admin_account": admin, "exchange_account": exchange, "user_id": user,
            });
            let req = http::Request::post(
                "/open-apis/calendar/v4/exchange_bindings?user_id_type=user_id",
            )
            .header(
                "authorization",
                format!("Bearer {}", pools::TOKENS[0].token),
            )
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
            let (parts, body) = self.send(req);
            assert_eq!(parts.status, 200, "{}", String::from_utf8_lossy(&body));
        }
        let post = |path: &str, auth: Option<&str>, body: serde_json::Value| {
            let mut req = http::Request::post(path).header("content-type", "application/json");
            if let Some(a) = auth {
                req = req.header("authorization", format!("Bearer {a}"));
            }
            let (_, body) = self.send(req.body(Body::from(body.to_string())).expect("request"));
            serde_json::from_slice::<serde_json::Value>(&body).expect("JSON")
        };
        // Of the first login app only: minting is most of what a restore costs.
        let (app_id, secret, tenant) = pools::LOGIN_APPS[0];
        let v = post(
            "/open-apis/auth/v3/app_access_token/internal",
            None,
            serde_json::json!({"app_id": app_id, "app_secret": secret}),
        );
        let app_tokens = vec![v["app_access_token"]
            .as_str()
            .expect("an app token")
            .to_string()];
        let code = || {
            let v = post(
                "/_exbind/v1/oauth/codes",
                Some(ADMIN_TOKEN),
                serde_json::json!({"app_id": app_id, "tenant_key": tenant, "user_id": "boss",
                                   "redirect_uri": pools::REDIRECTS[0]}),
            );
            v["data"]["code"].as_str().expect("a code").to_string()
        };
        let codes = vec![code()];
        let v = post(
            crate::http::oauth::V2_TOKEN_ROUTE,
            None,
            serde_json::json!({"grant_type": "authorization_code", "client_id": app_id,
                               "client_secret": secret, "code": code(),
                               "redirect_uri": pools::REDIRECTS[0]}),
        );
        let refresh = v["refresh_token"].as_str().unwrap_or_else(|| panic!("{v}"));
        let refresh = vec![(refresh.to_string(), 0)];
        (self.app_tokens, self.codes, self.refresh) = (app_tokens, codes, refresh);
        let (session, cookie) = self.state.sessions.issue(self.state.now());
        self.session = (cookie, self.state.sessions.csrf(&session));
        self.fresh();
    }
}
