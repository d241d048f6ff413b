//! The request journal: the last N requests to the Feishu routes, without tokens or secrets.
//!
//! Servers sharing a store also write each entry there before the answer goes out, and the
//! control plane's journal queries read it there, so any server returns what any server
//! answered. The in-memory ring stays what this server's event streams read.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;

use http::Method;
use parking_lot::Mutex;
use serde::{Serialize, Serializer};

use crate::pipeline::Identity;
use crate::store::StoreResult;

/// Where servers sharing a store keep the journal.
#[async_trait]
pub trait JournalStore: Send + Sync {
    /// Keeps `e`, and forgets what is more than `capacity` entries old.
    async fn record(&self, e: &Entry, capacity: usize) -> StoreResult<()>;
    /// As `Journal::query`, over the newest `capacity` entries of every server.
    async fn query(
        &self,
        f: &Filter,
        limit: usize,
        capacity: usize,
    ) -> StoreResult<(Vec<Entry>, Option<u64>)>;
    async fn by_log_id(&self, log_id: &str, capacity: usize) -> StoreResult<Option<Entry>>;
}

/// One request. Every request to the Feishu routes makes one, so it holds what it was given
/// (shared or static where it can) and is put into words only when read.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub at_ms: i64,
    pub method: Method,
    pub path: String,
    pub route: &'static str,
    pub who: Option<Identity>,
    pub status: u16,
    pub code: i64,
    pub log_id: String,
    pub latency_ms: f64,
    /// The binding a create made (reads and deletes name theirs in the path).
    pub binding: Option<String>,
}

/// Put on a create's answer: the binding it made, for its journal entry.
#[derive(Clone)]
pub struct Touched(pub String);

impl Entry {
    /// The binding this request named (as it was sent, re-encoded) or made.
    fn binding_id(&self) -> Option<String> {
        if self.binding.is_some() {
            return self.binding.clone();
        }
        let raw = self
            .path
            .strip_prefix(crate::domain::scopes::COLLECTION_ROUTE)?
            .strip_prefix('/')?;
        let key = exbind_api::id::decode_path_segment(raw).ok()?;
        Some(exbind_api::id::encode(
            &key.admin_account,
            &key.exchange_account,
        ))
    }
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            /// RFC 3339.
            time: String,
            method: &'a str,
            path: &'a str,
            route: &'a str,
            app_id: Option<&'a str>,
            tenant_key: Option<&'a str>,
            user_id: Option<&'a str>,
            status: u16,
            code: i64,
            log_id: &'a str,
            latency_ms: f64,
            #[serde(skip_serializing_if = "Option::is_none")]
            exchange_binding_id: Option<String>,
        }
        let who = self.who.as_ref();
        Wire {
            time: crate::clock::rfc3339(self.at_ms),
            method: self.method.as_str(),
            path: &self.path,
            route: self.route,
            app_id: who.map(Identity::app_id),
            tenant_key: who.and_then(Identity::tenant_key),
            user_id: who.and_then(Identity::user_id),
            status: self.status,
            code: self.code,
            log_id: &self.log_id,
            latency_ms: self.latency_ms,
            exchange_binding_id: self.binding_id(),
        }
        .serialize(s)
    }
}

/// Which entries a query wants; every field given must match.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub method: Option<String>,
    pub route: Option<String>,
    pub app_id: Option<String>,
    pub tenant_key: Option<String>,
    pub user_id: Option<String>,
    pub status: Option<u16>,
    pub code: Option<i64>,
    pub since_ms: Option<i64>,
    /// Only entries older than this sequence number (paging).
    pub before_seq: Option<u64>,
}

impl Filter {
    fn matches(&self, e: &Entry) -> bool {
        fn eq(want: &Option<String>, have: Option<&str>) -> bool {
            want.as_deref().is_none_or(|w| Some(w) == have)
        }
        let who = e.who.as_ref();
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(e.method.as_str()))
            && eq(&self.route, Some(e.route))
            && eq(&self.app_id, who.map(Identity::app_id))
            && eq(&self.tenant_key, who.and_then(Identity::tenant_key))
            && eq(&self.user_id, who.and_then(Identity::user_id))
            && self.status.is_none_or(|s| s == e.status)
            && self.code.is_none_or(|c| c == e.code)
            && self.since_ms.is_none_or(|s| e.at_ms >= s)
            && self.before_seq.is_none_or(|b| e.seq < b)
    }
}

/// One page of a query, from up to `limit + 1` matches newest first (the one past the page
/// only says that more match): the first `limit`, and the sequence number to page on from.
pub(crate) fn page(mut newest_first: Vec<Entry>, limit: usize) -> (Vec<Entry>, Option<u64>) {
    let more = newest_first.len() > limit;
    newest_first.truncate(limit);
    let next = if more {
        newest_first.last().map(|e| e.seq)
    } else {
        None
    };
    (newest_first, next)
}

pub struct Journal {
    capacity: usize,
    entries: Mutex<(u64, VecDeque<Entry>)>,
    shared: Option<Arc<dyn JournalStore>>,
}

impl Journal {
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn new(capacity: usize) -> Journal {
        Journal::with_shared(capacity, None)
    }

    /// Also kept in `shared`, when given.
    pub fn with_shared(capacity: usize, shared: Option<Arc<dyn JournalStore>>) -> Journal {
        Journal {
            capacity,
            entries: Mutex::new((0, VecDeque::new())),
            shared,
        }
    }

    /// Records `e` here and, on a shared store, there too (before the answer is sent).
    pub async fn record_everywhere(&self, e: Entry) {
        if !self.enabled() {
            return;
        }
        if let Some(shared) = &self.shared {
            if let Err(err) = shared.record(&e, self.capacity).await {
                tracing::warn!(error = %err, log_id = %e.log_id, "cannot journal a request in the shared store");
            }
        }
        self.record(e);
    }

    /// The control plane's query: every server's entries on a shared store, else this one's.
    pub async fn search(&self, f: &Filter, limit: usize) -> StoreResult<(Vec<Entry>, Option<u64>)> {
        match &self.shared {
            Some(s) if self.enabled() => s.query(f, limit, self.capacity).await,
            _ => Ok(self.query(f, limit)),
        }
    }

    /// One entry by its log id, from every server's on a shared store.
    pub async fn find(&self, log_id: &str) -> StoreResult<Option<Entry>> {
        match &self.shared {
            Some(s) if self.enabled() => s.by_log_id(log_id, self.capacity).await,
            _ => Ok(self.by_log_id(log_id)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    pub fn record(&self, mut e: Entry) {
        if !self.enabled() {
            return;
        }
        let mut g = self.entries.lock();
        g.0 += 1;
        e.seq = g.0;
        let evicted = if g.1.len() == self.capacity {
            g.1.pop_front()
        } else {
            None
        };
        g.1.push_back(e);
        drop(g);
        // Freed outside the lock, which every request takes.
        drop(evicted);
    }

    /// Newest first, at most `limit`; also the sequence number to page on from, if more match.
    pub fn query(&self, f: &Filter, limit: usize) -> (Vec<Entry>, Option<u64>) {
        let g = self.entries.lock();
        let out: Vec<Entry> =
            g.1.iter()
                .rev()
                .filter(|e| f.matches(e))
                .take(limit + 1)
                .cloned()
                .collect();
        page(out, limit)
    }

    /// The sequence number of the newest entry (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.entries.lock().0
    }

    /// The newest entries after sequence number `seq`, at most `limit`, oldest first; with
    /// how many newer than `seq` are left out (over the limit, or gone from the journal) and
    /// the newest sequence number.
    pub fn after(&self, seq: u64, limit: usize) -> (Vec<Entry>, u64, u64) {
        let g = self.entries.lock();
        let newest = g.0;
        let mut out: Vec<Entry> =
            g.1.iter()
                .rev()
                .take_while(|e| e.seq > seq)
                .take(limit)
                .cloned()
                .collect();
        drop(g);
        out.reverse();
        let missed = newest.saturating_sub(seq) - out.len() as u64;
        (out, missed, newest)
    }

    pub fn by_log_id(&self, log_id: &str) -> Option<Entry> {
        self.entries
            .lock()
            .1
            .iter()
            .rev()
            .find(|e| e.log_id == log_id)
            .cloned()
    }

    pub fn clear(&self) {
        self.entries.lock().1.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u32) -> Entry {
        Entry {
            seq: 0,
            at_ms: i as i64,
            method: if i.is_multiple_of(2) {
                Method::GET
            } else {
                Method::POST
            },
            path: "/p".into(),
            route: "/r",
            who: Some(Identity::App("a".into())),
            status: 200,
            code: 0,
            log_id: format!("L{i}"),
            latency_ms: 0.1,
            binding: None,
        }
    }

    #[test]
    fn bounded_filtered_paged() {
        let j = Journal::new(5);
        for i in 0..8 {
            j.record(entry(i));
        }
        let (all, next) = j.query(&Filter::default(), 10);
        assert_eq!(
            all.iter().map(|e| e.log_id.as_str()).collect::<Vec<_>>(),
            ["L7", "L6", "L5", "L4", "L3"]
        );
        assert!(next.is_none());
        let f = Filter {
            method: Some("get".into()),
            ..Default::default()
        };
        let (page, next) = j.query(&f, 1);
        assert_eq!(page[0].log_id, "L6");
        let (page2, _) = j.query(
            &Filter {
                before_seq: next,
                ..f
            },
            5,
        );
        assert_eq!(
            page2.iter().map(|e| e.log_id.as_str()).collect::<Vec<_>>(),
            ["L4"]
        );
        assert!(j.by_log_id("L3").is_some() && j.by_log_id("L2").is_none());
        // Eight recorded, five kept: after the 4th, the newest two, three left out.
        let (newer, missed, newest) = j.after(4, 2);
        assert_eq!(
            newer.iter().map(|e| e.log_id.as_str()).collect::<Vec<_>>(),
            ["L6", "L7"]
        );
        assert_eq!((missed, newest), (2, 8));
        let (newer, missed, _) = j.after(1, 10);
        assert_eq!((newer.len(), missed), (5, 2), "two evicted since the 1st");
        assert_eq!(j.after(8, 10).0.len(), 0);
        let off = Journal::new(0);
        off.record(entry(1));
        assert!(off.query(&Filter::default(), 10).0.is_empty());
    }

    /// What the shared store's query relies on: `limit + 1` rows fetched, `limit` answered.
    #[test]
    fn a_page_names_where_to_go_on_only_when_more_match() {
        let newest_first =
            |n: u64| -> Vec<Entry> { (1..=n).rev().map(|seq| Entry { seq, ..entry(0) }).collect() };
        let seqs = |p: &[Entry]| p.iter().map(|e| e.seq).collect::<Vec<_>>();
        let (out, next) = page(newest_first(3), 3);
        assert_eq!((seqs(&out), next), (vec![3, 2, 1], None));
        let (out, next) = page(newest_first(4), 3);
        assert_eq!((seqs(&out), next), (vec![4, 3, 2], Some(2)));
        assert_eq!(page(Vec::new(), 3).1, None);
    }
}
