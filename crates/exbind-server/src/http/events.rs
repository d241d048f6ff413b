//! `GET /_exbind/v1/events`: the event bus (`crate::events`) as Server-Sent Events, for the
//! admin token or a console session.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use exbind_api::ErrorCode;
use http::{header, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::TryRecvError;

use super::{control::check_admin, ApiQuery as Query, Payload};
use crate::error::ApiError;
use crate::events::{Subscription, MAX_STREAMS};
use crate::state::SharedState;

/// How often a stream looks for new events.
const TICK: Duration = Duration::from_millis(250);
/// Events of each kind one tick sends at most; the rest are dropped and counted.
const BATCH: usize = 200;
/// A stream with nothing to say writes a comment this often, so a closed connection is
/// noticed and its slot freed.
const KEEP_ALIVE: Duration = Duration::from_secs(2);

pub fn routes() -> Router<SharedState> {
    Router::new().route("/_exbind/v1/events", get(events))
}

#[derive(Deserialize)]
struct EventsQuery {
    types: Option<String>,
    tenant_key: Option<String>,
}

/// The admin token, or a console session.
pub async fn authorized(
    state: &crate::state::AppState,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    match check_admin(state, headers) {
        Err(e) if state.console_session(headers).await?.is_none() => Err(e),
        _ => Ok(()),
    }
}

async fn events(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
    _: Payload,
) -> Result<Response, ApiError> {
    authorized(&state, &headers).await?;
    let (bindings, requests) = stream_types(q.types.as_deref())?;
    let sub = state.events.subscribe().ok_or_else(|| {
        ApiError::new(ErrorCode::OperationRateLimited).message(format!(
            "at most {MAX_STREAMS} event streams may be open at once"
        ))
    })?;
    let types: Vec<&str> = [bindings.then_some("binding"), requests.then_some("request")]
        .into_iter()
        .flatten()
        .collect();
    let hello = format!(
        "retry: 2000\nevent: hello\ndata: {}\n\n",
        json!({"types": types, "tenant_key": q.tenant_key})
    );
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = Stream {
        journal_seq: state.journal.last_seq(),
        state,
        sub,
        bindings,
        requests,
        tenant_key: q.tenant_key.filter(|t| !t.is_empty()),
        tick,
        last_write: Instant::now(),
        hello: Some(hello),
    };
    let body = Body::from_stream(futures_util::stream::unfold(stream, Stream::next));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Which kinds of event a `types` query asks for: (bindings, requests); both when not given.
pub(crate) fn stream_types(types: Option<&str>) -> Result<(bool, bool), ApiError> {
    let Some(types) = types.filter(|t| !t.is_empty()) else {
        return Ok((true, true));
    };
    let (mut bindings, mut requests) = (false, false);
    for t in types.split(',') {
        match t.trim() {
            "binding" => bindings = true,
            "request" => requests = true,
            other => {
                return Err(ApiError::invalid(
                    "types",
                    Some(other.to_string()),
                    "a comma-separated list of binding, request",
                ))
            }
        }
    }
    Ok((bindings, requests))
}

struct Stream {
    state: SharedState,
    sub: Subscription,
    bindings: bool,
    requests: bool,
    tenant_key: Option<String>,
    journal_seq: u64,
    tick: tokio::time::Interval,
    last_write: Instant,
    hello: Option<String>,
}

fn write_event(out: &mut String, kind: &str, data: &str) {
    let _ = write!(out, "event: {kind}\ndata: {data}\n\n");
}

impl Stream {
    /// The next chunk: the events of one tick, or a keep-alive; `None` when the server stops.
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Stream)> {
        if let Some(hello) = self.hello.take() {
            return Some((Ok(hello.into()), self));
        }
        loop {
            if *self.sub.closed.borrow() {
                return None;
            }
            tokio::select! {
                _ = self.sub.closed.changed() => return None,
                _ = self.tick.tick() => {}
            }
            let mut out = self.collect();
            if out.is_empty() && self.last_write.elapsed() >= KEEP_ALIVE {
                out.push_str(": keep-alive\n\n");
            }
            if !out.is_empty() {
                self.last_write = Instant::now();
                return Some((Ok(out.into()), self));
            }
        }
    }

    fn wants_tenant(&self, tenant_key: Option<&str>) -> bool {
        match (&self.tenant_key, tenant_key) {
            (None, _) | (Some(_), None) => true,
            (Some(want), Some(have)) => want == have,
        }
    }

    /// What arrived since the last tick, at most `BATCH` of each kind.
    fn collect(&mut self) -> String {
        let mut out = String::new();
        let (mut lost_bindings, mut lost_requests, mut sent) = (0u64, 0u64, 0usize);
        loop {
            match self.sub.rx.try_recv() {
                Ok(ev) => {
                    if !self.bindings || !self.wants_tenant(ev.tenant_key.as_deref()) {
                        continue;
                    }
                    if sent == BATCH {
                        lost_bindings += 1;
                        continue;
                    }
                    sent += 1;
                    write_event(&mut out, ev.kind, &ev.data);
                }
                Err(TryRecvError::Lagged(n)) => lost_bindings += n,
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        if self.requests {
            let (entries, missed, newest) = self.state.journal.after(self.journal_seq, BATCH);
            self.journal_seq = newest;
            lost_requests = missed;
            for e in &entries {
                let tenant = e.who.as_ref().and_then(|w| w.tenant_key());
                if self.tenant_key.is_some() && tenant != self.tenant_key.as_deref() {
                    continue;
                }
                let data = serde_json::to_string(e).expect("serializable");
                write_event(&mut out, "request", &data);
            }
        }
        if lost_bindings > 0 || lost_requests > 0 {
            let data = json!({"bindings": lost_bindings, "requests": lost_requests});
            write_event(&mut out, "lagged", &data.to_string());
        }
        out
    }
}
