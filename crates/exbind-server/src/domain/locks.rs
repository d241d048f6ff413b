//! Non-blocking per-key locks for mutations (contract §4.2): a request that cannot take every
//! key it needs at once is answered 190010 instead of waiting.

use std::sync::Arc;

use dashmap::DashSet;

#[derive(Default, Clone)]
pub struct KeyLocks {
    held: Arc<DashSet<String>>,
}

/// Holds its keys until dropped.
pub struct Guard {
    held: Arc<DashSet<String>>,
    keys: Vec<String>,
}

impl KeyLocks {
    /// Takes all of `keys` or none of them.
    pub fn try_lock(&self, keys: Vec<String>) -> Option<Guard> {
        let mut taken = Vec::with_capacity(keys.len());
        for k in keys {
            if self.held.insert(k.clone()) {
                taken.push(k);
            } else {
                for t in &taken {
                    self.held.remove(t);
                }
                return None;
            }
        }
        Some(Guard {
            held: self.held.clone(),
            keys: taken,
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for k in &self.keys {
            self.held.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_or_nothing() {
        let l = KeyLocks::default();
        let g = l.try_lock(vec!["a".into(), "b".into()]).unwrap();
        assert!(l.try_lock(vec!["c".into(), "b".into()]).is_none());
        // "c" was released when the second lock failed.
        let g2 = l.try_lock(vec!["c".into()]).unwrap();
        drop(g);
        assert!(l.try_lock(vec!["a".into(), "b".into()]).is_some());
        drop(g2);
    }
}
