//! A closed-loop HTTP/1.1 load generator: each connection sends its next request when the
//! last answer is in, for a fixed time, recording every latency.

use std::time::{Duration, Instant};

use bytes::Bytes;
use exbind_server::fixture::Fixture;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

#[derive(Clone)]
pub enum Phase {
    /// GET a random binding of the fixture.
    Get { token: String, bound: usize },
    /// Create then delete a binding for a spare user; `base` offsets the users used.
    CreateDelete {
        token: String,
        spare: usize,
        base: usize,
    },
    /// The tenant token endpoint.
    Token,
}

#[derive(Clone, Debug)]
pub struct Stats {
    pub count: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

const ITEM: &str = "/open-apis/calendar/v4/exchange_bindings";

fn get_req(host: &str, token: &str, id: &str) -> Request<Full<Bytes>> {
    Request::get(format!("{ITEM}/{}", exbind_client::encode_path_segment(id)))
        .header("host", host)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .expect("request")
}

fn post_req(host: &str, path: &str, token: Option<&str>, body: String) -> Request<Full<Bytes>> {
    let mut b = Request::post(path)
        .header("host", host)
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Full::new(Bytes::from(body))).expect("request")
}

fn delete_req(host: &str, token: &str, id: &str) -> Request<Full<Bytes>> {
    Request::delete(format!("{ITEM}/{}", exbind_client::encode_path_segment(id)))
        .header("host", host)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .expect("request")
}

/// A cheap per-connection random sequence (xorshift), so id choice costs nothing.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

pub async fn run(addr: &str, conns: usize, dur: Duration, phase: Phase) -> Stats {
    let deadline = Instant::now() + dur;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (addr, phase) = (addr.to_string(), phase.clone());
        tasks.push(tokio::spawn(async move {
            conn_loop(&addr, c, conns, deadline, phase).await
        }));
    }
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let (mut count, mut errors) = (0u64, 0u64);
    for t in tasks {
        let (h, n, e) = t.await.expect("connection task");
        hist.add(h).expect("same bounds");
        count += n;
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    Stats {
        count,
        errors,
        rps: count as f64 / secs,
        p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
    }
}

async fn conn_loop(
    addr: &str,
    c: usize,
    conns: usize,
    deadline: Instant,
    phase: Phase,
) -> (Histogram<u64>, u64, u64) {
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let (mut n, mut errors) = (0u64, 0u64);
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((c as u64 + 1) * 0x1000_0001));
    let mut round = 0usize;
    while Instant::now() < deadline {
        let reqs: Vec<Request<Full<Bytes>>> = match &phase {
            Phase::Get { token, bound } => {
                vec![get_req(addr, token, &Fixture::bound_id(rng.next(*bound)))]
            }
            Phase::Token => vec![post_req(
                addr,
                "/open-apis/auth/v3/tenant_access_token/internal",
                None,
                format!(
                    r#"{{"app_id":"{}","app_secret":"{}"}}"#,
                    Fixture::APP_ID,
                    Fixture::APP_SECRET
                ),
            )],
            Phase::CreateDelete { token, spare, base } => {
                let i = (base + c + round * conns) % spare;
                let body = format!(
                    r#"{{"admin_account":"{}","exchange_account":"{}","user_id":"{}"}}"#,
                    Fixture::EXCHANGE_ADMIN,
                    Fixture::spare_exchange(i),
                    Fixture::spare_user(i)
                );
                let path = format!("{ITEM}?user_id_type=user_id");
                let id = exbind_client::encode_binding_id(
                    Fixture::EXCHANGE_ADMIN,
                    &Fixture::spare_exchange(i),
                );
                vec![
                    post_req(addr, &path, Some(token), body),
                    delete_req(addr, token, &id),
                ]
            }
        };
        round += 1;
        for req in reqs {
            let t = Instant::now();
            let ok = match send.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status();
                    match resp.into_body().collect().await {
                        Ok(b) => {
                            status.is_success()
                                && b.to_bytes().windows(8).any(|w| w == b"\"code\":0")
                        }
                        Err(_) => false,
                    }
                }
                Err(_) => return (hist, n, errors + 1),
            };
            let _ = hist.record(t.elapsed().as_micros() as u64);
            n += 1;
            if !ok {
                errors += 1;
            }
        }
    }
    (hist, n, errors)
}
