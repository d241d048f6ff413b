//! Store apps' `app_ticket` (oauth.md §5): a new ticket per push, kept in the store (the
//! latest two are valid), delivered to the app's `event_url` as Feishu delivers events —
//! plain, or encrypted and signed with the app's `encrypt_key`. Delivery runs in its own
//! task and retries with backoff; a newer push for the same app supersedes it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aes::cipher::{BlockEncryptMut, KeyIvInit};
use base64::Engine;
use parking_lot::Mutex;
use rand::Rng;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::domain::model::{App, AppKind};
use crate::state::SharedState;
use crate::store::StoreResult;

/// A push that got no 2xx within this long failed.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// The first retry comes after this long; each next one after twice as long, up to
/// `MAX_RETRY_DELAY`.
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

pub struct Tickets {
    http: reqwest::Client,
    /// `--app-ticket-interval`.
    pub interval: Duration,
    /// Each app's newest push; a delivery that is no longer it stops retrying.
    latest: Mutex<HashMap<String, u64>>,
    pushes: AtomicU64,
}

impl Tickets {
    pub fn new(interval: Duration) -> Tickets {
        Tickets {
            http: reqwest::Client::builder()
                .timeout(PUSH_TIMEOUT)
                .user_agent(concat!("exbind/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("HTTP client"),
            interval,
            latest: Mutex::new(HashMap::new()),
            pushes: AtomicU64::new(0),
        }
    }
}

/// What is wrong with an `event_url`, if anything: it must be an absolute http(s) URL.
pub fn event_url_problem(url: &str) -> Option<&'static str> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => None,
        _ => Some("must be an absolute http or https URL"),
    }
}

/// Pushes a ticket to every store app with an `event_url` now and every interval, until
/// `stop`.
pub async fn run(state: SharedState, mut stop: watch::Receiver<bool>) {
    loop {
        match state.store.apps().await {
            Ok(apps) => {
                for app in apps.iter().filter(|a| a.kind == AppKind::Store) {
                    if app.event_url.is_some() {
                        if let Err(e) = push(&state, app).await {
                            tracing::error!(app_id = %app.app_id, error = %e, "cannot issue an app_ticket");
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list the apps to push app_tickets to"),
        }
        tokio::select! {
            _ = tokio::time::sleep(state.tickets.interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Issues the app a new ticket (durable before this returns) and starts delivering it to its
/// `event_url`, if it has one.
pub async fn push(state: &SharedState, app: &App) -> StoreResult<()> {
    let ticket = format!("exbind-ticket-{}", crate::tokens::new_secret(16));
    state
        .store
        .add_app_ticket(&app.app_id, &ticket, state.now())
        .await?;
    let Some(url) = app.event_url.clone() else {
        tracing::warn!(app_id = %app.app_id, "app_ticket issued but not pushed: the app has no event_url");
        return Ok(());
    };
    let n = state.tickets.pushes.fetch_add(1, Ordering::Relaxed);
    state.tickets.latest.lock().insert(app.app_id.clone(), n);
    let (body, headers) = event(app, &ticket);
    let state = state.clone();
    let app_id = app.app_id.clone();
    tokio::spawn(async move {
        let mut delay = FIRST_RETRY_DELAY;
        for attempt in 1u32.. {
            if state.tickets.latest.lock().get(&app_id) != Some(&n) {
                return;
            }
            let mut req = state
                .tickets
                .http
                .post(&url)
                .header("content-type", "application/json; charset=utf-8")
                .body(body.clone());
            for (k, v) in &headers {
                req = req.header(*k, v);
            }
            let failure = match req.send().await {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(app_id = %app_id, attempt, "app_ticket pushed");
                    return;
                }
                Ok(r) => format!("HTTP {}", r.status().as_u16()),
                Err(e) => e.to_string(),
            };
            tracing::warn!(app_id = %app_id, attempt, error = %failure,
                retry_in_s = delay.as_secs(), "app_ticket push failed");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    });
    Ok(())
}

/// The event's body, and the signature headers when it is encrypted.
fn event(app: &App, ticket: &str) -> (String, Vec<(&'static str, String)>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut plain = json!({
        "ts": format!("{}.{:06}", now.as_secs(), now.subsec_micros()),
        "uuid": crate::tokens::new_secret(16),
        "type": "event_callback",
        "event": {"app_id": app.app_id, "app_ticket": ticket, "type": "app_ticket"},
    });
    if let Some(t) = &app.verification_token {
        plain["token"] = json!(t);
    }
    let plain = plain.to_string();
    let Some(key) = &app.encrypt_key else {
        return (plain, Vec::new());
    };
    let body = json!({"encrypt": encrypt(key, plain.as_bytes())}).to_string();
    let timestamp = now.as_secs().to_string();
    let nonce = crate::tokens::new_secret(8);
    let signature = signature(&timestamp, &nonce, key, &body);
    (
        body,
        vec![
            ("X-Lark-Request-Timestamp", timestamp),
            ("X-Lark-Request-Nonce", nonce),
            ("X-Lark-Signature", signature),
        ],
    )
}

/// Feishu's event encryption: AES-256-CBC under SHA-256 of the key, PKCS#7, a random IV
/// before the ciphertext, base64.
pub fn encrypt(encrypt_key: &str, plaintext: &[u8]) -> String {
    let key: [u8; 32] = Sha256::digest(encrypt_key.as_bytes()).into();
    let iv: [u8; 16] = rand::rng().random();
    let sealed = cbc::Encryptor::<aes::Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded_vec_mut::<aes::cipher::block_padding::Pkcs7>(plaintext);
    let mut out = iv.to_vec();
    out.extend_from_slice(&sealed);
    base64::engine::general_purpose::STANDARD.encode(out)
}

/// `X-Lark-Signature`: SHA-256 hex of timestamp + nonce + encrypt key + body.
pub fn signature(timestamp: &str, nonce: &str, encrypt_key: &str, body: &str) -> String {
    let mut h = Sha256::new();
    for part in [timestamp, nonce, encrypt_key, body] {
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::BlockDecryptMut;

    #[test]
    fn encryption_round_trips_with_a_fresh_iv() {
        let a = encrypt("k", b"{\"x\":1}");
        let b = encrypt("k", b"{\"x\":1}");
        assert_ne!(a, b, "the IV is random");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&a)
            .unwrap();
        let key: [u8; 32] = Sha256::digest(b"k").into();
        let iv: [u8; 16] = raw[..16].try_into().unwrap();
        let plain = cbc::Decryptor::<aes::Aes256>::new(&key.into(), &iv.into())
            .decrypt_padded_vec_mut::<aes::cipher::block_padding::Pkcs7>(&raw[16..])
            .unwrap();
        assert_eq!(plain, b"{\"x\":1}");
    }

    #[test]
    fn signature_is_sha256_of_the_four_parts() {
        assert_eq!(
            signature("1", "2", "3", "4"),
            hex::encode(Sha256::digest(b"1234"))
        );
    }
}
