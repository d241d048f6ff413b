//! The typed client against a scripted HTTP server: the requests it sends, how answers and
//! errors are typed, when it retries (and when it must not), how it waits out 429s, and the
//! client-side quota.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exbind_client::{
    BindingStatus, Client, CreateBinding, Error, ErrorCode, Quota, RetryPolicy, UserIdType,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LOG_ID: &str = "20240501100000ABCDEF0123456789ABCDEF";
const TOKEN: &str = "u-test-token";

/// One request as the mock server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// The request target exactly as sent (path and query).
    target: String,
    headers: Vec<(String, String)>,
    body: String,
    at: Instant,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body {:?}: {e}", self.body))
    }
}

/// What the mock answers.
enum Answer {
    /// An HTTP answer with extra headers and a body.
    Http {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Reads the request, then closes the connection without answering.
    Close,
    /// Reads the request, waits, then closes without answering.
    Hang(Duration),
}

fn ok(data: Value) -> Answer {
    Answer::Http {
        status: 200,
        headers: vec![("X-Tt-Logid", LOG_ID.into())],
        body: json!({"code": 0, "msg": "success", "data": data}).to_string(),
    }
}

fn binding(user_id: &str) -> Value {
    json!({
        "admin_account": "exadmin@acme.example",
        "exchange_account": "alice@acme.example",
        "user_id": user_id,
        "status": "doing",
        "exchange_binding_id": "ZXhhZG1pbkBhY21lLmV4YW1wbGUgYWxpY2VAYWNtZS5leGFtcGxl"
    })
}

/// A documented error answer: status, code, msg and `error.log_id`.
fn err(status: u16, code: i64, msg: &str, log_id: &str) -> Answer {
    Answer::Http {
        status,
        headers: vec![("X-Tt-Logid", log_id.into())],
        body: json!({"code": code, "msg": msg, "error": {"log_id": log_id}}).to_string(),
    }
}

fn table(code: ErrorCode) -> Answer {
    err(code.http_status(), code.code(), code.msg(), LOG_ID)
}

type Script = dyn Fn(usize, &Seen) -> Answer + Send + Sync;

struct Mock {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Mock {
    /// Serves on 127.0.0.1:0; `script(n, request)` answers the n-th request (0-based).
    async fn start(script: impl Fn(usize, &Seen) -> Answer + Send + Sync + 'static) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Mock::serve(listener, Arc::new(script))
    }

    fn serve(listener: TcpListener, script: Arc<Script>) -> Mock {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicUsize::new(0));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (log, script, counter) = (log.clone(), script.clone(), counter.clone());
                tokio::spawn(async move {
                    handle(sock, log, script, counter).await;
                });
            }
        });
        Mock { base, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn handle(
    mut sock: TcpStream,
    log: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Script>,
    counter: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let seen = Seen {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string(),
        at: Instant::now(),
    };
    let n = counter.fetch_add(1, Ordering::SeqCst);
    log.lock().unwrap().push(seen.clone());
    match script(n, &seen) {
        Answer::Http {
            status,
            headers,
            body,
        } => {
            let mut out = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.push_str(&body);
            let _ = sock.write_all(out.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
        Answer::Close => drop(sock),
        Answer::Hang(d) => {
            tokio::time::sleep(d).await;
            drop(sock);
        }
    }
}

/// A client with fast retries: `attempts` in all, short backoff.
fn client(base: &str, attempts: u32) -> Client {
    Client::builder(base)
        .retry(RetryPolicy {
            max_attempts: attempts,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
        })
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn create_req() -> CreateBinding {
    CreateBinding {
        admin_account: "exadmin@acme.example".into(),
        exchange_account: "alice@acme.example".into(),
        user_id: "alice".into(),
    }
}

#[track_caller]
fn api_err(r: Result<impl std::fmt::Debug, Error>) -> exbind_client::ApiError {
    match r {
        Err(Error::Api(a)) => *a,
        other => panic!("expected an API error, got {other:?}"),
    }
}

// ----------------------------------------------------------------------------------------
// Requests and answers
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn create_sends_the_documented_request_and_decodes_the_binding() {
    let mock = Mock::start(|_, _| ok(binding("alice"))).await;
    let c = client(&mock.base, 3);
    let r = c
        .create_binding(TOKEN, &create_req(), UserIdType::UserId)
        .await
        .unwrap();
    assert_eq!(r.data.user_id, "alice");
    assert_eq!(r.data.status, BindingStatus::Doing);
    assert_eq!(
        r.data.exchange_binding_id,
        "ZXhhZG1pbkBhY21lLmV4YW1wbGUgYWxpY2VAYWNtZS5leGFtcGxl"
    );
    assert_eq!(
        r.data.admin_account.as_deref(),
        Some("exadmin@acme.example")
    );
    assert_eq!(r.log_id.as_deref(), Some(LOG_ID));
    assert_eq!(r.attempts, 1);

    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, "POST");
    assert_eq!(
        s.target,
        "/open-apis/calendar/v4/exchange_bindings?user_id_type=user_id"
    );
    assert_eq!(s.header("authorization"), Some("Bearer u-test-token"));
    assert_eq!(
        s.json(),
        json!({"admin_account": "exadmin@acme.example", "exchange_account": "alice@acme.example", "user_id": "alice"})
    );

    // The default user_id_type is open_id.
    c.create_binding(TOKEN, &create_req(), UserIdType::default())
        .await
        .unwrap();
    assert_eq!(
        mock.seen()[1].target,
        "/open-apis/calendar/v4/exchange_bindings?user_id_type=open_id"
    );
}

/// Percent-decodes a path segment.
fn unpct(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex escape");
            out.push(h);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn get_and_delete_put_the_whole_id_in_one_path_segment() {
    let mock = Mock::start(|_, s| {
        if s.method == "DELETE" {
            ok(json!({}))
        } else {
            ok(binding("ou_x"))
        }
    })
    .await;
    let c = client(&mock.base, 3);
    // An id with every character base64 can hold that needs care in a path.
    let id = "YS9iK2M9PQ+/x=";
    let got = c.get_binding(TOKEN, id, UserIdType::UnionId).await.unwrap();
    assert_eq!(got.data.user_id, "ou_x");
    let del = c.delete_binding(TOKEN, id).await.unwrap();
    assert_eq!(del.log_id.as_deref(), Some(LOG_ID));
    assert_eq!(del.attempts, 1);

    let seen = mock.seen();
    assert_eq!(seen[0].method, "GET");
    let (path, query) = seen[0].target.split_once('?').expect("a query");
    assert_eq!(query, "user_id_type=union_id");
    let seg = path
        .strip_prefix("/open-apis/calendar/v4/exchange_bindings/")
        .expect("binding path");
    assert!(!seg.contains('/'), "the id is one segment: {seg}");
    assert_eq!(unpct(seg), id);

    assert_eq!(seen[1].method, "DELETE");
    let seg = seen[1]
        .target
        .strip_prefix("/open-apis/calendar/v4/exchange_bindings/")
        .expect("binding path");
    assert!(
        !seg.contains('?'),
        "DELETE has no query: {}",
        seen[1].target
    );
    assert_eq!(unpct(seg), id);
    assert_eq!(seen[1].header("authorization"), Some("Bearer u-test-token"));
}

#[tokio::test]
async fn api_errors_carry_status_code_msg_log_id_and_detail() {
    let mock = Mock::start(|n, _| match n {
        0 => Answer::Http {
            status: 400,
            headers: vec![("X-Tt-Logid", "LOGID-0".into())],
            body: json!({"code": 190002, "msg": "invalid parameters in request",
                "error": {"log_id": "LOGID-0", "field_violations": [
                    {"field": "exchange_account", "value": "x", "description": "already bound"}]}})
            .to_string(),
        },
        // No X-Tt-Logid header: the log id comes from error.log_id.
        1 => Answer::Http {
            status: 404,
            headers: vec![],
            body: json!({"code": 195106, "msg": "admin account is not found",
                "error": {"log_id": "LOGID-1"}})
            .to_string(),
        },
        _ => err(403, 195104, "current tenant not match", "LOGID-2"),
    })
    .await;
    let c = client(&mock.base, 5);

    let e = api_err(
        c.create_binding(TOKEN, &create_req(), UserIdType::UserId)
            .await,
    );
    assert_eq!(
        (e.status, e.code, e.msg.as_str(), e.log_id.as_deref()),
        (
            400,
            190002,
            "invalid parameters in request",
            Some("LOGID-0")
        )
    );
    assert_eq!(e.known(), Some(ErrorCode::InvalidParameters));
    let detail = serde_json::to_value(e.detail.as_ref().expect("error detail")).unwrap();
    assert_eq!(
        detail["field_violations"][0]["field"], "exchange_account",
        "{detail}"
    );

    let e = api_err(c.get_binding(TOKEN, "aWQgaWQ=", UserIdType::OpenId).await);
    assert_eq!(
        (e.status, e.code, e.msg.as_str(), e.log_id.as_deref()),
        (404, 195106, "admin account is not found", Some("LOGID-1"))
    );

    let e = c.delete_binding(TOKEN, "aWQgaWQ=").await.unwrap_err();
    let text = e.to_string();
    for part in ["195104", "current tenant not match", "LOGID-2", "403"] {
        assert!(text.contains(part), "{part} in {text:?}");
    }
    // None of them was retried.
    assert_eq!(mock.count(), 3);
}

// ----------------------------------------------------------------------------------------
// Retries
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn errors_that_are_not_safe_to_retry_are_sent_once() {
    let never = [
        ErrorCode::InvalidParameters,          // 190002
        ErrorCode::from_code(195100).unwrap(), // user dismissed or unknown
        ErrorCode::from_code(195101).unwrap(),
        ErrorCode::from_code(195102).unwrap(),
        ErrorCode::from_code(195103).unwrap(),
        ErrorCode::from_code(195104).unwrap(),
        ErrorCode::from_code(195105).unwrap(),
        ErrorCode::from_code(195106).unwrap(),
        ErrorCode::from_code(99991668).unwrap(),
        ErrorCode::from_code(99991677).unwrap(),
        ErrorCode::from_code(99991672).unwrap(),
        ErrorCode::from_code(190006).unwrap(),
        ErrorCode::from_code(190007).unwrap(),
    ];
    for code in never {
        let mock = Mock::start(move |_, _| table(code)).await;
        let c = client(&mock.base, 6);
        let e = api_err(
            c.create_binding(TOKEN, &create_req(), UserIdType::UserId)
                .await,
        );
        assert_eq!(e.code, code.code());
        let e = api_err(c.get_binding(TOKEN, "aWQgaWQ=", UserIdType::UserId).await);
        assert_eq!(e.code, code.code());
        let e = api_err(c.delete_binding(TOKEN, "aWQgaWQ=").await);
        assert_eq!(e.code, code.code());
        assert_eq!(mock.count(), 3, "code {} must not be retried", code.code());
    }
}

#[tokio::test]
async fn throttling_and_internal_errors_are_retried_for_every_method() {
    for code in [190003, 190004, 190005, 190010, 99991400] {
        let code = ErrorCode::from_code(code).unwrap();
        // Each call fails twice, then succeeds.
        let mock = Mock::start(move |n, s| {
            if n % 3 < 2 {
                return table(code);
            }
            match s.method.as_str() {
                "DELETE" => ok(json!({})),
                _ => ok(binding("alice")),
            }
        })
        .await;
        let c = client(&mock.base, 4);
        let t0 = Instant::now();
        let r = c
            .create_binding(TOKEN, &create_req(), UserIdType::UserId)
            .await
            .unwrap_or_else(|e| panic!("create after {}: {e}", code.code()));
        assert_eq!(r.attempts, 3);
        let r = c
            .get_binding(TOKEN, "aWQgaWQ=", UserIdType::UserId)
            .await
            .unwrap();
        assert_eq!(r.attempts, 3);
        let r = c.delete_binding(TOKEN, "aWQgaWQ=").await.unwrap();
        assert_eq!(r.attempts, 3, "delete after {} is retried", code.code());
        assert_eq!(mock.count(), 9);
        // The 99991400 answers here carry no reset header, so the policy's short backoff
        // applies.
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    }
}

#[tokio::test]
async fn retries_stop_at_max_attempts_with_the_last_error() {
    let mock = Mock::start(|_, _| table(ErrorCode::InternalError)).await;
    let c = client(&mock.base, 4);
    let e = api_err(c.get_binding(TOKEN, "aWQgaWQ=", UserIdType::UserId).await);
    assert_eq!((e.status, e.code), (500, 190003));
    assert_eq!(mock.count(), 4);

    // max_attempts 1: never retried.
    let mock = Mock::start(|_, _| table(ErrorCode::InternalError)).await;
    let c = client(&mock.base, 1);
    api_err(
        c.create_binding(TOKEN, &create_req(), UserIdType::UserId)
            .await,
    );
    assert_eq!(mock.count(), 1);
}

#[tokio::test]
async fn backoff_grows_and_is_jittered() {
    // Always 190003: every attempt is made, with waits between them. How long each wait is
    // (within its doubling cap, spread over it) is checked without a clock in the crate's
    // unit tests; here the bounds only catch waits of the wrong order (seconds, not ms).
    let mock = Mock::start(|_, _| table(ErrorCode::InternalError)).await;
    let c = Client::builder(&mock.base)
        .retry(RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(300),
        })
        .build()
        .unwrap();
    let t0 = Instant::now();
    api_err(c.get_binding(TOKEN, "aWQgaWQ=", UserIdType::UserId).await);
    let total = t0.elapsed();
    let seen = mock.seen();
    assert_eq!(seen.len(), 6);
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].at - w[0].at).collect();
    // The caps add up to 880 ms (40+80+160+300+300).
    assert!(
        total < Duration::from_secs(10),
        "total {total:?}, gaps {gaps:?}"
    );

    // Jitter: the same single retry, ten times over, waits for different lengths (a fixed
    // backoff would wait ~200 ms every time).
    let mut waits = Vec::new();
    for _ in 0..10 {
        let mock = Mock::start(|n, _| {
            if n == 0 {
                table(ErrorCode::OperationRateLimited)
            } else {
                ok(binding("alice"))
            }
        })
        .await;
        let c = Client::builder(&mock.base)
            .retry(RetryPolicy {
                max_attempts: 2,
                base_delay: Duration::from_millis(200),
                max_delay: Duration::from_millis(200),
            })
            .build()
            .unwrap();
        c.get_binding(TOKEN, "aWQgaWQ=", UserIdType::UserId)
            .await
            .unwrap();
        let seen = mock.seen();
        waits.push(seen[1].at - seen[0].at);
    }
    let (lo, hi) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
    assert!(
        *hi - *lo > Duration::from_millis(40),
        "no jitter in {waits:?}"
    );
    assert!(*hi < Duration::from_secs(5), "over the cap: {waits:?}");
}

#[tokio::test]
async fn a_429_is_waited_out_for_as_long_as_the_reset_header_says() {
    let mock = Mock::start(|n, _| {
        if n == 0 {
            Answer::Http {
                status: 429,
                headers: vec![
                    ("X-Tt-Logid", "L429".into()),
                    ("X-Ogw-Ratelimit-Limit", "50".into()),
                    ("X-Ogw-Ratelimit-Reset", "2".into()),
                    ("Retry-After", "2".into()),
                ],
                body: json!({"code": 99991400, "msg": "request trigger frequency limit",
                    "error": {"log_id": "L429"}})
                .to_string(),
            }
        } else {
            ok(binding("alice"))
        }
    })
    .await;
    // The policy's own backoff is tiny, so only the header can make it wait 2 s.
    let c = client(&mock.base, 3);
    let r = c
        .create_binding(TOKEN, &create_req(), UserIdType::UserId)
        .await
        .unwrap();
    assert_eq!(r.attempts, 2);
    let seen = mock.seen();
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_secs(2), "waited only {gap:?}");
    assert!(gap < Duration::from_secs(4), "waited {gap:?}");

    // The wait is exposed on the error when retries are exhausted.
    let mock = Mock::start(|_, _| Answer::Http {
        status: 429,
        headers: vec![("X-Ogw-Ratelimit-Reset", "7".into())],
        body: json!({"code": 99991400, "msg": "request trigger frequency limit",
            "error": {"log_id": "L"}})
        .to_string(),
    })
    .await;
    let e = api_err(
        client(&mock.base, 1)
            .get_binding(TOKEN, "aWQgaWQ=", UserIdType::UserId)
            .await,
    );
    assert_eq!((e.status, e.code), (429, 99991400));
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    assert!(e.known().is_some_and(ErrorCode::is_retryable));
}

/// A port nobody listens on (yet).
async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn connection_failures_are_retried_even_for_delete() {
    for method in ["DELETE", "POST"] {
        let port = free_port().await;
        let base = format!("http://127.0.0.1:{port}");
        let c = Client::builder(&base)
            .retry(RetryPolicy {
                max_attempts: 12,
                base_delay: Duration::from_millis(100),
                max_delay: Duration::from_millis(400),
            })
            .build()
            .unwrap();
        let call = tokio::spawn(async move {
            if method == "DELETE" {
                c.delete_binding(TOKEN, "aWQgaWQ=")
                    .await
                    .map(|r| r.attempts)
            } else {
                c.create_binding(TOKEN, &create_req(), UserIdType::UserId)
                    .await
                    .map(|r| r.attempts)
            }
        });
        // The server comes up only after the first attempts were refused.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let mock = Mock::serve(
            listener,
            Arc::new(|_, s: &Seen| {
                if s.method == "DELETE" {
                    ok(json!({}))
                } else {
                    ok(binding("alice"))
                }
            }),
        );
        let attempts = tokio::time::timeout(Duration::from_secs(15), call)
            .await
            .expect("finishes")
            .unwrap()
            .unwrap_or_else(|e| panic!("{method} after refused connections: {e}"));
        assert!(attempts >= 2, "{method}: attempts {attempts}");
        assert_eq!(mock.count(), 1, "{method}: one request reached the server");
    }
}

#[tokio::test]
async fn connection_refused_gives_a_transport_error_after_the_attempts() {
    let port = free_port().await;
    let c = client(&format!("http://127.0.0.1:{port}"), 3);
    match c.delete_binding(TOKEN, "aWQgaWQ=").await {
        Err(e @ Error::Transport(_)) => assert!(e.is_retryable(false), "{e}"),
        other => panic!("expected a transport error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_delete_is_not_resent_after_an_ambiguous_failure() {
    // The server reads the request and drops the connection: did the delete happen? Unknown,
    // so it must not be sent again. A GET or a create (idempotent) is resent.
    let mock = Mock::start(|n, s| {
        if n < 3 {
            return Answer::Close;
        }
        match s.method.as_str() {
            "DELETE" => ok(json!({})),
            _ => ok(binding("alice")),
        }
    })
    .await;
    let c = client(&mock.base, 4);
    match c.delete_binding(TOKEN, "aWQgaWQ=").await {
        Err(Error::Transport(_)) => {}
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert_eq!(mock.count(), 1, "the delete was sent once");

    // Requests 1 and 2 are dropped too: the GET is resent until it gets its answer.
    let r = c
        .get_binding(TOKEN, "aWQgaWQ=", UserIdType::UserId)
        .await
        .expect("a GET is resent after a dropped connection");
    assert_eq!(r.attempts, 3);
    assert_eq!(mock.count(), 4);

    let mock = Mock::start(|n, _| {
        if n == 0 {
            Answer::Close
        } else {
            ok(binding("alice"))
        }
    })
    .await;
    let r = client(&mock.base, 4)
        .create_binding(TOKEN, &create_req(), UserIdType::UserId)
        .await
        .expect("a create is idempotent and resent");
    assert_eq!(r.attempts, 2);
}

#[tokio::test]
async fn a_delete_is_not_resent_after_a_timeout() {
    let mock = Mock::start(|n, s| {
        if n == 0 || (s.method == "GET" && n == 1) {
            Answer::Hang(Duration::from_secs(30))
        } else {
            ok(binding("alice"))
        }
    })
    .await;
    // Long enough that the answer that comes never times out, however loaded the machine.
    let c = Client::builder(&mock.base)
        .timeout(Duration::from_secs(3))
        .retry(RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
        })
        .build()
        .unwrap();
    match c.delete_binding(TOKEN, "aWQgaWQ=").await {
        Err(Error::Transport(e)) => assert!(e.is_timeout(), "{e}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(mock.count(), 1, "the delete was sent once");

    let r = c
        .get_binding(TOKEN, "aWQgaWQ=", UserIdType::UserId)
        .await
        .expect("a GET is resent after a timeout");
    assert_eq!(r.attempts, 2);
}

#[tokio::test]
async fn a_non_json_5xx_is_resent_for_reads_but_not_for_a_delete() {
    let mock = Mock::start(|n, _| {
        if n < 2 {
            Answer::Http {
                status: 502,
                headers: vec![],
                body: "<html>bad gateway</html>".into(),
            }
        } else {
            ok(binding("alice"))
        }
    })
    .await;
    let c = client(&mock.base, 4);
    match c.delete_binding(TOKEN, "aWQgaWQ=").await {
        Err(Error::Decode { status, body }) => {
            assert_eq!(status, 502);
            assert!(body.contains("bad gateway"), "{body}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(mock.count(), 1);
    let r = c
        .get_binding(TOKEN, "aWQgaWQ=", UserIdType::UserId)
        .await
        .unwrap();
    assert_eq!(r.attempts, 2);
}

// ----------------------------------------------------------------------------------------
// Token endpoints
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn token_endpoints_send_the_app_credentials_and_read_the_flat_answer() {
    let mock = Mock::start(|_, s| {
        let body = if s.target.contains("tenant_access_token") {
            json!({"code": 0, "msg": "ok", "tenant_access_token": "t-abc", "expire": 7200})
        } else {
            json!({"code": 0, "msg": "ok", "app_access_token": "a-abc",
                "tenant_access_token": "t-abc", "expire": 7100})
        };
        Answer::Http {
            status: 200,
            headers: vec![],
            body: body.to_string(),
        }
    })
    .await;
    let c = client(&mock.base, 3);
    let t = c.tenant_access_token("cli_x", "sec").await.unwrap();
    assert_eq!((t.token.as_str(), t.expire), ("t-abc", 7200));
    let a = c.app_access_token("cli_x", "sec").await.unwrap();
    assert_eq!((a.token.as_str(), a.expire), ("a-abc", 7100));
    let seen = mock.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        seen[0].target,
        "/open-apis/auth/v3/tenant_access_token/internal"
    );
    assert_eq!(
        seen[1].target,
        "/open-apis/auth/v3/app_access_token/internal"
    );
    for s in &seen {
        assert_eq!(s.json(), json!({"app_id": "cli_x", "app_secret": "sec"}));
        assert_eq!(s.header("authorization"), None);
    }
}

#[tokio::test]
async fn token_errors_come_with_http_200_and_are_typed() {
    let mock = Mock::start(|_, _| Answer::Http {
        status: 200,
        headers: vec![("X-Tt-Logid", "LTOK".into())],
        body: json!({"code": 10014, "msg": "app secret invalid"}).to_string(),
    })
    .await;
    let c = client(&mock.base, 4);
    let e = api_err(c.tenant_access_token("cli_x", "wrong").await);
    assert_eq!(
        (e.status, e.code, e.msg.as_str(), e.log_id.as_deref()),
        (200, 10014, "app secret invalid", Some("LTOK"))
    );
    assert_eq!(mock.count(), 1, "a wrong secret is not retried");
}

// ----------------------------------------------------------------------------------------
// Client-side quota
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn the_quota_paces_requests_across_clones() {
    let mock = Mock::start(|_, _| ok(binding("alice"))).await;
    let c = Client::builder(&mock.base)
        .quota(Quota::new(5, 1000))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..3 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..4 {
                c.get_binding(TOKEN, &format!("id{t}"), UserIdType::UserId)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = mock.seen();
    assert_eq!(seen.len(), 12);
    // Paced at 5/s, any 6 requests in a row span at least a second when sent. They are seen
    // when they arrive, and on a loaded machine a request's way to the server varies: a
    // pacing interval (200 ms) of slack absorbs that, and still fails a pace of 7/s or more.
    let mut at: Vec<Instant> = seen.iter().map(|s| s.at).collect();
    at.sort();
    for w in at.windows(6) {
        let span = w[5] - w[0];
        assert!(
            span >= Duration::from_millis(800),
            "6 requests within {span:?}"
        );
    }
}

#[tokio::test]
async fn the_quota_honours_the_per_minute_limit() {
    let mock = Mock::start(|_, _| ok(binding("alice"))).await;
    // 120 a minute: one every 500 ms, although 100 a second would be allowed.
    let c = Client::builder(&mock.base)
        .quota(Quota::new(100, 120))
        .build()
        .unwrap();
    for _ in 0..4 {
        c.get_binding(TOKEN, "aWQgaWQ=", UserIdType::UserId)
            .await
            .unwrap();
    }
    // One every 500 ms when sent (with the per-second limit alone: every 10 ms); seen on
    // arrival, with 100 ms of slack for the way there on a loaded machine.
    let seen = mock.seen();
    for w in seen.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(gap >= Duration::from_millis(400), "gap {gap:?}");
    }
}
