//! The HTTP surface: one route table, the framing every answer goes through (log id, error
//! rendering, JSON on every path, the request's log line), and the body size caps.

pub(crate) mod auth;
mod authorize;
pub(crate) mod bindings;
pub(crate) mod console;
pub(crate) mod control;
pub(crate) mod events;
mod health;
pub mod html;
pub(crate) mod oauth;

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{FromRequest, MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use exbind_api::ErrorCode;
use futures_util::future::Either;
use futures_util::FutureExt;
use http::{header, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Serialize;
use serde_json::json;
use tower::Service as _;

use crate::error::ApiError;
use crate::journal;
use crate::logid::new_log_id;
use crate::pipeline::CallerSlot;
use crate::state::SharedState;

/// The largest request head (request line and headers). hyper stops reading one at about
/// this size (`connections`), and the framing answers one that hyper read whole.
pub const MAX_HEAD: usize = 64 * 1024;
/// Bodies on the Feishu routes are capped at 64 KiB; the control plane takes seed documents.
const API_BODY_LIMIT: usize = 64 * 1024;
const CONTROL_BODY_LIMIT: usize = 16 * 1024 * 1024;

pub const JSON_UTF8: &str = "application/json; charset=utf-8";

/// The whole HTTP surface: the route table inside the framing every answer goes through.
/// The framing wraps the table once; `Router::layer` would wrap (and box) it around each
/// route, at a cost on every request.
pub fn service(state: SharedState) -> Frame {
    let router = Router::new()
        .merge(bindings::routes())
        .merge(auth::routes())
        .merge(oauth::routes())
        .merge(authorize::routes())
        .merge(control::routes(state.clone()))
        .merge(health::routes())
        .merge(html::routes())
        .merge(events::routes())
        .merge(console::routes(&state));
    let router = with_fallbacks(router)
        .route_layer(tower::layer::layer_fn(RecordRoute))
        .with_state(state.clone());
    Frame { router, state }
}

/// The documented answers to a path no route matches and to a method a route does not take.
pub(crate) fn with_fallbacks(router: Router<SharedState>) -> Router<SharedState> {
    router
        .fallback(|| async { ApiError::new(ErrorCode::ResourceNotFound) })
        .method_not_allowed_fallback(|| async { ApiError::new(ErrorCode::MethodNotAllowed) })
}

/// The matched route template, carried to `frame` for the log line and metrics.
#[derive(Clone, Copy)]
struct Route(&'static str);

/// The label of a matched route: its template, with the catch-all id segment named as the
/// docs name it. Templates are few and fixed, so each is made once and kept; each thread
/// reads its own copy of the table (a shared lock's count would bounce between the cores on
/// every request).
pub(crate) fn route_label(matched: &str) -> &'static str {
    static LABELS: std::sync::LazyLock<
        parking_lot::Mutex<std::collections::HashMap<String, &'static str>>,
    > = std::sync::LazyLock::new(Default::default);
    thread_local! {
        static MINE: std::cell::RefCell<foldhash::HashMap<String, &'static str>> =
            Default::default();
    }
    if let Some(l) = MINE.with_borrow(|m| m.get(matched).copied()) {
        return l;
    }
    let label = *LABELS
        .lock()
        .entry(matched.to_string())
        .or_insert_with(|| Box::leak(matched.replace("{*", "{").into_boxed_str()));
    MINE.with_borrow_mut(|m| m.insert(matched.to_string(), label));
    label
}

/// Puts the matched route on the response, for `frame`. A plain service, not a `from_fn`
/// middleware: it runs on every request, and this way it allocates nothing.
#[derive(Clone)]
struct RecordRoute<S>(S);

impl<S> tower::Service<Request> for RecordRoute<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = RouteRecorded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|m| route_label(m.as_str()));
        RouteRecorded {
            inner: self.0.call(req),
            route,
        }
    }
}

pin_project_lite::pin_project! {
    struct RouteRecorded<F> {
        #[pin]
        inner: F,
        route: Option<&'static str>,
    }
}

impl<F, E> Future for RouteRecorded<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = std::task::ready!(this.inner.poll(cx))?;
        if let Some(r) = *this.route {
            resp.extensions_mut().insert(Route(r));
        }
        Poll::Ready(Ok(resp))
    }
}

/// The business code of an answer that is not an `ApiError` (token endpoints answer their
/// errors with HTTP 200).
#[derive(Clone, Copy)]
pub struct Code(pub i64);

/// Every answer passes here: a log id, the documented error body (also for a handler that
/// panicked or ran out of time), the journal, the metrics, the log line.
#[derive(Clone)]
pub struct Frame {
    router: Router,
    state: SharedState,
}

/// The answer to one request, on its way.
pub type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<B> tower::Service<http::Request<B>> for Frame
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Answer {
        self.answer(req)
    }
}

impl Frame {
    pub fn answer<B>(&self, req: http::Request<B>) -> Answer
    where
        B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        // A body still on its way is watched, so that a request that runs out of time waiting
        // for it is answered as the client's fault. Requests without one (most) carry nothing.
        if req.body().is_end_stream() {
            return Box::pin(frame(self.clone(), req.map(Body::new), None));
        }
        let arrived = Arc::new(AtomicBool::new(false));
        let req = req.map(|inner| {
            Body::new(Arrival {
                inner,
                arrived: arrived.clone(),
            })
        });
        Box::pin(frame(self.clone(), req, Some(arrived)))
    }
}

pin_project_lite::pin_project! {
    /// A request body that says when it has come in whole (or failed).
    struct Arrival<B> {
        #[pin]
        inner: B,
        arrived: Arc<AtomicBool>,
    }
}

impl<B: axum::body::HttpBody> axum::body::HttpBody for Arrival<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.arrived.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// How a route answers a body it cannot read: the envelope, or flat.
#[derive(Clone, Copy)]
enum BodyShape {
    Envelope,
    /// `/open-apis/auth/v3/*`: `{"code":10003,"msg":"invalid param"}` with HTTP 200.
    TokenFlat,
    /// The OAuth 2.0 token endpoint: its flat 20063.
    OAuthFlat,
}

/// A request answered without reading its whole body, `message` saying why: 400 190002, or
/// the token endpoints' flat errors. The rest of the body is never read, so the
/// connection cannot carry another request: say so, or a keep-alive client would send its
/// next request into it.
fn body_rejected(shape: BodyShape, message: String) -> Response {
    let mut r = match shape {
        BodyShape::TokenFlat => auth::flat_error(10003, "invalid param"),
        BodyShape::OAuthFlat => oauth::malformed(message),
        BodyShape::Envelope => ApiError::invalid("body", None, message).into_response(),
    };
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn body_shape(path: &str) -> BodyShape {
    if path.starts_with("/open-apis/auth/v3/") {
        BodyShape::TokenFlat
    } else if path == oauth::V2_TOKEN_ROUTE {
        BodyShape::OAuthFlat
    } else {
        BodyShape::Envelope
    }
}

/// The size of the request line and headers as sent (`Name: value\r\n` each).
fn head_len(req: &Request) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri
            .authority()
            .map_or(0, |a| a.as_str().len() + "http://".len());
    let line = req.method().as_str().len() + target + " HTTP/1.1\r\n".len() + 1;
    req.headers()
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
        + 2
}

/// `30 s`, `1.5 s`, `250 ms`.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

async fn frame(
    Frame { mut router, state }: Frame,
    req: Request,
    arrived: Option<Arc<AtomicBool>>,
) -> Result<Response, Infallible> {
    let started = Instant::now();
    let log_id = new_log_id(state.now());
    let method = req.method().clone();
    let path = (state.journal.enabled() && req.uri().path().starts_with("/open-apis/"))
        .then(|| req.uri().path().to_string());
    let slot = CallerSlot::default();
    let shape = body_shape(req.uri().path());
    let head_too_large = head_len(&req) > MAX_HEAD;
    let mut req = req;
    req.extensions_mut().insert(slot.clone());
    let routed = async move {
        let fut = std::panic::catch_unwind(AssertUnwindSafe(|| router.call(req)))?;
        let Ok(resp) = AssertUnwindSafe(fut).catch_unwind().await?;
        Ok::<_, Box<dyn std::any::Any + Send>>(resp)
    };
    // On a shared store the request reads the store's generation as it arrives, and serves
    // only what was cached under it (store/generation.rs); when that fails it caches nothing.
    // Boxed, as only that store waits here: inline, its wrapping would make every request's
    // future (moved, so copied, several times) larger.
    let handled = if state.shared_store {
        let store = state.store.clone();
        Either::Right(Box::pin(async move {
            let generation = store.generation().await.ok().flatten();
            crate::store::generation::scope(generation, routed).await
        }))
    } else {
        Either::Left(routed)
    };
    let timeout = state.request_timeout;
    let resp = if head_too_large {
        let mut r = ApiError::new(ErrorCode::InvalidParameters)
            .status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            .message(format!("the request head exceeds {MAX_HEAD} bytes"))
            .into_response();
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    } else {
        match tokio::time::timeout(timeout, handled).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => ApiError::internal("handler panicked").into_response(),
            // Out of time while the body was still coming: the client's stall, not ours.
            Err(_) if arrived.is_some_and(|a| !a.load(Ordering::Acquire)) => body_rejected(
                shape,
                format!("the request body did not arrive within {}", human(timeout)),
            ),
            Err(_) => ApiError::internal("request timed out").into_response(),
        }
    };
    let (mut parts, body) = resp.into_parts();
    let route = parts
        .extensions
        .remove::<Route>()
        .map_or("unmatched", |r| r.0);
    let mut code = parts.extensions.get::<Code>().map_or(0, |c| c.0);
    let body = match parts.extensions.remove::<ApiError>() {
        Some(err) => {
            let err = err.into_body();
            code = err.code;
            if let Some(cause) = &err.cause {
                tracing::error!(log_id = %log_id, code, cause = %cause, "request failed");
            }
            parts.status = err.status;
            for (name, value) in &err.headers {
                if let Ok(v) = HeaderValue::from_str(value) {
                    parts.headers.insert(*name, v);
                }
            }
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
            parts.headers.remove(header::CONTENT_LENGTH);
            Body::from(error_json(err, &log_id))
        }
        None => body,
    };
    if let Ok(v) = HeaderValue::from_str(&log_id) {
        parts.headers.insert("x-tt-logid", v);
    }
    let latency = started.elapsed();
    state
        .metrics
        .observe(route, parts.status.as_u16(), code, latency);
    if let Some(path) = path {
        let entry = journal::Entry {
            seq: 0,
            // When it was answered: its arrival is this less `latency_ms`.
            at_ms: state.now(),
            method: method.clone(),
            path,
            route,
            who: slot.get(),
            status: parts.status.as_u16(),
            code,
            log_id: log_id.clone(),
            latency_ms: latency.as_secs_f64() * 1000.0,
            binding: parts.extensions.remove::<journal::Touched>().map(|t| t.0),
        };
        if state.shared_store {
            // Boxed for the same reason: only a shared journal waits.
            Box::pin(state.journal.record_everywhere(entry)).await;
        } else {
            state.journal.record(entry);
        }
    }
    // One pre-formatted message rather than six fields: the same text, formatted once.
    tracing::info!(
        target: "exbind::request",
        "log_id={log_id} method={method} route={route} status={} code={code} latency_us={}",
        parts.status.as_u16(),
        latency.as_micros()
    );
    Ok(Response::from_parts(parts, body))
}

/// The documented error body: `{"code","msg","error":{"log_id",...}}`.
pub(crate) fn error_json(err: crate::error::ErrorBody, log_id: &str) -> Vec<u8> {
    let mut detail = err.detail;
    detail.log_id = log_id.to_string();
    serde_json::to_vec(&json!({"code": err.code, "msg": err.msg, "error": detail}))
        .expect("serializable")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = StatusCode::INTERNAL_SERVER_ERROR.into_response();
        resp.extensions_mut().insert(self);
        resp
    }
}

/// A JSON answer with the documented content type.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    // Sized for a binding answer, so it is written without growing.
    let mut bytes = Vec::with_capacity(384);
    serde_json::to_writer(&mut bytes, body).expect("serializable");
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    resp
}

/// `{"code":0,"msg":"success","data":...}`.
pub fn success(data: impl Serialize) -> Response {
    #[derive(Serialize)]
    struct Envelope<T> {
        code: i64,
        msg: &'static str,
        data: T,
    }
    json_response(
        StatusCode::OK,
        &Envelope {
            code: 0,
            msg: "success",
            data,
        },
    )
}

/// A request body read under the route's size cap. GET and DELETE handlers take it too, so
/// the cap holds on every route; they ignore what it holds.
pub struct Payload(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Payload {
    type Rejection = Response;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let path = req.uri().path();
        let limit = if path.starts_with("/_exbind/") {
            CONTROL_BODY_LIMIT
        } else {
            API_BODY_LIMIT
        };
        let shape = body_shape(path);
        let too_big = || body_rejected(shape, format!("request body exceeds {limit} bytes"));
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_big());
        }
        let body = req.into_body();
        if axum::body::HttpBody::is_end_stream(&body) {
            return Ok(Payload(Bytes::new()));
        }
        match Limited::new(body, limit).collect().await {
            Ok(c) => Ok(Payload(c.to_bytes())),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_big()),
            Err(e) => Err(
                ApiError::invalid("body", None, format!("cannot read body: {e}")).into_response(),
            ),
        }
    }
}

/// `Path` whose rejection is the documented JSON error.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for ApiPath<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut http::request::Parts, s: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, s)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::invalid("path", None, e.body_text()))
    }
}

/// `Query` whose rejection is the documented JSON error.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for ApiQuery<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut http::request::Parts, s: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, s)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::invalid("query", None, e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock::SystemClock, ServeArgs, Server};
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_with_the_documented_json() {
        let args = Args::parse_from(["serve", "--data-dir", ":memory:"]).serve;
        let server = Server::start(&args, std::sync::Arc::new(SystemClock))
            .await
            .unwrap();
        let mut frame = Frame {
            router: Router::new().route(
                "/boom",
                axum::routing::get(|| async {
                    if true {
                        panic!("boom");
                    }
                }),
            ),
            state: server.state().clone(),
        };
        let req = http::Request::get("/boom").body(Body::empty()).unwrap();
        let resp = frame.call(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], JSON_UTF8);
        let log_id = resp.headers()["x-tt-logid"].to_str().unwrap().to_string();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], 190003, "{v}");
        assert_eq!(v["error"]["log_id"], log_id.as_str());
    }
}
