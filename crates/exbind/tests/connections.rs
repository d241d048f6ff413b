//! Slow, idle, oversized and too many connections, over real sockets: the header-read and
//! idle timeouts, the 64 KiB head cap, a stalled body, the connection cap, the listen
//! backlog, and a shutdown that does not wait for connections without a request. Timeouts
//! are set small by flag; no assertion depends on how fast the machine is: a connection is
//! asserted closed (and counted by the server's metrics), never closed at a given moment.
mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HALF_HEAD: &[u8] = b"GET /_exbind/healthz HTTP/1.1\r\nHost: x\r\nX-Half: ";
const HEALTH: &[u8] = b"GET /_exbind/healthz HTTP/1.1\r\nHost: x\r\n\r\n";

async fn connect(s: &Server) -> TcpStream {
    TcpStream::connect(s.addr()).await.expect("connect")
}

/// Reads one answer (head and a `Content-Length` body) from a kept-alive connection.
async fn read_answer(c: &mut TcpStream) -> (String, Value) {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if body.len() >= len {
                let status = head.lines().next().unwrap().to_string();
                let v = serde_json::from_str(&body[..len]).unwrap_or(Value::Null);
                return (status, v);
            }
        }
        let n = tokio::time::timeout(PATIENCE, c.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        assert!(n > 0, "closed before the answer: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Whether the connection is still open a moment from now: nothing to read, no EOF.
async fn still_open(c: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1];
    tokio::time::timeout(wait, c.read(&mut buf)).await.is_err()
}

#[tokio::test]
async fn half_sent_and_empty_heads_are_closed_after_the_header_timeout() {
    let s = Server::builder()
        .seed(BASIC_SEED)
        .args(&["--header-read-timeout", "1s"])
        .start();
    let mut conns = Vec::new();
    for i in 0..40 {
        let mut c = connect(&s).await;
        // Half of them send half a head, the others nothing at all.
        if i % 2 == 0 {
            c.write_all(HALF_HEAD).await.unwrap();
        }
        conns.push(c);
    }
    for c in &mut conns {
        let got = read_to_close(c).await;
        assert!(got.is_empty(), "no answer to half a head: {got:?}");
    }
    assert_eq!(
        s.metric("exbind_connections_header_timeouts_total").await,
        40.0
    );
    // The server still serves.
    let r = s.call(Method::GET, "/_exbind/healthz", None, None).await;
    r.ok();
}

#[tokio::test]
async fn a_head_sent_one_byte_at_a_time_is_cut_off() {
    let s = Server::builder()
        .seed(BASIC_SEED)
        .args(&["--header-read-timeout", "1s"])
        .start();
    let mut c = connect(&s).await;
    // 600 bytes at 50 ms each would take 30 s; the server cuts it off after its 1 s.
    let head = format!(
        "GET /_exbind/healthz HTTP/1.1\r\nHost: x\r\nX-Slow: {}\r\n\r\n",
        "a".repeat(550)
    );
    let started = Instant::now();
    let mut cut = false;
    for b in head.as_bytes() {
        if c.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(50), c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(n)) => panic!("answered a head that never ended: {:?}", &buf[..n]),
            Err(_) => {}
        }
    }
    assert!(
        cut,
        "the whole head went through in {:?}",
        started.elapsed()
    );
    assert_eq!(
        s.metric("exbind_connections_header_timeouts_total").await,
        1.0
    );
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let s = Server::builder()
        .seed(BASIC_SEED)
        .args(&["--idle-timeout", "3s", "--header-read-timeout", "30s"])
        .start();
    let mut c = connect(&s).await;
    // Requests well inside the idle timeout keep the one connection going.
    for _ in 0..5 {
        c.write_all(HEALTH).await.unwrap();
        let (status, v) = read_answer(&mut c).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(v["code"], 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        s.metric("exbind_connections_idle_timeouts_total").await,
        0.0
    );
    // Then silence: closed, and counted as idle.
    assert!(read_to_close(&mut c).await.is_empty());
    assert_eq!(
        s.metric("exbind_connections_idle_timeouts_total").await,
        1.0
    );
    assert_eq!(
        s.metric("exbind_connections_header_timeouts_total").await,
        0.0
    );
}

#[tokio::test]
async fn a_head_over_64_kib_is_refused_and_held_heads_cost_bounded_memory() {
    let s = Server::basic();
    // Just under the cap: served.
    let mut c = connect(&s).await;
    let fill = "a".repeat(60 * 1024);
    c.write_all(
        format!("GET /_exbind/healthz HTTP/1.1\r\nHost: x\r\nX-Fill: {fill}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let (status, v) = read_answer(&mut c).await;
    assert_eq!(
        (status.as_str(), &v["code"]),
        ("HTTP/1.1 200 OK", &0.into())
    );

    // A whole head just over it: 431 with the documented JSON, then closed.
    let mut c = connect(&s).await;
    let fill = "a".repeat(65 * 1024);
    c.write_all(
        format!("GET /_exbind/healthz HTTP/1.1\r\nHost: x\r\nX-Fill: {fill}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let got = String::from_utf8_lossy(&read_to_close(&mut c).await).to_string();
    assert!(got.starts_with("HTTP/1.1 431 "), "{got}");
    let (head, body) = got.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("Connection: close"), "{head}");
    assert!(
        head.contains("Content-Type: application/json; charset=utf-8"),
        "{head}"
    );
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["code"], 190002, "{v}");
    assert_eq!(v["msg"], table_msg(190002));
    assert!(
        v["error"]["message"].as_str().unwrap().contains("65536"),
        "{v}"
    );

    // Heads that never end, 256 KiB each, on 200 connections at once: each is refused once
    // 64 KiB of it is in (431, closed); resident memory grows by far less than what was
    // sent (50 MiB), where it once grew by all of it.
    let before = s.rss_kib();
    let chunk = vec![b'a'; 16 * 1024];
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (addr, chunk) = (s.addr(), chunk.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET /_exbind/healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
                .await
                .unwrap();
            for _ in 0..16 {
                if c.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            String::from_utf8_lossy(&read_to_close(&mut c).await).to_string()
        }));
    }
    for t in tasks {
        let got = t.await.unwrap();
        assert!(got.is_empty() || got.starts_with("HTTP/1.1 431 "), "{got}");
    }
    let grown = s.rss_kib().saturating_sub(before);
    assert!(grown < 32 * 1024, "resident memory grew by {grown} KiB");
    s.call(Method::GET, "/_exbind/healthz", None, None)
        .await
        .ok();
}

#[tokio::test]
async fn a_stalled_body_is_answered_as_the_clients_fault() {
    let s = Server::builder()
        .seed(BASIC_SEED)
        .args(&["--request-timeout", "1s"])
        .start();
    let token = s.boss().await;
    let auth = format!("Authorization: Bearer {token}\r\n");
    // A declared length that never arrives, and a chunked body that never ends.
    let cases = [
        format!("POST {BINDINGS}?user_id_type=user_id HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 100\r\n\r\n{{\"admin_account\""),
        format!("POST {BINDINGS} HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n5\r\n{{\"a\":\r\n"),
    ];
    for req in &cases {
        let mut c = connect(&s).await;
        c.write_all(req.as_bytes()).await.unwrap();
        let got = String::from_utf8_lossy(&read_to_close(&mut c).await).to_string();
        let (head, body) = got.split_once("\r\n\r\n").expect(&got);
        assert!(head.starts_with("HTTP/1.1 400 "), "{got}");
        assert!(head.contains("Connection: close"), "{head}");
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], 190002, "{v}");
        let message = v["error"]["field_violations"][0]["description"].to_string();
        assert!(message.contains("did not arrive within 1 s"), "{v}");
        // Journaled as the client's error, not a server failure.
        let log_id = v["error"]["log_id"].as_str().unwrap();
        let e = s
            .admin(Method::GET, &format!("/_exbind/v1/requests/{log_id}"), None)
            .await;
        assert_eq!(
            (e.ok()["status"].as_i64(), e.ok()["code"].as_i64()),
            (Some(400), Some(190002))
        );
    }
    assert!(s.list_bindings("acme").await.is_empty());
    // The token endpoints answer their errors flat, with HTTP 200.
    let mut c = connect(&s).await;
    c.write_all(format!("POST {TENANT_TOKEN_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n{{\"app_id\"").as_bytes())
        .await
        .unwrap();
    let got = String::from_utf8_lossy(&read_to_close(&mut c).await).to_string();
    assert!(got.starts_with("HTTP/1.1 200 "), "{got}");
    assert!(
        got.ends_with(r#"{"code":10003,"msg":"invalid param"}"#),
        "{got}"
    );
    // A handler that runs out of time on its own is still the server's failure: a latency
    // rule longer than the request timeout.
    s.add_fault(serde_json::json!({"method": "GET", "route": ONE_ROUTE, "latency_ms": 3000}))
        .await;
    s.get(&token, &binding_id(ACME_ADMIN, "x@acme.example"), None)
        .await
        .assert_err(500, 190003);
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let s = Server::builder()
        .seed(BASIC_SEED)
        .args(&["--max-connections", "3"])
        .start();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = connect(&s).await;
        c.write_all(HEALTH).await.unwrap();
        assert_eq!(read_answer(&mut c).await.0, "HTTP/1.1 200 OK");
        held.push(c);
    }
    // A fourth: the kernel completes its handshake, the server does not take it yet.
    let mut fourth = connect(&s).await;
    fourth.write_all(HEALTH).await.unwrap();
    assert!(
        still_open(&mut fourth, Duration::from_secs(1)).await,
        "the fourth connection was served (or closed) while three were open"
    );
    // One of the three goes: the fourth is served.
    drop(held.pop());
    assert_eq!(read_answer(&mut fourth).await.0, "HTTP/1.1 200 OK");
    drop(held);
    drop(fourth);
    s.call(Method::GET, "/_exbind/healthz", None, None)
        .await
        .ok();
}

#[tokio::test]
async fn the_listen_backlog_absorbs_bursts() {
    allow_many_sockets();
    let s = Server::basic();
    let port = s.addr().rsplit(':').next().unwrap().to_string();
    let out = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("ss");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // State, Recv-Q, Send-Q (for a listening socket: its backlog), …
    let backlog: u32 = text
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no listening socket in {text:?}"));
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(backlog, somaxconn, "the backlog is the kernel's most");
    assert!(backlog >= 1024, "backlog {backlog}");

    // 1,000 connects at once, each answered.
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let addr = s.addr();
        tasks.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET /_exbind/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&read_to_close(&mut c).await).to_string()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().starts_with("HTTP/1.1 200 "));
    }
}

/// Lifts this test process's open-file limit, for the thousands of sockets below.
fn allow_many_sockets() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_2000_half_open_connections_others_are_served_and_shutdown_is_quick() {
    allow_many_sockets();
    // The default timeouts: the half-open connections stay for the whole test.
    let mut s = Server::full_with(&["--rate-limits", "off"]);
    let token = s.boss().await;
    let id = binding_id(ACME_ADMIN, "x@acme.example");
    let mut half_open = Vec::new();
    for _ in 0..2000 {
        let mut c = connect(&s).await;
        c.write_all(HALF_HEAD).await.unwrap();
        half_open.push(c);
    }
    // Everyone else is answered (200 GETs over 8 connections; reqwest keeps them alive).
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url, token) = (
            s.http.clone(),
            s.url(&format!("{BINDINGS}/{id}")),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let r = http
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("answered");
                assert_eq!(r.status(), 404);
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(PATIENCE, t)
            .await
            .expect("answered in time")
            .unwrap();
    }
    assert!(s.metric("exbind_connections_open").await >= 2000.0);
    assert_eq!(
        s.metric("exbind_connections_header_timeouts_total").await,
        0.0,
        "the test outran the 10 s header timeout; nothing is proven"
    );

    // A request in progress (a 2 s latency rule) finishes; the half-open connections are
    // not waited for: the server stops long before its 10 s bound for in-flight requests.
    s.add_fault(
        serde_json::json!({"method": "GET", "route": ONE_ROUTE, "times": 1, "latency_ms": 2000}),
    )
    .await;
    let in_flight = {
        let (http, url, token) = (
            s.http.clone(),
            s.url(&format!("{BINDINGS}/{id}")),
            token.clone(),
        );
        tokio::spawn(async move { http.get(&url).bearer_auth(&token).send().await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = Instant::now();
    let st = tokio::task::spawn_blocking(move || {
        let st = s.terminate();
        (st, s)
    })
    .await
    .unwrap()
    .0;
    let took = stopping.elapsed();
    assert!(st.success(), "{st:?}");
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    let r = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(r.status(), 404);
    for c in &mut half_open {
        assert!(read_to_close(c).await.is_empty());
    }
}

#[tokio::test]
async fn timeouts_and_the_cap_come_from_flags_or_their_env_twins() {
    // The env twin of the header timeout applies.
    let s = Server::builder()
        .seed(BASIC_SEED)
        .env("EXBIND_HEADER_READ_TIMEOUT", "500ms")
        .start();
    let mut c = connect(&s).await;
    c.write_all(HALF_HEAD).await.unwrap();
    assert!(read_to_close(&mut c).await.is_empty());
    assert_eq!(
        s.metric("exbind_connections_header_timeouts_total").await,
        1.0
    );
    // Bad values stop the server with one line naming the flag.
    for (flag, bad) in [
        ("--header-read-timeout", "0s"),
        ("--idle-timeout", "soon"),
        ("--request-timeout", "0"),
        ("--max-connections", "0"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cmd = serve_command(
            &dir.path().join("data"),
            &["--admin-token", ADMIN_TOKEN, flag, bad],
        );
        let (st, _out, err) = run_to_exit(cmd, PATIENCE);
        assert_eq!(st.code(), Some(2), "{flag} {bad}: {err}");
        assert!(err.contains(flag), "{flag} {bad}: {err}");
    }
}

#[tokio::test]
async fn an_event_stream_is_not_cut_by_the_idle_timeout() {
    let s = Server::builder()
        .seed(FULL_SEED)
        .args(&["--idle-timeout", "1s", "--header-read-timeout", "1s"])
        .start();
    let mut ev = s.events("types=binding").await;
    // Well past both timeouts with nothing on the stream (a keep-alive comment at most).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let token = s.boss().await;
    s.bind(&token, ACME_ADMIN, "streamed@acme.example", "alice")
        .await;
    let d = ev.until(|name, _| name == "binding").await;
    assert_eq!(d["action"], "created", "{d}");
}
