//! Hostile input against `exbind serve`, over real sockets: endless chunked and oversized
//! bodies, deeply nested JSON and TOML, invalid UTF-8 in every part of a request, random
//! bytes for a request, oversized journal filters, and seed files with hostile content.
//! Every answer is the documented JSON envelope with a 4xx status, memory stays bounded, and
//! the server keeps serving.
mod common;

use std::io::Write as _;
use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CREATE: &str = "/open-apis/calendar/v4/exchange_bindings?user_id_type=user_id";

/// One answer off the wire: the status, the head and the body as JSON.
struct Answer {
    status: u16,
    head: String,
    body: Value,
}

/// Splits what a connection received into its answers (each with a `Content-Length`).
fn answers(bytes: &[u8]) -> Vec<Answer> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let text = String::from_utf8_lossy(rest);
        let (head, _) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("an answer without a whole head: {text:?}"));
        let head = head.to_string();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap_or_else(|| panic!("no Content-Length in {head:?}"))
            .trim()
            .parse()
            .unwrap();
        let body_at = head.len() + 4;
        let body = &rest[body_at..body_at + len];
        let status = head[9..12].parse().unwrap();
        let body = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {head}\n{}", String::from_utf8_lossy(body))
        });
        out.push(Answer { status, head, body });
        rest = &rest[body_at + len..];
    }
    out
}

/// The documented envelope: JSON content type, the status and code, and for an error its
/// table message and a log id in the header and in the body.
fn assert_envelope(a: &Answer, status: u16, code: i64) {
    assert_eq!(
        (a.status, &a.body["code"]),
        (status, &json!(code)),
        "{}\n{}",
        a.head,
        a.body
    );
    assert!(
        a.head
            .contains("Content-Type: application/json; charset=utf-8"),
        "{}",
        a.head
    );
    // Successes and the token endpoints' flat errors carry no log id in the body.
    if code != 10003 && code != 0 {
        assert_eq!(a.body["msg"], table_msg(code), "{}", a.body);
        let log_id = a.body["error"]["log_id"].as_str().unwrap_or_default();
        assert!(
            !log_id.is_empty() && a.head.contains(&format!("X-Tt-Logid: {log_id}")),
            "{}\n{}",
            a.head,
            a.body
        );
    }
}

/// Sends `bytes`, closes the sending side, and reads all that comes back.
async fn exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before taking it all: that is its right.
    let _ = c.write_all(bytes).await;
    let _ = c.shutdown().await;
    read_to_close(&mut c).await
}

/// The server still answers, and never logged a panic.
async fn still_serving(s: &Server) {
    s.call(Method::GET, "/_exbind/healthz", None, None)
        .await
        .ok();
    let log = s.stderr_text();
    assert!(!log.contains("panicked"), "{log}");
}

/// A request head with a chunked body that never ends: chunks go out until the server
/// answers and closes. Answers the answer and how much of the body went out.
async fn endless_chunked(
    addr: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> (Vec<u8>, usize) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n");
    if let Some(t) = auth {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    c.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = c.into_split();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, rd.read_to_end(&mut got)).await;
        got
    });
    let chunk = format!("4000\r\n{}\r\n", "[".repeat(0x4000));
    let mut sent = 0;
    // Far past every cap (16 MiB on the control plane): the server must stop it first.
    while sent < 256 * 1024 * 1024 && !reader.is_finished() {
        if wr.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
        sent += 0x4000;
    }
    drop(wr);
    (reader.await.unwrap(), sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endless_chunked_body_is_cut_off_at_its_cap_with_a_json_answer() {
    let s = Server::full();
    let tok = s.boss().await;
    let cases: [(&str, &str, Option<&str>, i64, usize); 4] = [
        ("POST", CREATE, Some(tok.as_str()), 190002, 64 * 1024),
        ("POST", TENANT_TOKEN_PATH, None, 10003, 64 * 1024),
        (
            "GET",
            "/open-apis/calendar/v4/exchange_bindings/x",
            Some(tok.as_str()),
            190002,
            64 * 1024,
        ),
        (
            "POST",
            "/_exbind/v1/seed",
            Some(ADMIN_TOKEN),
            190002,
            16 * 1024 * 1024,
        ),
    ];
    for (method, path, auth, code, cap) in cases {
        let (got, sent) = endless_chunked(&s.addr(), method, path, auth).await;
        let a = answers(&got);
        assert_eq!(a.len(), 1, "{path}");
        let status = if code == 10003 { a[0].status } else { 400 };
        assert_envelope(&a[0], status, code);
        assert!(a[0].head.contains("Connection: close"), "{}", a[0].head);
        if code == 190002 {
            let m = a[0].body["error"]["field_violations"][0]["description"].to_string();
            assert!(m.contains(&format!("exceeds {cap} bytes")), "{m}");
        }
        // Cut off soon after the cap, not read on (socket buffers hold a few MiB).
        assert!(
            sent < cap + 32 * 1024 * 1024,
            "{path}: {sent} bytes went out"
        );
    }

    // Forty at once: resident memory grows by far less than what they send.
    let before = s.rss_kib();
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (addr, tok) = (s.addr(), tok.clone());
        tasks.push(tokio::spawn(async move {
            endless_chunked(&addr, "POST", CREATE, Some(&tok)).await
        }));
    }
    let mut sent = 0;
    for t in tasks {
        let (got, n) = t.await.unwrap();
        assert_envelope(&answers(&got)[0], 400, 190002);
        sent += n;
    }
    let grown = s.rss_kib().saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "resident memory grew by {grown} KiB ({sent} bytes sent)"
    );
    still_serving(&s).await;
}

#[tokio::test]
async fn oversized_and_malformed_body_lengths_get_json_answers() {
    let s = Server::full();
    let tok = s.boss().await;
    let head = |path: &str, auth: &str, extra: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {auth}\r\nContent-Type: application/json\r\n{extra}\r\n")
    };
    // A huge declared length is refused before any of it is sent.
    for (path, auth) in [(CREATE, tok.as_str()), ("/_exbind/v1/seed", ADMIN_TOKEN)] {
        let mut c = TcpStream::connect(s.addr()).await.unwrap();
        c.write_all(head(path, auth, "Content-Length: 1073741824\r\n").as_bytes())
            .await
            .unwrap();
        let a = answers(&read_to_close(&mut c).await);
        assert_envelope(&a[0], 400, 190002);
    }
    // Lengths no parser can take: answered by the server's own framing, as JSON.
    for extra in [
        "Content-Length: 99999999999999999999999999\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: -1\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ] {
        let mut req = head(CREATE, &tok, extra).into_bytes();
        req.extend_from_slice(b"{}{}{}");
        let got = exchange(&s.addr(), &req).await;
        for a in answers(&got) {
            assert!((400..500).contains(&a.status), "{extra:?}: {}", a.head);
            assert_envelope(&a, a.status, a.body["code"].as_i64().unwrap());
        }
    }
    // A chunk size that is not a number.
    let mut req = head(CREATE, &tok, "Transfer-Encoding: chunked\r\n").into_bytes();
    req.extend_from_slice(b"zz\r\nabc\r\n0\r\n\r\n");
    for a in answers(&exchange(&s.addr(), &req).await) {
        assert_envelope(&a, 400, 190002);
    }
    still_serving(&s).await;
}

#[tokio::test]
async fn deeply_nested_json_and_toml_are_refused_without_a_crash() {
    let s = Server::full();
    let tok = s.boss().await;
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    // Under the 64 KiB cap of the Feishu routes.
    let nested = deep(30_000);
    let r = s
        .request(
            Method::POST,
            CREATE,
            &[
                ("Authorization", &format!("Bearer {tok}")),
                ("Content-Type", "application/json"),
            ],
            Some(nested.clone().into_bytes()),
        )
        .await;
    r.assert_err(400, 190002);
    let objects = format!("{}{}", r#"{"a":"#.repeat(12_000), "}".repeat(12_000));
    s.request(
        Method::POST,
        CREATE,
        &[("Authorization", &format!("Bearer {tok}"))],
        Some(objects.into_bytes()),
    )
    .await
    .assert_err(400, 190002);
    let r = s
        .request(
            Method::POST,
            TENANT_TOKEN_PATH,
            &[],
            Some(nested.into_bytes()),
        )
        .await;
    assert_eq!(r.body["code"], 10003, "{}", r.text);
    // 100,000 deep on the control plane, as JSON and as TOML.
    let json_seed = format!(r#"{{"tenants":{}}}"#, deep(100_000));
    s.request(
        Method::POST,
        "/_exbind/v1/seed",
        &[
            ("Authorization", &format!("Bearer {ADMIN_TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        Some(json_seed.into_bytes()),
    )
    .await
    .assert_err(400, 190002);
    for toml in [
        format!("tenants = {}", deep(100_000)),
        format!("x = {}{}", "{a=".repeat(100_000), "}".repeat(100_000)),
        format!("{}=1", "a.".repeat(100_000)),
    ] {
        s.request(
            Method::POST,
            "/_exbind/v1/seed",
            &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            Some(toml.into_bytes()),
        )
        .await
        .assert_err(400, 190002);
    }
    for path in [
        "/_exbind/v1/apps/cli_acme",
        "/_exbind/v1/tenants/acme/users/alice",
    ] {
        let r = s
            .request(
                Method::PATCH,
                path,
                &[
                    ("Authorization", &format!("Bearer {ADMIN_TOKEN}")),
                    ("Content-Type", "application/json"),
                ],
                Some(deep(100_000).into_bytes()),
            )
            .await;
        r.assert_err(400, 190002);
    }
    still_serving(&s).await;
}

#[tokio::test]
async fn invalid_utf8_anywhere_in_a_request_gets_a_json_answer() {
    let s = Server::full();
    let tok = s.boss().await;
    let auth = format!("Authorization: Bearer {tok}\r\n");
    let admin = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
    let get = |target: &[u8], headers: &[u8]| {
        let mut r = b"GET ".to_vec();
        r.extend_from_slice(target);
        r.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        r.extend_from_slice(headers);
        r.extend_from_slice(b"\r\n");
        r
    };
    let item = "/open-apis/calendar/v4/exchange_bindings/";
    // Percent-encoded bytes that are no UTF-8: in an id, a query value, control-plane paths
    // and filters.
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (
            get(format!("{item}%FF%FE").as_bytes(), auth.as_bytes()),
            400,
        ),
        (
            get(
                format!("{item}{DOC_ID}?user_id_type=%FF").as_bytes(),
                auth.as_bytes(),
            ),
            400,
        ),
        (
            get(format!("{item}%C0%AF%80").as_bytes(), auth.as_bytes()),
            400,
        ),
        (get(b"/_exbind/v1/tenants/%FF", admin.as_bytes()), 400),
        (
            get(b"/_exbind/v1/tenants/acme/users/%FF%FE", admin.as_bytes()),
            400,
        ),
        // A filter decodes as U+FFFD: searched, nothing found.
        (
            get(b"/_exbind/v1/requests?route=%FF", admin.as_bytes()),
            200,
        ),
        (get(b"/_exbind/v1/requests/%FF", admin.as_bytes()), 400),
        (get(b"/_exbind/v1/faults?x=%FF", admin.as_bytes()), 200),
        // Raw bytes above 0x7F in the request target: not HTTP/1.1.
        (
            get(
                b"/open-apis/calendar/v4/exchange_bindings/\xff\xfe",
                auth.as_bytes(),
            ),
            400,
        ),
        (get(b"/_exbind/healthz?\xc3\x28", b""), 400),
    ];
    for (req, status) in cases {
        let got = exchange(&s.addr(), &req).await;
        let a = answers(&got);
        assert_eq!(a.len(), 1, "{}", String::from_utf8_lossy(&req));
        let code = a[0].body["code"].as_i64().unwrap();
        assert_eq!(
            a[0].status,
            status,
            "{}: {}",
            String::from_utf8_lossy(&req),
            a[0].body
        );
        assert_envelope(&a[0], status, code);
    }
    // A header value that is no UTF-8 is ignored where nothing reads it, and a token that
    // is none is an invalid token.
    let mut req = get(format!("{item}{DOC_ID}").as_bytes(), auth.as_bytes());
    req.truncate(req.len() - 2);
    req.extend_from_slice(b"X-Junk: \xff\xfe\x80\r\n\r\n");
    let a = answers(&exchange(&s.addr(), &req).await);
    assert_eq!(a[0].status, 404, "{}", a[0].body);
    assert_envelope(&a[0], 404, 195103);
    let a = answers(
        &exchange(
            &s.addr(),
            &get(
                format!("{item}{DOC_ID}").as_bytes(),
                b"Authorization: Bearer u-\xc3\x28\r\n",
            ),
        )
        .await,
    );
    assert!(a[0].status == 400 || a[0].status == 401, "{}", a[0].body);
    // A body that is no UTF-8.
    for (path, code) in [(CREATE, 190002), (TENANT_TOKEN_PATH, 10003)] {
        let r = s
            .request(
                Method::POST,
                path,
                &[
                    ("Authorization", &format!("Bearer {tok}")),
                    ("Content-Type", "application/json"),
                ],
                Some(
                    b"{\"admin_account\":\"\xff\xfe\",\"exchange_account\":\"a\xc3\x28\"}".to_vec(),
                ),
            )
            .await;
        assert_eq!(r.body["code"], code, "{}", r.text);
    }
    s.request(
        Method::POST,
        "/_exbind/v1/seed",
        &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        Some(b"[[tenants]]\ntenant_key = \"\xff\"\n".to_vec()),
    )
    .await
    .assert_err(400, 190002);
    // A query string that cannot be taken (a field twice) and a path that is no UTF-8 on
    // the assets: the documented JSON.
    for target in [
        &b"/_exbind/assets/exbind.css?v=1&v=2"[..],
        b"/_exbind/assets/%FF%FE",
        b"/_exbind/v1/events?types=a&types=b",
    ] {
        let a = answers(&exchange(&s.addr(), &get(target, admin.as_bytes())).await);
        assert_envelope(&a[0], 400, 190002);
    }
    // On a console page, an error page.
    let got = exchange(
        &s.addr(),
        &get(b"/_exbind/console/sign-in?next=a&next=b", b""),
    )
    .await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(
        text.contains("Content-Type: text/html; charset=utf-8"),
        "{text}"
    );
    assert!(text.contains("This address cannot be read"), "{text}");
    // A console page is an HTML page, readable, also for such a path.
    let got = exchange(&s.addr(), &get(b"/_exbind/console/tenants/%FF", b"")).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 "), "{text}");
    let status: u16 = text[9..12].parse().unwrap();
    assert!((300..500).contains(&status), "{text}");
    still_serving(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_bytes_for_a_request_get_a_json_answer_or_a_close() {
    let s = Server::builder()
        .seed(FULL_SEED)
        .args(&["--header-read-timeout", "2s"])
        .start();
    let seed: u64 = rand::rng().random();
    eprintln!("random bytes: seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut inputs: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\x03\r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        // The start of a TLS ClientHello.
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        b"GET /_exbind/healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
        b"GET /_exbind/healthz HTTP/1.1\r\nHost: x\r\n: empty\r\n\r\n".to_vec(),
        b"G\xffT / HTTP/1.1\r\n\r\n".to_vec(),
        format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)).into_bytes(),
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "X-A: b\r\n".repeat(20_000)
        )
        .into_bytes(),
    ];
    for _ in 0..200 {
        let n = rng.random_range(1..4096);
        let mut bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
        if rng.random_bool(0.5) {
            bytes.extend_from_slice(b"\r\n\r\n");
        }
        inputs.push(bytes);
    }
    let before = s.rss_kib();
    let mut answered = 0;
    for chunk in inputs.chunks(16) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|bytes| {
                let (addr, bytes) = (s.addr(), bytes.clone());
                tokio::spawn(async move { exchange(&addr, &bytes).await })
            })
            .collect();
        for t in tasks {
            let got = t.await.unwrap();
            for a in answers(&got) {
                assert!([400, 414, 431].contains(&a.status), "{}", a.head);
                assert_envelope(&a, a.status, 190002);
                assert!(a.head.contains("Connection: close"), "{}", a.head);
                answered += 1;
            }
        }
    }
    assert!(
        answered > 150,
        "only {answered} of the inputs were answered"
    );
    // Garbage after a good request on the same connection: the good one answered, then the
    // garbage with the envelope.
    let got = exchange(
        &s.addr(),
        b"GET /_exbind/healthz HTTP/1.1\r\nHost: x\r\n\r\n\x00GARBAGE\r\n\r\n",
    )
    .await;
    let a = answers(&got);
    assert_eq!(a.len(), 2, "{}", String::from_utf8_lossy(&got));
    assert_eq!((a[0].status, &a[0].body["code"]), (200, &json!(0)));
    assert_envelope(&a[1], 400, 190002);
    let grown = s.rss_kib().saturating_sub(before);
    assert!(grown < 16 * 1024, "resident memory grew by {grown} KiB");
    still_serving(&s).await;
}

#[tokio::test]
async fn journal_filters_and_log_ids_over_4_kib_are_refused() {
    let s = Server::full();
    let long = "a".repeat(4097);
    for field in [
        "route",
        "method",
        "app_id",
        "tenant_key",
        "user_id",
        "since",
        "code",
    ] {
        let r = s
            .admin(
                Method::GET,
                &format!("/_exbind/v1/requests?{field}={long}"),
                None,
            )
            .await;
        r.assert_err(400, 190002);
        let v = r.violation(field);
        assert_eq!(
            v["description"],
            format!("{field} is 4097 bytes, more than 4096"),
            "{v}"
        );
        assert!(!r.text.contains(&long), "the value is echoed back");
    }
    let r = s
        .admin(Method::GET, &format!("/_exbind/v1/requests/{long}"), None)
        .await;
    r.assert_err(400, 190002);
    // At the cap: searched, nothing found.
    let r = s
        .admin(
            Method::GET,
            &format!("/_exbind/v1/requests?route={}", &long[1..]),
            None,
        )
        .await;
    assert_eq!(r.ok()["items"], json!([]));
    s.admin(
        Method::GET,
        &format!("/_exbind/v1/requests/{}", &long[1..]),
        None,
    )
    .await
    .assert_err(404, 99991201);
}

/// Starts `exbind serve` on a seed file and answers its exit code and stderr.
fn serve_seed(name: &str, content: &[u8]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join(name);
    std::fs::File::create(&seed)
        .unwrap()
        .write_all(content)
        .unwrap();
    let mut cmd = serve_command(&dir.path().join("data"), &[]);
    cmd.arg("--seed").arg(&seed);
    let (status, _, stderr) = run_to_exit(cmd, Duration::from_secs(60));
    (status.code(), stderr)
}

#[test]
fn a_hostile_seed_file_stops_the_server_with_one_line_naming_place_and_reason() {
    let cases: [(&str, &[u8], &str); 6] = [
        // A key with a newline and a terminal escape: the reason quotes it.
        ("seed.toml", b"[[tenants]]\ntenant_key = \"acme\"\n\"evil\\nline\\u001b[31m\" = 1\n", "tenants[0]"),
        ("seed.json", b"{\"tenants\":[{\"tenant_key\":\"acme\",\"bad\\nkey\\r\\u0007\":1}]}", "tenants[0]"),
        ("seed.json", b"{\"tenants\":[{\"tenant_key\":\"a\\nb\"},{\"tenant_key\":\"a\\nb\"}]}", "tenants[1].tenant_key"),
        ("seed.toml", b"[[tenants]]\ntenant_key = \"\xff\xfe\"\n", "UTF-8"),
        ("seed.json", &[b'['; 200_000], "line 1"),
        ("seed.toml", b"[[tenants]]\ntenant_key = \"acme\"\n[[tenants.users]]\nuser_id = \"x\"\nstatus = \"gone\\n\\u0000away\"\n", "tenants[0].users[0].status"),
    ];
    for (name, content, place) in cases {
        let (code, stderr) = serve_seed(name, content);
        assert_eq!(code, Some(2), "{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{stderr:?}");
        let line = lines[0];
        assert!(line.starts_with("exbind: seed "), "{line}");
        assert!(line.contains(place), "{place} not in {line}");
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
    }
    // What was escaped is still readable.
    let (_, stderr) = serve_seed("seed.toml", cases[0].1);
    assert!(stderr.contains(r"evil\nline\u{1b}[31m"), "{stderr}");
}
