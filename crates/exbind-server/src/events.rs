//! The event bus behind `GET /_exbind/v1/events`: what changed, for the console and scripts.
//!
//! Two kinds of events, carried two ways:
//!
//! - **binding** events (created, status changed, deleted; `reload` when many bindings
//!   changed at once: a tenant's wipe, a reset, an admin account gone `failed`) are pushed:
//!   the code that made the change publishes it once the change is durable. Publishing costs
//!   one atomic load while nobody listens (no stream open, no relay): the event is not even
//!   built. Listeners share one bounded ring (a `broadcast` channel); a stream that falls a
//!   whole ring behind loses the oldest events and is told how many.
//! - **request** events are pulled: each stream reads the journal's newest entries after the
//!   last one it sent, a few times a second. The request path does nothing for them, so an
//!   open console costs the API no work per request.
//!
//! Each stream sends at most a bounded batch per tick; what does not fit is dropped and the
//! stream says so (`lagged`). A browser that reads slowly stops its stream from being polled,
//! so its share of the ring and of the journal simply moves on without it; nothing waits for
//! it. The number of open streams is bounded.
//!
//! **Several servers.** Every stream must carry every server's events. A cluster transport
//! plugs in as a [`Relay`] (`Events::set_relay`; on PostgreSQL `store::shared::PgRelay`,
//! over `LISTEN/NOTIFY`): each binding event published here is also handed to it, serialised
//! already (`Event` is a kind, a tenant and a JSON text), and what it receives from the other
//! servers it hands to [`Events::deliver`], which fans it out to this server's streams only.
//! With a relay set, events are built even while this server has no listener, since another
//! server may have one. Request events follow the in-memory journal, into which the same
//! relay puts the other servers' entries, so streams and the console's overview show every
//! server's requests. One server (SQLite) has no relay.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use exbind_api::BindingStatus;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use crate::clock::rfc3339;
use crate::domain::model::{BindingRecord, StatusChange};

/// Binding events a stream may fall behind before it loses the oldest.
const RING: usize = 1024;
/// Streams open at once.
pub const MAX_STREAMS: usize = 16;

/// One event, serialised once for every stream (and for a relay).
#[derive(Debug, Clone)]
pub struct Event {
    /// The SSE event name: `binding`.
    pub kind: &'static str,
    /// The tenant it concerns; `None` for all of them (a reset).
    pub tenant_key: Option<String>,
    /// The JSON `data` line.
    pub data: Arc<str>,
}

/// Carries this server's events to the other servers of a cluster.
pub trait Relay: Send + Sync + 'static {
    /// Sends an event made here; the other servers hand it to their `Events::deliver`.
    fn send(&self, event: &Event);
}

pub struct Events {
    tx: broadcast::Sender<Arc<Event>>,
    streams: Arc<AtomicUsize>,
    relay: OnceLock<Arc<dyn Relay>>,
    /// Set when the server stops, so open streams end and the drain does not wait on them.
    closed: watch::Sender<bool>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(RING).0,
            streams: Arc::default(),
            relay: OnceLock::new(),
            closed: watch::channel(false).0,
        }
    }
}

/// What happened to a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Status,
    Deleted,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Status => "status",
            Action::Deleted => "deleted",
        }
    }
}

/// An open stream's hold on the bus: its place in the ring, and its slot among the bounded
/// number of streams, given back on drop.
pub struct Subscription {
    pub rx: broadcast::Receiver<Arc<Event>>,
    pub closed: watch::Receiver<bool>,
    streams: Arc<AtomicUsize>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Events {
    /// Whether anyone could receive an event: building one is skipped otherwise.
    pub fn wanted(&self) -> bool {
        self.streams.load(Ordering::Relaxed) > 0 || self.relay.get().is_some()
    }

    /// Plugs in the cluster transport (`store::shared::PgRelay` on PostgreSQL); once.
    pub fn set_relay(&self, relay: Arc<dyn Relay>) -> Result<(), Arc<dyn Relay>> {
        self.relay.set(relay)
    }

    /// Opens a stream, unless `MAX_STREAMS` are open.
    pub fn subscribe(&self) -> Option<Subscription> {
        self.streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_STREAMS).then_some(n + 1)
            })
            .ok()?;
        Some(Subscription {
            rx: self.tx.subscribe(),
            closed: self.closed.subscribe(),
            streams: self.streams.clone(),
        })
    }

    /// Ends every open stream (the server is stopping).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Fans an event out to this server's streams (from here, or from a relay).
    pub fn deliver(&self, event: Event) {
        // No receiver is not an error: the event just has no one to go to.
        let _ = self.tx.send(Arc::new(event));
    }

    fn publish(&self, event: Event) {
        if let Some(relay) = self.relay.get() {
            relay.send(&event);
        }
        self.deliver(event);
    }

    /// A binding was created, moved or deleted; `b` is it as it now is (as it was, for a
    /// delete).
    pub fn binding(&self, action: Action, b: &BindingRecord, from: Option<BindingStatus>) {
        if !self.wanted() {
            return;
        }
        let mut data = json!({
            "action": action.name(),
            "tenant_key": b.tenant_key,
            "exchange_binding_id": b.id(),
            "admin_account": b.admin_account,
            "exchange_account": b.exchange_account,
            "user_id": b.user_id,
            "status": b.status,
            "created_at": rfc3339(b.created_at),
            "updated_at": rfc3339(b.updated_at),
        });
        if let Some(r) = &b.reason {
            data["reason"] = json!(r);
        }
        if let Some(f) = from {
            data["from"] = json!(f);
        }
        self.publish(Event {
            kind: "binding",
            tenant_key: Some(b.tenant_key.clone()),
            data: data.to_string().into(),
        });
    }

    /// Status changes that the store applied: `records` are the bindings as they were,
    /// `applied[i]` says whether `changes[i]` took effect.
    pub fn status_changes(
        &self,
        records: &[BindingRecord],
        changes: &[StatusChange],
        applied: &[bool],
        now: i64,
    ) {
        if !self.wanted() {
            return;
        }
        for ((b, ch), ok) in records.iter().zip(changes).zip(applied) {
            if *ok {
                let moved = BindingRecord {
                    status: ch.status,
                    reason: ch.reason.clone(),
                    next_at: ch.next_at,
                    updated_at: now,
                    ..b.clone()
                };
                self.binding(Action::Status, &moved, Some(ch.from));
            }
        }
    }

    /// Many bindings of a tenant (`None`: of every tenant) changed at once: read them again.
    pub fn reload(&self, tenant_key: Option<&str>) {
        if !self.wanted() {
            return;
        }
        self.publish(Event {
            kind: "binding",
            tenant_key: tenant_key.map(str::to_string),
            data: json!({"action": "reload", "tenant_key": tenant_key})
                .to_string()
                .into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sync::Scenario;

    fn record(status: BindingStatus) -> BindingRecord {
        BindingRecord {
            seq: 1,
            admin_account: "admin@x.example".into(),
            exchange_account: "a@x.example".into(),
            tenant_key: "t".into(),
            user_id: "u".into(),
            status,
            reason: None,
            scenario: Scenario::default(),
            next_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn nothing_is_built_without_a_listener_and_streams_are_bounded() {
        let ev = Events::default();
        ev.binding(Action::Created, &record(BindingStatus::Doing), None);
        let mut subs: Vec<_> = (0..MAX_STREAMS).map(|_| ev.subscribe().unwrap()).collect();
        assert!(ev.subscribe().is_none(), "one stream too many");
        // Subscribed after the first publish: it never saw it.
        assert!(subs[0].rx.try_recv().is_err());
        ev.binding(Action::Created, &record(BindingStatus::Doing), None);
        let got = subs[0].rx.try_recv().unwrap();
        assert_eq!(got.kind, "binding");
        assert!(got.data.contains(r#""action":"created""#), "{}", got.data);
        subs.pop();
        assert!(ev.subscribe().is_some(), "a closed stream frees its slot");
    }

    #[test]
    fn a_stream_a_whole_ring_behind_is_told_how_much_it_lost() {
        let ev = Events::default();
        let mut sub = ev.subscribe().unwrap();
        for _ in 0..RING + 5 {
            ev.reload(Some("t"));
        }
        match sub.rx.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert_eq!(n, 5),
            other => panic!("expected a lag, got {other:?}"),
        }
        assert!(sub.rx.try_recv().is_ok());
    }

    #[test]
    fn only_applied_changes_are_published() {
        let ev = Events::default();
        let mut sub = ev.subscribe().unwrap();
        let b = record(BindingStatus::Doing);
        let ch = |status| StatusChange {
            seq: 1,
            exchange_folded: "a@x.example".into(),
            from: BindingStatus::Doing,
            status,
            reason: None,
            next_at: None,
            steps: vec![],
        };
        ev.status_changes(
            &[b.clone(), b],
            &[ch(BindingStatus::CalDone), ch(BindingStatus::Done)],
            &[false, true],
            5,
        );
        let got = sub.rx.try_recv().unwrap();
        assert!(got.data.contains(r#""status":"done""#), "{}", got.data);
        assert!(got.data.contains(r#""from":"doing""#), "{}", got.data);
        assert!(sub.rx.try_recv().is_err());
    }

    #[test]
    fn a_relay_carries_events_out_and_brings_others_in() {
        struct Out(std::sync::mpsc::Sender<Event>);
        impl Relay for Out {
            fn send(&self, event: &Event) {
                self.0.send(event.clone()).unwrap();
            }
        }
        let (tx, out) = std::sync::mpsc::channel();
        let ev = Events::default();
        assert!(!ev.wanted());
        assert!(ev.set_relay(Arc::new(Out(tx))).is_ok());
        // Built even with no stream here: another server may have one.
        ev.reload(Some("t"));
        assert_eq!(out.try_recv().unwrap().tenant_key.as_deref(), Some("t"));
        let mut sub = ev.subscribe().unwrap();
        ev.deliver(Event {
            kind: "binding",
            tenant_key: None,
            data: r#"{"action":"reload","tenant_key":null}"#.into(),
        });
        assert!(sub.rx.try_recv().unwrap().data.contains("reload"));
        assert!(
            out.try_recv().is_err(),
            "what comes in is not sent out again"
        );
    }
}
