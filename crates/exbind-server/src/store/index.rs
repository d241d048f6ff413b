//! The binding index: what a Feishu GET needs of every binding, in memory, so the hot path
//! reads no database. About 100 bytes a binding: accounts and tenants are interned, keys are
//! 64-bit hashes of the folded Exchange address (a collision is detected and served from the
//! store).
//!
//! It is filled in the background after start; until then, and for any key whose truth it may
//! have missed while filling, lookups answer `Unknown` and the caller reads the store. Every
//! binding write in this process updates it after the write is durable.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dashmap::{DashMap, DashSet};
use exbind_api::accounts::fold;
use exbind_api::BindingStatus;
use parking_lot::RwLock;

use crate::domain::model::{BindingRecord, BindingView};

/// One allocation a binding, header and text together: the admin's and tenant's name ids,
/// where the Exchange spelling ends, the status, then the Exchange spelling and the user id.
/// In the map it is a 16-byte pointer beside its 8-byte key: the map's table, not the
/// entries, is most of the index's memory (its load falls to one half after each doubling).
struct Entry(Box<[u8]>);

const HEADER: usize = 13;

impl Entry {
    fn new(admin: u32, tenant: u32, exchange: &str, user_id: &str, status: BindingStatus) -> Entry {
        let mut b = Vec::with_capacity(HEADER + exchange.len() + user_id.len());
        b.extend_from_slice(&admin.to_le_bytes());
        b.extend_from_slice(&tenant.to_le_bytes());
        b.extend_from_slice(&(exchange.len() as u32).to_le_bytes());
        b.push(status_byte(status));
        b.extend_from_slice(exchange.as_bytes());
        b.extend_from_slice(user_id.as_bytes());
        Entry(b.into_boxed_slice())
    }
    fn field(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }
    fn admin(&self) -> u32 {
        self.field(0)
    }
    fn tenant(&self) -> u32 {
        self.field(4)
    }
    fn status(&self) -> BindingStatus {
        BindingStatus::ALL[usize::from(self.0[12])]
    }
    fn set_status(&mut self, status: BindingStatus) {
        self.0[12] = status_byte(status);
    }
    fn text(&self, from: usize, to: usize) -> &str {
        std::str::from_utf8(&self.0[from..to]).expect("written from a str")
    }
    fn exchange(&self) -> &str {
        self.text(HEADER, HEADER + self.field(8) as usize)
    }
    fn user_id(&self) -> &str {
        self.text(HEADER + self.field(8) as usize, self.0.len())
    }
}

fn status_byte(status: BindingStatus) -> u8 {
    BindingStatus::ALL
        .iter()
        .position(|s| *s == status)
        .expect("every status is in ALL") as u8
}

pub enum Lookup {
    Hit(BindingView),
    Absent,
    /// The index cannot tell: read the store.
    Unknown,
}

#[derive(Default)]
struct Names {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

#[derive(Default)]
pub struct BindingIndex {
    entries: DashMap<u64, Entry>,
    names: RwLock<Names>,
    /// Keys changed while the index was filling, whose truth it may not hold.
    dirty: DashSet<u64>,
    /// Keys two addresses hash to.
    collided: DashSet<u64>,
    complete: AtomicBool,
    epoch: AtomicU64,
    /// Held shared while a batch is loaded, exclusively while the index is emptied.
    gate: RwLock<()>,
}

fn key(exchange_folded: &str) -> u64 {
    let mut h = DefaultHasher::new();
    exchange_folded.hash(&mut h);
    h.finish()
}

fn same_account(spelling: &str, folded: &str) -> bool {
    spelling == folded || fold(spelling) == folded
}

impl BindingIndex {
    fn intern(&self, name: &str) -> u32 {
        if let Some(id) = self.names.read().ids.get(name) {
            return *id;
        }
        let mut n = self.names.write();
        if let Some(id) = n.ids.get(name) {
            return *id;
        }
        let id = n.names.len() as u32;
        n.names.push(name.to_string());
        n.ids.insert(name.to_string(), id);
        id
    }

    fn entry(
        &self,
        admin: &str,
        exchange: &str,
        tenant: &str,
        user_id: &str,
        status: BindingStatus,
    ) -> Entry {
        Entry::new(
            self.intern(admin),
            self.intern(tenant),
            exchange,
            user_id,
            status,
        )
    }

    pub fn lookup(&self, exchange_folded: &str) -> Lookup {
        let k = key(exchange_folded);
        if self.dirty.contains(&k) || self.collided.contains(&k) {
            return Lookup::Unknown;
        }
        match self.entries.get(&k) {
            Some(e) if same_account(e.exchange(), exchange_folded) => {
                let names = self.names.read();
                Lookup::Hit(BindingView {
                    admin_account: names.names[e.admin() as usize].clone(),
                    exchange_account: e.exchange().to_string(),
                    tenant_key: names.names[e.tenant() as usize].clone(),
                    user_id: e.user_id().to_string(),
                    status: e.status(),
                })
            }
            Some(_) => Lookup::Unknown,
            None if self.complete.load(Ordering::Acquire) => Lookup::Absent,
            None => Lookup::Unknown,
        }
    }

    /// A binding that now exists, as it is.
    pub fn put(&self, v: &BindingView) {
        let folded = fold(&v.exchange_account);
        let k = key(&folded);
        let entry = self.entry(
            &v.admin_account,
            &v.exchange_account,
            &v.tenant_key,
            &v.user_id,
            v.status,
        );
        match self.entries.entry(k) {
            dashmap::Entry::Occupied(mut o) => {
                if same_account(o.get().exchange(), &folded) {
                    o.insert(entry);
                } else {
                    self.collided.insert(k);
                }
            }
            dashmap::Entry::Vacant(slot) => {
                slot.insert(entry);
            }
        }
        self.dirty.remove(&k);
    }

    /// A binding that no longer exists.
    pub fn remove(&self, exchange_folded: &str) {
        let k = key(exchange_folded);
        self.entries
            .remove_if(&k, |_, e| same_account(e.exchange(), exchange_folded));
        if !self.complete.load(Ordering::Acquire) {
            self.dirty.insert(k);
        }
    }

    /// A binding's new status.
    pub fn set_status(&self, exchange_folded: &str, status: BindingStatus) {
        let k = key(exchange_folded);
        match self.entries.get_mut(&k) {
            Some(mut e) if same_account(e.exchange(), exchange_folded) => e.set_status(status),
            _ => {
                self.dirty.insert(k);
            }
        }
    }

    /// Empties the index and starts a new filling; returns its epoch.
    pub fn invalidate(&self) -> u64 {
        let _g = self.gate.write();
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.complete.store(false, Ordering::Release);
        self.entries.clear();
        self.dirty.clear();
        self.collided.clear();
        epoch
    }

    /// Adds what the store held, unless a write since then says otherwise. False when the
    /// filling of `epoch` was superseded.
    pub fn load(&self, epoch: u64, batch: &[BindingRecord]) -> bool {
        let _g = self.gate.read();
        if self.epoch.load(Ordering::Acquire) != epoch {
            return false;
        }
        for b in batch {
            let folded = fold(&b.exchange_account);
            let k = key(&folded);
            if self.dirty.contains(&k) {
                continue;
            }
            let mut collision = false;
            self.entries
                .entry(k)
                .and_modify(|e| collision = !same_account(e.exchange(), &folded))
                .or_insert_with(|| {
                    self.entry(
                        &b.admin_account,
                        &b.exchange_account,
                        &b.tenant_key,
                        &b.user_id,
                        b.status,
                    )
                });
            if collision {
                self.collided.insert(k);
            }
        }
        true
    }

    pub fn finish(&self, epoch: u64) {
        let _g = self.gate.read();
        if self.epoch.load(Ordering::Acquire) == epoch {
            self.complete.store(true, Ordering::Release);
        }
    }

    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_every_field() {
        for status in BindingStatus::ALL {
            let mut e = Entry::new(7, u32::MAX, "Ünï@x.example", "ユーザー", status);
            assert_eq!(
                (e.admin(), e.tenant(), e.exchange(), e.user_id(), e.status()),
                (7, u32::MAX, "Ünï@x.example", "ユーザー", status)
            );
            e.set_status(BindingStatus::Err);
            assert_eq!(e.status(), BindingStatus::Err);
            assert_eq!(e.user_id(), "ユーザー");
        }
        let e = Entry::new(0, 0, "a@b", "", BindingStatus::Done);
        assert_eq!((e.exchange(), e.user_id()), ("a@b", ""));
    }

    fn view(ex: &str, status: BindingStatus) -> BindingView {
        BindingView {
            admin_account: "Admin@x".into(),
            exchange_account: ex.into(),
            tenant_key: "t".into(),
            user_id: "u".into(),
            status,
        }
    }

    fn record(seq: i64, ex: &str) -> BindingRecord {
        BindingRecord {
            seq,
            admin_account: "Admin@x".into(),
            exchange_account: ex.into(),
            tenant_key: "t".into(),
            user_id: "u".into(),
            status: BindingStatus::Doing,
            reason: None,
            scenario: Default::default(),
            next_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn unknown_until_filled_then_exact() {
        let ix = BindingIndex::default();
        let e = ix.invalidate();
        assert!(matches!(ix.lookup("a@x"), Lookup::Unknown));
        assert!(ix.load(e, &[record(1, "A@x"), record(2, "b@x")]));
        ix.finish(e);
        match ix.lookup("a@x") {
            Lookup::Hit(v) => assert_eq!(v.exchange_account, "A@x"),
            _ => panic!("expected a hit"),
        }
        assert!(matches!(ix.lookup("zzz@x"), Lookup::Absent));
        ix.set_status("b@x", BindingStatus::Done);
        assert!(matches!(ix.lookup("b@x"), Lookup::Hit(v) if v.status == BindingStatus::Done));
        ix.remove("b@x");
        assert!(matches!(ix.lookup("b@x"), Lookup::Absent));
        ix.put(&view("c@x", BindingStatus::Doing));
        assert!(matches!(ix.lookup("c@x"), Lookup::Hit(_)));
    }

    #[test]
    fn writes_while_filling_win_over_older_reads() {
        let ix = BindingIndex::default();
        let e = ix.invalidate();
        // Deleted and changed before the filler gets to them: the filler's rows are older.
        ix.remove("a@x");
        ix.set_status("b@x", BindingStatus::Err);
        ix.put(&view("c@x", BindingStatus::Done));
        assert!(ix.load(e, &[record(1, "a@x"), record(2, "b@x"), record(3, "c@x")]));
        ix.finish(e);
        assert!(matches!(ix.lookup("a@x"), Lookup::Unknown));
        assert!(matches!(ix.lookup("b@x"), Lookup::Unknown));
        assert!(matches!(ix.lookup("c@x"), Lookup::Hit(v) if v.status == BindingStatus::Done));
        // A superseded filling loads nothing.
        let e2 = ix.invalidate();
        assert!(!ix.load(e, &[record(4, "d@x")]));
        ix.finish(e);
        assert!(matches!(ix.lookup("d@x"), Lookup::Unknown));
        ix.finish(e2);
        assert!(matches!(ix.lookup("d@x"), Lookup::Absent));
    }
}
